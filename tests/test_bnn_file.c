/* test_bnn_file.c - the .bnn model file (docs/bnn-format.md).
 *
 * A small random dense model (21 -> 70 -> 65 -> 10: padding bits in every
 * layer, odd widths so direction padding is exercised) and a small random
 * convolutional one (7x5x3 -> conv 6 pool 2 -> conv 5 -> dense 9 -> 4) are
 * encoded (format version 2), decoded, saved and loaded; then corrupted,
 * truncated and hand-edited copies (with the CRC recomputed, as a buggy
 * writer would produce) must all be refused without touching the output
 * model. Version 1 files, written here by a reference encoder that follows
 * the format page, must still be read, and hash as they always did.
 * Models on binarized pixels (first layer B1 or CONV_B1) are written as
 * version 3, whose header adds the input threshold; the same properties are
 * checked for them, plus the threshold's and the new kinds' own rules. */
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

/* Byte offsets of the file format (docs/bnn-format.md), version 2. */
#define OFF_VERSION 8
#define OFF_NAME 16
#define OFF_N_CLASSES 88
#define OFF_N_LAYERS 92
#define OFF_IN_CHANNELS 96
#define OFF_LAYER0 100
#define REC 36 /* layer record */
#define V1_OFF_LAYER0 96
#define V1_REC 20
#define OFF_THRESHOLD 100 /* version 3 */
#define V3_OFF_LAYER0 104

/* The convolutional test model: 7x5x3 input; conv 6 pool 2 -> 3x2x6;
 * conv 5 pool 1 -> 3x2x5 = 30; dense 9; output 4. */
#define CH 7
#define CW 5
#define CC 3
static const bnn_layer_spec conv_spec[] = {
    {BNN_CONV_U8, 6, 2}, {BNN_CONV_BIN, 5, 1}, {BNN_DENSE_BIN, 9, 1}, {BNN_DENSE_OUT, 4, 1}};
#define CONV_LAYERS 4

#define ASSERT_HAS(msg, sub)                                                          \
    do {                                                                              \
        int has_ = strstr((msg), (sub)) != NULL;                                     \
        if (!has_) fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", (msg), (sub)); \
        CU_ASSERT(has_);                                                              \
    } while (0)

/* Random weights, thresholds (full range), directions and scale. */
static void randomize(bnn_model *m, uint64_t seed) {
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

static void random_model(bnn_model *m, const char *name, uint64_t seed) {
    apx_error err = {0};
    int rc = bnn_create(m, name, ROWS, COLS, N_LAYERS, widths, &err);
    if (rc) fprintf(stderr, "\n  bnn_create: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    randomize(m, seed);
}

static void random_conv_model(bnn_model *m, const char *name, uint64_t seed) {
    apx_error err = {0};
    int rc = bnn_create_layers(m, name, CH, CW, CC, CONV_LAYERS, conv_spec, &err);
    if (rc) fprintf(stderr, "\n  bnn_create_layers: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    randomize(m, seed);
}

static int models_equal(const bnn_model *a, const bnn_model *b) {
    if (strcmp(a->name, b->name) || a->in_rows != b->in_rows || a->in_cols != b->in_cols ||
        a->in_channels != b->in_channels || a->n_classes != b->n_classes ||
        a->n_layers != b->n_layers || a->image_words != b->image_words ||
        a->in_threshold != b->in_threshold)
        return 0;
    if (memcmp(a->image, b->image, a->image_words * sizeof *a->image)) return 0;
    for (uint32_t l = 0; l < a->n_layers; l++) {
        const bnn_layer *x = &a->layers[l], *y = &b->layers[l];
        if (x->kind != y->kind || x->in != y->in || x->out != y->out || x->words != y->words ||
            x->in_c != y->in_c || x->in_h != y->in_h || x->in_w != y->in_w ||
            x->pool != y->pool || x->offset != y->offset ||
            memcmp(&x->scale, &y->scale, sizeof x->scale))
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

static void put_le64(uint8_t *p, uint64_t v) {
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Version 1 of a dense model, written field by field as the version 1
 * table of docs/bnn-format.md describes it (independently of the library's
 * writer, which never writes version 1). */
static uint8_t *encode_v1(const bnn_model *m, size_t *len) {
    size_t n = V1_OFF_LAYER0 + 4;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        n += V1_REC + (size_t)8 * L->out * L->words;
        if (L->kind != BNN_DENSE_OUT) n += 4 * (size_t)L->out + ((L->out + 3) & ~3u);
    }
    uint8_t *b = calloc(1, n);
    CU_ASSERT_FATAL(b != NULL);
    memcpy(b, "APXSBNN\0", 8);
    put_le32(b + 8, 1);
    put_le32(b + 12, 96);
    memcpy(b + OFF_NAME, m->name, strnlen(m->name, 63));
    put_le32(b + 80, m->in_rows);
    put_le32(b + 84, m->in_cols);
    put_le32(b + 88, m->n_classes);
    put_le32(b + 92, m->n_layers);
    size_t pos = V1_OFF_LAYER0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        uint32_t scale_bits;
        memcpy(&scale_bits, &L->scale, 4);
        put_le32(b + pos, L->kind);
        put_le32(b + pos + 4, L->in);
        put_le32(b + pos + 8, L->out);
        put_le32(b + pos + 12, L->words);
        put_le32(b + pos + 16, scale_bits);
        pos += V1_REC;
        for (size_t i = 0; i < (size_t)L->out * L->words; i++, pos += 8)
            put_le64(b + pos, m->image[L->offset + i]);
        if (L->kind == BNN_DENSE_OUT) continue;
        for (uint32_t i = 0; i < L->out; i++, pos += 4) put_le32(b + pos, (uint32_t)L->threshold[i]);
        for (uint32_t i = 0; i < L->out; i++) b[pos++] = (uint8_t)L->direction[i];
        pos += (4 - L->out % 4) % 4;
    }
    CU_ASSERT_EQUAL(pos + 4, n);
    fix_crc(b, n);
    *len = n;
    return b;
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

    /* the documented size: 100 + per layer 36 + 8*out*words (+ 4*out +
     * out rounded up to 4 for hidden layers) + 4 */
    size_t want = 100 + 4;
    for (uint32_t l = 0; l < N_LAYERS; l++) {
        uint32_t in = widths[l], out = widths[l + 1], words = (in + 63) / 64;
        want += 36 + (size_t)8 * out * words;
        if (l < N_LAYERS - 1) want += 4 * (size_t)out + ((out + 3) & ~3u);
    }
    CU_ASSERT_EQUAL(len, want);
    CU_ASSERT(memcmp(buf, "APXSBNN\0", 8) == 0);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_VERSION), 2);
    CU_ASSERT_EQUAL(get_le32(buf + 12), 100);
    CU_ASSERT_STRING_EQUAL((const char *)buf + OFF_NAME, "tiny-fc");
    CU_ASSERT_EQUAL(get_le32(buf + OFF_N_LAYERS), N_LAYERS);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_IN_CHANNELS), 1);
    /* a dense record: in_c = in, in_h = in_w = pool = 1 */
    CU_ASSERT_EQUAL(get_le32(buf + OFF_LAYER0 + 4), 21);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_LAYER0 + 20), 21);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_LAYER0 + 24), 1);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_LAYER0 + 28), 1);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_LAYER0 + 32), 1);
    /* layer 0's first weight word is at byte 136, little endian */
    uint64_t w0 = 0;
    for (int i = 7; i >= 0; i--) w0 = w0 << 8 | buf[136 + i];
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

