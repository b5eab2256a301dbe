/* test_bnn_file.c - the .bnn model file (docs/bnn-format.md).
 *
 * A small random model (21 -> 70 -> 65 -> 10: padding bits in every layer,
 * odd widths so direction padding is exercised) is encoded, decoded, saved
 * and loaded; then corrupted, truncated and hand-edited copies (with the CRC
 * recomputed, as a buggy writer would produce) must all be refused without
 * touching the output model. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "sim/rng.h"
#include "tests.h"
#include "workloads/bnn.h"

#define ROWS 3
#define COLS 7
static const uint32_t widths[] = {ROWS * COLS, 70, 65, 10};
#define N_LAYERS 3

/* Byte offsets of the file format (docs/bnn-format.md). */
#define OFF_VERSION 8
#define OFF_NAME 16
#define OFF_N_CLASSES 88
#define OFF_N_LAYERS 92
#define OFF_LAYER0 96

#define ASSERT_HAS(msg, sub)                                                          \
    do {                                                                              \
        int has_ = strstr((msg), (sub)) != NULL;                                     \
        if (!has_) fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", (msg), (sub)); \
        CU_ASSERT(has_);                                                              \
    } while (0)

static void random_model(bnn_model *m, const char *name, uint64_t seed) {
    apx_error err = {0};
    int rc = bnn_create(m, name, ROWS, COLS, N_LAYERS, widths, &err);
    if (rc) fprintf(stderr, "\n  bnn_create: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 7, 0), 0, 0);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        bnn_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < L->out; r++)
            for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(m, l, r, c, (int)(rng_u32(&s) & 1));
        if (L->kind == BNN_DENSE_OUT) {
            L->scale = 0.001f + (float)rng_unit(&s);
            continue;
        }
        for (uint32_t i = 0; i < L->out; i++) {
            L->threshold[i] = (int32_t)rng_u32(&s);  /* full range, negatives too */
            L->direction[i] = (rng_u32(&s) & 1) ? 1 : -1;
        }
    }
}

static int models_equal(const bnn_model *a, const bnn_model *b) {
    if (strcmp(a->name, b->name) || a->in_rows != b->in_rows || a->in_cols != b->in_cols ||
        a->n_classes != b->n_classes || a->n_layers != b->n_layers ||
        a->image_words != b->image_words)
        return 0;
    if (memcmp(a->image, b->image, a->image_words * sizeof *a->image)) return 0;
    for (uint32_t l = 0; l < a->n_layers; l++) {
        const bnn_layer *x = &a->layers[l], *y = &b->layers[l];
        if (x->kind != y->kind || x->in != y->in || x->out != y->out || x->words != y->words ||
            x->offset != y->offset || memcmp(&x->scale, &y->scale, sizeof x->scale))
            return 0;
        if ((x->threshold == NULL) != (y->threshold == NULL)) return 0;
        if (x->threshold && (memcmp(x->threshold, y->threshold, x->out * sizeof(int32_t)) ||
                             memcmp(x->direction, y->direction, x->out)))
            return 0;
    }
    return 1;
}

static uint8_t *encode(const bnn_model *m, size_t *len) {
    uint8_t *buf = NULL;
    apx_error err = {0};
    int rc = bnn_encode(m, &buf, len, &err);
    if (rc) fprintf(stderr, "\n  bnn_encode: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    return buf;
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void fix_crc(uint8_t *buf, size_t len) {
    put_le32(buf + len - 4, (uint32_t)crc32(0L, buf, (uInt)(len - 4)));
}

/* Decoding must fail with APX_EINPUT and leave *m exactly as it was.
 * Returns the message (static buffer). */
static const char *expect_refused(const uint8_t *buf, size_t len) {
    static apx_error err;
    memset(&err, 0, sizeof err);
    bnn_model m, before;
    memset(&m, 0xab, sizeof m);
    memcpy(&before, &m, sizeof m);
    int rc = bnn_decode(buf, len, "x.bnn", &m, &err);
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT(memcmp(&m, &before, sizeof m) == 0);
    CU_ASSERT(strncmp(err.msg, "x.bnn: ", 7) == 0);
    if (rc == APX_OK) bnn_free(&m);
    return err.msg;
}

/* Is anything but `keep` left in the temp dir whose name contains ".tmp."? */
static int temp_files_left(void) {
    DIR *d = opendir(test_tmpdir());
    CU_ASSERT_FATAL(d != NULL);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) found = 1;
    closedir(d);
    return found;
}

static void test_round_trip(void) {
    bnn_model m, back;
    random_model(&m, "tiny-fc", 1);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    /* the encoding is canonical: decode + encode gives the same bytes */
    size_t len2;
    uint8_t *buf2 = encode(&back, &len2);
    CU_ASSERT(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    bnn_free(&back);

    /* the documented size: 96 + per layer 20 + 8*out*words (+ 4*out +
     * out rounded up to 4 for hidden layers) + 4 */
    size_t want = 96 + 4;
    for (uint32_t l = 0; l < N_LAYERS; l++) {
        uint32_t in = widths[l], out = widths[l + 1], words = (in + 63) / 64;
        want += 20 + (size_t)8 * out * words;
        if (l < N_LAYERS - 1) want += 4 * (size_t)out + ((out + 3) & ~3u);
    }
    CU_ASSERT_EQUAL(len, want);
    CU_ASSERT(memcmp(buf, "APXSBNN\0", 8) == 0);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_VERSION), 1);
    CU_ASSERT_STRING_EQUAL((const char *)buf + OFF_NAME, "tiny-fc");
    CU_ASSERT_EQUAL(get_le32(buf + OFF_N_LAYERS), N_LAYERS);
    /* layer 0's first weight word is at byte 116, little endian */
    uint64_t w0 = 0;
    for (int i = 7; i >= 0; i--) w0 = w0 << 8 | buf[116 + i];
    CU_ASSERT_EQUAL(w0, m.image[0]);
    free(buf);

    /* through a file, twice to the same path (the second replaces the first) */
    const char *path = test_path("tiny.bnn");
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    m.layers[0].threshold[0] ^= 1;
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    CU_ASSERT_FALSE(temp_files_left());
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    bnn_free(&back);
    bnn_free(&m);

    /* a name of 63 characters (the most that fits) survives; longer is cut */
    char name[80];
    memset(name, 'n', 63);
    name[63] = 0;
    random_model(&m, name, 2);
    buf = encode(&m, &len);
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(back.name, name);
    bnn_free(&back);
    free(buf);
    bnn_free(&m);
}

static void test_corruption(void) {
    bnn_model m;
    random_model(&m, "corrupt-me", 3);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *copy = malloc(len);
    CU_ASSERT_FATAL(copy != NULL);
    /* every byte of the header and the first layer record, three ways */
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    unsigned refused = 0, tried = 0;
    for (size_t pos = 0; pos < OFF_LAYER0 + 20; pos++)
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(copy, buf, len);
            copy[pos] ^= flips[f];
            tried++;
            apx_error err = {0};
            bnn_model out;
            if (bnn_decode(copy, len, "x.bnn", &out, &err) == APX_EINPUT)
                refused++;
            else
                bnn_free(&out);
        }
    CU_ASSERT_EQUAL(refused, tried);
    /* a random sample of the rest, including the CRC trailer */
    rng_stream s;
    rng_stream_at(&s, rng_key_make(99, 1, 2), 0, 0);
    refused = tried = 0;
    for (int k = 0; k < 400; k++) {
        size_t pos = OFF_LAYER0 + 20 + (size_t)rng_below(&s, len - OFF_LAYER0 - 20);
        uint8_t x = (uint8_t)(1 + rng_below(&s, 255));
        memcpy(copy, buf, len);
        copy[pos] ^= x;
        tried++;
        apx_error err = {0};
        bnn_model out;
        if (bnn_decode(copy, len, "x.bnn", &out, &err) == APX_EINPUT) {
            refused++;
        } else {
            bnn_free(&out);
        }
    }
    CU_ASSERT_EQUAL(refused, tried);
    /* a weight byte: the CRC is what catches it, and says so */
    memcpy(copy, buf, len);
    copy[OFF_LAYER0 + 20 + 3] ^= 0x10;
    CU_ASSERT_STRING_EQUAL(expect_refused(copy, len), "x.bnn: checksum mismatch (file corrupt)");
    /* a corrupt record field: the field is named, and so is the CRC failure */
    memcpy(copy, buf, len);
    copy[OFF_LAYER0 + 12] ^= 0x01;
    const char *msg = expect_refused(copy, len);
    ASSERT_HAS(msg, "x.bnn: layer 0: words 0, expected 1 for fan-in 21");
    ASSERT_HAS(msg, "checksum does not match");
    free(copy);
    free(buf);
    bnn_free(&m);
}

