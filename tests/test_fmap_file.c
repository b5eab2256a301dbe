/* test_fmap_file.c - the .fmap file, its sorter, CSV and DIVA import.
 *
 * Hostile files are built here from docs/fmap.md with an encoder of the
 * test's own (not the library's), with valid CRCs, so the checks behind
 * the CRC are reached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../faultmaps/fmap_file.h"
#include "tests.h"

#define DIVA_DIR APXSIM_SOURCE_ROOT "/tests/data/diva/"

/* 2 ranks x 2 bank groups x 2 banks x 256 rows x 64 columns x 64 bits */
static geometry small_geo(void) {
    geometry g;
    memset(&g, 0, sizeof g);
    uint32_t counts[GEO_FIELDS] = {1, 2, 2, 2, 256, 64};
    memcpy(g.count, counts, sizeof counts);
    g.bus_bits = 64;
    strcpy(g.mapping, "RoRaBgBaCo");
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    return g;
}

static fmap_provenance gen_prov(void) {
    fmap_provenance p;
    memset(&p, 0, sizeof p);
    p.origin = FMAP_GENERATED;
    strcpy(p.device, "uniform");
    p.n_knobs = 2;
    strcpy(p.knob_name[0], "ber");
    p.knob_value[0] = 0.015625;
    strcpy(p.knob_name[1], "vdd");
    p.knob_value[1] = 1.1;
    p.seed = 0x123456789abcdefull;
    p.chip = 7;
    strcpy(p.source, "test map");
    return p;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n faults with random gaps, kinds and time windows, sorted. */
static fmap_fault *make_faults(size_t n, uint64_t cells, uint64_t seed) {
    fmap_fault *f = malloc(n * sizeof *f);
    uint64_t cell = splitmix(&seed) % 50, s = seed;
    for (size_t i = 0; i < n; i++) {
        f[i].cell = cell;
        f[i].kind = (uint8_t)(splitmix(&s) % FAULT_KINDS);
        uint64_t t = splitmix(&s) % 4;
        f[i].onset_ns = t & 1 ? splitmix(&s) % 1000000000000ull : 0;
        f[i].until_ns = t & 2 ? f[i].onset_ns + 1 + splitmix(&s) % 5000 : FMAP_FOREVER;
        uint64_t gap = splitmix(&s) % 16 == 0 ? splitmix(&s) % 200 : splitmix(&s) % 4;
        cell += 1 + gap;
    }
    CU_ASSERT_FATAL(f[n - 1].cell < cells);
    return f;
}

static int write_map(const char *path, const geometry *g, const fmap_provenance *p,
                     const fmap_fault *f, size_t n, apx_error *err) {
    fmap_writer *w;
    int rc = fmap_writer_create(&w, path, g, p, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = fmap_writer_add(w, &f[i], err))) {
            fmap_writer_abort(w);
            return rc;
        }
    return fmap_writer_commit(w, NULL, err);
}

/* Reads a whole map; returns its faults (malloc'd) and count, or NULL with err. */
static fmap_fault *read_all(fmap_reader *r, size_t *count, apx_error *err) {
    size_t cap = 1024, total = 0;
    fmap_fault *all = malloc(cap * sizeof *all);
    const fmap_fault *f;
    size_t n;
    int rc;
    while (!(rc = fmap_reader_next(r, &f, &n, err)) && n) {
        if (total + n > cap) {
            while (total + n > cap) cap *= 2;
            all = realloc(all, cap * sizeof *all);
        }
        memcpy(all + total, f, n * sizeof *f);
        total += n;
    }
    *count = total;
    if (rc) {
        free(all);
        return NULL;
    }
    return all;
}

static fmap_fault *read_file(const char *path, size_t *count, apx_error *err) {
    fmap_reader *r;
    if (fmap_reader_open(&r, path, err)) return NULL;
    fmap_fault *all = read_all(r, count, err);
    fmap_reader_close(r);
    return all;
}

static int same_faults(const fmap_fault *a, const fmap_fault *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i].cell != b[i].cell || a[i].kind != b[i].kind || a[i].onset_ns != b[i].onset_ns ||
            a[i].until_ns != b[i].until_ns)
            return 0;
    return 1;
}

