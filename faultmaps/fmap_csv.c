/* fmap_csv.c - fault maps as CSV: bank,row,column,bit,kind[,onset_ns[,until_ns]].
 * The columns are named by a header line (docs/fmap.md, "CSV"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fmap_file.h"

#define LINE_MAX_BYTES 4096
#define MAX_COLS 16

enum csv_col { C_CHANNEL, C_RANK, C_BANK, C_ROW, C_COLUMN, C_BIT, C_KIND, C_ONSET, C_UNTIL, C_N };
static const char *const col_names[C_N] = {"channel", "rank",   "bank",     "row",     "column",
                                           "bit",     "kind",   "onset_ns", "until_ns"};
static const int col_required[C_N] = {0, 0, 1, 1, 1, 1, 1, 0, 0};

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* Splits s at commas in place; returns the field count (> max: too many). */
static int split(char *s, char **fields, int max) {
    int n = 0;
    for (;;) {
        char *comma = strchr(s, ',');
        if (n < max) fields[n] = s;
        n++;
        if (!comma) break;
        *comma = 0;
        s = comma + 1;
    }
    if (n <= max)
        for (int i = 0; i < n; i++) fields[i] = trim(fields[i]);
    return n;
}

/* A decimal unsigned integer, digits only. */
static int parse_u64(const char *s, uint64_t *v) {
    if (!*s) return -1;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

/* Reads one line (without its newline) into buf; 1 = got one, 0 = end,
 * <0 = error (set). */
static int read_line(FILE *in, const char *name, uint64_t line, char *buf, apx_error *err) {
    size_t len = 0;
    int ch;
    while ((ch = getc(in)) != EOF && ch != '\n') {
        if (ch == 0)
            return -apx_fail(err, APX_EINPUT, "%s: line %llu, byte %zu: NUL byte", name,
                             (unsigned long long)line, len + 1);
        if (len == LINE_MAX_BYTES - 1)
            return -apx_fail(err, APX_EINPUT, "%s: line %llu: longer than %d bytes", name,
                             (unsigned long long)line, LINE_MAX_BYTES - 1);
        buf[len++] = (char)ch;
    }
    buf[len] = 0;
    if (ch == EOF) {
        if (ferror(in))
            return -apx_fail(err, APX_EWORK, "%s: line %llu: read error: %s", name,
                             (unsigned long long)line, strerror(errno));
        if (!len) return 0;
    }
    return 1;
}

static int blank_or_comment(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return !*s || *s == '#';
}

int fmap_csv_read(FILE *in, const char *name, const geometry *g, fmap_sorter *s,
                  apx_error *err) {
    char *buf = malloc(LINE_MAX_BYTES);
    if (!buf) return apx_fail(err, APX_EWORK, "out of memory");
    int col_of[MAX_COLS], have[C_N] = {0};
    int ncols = 0, rc = APX_OK, got;
    uint64_t line = 0;
    char *fields[MAX_COLS];
    const uint64_t banks = (uint64_t)g->count[GEO_BG] * g->count[GEO_BA];
    const uint64_t limit[C_N] = {g->count[GEO_CH], g->count[GEO_RA], banks, g->count[GEO_RO],
                                 g->count[GEO_CO], g->bus_bits, 0, 0, 0};
    const uint64_t cells = geometry_cells(g);
    while ((got = read_line(in, name, ++line, buf, err)) > 0) {
        if (blank_or_comment(buf)) continue;
        if (!ncols) {
            /* the header */
            int n = split(buf, fields, MAX_COLS);
            if (n > C_N) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu: %d columns in the header, at most "
                              "%d are known", name, (unsigned long long)line, n, C_N);
                goto out;
            }
            for (int i = 0; i < n; i++) {
                int c = 0;
                while (c < C_N && strcmp(fields[i], col_names[c])) c++;
                if (c == C_N) {
                    rc = apx_fail(err, APX_EINPUT, "%s: line %llu, column %d: unknown column "
                                  "'%.64s' (known: channel, rank, bank, row, column, bit, kind, "
                                  "onset_ns, until_ns)", name, (unsigned long long)line, i + 1,
                                  fields[i]);
                    goto out;
                }
                if (have[c]) {
                    rc = apx_fail(err, APX_EINPUT, "%s: line %llu, column %d: column '%s' "
                                  "appears twice", name, (unsigned long long)line, i + 1,
                                  col_names[c]);
                    goto out;
                }
                have[c] = 1;
                col_of[i] = c;
            }
            for (int c = 0; c < C_N; c++)
                if (col_required[c] && !have[c]) {
                    rc = apx_fail(err, APX_EINPUT, "%s: line %llu: the header lacks the '%s' "
                                  "column (needs bank,row,column,bit,kind)", name,
                                  (unsigned long long)line, col_names[c]);
                    goto out;
                }
            ncols = n;
            continue;
        }
        int n = split(buf, fields, MAX_COLS);
        if (n != ncols) {
            rc = apx_fail(err, APX_EINPUT, "%s: line %llu: %d fields, the header names %d", name,
                          (unsigned long long)line, n, ncols);
            goto out;
        }
        uint64_t v[C_N] = {0, 0, 0, 0, 0, 0, 0, 0, FMAP_FOREVER};
        for (int i = 0; i < n; i++) {
            int c = col_of[i];
            const char *f = fields[i];
            if (c == C_KIND) {
                int k = fault_kind_parse(f);
                if (k < 0) {
                    rc = apx_fail(err, APX_EINPUT, "%s: line %llu, column %d (kind): unknown "
                                  "kind '%.32s' (flip, stuck0, stuck1, dd0, dd1)", name,
                                  (unsigned long long)line, i + 1, f);
                    goto out;
                }
                v[c] = (uint64_t)k;
                continue;
            }
            if ((c == C_ONSET || c == C_UNTIL) && !*f) continue;  /* default */
            if (parse_u64(f, &v[c])) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu, column %d (%s): '%.32s' is not a "
                              "non-negative integer", name, (unsigned long long)line, i + 1,
                              col_names[c], f);
                goto out;
            }
            if (limit[c] && v[c] >= limit[c]) {
                rc = apx_fail(err, APX_EINPUT, "%s: line %llu, column %d (%s): %llu is outside "
                              "the geometry (0..%llu)", name, (unsigned long long)line, i + 1,
                              col_names[c], (unsigned long long)v[c],
                              (unsigned long long)limit[c] - 1);
                goto out;
            }
        }
        if (v[C_ONSET] >= v[C_UNTIL]) {
            rc = apx_fail(err, APX_EINPUT, "%s: line %llu: onset_ns %llu is not before until_ns "
                          "%llu", name, (unsigned long long)line, (unsigned long long)v[C_ONSET],
                          (unsigned long long)v[C_UNTIL]);
            goto out;
        }
        cell c = {{0}, 0};
        c.f[GEO_CH] = (uint32_t)v[C_CHANNEL];
        c.f[GEO_RA] = (uint32_t)v[C_RANK];
        c.f[GEO_BG] = (uint32_t)(v[C_BANK] / g->count[GEO_BA]);
        c.f[GEO_BA] = (uint32_t)(v[C_BANK] % g->count[GEO_BA]);
        c.f[GEO_RO] = (uint32_t)v[C_ROW];
        c.f[GEO_CO] = (uint32_t)v[C_COLUMN];
        c.bit = (uint32_t)v[C_BIT];
        fmap_fault f = {geometry_cell_index(g, &c), v[C_ONSET], v[C_UNTIL], (uint8_t)v[C_KIND]};
        if (f.cell >= cells) {  /* cannot happen after the range checks; stay safe */
            rc = apx_fail(err, APX_EINPUT, "%s: line %llu: cell outside the geometry", name,
                          (unsigned long long)line);
            goto out;
        }
        if ((rc = fmap_sorter_add(s, &f, err))) {
            apx_wrap(err, "%s: line %llu: ", name, (unsigned long long)line);
            goto out;
        }
    }
    if (got < 0) {
        rc = -got;
        goto out;
    }
    if (!ncols)
        rc = apx_fail(err, APX_EINPUT, "%s: no header line (bank,row,column,bit,kind...)", name);
