/* test_npz.c - NumPy .npz archives and the BNN importer (workloads/npz.h).
 *
 * numpy is not needed: the tests write .npy files and zip archives byte by
 * byte (a small zip writer below, with STORED and DEFLATED entries and the
 * zip64 local extra fields that numpy.savez always writes). The importer is
 * checked against a naive float network computed here from the same arrays
 * (PyTorch semantics: CHW tensors, zero padding, max-pool before batch norm,
 * batch norm + sign in double, flatten in CHW order): on random inputs the
 * imported model's integer class scores must equal the reference's. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "sim/rng.h"
#include "tests.h"
#include "workloads/bnn.h"
#include "workloads/npz.h"

#define ASSERT_HAS(msg, sub)                                                          \
    do {                                                                              \
        int has_ = strstr((msg), (sub)) != NULL;                                     \
        if (!has_) fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", (msg), (sub)); \
        CU_ASSERT(has_);                                                              \
    } while (0)

/* ---- bytes ---------------------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        CU_ASSERT_FATAL(b->p != NULL);
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void b_u16(bytes *b, uint32_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    b_put(b, x, 2);
}
static void b_u32(bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    b_put(b, x, 4);
}
static void b_u64(bytes *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_str(bytes *b, const char *s) { b_put(b, s, strlen(s)); }
static void set_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void set_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- .npy ------------------------------------------------------------------- */

/* A .npy file with the given header dict text (version 1.0 unless major is
 * 2 or 3), padded as numpy pads it: to a multiple of 64 bytes, ending in
 * '\n'. */
static void npy_raw(bytes *out, int major, const char *dict, const void *data, size_t len) {
    size_t pre = major == 1 ? 10 : 12;
    size_t hl = strlen(dict) + 1;
    size_t total = (pre + hl + 63) / 64 * 64;
    hl = total - pre;
    b_put(out, "\x93NUMPY", 6);
    uint8_t ver[2] = {(uint8_t)major, 0};
    b_put(out, ver, 2);
    if (major == 1)
        b_u16(out, (uint32_t)hl);
    else
        b_u32(out, (uint32_t)hl);
    b_str(out, dict);
    for (size_t i = strlen(dict); i + 1 < hl; i++) b_put(out, " ", 1);
    b_put(out, "\n", 1);
    b_put(out, data, len);
}

/* A float32 array of the given shape (numpy's own header text). */
static void npy_f32(bytes *out, const float *v, int ndim, const uint64_t *shape) {
    char dict[256];
    size_t n = (size_t)snprintf(dict, sizeof dict,
                                "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
        count *= shape[d];
    }
    snprintf(dict + n, sizeof dict - n, "%s), }", ndim == 1 ? "," : "");
    bytes data = {0};
    for (size_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b_u32(&data, u);
    }
    npy_raw(out, 1, dict, data.p, data.n);
    free(data.p);
}

/* ---- a small zip writer ---------------------------------------------------------- */

#define ZIP_MAX 64
typedef struct zip_writer {
    bytes out;
    size_t n;
    struct {
        char name[300];
        uint32_t crc, method;
        uint64_t comp, uncomp, local;
    } e[ZIP_MAX];
} zip_writer;

/* Adds an entry; deflated or stored; zip64 as numpy writes it (local sizes
 * 0xffffffff, real sizes in a zip64 extra field) or plain 32-bit sizes. */