static unsigned char *slurp(const char *path, size_t *len) {
    *len = 0;
    FILE *fp = fopen(path, "rb");
    CU_ASSERT_FATAL(fp != NULL);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* ---- round trip ---- */

static void test_roundtrip(void) {
    geometry g = small_geo();
    fmap_provenance p = gen_prov();
    size_t n = 3 * FMAP_FRAME_MAX + 123;  /* four frames, the last partial */
    fmap_fault *f = make_faults(n, geometry_cells(&g), 42);
    f[n - 1].cell = geometry_cells(&g) - 1;  /* the very last cell */
    apx_error err;
    const char *path = test_path("rt.fmap");
    CU_ASSERT_EQUAL_FATAL(write_map(path, &g, &p, f, n, &err), APX_OK);
    CU_ASSERT_EQUAL(access(test_path("rt.fmap.tmp"), F_OK), -1);  /* renamed away */

    fmap_reader *r;
    CU_ASSERT_EQUAL_FATAL(fmap_reader_open(&r, path, &err), APX_OK);
    CU_ASSERT(geometry_equal(fmap_reader_geometry(r), &g));
    const fmap_provenance *q = fmap_reader_provenance(r);
    CU_ASSERT_EQUAL(q->origin, FMAP_GENERATED);
    CU_ASSERT_STRING_EQUAL(q->device, "uniform");
    CU_ASSERT_EQUAL(q->n_knobs, 2);
    CU_ASSERT_STRING_EQUAL(q->knob_name[1], "vdd");
    CU_ASSERT_EQUAL(q->knob_value[0], 0.015625);
    CU_ASSERT_EQUAL(q->knob_value[1], 1.1);
    CU_ASSERT_EQUAL(q->seed, p.seed);
    CU_ASSERT_EQUAL(q->chip, 7);
    CU_ASSERT_STRING_EQUAL(q->source, "test map");
    /* one frame at a time, at most FMAP_FRAME_MAX each */
    const fmap_fault *fr;
    size_t got, frames = 0, total = 0;
    int ok = 1;
    while (fmap_reader_next(r, &fr, &got, &err) == APX_OK && got) {
        CU_ASSERT(got <= FMAP_FRAME_MAX);
        ok &= total + got <= n && same_faults(fr, f + total, got);
        total += got;
        frames++;
    }
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(total, n);
    CU_ASSERT_EQUAL(frames, 4);
    const fmap_totals *t = fmap_reader_totals(r);
    CU_ASSERT_EQUAL(t->faults, n);
    CU_ASSERT_EQUAL(t->frames, 4);
    uint64_t kinds[FAULT_KINDS] = {0}, sum = 0;
    for (size_t i = 0; i < n; i++) kinds[f[i].kind]++;
    for (int k = 0; k < FAULT_KINDS; k++) {
        CU_ASSERT_EQUAL(t->per_kind[k], kinds[k]);
        CU_ASSERT(kinds[k] > 0);
        sum += t->per_kind[k];
    }
    CU_ASSERT_EQUAL(sum, n);
    /* after the end: n = 0 again, no error */
    CU_ASSERT_EQUAL(fmap_reader_next(r, &fr, &got, &err), APX_OK);
    CU_ASSERT_EQUAL(got, 0);
    fmap_reader_close(r);

    /* the same bytes from memory */
    size_t len;
    unsigned char *bytes = slurp(path, &len);
    CU_ASSERT_EQUAL_FATAL(fmap_reader_open_mem(&r, bytes, len, "mem", &err), APX_OK);
    fmap_fault *back = read_all(r, &got, &err);
    CU_ASSERT_FATAL(back != NULL);
    CU_ASSERT_EQUAL(got, n);
    CU_ASSERT(same_faults(back, f, n));
    fmap_reader_close(r);
    free(back);
    free(bytes);

    /* an empty map is valid */
    fmap_provenance rec;
    fmap_provenance_recorded(&rec, "nothing failed");
    CU_ASSERT_EQUAL(write_map(test_path("empty.fmap"), &g, &rec, NULL, 0, &err), APX_OK);
    fmap_totals tt;
    CU_ASSERT_EQUAL(fmap_file_check(test_path("empty.fmap"), &tt, &err), APX_OK);
    CU_ASSERT_EQUAL(tt.faults, 0);
    CU_ASSERT_EQUAL(tt.frames, 0);
    free(f);
}

static void test_writer_refuses(void) {
    geometry g = small_geo();
    fmap_provenance p = gen_prov();
    apx_error err;
    fmap_fault bad[] = {
        {geometry_cells(&g), 0, FMAP_FOREVER, FAULT_FLIP},  /* outside */
        {5, 0, FMAP_FOREVER, FAULT_KINDS},                 /* unknown kind */
        {5, 100, 100, FAULT_FLIP},                         /* empty window */
        {9, 0, FMAP_FOREVER, FAULT_FLIP},                  /* not after 10 */
        {10, 0, FMAP_FOREVER, FAULT_FLIP},                 /* same as 10 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fmap_writer *w;
        const char *path = test_path("refuse.fmap");
        CU_ASSERT_EQUAL_FATAL(fmap_writer_create(&w, path, &g, &p, &err), APX_OK);
        fmap_fault first = {10, 0, FMAP_FOREVER, FAULT_STUCK0};
        if (i >= 3) CU_ASSERT_EQUAL(fmap_writer_add(w, &first, &err), APX_OK);
        CU_ASSERT_EQUAL(fmap_writer_add(w, &bad[i], &err), APX_EINPUT);
        /* after an error the writer stays failed, and commit leaves nothing */
        CU_ASSERT_NOT_EQUAL(fmap_writer_commit(w, NULL, &err), APX_OK);
        CU_ASSERT_EQUAL(access(path, F_OK), -1);
        CU_ASSERT_EQUAL(access(test_path("refuse.fmap.tmp"), F_OK), -1);
    }
    /* abort leaves nothing either */
    fmap_writer *w;
    CU_ASSERT_EQUAL_FATAL(fmap_writer_create(&w, test_path("ab.fmap"), &g, &p, &err), APX_OK);
    fmap_writer_abort(w);
    CU_ASSERT_EQUAL(access(test_path("ab.fmap"), F_OK), -1);
    CU_ASSERT_EQUAL(access(test_path("ab.fmap.tmp"), F_OK), -1);
    /* bad provenance and geometry */
    fmap_provenance q = p;
    q.device[0] = 0;
    CU_ASSERT_EQUAL(fmap_writer_create(&w, test_path("x.fmap"), &g, &q, &err), APX_EINPUT);
    q = p;
    q.n_knobs = FMAP_MAX_KNOBS + 1;
    CU_ASSERT_EQUAL(fmap_writer_create(&w, test_path("x.fmap"), &g, &q, &err), APX_EINPUT);
    geometry h = g;
    h.count[GEO_RO] = 300;
    CU_ASSERT_EQUAL(fmap_writer_create(&w, test_path("x.fmap"), &h, &p, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(access(test_path("x.fmap.tmp"), F_OK), -1);
}

/* ---- an encoder of the test's own, from docs/fmap.md ---- */

typedef struct buf {
    unsigned char *b;
    size_t n, cap;
} buf;

static void bput(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void bu8(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    bput(b, &c, 1);
}
static void bule(buf *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) bu8(b, (unsigned)(v >> (8 * i)) & 0xff);
}
static void bvar(buf *b, uint64_t v) {
    while (v >= 0x80) {
        bu8(b, (unsigned)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    bu8(b, (unsigned)v);
}
static void set32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t crc_of(const unsigned char *p, size_t n) {
    return (uint32_t)crc32(crc32(0, Z_NULL, 0), p, (uInt)n);
}

/* Header of small_geo with a "recorded" provenance and the given source. */
static void enc_header(buf *b, const char *source) {
    size_t start = b->n;
    bput(b, "APXFMAP\x1a", 8);
    bule(b, 1, 2);
    bule(b, 0, 2);
    bule(b, 0, 4);  /* header size, patched below */
    uint32_t counts[GEO_FIELDS] = {1, 2, 2, 2, 256, 64};
    for (int i = 0; i < GEO_FIELDS; i++) bule(b, counts[i], 4);
    bule(b, 64, 4);
    char map[32] = "RoRaBgBaCo";
    bput(b, map, 32);
    bule(b, FMAP_RECORDED, 4);
    bule(b, 0, 8);
    bule(b, 0, 8);
    bule(b, 0, 4);  /* knobs */
    bule(b, 0, 2);  /* device length */
    bule(b, strlen(source), 2);
    bput(b, source, strlen(source));
    set32(b->b + start + 12, (uint32_t)(b->n - start + 4));
    bule(b, crc_of(b->b + start, b->n - start), 4);
}

/* A frame from raw cells (kind flip, permanent), with fields overridable. */
static void enc_frame_raw(buf *b, uint32_t count, uint64_t first, uint64_t last,
                          const unsigned char *payload, size_t len) {
    size_t start = b->n;
    bput(b, "FRAM", 4);
    bule(b, count, 4);
    bule(b, len, 4);
    bule(b, first, 8);
    bule(b, last, 8);
    uint32_t c = (uint32_t)crc32(crc32(0, Z_NULL, 0), b->b + start, 28);
    c = (uint32_t)crc32(c, payload, (uInt)len);
    bule(b, c, 4);
    bput(b, payload, len);
}

static void enc_frame(buf *b, const uint64_t *cells, size_t n) {
    buf p = {0};
    for (size_t i = 0; i < n; i++) {
        if (i) bvar(&p, cells[i] - cells[i - 1] - 1);
        bu8(&p, FAULT_FLIP);
    }
    enc_frame_raw(b, (uint32_t)n, cells[0], cells[n - 1], p.b, p.n);
    free(p.b);
}

static void enc_end(buf *b, uint64_t frames, uint64_t faults, uint64_t flips) {
    size_t start = b->n;
    bput(b, "FEND", 4);
    bule(b, 0, 4);
    bule(b, frames, 8);
    bule(b, faults, 8);
    bule(b, flips, 8);
    for (int k = 1; k < 8; k++) bule(b, 0, 8);
    bule(b, crc_of(b->b + start, b->n - start), 4);
}

/* Reads a whole buffer; returns the rc and leaves the message in err. */
static int read_mem(const buf *b, apx_error *err) {
    fmap_reader *r;
    int rc = fmap_reader_open_mem(&r, b->b, b->n, "hostile.fmap", err);
    if (rc) return rc;
    const fmap_fault *f;
    size_t n;
    do rc = fmap_reader_next(r, &f, &n, err);
    while (!rc && n);
    fmap_reader_close(r);
    return rc;
}

static void expect_refused(const buf *b, const char *needle) {
    apx_error err = {0, ""};
    int rc = read_mem(b, &err);
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    if (!strstr(err.msg, needle) || !strstr(err.msg, "hostile.fmap")) {
        fprintf(stderr, "\n  expected '%s' in: %s\n", needle, err.msg);
        CU_FAIL("error message");
    }
}

static void test_own_encoder_agrees(void) {
    /* what the docs describe is what the reader reads */
    buf b = {0};
    enc_header(&b, "hand made");
    uint64_t c1[] = {3, 4, 1000, 70000};
    uint64_t c2[] = {70001, 8388607};
    enc_frame(&b, c1, 4);
    enc_frame(&b, c2, 2);
    enc_end(&b, 2, 6, 6);
    fmap_reader *r;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(fmap_reader_open_mem(&r, b.b, b.n, "hand.fmap", &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(fmap_reader_provenance(r)->source, "hand made");
    size_t n;
    fmap_fault *all = read_all(r, &n, &err);
    CU_ASSERT_FATAL(all != NULL);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_EQUAL(all[2].cell, 1000);
    CU_ASSERT_EQUAL(all[5].cell, 8388607);
    CU_ASSERT_EQUAL(all[5].until_ns, FMAP_FOREVER);
    fmap_reader_close(r);
    free(all);

    /* and the writer writes exactly these bytes */
    geometry g = small_geo();
    fmap_provenance p;
    fmap_provenance_recorded(&p, "hand made");
    fmap_fault f[6];
    uint64_t cells[6] = {3, 4, 1000, 70000, 70001, 8388607};
    for (int i = 0; i < 6; i++) f[i] = (fmap_fault){cells[i], 0, FMAP_FOREVER, FAULT_FLIP};
    /* one frame holds all six when written by the library, so compare a one-frame encoding */
    buf one = {0};
    enc_header(&one, "hand made");
    enc_frame(&one, cells, 6);
    enc_end(&one, 1, 6, 6);
    CU_ASSERT_EQUAL_FATAL(write_map(test_path("hand.fmap"), &g, &p, f, 6, &err), APX_OK);
    size_t len;
    unsigned char *bytes = slurp(test_path("hand.fmap"), &len);
    CU_ASSERT_EQUAL(len, one.n);
    CU_ASSERT(len == one.n && memcmp(bytes, one.b, len) == 0);
    free(bytes);
    free(one.b);
    free(b.b);
}

static void test_corrupt_every_byte(void) {
    /* every single-byte change and every truncation of a small valid file is refused */
    geometry g = small_geo();
    fmap_provenance p = gen_prov();
    fmap_fault *f = make_faults(40, geometry_cells(&g), 9);
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(write_map(test_path("c.fmap"), &g, &p, f, 40, &err), APX_OK);
    size_t len;
    unsigned char *good = slurp(test_path("c.fmap"), &len);
    buf b = {malloc(len + 1), len, len + 1};
    int accepted = 0, crashed_msgs = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(b.b, good, len);
        b.b[i] ^= 0x5a;
        err.msg[0] = 0;
        if (read_mem(&b, &err) == APX_OK) accepted++;
        else if (!strstr(err.msg, "hostile.fmap")) crashed_msgs++;
    }
    CU_ASSERT_EQUAL(accepted, 0);
    CU_ASSERT_EQUAL(crashed_msgs, 0);
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(b.b, good, len);
        b.n = cut;
        if (read_mem(&b, &err) == APX_OK) accepted++;
    }
    CU_ASSERT_EQUAL(accepted, 0);
    memcpy(b.b, good, len);
    b.b[len] = 0;
    b.n = len + 1;
    expect_refused(&b, "after the end frame");
    b.n = len - 1;
    expect_refused(&b, "truncated");
    b.n = 40;
    expect_refused(&b, "too short");
    memcpy(b.b, good, len);
    b.n = len;
    b.b[0] = 'X';
    expect_refused(&b, "magic");
    free(b.b);
    free(good);
    free(f);
}

static void test_hostile(void) {
    uint64_t cells = 8388608;
    unsigned char pay[64] = {0};
    /* huge fault count, with a valid CRC */
    buf b = {0};
    enc_header(&b, "h");
    enc_frame_raw(&b, 0xffffffffu, 0, cells - 1, pay, 8);
    enc_end(&b, 1, 0xffffffffu, 0);
    expect_refused(&b, "frame of 4294967295 faults");
    /* huge payload size */
    b.n = 0;
    enc_header(&b, "h");
    enc_frame_raw(&b, 100, 0, 1000, pay, 8);
    set32(b.b + b.n - 8 - 32 + 8, 0x7fffffffu);
    expect_refused(&b, "cannot take");
    b.n = 0;
    enc_header(&b, "h");
    enc_frame_raw(&b, 1000000 / 31 + 1, 0, 2000000, pay, 8);
    set32(b.b + b.n - 8 - 32 + 8, 1000000);  /* plausible for the count, beyond the file */
    expect_refused(&b, "past the end of the file");
    /* cells outside the geometry (frame range), CRC valid */
    b.n = 0;
    enc_header(&b, "h");
    uint64_t outside[] = {5, cells};
    enc_frame(&b, outside, 2);
    enc_end(&b, 1, 2, 2);
    expect_refused(&b, "outside the geometry");
    /* a delta that passes the frame's last cell */
    b.n = 0;
    enc_header(&b, "h");
    unsigned char p2[] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0};
    enc_frame_raw(&b, 2, 5, 10, p2, sizeof p2);
    enc_end(&b, 1, 2, 2);
    expect_refused(&b, "passes the frame's last");
    /* a varint longer than 64 bits */
    b.n = 0;
    enc_header(&b, "h");
    unsigned char p3[] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0};
    enc_frame_raw(&b, 2, 5, 10, p3, sizeof p3);
    expect_refused(&b, "bad cell delta");
    /* frames that overlap: cells not increasing across frames */
    b.n = 0;
    enc_header(&b, "h");
    uint64_t a1[] = {10, 20}, a2[] = {20, 30};
    enc_frame(&b, a1, 2);
    enc_frame(&b, a2, 2);
    enc_end(&b, 2, 4, 4);
    expect_refused(&b, "strictly increase");
    /* last cell that the faults do not reach */
    b.n = 0;
    enc_header(&b, "h");
    unsigned char p4[] = {0, 3, 0};  /* cells 10, 14 */
    enc_frame_raw(&b, 2, 10, 15, p4, sizeof p4);
    enc_end(&b, 1, 2, 2);
    expect_refused(&b, "last cell is 15");
    /* unknown kind, unknown attribute bits, empty time window */
    unsigned char p5[][5] = {{7}, {0x40}, {0x30, 5, 5}};
    size_t l5[] = {1, 1, 3};
    const char *why5[] = {"attribute", "attribute", "onset 5 ns not before"};
    for (int i = 0; i < 3; i++) {
        b.n = 0;
        enc_header(&b, "h");
        enc_frame_raw(&b, 1, 10, 10, p5[i], l5[i]);
        enc_end(&b, 1, 1, 1);
        expect_refused(&b, why5[i]);
    }
    /* totals that disagree, CRC valid */
    b.n = 0;
    enc_header(&b, "h");
    uint64_t c[] = {1, 2, 3};
    enc_frame(&b, c, 3);
    enc_end(&b, 1, 4, 4);
    expect_refused(&b, "counts 4 faults");
    b.n = 0;
    enc_header(&b, "h");
    enc_frame(&b, c, 3);
    enc_end(&b, 1, 3, 2);
    expect_refused(&b, "of kind 0");
    /* no end frame */
    b.n = 0;
    enc_header(&b, "h");
    enc_frame(&b, c, 3);
    expect_refused(&b, "without its end frame");
    /* header: bad version, huge header size, bad geometry, huge strings */
    b.n = 0;
    enc_header(&b, "h");
    enc_end(&b, 0, 0, 0);
    size_t hsize = b.n - 92;
    unsigned char *good = malloc(b.n);
    memcpy(good, b.b, b.n);
    size_t glen = b.n;
    struct {
        size_t at;
        uint32_t value;
        int bytes;
        const char *why;
    } edits[] = {
        {8, 2, 2, "version 2"},
        {12, 0x7fffffff, 4, "header size"},
        {16 + 4 * 4, 300, 4, "bad geometry"},          /* rows not a power of two */
        {16 + 4 * 4, 0, 4, "bad geometry"},            /* no rows */
        {40, 7, 4, "bad geometry"},                    /* bus bits */
        {76, 3, 4, "origin"},
        {96, 1000000, 4, "knobs"},
        {102, 60000, 2, "source text"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(b.b, good, glen);
        b.n = glen;
        for (int k = 0; k < edits[i].bytes; k++)
            b.b[edits[i].at + (size_t)k] = (unsigned char)(edits[i].value >> (8 * k));
        set32(b.b + hsize - 4, crc_of(b.b, hsize - 4));  /* re-sign the header */
        expect_refused(&b, edits[i].why);
    }
    free(good);
    free(b.b);
}

/* ---- sorter ---- */

static void test_sorter(void) {
    geometry g = small_geo();
    size_t n = 50000;
    fmap_fault *f = make_faults(n, geometry_cells(&g), 3);
    /* shuffle */
    fmap_fault *shuf = malloc(n * sizeof *shuf);
    memcpy(shuf, f, n * sizeof *f);
    uint64_t s = 77;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = splitmix(&s) % (i + 1);
        fmap_fault t = shuf[i];
        shuf[i] = shuf[j];
        shuf[j] = t;
    }
    apx_error err;
    fmap_provenance p;
    fmap_provenance_recorded(&p, "sorted");
    size_t runs[] = {0, 1000, 49999};  /* in memory; 50 runs (two merge levels); two runs */
    for (size_t ri = 0; ri < 3; ri++) {
        fmap_sorter *so;
        const char *prefix = test_path("sort");
        CU_ASSERT_EQUAL_FATAL(fmap_sorter_create(&so, &g, prefix, runs[ri], &err), APX_OK);
        int rc = APX_OK;
        for (size_t i = 0; i < n && !rc; i++) rc = fmap_sorter_add(so, &shuf[i], &err);
        CU_ASSERT_EQUAL(rc, APX_OK);
        fmap_writer *w;
        CU_ASSERT_EQUAL_FATAL(fmap_writer_create(&w, test_path("sorted.fmap"), &g, &p, &err), 0);
        CU_ASSERT_EQUAL(fmap_sorter_drain(so, w, &err), APX_OK);
        CU_ASSERT_EQUAL(fmap_writer_commit(w, NULL, &err), APX_OK);
        fmap_sorter_free(so);
        /* spill files are gone */
        char run0[600];
        snprintf(run0, sizeof run0, "%s.0.run", prefix);
        CU_ASSERT_EQUAL(access(run0, F_OK), -1);
        size_t got;
        fmap_fault *back = read_file(test_path("sorted.fmap"), &got, &err);
        CU_ASSERT_FATAL(back != NULL);
        CU_ASSERT_EQUAL(got, n);
        CU_ASSERT(got == n && same_faults(back, f, n));
        free(back);
    }
    /* a duplicate, in one run and across runs, names the cell */
    for (size_t ri = 0; ri < 2; ri++) {
        fmap_sorter *so;
        CU_ASSERT_EQUAL_FATAL(fmap_sorter_create(&so, &g, test_path("dup"), ri ? 100 : 0, &err),
                              0);
        int rc = APX_OK;
        for (size_t i = 0; i < 1000 && !rc; i++) rc = fmap_sorter_add(so, &shuf[i], &err);
        fmap_fault d = shuf[10];
        d.kind = FAULT_STUCK1;
        if (!rc) rc = fmap_sorter_add(so, &d, &err);
        fmap_writer *w;
        CU_ASSERT_EQUAL_FATAL(fmap_writer_create(&w, test_path("dup.fmap"), &g, &p, &err), 0);
        if (!rc) rc = fmap_sorter_drain(so, w, &err);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "two faults on one cell"));
        fmap_writer_abort(w);
        fmap_sorter_free(so);
    }
    /* out-of-geometry cells are refused at add */
    fmap_sorter *so;
    CU_ASSERT_EQUAL_FATAL(fmap_sorter_create(&so, &g, test_path("x"), 0, &err), 0);
    fmap_fault out = {geometry_cells(&g), 0, FMAP_FOREVER, 0};
    CU_ASSERT_EQUAL(fmap_sorter_add(so, &out, &err), APX_EINPUT);
    fmap_sorter_free(so);
    free(shuf);
    free(f);
}

/* ---- CSV ---- */

static uint64_t cell_of(const geometry *g, uint32_t rank, uint32_t flat_bank, uint32_t row,
                        uint32_t col, uint32_t bit) {
    cell c = {{0}, 0};
    c.f[GEO_RA] = rank;
    c.f[GEO_BG] = flat_bank / g->count[GEO_BA];
    c.f[GEO_BA] = flat_bank % g->count[GEO_BA];
    c.f[GEO_RO] = row;
    c.f[GEO_CO] = col;
    c.bit = bit;
    return geometry_cell_index(g, &c);
}

static void test_csv_import_export(void) {
    geometry g = small_geo();
    const char *csv =
        "# measured somewhere\r\n"
        "kind, bank,row,column,bit,onset_ns,until_ns,rank\r\n"
        "flip,3,255,63,63,,,1\r\n"
        "stuck0,0,0,0,0,0,,0\n"
        "\n"
        "dd1,2,17,5,9,1000,2000,0\n"
        "dd0,1,17,5,9,,5,1\n"
        "stuck1,2,17,5,8,7,,0";  /* no final newline */
    const char *in = test_write_file("in.csv", csv, strlen(csv));
    fmap_provenance p;
    fmap_provenance_recorded(&p, "in.csv");
    apx_error err;
    fmap_totals t;
    CU_ASSERT_EQUAL_FATAL(fmap_csv_import(in, &g, &p, test_path("csv.fmap"), &t, &err), APX_OK);
    CU_ASSERT_EQUAL(t.faults, 5);
    size_t n;
    fmap_fault *f = read_file(test_path("csv.fmap"), &n, &err);
    CU_ASSERT_FATAL(f != NULL && n == 5);
    fmap_fault want[] = {
        {cell_of(&g, 0, 0, 0, 0, 0), 0, FMAP_FOREVER, FAULT_STUCK0},
        {cell_of(&g, 0, 2, 17, 5, 8), 7, FMAP_FOREVER, FAULT_STUCK1},
        {cell_of(&g, 0, 2, 17, 5, 9), 1000, 2000, FAULT_DD1},
        {cell_of(&g, 1, 1, 17, 5, 9), 0, 5, FAULT_DD0},
        {cell_of(&g, 1, 3, 255, 63, 63), 0, FMAP_FOREVER, FAULT_FLIP},
    };
    CU_ASSERT(same_faults(f, want, 5));
    CU_ASSERT_EQUAL(want[4].cell, geometry_cells(&g) - 1);

    /* export, then import the export: the same map */
    FILE *out = fopen(test_path("out.csv"), "w");
    CU_ASSERT_EQUAL(fmap_csv_export(test_path("csv.fmap"), out, &err), APX_OK);
    fclose(out);
    size_t len;
    char *text = (char *)slurp(test_path("out.csv"), &len);
    text[len] = 0;
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "rank,bank,row,column,bit,kind,onset_ns,until_ns\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n1,3,255,63,63,flip,0,\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n0,2,17,5,9,dd1,1000,2000\n"));
    free(text);
    CU_ASSERT_EQUAL_FATAL(fmap_csv_import(test_path("out.csv"), &g, &p, test_path("csv2.fmap"),
                                          NULL, &err), APX_OK);
    size_t n2;
    fmap_fault *f2 = read_file(test_path("csv2.fmap"), &n2, &err);
    CU_ASSERT(f2 && n2 == 5 && same_faults(f2, f, 5));
    free(f2);
    free(f);

    /* permanent faults only, one rank: the short form */
    geometry one = g;
    one.count[GEO_RA] = 1;
    strcpy(one.mapping, "RoBgBaCo");
    CU_ASSERT_EQUAL_FATAL(geometry_init(&one, &err), APX_OK);
    const char *simple = "bank,row,column,bit,kind\n1,2,3,4,flip\n0,0,0,1,stuck1\n";
    in = test_write_file("simple.csv", simple, strlen(simple));
    CU_ASSERT_EQUAL_FATAL(fmap_csv_import(in, &one, &p, test_path("s.fmap"), NULL, &err), 0);
    out = fopen(test_path("s.csv"), "w");
    CU_ASSERT_EQUAL(fmap_csv_export(test_path("s.fmap"), out, &err), APX_OK);
    fclose(out);
    text = (char *)slurp(test_path("s.csv"), &len);
    text[len] = 0;
    CU_ASSERT_STRING_EQUAL(text, "bank,row,column,bit,kind\n0,0,0,1,stuck1\n1,2,3,4,flip\n");
    free(text);
}