/* Every byte of [0, header_end) flipped three ways, and 400 random flips
 * of the rest (the CRC trailer included): all must be refused. */
static void corruption_sweep(const uint8_t *buf, size_t len, size_t header_end, uint64_t seed) {
    uint8_t *copy = malloc(len);
    CU_ASSERT_FATAL(copy != NULL);
    static const uint8_t flips[] = {0x01, 0x80, 0xff};
    unsigned refused = 0, tried = 0;
    for (size_t pos = 0; pos < header_end; pos++)
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
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 1, 2), 0, 0);
    refused = tried = 0;
    for (int k = 0; k < 400; k++) {
        size_t pos = header_end + (size_t)rng_below(&s, len - header_end);
        uint8_t x = (uint8_t)(1 + rng_below(&s, 255));
        memcpy(copy, buf, len);
        copy[pos] ^= x;
        tried++;
        apx_error err = {0};
        bnn_model out;
        if (bnn_decode(copy, len, "x.bnn", &out, &err) == APX_EINPUT)
            refused++;
        else
            bnn_free(&out);
    }
    CU_ASSERT_EQUAL(refused, tried);
    free(copy);
}

static void test_corruption(void) {
    bnn_model m;
    random_model(&m, "corrupt-me", 3);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    corruption_sweep(buf, len, OFF_LAYER0 + REC, 99);
    uint8_t *copy = malloc(len);
    /* a weight byte: the CRC is what catches it, and says so */
    memcpy(copy, buf, len);
    copy[OFF_LAYER0 + REC + 3] ^= 0x10;
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
    /* the same for a convolutional model (its records carry the geometry) */
    random_conv_model(&m, "corrupt-conv", 31);
    buf = encode(&m, &len);
    corruption_sweep(buf, len, OFF_LAYER0 + 2 * REC, 98);
    free(buf);
    /* and for a version 1 file */
    bnn_free(&m);
    random_model(&m, "corrupt-v1", 32);
    buf = encode_v1(&m, &len);
    corruption_sweep(buf, len, V1_OFF_LAYER0 + V1_REC, 97);
    free(buf);
    bnn_free(&m);
}

/* Every prefix, from empty to one byte short (a copy of exactly that
 * length, so ASan sees any read past the end), and one byte too many. */
static void truncation_sweep(const uint8_t *buf, size_t len) {
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
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ASSERT_HAS(expect_refused(longer, len + 1), "trailing");
    free(longer);
}

static void test_truncation(void) {
    bnn_model m;
    random_model(&m, "cut", 4);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    truncation_sweep(buf, len);
    CU_ASSERT_EQUAL(bnn_decode(NULL, 0, "x.bnn", &m, NULL), APX_EINPUT);
    free(buf);
    bnn_free(&m);
    random_conv_model(&m, "cut-conv", 41);
    buf = encode(&m, &len);
    truncation_sweep(buf, len);
    free(buf);
    bnn_free(&m);
    random_model(&m, "cut-v1", 42);
    buf = encode_v1(&m, &len);
    truncation_sweep(buf, len);
    free(buf);
    bnn_free(&m);
}

/* Convolutional models: the records carry the geometry, the round trip is
 * exact and canonical, and a file written by hand to the documented
 * offsets decodes to the model. */
