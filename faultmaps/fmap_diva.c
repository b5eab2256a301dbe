/* fmap_diva.c - import of the DIVA-DRAM raw error records.
 *
 * Data: Lee et al., "Design-Induced Latency Variation in Modern DRAM Chips",
 * SIGMETRICS 2017; CMU-SAFARI/DIVA-DRAM, profile_data/vendor?/rawdata/.
 * Record: `bank row column w0 w1 w2 w3 w4 w5 w6 w7 n`, decimal, one per
 * 64-byte line with errors; column is the line's index in an 8 KiB row.
 *
 * Interpretation (docs/fmap.md, "DIVA"): w_i is beat i of the BL8 burst on
 * the 64-bit bus, i.e. bus word column * 8 + i; bit b of w_i is bus bit b.
 * Bytes equal to 0xFF are fill and carry no errors; every set bit of every
 * other byte is one flipped bit. The count must equal n for every record
 * (it does for all 12.8 million public records). Caveat: a byte whose eight
 * bits all failed looks like fill, so positions are exact only in the other
 * bytes; totals are exact. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fmap_file.h"

#define LINE_MAX_BYTES 1024

void fmap_diva_geometry(geometry *g) {
    memset(g, 0, sizeof *g);
    g->count[GEO_CH] = 1;
    g->count[GEO_RA] = 2;
    g->count[GEO_BG] = 1;
    g->count[GEO_BA] = 8;
    g->count[GEO_RO] = 16384;
    g->count[GEO_CO] = 1024;
    g->bus_bits = 64;
    snprintf(g->mapping, sizeof g->mapping, "RaRoBaCo");
    apx_error ignored;
    geometry_init(g, &ignored);
}

/* A source of text lines: a gzFile or a memory block. */
typedef struct line_src {
    gzFile gz;
    const char *mem;
    size_t len, pos;
} line_src;

/* 1 = line in buf, 0 = end, <0 = error (set). */
static int next_line(line_src *src, const char *name, uint64_t line, char *buf,
                     apx_error *err) {
    size_t len = 0;
    int ch;
    for (;;) {
        if (src->gz) ch = gzgetc(src->gz);
        else ch = src->pos < src->len ? (unsigned char)src->mem[src->pos++] : -1;
        if (ch < 0 || ch == '\n') break;
        if (ch == 0)
            return -apx_fail(err, APX_EINPUT, "%s: line %llu: NUL byte", name,
                             (unsigned long long)line);
        if (len == LINE_MAX_BYTES - 1)
            return -apx_fail(err, APX_EINPUT, "%s: line %llu: longer than %d bytes", name,
                             (unsigned long long)line, LINE_MAX_BYTES - 1);
        buf[len++] = (char)ch;
    }
    buf[len] = 0;
    if (ch < 0 && src->gz) {
        int code;
        const char *msg = gzerror(src->gz, &code);
        if (code != Z_OK && code != Z_STREAM_END)
            return -apx_fail(err, APX_EINPUT, "%s: line %llu: %s", name, (unsigned long long)line,
                             code == Z_ERRNO ? strerror(errno) : msg);
    }
    if (ch < 0 && !len) return 0;
    return 1;
}

/* Next whitespace-separated decimal unsigned integer. */
static int next_u64(const char **p, uint64_t *v) {
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    if (*s < '0' || *s > '9') return -1;
    uint64_t x = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    if (*s && *s != ' ' && *s != '\t' && *s != '\r') return -1;
    *v = x;
    *p = s;
    return 0;
}

/* How often each (bank, row, line) address was seen: an open-addressing
 * hash set that grows with the records (not with the geometry). */
typedef struct addr_set {
    uint64_t *key;      /* address + 1; 0 = empty slot */
    uint8_t *times;
    size_t cap, n;
} addr_set;