static void test_csv_errors(void) {
    geometry g = small_geo();
    fmap_provenance p;
    fmap_provenance_recorded(&p, "bad");
    struct {
        const char *text, *why;
    } cases[] = {
        {"", "no header line"},
        {"# only a comment\n", "no header line"},
        {"bank,row,column,bit\n", "lacks the 'kind' column"},
        {"bank,row,column,bit,kind,colour\n", "line 1, column 6: unknown column 'colour'"},
        {"bank,row,column,bit,kind,bank\n", "line 1, column 6: column 'bank' appears twice"},
        {"bank,row,column,bit,kind\n1,2,3,4,flap\n", "line 2, column 5 (kind): unknown kind"},
        {"bank,row,column,bit,kind\n1,2,3,4\n", "line 2: 4 fields, the header names 5"},
        {"bank,row,column,bit,kind\n1,2,3,4,flip,5\n", "line 2: 6 fields"},
        {"bank,row,column,bit,kind\n\n8,2,3,4,flip\n", "line 3, column 1 (bank): 8 is outside"},
        {"bank,row,column,bit,kind\n1,256,3,4,flip\n", "line 2, column 2 (row): 256 is outside"},
        {"bank,row,column,bit,kind\n1,2,64,4,flip\n", "column 3 (column): 64 is outside"},
        {"bank,row,column,bit,kind\n1,2,3,64,flip\n", "column 4 (bit): 64 is outside"},
        {"bank,row,column,bit,kind,rank\n1,2,3,4,flip,2\n", "column 6 (rank): 2 is outside"},
        {"bank,row,column,bit,kind,channel\n1,2,3,4,flip,1\n", "(channel): 1 is outside"},
        {"bank,row,column,bit,kind\n-1,2,3,4,flip\n", "(bank): '-1' is not a non-negative"},
        {"bank,row,column,bit,kind\n1,2,3,4x,flip\n", "(bit): '4x'"},
        {"bank,row,column,bit,kind\n1,2,99999999999999999999,4,flip\n", "(column): '9999"},
        {"bank,row,column,bit,kind,onset_ns,until_ns\n1,2,3,4,flip,9,9\n",
         "line 2: onset_ns 9 is not before until_ns 9"},
        {"bank,row,column,bit,kind\n1,2,3,4,flip\n1,2,3,4,stuck0\n", "two faults on one cell"},
        {"bank,row,column,bit,kind\n1,2,3,4,fl\0ip\n", "line 2, byte 11: NUL"},
    };
    size_t lens[sizeof cases / sizeof cases[0]];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) lens[i] = strlen(cases[i].text);
    lens[sizeof cases / sizeof cases[0] - 1] = 39;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *in = test_write_file("bad.csv", cases[i].text, lens[i]);
        apx_error err = {0, ""};
        int rc = fmap_csv_import(in, &g, &p, test_path("bad.fmap"), NULL, &err);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        if (!strstr(err.msg, cases[i].why) || !strstr(err.msg, "bad.csv")) {
            fprintf(stderr, "\n  case %zu: expected '%s' in: %s\n", i, cases[i].why, err.msg);
            CU_FAIL("CSV error message");
        }
        CU_ASSERT_EQUAL(access(test_path("bad.fmap"), F_OK), -1);  /* nothing written */
        CU_ASSERT_EQUAL(access(test_path("bad.fmap.tmp"), F_OK), -1);
    }
    /* an over-long line */
    size_t big = 10000;
    char *line = malloc(big);
    memcpy(line, "bank,row,column,bit,kind\n", 25);
    memset(line + 25, '1', big - 25);
    const char *in = test_write_file("bad.csv", line, big);
    apx_error err;
    CU_ASSERT_EQUAL(fmap_csv_import(in, &g, &p, test_path("bad.fmap"), NULL, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "line 2: longer than"));
    free(line);
    CU_ASSERT_EQUAL(fmap_csv_import(test_path("missing.csv"), &g, &p, test_path("bad.fmap"),
                                    NULL, &err), APX_EINPUT);
}