static void zip_add(zip_writer *z, const char *name, const uint8_t *data, size_t len,
                    int deflated, int zip64) {
    CU_ASSERT_FATAL(z->n < ZIP_MAX);
    bytes body = {0};
    if (deflated) {
        z_stream s;
        memset(&s, 0, sizeof s);
        CU_ASSERT_FATAL(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        uLong bound = deflateBound(&s, (uLong)len);
        body.p = malloc(bound + 1);
        s.next_in = (Bytef *)(uintptr_t)data;
        s.avail_in = (uInt)len;
        s.next_out = body.p;
        s.avail_out = (uInt)bound + 1;
        CU_ASSERT_FATAL(deflate(&s, Z_FINISH) == Z_STREAM_END);
        body.n = s.total_out;
        deflateEnd(&s);
    } else {
        b_put(&body, data, len);
    }
    size_t i = z->n++;
    snprintf(z->e[i].name, sizeof z->e[i].name, "%s", name);
    z->e[i].crc = (uint32_t)crc32(0L, data, (uInt)len);
    z->e[i].method = deflated ? 8 : 0;
    z->e[i].comp = body.n;
    z->e[i].uncomp = len;
    z->e[i].local = z->out.n;
    bytes *o = &z->out;
    b_u32(o, 0x04034b50u);
    b_u16(o, zip64 ? 45 : 20);
    b_u16(o, 0);
    b_u16(o, z->e[i].method);
    b_u16(o, 0);
    b_u16(o, 0x21);
    b_u32(o, z->e[i].crc);
    b_u32(o, zip64 ? 0xffffffffu : (uint32_t)body.n);
    b_u32(o, zip64 ? 0xffffffffu : (uint32_t)len);
    b_u16(o, (uint32_t)strlen(name));
    b_u16(o, zip64 ? 20 : 0);
    b_str(o, name);
    if (zip64) {
        b_u16(o, 1);
        b_u16(o, 16);
        b_u64(o, len);
        b_u64(o, body.n);
    }
    b_put(o, body.p, body.n);
    free(body.p);
}

/* The central directory and the end record; returns the archive. */
static uint8_t *zip_finish(zip_writer *z, size_t *len) {
    bytes *o = &z->out;
    size_t cd = o->n;
    for (size_t i = 0; i < z->n; i++) {
        b_u32(o, 0x02014b50u);
        b_u16(o, 0x031e);
        b_u16(o, 20);
        b_u16(o, 0);
        b_u16(o, z->e[i].method);
        b_u16(o, 0);
        b_u16(o, 0x21);
        b_u32(o, z->e[i].crc);
        b_u32(o, (uint32_t)z->e[i].comp);
        b_u32(o, (uint32_t)z->e[i].uncomp);
        b_u16(o, (uint32_t)strlen(z->e[i].name));
        b_u16(o, 0);
        b_u16(o, 0);
        b_u16(o, 0);
        b_u16(o, 0);
        b_u32(o, 0x01800000u);
        b_u32(o, (uint32_t)z->e[i].local);
        b_str(o, z->e[i].name);
    }
    size_t cd_size = o->n - cd;
    b_u32(o, 0x06054b50u);
    b_u16(o, 0);
    b_u16(o, 0);
    b_u16(o, (uint32_t)z->n);
    b_u16(o, (uint32_t)z->n);
    b_u32(o, (uint32_t)cd_size);
    b_u32(o, (uint32_t)cd);
    b_u16(o, 0);
    *len = o->n;
    uint8_t *p = o->p;
    memset(z, 0, sizeof *z);
    return p;
}

/* ---- .npy tests --------------------------------------------------------------------- */

/* Parses dict + data as a .npy; returns the error message ("" on success,
 * with *a filled; the caller frees it). */
static const char *npy_try(int major, const char *dict, const void *data, size_t len,
                           npz_array *a) {
    static apx_error err;
    memset(&err, 0, sizeof err);
    bytes f = {0};
    npy_raw(&f, major, dict, data, len);
    npz_array tmp;
    int rc = npy_parse(f.p, f.n, "t.npy", &tmp, &err);
    free(f.p);
    if (rc == APX_OK) {
        if (a)
            *a = tmp;
        else
            npz_array_free(&tmp);
        return "";
    }
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    CU_ASSERT(strncmp(err.msg, "t.npy: ", 7) == 0);
    return err.msg;
}

static void test_npy(void) {
    npz_array a;
    /* every dtype, with values that show sign and width are read right */
    static const struct {
        const char *descr;
        uint8_t bytes[8];
        size_t size;
        double want;
    } one[] = {
        {"|b1", {1}, 1, 1},
        {"|i1", {0xfe}, 1, -2},
        {"<i1", {0x7f}, 1, 127},
        {"|u1", {0xfe}, 1, 254},
        {"<i2", {0x00, 0x80}, 2, -32768},
        {"<u2", {0xff, 0xff}, 2, 65535},
        {"<i4", {0xff, 0xff, 0xff, 0xff}, 4, -1},
        {"<u4", {0x00, 0x00, 0x00, 0x80}, 4, 2147483648.0},
        {"<i8", {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, -2},
        {"<u8", {0, 0, 0, 0, 0, 0, 0, 0x40}, 8, 4611686018427387904.0},
        {"<f4", {0x00, 0x00, 0xc0, 0xbf}, 4, -1.5},
        {"<f8", {0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 8, 1.0},
    };
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }",
                 one[i].descr);
        const char *msg = npy_try(1, dict, one[i].bytes, one[i].size, &a);
        CU_ASSERT_STRING_EQUAL(msg, "");
        if (*msg) continue;
        CU_ASSERT_EQUAL(a.count, 1);
        CU_ASSERT_EQUAL(a.item_size, one[i].size);
        CU_ASSERT_EQUAL(npz_value(&a, 0), one[i].want);
        npz_array_free(&a);
    }
    /* shapes: scalar, 2-D, a zero dimension, Python 2 longs, double quotes,
     * key order, versions 2.0 and 3.0 */
    float six[6] = {0, 1, 2, 3, 4, 5};
    CU_ASSERT_STRING_EQUAL(
        npy_try(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", six, 4, &a), "");
    CU_ASSERT(a.ndim == 0 && a.count == 1);
    npz_array_free(&a);
    CU_ASSERT_STRING_EQUAL(
        npy_try(2, "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}", six, 24,
                &a),
        "");
    CU_ASSERT(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.count == 6);
    CU_ASSERT_EQUAL(npz_value(&a, 5), 5.0);
    npz_array_free(&a);
    CU_ASSERT_STRING_EQUAL(
        npy_try(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 0L)}", six, 0, &a), "");
    CU_ASSERT(a.count == 0);
    npz_array_free(&a);

    /* hostile and unsupported headers */
    static const struct {
        int major;
        const char *dict;
        size_t len;
        const char *want;
    } bad[] = {
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }", 24,
         "fortran_order True is not supported"},
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", 24,
         "dtype '>f4' is not little endian"},
        {1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", 24,
         "dtype '<c8' is not supported"},
        {1, "{'descr': '|O', 'fortran_order': False, 'shape': (6,), }", 24,
         "dtype '|O' is not supported"},
        {1, "{'descr': '|f4', 'fortran_order': False, 'shape': (6,), }", 24,
         "dtype '|f4' is not supported"},
        {1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", 24,
         "structured arrays are not supported"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", 24,
         "'shape' is not a tuple"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", 24,
         "negative dimension"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,6), }", 24,
         "more than 8 dimensions"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 24,
         "dimension too large"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
         24, "shape (1099511627776, 1099511627776) of 4-byte elements does not match the 24 "
             "bytes of data"},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }", 24,
         "does not match the 24 bytes"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }", 24,
         "shape (7,) of 4-byte elements does not match the 24 bytes of data"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 24,
         "shape (5,) of 4-byte elements does not match the 24 bytes of data"},
        {1, "{'descr': '<f4', 'fortran_order': False}", 24, "no 'shape'"},
        {1, "{'descr': '<f4', 'shape': (6,)}", 24, "no 'fortran_order'"},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", 24,
         "unexpected or repeated key 'descr'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}", 24,
         "unexpected or repeated key 'extra'"},
        {1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}", 24,
         "'fortran_order' is not True or False"},
        {1, "{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}", 24, ".npy header (byte"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x", 24,
         "unexpected text after the dict"},
        {1, "['descr', '<f4']", 24, "expected a dict"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", 24, "expected ',' or '}'"},
    };
    char zeros[64] = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *msg = npy_try(bad[i].major, bad[i].dict, zeros, bad[i].len, NULL);
        ASSERT_HAS(msg, bad[i].want);
    }
    /* the preamble: magic, version, a header length past the end */
    apx_error err = {0};
    bytes f = {0};
    npy_raw(&f, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", six, 24);
    uint8_t *c = malloc(f.n);
    memcpy(c, f.p, f.n);
    c[1] = 'n';
    CU_ASSERT_EQUAL(npy_parse(c, f.n, "t.npy", &a, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "t.npy: not a .npy array (bad magic)");
    memcpy(c, f.p, f.n);
    c[6] = 4;
    CU_ASSERT_EQUAL(npy_parse(c, f.n, "t.npy", &a, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "byte 6: .npy format version 4.0");
    memcpy(c, f.p, f.n);
    c[7] = 1;
    CU_ASSERT_EQUAL(npy_parse(c, f.n, "t.npy", &a, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "version 1.1");
    memcpy(c, f.p, f.n);
    set_u16(c + 8, 0xffff);
    CU_ASSERT_EQUAL(npy_parse(c, f.n, "t.npy", &a, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "byte 8: .npy header of 65535 bytes runs past the end");
    /* every truncation is refused, and never read past (ASan) */
    for (size_t cut = 0; cut < f.n; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, f.p, cut);
        CU_ASSERT_EQUAL(npy_parse(p, cut, "t.npy", &a, &err), APX_EINPUT);
        free(p);
    }
    free(c);
    free(f.p);
}

/* ---- .npz archives --------------------------------------------------------------- */

/* An archive with three arrays: "w" (2x3 float32, stored, zip64 local
 * header as numpy writes), "b" (100 float32, deflated, zip64) and "s"
 * (scalar, deflated, plain 32-bit local header). */
static float w_vals[6] = {1.5f, -2, 0, 3, -0.25f, 7};
static uint8_t *sample_npz(size_t *len) {
    zip_writer z;
    memset(&z, 0, sizeof z);
    bytes f = {0};
    uint64_t sh[2] = {2, 3};
    npy_f32(&f, w_vals, 2, sh);
    zip_add(&z, "w.npy", f.p, f.n, 0, 1);
    f.n = 0;
    float b[100];
    for (int i = 0; i < 100; i++) b[i] = (float)(i % 7) - 3;
    uint64_t n100 = 100;
    npy_f32(&f, b, 1, &n100);
    zip_add(&z, "b.npy", f.p, f.n, 1, 1);
    f.n = 0;
    float s = 0.125f;
    npy_f32(&f, &s, 0, NULL);
    zip_add(&z, "s.npy", f.p, f.n, 1, 0);
    free(f.p);
    return zip_finish(&z, len);
}

/* Opens buf and reads every array; "" on success (and then the arrays
 * equal the sample's), else the error. */
static const char *npz_try(const uint8_t *buf, size_t len) {
    static apx_error err;
    memset(&err, 0, sizeof err);
    npz *z = NULL;
    if (npz_open_buffer(buf, len, "t.npz", &z, &err)) return err.msg;
    const char *names[3] = {"w", "b", "s"};
    int same = 1;
    for (int i = 0; i < 3; i++) {
        npz_array a;
        if (npz_read_array(z, names[i], &a, &err)) {
            npz_close(z);
            return err.msg;
        }
        if (i == 0) {
            same &= a.count == 6 && a.ndim == 2;
            for (size_t k = 0; k < a.count && same; k++) same &= npz_value(&a, k) == w_vals[k];
        } else if (i == 1) {
            same &= a.count == 100;
            for (size_t k = 0; k < a.count && same; k++)
                same &= npz_value(&a, k) == (double)(k % 7) - 3;
        } else {
            same &= a.count == 1 && a.ndim == 0 && npz_value(&a, 0) == 0.125;
        }
        npz_array_free(&a);
    }
    npz_close(z);
    CU_ASSERT(same);
    return "";
}

static void test_npz_read(void) {
    size_t len;
    uint8_t *buf = sample_npz(&len);
    CU_ASSERT_STRING_EQUAL(npz_try(buf, len), "");
    apx_error err = {0};
    npz *z = NULL;
    CU_ASSERT_EQUAL_FATAL(npz_open_buffer(buf, len, "t.npz", &z, &err), APX_OK);
    CU_ASSERT_EQUAL(npz_count(z), 3);
    CU_ASSERT_STRING_EQUAL(npz_entry_name(z, 1), "b.npy");
    CU_ASSERT_PTR_NULL(npz_entry_name(z, 3));
    /* by the entry's full name too; a missing one is named */
    npz_array a;
    CU_ASSERT_EQUAL(npz_read_array(z, "w.npy", &a, &err), APX_OK);
    CU_ASSERT_EQUAL(a.shape[1], 3);
    npz_array_free(&a);
    CU_ASSERT_EQUAL(npz_read_array(z, "x", &a, &err), APX_EINPUT);
    CU_ASSERT_STRING_EQUAL(err.msg, "t.npz: no array 'x'");
    CU_ASSERT_STRING_EQUAL(npz_nearest(z, "ww"), "w.npy");
    CU_ASSERT_PTR_NULL(npz_nearest(z, "completely.different"));
    npz_close(z);
    /* through a file; and files that are not archives */
    const char *p = test_write_file("t.npz", buf, len);
    CU_ASSERT_EQUAL_FATAL(npz_open(p, &z, &err), APX_OK);
    CU_ASSERT_EQUAL(npz_read_array(z, "b", &a, &err), APX_OK);
    CU_ASSERT_EQUAL(a.count, 100);
    npz_array_free(&a);
    npz_close(z);
    CU_ASSERT_EQUAL(npz_open(test_path("missing.npz"), &z, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "missing.npz: cannot open");
    CU_ASSERT_EQUAL(npz_open(test_tmpdir(), &z, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "not a regular file");
    p = test_write_file("text.npz", "hello, this is not a zip archive at all", 39);
    CU_ASSERT_EQUAL(npz_open(p, &z, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "text.npz: not a zip archive (.npz): no end of central directory record");
    p = test_write_file("empty.npz", "", 0);
    CU_ASSERT_EQUAL(npz_open(p, &z, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "empty.npz: not a zip archive (.npz): 0 bytes is too short");
    /* an archive with no entries is valid (numpy.savez with no arrays) */
    zip_writer zw;
    memset(&zw, 0, sizeof zw);
    size_t elen;
    uint8_t *empty = zip_finish(&zw, &elen);
    CU_ASSERT_EQUAL(elen, 22);
    CU_ASSERT_EQUAL(npz_open_buffer(empty, elen, "e.npz", &z, &err), APX_OK);
    CU_ASSERT_EQUAL(npz_count(z), 0);
    npz_close(z);
    free(empty);
    free(buf);
}

/* Offsets in the sample archive. */
typedef struct sample_layout {
    size_t local[3], data[3], central[3], end;
} sample_layout;

static sample_layout layout_of(const uint8_t *buf, size_t len) {
    sample_layout L;
    memset(&L, 0, sizeof L);
    L.end = len - 22;
    size_t cd = get_u32(buf + L.end + 16), p = cd;
    for (uint32_t i = 0; i < buf[L.end + 10] && i < 3; i++) {
        L.central[i] = p;
        L.local[i] = get_u32(buf + p + 42);
        size_t nlen = buf[L.local[i] + 26], xlen = buf[L.local[i] + 28];
        L.data[i] = L.local[i] + 30 + nlen + xlen;
        p += 46 + buf[p + 28];
    }
    return L;
}

/* A copy of the sample with one edit; expects the message. */
#define EDIT(stmt, want)                                  \
    do {                                                  \
        uint8_t *c = malloc(len);                         \
        memcpy(c, buf, len);                              \
        stmt;                                             \
        const char *msg_ = npz_try(c, len);               \
        ASSERT_HAS(msg_, want);                           \
        free(c);                                          \
    } while (0)

static void test_npz_hostile(void) {
    size_t len;
    uint8_t *buf = sample_npz(&len);
    sample_layout L = layout_of(buf, len);
    CU_ASSERT_EQUAL(get_u32(buf + L.local[2]), 0x04034b50u);
    CU_ASSERT_EQUAL(get_u32(buf + L.central[2]), 0x02014b50u);

    /* the end record */
    EDIT(c[L.end] ^= 1, "no end of central directory record");
    EDIT(set_u16(c + L.end + 20, 1), "no end of central directory record");
    EDIT(set_u16(c + L.end + 4, 1), "multi-disk archive (disk 1");
    EDIT(set_u16(c + L.end + 8, 2), "multi-disk archive");
    EDIT((set_u16(c + L.end + 8, 0xffff), set_u16(c + L.end + 10, 0xffff)),
         "a zip64 end record (archives over 4 GiB or 65535 entries) is not supported");
    EDIT(set_u32(c + L.end + 16, (uint32_t)len), "runs past the end record");
    EDIT(set_u32(c + L.end + 12, 0xfffffff0u), "runs past the end record");
    EDIT((set_u16(c + L.end + 8, 200), set_u16(c + L.end + 10, 200)),
         "200 entries cannot fit in a central directory of");
    EDIT((set_u16(c + L.end + 8, 2), set_u16(c + L.end + 10, 2)),
         "central directory: 51 bytes after its 2 entries");
    EDIT((set_u16(c + L.end + 8, 0), set_u16(c + L.end + 10, 0)),
         "central directory: 153 bytes after its 0 entries (byte 462)");
    /* central entries */
    EDIT(c[L.central[1]] ^= 1, "central directory entry 1 (byte");
    EDIT(c[L.central[1]] ^= 1, "bad signature 0x02014b51");
    EDIT(set_u16(c + L.central[2] + 28, 200), "central directory entry 2 (byte");
    EDIT(set_u16(c + L.central[2] + 28, 200), "run past the directory's end");
    EDIT(set_u16(c + L.central[0] + 8, 1), "entry 'w.npy' is encrypted");
    EDIT(set_u16(c + L.central[0] + 10, 12),
         "entry 'w.npy': compression method 12 is not supported");
    EDIT(set_u32(c + L.central[0] + 20, 5), "stored, but its sizes differ");
    EDIT(set_u32(c + L.central[1] + 24, 0x7fffffffu), "cannot inflate to the 2147483647");
    EDIT((set_u32(c + L.central[1] + 20, 0x7fffffffu),
          set_u32(c + L.local[1] + 30 + 5 + 12, 0x7fffffffu)),
         "entry 'b.npy' (data at byte 262): 2147483647 bytes of data run past the start of the "
         "central directory (byte 462)");
    EDIT(set_u32(c + L.central[1] + 20, 0x7fffffffu),
         "sizes 95/528 (compressed/uncompressed), the central directory says 2147483647/528");
    EDIT(set_u32(c + L.central[0] + 42, (uint32_t)L.end), "lies beyond the start of the central");
    EDIT(set_u32(c + L.central[0] + 42, 0xffffffffu), "without its zip64 value");
    EDIT(set_u32(c + L.central[2] + 42, (uint32_t)L.local[1]),
         "entry 's.npy' (local header at byte 207): the local name differs");
    EDIT(set_u16(c + L.central[0] + 34, 3), "starts on disk 3");
    EDIT((c[L.central[2] + 46] = 'b', c[L.local[2] + 30] = 'b'), "entry 'b.npy' appears twice");
    EDIT(c[L.central[2] + 46] = 0, "no NUL");
    EDIT(set_u16(c + L.central[2] + 30, 3), "run past the directory's end");
    /* local headers */
    EDIT(c[L.local[1] + 1] ^= 1, "entry 'b.npy' (local header at byte");
    EDIT(c[L.local[1] + 1] ^= 1, "bad signature");
    EDIT(c[L.local[1] + 30] = 'x', "the local name differs");
    EDIT(set_u16(c + L.local[1] + 8, 0),
         "flags 0x0000 and method 0 differ from the central directory's 0x0000 and 8");
    EDIT(set_u16(c + L.local[1] + 6, 8), "flags 0x0008 and method 8 differ");
    EDIT(c[L.local[2] + 14] ^= 1, "CRC-32");
    EDIT(c[L.local[2] + 14] ^= 1, "the central directory says");
    EDIT(set_u32(c + L.local[2] + 18, 3), "sizes 3/");
    EDIT(set_u16(c + L.local[0] + 30 + 5, 2), "without a valid zip64 extra field");
    EDIT(set_u16(c + L.local[0] + 30 + 5 + 2, 8), "without a valid zip64 extra field");
    EDIT(set_u16(c + L.local[2] + 28, 0xffff), "name and extra field run into the central");
    /* the data: CRC, deflate stream, sizes */
    EDIT(c[L.data[0] + 100] ^= 0x10,
         "t.npz: 'w.npy': CRC-32 mismatch: the data give");
    EDIT(c[L.data[1] + 20] ^= 0x55, "t.npz: 'b.npy': ");
    EDIT((set_u32(c + L.central[1] + 24, (uint32_t)(get_u32(c + L.central[1] + 24) + 1)),
          set_u32(c + L.local[1] + 30 + 5 + 4, get_u32(c + L.central[1] + 24))),
         "inflates to 528 bytes, the directory says 529");
    EDIT((set_u32(c + L.central[1] + 24, (uint32_t)(get_u32(c + L.central[1] + 24) - 1)),
          set_u32(c + L.local[1] + 30 + 5 + 4, get_u32(c + L.central[1] + 24))),
         "inflates to more than the 527 bytes the directory says");
    free(buf);

    /* overlapping entries: the second entry's central record points into
     * the first one's data (with a local header copied there) */
    zip_writer z;
    memset(&z, 0, sizeof z);
    uint8_t big[400];
    memset(big, 7, sizeof big);
    zip_add(&z, "a.npy", big, sizeof big, 0, 0);
    zip_add(&z, "c.npy", big, 10, 0, 0);
    buf = zip_finish(&z, &len);
    L = layout_of(buf, len);
    memcpy(buf + 100, buf + 30 + 5 + 400, 30 + 5 + 10);
    set_u32(buf + L.central[1] + 42, 100);
    apx_error err = {0};
    npz *zz = NULL;
    CU_ASSERT_EQUAL(npz_open_buffer(buf, len, "o.npz", &zz, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "o.npz: entries 'a.npy' and 'c.npy' overlap (byte 100)");
    /* a data descriptor archive (flag 3, as zipfile writes to a pipe):
     * local CRC and sizes 0, the central directory holds them */
    free(buf);
    memset(&z, 0, sizeof z);
    zip_add(&z, "a.npy", big, 40, 0, 0);
    buf = zip_finish(&z, &len);
    L = layout_of(buf, len);
    set_u16(buf + 6, 8);
    set_u16(buf + L.central[0] + 8, 8);
    memset(buf + 14, 0, 12);
    CU_ASSERT_EQUAL(npz_open_buffer(buf, len, "d.npz", &zz, &err), APX_OK);
    npz_array a;
    CU_ASSERT_EQUAL(npz_read_array(zz, "a", &a, &err), APX_EINPUT); /* not a .npy inside */
    ASSERT_HAS(err.msg, "d.npz: 'a.npy': not a .npy array (bad magic)");
    npz_close(zz);
    free(buf);
}

/* Every prefix is refused; every single-byte change is either refused or
 * reads exactly the original arrays (it hit a field the reader ignores,
 * such as a timestamp). Never a crash or a read out of bounds (ASan). */
static void test_npz_sweeps(void) {
    size_t len;
    uint8_t *buf = sample_npz(&len);
    unsigned bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        if (!*npz_try(p, cut) && !bad++) fprintf(stderr, "\n  prefix %zu accepted\n", cut);
        free(p);
    }
    CU_ASSERT_EQUAL(bad, 0);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    unsigned refused = 0, tried = 0;
    uint8_t *c = malloc(len);
    for (size_t pos = 0; pos < len; pos++)
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(c, buf, len);
            c[pos] ^= flips[f];
            tried++;
            if (*npz_try(c, len)) refused++; /* else npz_try checked the values */
        }
    /* most bytes matter: names, sizes, offsets, data (CRC) */
    CU_ASSERT(refused > tried * 3 / 4);
    free(c);
    free(buf);
}

/* ---- the importer: a float network and its reference ------------------------------ */

typedef struct flayer {
    int conv;
    uint32_t pool, out;
    uint32_t in_h, in_w, in_c, fan; /* input geometry; fan = weights per output */
    float *w;                       /* PyTorch: conv [out][in_c][3][3], dense [out][C*H*W] */
    float *g, *b, *mu, *var;        /* hidden layers */
    double eps;
    int bn_map;                     /* manifest: bn as a mapping (else a name prefix) */
} flayer;

typedef struct fmodel {
    uint32_t h, w, c;
    double in_scale;
    int zero_plus;                  /* 0 binarises to +1 (sign_of_zero: +1) */
    uint32_t n;
    flayer L[8];
    float out_scale;
} fmodel;

typedef struct lspec {
    int conv;
    uint32_t out, pool;
} lspec;

static void fmodel_free(fmodel *f) {
    for (uint32_t l = 0; l < f->n; l++) {
        free(f->L[l].w);
        free(f->L[l].g);
        free(f->L[l].b);
        free(f->L[l].mu);
        free(f->L[l].var);
    }
    memset(f, 0, sizeof *f);
}

/* A random float network. ties: batch norms that hit 0 exactly for some
 * reachable pre-activations (gamma +-1 or +-2, beta 0, var + eps = 1, an
 * integer mean) and weights that are exactly 0, so that the binariser's
 * rule for 0 decides outputs. */
static void fmodel_random(fmodel *f, uint64_t seed, uint32_t h, uint32_t w, uint32_t c,
                          double in_scale, uint32_t n, const lspec *spec, int ties) {
    memset(f, 0, sizeof *f);
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 0x5a, 0), 0, 0);
    f->h = h, f->w = w, f->c = c, f->in_scale = in_scale, f->n = n;
    f->out_scale = 0.001f + (float)rng_unit(&s);
    uint32_t H = h, W = w, C = c;
    for (uint32_t l = 0; l < n; l++) {
        flayer *L = &f->L[l];
        L->conv = spec[l].conv;
        L->out = spec[l].out;
        L->pool = spec[l].pool ? spec[l].pool : 1;
        L->in_h = H, L->in_w = W, L->in_c = C;
        L->fan = L->conv ? 9 * C : H * W * C;
        size_t nw = (size_t)L->out * L->fan;
        L->w = malloc(nw * sizeof *L->w);
        for (size_t i = 0; i < nw; i++) {
            uint32_t r = (uint32_t)rng_below(&s, 100);
            L->w[i] = r < (ties ? 15u : 3u) ? 0.0f : (float)(2 * rng_unit(&s) - 1);
        }
        if (L->conv) {
            H /= L->pool, W /= L->pool, C = L->out;
        } else {
            H = W = 1, C = L->out;
        }
        if (l + 1 == n) break;
        L->g = malloc(L->out * sizeof(float));
        L->b = malloc(L->out * sizeof(float));
        L->mu = malloc(L->out * sizeof(float));
        L->var = malloc(L->out * sizeof(float));
        L->eps = ties ? 0.25 : 1e-5;
        L->bn_map = ties ? 1 : (int)(l % 2);
        /* the spread of the pre-activation: binary inputs ~ sqrt(fan),
         * the first layer's p / scale ~ sqrt(fan / 3) */
        double spread = sqrt((double)L->fan) * (l == 0 ? 0.6 * 255.0 / in_scale : 1.0);
        for (uint32_t i = 0; i < L->out; i++) {
            if (ties && l > 0 && i % 2 == 0) {
                static const float gs[4] = {1, -1, 2, -2};
                L->g[i] = gs[rng_below(&s, 4)];
                L->b[i] = 0;
                L->var[i] = 0.75f; /* + eps 0.25 = 1 exactly */
                /* a = mean is reachable: same parity as the fan-in */
                int64_t k = (int64_t)rng_below(&s, 5) - 2;
                L->mu[i] = (float)((int64_t)(L->fan % 2) + 2 * k);
            } else {
                L->g[i] = i == 3 ? 0.0f : (float)(3 * rng_unit(&s) - 1.5);
                L->b[i] = (float)(2 * rng_unit(&s) - 1);
                L->mu[i] = (float)(spread * (2 * rng_unit(&s) - 1) * 0.5);
                L->var[i] = (float)(spread * spread * (0.2 + rng_unit(&s)));
            }
        }
    }
}

static double sgn_w(const fmodel *f, float v) {
    return v > 0 || (f->zero_plus && v == 0) ? 1.0 : -1.0;
}

/* The float network on one image (pixels HWC, as apxsim stores them):
 * tensors CHW, zero padding, max-pool of the pre-activation, then batch
 * norm + sign in double; the integer class scores (before the scale). */
static void reference(const fmodel *f, const uint8_t *px, double *scores) {
    uint32_t H = f->h, W = f->w, C = f->c;
    double *x = malloc((size_t)H * W * C * sizeof *x);
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t w = 0; w < W; w++)
            for (uint32_t c = 0; c < C; c++)
                x[((size_t)c * H + h) * W + w] = px[((size_t)h * W + w) * C + c] / f->in_scale;
    for (uint32_t l = 0; l < f->n; l++) {
        const flayer *L = &f->L[l];
        uint32_t Ho = L->conv ? H / L->pool : 1, Wo = L->conv ? W / L->pool : 1;
        double *a = malloc((size_t)L->out * Ho * Wo * sizeof *a);
        if (L->conv) {
            double *full = malloc((size_t)L->out * H * W * sizeof *full);
            for (uint32_t o = 0; o < L->out; o++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t w = 0; w < W; w++) {
                        double sum = 0;
                        for (uint32_t c = 0; c < C; c++)
                            for (int kh = 0; kh < 3; kh++)
                                for (int kw = 0; kw < 3; kw++) {
                                    int hh = (int)h + kh - 1, ww = (int)w + kw - 1;
                                    if (hh < 0 || ww < 0 || hh >= (int)H || ww >= (int)W)
                                        continue; /* zero padding */
                                    float wt = L->w[(((size_t)o * C + c) * 3 + kh) * 3 + kw];
                                    sum += sgn_w(f, wt) * x[((size_t)c * H + hh) * W + ww];
                                }
                        full[((size_t)o * H + h) * W + w] = sum;
                    }
            for (uint32_t o = 0; o < L->out; o++)
                for (uint32_t i = 0; i < Ho; i++)
                    for (uint32_t j = 0; j < Wo; j++) {
                        double m = -INFINITY;
                        for (uint32_t di = 0; di < L->pool; di++)
                            for (uint32_t dj = 0; dj < L->pool; dj++) {
                                double v = full[((size_t)o * H + i * L->pool + di) * W +
                                                j * L->pool + dj];
                                if (v > m) m = v;
                            }
                        a[((size_t)o * Ho + i) * Wo + j] = m;
                    }
            free(full);
        } else {
            size_t in = (size_t)C * H * W; /* x is the CHW flatten, as x.view(n, -1) */
            for (uint32_t o = 0; o < L->out; o++) {
                double sum = 0;
                for (size_t j = 0; j < in; j++) sum += sgn_w(f, L->w[o * in + j]) * x[j];
                a[o] = sum;
            }
        }
        free(x);
        x = a;
        H = Ho, W = Wo, C = L->out;
        if (l + 1 == f->n) break;
        for (uint32_t o = 0; o < L->out; o++) {
            double sd = sqrt((double)L->var[o] + L->eps);
            for (size_t k = 0; k < (size_t)H * W; k++) {
                double *v = &a[o * (size_t)H * W + k];
                double bn = (double)L->g[o] * (*v - (double)L->mu[o]) / sd + (double)L->b[o];
                *v = (bn > 0 || (f->zero_plus && bn == 0)) ? 1.0 : -1.0;
            }
        }
    }
    for (uint32_t o = 0; o < C; o++) scores[o] = x[o];
    free(x);
}

/* Array names in the archive. */
static void aname(char *out, size_t cap, uint32_t l, const char *what) {
    snprintf(out, cap, "layers.%u.%s", l, what);
}

/* Writes the network's arrays as an .npz (PyTorch layout, or Keras: conv
 * HWIO, dense IN x OUT with rows in HWC order; BN names after the layout)
 * and a manifest naming them. Entries alternate stored and deflated. */
static void fmodel_export(const fmodel *f, int keras, const char *npz_name,
                          const char *manifest_name) {
    zip_writer z;
    memset(&z, 0, sizeof z);
    bytes npy = {0};
    char name[128];
    int k = 0;
#define ADD_ARRAY(nm, vals, nd, shp)                                  \
    do {                                                              \
        npy.n = 0;                                                    \
        npy_f32(&npy, vals, nd, shp);                                 \
        char e_[160];                                                 \
        snprintf(e_, sizeof e_, "%s.npy", nm);                        \
        zip_add(&z, e_, npy.p, npy.n, k % 2, k % 3 != 2);             \
        k++;                                                          \
    } while (0)
    bytes man = {0};
    char line[512];
    snprintf(line, sizeof line,
             "# written by test_npz.c\nname: imported\nnpz: %s\nlayout: %s\nsign_of_zero: %s\n"
             "input:\n  height: %u\n  width: %u\n  channels: %u\n  scale: %.17g\n"
             "bn_eps: 1e-5\nlayers:\n",
             npz_name, keras ? "keras" : "pytorch", f->zero_plus ? "+1" : "-1", f->h, f->w,
             f->c, f->in_scale);
    b_str(&man, line);
    for (uint32_t l = 0; l < f->n; l++) {
        const flayer *L = &f->L[l];
        size_t nw = (size_t)L->out * L->fan;
        float *w = malloc(nw * sizeof *w);
        uint64_t shape[4];
        int nd;
        if (L->conv && keras) { /* HWIO */
            for (uint32_t o = 0; o < L->out; o++)
                for (uint32_t c = 0; c < L->in_c; c++)
                    for (int t = 0; t < 9; t++)
                        w[((size_t)t * L->in_c + c) * L->out + o] =
                            L->w[((size_t)o * L->in_c + c) * 9 + t];
            shape[0] = 3, shape[1] = 3, shape[2] = L->in_c, shape[3] = L->out, nd = 4;
        } else if (L->conv) {
            memcpy(w, L->w, nw * sizeof *w);
            shape[0] = L->out, shape[1] = L->in_c, shape[2] = 3, shape[3] = 3, nd = 4;
        } else if (keras) { /* IN x OUT, rows in HWC flatten order */
            uint32_t H = L->in_h, W = L->in_w, C = L->in_c;
            for (uint32_t o = 0; o < L->out; o++)
                for (uint32_t j = 0; j < L->fan; j++) {
                    uint32_t c = j % C, hw = j / C, hh = hw / W, ww = hw % W;
                    w[(size_t)j * L->out + o] = L->w[(size_t)o * L->fan + ((size_t)c * H + hh) * W + ww];
                }
            shape[0] = L->fan, shape[1] = L->out, nd = 2;
        } else {
            memcpy(w, L->w, nw * sizeof *w);
            shape[0] = L->out, shape[1] = L->fan, nd = 2;
        }
        aname(name, sizeof name, l, keras ? "kernel" : "weight");
        ADD_ARRAY(name, w, nd, shape);
        free(w);
        snprintf(line, sizeof line, "  - type: %s\n    weight: %s\n", L->conv ? "conv" : "dense",
                 name);
        b_str(&man, line);
        if (L->conv && L->pool == 2) b_str(&man, "    pool: 2\n");
        if (l + 1 == f->n) {
            uint64_t one = 1;
            ADD_ARRAY("scale.scale", &f->out_scale, 1, &one);
            b_str(&man, "    scale: scale.scale\n");
            break;
        }
        static const char *const torch[4] = {"weight", "bias", "running_mean", "running_var"};
        static const char *const kr[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        static const char *const roles[4] = {"gamma", "beta", "mean", "var"};
        const float *vals[4] = {L->g, L->b, L->mu, L->var};
        uint64_t len = L->out;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "layers.%u.bn", l);
        if (L->bn_map) {
            b_str(&man, "    bn:\n");
            for (int r = 0; r < 4; r++) {
                snprintf(name, sizeof name, "stats_%u_%s", l, roles[r]);
                ADD_ARRAY(name, vals[r], 1, &len);
                snprintf(line, sizeof line, "      %s: %s\n", roles[r], name);
                b_str(&man, line);
            }
            snprintf(line, sizeof line, "      eps: %.17g\n", L->eps);
            b_str(&man, line);
        } else {
            for (int r = 0; r < 4; r++) {
                snprintf(name, sizeof name, "%s.%s", prefix, (keras ? kr : torch)[r]);
                ADD_ARRAY(name, vals[r], 1, &len);
            }
            snprintf(line, sizeof line, "    bn: %s\n", prefix);
            b_str(&man, line);
            CU_ASSERT_FATAL(L->eps == 1e-5);
        }
    }
#undef ADD_ARRAY
    size_t zlen;
    uint8_t *zip = zip_finish(&z, &zlen);
    test_write_file(npz_name, zip, zlen);
    test_write_file(manifest_name, man.p, man.n);
    free(zip);
    free(man.p);
    free(npy.p);
}

/* Imports; on failure prints the message. */
static int import(const char *manifest, bnn_model *m, apx_error *err) {
    int rc = bnn_import_npz(test_path(manifest), NULL, m, err);
    if (rc) fprintf(stderr, "\n  import: %s\n", err->msg);
    return rc;
}

/* Scores of the imported model against the reference on random images;
 * returns the number of images that disagree (reported unless quiet). */
static int quiet;
static unsigned compare_scores(const fmodel *f, const bnn_model *m, uint64_t seed,
                               unsigned images) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 0x1b, 1), 0, 0);
    size_t npx = (size_t)f->h * f->w * f->c;
    uint8_t *px = malloc(npx);
    double ref[64];
    int32_t got[64];
    bnn_workspace *ws = bnn_workspace_new(m);
    CU_ASSERT_FATAL(ws != NULL);
    unsigned bad = 0;
    for (unsigned i = 0; i < images; i++) {
        for (size_t k = 0; k < npx; k++) px[k] = (uint8_t)rng_below(&s, 256);
        if (i == 0) memset(px, 0, npx);
        if (i == 1) memset(px, 255, npx);
        reference(f, px, ref);
        int cls = bnn_classify(m, m->image, px, ws, got);
        int want = 0, same = 1;
        for (uint32_t o = 0; o < m->n_classes; o++) {
            same &= ref[o] == (double)got[o];
            if (ref[o] > ref[want]) want = (int)o;
        }
        if (!same || cls != want) {
            if (!bad && !quiet) fprintf(stderr, "\n  image %u: scores differ (class %d vs %d)\n", i, cls, want);
            bad++;
        }
    }
    bnn_workspace_free(ws);
    free(px);
    return bad;
}