static size_t slot_of(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

/* Counts one more sighting of addr; returns the count so far, 0 when out
 * of memory. */
static unsigned addr_seen(addr_set *s, uint64_t addr) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *key = calloc(cap, sizeof *key);
        uint8_t *times = calloc(cap, 1);
        if (!key || !times) {
            free(key);
            free(times);
            return 0;
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->key[i]) {
                size_t j = slot_of(s->key[i], cap);
                while (key[j]) j = (j + 1) & (cap - 1);
                key[j] = s->key[i];
                times[j] = s->times[i];
            }
        free(s->key);
        free(s->times);
        s->key = key, s->times = times, s->cap = cap;
    }
    uint64_t k = addr + 1;
    size_t j = slot_of(k, s->cap);
    while (s->key[j] && s->key[j] != k) j = (j + 1) & (s->cap - 1);
    if (!s->key[j]) {
        s->key[j] = k;
        s->n++;
    }
    if (s->times[j] < 255) s->times[j]++;
    return s->times[j];
}

static const char *const field_names[12] = {"bank", "row", "column", "w0", "w1", "w2",
                                             "w3",   "w4",  "w5",     "w6", "w7", "n"};

static int read_records(line_src *src, const char *name, const geometry *g, fmap_sorter *s,
                        fmap_diva_stats *st, apx_error *err) {
    memset(st, 0, sizeof *st);
    if (g->bus_bits != 64)
        return apx_fail(err, APX_EINPUT, "%s: DIVA records hold 64-bit bus words; the geometry "
                        "has %u-bit words", name, g->bus_bits);
    if (g->count[GEO_CO] < 8)
        return apx_fail(err, APX_EINPUT, "%s: the geometry's rows are shorter than one 64-byte "
                        "line", name);
    const uint64_t banks = (uint64_t)g->count[GEO_BG] * g->count[GEO_BA];
    const uint64_t rows = g->count[GEO_RO], lines = g->count[GEO_CO] / 8;
    const uint64_t ranks = g->count[GEO_RA];
    addr_set seen = {NULL, NULL, 0, 0};
    char *buf = malloc(LINE_MAX_BYTES);
    int rc = APX_OK, got;
    if (!buf) {
        rc = apx_fail(err, APX_EWORK, "out of memory");
        goto out;
    }
    uint64_t line = 0;
    while ((got = next_line(src, name, ++line, buf, err)) > 0) {
        const char *p = buf;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        uint64_t v[12];
        for (int i = 0; i < 12; i++)
            if (next_u64(&p, &v[i])) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu, field %d (%s): expected a "
                              "non-negative decimal integer", name, (unsigned long long)line,
                              i + 1, field_names[i]);
                goto out;
            }
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (*p) {
            rc = apx_fail(err, APX_EINPUT, "%s: line %llu: more than 12 fields", name,
                          (unsigned long long)line);
            goto out;
        }
        const uint64_t lim[3] = {banks, rows, lines};
        for (int i = 0; i < 3; i++)
            if (v[i] >= lim[i]) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu, field %d (%s): %llu is outside the "
                              "geometry (0..%llu)", name, (unsigned long long)line, i + 1,
                              field_names[i], (unsigned long long)v[i],
                              (unsigned long long)lim[i] - 1);
                goto out;
            }
        /* count first, so a bad record adds nothing */
        uint64_t counted = 0, ff = 0;
        for (int w = 0; w < 8; w++)
            for (int b = 0; b < 8; b++) {
                unsigned byte = (unsigned)(v[3 + w] >> (8 * b)) & 0xff;
                if (byte == 0xff) ff++;
                else counted += (uint64_t)__builtin_popcount(byte);
            }
        if (counted != v[11]) {
            rc = apx_fail(err, APX_EINPUT, "%s: line %llu: the words hold %llu error bits outside "
                          "0xFF bytes but n is %llu", name, (unsigned long long)line,
                          (unsigned long long)counted, (unsigned long long)v[11]);
            goto out;
        }
        unsigned times = addr_seen(&seen, (v[0] * rows + v[1]) * lines + v[2]);
        uint32_t rank = 0;
        if (!times) {
            rc = apx_fail(err, APX_EWORK, "out of memory");
            goto out;
        }
        if (times > 1) {
            if (times > 2) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu: bank %llu row %llu column %llu "
                              "appears a third time (two ranks at most)", name,
                              (unsigned long long)line, (unsigned long long)v[0],
                              (unsigned long long)v[1], (unsigned long long)v[2]);
                goto out;
            }
            if (ranks < 2) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu: bank %llu row %llu column %llu "
                              "appears twice; the module has two ranks (give the geometry 2 "
                              "ranks)", name, (unsigned long long)line, (unsigned long long)v[0],
                              (unsigned long long)v[1], (unsigned long long)v[2]);
                goto out;
            }
            rank = 1;
            st->second_rank++;
        }
        for (int w = 0; w < 8; w++)
            for (int b = 0; b < 8; b++) {
                unsigned byte = (unsigned)(v[3 + w] >> (8 * b)) & 0xff;
                if (byte == 0xff) continue;
                for (int k = 0; k < 8; k++) {
                    if (!(byte >> k & 1)) continue;
                    cell c = {{0}, 0};
                    c.f[GEO_RA] = rank;
                    c.f[GEO_BG] = (uint32_t)(v[0] / g->count[GEO_BA]);
                    c.f[GEO_BA] = (uint32_t)(v[0] % g->count[GEO_BA]);
                    c.f[GEO_RO] = (uint32_t)v[1];
                    c.f[GEO_CO] = (uint32_t)(v[2] * 8 + (uint64_t)w);
                    c.bit = (uint32_t)(8 * b + k);
                    fmap_fault f = {geometry_cell_index(g, &c), 0, FMAP_FOREVER, FAULT_FLIP};
                    if ((rc = fmap_sorter_add(s, &f, err))) {
                        apx_wrap(err, "%s: line %llu: ", name, (unsigned long long)line);
                        goto out;
                    }
                    st->faults++;
                }
            }
        st->records++;
        st->sum_n += v[11];
        st->ff_bytes += ff;
    }
    if (got < 0) rc = -got;