/* ---- DIVA ---- */

static int diva_mem(const char *text, const geometry *g, fmap_fault **faults, size_t *n,
                    fmap_diva_stats *st, apx_error *err) {
    fmap_sorter *s;
    fmap_writer *w;
    fmap_provenance p;
    fmap_provenance_recorded(&p, "diva test");
    int rc = fmap_sorter_create(&s, g, test_path("diva"), 0, err);
    if (rc) return rc;
    rc = fmap_diva_read_mem(text, strlen(text), "records.txt", g, s, st, err);
    if (!rc) rc = fmap_writer_create(&w, test_path("diva.fmap"), g, &p, err);
    if (!rc) {
        rc = fmap_sorter_drain(s, w, err);
        if (rc) fmap_writer_abort(w);
        else rc = fmap_writer_commit(w, NULL, err);
    }
    fmap_sorter_free(s);
    if (!rc) {
        *faults = read_file(test_path("diva.fmap"), n, err);
        if (!*faults) rc = err->code;
    }
    return rc;
}

static void test_diva_records(void) {
    geometry g;
    fmap_diva_geometry(&g);
    /* the three examples of facts/dram.md 2.6, and a repeated address */
    const char *text =
        "0 13674 112 0 0 0 2097152 0 0 0 0 1\n"
        "0 1424 1 0 0 0 18446744073709551607 0 0 0 0 7\n"
        "5 12240 10 0 0 0 18445899648779419648 0 0 0 0 7 \n"
        "\n"
        "7 16383 127 1 0 0 0 0 0 0 9223372036854775808  2\n"
        "7 16383 127 0 0 0 0 0 0 0 9223372036854775808  1\r\n";
    fmap_fault *f;
    size_t n;
    fmap_diva_stats st;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(diva_mem(text, &g, &f, &n, &st, &err), APX_OK);
    CU_ASSERT_EQUAL(st.records, 5);
    CU_ASSERT_EQUAL(st.sum_n, 18);
    CU_ASSERT_EQUAL(st.faults, 18);
    CU_ASSERT_EQUAL(n, 18);
    CU_ASSERT_EQUAL(st.second_rank, 1);
    CU_ASSERT_EQUAL(st.ff_bytes, 7 + 1);
    /* expected cells: word 3 of line 112 = column 899, bit 21 */
    uint64_t want[18];
    size_t k = 0;
    want[k++] = cell_of(&g, 0, 0, 13674, 112 * 8 + 3, 21);
    for (int b = 0; b < 8; b++)
        if (0xf7 >> b & 1) want[k++] = cell_of(&g, 0, 0, 1424, 11, (uint32_t)b);
    for (int b = 0; b < 8; b++)
        if (0xfd >> b & 1) want[k++] = cell_of(&g, 0, 5, 12240, 83, (uint32_t)(48 + b));
    want[k++] = cell_of(&g, 0, 7, 16383, 1016, 0);
    want[k++] = cell_of(&g, 0, 7, 16383, 1023, 63);
    want[k++] = cell_of(&g, 1, 7, 16383, 1023, 63);
    CU_ASSERT_EQUAL_FATAL(k, 18);
    /* sort want */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && want[j] < want[j - 1]; j--) {
            uint64_t t = want[j];
            want[j] = want[j - 1];
            want[j - 1] = t;
        }
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= f[i].cell == want[i] && f[i].kind == FAULT_FLIP && f[i].onset_ns == 0 &&
              f[i].until_ns == FMAP_FOREVER;
    CU_ASSERT(ok);
    free(f);

    struct {
        const char *text, *why;
    } bad[] = {
        {"0 1 2 0 0 0 8 0 0 0 0 2\n", "line 1: the words hold 1 error bits outside 0xFF bytes "
                                      "but n is 2"},
        {"\n0 1 2 0 0 0 8 0 0 0\n", "line 2, field 11 (w7)"},
        {"0 1 2 0 0 0 8 0 0 0 0 1 5\n", "more than 12 fields"},
        {"8 1 2 0 0 0 8 0 0 0 0 1\n", "field 1 (bank): 8 is outside"},
        {"0 16384 2 0 0 0 8 0 0 0 0 1\n", "field 2 (row): 16384 is outside"},
        {"0 1 128 0 0 0 8 0 0 0 0 1\n", "field 3 (column): 128 is outside"},
        {"0 1 2 0 0 0 18446744073709551616 0 0 0 0 1\n", "field 7 (w3)"},
        {"0 1 2 0 -1 0 8 0 0 0 0 1\n", "field 5 (w1)"},
        {"0 1 2x 0 0 0 8 0 0 0 0 1\n", "field 3 (column)"},
        {"0 1 2 0 0 0 8 0 0 0 0 1\n0 1 2 0 0 0 8 0 0 0 0 1\n0 1 2 0 0 0 8 0 0 0 0 1\n",
         "line 3: bank 0 row 1 column 2 appears a third time"},
        {"0 1 2 0 0 0 8 0 0 0 0 1\n0 1 2 0 0 0 8 0 0 0 0 1\n0 1 2 0 0 0 8 0 0 0 0 1\n",
         "two ranks"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        geometry h = g;
        if (i == sizeof bad / sizeof bad[0] - 1) {
            h.count[GEO_RA] = 1;
            strcpy(h.mapping, "RoBaCo");
        }
        apx_error e = {0, ""};
        f = NULL;
        int rc = diva_mem(bad[i].text, &h, &f, &n, &st, &e);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        if (!strstr(e.msg, bad[i].why) || !strstr(e.msg, "records.txt")) {
            fprintf(stderr, "\n  case %zu: expected '%s' in: %s\n", i, bad[i].why, e.msg);
            CU_FAIL("DIVA error message");
        }
        free(f);
    }
    /* a geometry with narrower words cannot take DIVA records */
    geometry narrow = g;
    narrow.bus_bits = 32;
    CU_ASSERT_EQUAL(diva_mem("", &narrow, &f, &n, &st, &err), APX_EINPUT);
    /* an empty file is an empty map */
    CU_ASSERT_EQUAL(diva_mem("", &g, &f, &n, &st, &err), APX_OK);
    CU_ASSERT_EQUAL(n, 0);
    free(f);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The summary total of a module at the timing in a raw file's name. */
static uint64_t summary_total(const char *summary, unsigned trcd, unsigned tras, unsigned trp) {
    FILE *fp = fopen(summary, "r");
    CU_ASSERT_FATAL(fp != NULL);
    char line[256];
    uint64_t total = UINT64_MAX;
    while (fgets(line, sizeof line, fp)) {
        unsigned a, b, c, wr;
        char s1[16], s2[16];
        unsigned long long t;
        if (sscanf(line, "READ 256ms %u %u %u %u : %15s %15s %llu", &a, &b, &c, &wr, s1, s2,
                   &t) == 7 && a == trcd && b == tras && c == trp)
            total = t;
    }
    fclose(fp);
    return total;
}

static void test_diva_samples(void) {
    /* Copies of raw files of the public data (tests/data/diva/README.md):
     * totals equal the sum of n and the module's summary; every fault sits
     * at a (bank, row, line) of its records, as many as their n. */
    struct {
        const char *raw, *summary;
        unsigned trcd, tras, trp;
        uint64_t second_rank;
    } samples[] = {
        {"vendorA_rawdata_01_5_15_5.gz", "vendorA_summary_01", 5, 15, 5, 0},
        {"vendorA_rawdata_03_5_15_3.gz", "vendorA_summary_03", 5, 15, 3, 3},
        {"vendorB_rawdata_03_5_14_4.gz", "vendorB_summary_03", 5, 14, 4, 0},
        {"vendorC_rawdata_04_5_14_4.gz", "vendorC_summary_04", 5, 14, 4, 0},
    };
    geometry g;
    fmap_diva_geometry(&g);
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char raw[512], summary[512];
        snprintf(raw, sizeof raw, "%s%s", DIVA_DIR, samples[i].raw);
        snprintf(summary, sizeof summary, "%s%s", DIVA_DIR, samples[i].summary);
        uint64_t expect = summary_total(summary, samples[i].trcd, samples[i].tras,
                                        samples[i].trp);
        CU_ASSERT_FATAL(expect != UINT64_MAX && expect > 0);
        fmap_provenance p;
        fmap_provenance_recorded(&p, samples[i].raw);
        fmap_diva_stats st;
        apx_error err;
        const char *out = test_path("sample.fmap");
        CU_ASSERT_EQUAL_FATAL(fmap_diva_import(raw, &g, &p, out, &st, &err), APX_OK);
        CU_ASSERT_EQUAL(st.sum_n, expect);
        CU_ASSERT_EQUAL(st.faults, expect);
        CU_ASSERT_EQUAL(st.second_rank, samples[i].second_rank);
        fmap_totals t;
        CU_ASSERT_EQUAL(fmap_file_check(out, &t, &err), APX_OK);
        CU_ASSERT_EQUAL(t.faults, expect);
        CU_ASSERT_EQUAL(t.per_kind[FAULT_FLIP], expect);
        /* the records, read here with zlib: one key (bank, row, line) per
         * error bit, n times; and one key per fault of the map */
        uint64_t *want = malloc(expect * sizeof *want), *have = malloc(expect * sizeof *have);
        size_t nw = 0, nh = 0;
        gzFile gz = gzopen(raw, "rb");
        char line[512];
        while (gzgets(gz, line, sizeof line)) {
            unsigned bank, row, col;
            unsigned long long w[8], nn;
            if (sscanf(line, "%u %u %u %llu %llu %llu %llu %llu %llu %llu %llu %llu", &bank, &row,
                       &col, &w[0], &w[1], &w[2], &w[3], &w[4], &w[5], &w[6], &w[7], &nn) != 12)
                continue;
            for (unsigned long long k = 0; k < nn && nw < expect; k++)
                want[nw++] = ((uint64_t)bank * 16384 + row) * 128 + col;
        }
        gzclose(gz);
        CU_ASSERT_EQUAL(nw, expect);
        fmap_reader *r;
        CU_ASSERT_EQUAL_FATAL(fmap_reader_open(&r, out, &err), APX_OK);
        const fmap_fault *f;
        size_t n;
        while (fmap_reader_next(r, &f, &n, &err) == APX_OK && n)
            for (size_t j = 0; j < n && nh < expect; j++) {
                cell c;
                geometry_cell_at(&g, f[j].cell, &c);
                have[nh++] = ((uint64_t)c.f[GEO_BA] * 16384 + c.f[GEO_RO]) * 128 + c.f[GEO_CO] / 8;
            }
        fmap_reader_close(r);
        CU_ASSERT_EQUAL(nh, expect);
        qsort(want, nw, sizeof *want, cmp_u64);
        qsort(have, nh, sizeof *have, cmp_u64);
        CU_ASSERT(nw == nh && memcmp(want, have, nw * sizeof *want) == 0);
        free(want);
        free(have);
    }
}