/* A VGG-like conv network (conv with pool on an odd map, conv, dense after
 * conv, dense out) on a 2-channel input: the imported model computes the
 * float network's scores exactly. */
static void test_import_conv(void) {
    static const lspec spec[] = {{1, 4, 2}, {1, 5, 1}, {0, 7, 1}, {0, 4, 1}};
    fmodel f;
    fmodel_random(&f, 1, 7, 5, 2, 255, 4, spec, 0);
    fmodel_export(&f, 0, "conv.npz", "conv.yaml");
    bnn_model m;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(import("conv.yaml", &m, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(m.name, "imported");
    CU_ASSERT_EQUAL(m.n_layers, 4);
    CU_ASSERT_EQUAL(m.in_channels, 2);
    CU_ASSERT_EQUAL(m.layers[0].kind, BNN_CONV_U8);
    CU_ASSERT_EQUAL(m.layers[0].pool, 2);
    CU_ASSERT_EQUAL(m.layers[1].kind, BNN_CONV_BIN);
    CU_ASSERT_EQUAL(m.layers[2].kind, BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(m.layers[2].in, 3 * 2 * 5);
    CU_ASSERT_EQUAL(m.layers[3].kind, BNN_DENSE_OUT);
    CU_ASSERT_EQUAL(m.layers[3].scale, f.out_scale);
    CU_ASSERT_EQUAL(compare_scores(&f, &m, 1, 400), 0);

    /* the dense layer after the conv reads apxsim's HWC order: its column
     * (h*W + w)*C + c is PyTorch's column c*H*W + h*W + w */
    const flayer *L = &f.L[2];
    unsigned wrong = 0;
    for (uint32_t o = 0; o < L->out; o++)
        for (uint32_t h = 0; h < 3; h++)
            for (uint32_t w = 0; w < 2; w++)
                for (uint32_t c = 0; c < 5; c++) {
                    int want = L->w[o * 30 + (c * 3 + h) * 2 + w] > 0;
                    wrong += bnn_weight_get(&m, 2, o, (h * 2 + w) * 5 + c) != want;
                }
    CU_ASSERT_EQUAL(wrong, 0);
    /* and conv taps: bit (kh*3 + kw)*C + c of row o is w[o][c][kh][kw] */
    wrong = 0;
    for (uint32_t o = 0; o < 4; o++)
        for (uint32_t c = 0; c < 2; c++)
            for (uint32_t t = 0; t < 9; t++)
                wrong += bnn_weight_get(&m, 0, o, t * 2 + c) != (f.L[0].w[(o * 2 + c) * 9 + t] > 0);
    CU_ASSERT_EQUAL(wrong, 0);
    /* the model survives its file */
    const char *path = test_path("imported.bnn");
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    bnn_model back;
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &back, &err), APX_OK);
    CU_ASSERT_EQUAL(compare_scores(&f, &back, 2, 50), 0);
    bnn_free(&back);
    bnn_free(&m);
    fmodel_free(&f);
}

/* Dense layers only, on a 3-channel 4x3 input: the first layer reads the
 * image flattened CHW in PyTorch and HWC in apxsim, so it is permuted
 * too; and an FC net like the group's (784-style, 1 channel). */
static void test_import_dense(void) {
    static const lspec spec[] = {{0, 9, 1}, {0, 6, 1}, {0, 3, 1}};
    fmodel f;
    fmodel_random(&f, 2, 4, 3, 3, 255, 3, spec, 0);
    fmodel_export(&f, 0, "dense.npz", "dense.yaml");
    bnn_model m;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(import("dense.yaml", &m, &err), APX_OK);
    CU_ASSERT_EQUAL(m.layers[0].kind, BNN_DENSE_U8);
    CU_ASSERT_EQUAL(m.layers[0].in, 36);
    CU_ASSERT_EQUAL(compare_scores(&f, &m, 3, 400), 0);
    bnn_free(&m);
    fmodel_free(&f);
    static const lspec fc[] = {{0, 70, 1}, {0, 65, 1}, {0, 10, 1}};
    fmodel_random(&f, 3, 8, 9, 1, 255, 3, fc, 0);
    fmodel_export(&f, 0, "fc.npz", "fc.yaml");
    CU_ASSERT_EQUAL_FATAL(import("fc.yaml", &m, &err), APX_OK);
    CU_ASSERT_EQUAL(compare_scores(&f, &m, 4, 300), 0);
    bnn_free(&m);
    fmodel_free(&f);
}

static int same_model(const bnn_model *a, const bnn_model *b) {
    if (a->n_layers != b->n_layers || a->image_words != b->image_words ||
        memcmp(a->image, b->image, a->image_words * 8))
        return 0;
    for (uint32_t l = 0; l < a->n_layers; l++) {
        const bnn_layer *x = &a->layers[l], *y = &b->layers[l];
        if (x->kind != y->kind || x->in != y->in || x->out != y->out || x->scale != y->scale)
            return 0;
        if (x->threshold && (memcmp(x->threshold, y->threshold, 4 * x->out) ||
                             memcmp(x->direction, y->direction, x->out)))
            return 0;
    }
    return 1;
}

/* The same network exported in Keras/Larq layout (HWIO kernels, IN x OUT
 * dense kernels over an HWC flatten, Keras BN names) imports to the very
 * same model. */
static void test_import_keras(void) {
    static const lspec spec[] = {{1, 3, 2}, {1, 4, 2}, {0, 5, 1}, {0, 3, 1}};
    fmodel f;
    fmodel_random(&f, 5, 9, 8, 2, 255, 4, spec, 0);
    fmodel_export(&f, 0, "pt.npz", "pt.yaml");
    fmodel_export(&f, 1, "keras.npz", "keras.yaml");
    bnn_model a, b;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(import("pt.yaml", &a, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(import("keras.yaml", &b, &err), APX_OK);
    CU_ASSERT(same_model(&a, &b));
    CU_ASSERT_EQUAL(compare_scores(&f, &b, 5, 200), 0);
    bnn_free(&a);
    bnn_free(&b);
    fmodel_free(&f);
}

/* Exact ties: weights that are 0 and batch norms that are exactly 0 at
 * reachable pre-activations; pixels / 1 so that the first layer is exact
 * too. sign_of_zero -1 (x > 0 -> +1, the group's PyTorch binariser) and +1
 * (Larq's ste_sign) each match their own reference, and differ. */
static void test_import_ties(void) {
    static const lspec spec[] = {{1, 6, 1}, {1, 8, 2}, {0, 9, 1}, {0, 5, 1}};
    fmodel f;
    bnn_model strict, larq;
    apx_error err = {0};
    fmodel_random(&f, 6, 6, 5, 1, 1.0, 4, spec, 1);
    fmodel_export(&f, 0, "ties.npz", "ties.yaml");
    CU_ASSERT_EQUAL_FATAL(import("ties.yaml", &strict, &err), APX_OK);
    CU_ASSERT_EQUAL(compare_scores(&f, &strict, 6, 300), 0);
    f.zero_plus = 1;
    fmodel_export(&f, 0, "ties-larq.npz", "ties-larq.yaml");
    CU_ASSERT_EQUAL_FATAL(import("ties-larq.yaml", &larq, &err), APX_OK);
    CU_ASSERT_EQUAL(compare_scores(&f, &larq, 6, 300), 0);
    /* the rule matters here: the two models differ */
    CU_ASSERT_FALSE(same_model(&strict, &larq));
    /* and an exact tie is decided by the rule: with the strict model and
     * the Larq reference (or the reverse), some images must disagree */
    quiet = 1;
    CU_ASSERT(compare_scores(&f, &strict, 6, 300) > 0);
    quiet = 0;
    bnn_free(&strict);
    bnn_free(&larq);
    fmodel_free(&f);
}

/* ---- manifest and array errors ------------------------------------------------------ */

/* The network of the error tests: 6x6x1 -> conv 4 pool 2 -> dense 5 ->
 * dense 3, exported as err.npz (plus a few broken arrays), and a valid
 * manifest for it. Lines: 5 is layer 0's weight (value at column 13), 7
 * its bn, 9 layer 1's weight, 10 its bn mapping, 12 layer 2's weight, 13
 * its scale. */
static const char err_manifest[] =
    "npz: err.npz\n"
    "input: {height: 6, width: 6}\n"
    "layers:\n"
    "  - type: conv\n"
    "    weight: layers.0.weight\n"
    "    pool: 2\n"
    "    bn: layers.0.bn\n"
    "  - type: dense\n"
    "    weight: layers.1.weight\n"
    "    bn: {gamma: stats_1_gamma, beta: stats_1_beta, mean: stats_1_mean, var: stats_1_var}\n"
    "  - type: dense\n"
    "    weight: layers.2.weight\n"
    "    scale: scale.scale\n";

static void make_err_npz(void) {
    static int done;
    if (done) return;
    done = 1;
    static const lspec spec[] = {{1, 4, 2}, {0, 5, 1}, {0, 3, 1}};
    fmodel f;
    fmodel_random(&f, 7, 6, 6, 1, 255, 3, spec, 0);
    fmodel_export(&f, 0, "err-base.npz", "err-base.yaml");
    fmodel_free(&f);
    /* the same archive plus broken arrays */
    FILE *in = fopen(test_path("err-base.npz"), "rb");
    CU_ASSERT_FATAL(in != NULL);
    static uint8_t base[1 << 16];
    size_t len = fread(base, 1, sizeof base, in);
    fclose(in);
    apx_error err = {0};
    npz *z = NULL;
    CU_ASSERT_EQUAL_FATAL(npz_open_buffer(base, len, "base", &z, &err), APX_OK);
    zip_writer w;
    memset(&w, 0, sizeof w);
    for (size_t i = 0; i < npz_count(z); i++) {
        const char *name = npz_entry_name(z, i);
        char key[300];
        snprintf(key, sizeof key, "%.*s", (int)(strlen(name) - 4), name);
        npz_array a;
        CU_ASSERT_EQUAL_FATAL(npz_read_array(z, key, &a, &err), APX_OK);
        bytes f32 = {0};
        float *v = malloc(a.count * sizeof *v + 1);
        for (size_t k = 0; k < a.count; k++) v[k] = (float)npz_value(&a, k);
        npy_f32(&f32, v, (int)a.ndim, a.shape);
        zip_add(&w, name, f32.p, f32.n, (int)(i % 2), 1);
        free(v);
        free(f32.p);
        npz_array_free(&a);
    }
    npz_close(z);
    bytes b = {0};
    uint8_t zeros[8 * 36 * 5] = {0};
    npy_raw(&b, 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (5, 36), }", zeros,
            sizeof zeros);
    zip_add(&w, "complex.npy", b.p, b.n, 1, 1);
    b.n = 0;
    npy_raw(&b, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (5, 36), }", zeros,
            5 * 36 * 4);
    zip_add(&w, "fortran.npy", b.p, b.n, 0, 1);
    b.n = 0;
    float nan_w[5 * 36];
    for (int i = 0; i < 5 * 36; i++) nan_w[i] = i == 7 ? NAN : 1.0f;
    uint64_t sh[2] = {5, 36};
    npy_f32(&b, nan_w, 2, sh);
    zip_add(&w, "nan_w.npy", b.p, b.n, 1, 1);
    b.n = 0;
    float neg[5] = {1, 1, -1, 1, 1};
    uint64_t five = 5;
    npy_f32(&b, neg, 1, &five);
    zip_add(&w, "neg_var.npy", b.p, b.n, 1, 1);
    free(b.p);
    uint8_t *out = zip_finish(&w, &len);
    test_write_file("err.npz", out, len);
    free(out);
}

/* Replaces the first `from` in the manifest by `to`, imports, and checks
 * the error: code APX_EINPUT, the model untouched, the message. */
static void expect_import_error(const char *from, const char *to, const char *want) {
    make_err_npz();
    char text[2048];
    const char *at = strstr(err_manifest, from);
    CU_ASSERT_FATAL(at != NULL);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - err_manifest), err_manifest, to,
             at + strlen(from));
    test_write_file("e.yaml", text, strlen(text));
    bnn_model m, before;
    memset(&m, 0xab, sizeof m);
    memcpy(&before, &m, sizeof m);
    apx_error err = {0};
    int rc = bnn_import_npz(test_path("e.yaml"), NULL, &m, &err);
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    CU_ASSERT(memcmp(&m, &before, sizeof m) == 0);
    if (rc == APX_OK) bnn_free(&m);
    ASSERT_HAS(err.msg, want);
}