static void test_conv_round_trip(void) {
    bnn_model m, back;
    random_conv_model(&m, "tiny-conv", 11);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    CU_ASSERT_EQUAL(back.in_channels, CC);
    CU_ASSERT_EQUAL(back.layers[1].in_h, 3);
    CU_ASSERT_EQUAL(back.layers[1].in_w, 2);
    CU_ASSERT_EQUAL(back.layers[1].in_c, 6);
    CU_ASSERT_EQUAL(back.layers[2].in, 30);
    size_t len2;
    uint8_t *buf2 = encode(&back, &len2);
    CU_ASSERT(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);
    bnn_free(&back);

    /* the records at their documented offsets */
    CU_ASSERT_EQUAL(get_le32(buf + 80), CH);
    CU_ASSERT_EQUAL(get_le32(buf + 84), CW);
    CU_ASSERT_EQUAL(get_le32(buf + OFF_IN_CHANNELS), CC);
    const uint8_t *r0 = buf + OFF_LAYER0;
    CU_ASSERT_EQUAL(get_le32(r0), BNN_CONV_U8);
    CU_ASSERT_EQUAL(get_le32(r0 + 4), 27);  /* 9 * in_c */
    CU_ASSERT_EQUAL(get_le32(r0 + 8), 6);
    CU_ASSERT_EQUAL(get_le32(r0 + 12), 1);
    CU_ASSERT_EQUAL(get_le32(r0 + 16), 0);  /* scale of a hidden layer */
    CU_ASSERT_EQUAL(get_le32(r0 + 20), CC); /* in_c, in_h, in_w, pool */
    CU_ASSERT_EQUAL(get_le32(r0 + 24), CH);
    CU_ASSERT_EQUAL(get_le32(r0 + 28), CW);
    CU_ASSERT_EQUAL(get_le32(r0 + 32), 2);
    const uint8_t *r1 = r0 + REC + 6 * 8 + 6 * 4 + 8;
    CU_ASSERT_EQUAL(get_le32(r1), BNN_CONV_BIN);
    CU_ASSERT_EQUAL(get_le32(r1 + 4), 54);
    CU_ASSERT_EQUAL(get_le32(r1 + 20), 6);
    CU_ASSERT_EQUAL(get_le32(r1 + 24), 3);
    CU_ASSERT_EQUAL(get_le32(r1 + 28), 2);
    CU_ASSERT_EQUAL(get_le32(r1 + 32), 1);
    const uint8_t *r2 = r1 + REC + 5 * 8 + 5 * 4 + 8;
    CU_ASSERT_EQUAL(get_le32(r2), BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(get_le32(r2 + 4), 30);
    CU_ASSERT_EQUAL(get_le32(r2 + 20), 30);
    free(buf);

    /* through a file; then a deeper model with a pooled odd map and a
     * single-pixel map at the end (1x1 after two pools of 3x2 -> 1x1) */
    const char *path = test_path("tiny-conv.bnn");
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    bnn_free(&back);
    bnn_free(&m);
    static const bnn_layer_spec deep[] = {{BNN_CONV_U8, 65, 2},  {BNN_CONV_BIN, 3, 2},
                                          {BNN_CONV_BIN, 70, 1}, {BNN_DENSE_BIN, 5, 1},
                                          {BNN_DENSE_BIN, 66, 1}, {BNN_DENSE_OUT, 2, 1}};
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "deep", 5, 4, 2, 6, deep, &err), APX_OK);
    randomize(&m, 12);
    buf = encode(&m, &len);
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    CU_ASSERT_EQUAL(back.layers[2].in_h, 1);
    CU_ASSERT_EQUAL(back.layers[2].in, 27);
    CU_ASSERT_EQUAL(back.layers[3].in, 70);
    bnn_free(&back);
    free(buf);
    bnn_free(&m);
}

/* Version 1 files (dense only, no geometry) are still read: the model is
 * the same as the version 2 round trip gives, and saving it writes
 * version 2. */