static void test_shipped_diva_map(void) {
    /* faultmaps/ ships vendor A module 01 at tRCD 5, tRAS 15, tRP 5 as a
     * .fmap: it still reads, and equals a fresh import of the raw records */
    apx_error err;
    size_t n, m;
    fmap_fault *shipped = read_file(APXSIM_SOURCE_ROOT "/faultmaps/diva-vendorA-01-5-15-5.fmap",
                                    &n, &err);
    if (!shipped) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_FATAL(shipped != NULL);
    CU_ASSERT_EQUAL(n, 619);
    geometry g;
    fmap_diva_geometry(&g);
    fmap_provenance p;
    fmap_provenance_recorded(&p, "x");
    CU_ASSERT_EQUAL_FATAL(fmap_diva_import(DIVA_DIR "vendorA_rawdata_01_5_15_5.gz", &g, &p,
                                           test_path("a01.fmap"), NULL, &err), APX_OK);
    fmap_fault *fresh = read_file(test_path("a01.fmap"), &m, &err);
    CU_ASSERT(fresh && m == n && same_faults(fresh, shipped, n));
    fmap_reader *r;
    CU_ASSERT_EQUAL_FATAL(fmap_reader_open(&r, APXSIM_SOURCE_ROOT
                                           "/faultmaps/diva-vendorA-01-5-15-5.fmap", &err), 0);
    CU_ASSERT(geometry_equal(fmap_reader_geometry(r), &g));
    CU_ASSERT_EQUAL(fmap_reader_provenance(r)->origin, FMAP_RECORDED);
    CU_ASSERT_PTR_NOT_NULL(strstr(fmap_reader_provenance(r)->source, "Lee et al."));
    fmap_reader_close(r);
    free(fresh);
    free(shipped);
}

