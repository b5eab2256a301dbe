/* fmap_file.h - fault maps kept on disk: the .fmap file, its streaming
 * reader and writer, a bounded-memory sorter, and the CSV and DIVA importers.
 *
 * A .fmap file holds the faulty cells of one memory (models/geometry.h):
 * each fault is a cell index (geometry_cell_index), a kind (enum fault_kind)
 * and a time window [onset_ns, until_ns). The byte layout is in docs/fmap.md.
 *
 * Invariants the writer keeps and the reader checks:
 *   - cell indices strictly increase over the whole file (not only within
 *     a frame), and are < geometry_cells;
 *   - kind < FAULT_KINDS; onset_ns < until_ns;
 *   - a frame holds 1..FMAP_FRAME_MAX faults and carries a CRC32;
 *   - an end frame holds the totals (frames, faults, faults per kind); a
 *     file without it, or with bytes after it, is refused as truncated or
 *     corrupt.
 * Memory is bounded: the writer buffers one frame, the reader decodes one
 * frame at a time (about 2 MiB each at FMAP_FRAME_MAX). */
#ifndef APX_FMAP_FILE_H
#define APX_FMAP_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fmap.h"
#include "../models/geometry.h"
#include "../sim/error.h"

#define FMAP_FILE_VERSION 1
#define FMAP_FRAME_MAX 65536      /* faults per frame (writer and reader) */
#define FMAP_FOREVER UINT64_MAX   /* until_ns of a fault that never ends */
#define FMAP_MAX_KNOBS 32         /* operating-point knobs in a provenance */
#define FMAP_NAME_MAX 64          /* device kind and knob names, with the NUL */
#define FMAP_TEXT_MAX 1024        /* free-text source, with the NUL */

/* Where a map came from. */
enum fmap_origin {
    FMAP_GENERATED = 1,  /* a device model: device, knobs, seed, chip */
    FMAP_RECORDED = 2,   /* measured or imported: `source` says from what */
};

typedef struct fmap_provenance {
    int origin;                                /* enum fmap_origin */
    char device[FMAP_NAME_MAX];                /* generated: device kind ("uniform") */
    uint32_t n_knobs;                          /* generated: operating point */
    char knob_name[FMAP_MAX_KNOBS][FMAP_NAME_MAX];
    double knob_value[FMAP_MAX_KNOBS];
    uint64_t seed, chip;                       /* generated */
    char source[FMAP_TEXT_MAX];                /* recorded: required; generated: optional note */
} fmap_provenance;

/* Fills a "recorded" provenance with the given source text (truncated to
 * FMAP_TEXT_MAX - 1 bytes). */
void fmap_provenance_recorded(fmap_provenance *p, const char *source);

/* One faulty cell. Active at time t iff onset_ns <= t < until_ns; a
 * permanent fault has onset_ns 0 and until_ns FMAP_FOREVER. */
typedef struct fmap_fault {
    uint64_t cell;      /* geometry_cell_index, < geometry_cells */
    uint64_t onset_ns;
    uint64_t until_ns;  /* exclusive; FMAP_FOREVER = never ends */
    uint8_t kind;       /* enum fault_kind */
} fmap_fault;

static inline int fmap_fault_active(const fmap_fault *f, uint64_t t_ns) {
    return f->onset_ns <= t_ns && t_ns < f->until_ns;
}

/* Checks one fault on its own: cell < cells, known kind, onset < until. */
int fmap_fault_check(const fmap_fault *f, uint64_t cells, apx_error *err);

typedef struct fmap_totals {
    uint64_t frames, faults;
    uint64_t per_kind[FAULT_KINDS];
} fmap_totals;

/* ---- writer ------------------------------------------------------------
 * Faults must come in strictly increasing cell order (use an fmap_sorter
 * when they do not). fmap_writer_create writes to PATH.tmp and
 * fmap_writer_commit renames it to PATH, so a failed or interrupted write
 * never leaves a file at PATH that looks complete. */
typedef struct fmap_writer fmap_writer;