static void test_truncation(void) {
    bnn_model m;
    random_model(&m, "cut", 4);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    /* every prefix, from empty to one byte short (a copy of exactly that
     * length, so ASan sees any read past the end) */
    unsigned bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        const char *msg = expect_refused(p, cut);
        if (!strstr(msg, "truncated")) {
            if (!bad++) fprintf(stderr, "\n  cut %zu: %s\n", cut, msg);
        }
        free(p);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(bnn_decode(NULL, 0, "x.bnn", &m, NULL), APX_EINPUT);
    /* one byte too many */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ASSERT_HAS(expect_refused(longer, len + 1), "trailing");
    free(longer);
    free(buf);
    bnn_free(&m);
}

static void test_magic_and_version(void) {
    bnn_model m;
    random_model(&m, "v", 5);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    memcpy(copy, "APXSFMAP", 8);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "not an apxsim model file (bad magic)");
    /* an IDX file is not a model */
    const uint8_t idx[16] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    ASSERT_HAS(expect_refused(idx, sizeof idx), "bad magic");
    /* newer version: refused as such, whether or not its CRC agrees */
    memcpy(copy, buf, len);
    put_le32(copy + OFF_VERSION, 2);
    ASSERT_HAS(expect_refused(copy, len), "written by a newer apxsim (format version 2");
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "written by a newer apxsim");
    /* even if its layout is entirely different (shorter than a v1 header) */
    ASSERT_HAS(expect_refused(copy, 20), "written by a newer apxsim");
    put_le32(copy + OFF_VERSION, 0);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "version 0");
    memcpy(copy, buf, len);
    put_le32(copy + 12, 100);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "byte 12: header size 100, expected 96");
    free(copy);
    free(buf);
    bnn_free(&m);
}