out:
    free(seen.key);
    free(seen.times);
    free(buf);
    return rc;
}

static int check_geometry(const geometry *g, geometry *copy, const char *name, apx_error *err) {
    *copy = *g;
    if (geometry_init(copy, err)) return apx_wrap(err, "%s: ", name);
    return APX_OK;
}

int fmap_diva_read(const char *raw_path, const geometry *g, fmap_sorter *s, fmap_diva_stats *st,
                   apx_error *err) {
    geometry geo;
    int rc = check_geometry(g, &geo, raw_path, err);
    if (rc) return rc;
    line_src src = {0};
    src.gz = gzopen(raw_path, "rb");
    if (!src.gz)
        return apx_fail(err, APX_EINPUT, "cannot open %s: %s", raw_path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(src.gz, 1 << 17);
    rc = read_records(&src, raw_path, &geo, s, st, err);
    gzclose(src.gz);
    return rc;
}

int fmap_diva_read_mem(const char *text, size_t len, const char *name, const geometry *g,
                       fmap_sorter *s, fmap_diva_stats *st, apx_error *err) {
    geometry geo;
    int rc = check_geometry(g, &geo, name, err);
    if (rc) return rc;
    line_src src = {NULL, text, len, 0};
    return read_records(&src, name, &geo, s, st, err);
}

int fmap_diva_import(const char *raw_path, const geometry *g, const fmap_provenance *prov,
                     const char *out_path, fmap_diva_stats *st, apx_error *err) {
    fmap_sorter *s = NULL;
    fmap_writer *w = NULL;
    fmap_diva_stats local;
    if (!st) st = &local;
    int rc = fmap_sorter_create(&s, g, out_path, 0, err);
    if (!rc) rc = fmap_diva_read(raw_path, g, s, st, err);
    if (!rc) rc = fmap_writer_create(&w, out_path, g, prov, err);
    if (!rc && (rc = fmap_sorter_drain(s, w, err))) apx_wrap(err, "%s: ", raw_path);
    if (!rc) {
        rc = fmap_writer_commit(w, NULL, err);
        w = NULL;
    }
    fmap_writer_abort(w);
    fmap_sorter_free(s);
    return rc;
}