int fmap_writer_create(fmap_writer **out, const char *path, const geometry *g,
                       const fmap_provenance *prov, apx_error *err);
/* Writes to an open stream instead (not closed, nothing renamed); `name`
 * is used in errors. */
int fmap_writer_create_stream(fmap_writer **out, FILE *fp, const char *name, const geometry *g,
                              const fmap_provenance *prov, apx_error *err);
/* Appends one fault; refuses (APX_EINPUT) one out of order or that fails
 * fmap_fault_check. After an error only fmap_writer_abort is allowed. */
int fmap_writer_add(fmap_writer *w, const fmap_fault *f, apx_error *err);
/* Flushes the last frame, writes the end frame, closes and renames. Frees
 * w whatever happens (on failure the temporary file is removed). totals may
 * be NULL. */
int fmap_writer_commit(fmap_writer *w, fmap_totals *totals, apx_error *err);
/* Drops the file being written and frees w (NULL is fine). */
void fmap_writer_abort(fmap_writer *w);

/* ---- reader ------------------------------------------------------------
 * Opening reads and checks the header (magic, version, sizes, geometry,
 * provenance, header CRC). Each fmap_reader_next decodes and checks one
 * frame. Errors name the file and the byte offset. */
typedef struct fmap_reader fmap_reader;

int fmap_reader_open(fmap_reader **out, const char *path, apx_error *err);
/* Reads from memory (the fuzz harness; data must outlive the reader). */
int fmap_reader_open_mem(fmap_reader **out, const void *data, size_t len, const char *name,
                         apx_error *err);
const geometry *fmap_reader_geometry(const fmap_reader *r);
const fmap_provenance *fmap_reader_provenance(const fmap_reader *r);
/* The next frame: *faults points into the reader (valid until the next
 * call), *n is its length. At the end frame it checks the totals and that
 * nothing follows, then returns APX_OK with *n = 0 (and again on later
 * calls). */
int fmap_reader_next(fmap_reader *r, const fmap_fault **faults, size_t *n, apx_error *err);
/* Totals of the frames read so far (the file's, once next returned n = 0). */
const fmap_totals *fmap_reader_totals(const fmap_reader *r);
void fmap_reader_close(fmap_reader *r);  /* NULL is fine */

/* Reads a whole file only to check it (every frame, CRC and invariant). */
int fmap_file_check(const char *path, fmap_totals *totals, apx_error *err);

/* ---- inspect -----------------------------------------------------------
 * What `apxsim fmap inspect` prints: totals, BER over the geometry's cells,
 * time behaviour, and histograms of faults over the flat bank index
 * ((channel * ranks + rank) * bankgroups * banks + bankgroup * banks +
 * bank), row, column and bit, each folded into at most `bins` equal bins
 * (a power of two, 1..FMAP_HIST_MAX; bin i covers values
 * [i * width, (i + 1) * width)). Reads the whole file (checking it). */
#define FMAP_HIST_MAX 256
enum fmap_hist_axis { FMAP_AXIS_BANK, FMAP_AXIS_ROW, FMAP_AXIS_COLUMN, FMAP_AXIS_BIT, FMAP_AXES };

typedef struct fmap_hist {
    uint32_t bins;            /* bins used */
    uint64_t width;           /* values per bin */
    uint64_t range;           /* values on the axis (bins * width) */
    uint64_t count[FMAP_HIST_MAX];
} fmap_hist;

typedef struct fmap_stats {
    geometry geo;
    fmap_provenance prov;
    fmap_totals totals;
    uint64_t cells;           /* geometry_cells */
    double ber;               /* faults / cells */
    uint64_t permanent;       /* faults with onset 0 and no end */
    uint64_t max_frame;       /* most faults in one frame */
    uint64_t first_cell, last_cell;   /* valid when totals.faults > 0 */
    fmap_hist hist[FMAP_AXES];
} fmap_stats;

int fmap_inspect(const char *path, uint32_t bins, fmap_stats *st, apx_error *err);
/* The same for an open reader positioned before its first frame. */
int fmap_inspect_reader(fmap_reader *r, uint32_t bins, fmap_stats *st, apx_error *err);