static void test_version_1(void) {
    bnn_model m, back, again;
    random_model(&m, "old-fc", 13);
    size_t len;
    uint8_t *v1 = encode_v1(&m, &len);
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(v1, len, "old.bnn", &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    CU_ASSERT_EQUAL(back.in_channels, 1);
    CU_ASSERT_EQUAL(back.layers[1].in_c, 70);
    CU_ASSERT_EQUAL(back.layers[1].in_h, 1);
    CU_ASSERT_EQUAL(back.layers[1].pool, 1);
    const char *path = test_write_file("old.bnn", v1, len);
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &again, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &again));
    bnn_free(&again);
    size_t len2;
    uint8_t *v2 = encode(&back, &len2);
    CU_ASSERT_EQUAL(get_le32(v2 + OFF_VERSION), 2);
    CU_ASSERT_EQUAL(len2, len + 4 + N_LAYERS * (REC - V1_REC));
    free(v2);
    bnn_free(&back);

    /* version 1 rules stay version 1 rules: no conv kinds, header 96 */
    uint8_t *copy = malloc(len);
    memcpy(copy, v1, len);
    put_le32(copy + V1_OFF_LAYER0, BNN_CONV_U8);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "layer 0 (byte 96): kind 4, expected 1 (U8)");
    memcpy(copy, v1, len);
    put_le32(copy + 12, 100);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "byte 12: header size 100, expected 96 for version 1");
    memcpy(copy, v1, len);
    put_le32(copy + V1_OFF_LAYER0 + 4, 22);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "layer 0 (byte 100): fan-in 22, expected 21");
    free(copy);
    free(v1);
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
    put_le32(copy + OFF_VERSION, 4);
    ASSERT_HAS(expect_refused(copy, len),
               "written by a newer apxsim (format version 4; this build reads versions 1 to 3)");
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "written by a newer apxsim");
    /* even if its layout is entirely different (shorter than a v1 header) */
    ASSERT_HAS(expect_refused(copy, 20), "written by a newer apxsim");
    put_le32(copy + OFF_VERSION, 0);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "version 0");
    memcpy(copy, buf, len);
    put_le32(copy + 12, 96);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "byte 12: header size 96, expected 100 for version 2");
    /* a version 2 file relabelled as version 1 is not read as one */
    memcpy(copy, buf, len);
    put_le32(copy + OFF_VERSION, 1);
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len), "byte 12: header size 100, expected 96 for version 1");
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
    /* record offsets: layer 0 at 100; layer 1 after 36 + 70*1*8 + 70*4 + 72 */
    const size_t rec0 = OFF_LAYER0;
    const size_t rec1 = rec0 + REC + 70 * 8 + 70 * 4 + 72;
    const size_t rec2 = rec1 + REC + 65 * 2 * 8 + 65 * 4 + 68;
    CU_ASSERT_EQUAL(get_le32(buf + rec1), BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(get_le32(buf + rec2), BNN_DENSE_OUT);

    expect_field(buf, len, OFF_N_LAYERS, 0xffffffffu, "n_layers 4294967295 is outside 2..64");
    expect_field(buf, len, OFF_N_LAYERS, 65, "n_layers 65");
    expect_field(buf, len, OFF_N_LAYERS, 1, "n_layers 1");
    expect_field(buf, len, 80, 0, "byte 80: input size 0x7x1 (rows x cols x channels)");
    expect_field(buf, len, 80, 0x1000000, "input size 16777216x7x1");  /* > 2^25 values */
    expect_field(buf, len, OFF_IN_CHANNELS, 0, "input size 3x7x0");
    expect_field(buf, len, OFF_IN_CHANNELS, 0xffffffffu, "input size 3x7x4294967295");
    /* 2 channels: the dense layer 0 then needs a fan-in of 42 */
    expect_field(buf, len, OFF_IN_CHANNELS, 2,
                 "layer 0 (byte 104): fan-in 21, expected 42 (in_rows * in_cols * in_channels)");
    expect_field(buf, len, OFF_N_CLASSES, 0xffffffffu, "n_classes 4294967295");
    expect_field(buf, len, OFF_N_CLASSES, 11, "layer 2 (byte");   /* last width 10 != 11 */
    expect_field(buf, len, rec0 + 8, 0xffffffffu, "layer 0 (byte 108): width 4294967295");
    expect_field(buf, len, rec0, BNN_DENSE_BIN,
                 "layer 0 (byte 100): kind 2, expected 1 (U8) or 4 (CONV_U8)");
    expect_field(buf, len, rec0, 0xffffffffu, "kind 4294967295, expected 1 (U8) or 4 (CONV_U8)");
    expect_field(buf, len, rec1, BNN_DENSE_OUT, "layer 1");
    expect_field(buf, len, rec2, BNN_DENSE_BIN, "kind 2, expected 3 (OUT)");
    expect_field(buf, len, rec0 + 4, 22, "layer 0 (byte 104): fan-in 22, expected 21");
    /* the geometry of a dense record is fixed: in_c = in, in_h = in_w = pool = 1 */
    expect_field(buf, len, rec1 + 20, 69, "layer 1 (byte");
    expect_field(buf, len, rec1 + 20, 69, "dense layer with in_c 69, in_h 1, in_w 1, pool 1");
    expect_field(buf, len, rec1 + 24, 0, "dense layer with in_c 70, in_h 0");
    expect_field(buf, len, rec1 + 28, 2, "in_w 2");
    expect_field(buf, len, rec1 + 32, 2, "pool 2; expected in_c = in (70), in_h = in_w = pool = 1");
    /* a convolution after a dense layer */
    expect_field(buf, len, rec1, BNN_CONV_BIN,
                 "layer 1 (byte 1048): kind 5 (CONV_BIN) after a dense layer");
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
    uint8_t hostile[OFF_LAYER0 + 2 * REC + 4];
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
    put_le32(hostile + rec0 + 20, BNN_MAX_WIDTH);
    put_le32(hostile + rec0 + 24, 1);
    put_le32(hostile + rec0 + 28, 1);
    put_le32(hostile + rec0 + 32, 1);
    fix_crc(hostile, sizeof hostile);
    const char *msg = expect_refused(hostile, sizeof hostile);
    ASSERT_HAS(msg, "truncated: 176 bytes, layer 1's record at byte");
    /* and 64 such layers with all records present: the size check */
    size_t big_len = OFF_LAYER0 + 64 * REC + 4;
    uint8_t *big = calloc(1, big_len);
    memcpy(big, hostile, OFF_LAYER0);
    put_le32(big + OFF_N_LAYERS, 64);
    for (uint32_t l = 0; l < 64; l++) {
        uint8_t *r = big + OFF_LAYER0 + REC * l;
        put_le32(r, l == 0 ? BNN_DENSE_U8 : l == 63 ? BNN_DENSE_OUT : BNN_DENSE_BIN);
        put_le32(r + 4, BNN_MAX_WIDTH);
        put_le32(r + 8, BNN_MAX_WIDTH);
        put_le32(r + 12, BNN_MAX_WIDTH / 64);
        if (l == 63) put_le32(r + 16, 0x3f800000u);
        put_le32(r + 20, BNN_MAX_WIDTH);
        put_le32(r + 24, 1);
        put_le32(r + 28, 1);
        put_le32(r + 32, 1);
    }
    fix_crc(big, big_len);
    ASSERT_HAS(expect_refused(big, big_len), "truncated: 2408 bytes, layer 1's record at byte");
    free(big);
    free(buf);
    bnn_free(&m);
}

/* A hand-made version 2 file: the header and n layer records, fields of
 * record l from rec[l] (kind, in, out, words, scale bits, in_c, in_h, in_w,
 * pool), each followed by a zero body of the size its record implies except
 * the last, which is followed by the CRC only (the checks under test come
 * before the size check). Caller frees. */