out:
    free(buf);
    return rc;
}

int fmap_csv_import(const char *csv_path, const geometry *g, const fmap_provenance *prov,
                    const char *out_path, fmap_totals *totals, apx_error *err) {
    geometry geo = *g;
    int rc = geometry_init(&geo, err);
    if (rc) return apx_wrap(err, "importing %s: ", csv_path);
    FILE *in = fopen(csv_path, "r");
    if (!in) return apx_fail(err, APX_EINPUT, "cannot open %s: %s", csv_path, strerror(errno));
    fmap_sorter *s = NULL;
    fmap_writer *w = NULL;
    rc = fmap_sorter_create(&s, &geo, out_path, 0, err);
    if (!rc) rc = fmap_csv_read(in, csv_path, &geo, s, err);
    fclose(in);
    if (!rc) rc = fmap_writer_create(&w, out_path, &geo, prov, err);
    if (!rc && (rc = fmap_sorter_drain(s, w, err))) apx_wrap(err, "%s: ", csv_path);
    if (!rc) {
        rc = fmap_writer_commit(w, totals, err);
        w = NULL;
    }
    fmap_writer_abort(w);
    fmap_sorter_free(s);
    return rc;
}

/* ---- export ---- */

int fmap_csv_export(const char *fmap_path, FILE *out, apx_error *err) {
    /* Pass 1: check the whole file and see which columns are needed. */
    fmap_reader *r;
    int rc = fmap_reader_open(&r, fmap_path, err);
    if (rc) return rc;
    const fmap_fault *f;
    size_t n;
    int timed = 0;
    while (!(rc = fmap_reader_next(r, &f, &n, err)) && n)
        for (size_t i = 0; i < n && !timed; i++)
            timed = f[i].onset_ns != 0 || f[i].until_ns != FMAP_FOREVER;
    fmap_reader_close(r);
    if (rc) return rc;
    /* Pass 2: write. */
    if ((rc = fmap_reader_open(&r, fmap_path, err))) return rc;
    const geometry *g = fmap_reader_geometry(r);
    int chan = g->count[GEO_CH] > 1, rank = g->count[GEO_RA] > 1;
    fprintf(out, "%s%sbank,row,column,bit,kind%s\n", chan ? "channel," : "", rank ? "rank," : "",
            timed ? ",onset_ns,until_ns" : "");
    while (!(rc = fmap_reader_next(r, &f, &n, err)) && n) {
        for (size_t i = 0; i < n; i++) {
            cell c;
            geometry_cell_at(g, f[i].cell, &c);
            if (chan) fprintf(out, "%u,", c.f[GEO_CH]);
            if (rank) fprintf(out, "%u,", c.f[GEO_RA]);
            fprintf(out, "%u,%u,%u,%u,%s", c.f[GEO_BG] * g->count[GEO_BA] + c.f[GEO_BA],
                    c.f[GEO_RO], c.f[GEO_CO], c.bit, fault_kind_name(f[i].kind));
            if (timed) {
                fprintf(out, ",%llu,", (unsigned long long)f[i].onset_ns);
                if (f[i].until_ns != FMAP_FOREVER)
                    fprintf(out, "%llu", (unsigned long long)f[i].until_ns);
            }
            fputc('\n', out);
        }
        if (ferror(out)) {
            rc = apx_fail(err, APX_EWORK, "writing CSV: %s", strerror(errno));
            break;
        }
    }
    fmap_reader_close(r);
    return rc;
}