/* Edits one u32 field of a copy, fixes the CRC, expects a message. */
static void expect_field(const uint8_t *buf, size_t len, size_t off, uint32_t value,
                         const char *want) {
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    put_le32(copy + off, value);
    fix_crc(copy, len);
    const char *msg = expect_refused(copy, len);
    ASSERT_HAS(msg, want);
    /* with a valid CRC the file is a writer's mistake, not corruption */
    CU_ASSERT(strstr(msg, "checksum") == NULL);
    free(copy);
}

static void test_hostile_fields(void) {
    bnn_model m;
    random_model(&m, "fields", 6);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    /* record offsets: layer 0 at 96; layer 1 after 20 + 70*1*8 + 70*4 + 72 */
    const size_t rec0 = OFF_LAYER0;
    const size_t rec1 = rec0 + 20 + 70 * 8 + 70 * 4 + 72;
    const size_t rec2 = rec1 + 20 + 65 * 2 * 8 + 65 * 4 + 68;
    CU_ASSERT_EQUAL(get_le32(buf + rec1), BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(get_le32(buf + rec2), BNN_DENSE_OUT);

    expect_field(buf, len, OFF_N_LAYERS, 0xffffffffu, "n_layers 4294967295 is outside 2..64");
    expect_field(buf, len, OFF_N_LAYERS, 65, "n_layers 65");
    expect_field(buf, len, OFF_N_LAYERS, 1, "n_layers 1");
    expect_field(buf, len, 80, 0, "input size 0x7");
    expect_field(buf, len, 80, 0x100000, "input size 1048576x7");  /* rows*cols > 2^20 */
    expect_field(buf, len, OFF_N_CLASSES, 0xffffffffu, "n_classes 4294967295");
    expect_field(buf, len, OFF_N_CLASSES, 11, "layer 2 (byte");   /* last width 10 != 11 */
    expect_field(buf, len, rec0 + 8, 0xffffffffu, "layer 0 (byte 104): width 4294967295");
    expect_field(buf, len, rec0, BNN_DENSE_BIN, "layer 0 (byte 96): kind 2, expected 1 (U8)");
    expect_field(buf, len, rec1, BNN_DENSE_OUT, "layer 1");
    expect_field(buf, len, rec2, BNN_DENSE_BIN, "kind 2, expected 3 (OUT)");
    expect_field(buf, len, rec0 + 4, 22, "layer 0 (byte 100): fan-in 22, expected 21");
    expect_field(buf, len, rec1 + 4, 71, "layer 1");
    expect_field(buf, len, rec1 + 4, 71, "fan-in 71, expected 70");
    expect_field(buf, len, rec1 + 12, 3, "x.bnn: layer 1: words 3, expected 2 for fan-in 70");
    expect_field(buf, len, rec2 + 16, 0, "scale 0, expected a finite value > 0");
    expect_field(buf, len, rec2 + 16, 0x7fc00000u, "expected a finite value > 0");  /* NaN */
    expect_field(buf, len, rec2 + 16, 0xbf800000u, "scale -1");
    expect_field(buf, len, rec1 + 16, 0x3f800000u, "scale of a hidden layer must be 0");

    /* Widths at the limit in a tiny file: the size computed from the
     * records refuses it before anything is allocated (a reader that
     * allocated first would ask for terabytes, and ASan would abort). */
    uint8_t hostile[OFF_LAYER0 + 2 * 20 + 4];
    memset(hostile, 0, sizeof hostile);
    memcpy(hostile, buf, OFF_LAYER0);
    put_le32(hostile + 80, 1024);
    put_le32(hostile + 84, 1024);
    put_le32(hostile + OFF_N_CLASSES, BNN_MAX_WIDTH);
    put_le32(hostile + OFF_N_LAYERS, 2);
    put_le32(hostile + rec0, BNN_DENSE_U8);
    put_le32(hostile + rec0 + 4, BNN_MAX_WIDTH);
    put_le32(hostile + rec0 + 8, BNN_MAX_WIDTH);
    put_le32(hostile + rec0 + 12, BNN_MAX_WIDTH / 64);
    fix_crc(hostile, sizeof hostile);
    const char *msg = expect_refused(hostile, sizeof hostile);
    ASSERT_HAS(msg, "truncated: 140 bytes, layer 1's record at byte");
    /* and 64 such layers with all records present: the size check */
    size_t big_len = OFF_LAYER0 + 64 * 20 + 4;
    uint8_t *big = calloc(1, big_len);
    memcpy(big, hostile, OFF_LAYER0);
    put_le32(big + OFF_N_LAYERS, 64);
    for (uint32_t l = 0; l < 64; l++) {
        uint8_t *r = big + OFF_LAYER0 + 20 * l;
        put_le32(r, l == 0 ? BNN_DENSE_U8 : l == 63 ? BNN_DENSE_OUT : BNN_DENSE_BIN);
        put_le32(r + 4, BNN_MAX_WIDTH);
        put_le32(r + 8, BNN_MAX_WIDTH);
        put_le32(r + 12, BNN_MAX_WIDTH / 64);
    }
    fix_crc(big, big_len);
    ASSERT_HAS(expect_refused(big, big_len), "truncated");
    free(big);
    free(buf);
    bnn_free(&m);
}

static void test_content_rules(void) {
    bnn_model m;
    random_model(&m, "content", 7);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *copy = malloc(len);
    const size_t rec0 = OFF_LAYER0, w0 = rec0 + 20;
    const size_t dir0 = w0 + 70 * 8 + 70 * 4;

    /* padding bit: layer 0 has fan-in 21, so bit 21 of a row's word is padding */
    memcpy(copy, buf, len);
    copy[w0 + 5 * 8 + 2] |= 0x20; /* row 5, bit 21 */
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len),
               "x.bnn: layer 0 row 5 (byte 156): nonzero padding bits past fan-in 21");
    memcpy(copy, buf, len);
    copy[w0 + 5 * 8 + 7] |= 0x80; /* bit 63 */
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "nonzero padding bits");
    /* bit 20 is data: flipping it gives a valid, different model */
    memcpy(copy, buf, len);
    copy[w0 + 5 * 8 + 2] ^= 0x10;
    fix_crc(copy, len);
    bnn_model back;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(copy, len, "x.bnn", &back, &err), APX_OK);
    CU_ASSERT_NOT_EQUAL(bnn_weight_get(&back, 0, 5, 20), bnn_weight_get(&m, 0, 5, 20));
    bnn_free(&back);

    /* directions: only 0x01 and 0xff */
    memcpy(copy, buf, len);
    copy[dir0 + 9] = 0;
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "layer 0 neuron 9");
    memcpy(copy, buf, len);
    copy[dir0 + 9] = 2;
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "direction 2, expected +1 or -1");
    /* the pad bytes after 70 directions (2 of them) must be zero */
    memcpy(copy, buf, len);
    copy[dir0 + 71] = 1;
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "pad byte is not zero");
    /* name padding after the NUL, and a name without NUL */
    memcpy(copy, buf, len);
    copy[OFF_NAME + 40] = 'x';
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "byte 56: model name padding is not zero");
    memcpy(copy, buf, len);
    memset(copy + OFF_NAME, 'a', 64);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "not NUL-terminated");

    /* the writer refuses what the reader would refuse, and writes nothing */
    const char *path = test_path("padded.bnn");
    m.image[m.layers[1].offset + 1] |= 1ull << 63; /* layer 1 row 0, bit 127 > fan-in 70 */
    uint8_t *out = NULL;
    size_t out_len = 0;
    CU_ASSERT_EQUAL(bnn_encode(&m, &out, &out_len, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "nonzero padding bits");
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(bnn_save(&m, path, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "padded.bnn");
    struct stat st;
    CU_ASSERT(stat(path, &st) != 0);
    CU_ASSERT_FALSE(temp_files_left());
    m.image[m.layers[1].offset + 1] &= ~(1ull << 63);
    m.layers[0].direction[3] = 0;
    CU_ASSERT_EQUAL(bnn_encode(&m, &out, &out_len, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "direction 0");
    free(copy);
    free(buf);
    bnn_free(&m);
}

/* FNV-1a 64 over the bytes the format doc names: all but the name field and
 * the CRC trailer. */
static void reference_hash(const uint8_t *buf, size_t len, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len - 4; i++) {
        if (i >= OFF_NAME && i < OFF_NAME + 64) continue;
        h = (h ^ buf[i]) * 0x100000001b3ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static void test_hash(void) {
    bnn_model m;
    random_model(&m, "hash-a", 8);
    char h0[17], h1[17], ref[17];
    bnn_hash_hex(&m, h0);
    CU_ASSERT_EQUAL(strlen(h0), 16);
    CU_ASSERT_EQUAL(strspn(h0, "0123456789abcdef"), 16);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    reference_hash(buf, len, ref);
    CU_ASSERT_STRING_EQUAL(h0, ref);
    free(buf);
    /* renaming keeps the hash: it identifies the content */
    snprintf(m.name, sizeof m.name, "%s", "renamed");
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    /* one weight bit in any layer changes it, and restoring restores it */
    for (uint32_t l = 0; l < m.n_layers; l++) {
        uint32_t r = m.layers[l].out - 1, c = m.layers[l].in - 1;
        bnn_weight_set(&m, l, r, c, !bnn_weight_get(&m, l, r, c));
        bnn_hash_hex(&m, h1);
        CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
        bnn_weight_set(&m, l, r, c, !bnn_weight_get(&m, l, r, c));
        bnn_hash_hex(&m, h1);
        CU_ASSERT_STRING_EQUAL(h0, h1);
    }
    /* a threshold, a direction and the scale are content too */
    m.layers[1].threshold[64] += 1;
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    m.layers[1].threshold[64] -= 1;
    m.layers[0].direction[0] = (int8_t)-m.layers[0].direction[0];
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    m.layers[0].direction[0] = (int8_t)-m.layers[0].direction[0];
    m.layers[2].scale *= 2;
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    m.layers[2].scale /= 2;
    /* the hash of a decoded copy equals the original's */
    buf = encode(&m, &len);
    bnn_model back;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    bnn_hash_hex(&back, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    bnn_free(&back);
    free(buf);
    bnn_free(&m);
}

static void test_file_errors(void) {
    bnn_model m;
    apx_error err = {0};
    const char *missing = test_path("missing.bnn");
    CU_ASSERT_EQUAL(bnn_load(missing, &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "missing.bnn: cannot open");
    CU_ASSERT_EQUAL(bnn_load(test_tmpdir(), &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "not a regular file");
    /* a large file that is not a model: refused from its first bytes */
    size_t n = 1 << 20;
    char *junk = calloc(1, n);
    memcpy(junk, "SQLite format 3", 16);
    const char *p = test_write_file("junk.bnn", junk, n);
    CU_ASSERT_EQUAL(bnn_load(p, &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "junk.bnn: not an apxsim model file (bad magic)");
    free(junk);
    p = test_write_file("empty.bnn", "", 0);
    CU_ASSERT_EQUAL(bnn_load(p, &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "empty.bnn: truncated");
    /* a corrupt file on disk names the file */
    bnn_model good;
    random_model(&good, "disk", 9);
    size_t len;
    uint8_t *buf = encode(&good, &len);
    buf[len / 2] ^= 4;
    p = test_write_file("corrupt.bnn", buf, len);
    CU_ASSERT_EQUAL(bnn_load(p, &m, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "corrupt.bnn: checksum mismatch (file corrupt)");
    free(buf);
    /* saving into a directory that does not exist fails and says where */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.bnn", test_tmpdir());
    CU_ASSERT_EQUAL(bnn_save(&good, bad, &err), APX_EWORK);
    ASSERT_HAS(err.msg, "no/such/dir/m.bnn");
    bnn_free(&good);
}

void add_bnn_file_suite(void) {
    TEST_SUITE("bnn_file",
               {"round trip (memory and file)", test_round_trip},
               {"single-byte corruption refused", test_corruption},
               {"every truncation refused", test_truncation},
               {"magic and version", test_magic_and_version},
               {"hostile fields refused before allocating", test_hostile_fields},
               {"padding bits, directions, name padding", test_content_rules},
               {"content hash", test_hash},
               {"file errors", test_file_errors});
}