static uint8_t *hand_file(size_t *len, uint32_t rows, uint32_t cols, uint32_t chans,
                          uint32_t classes, uint32_t n, const uint32_t rec[][9]) {
    size_t at[8], pos = OFF_LAYER0;
    for (uint32_t l = 0; l < n; l++) {
        at[l] = pos;
        pos += REC;
        if (l + 1 < n) {
            size_t out = rec[l][2];
            pos += 8 * out * rec[l][3];
            if (rec[l][0] != BNN_DENSE_OUT) pos += 4 * out + ((out + 3) & ~(size_t)3);
        }
    }
    *len = pos + 4;
    uint8_t *b = calloc(1, *len);
    CU_ASSERT_FATAL(b != NULL);
    memcpy(b, "APXSBNN\0", 8);
    put_le32(b + 8, 2);
    put_le32(b + 12, 100);
    memcpy(b + OFF_NAME, "hostile", 7);
    put_le32(b + 80, rows);
    put_le32(b + 84, cols);
    put_le32(b + OFF_N_CLASSES, classes);
    put_le32(b + OFF_N_LAYERS, n);
    put_le32(b + OFF_IN_CHANNELS, chans);
    for (uint32_t l = 0; l < n; l++)
        for (int f = 0; f < 9; f++) put_le32(b + at[l] + 4 * f, rec[l][f]);
    fix_crc(b, *len);
    return b;
}

/* The shape chain of convolutional files: every geometry field is checked
 * against what the previous layer produces, and geometry that would need
 * huge activation maps is refused from the records alone, before anything
 * is allocated (ASan aborts on a huge allocation, so a reader that
 * allocated first would fail this test). */