/* ---- inspect ---- */

static void test_inspect(void) {
    geometry g = small_geo();
    fmap_provenance p = gen_prov();
    fmap_fault f[] = {
        {cell_of(&g, 0, 0, 0, 0, 0), 0, FMAP_FOREVER, FAULT_FLIP},
        {cell_of(&g, 0, 0, 0, 0, 1), 5, FMAP_FOREVER, FAULT_FLIP},
        {cell_of(&g, 0, 3, 200, 10, 63), 0, FMAP_FOREVER, FAULT_STUCK0},
        {cell_of(&g, 1, 1, 255, 63, 32), 0, 10, FAULT_DD1},
    };
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(write_map(test_path("i.fmap"), &g, &p, f, 4, &err), APX_OK);
    fmap_stats st;
    CU_ASSERT_EQUAL(fmap_inspect(test_path("i.fmap"), 3, &st, &err), APX_EINPUT);  /* bins */
    CU_ASSERT_EQUAL_FATAL(fmap_inspect(test_path("i.fmap"), 4, &st, &err), APX_OK);
    CU_ASSERT_EQUAL(st.totals.faults, 4);
    CU_ASSERT_EQUAL(st.totals.frames, 1);
    CU_ASSERT_EQUAL(st.totals.per_kind[FAULT_FLIP], 2);
    CU_ASSERT_EQUAL(st.totals.per_kind[FAULT_DD1], 1);
    CU_ASSERT_EQUAL(st.cells, 8388608);
    CU_ASSERT_DOUBLE_EQUAL(st.ber, 4.0 / 8388608, 1e-15);
    CU_ASSERT_EQUAL(st.permanent, 2);
    CU_ASSERT_EQUAL(st.max_frame, 4);
    CU_ASSERT_EQUAL(st.first_cell, f[0].cell);
    CU_ASSERT_EQUAL(st.last_cell, f[3].cell);
    /* banks: 8 flat banks (2 ranks x 4) in 4 bins of 2: bank 0,0,3 -> bins 0,0,1; rank 1
     * bank 1 = flat 5 -> bin 2 */
    const fmap_hist *b = &st.hist[FMAP_AXIS_BANK];
    CU_ASSERT_EQUAL(b->bins, 4);
    CU_ASSERT_EQUAL(b->width, 2);
    CU_ASSERT(b->count[0] == 2 && b->count[1] == 1 && b->count[2] == 1 && b->count[3] == 0);
    const fmap_hist *r = &st.hist[FMAP_AXIS_ROW];
    CU_ASSERT(r->width == 64 && r->count[0] == 2 && r->count[3] == 2);
    const fmap_hist *bit = &st.hist[FMAP_AXIS_BIT];
    CU_ASSERT(bit->width == 16 && bit->count[0] == 2 && bit->count[2] == 1 && bit->count[3] == 1);
    CU_ASSERT_STRING_EQUAL(st.prov.device, "uniform");
}