/* ---- sorter ------------------------------------------------------------
 * Takes faults in any order and hands them to a writer in cell order, with
 * bounded memory: it keeps up to `run_faults` faults (0: 1 << 20, about
 * 32 MiB), sorts them and spills each full run to `spill_prefix`.N.run (a
 * .fmap file); drain merges the runs. Two faults on the same cell are an
 * error (APX_EINPUT) that names the cell's coordinates. */
typedef struct fmap_sorter fmap_sorter;

int fmap_sorter_create(fmap_sorter **out, const geometry *g, const char *spill_prefix,
                       size_t run_faults, apx_error *err);
int fmap_sorter_add(fmap_sorter *s, const fmap_fault *f, apx_error *err);
/* Writes everything to w in cell order (w is not committed). */
int fmap_sorter_drain(fmap_sorter *s, fmap_writer *w, apx_error *err);
/* Removes the spill files and frees s (NULL is fine). */
void fmap_sorter_free(fmap_sorter *s);

/* ---- CSV (faultmaps/fmap_csv.c) -----------------------------------------
 * A header line names the columns: bank, row, column, bit, kind required;
 * onset_ns, until_ns, channel, rank optional; any order. bank is the flat
 * bank index bankgroup * banks + bank; channel and rank default to 0;
 * kind is a fault_kind_name; onset_ns defaults to 0, until_ns to forever
 * (an empty field also means the default). Errors name file, line and
 * column. */
int fmap_csv_read(FILE *in, const char *name, const geometry *g, fmap_sorter *s,
                  apx_error *err);
/* CSV file -> .fmap file (sorted; spill files next to out_path). */
int fmap_csv_import(const char *csv_path, const geometry *g, const fmap_provenance *prov,
                    const char *out_path, fmap_totals *totals, apx_error *err);
/* .fmap file -> CSV on `out`. The file is checked completely before the
 * first line is written. Writes channel and rank columns when the geometry
 * has more than one, onset_ns/until_ns when any fault is not permanent. */
int fmap_csv_export(const char *fmap_path, FILE *out, apx_error *err);

/* ---- DIVA raw records (faultmaps/fmap_diva.c) ---------------------------
 * Lee et al., SIGMETRICS 2017, CMU-SAFARI/DIVA-DRAM, rawdata_*.gz: one line
 * `bank row column w0 .. w7 n` per 64-byte line with errors. Every set bit
 * of every byte other than 0xFF of word w_i, bit b, becomes a flip at
 * (bank, row, bus-word column = column * 8 + i, bit b); the count must equal
 * n. The first record of a (bank, row, column) goes to rank 0, a repeated
 * one to rank 1 (the modules have two ranks). docs/fmap.md explains. */
typedef struct fmap_diva_stats {
    uint64_t records;       /* lines read */
    uint64_t sum_n;         /* sum of n over the records */
    uint64_t faults;        /* cells written (= sum_n) */
    uint64_t second_rank;   /* records placed in rank 1 */
    uint64_t ff_bytes;      /* 0xFF bytes skipped */
} fmap_diva_stats;

/* The geometry of a DIVA module: 1 channel, 2 ranks, 8 banks, 16384 rows,
 * 1024 64-bit bus words per row (8 KiB), mapping "RaRoBaCo". */
void fmap_diva_geometry(geometry *g);
/* Reads records (gzip or plain text, through zlib) into s. */
int fmap_diva_read(const char *raw_path, const geometry *g, fmap_sorter *s, fmap_diva_stats *st,
                   apx_error *err);
/* The same from memory (plain text; the tests and fuzzing). */
int fmap_diva_read_mem(const char *text, size_t len, const char *name, const geometry *g,
                       fmap_sorter *s, fmap_diva_stats *st, apx_error *err);
/* rawdata file -> .fmap file. */
int fmap_diva_import(const char *raw_path, const geometry *g, const fmap_provenance *prov,
                     const char *out_path, fmap_diva_stats *st, apx_error *err);

#endif