static void test_hostile_conv(void) {
    bnn_model m;
    random_conv_model(&m, "conv-fields", 14);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    const size_t rec0 = OFF_LAYER0, rec1 = rec0 + REC + 6 * 8 + 6 * 4 + 8,
                 rec2 = rec1 + REC + 5 * 8 + 5 * 4 + 8, rec3 = rec2 + REC + 9 * 8 + 9 * 4 + 12;
    CU_ASSERT_EQUAL(get_le32(buf + rec1), BNN_CONV_BIN);
    CU_ASSERT_EQUAL(get_le32(buf + rec2), BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(get_le32(buf + rec3), BNN_DENSE_OUT);

    expect_field(buf, len, rec0 + 24, 8,
                 "layer 0 (byte 120): input 8x5x3 (in_h x in_w x in_c), expected 7x5x3 from the "
                 "model input");
    expect_field(buf, len, OFF_IN_CHANNELS, 4, "input 7x5x3 (in_h x in_w x in_c), expected 7x5x4");
    expect_field(buf, len, rec0 + 32, 3, "layer 0 (byte 132): pool 3, expected 1 or 2");
    expect_field(buf, len, rec0 + 32, 0, "pool 0, expected 1 or 2");
    expect_field(buf, len, rec0 + 4, 26, "layer 0 (byte 104): fan-in 26, expected 27 (9 * in_c)");
    expect_field(buf, len, rec0 + 12, 2, "layer 0: words 2, expected 1 for fan-in 27");
    expect_field(buf, len, rec1 + 20, 5,
                 "layer 1 (byte 236): input 3x2x5 (in_h x in_w x in_c), expected 3x2x6 from the "
                 "previous layer");
    /* layer 0 without its pool makes layer 1's recorded input wrong */
    expect_field(buf, len, rec0 + 32, 1, "layer 1 (byte 236): input 3x2x6 (in_h x in_w x in_c), "
                                         "expected 7x5x6");
    expect_field(buf, len, rec2 + 4, 31,
                 "layer 2 (byte 324): fan-in 31, expected 30 (the previous layer's output H x W "
                 "x C)");
    expect_field(buf, len, rec2, BNN_CONV_BIN, "layer 2 (byte 340): input 1x1x30 (in_h x in_w x "
                                               "in_c), expected 3x2x5");
    expect_field(buf, len, rec1, BNN_DENSE_BIN,
                 "layer 1 (byte 220): fan-in 54, expected 36 (the previous layer's output H x W x C)");
    expect_field(buf, len, rec0, BNN_CONV_BIN, "kind 5, expected 1 (U8) or 4 (CONV_U8)");
    expect_field(buf, len, rec3, BNN_CONV_BIN, "layer 3 (byte 476): kind 5, expected 3 (OUT)");
    expect_field(buf, len, rec1 + 8, 0, "layer 1 (byte 224): width 0 is outside 1..1048576");
    free(buf);
    bnn_free(&m);

    uint8_t *b;
    const char *msg;
    /* a conv map of 4096 x 4096 x 2^20 bits from a 140-byte file */
    const uint32_t huge_map[][9] = {{BNN_CONV_U8, 9, 1u << 20, 1, 0, 1, 4096, 4096, 1}};
    b = hand_file(&len, 4096, 4096, 1, 10, 1, huge_map);
    put_le32(b + OFF_N_LAYERS, 2);
    fix_crc(b, len);
    msg = expect_refused(b, len);
    ASSERT_HAS(msg, "layer 0 (byte 108): output map 4096x4096x1048576 has 17592186044416 values");
    CU_ASSERT(strstr(msg, "checksum") == NULL);
    free(b);
    /* a dense layer after a conv map it cannot take as fan-in */
    const uint32_t wide[][9] = {{BNN_CONV_U8, 9, 64, 1, 0, 1, 2048, 2048, 1},
                                {BNN_DENSE_OUT, 1u << 28, 10, 1u << 22, 0x3f800000u, 1u << 28,
                                 1, 1, 1}};
    b = hand_file(&len, 2048, 2048, 1, 10, 2, wide);
    ASSERT_HAS(expect_refused(b, len),
               "layer 1 (byte 972): its input 2048x2048x64 needs a fan-in above 1048576");
    free(b);
    /* a conv fan-in above the limit (9 x 2^20 channels) */
    const uint32_t deep_c[][9] = {{BNN_CONV_U8, 9u << 20, 1, 147456, 0, 1u << 20, 1, 1, 1}};
    b = hand_file(&len, 1, 1, 1u << 20, 10, 1, deep_c);
    put_le32(b + OFF_N_LAYERS, 2);
    fix_crc(b, len);
    ASSERT_HAS(expect_refused(b, len),
               "layer 0 (byte 104): its input 1x1x1048576 needs a fan-in above 1048576");
    free(b);
    /* pooling a map one row high */
    const uint32_t flat[][9] = {{BNN_CONV_U8, 9, 4, 1, 0, 1, 1, 5, 2}};
    b = hand_file(&len, 1, 5, 1, 10, 1, flat);
    put_le32(b + OFF_N_LAYERS, 2);
    fix_crc(b, len);
    ASSERT_HAS(expect_refused(b, len), "layer 0 (byte 132): a 1x5 input is too small for pool 2");
    free(b);
    /* the same file as it is: one layer is not a model */
    b = hand_file(&len, 1, 5, 1, 10, 1, flat);
    ASSERT_HAS(expect_refused(b, len), "n_layers 1 is outside 2..64");
    free(b);
    /* an input of 2^25 + 1 values */
    const uint32_t two[][9] = {{BNN_DENSE_U8, 9, 4, 1, 0, 9, 1, 1, 1},
                               {BNN_DENSE_OUT, 4, 10, 1, 0x3f800000u, 4, 1, 1, 1}};
    b = hand_file(&len, (1u << 25) + 1, 1, 1, 10, 2, two);
    ASSERT_HAS(expect_refused(b, len), "byte 80: input size 33554433x1x1");
    free(b);
}

static void test_content_rules(void) {
    bnn_model m;
    random_model(&m, "content", 7);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    uint8_t *copy = malloc(len);
    const size_t rec0 = OFF_LAYER0, w0 = rec0 + REC;
    const size_t dir0 = w0 + 70 * 8 + 70 * 4;

    /* padding bit: layer 0 has fan-in 21, so bit 21 of a row's word is padding */
    memcpy(copy, buf, len);
    copy[w0 + 5 * 8 + 2] |= 0x20; /* row 5, bit 21 */
    fix_crc(copy, len);
    ASSERT_HAS(expect_refused(copy, len),
               "x.bnn: layer 0 row 5 (byte 176): nonzero padding bits past fan-in 21");
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
 * the CRC trailer, of the version 1 encoding for a dense one-channel model
 * and of the version 2 encoding for any other. */
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
    uint8_t *buf = encode_v1(&m, &len);
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
    /* the hash of a copy decoded from version 2 or from version 1 equals
     * the original's: the hash belongs to the model, not to the file */
    bnn_model back;
    apx_error err = {0};
    buf = encode(&m, &len);
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    bnn_hash_hex(&back, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    bnn_free(&back);
    free(buf);
    buf = encode_v1(&m, &len);
    CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
    bnn_hash_hex(&back, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    bnn_free(&back);
    free(buf);
    bnn_free(&m);

    /* a convolutional model hashes its version 2 encoding */
    random_conv_model(&m, "hash-conv", 9);
    bnn_hash_hex(&m, h0);
    buf = encode(&m, &len);
    reference_hash(buf, len, ref);
    CU_ASSERT_STRING_EQUAL(h0, ref);
    free(buf);
    bnn_weight_set(&m, 0, 5, 26, !bnn_weight_get(&m, 0, 5, 26));
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    bnn_free(&m);
    /* so does a dense model on a multi-channel input (version 1 has no
     * channels), and its hash differs from the same weights on 1 channel */
    uint32_t w2[] = {42, 5, 3};
    static const bnn_layer_spec dense3[] = {{BNN_DENSE_U8, 5, 1}, {BNN_DENSE_OUT, 3, 1}};
    bnn_model one, two;
    CU_ASSERT_EQUAL_FATAL(bnn_create(&one, "c1", 6, 7, 2, w2, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&two, "c2", 3, 7, 2, 2, dense3, &err), APX_OK);
    CU_ASSERT_EQUAL(one.image_words, two.image_words);
    bnn_hash_hex(&one, h0);
    bnn_hash_hex(&two, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    buf = encode(&two, &len);
    reference_hash(buf, len, ref);
    CU_ASSERT_STRING_EQUAL(h1, ref);
    free(buf);
    bnn_free(&one);
    bnn_free(&two);
}

/* The shipped model was converted from version 1 to version 2 once; its
 * hash (the key of its results) is the one it had as a version 1 file. */
static void test_zoo_model(void) {
    const char *path = APXSIM_SOURCE_ROOT "/workloads/zoo/fmnist-fc.bnn";
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    uint8_t head[16];
    CU_ASSERT_EQUAL(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    CU_ASSERT_EQUAL(get_le32(head + OFF_VERSION), 2);
    bnn_model m;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &m, &err), APX_OK);
    char h[17];
    bnn_hash_hex(&m, h);
    CU_ASSERT_STRING_EQUAL(h, "4485be6a66e90bbc");
    CU_ASSERT_EQUAL(m.in_channels, 1);
    CU_ASSERT_EQUAL(m.n_layers, 3);
    CU_ASSERT_EQUAL(m.layers[0].in, 784);
    CU_ASSERT_EQUAL(m.layers[1].in, 2048);
    CU_ASSERT_EQUAL(m.n_classes, 10);
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

/* ---- version 3: binarized inputs ------------------------------------------ */

/* The dense and conv test models with their first layer on binarized
 * pixels, and a given input threshold. */
static const bnn_layer_spec b1_spec[] = {
    {BNN_DENSE_B1, 70, 1}, {BNN_DENSE_BIN, 65, 1}, {BNN_DENSE_OUT, 10, 1}};
static const bnn_layer_spec conv_b1_spec[] = {
    {BNN_CONV_B1, 6, 2}, {BNN_CONV_BIN, 5, 1}, {BNN_DENSE_BIN, 9, 1}, {BNN_DENSE_OUT, 4, 1}};

static void random_b1_model(bnn_model *m, const char *name, uint64_t seed, int conv,
                            uint32_t threshold) {
    apx_error err = {0};
    int rc = conv ? bnn_create_layers(m, name, CH, CW, CC, CONV_LAYERS, conv_b1_spec, &err)
                  : bnn_create_layers(m, name, ROWS, COLS, 1, N_LAYERS, b1_spec, &err);
    if (rc) fprintf(stderr, "\n  bnn_create_layers: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(m->in_threshold, 128); /* the FINN default */
    randomize(m, seed);
    m->in_threshold = threshold;
}

/* A version 3 copy of a version 2 file: the threshold field inserted at
 * byte 100, version and header size changed, CRC recomputed. */
static uint8_t *to_v3(const uint8_t *v2, size_t len, uint32_t threshold, size_t *len3) {
    uint8_t *b = malloc(len + 4);
    memcpy(b, v2, OFF_LAYER0);
    put_le32(b + OFF_VERSION, 3);
    put_le32(b + 12, 104);
    put_le32(b + OFF_THRESHOLD, threshold);
    memcpy(b + V3_OFF_LAYER0, v2 + OFF_LAYER0, len - OFF_LAYER0);
    *len3 = len + 4;
    fix_crc(b, *len3);
    return b;
}

/* Binarized-input models are written as version 3 at the documented
 * offsets, round trip exactly (threshold included) through memory and
 * files, canonically; their files are 4 bytes longer than the version 2
 * file of the same model on 8-bit pixels would be. */
static void test_v3_round_trip(void) {
    static const uint32_t thresholds[] = {128, 1, 255, 77};
    apx_error err = {0};
    for (int conv = 0; conv < 2; conv++)
        for (int k = 0; k < 4; k++) {
            bnn_model m, back;
            random_b1_model(&m, conv ? "b1-conv" : "b1-fc", 20 + (uint64_t)k, conv, thresholds[k]);
            size_t len, len2, len8;
            uint8_t *buf = encode(&m, &len);
            CU_ASSERT_EQUAL(get_le32(buf + OFF_VERSION), 3);
            CU_ASSERT_EQUAL(get_le32(buf + 12), 104);
            CU_ASSERT_EQUAL(get_le32(buf + OFF_IN_CHANNELS), conv ? CC : 1);
            CU_ASSERT_EQUAL(get_le32(buf + OFF_THRESHOLD), thresholds[k]);
            CU_ASSERT_EQUAL(get_le32(buf + V3_OFF_LAYER0), conv ? BNN_CONV_B1 : BNN_DENSE_B1);
            CU_ASSERT_EQUAL(get_le32(buf + V3_OFF_LAYER0 + 4), conv ? 9 * CC : ROWS * COLS);
            CU_ASSERT_EQUAL(get_le32(buf + V3_OFF_LAYER0 + 32), conv ? 2 : 1);
            uint64_t w0 = 0; /* layer 0's first weight word follows its record */
            for (int i = 7; i >= 0; i--) w0 = w0 << 8 | buf[V3_OFF_LAYER0 + REC + i];
            CU_ASSERT_EQUAL(w0, m.image[0]);
            CU_ASSERT_EQUAL_FATAL(bnn_decode(buf, len, "mem", &back, &err), APX_OK);
            CU_ASSERT(models_equal(&m, &back));
            CU_ASSERT_EQUAL(back.in_threshold, thresholds[k]);
            uint8_t *buf2 = encode(&back, &len2);
            CU_ASSERT(len2 == len && memcmp(buf, buf2, len) == 0);
            free(buf2);
            bnn_free(&back);
            /* the same weights on 8-bit pixels: version 2, 4 bytes shorter */
            m.layers[0].kind = conv ? BNN_CONV_U8 : BNN_DENSE_U8;
            m.in_threshold = 0;
            uint8_t *b8 = encode(&m, &len8);
            CU_ASSERT_EQUAL(get_le32(b8 + OFF_VERSION), 2);
            CU_ASSERT_EQUAL(len8 + 4, len);
            free(b8);
            m.layers[0].kind = conv ? BNN_CONV_B1 : BNN_DENSE_B1;
            m.in_threshold = thresholds[k];
            /* through a file */
            const char *path = test_path("b1.bnn");
            CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
            CU_ASSERT_EQUAL_FATAL(bnn_load(path, &back, &err), APX_OK);
            CU_ASSERT(models_equal(&m, &back));
            bnn_free(&back);
            free(buf);
            bnn_free(&m);
        }
    CU_ASSERT_FALSE(temp_files_left());
}

/* Hostile version 3 files: the threshold out of range for a binarized
 * input or present for an 8-bit one, the new kinds anywhere but the first
 * layer or in a version 2 file, a version 3 file relabelled; and the
 * byte-flip and truncation sweeps. A version 3 file of a model on 8-bit
 * pixels (another writer may produce one) is read and hashes as the model. */
static void test_v3_hostile(void) {
    bnn_model m;
    random_b1_model(&m, "b1-hostile", 30, 0, 128);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    const size_t rec0 = V3_OFF_LAYER0, rec1 = rec0 + REC + 70 * 8 + 70 * 4 + 72;
    const size_t rec2 = rec1 + REC + 65 * 2 * 8 + 65 * 4 + 68;
    CU_ASSERT_EQUAL(get_le32(buf + rec1), BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(get_le32(buf + rec2), BNN_DENSE_OUT);
    expect_field(buf, len, OFF_THRESHOLD, 0,
                 "x.bnn: byte 100: input threshold 0, expected 1..255 for a first layer on "
                 "binarized pixels (kind 6, B1)");
    expect_field(buf, len, OFF_THRESHOLD, 256, "input threshold 256, expected 1..255");
    expect_field(buf, len, OFF_THRESHOLD, 0xffffffffu, "input threshold 4294967295");
    expect_field(buf, len, rec0, BNN_DENSE_U8,
                 "byte 100: input threshold 128, expected 0 for a first layer on 8-bit pixels "
                 "(kind 1, U8)");
    expect_field(buf, len, rec0, 8,
                 "layer 0 (byte 104): kind 8, expected 1 (U8), 4 (CONV_U8), 6 (B1) or 7 (CONV_B1)");
    expect_field(buf, len, rec1, BNN_DENSE_B1,
                 "layer 1 (byte 1052): kind 6, expected 2 (BIN) or 5 (CONV_BIN)");
    expect_field(buf, len, rec1, BNN_CONV_B1, "kind 7, expected 2 (BIN) or 5 (CONV_BIN)");
    expect_field(buf, len, rec2, BNN_DENSE_B1, "kind 6, expected 3 (OUT)");
    /* a conv first layer must find the model input's geometry in its record */
    expect_field(buf, len, rec0, BNN_CONV_B1,
                 "layer 0 (byte 124): input 1x1x21 (in_h x in_w x in_c), expected 3x7x1");
    /* relabelled: version 2 has 100-byte headers, and no B1 kinds */
    expect_field(buf, len, OFF_VERSION, 2, "byte 12: header size 104, expected 100 for version 2");
    corruption_sweep(buf, len, V3_OFF_LAYER0 + REC, 96);
    truncation_sweep(buf, len);
    free(buf);
    bnn_free(&m);

    /* the B1 kinds in version 2 files */
    random_model(&m, "v2", 33);
    buf = encode(&m, &len);
    expect_field(buf, len, OFF_LAYER0, BNN_DENSE_B1,
                 "layer 0 (byte 100): kind 6, expected 1 (U8) or 4 (CONV_U8)");
    expect_field(buf, len, OFF_LAYER0, BNN_CONV_B1, "kind 7, expected 1 (U8) or 4 (CONV_U8)");
    /* a version 3 file of this 8-bit model: read, and it is the same model
     * (same hash; written back as version 2) */
    size_t len3;
    uint8_t *v3 = to_v3(buf, len, 0, &len3);
    bnn_model back;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(bnn_decode(v3, len3, "v3.bnn", &back, &err), APX_OK);
    CU_ASSERT(models_equal(&m, &back));
    char h0[17], h1[17];
    bnn_hash_hex(&m, h0);
    bnn_hash_hex(&back, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    size_t len2;
    uint8_t *again = encode(&back, &len2);
    CU_ASSERT(len2 == len && memcmp(again, buf, len) == 0);
    free(again);
    bnn_free(&back);
    free(v3);
    /* ... but not with a threshold */
    v3 = to_v3(buf, len, 5, &len3);
    ASSERT_HAS(expect_refused(v3, len3), "input threshold 5, expected 0 for a first layer on 8-bit");
    free(v3);
    free(buf);

    /* the writer refuses what the reader would, and writes nothing */
    const char *path = test_path("bad-threshold.bnn");
    uint8_t *out = NULL;
    size_t out_len = 0;
    m.in_threshold = 9; /* on an 8-bit first layer */
    CU_ASSERT_EQUAL(bnn_encode(&m, &out, &out_len, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "input threshold 9, expected 0");
    CU_ASSERT_PTR_NULL(out);
    bnn_free(&m);
    random_b1_model(&m, "b1-zero", 34, 1, 0);
    CU_ASSERT_EQUAL(bnn_encode(&m, &out, &out_len, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "input threshold 0, expected 1..255");
    CU_ASSERT_EQUAL(bnn_save(&m, path, &err), APX_EINPUT);
    struct stat st;
    CU_ASSERT(stat(path, &st) != 0);
    CU_ASSERT_FALSE(temp_files_left());
    bnn_free(&m);
}

/* A binarized-input model hashes its version 3 encoding (threshold
 * included): the threshold and the first layer's kind are content. */
static void test_v3_hash(void) {
    bnn_model m;
    random_b1_model(&m, "b1-hash", 40, 0, 128);
    char h0[17], h1[17], ref[17];
    bnn_hash_hex(&m, h0);
    size_t len;
    uint8_t *buf = encode(&m, &len);
    reference_hash(buf, len, ref);
    CU_ASSERT_STRING_EQUAL(h0, ref);
    free(buf);
    m.in_threshold = 129;
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    m.in_threshold = 128;
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_EQUAL(h0, h1);
    /* the same weights and thresholds on 8-bit pixels are another model */
    m.layers[0].kind = BNN_DENSE_U8;
    m.in_threshold = 0;
    bnn_hash_hex(&m, h1);
    CU_ASSERT_STRING_NOT_EQUAL(h0, h1);
    m.layers[0].kind = BNN_DENSE_B1;
    m.in_threshold = 128;
    bnn_free(&m);
    random_b1_model(&m, "b1-hash-conv", 41, 1, 200);
    bnn_hash_hex(&m, h0);
    buf = encode(&m, &len);
    reference_hash(buf, len, ref);
    CU_ASSERT_STRING_EQUAL(h0, ref);
    free(buf);
    bnn_free(&m);
}

void add_bnn_file_suite(void) {
    TEST_SUITE("bnn_file",
               {"round trip (memory and file)", test_round_trip},
               {"single-byte corruption refused", test_corruption},
               {"every truncation refused", test_truncation},
               {"convolutional round trip", test_conv_round_trip},
               {"version 1 files still read", test_version_1},
               {"magic and version", test_magic_and_version},
               {"hostile fields refused before allocating", test_hostile_fields},
               {"hostile conv geometry refused before allocating", test_hostile_conv},
               {"padding bits, directions, name padding", test_content_rules},
               {"content hash", test_hash},
               {"the shipped model: version 2, same hash", test_zoo_model},
               {"binarized input: version 3 round trip and layout", test_v3_round_trip},
               {"binarized input: hostile version 3 fields", test_v3_hostile},
               {"binarized input: content hash", test_v3_hash},
               {"file errors", test_file_errors});
}