/* ---- data-dependent faults in memory ---- */

static void test_apply_data_dependent(void) {
    uint64_t img[1] = {0xf0};  /* bits 4..7 hold 1 */
    fmap m;
    apx_error err;
    fmap_init(&m, 64);
    CU_ASSERT_EQUAL(fmap_push(&m, 0, FAULT_DD0, &err), APX_OK);  /* stores 0: fails, reads 1 */
    CU_ASSERT_EQUAL(fmap_push(&m, 1, FAULT_DD1, &err), APX_OK);  /* stores 0: fine */
    CU_ASSERT_EQUAL(fmap_push(&m, 4, FAULT_DD0, &err), APX_OK);  /* stores 1: fine */
    CU_ASSERT_EQUAL(fmap_push(&m, 5, FAULT_DD1, &err), APX_OK);  /* stores 1: fails, reads 0 */
    CU_ASSERT_EQUAL(fmap_push(&m, 6, FAULT_KINDS, &err), APX_EWORK);
    CU_ASSERT_EQUAL(fmap_check(&m, &err), APX_OK);
    fmap_layout where = {img, 1, 64, 1};
    CU_ASSERT_EQUAL(fmap_apply(&m, &where), 2);
    CU_ASSERT_EQUAL(img[0], 0xd1);
    /* applying again changes nothing more: both failed cells now hold the other value */
    CU_ASSERT_EQUAL(fmap_apply(&m, &where), 0);
    fmap_free(&m);
    CU_ASSERT_STRING_EQUAL(fault_kind_name(FAULT_DD0), "dd0");
    CU_ASSERT_EQUAL(fault_kind_parse("stuck1"), FAULT_STUCK1);
    CU_ASSERT_EQUAL(fault_kind_parse("dd2"), -1);
    CU_ASSERT_STRING_EQUAL(fault_kind_name(99), "?");
}

void add_fmap_file_suite(void) {
    TEST_SUITE("fmap_file",
               {"write and read back, frame by frame", test_roundtrip},
               {"the writer refuses bad faults and leaves no file", test_writer_refuses},
               {"docs/fmap.md encoder agrees with reader and writer", test_own_encoder_agrees},
               {"every corrupted byte and truncation is refused", test_corrupt_every_byte},
               {"hostile files with valid CRCs are refused", test_hostile},
               {"sorter: runs, merges, duplicates", test_sorter},
               {"CSV import and export round trip", test_csv_import_export},
               {"CSV errors name line and column", test_csv_errors},
               {"DIVA records: bit positions and errors", test_diva_records},
               {"DIVA samples: totals and placement", test_diva_samples},
               {"shipped DIVA map reads and matches", test_shipped_diva_map},
               {"inspect: totals, BER, histograms", test_inspect},
               {"data-dependent kinds in fmap_apply", test_apply_data_dependent});
}