static void test_import_errors(void) {
    make_err_npz();
    /* the manifest as it is imports */
    test_write_file("e.yaml", err_manifest, strlen(err_manifest));
    bnn_model m;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_import_npz(test_path("e.yaml"), NULL, &m, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(m.name, "e"); /* from the file name */
    bnn_free(&m);

    /* missing arrays: the manifest position, the array, a suggestion */
    expect_import_error("layers.0.weight", "layers.0.weigth",
                        "e.yaml:5:13: layer 0 weight: array 'layers.0.weigth' is not in ");
    expect_import_error("layers.0.weight", "layers.0.weigth", "did you mean 'layers.0.weight'?");
    expect_import_error("layers.0.bn", "layers.0.bm",
                        "e.yaml:7:9: layer 0 bn gamma: array 'layers.0.bm.weight' is not in");
    expect_import_error("stats_1_var", "nothing_like_it",
                        "e.yaml:10:77: layer 1 bn var: array 'nothing_like_it' is not in");
    expect_import_error("scale: scale.scale", "scale: scale.scal",
                        "e.yaml:13:12: layer 2 scale: array 'scale.scal' is not in");
    /* shapes that do not chain */
    expect_import_error("    pool: 2\n", "",
                        "e.yaml:8:13: layer 1 weight 'layers.1.weight' has shape (5, 36), "
                        "expected (N, 144): the layer's input is 6x6x4 (H x W x C) from the "
                        "previous layer");
    expect_import_error("{height: 6, width: 6}", "{height: 6, width: 6, channels: 2}",
                        "e.yaml:5:13: layer 0 weight 'layers.0.weight' has shape (4, 1, 3, 3), "
                        "expected (N, 2, 3, 3)");
    expect_import_error("weight: layers.2.weight", "weight: layers.1.weight",
                        "layer 2 weight 'layers.1.weight' has shape (5, 36), expected (N, 5)");
    expect_import_error("mean: stats_1_mean", "mean: layers.0.bn.running_mean",
                        "layer 1 bn mean: array 'layers.0.bn.running_mean' has shape (4,), "
                        "expected (5,)");
    expect_import_error("scale: scale.scale", "scale: layers.0.bn.bias",
                        "layer 2 scale: array 'layers.0.bn.bias' has shape (4,), expected one "
                        "value");
    /* broken arrays */
    expect_import_error("weight: layers.1.weight", "weight: complex",
                        "e.yaml:9:13: layer 1 weight: array 'complex': ");
    expect_import_error("weight: layers.1.weight", "weight: complex",
                        "err.npz: 'complex.npy': dtype '<c8' is not supported");
    expect_import_error("weight: layers.1.weight", "weight: fortran",
                        "'fortran.npy': fortran_order True is not supported");
    expect_import_error("weight: layers.1.weight", "weight: nan_w",
                        "e.yaml:9:13: layer 1 weight: array 'nan_w' element 7 is nan (not "
                        "finite)");
    expect_import_error("var: stats_1_var", "var: neg_var",
                        "layer 1 bn var: array 'neg_var' element 2 is -1: var + eps must be > 0");
    /* the model's structure */
    expect_import_error("    scale: scale.scale\n", "    scale: -2\n",
                        "e.yaml:13:12: layer 2 scale -2: apxsim needs a finite scale > 0");
    expect_import_error("    scale: scale.scale\n", "    scale: 0\n", "scale 0: apxsim needs");
    expect_import_error("    scale: scale.scale\n", "    scale: scale.scale\n    bn: layers.0.bn\n",
                        "e.yaml:14:9: layer 2: the last layer has no batch norm");
    expect_import_error("    bn: layers.0.bn\n", "", "e.yaml:4:5: layer 0: missing 'bn'");
    expect_import_error("  - type: conv\n    weight: layers.0.weight\n    pool: 2\n    bn: layers.0.bn\n"
                        "  - type: dense\n",
                        "  - type: dense\n    weight: layers.1.weight\n"
                        "    bn: {gamma: stats_1_gamma, beta: stats_1_beta, mean: stats_1_mean, "
                        "var: stats_1_var}\n  - type: conv\n",
                        "e.yaml:7:5: layer 1: a conv layer after a dense layer");
    expect_import_error("    weight: layers.1.weight\n", "    weight: layers.1.weight\n    pool: 2\n",
                        "e.yaml:10:11: layer 1: pool is for conv layers");
    expect_import_error("    pool: 2\n", "    pool: 3\n", "e.yaml:6:11:");
    expect_import_error("  - type: dense\n    weight: layers.2.weight",
                        "  - type: conv\n    weight: layers.2.weight",
                        "e.yaml:11:5: layer 2: the last layer must be dense");
    expect_import_error("    weight: layers.2.weight\n    scale",
                        "    weight: layers.2.weight\n    scael",
                        "did you mean 'scale'?");
    expect_import_error("npz: err.npz\n", "npz: err.npz\nsign_of_zero: 0\n",
                        "e.yaml:2:15: sign_of_zero must be -1 or +1");
    expect_import_error("npz: err.npz\n",
                        "npz: err.npz\nname: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
                        "name has 68 bytes, at most 63 fit");
    expect_import_error("npz: err.npz\n", "npz: nope.npz\n", "e.yaml:1:6: ");
    expect_import_error("npz: err.npz\n", "npz: nope.npz\n", "nope.npz: cannot open");
    expect_import_error("npz: err.npz\n", "npz: e.yaml\n",
                        "e.yaml: not a zip archive (.npz): no end of central directory record");
    expect_import_error("npz: err.npz\n", "", "missing");
    expect_import_error("{height: 6, width: 6}", "{height: 6}", "width");
    expect_import_error("{height: 6, width: 6}", "{height: 6, width: 6, scale: -1}", "scale");
    expect_import_error(err_manifest,
                        "npz: err.npz\ninput: {height: 6, width: 6}\n"
                        "layers:\n  - {type: dense, weight: layers.2.weight}\n",
                        "e.yaml:4:3: 'layers' must be a list of 2..64 layers");
    expect_import_error(err_manifest, "npz: err.npz\ninput: {height: 6, width: 6}\nlayers: 3\n",
                        "e.yaml:3:9: 'layers' must be a list of 2..64 layers");
    expect_import_error("{height: 6, width: 6}", "{height: 6000, width: 6000}",
                        "input 6000x6000x1 has more than 33554432 values");
    /* a manifest that is not there */
    CU_ASSERT_EQUAL(bnn_import_npz(test_path("nope.yaml"), NULL, &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "nope.yaml: cannot open");
    /* --npz replaces the manifest's archive */
    test_write_file("e.yaml", err_manifest, strlen(err_manifest));
    CU_ASSERT_EQUAL(bnn_import_npz(test_path("e.yaml"), test_path("err-base.npz"), &m, &err),
                    APX_OK);
    bnn_free(&m);
}

/* ---- apxsim import ---------------------------------------------------------------- */


static void test_cli(void) {
    static char out[1 << 14];
    make_err_npz();
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import --help"), 0);
    ASSERT_HAS(out, "Usage: apxsim import MANIFEST.yaml -o MODEL.bnn");
    ASSERT_HAS(out, "Example");
    const char *manifest = test_path("err-base.yaml"), *model = test_path("cli.bnn");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import %s -o %s", manifest, model), 0);
    ASSERT_HAS(out, "imported 'imported'");
    ASSERT_HAS(out, "layer 0  conv/u8  6x6x1 -> 4 channels, max-pool 2x2");
    bnn_model a, b;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_load(model, &a, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(bnn_import_npz(manifest, NULL, &b, &err), APX_OK);
    CU_ASSERT(same_model(&a, &b));
    char hash[17];
    bnn_hash_hex(&a, hash);
    ASSERT_HAS(out, hash);
    bnn_free(&a);
    bnn_free(&b);
    /* bad input: 2; no -o or no manifest: 2; cannot write: 1 */
    const char *bad = test_write_file("cli-bad.yaml", "npz: err.npz\nlayers: 3\n", 24);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import %s -o %s", bad, model), 2);
    ASSERT_HAS(out, "cli-bad.yaml:");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import %s", manifest), 2);
    ASSERT_HAS(out, "needs -o MODEL.bnn");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import -o %s", model), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import --frobnicate"), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " import %s -o %s/no/such/dir/m.bnn", manifest,
                        test_tmpdir()),
                    1);
    ASSERT_HAS(out, "no/such/dir/m.bnn");
}

void add_npz_suite(void) {
    TEST_SUITE("npz",
               {".npy headers, dtypes, hostile headers", test_npy},
               {"archives: stored, deflated, zip64 entries", test_npz_read},
               {"hostile archives refused", test_npz_hostile},
               {"truncation and corruption sweeps", test_npz_sweeps},
               {"import: conv network equals the float reference", test_import_conv},
               {"import: dense network, channels permuted", test_import_dense},
               {"import: Keras layout gives the same model", test_import_keras},
               {"import: exact ties and the sign of zero", test_import_ties},
               {"import: manifest and array errors", test_import_errors},
               {"apxsim import", test_cli});
}
