/* bnn_file.c - the .bnn model file: encode, decode, load, save, hash.
 *
 * The format is specified in docs/bnn-format.md; this file follows it field
 * by field. Version 2 adds convolutional layers: the header gains
 * in_channels and every layer record its input geometry and pooling.
 * Version 3 adds first layers on binarized pixels (kinds B1 and CONV_B1) and
 * the header field in_threshold. All three are read; a model is written in
 * the oldest version that holds it (1 is never written: 2 for models on
 * 8-bit pixels, 3 for binarized inputs), so a file is readable by every
 * apxsim that can run its model, and a version 2 reader refuses a
 * binarized-input model as "written by a newer apxsim".
 *
 * Decoding checks, in this order, before anything is allocated:
 *   1. magic, version, header size (so a newer file is named as such even if
 *      the rest of its layout changed);
 *   2. header fields and every layer record (limits, kinds, the whole shape
 *      chain from the input through every conv and dense layer, words),
 *      computing the exact file size from them; it must equal the length;
 *   3. the CRC32 trailer;
 *   4. content rules the CRC cannot vouch for (a buggy writer computes a
 *      valid CRC): zero padding bits, directions +-1, zero pad bytes.
 * Step 2 runs before the CRC so that a hand-written file with a wrong field
 * gets a precise message; if the CRC fails too, the message says so, since
 * then the field is most likely just corrupt. The model is then allocated
 * by bnn_create_layers (the one place that allocates models) and filled in.
 *
 * All multi-byte values are little endian and read byte by byte, so the
 * code does not depend on host byte order or alignment. */
#include "bnn.h"

#include "../sim/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define BNNF_MAGIC "APXSBNN\0"
#define BNNF_MAGIC_LEN 8
#define BNNF_VERSION 3u /* the newest version; 1, 2 and 3 are read */
#define BNNF_NAME_OFF 16u
#define BNNF_NAME_LEN 64u
#define BNNF_TRAILER_SIZE 4u
#define BNNF_MIN_HEADER 96u /* the smallest header size (version 1) */
#define BNNF_THRESHOLD_OFF 100u /* version 3: in_threshold */
/* Version 2 limits, the same as bnn_create_layers' (workloads/bnn.c): input
 * values (rows x cols x channels) and bits of a convolution's output map
 * before pooling. Checked here first so that the message names the field. */
#define BNNF_MAX_INPUT (1u << 25)
#define BNNF_MAX_MAP (1ull << 28)

/* FNV-1a 64 (Fowler, Noll, Vo): offset basis and prime. */
#define FNV64_OFFSET 0xcbf29ce484222325ull
#define FNV64_PRIME 0x100000001b3ull

/* Header and layer record sizes by version (index 1 to 3). */
static const uint32_t header_size_of[4] = {0, 96, 100, 104};
static const uint32_t record_size_of[4] = {0, 20, 36, 36};

static const char *kind_label(uint32_t kind) {
    static const char *const names[] = {"?",        "U8",       "BIN", "OUT",
                                        "CONV_U8",  "CONV_BIN", "B1",  "CONV_B1"};
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

static int is_conv(uint32_t kind) {
    return kind == BNN_CONV_U8 || kind == BNN_CONV_BIN || kind == BNN_CONV_B1;
}
static int is_b1(uint32_t kind) { return kind == BNN_DENSE_B1 || kind == BNN_CONV_B1; }

/* ---- little-endian access ---------------------------------------------- */

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- layout ------------------------------------------------------------ */

/* Bytes of a layer's body after its record: weights, then (hidden layers)
 * thresholds and directions padded to a multiple of 4. With in, out within
 * BNN_MAX_WIDTH this is below 2^38, so uint64_t never overflows; a model of
 * 64 such layers stays below 2^45. */
static uint64_t layer_body_bytes(uint32_t kind, uint32_t out, uint32_t words) {
    uint64_t bytes = (uint64_t)out * words * 8;
    if (kind != BNN_DENSE_OUT) bytes += (uint64_t)out * 4 + (((uint64_t)out + 3) & ~3ull);
    return bytes;
}

/* Where one layer's parts are in a checked buffer. */
typedef struct layer_view {
    uint32_t kind, in, out, words;
    uint32_t in_c, in_h, in_w, pool;
    float scale;
    uint64_t record, weights, thresholds, directions;  /* byte offsets */
} layer_view;

typedef struct file_view {
    uint32_t version, header_size, record_size;
    char name[BNNF_NAME_LEN];
    uint32_t in_rows, in_cols, in_channels, n_classes, n_layers;
    uint32_t in_threshold;  /* version 3; 0 before */
    layer_view layers[BNN_MAX_LAYERS];
} file_view;

static int crc_matches(const uint8_t *buf, size_t len) {
    if (len < BNNF_TRAILER_SIZE) return 0;
    uint32_t crc = (uint32_t)crc32_z(0L, buf, len - BNNF_TRAILER_SIZE);
    return crc == get_u32(buf + len - BNNF_TRAILER_SIZE);
}

/* Step 1: what a prefix of the file already tells (bad magic, a version
 * this build cannot read). A short prefix that agrees so far passes. */
static int check_preamble(const uint8_t *buf, size_t len, const char *fn, apx_error *err) {
    if (memcmp(buf, BNNF_MAGIC, len < BNNF_MAGIC_LEN ? len : BNNF_MAGIC_LEN) != 0)
        return apx_fail(err, APX_EINPUT, "%s: not an apxsim model file (bad magic)", fn);
    if (len < 16) return APX_OK;
    uint32_t version = get_u32(buf + 8);
    if (version > BNNF_VERSION)
        return apx_fail(err, APX_EINPUT,
                        "%s: written by a newer apxsim (format version %u; this build reads "
                        "versions 1 to %u)",
                        fn, version, BNNF_VERSION);
    if (version == 0)
        return apx_fail(err, APX_EINPUT, "%s: byte 8: format version 0 is not valid", fn);
    uint32_t header_size = get_u32(buf + 12);
    if (header_size != header_size_of[version])
        return apx_fail(err, APX_EINPUT, "%s: byte 12: header size %u, expected %u for version %u",
                        fn, header_size, header_size_of[version], version);
    return APX_OK;
}

/* The shape of the activations between layers: H x W x C (HWC). After a
 * dense layer it is 1 x 1 x out. */
typedef struct geometry {
    uint32_t h, w, c;
} geometry;

static uint64_t volume(geometry g) { return (uint64_t)g.h * g.w * g.c; }

/* Checks one layer record against the geometry flowing into it and the
 * layer's position; on success *next is the geometry it produces. `at` is
 * the record's byte offset (for messages). */
static int check_record(const file_view *v, uint32_t l, const layer_view *L, geometry cur,
                        int after_dense, uint64_t at, const char *fn, geometry *next,
                        apx_error *err) {
    unsigned long long pos = (unsigned long long)at;
    int last = l == v->n_layers - 1;
    /* kind by position */
    const char *want = NULL;
    if (last) {
        if (L->kind != BNN_DENSE_OUT) want = "3 (OUT)";
    } else if (l == 0) {
        static const char *const first[4] = {NULL, "1 (U8)", "1 (U8) or 4 (CONV_U8)",
                                             "1 (U8), 4 (CONV_U8), 6 (B1) or 7 (CONV_B1)"};
        if (L->kind != BNN_DENSE_U8 && !(v->version >= 2 && L->kind == BNN_CONV_U8) &&
            !(v->version >= 3 && is_b1(L->kind)))
            want = first[v->version];
    } else if (L->kind != BNN_DENSE_BIN && !(v->version >= 2 && L->kind == BNN_CONV_BIN)) {
        want = v->version >= 2 ? "2 (BIN) or 5 (CONV_BIN)" : "2 (BIN)";
    }
    if (want)
        return apx_fail(err, APX_EINPUT, "%s: layer %u (byte %llu): kind %u, expected %s", fn, l,
                        pos, L->kind, want);
    if (is_conv(L->kind) && after_dense)
        return apx_fail(err, APX_EINPUT,
                        "%s: layer %u (byte %llu): kind %u (%s) after a dense layer; convolutions "
                        "come before the dense layers",
                        fn, l, pos, L->kind, kind_label(L->kind));

    /* input geometry: what the previous layer produces */
    uint32_t want_in;
    const char *why;
    if (is_conv(L->kind)) {
        if (L->in_h != cur.h || L->in_w != cur.w || L->in_c != cur.c)
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): input %ux%ux%u (in_h x in_w x in_c), "
                            "expected %ux%ux%u from %s",
                            fn, l, pos + 20, L->in_h, L->in_w, L->in_c, cur.h, cur.w, cur.c,
                            l == 0 ? "the model input" : "the previous layer");
        if (L->pool != 1 && L->pool != 2)
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): pool %u, expected 1 or 2", fn, l, pos + 32,
                            L->pool);
        if (L->in_h < L->pool || L->in_w < L->pool)
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): a %ux%u input is too small for pool %u", fn,
                            l, pos + 32, L->in_h, L->in_w, L->pool);
        want_in = cur.c <= BNN_MAX_WIDTH / 9 ? 9 * cur.c : 0; /* 0: refused below */
        why = "9 * in_c";
    } else {
        uint64_t vol = volume(cur);
        want_in = vol <= BNN_MAX_WIDTH ? (uint32_t)vol : 0;
        why = l == 0 ? "in_rows * in_cols * in_channels" : "the previous layer's output H x W x C";
    }
    if (want_in == 0)
        return apx_fail(err, APX_EINPUT,
                        "%s: layer %u (byte %llu): its input %ux%ux%u needs a fan-in above %u", fn,
                        l, pos + 4, cur.h, cur.w, cur.c, BNN_MAX_WIDTH);
    if (L->in != want_in)
        return apx_fail(err, APX_EINPUT, "%s: layer %u (byte %llu): fan-in %u, expected %u (%s)",
                        fn, l, pos + 4, L->in, want_in, why);
    if (!is_conv(L->kind) && (L->in_c != L->in || L->in_h != 1 || L->in_w != 1 || L->pool != 1))
        return apx_fail(err, APX_EINPUT,
                        "%s: layer %u (byte %llu): dense layer with in_c %u, in_h %u, in_w %u, "
                        "pool %u; expected in_c = in (%u), in_h = in_w = pool = 1",
                        fn, l, pos + 20, L->in_c, L->in_h, L->in_w, L->pool, L->in);
    if (L->out == 0 || L->out > BNN_MAX_WIDTH)
        return apx_fail(err, APX_EINPUT, "%s: layer %u (byte %llu): width %u is outside 1..%u", fn,
                        l, pos + 8, L->out, BNN_MAX_WIDTH);
    if (last && L->out != v->n_classes)
        return apx_fail(err, APX_EINPUT,
                        "%s: layer %u (byte %llu): width %u, expected n_classes %u", fn, l, pos + 8,
                        L->out, v->n_classes);
    uint32_t want_words = (L->in + 63) / 64;
    if (L->words != want_words)
        return apx_fail(err, APX_EINPUT, "%s: layer %u: words %u, expected %u for fan-in %u", fn,
                        l, L->words, want_words, L->in);
    if (L->kind == BNN_DENSE_OUT) {
        if (!(isfinite(L->scale) && L->scale > 0))
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): scale %g, expected a finite value > 0", fn,
                            l, pos + 16, (double)L->scale);
    } else {
        uint32_t bits;
        memcpy(&bits, &L->scale, 4);
        if (bits != 0)
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): scale of a hidden layer must be 0", fn, l,
                            pos + 16);
    }
    if (is_conv(L->kind)) {
        /* The map before pooling is an activation buffer of inference:
         * bounded, so that a small file cannot ask for a huge workspace. */
        geometry full = {L->in_h, L->in_w, L->out};
        if (volume(full) > BNNF_MAX_MAP)
            return apx_fail(err, APX_EINPUT,
                            "%s: layer %u (byte %llu): output map %ux%ux%u has %llu values, more "
                            "than %llu",
                            fn, l, pos + 8, full.h, full.w, full.c,
                            (unsigned long long)volume(full), BNNF_MAX_MAP);
        *next = (geometry){L->in_h / L->pool, L->in_w / L->pool, L->out};
    } else {
        *next = (geometry){1, 1, L->out};
    }
    return APX_OK;
}

/* The input threshold against the first layer's kind: a binarized input
 * needs one in 1..255 (0 would make every pixel +1, 256 and up every pixel
 * -1: no information); an 8-bit first layer has none (0). */
static int check_threshold(const file_view *v, uint32_t kind0, const char *fn, apx_error *err) {
    uint32_t t = v->in_threshold;
    if (is_b1(kind0) && (t == 0 || t > 255))
        return apx_fail(err, APX_EINPUT,
                        "%s: byte %u: input threshold %u, expected 1..255 for a first layer on "
                        "binarized pixels (kind %u, %s)",
                        fn, BNNF_THRESHOLD_OFF, t, kind0, kind_label(kind0));
    if (!is_b1(kind0) && t != 0)
        return apx_fail(err, APX_EINPUT,
                        "%s: byte %u: input threshold %u, expected 0 for a first layer on 8-bit "
                        "pixels (kind %u, %s)",
                        fn, BNNF_THRESHOLD_OFF, t, kind0, kind_label(kind0));
    return APX_OK;
}

/* Step 2, after check_preamble has passed. */
static int check_structure(const uint8_t *buf, size_t len, const char *fn, file_view *v,
                           apx_error *err) {
    if (len < BNNF_MIN_HEADER + BNNF_TRAILER_SIZE)
        return apx_fail(err, APX_EINPUT, "%s: truncated: %zu bytes, the header alone needs %u",
                        fn, len, BNNF_MIN_HEADER + BNNF_TRAILER_SIZE);
    v->version = get_u32(buf + 8);
    v->header_size = header_size_of[v->version];
    v->record_size = record_size_of[v->version];
    if (len < (uint64_t)v->header_size + BNNF_TRAILER_SIZE)
        return apx_fail(err, APX_EINPUT, "%s: truncated: %zu bytes, the header alone needs %u",
                        fn, len, v->header_size + BNNF_TRAILER_SIZE);

    /* Name: NUL-terminated, NUL-padded (so each model has one encoding). */
    const uint8_t *name = buf + BNNF_NAME_OFF;
    const uint8_t *nul = memchr(name, 0, BNNF_NAME_LEN);
    if (!nul)
        return apx_fail(err, APX_EINPUT, "%s: byte %u: model name is not NUL-terminated within %u bytes",
                        fn, BNNF_NAME_OFF, BNNF_NAME_LEN);
    for (const uint8_t *p = nul; p < name + BNNF_NAME_LEN; p++)
        if (*p)
            return apx_fail(err, APX_EINPUT, "%s: byte %u: model name padding is not zero", fn,
                            (unsigned)(p - buf));
    memcpy(v->name, name, BNNF_NAME_LEN);

    v->in_rows = get_u32(buf + 80);
    v->in_cols = get_u32(buf + 84);
    v->n_classes = get_u32(buf + 88);
    v->n_layers = get_u32(buf + 92);
    v->in_channels = v->version >= 2 ? get_u32(buf + 96) : 1;
    v->in_threshold = v->version >= 3 ? get_u32(buf + BNNF_THRESHOLD_OFF) : 0;
    uint64_t in_size = (uint64_t)v->in_rows * v->in_cols;
    if (v->version == 1 && (v->in_rows == 0 || v->in_cols == 0 || in_size > BNN_MAX_WIDTH))
        return apx_fail(err, APX_EINPUT, "%s: byte 80: input size %ux%u is outside 1..%u pixels",
                        fn, v->in_rows, v->in_cols, BNN_MAX_WIDTH);
    if (v->version >= 2 &&
        (v->in_rows == 0 || v->in_cols == 0 || v->in_channels == 0 ||
         in_size > BNNF_MAX_INPUT || in_size * v->in_channels > BNNF_MAX_INPUT))
        return apx_fail(err, APX_EINPUT,
                        "%s: byte 80: input size %ux%ux%u (rows x cols x channels) is outside "
                        "1..%u values",
                        fn, v->in_rows, v->in_cols, v->in_channels, BNNF_MAX_INPUT);
    if (v->n_classes == 0 || v->n_classes > BNN_MAX_WIDTH)
        return apx_fail(err, APX_EINPUT, "%s: byte 88: n_classes %u is outside 1..%u", fn,
                        v->n_classes, BNN_MAX_WIDTH);
    if (v->n_layers < 2 || v->n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT, "%s: byte 92: n_layers %u is outside 2..%u", fn,
                        v->n_layers, BNN_MAX_LAYERS);

    uint64_t pos = v->header_size;
    geometry cur = {v->in_rows, v->in_cols, v->in_channels};
    int after_dense = 0;
    const uint64_t body_end = len - BNNF_TRAILER_SIZE;
    for (uint32_t l = 0; l < v->n_layers; l++) {
        layer_view *L = &v->layers[l];
        if (pos + v->record_size > body_end)
            return apx_fail(err, APX_EINPUT,
                            "%s: truncated: %zu bytes, layer %u's record at byte %llu does not fit",
                            fn, len, l, (unsigned long long)pos);
        const uint8_t *r = buf + pos;
        L->record = pos;
        L->kind = get_u32(r);
        L->in = get_u32(r + 4);
        L->out = get_u32(r + 8);
        L->words = get_u32(r + 12);
        L->scale = get_f32(r + 16);
        if (v->version >= 2) {
            L->in_c = get_u32(r + 20);
            L->in_h = get_u32(r + 24);
            L->in_w = get_u32(r + 28);
            L->pool = get_u32(r + 32);
        } else { /* version 1: dense layers, whose geometry is implied */
            L->in_c = L->in;
            L->in_h = L->in_w = L->pool = 1;
        }
        int rc = check_record(v, l, L, cur, after_dense, pos, fn, &cur, err);
        if (rc) return rc;
        if (l == 0 && (rc = check_threshold(v, L->kind, fn, err))) return rc;
        after_dense |= !is_conv(L->kind);
        pos += v->record_size;
        L->weights = pos;
        L->thresholds = pos + (uint64_t)L->out * L->words * 8;
        L->directions = L->thresholds + (uint64_t)L->out * 4;
        pos += layer_body_bytes(L->kind, L->out, L->words);
    }
    uint64_t total = pos + BNNF_TRAILER_SIZE;
    if (total > len)
        return apx_fail(err, APX_EINPUT, "%s: truncated: %zu bytes, the layers need %llu", fn,
                        len, (unsigned long long)total);
    if (total < len)
        return apx_fail(err, APX_EINPUT, "%s: %llu bytes of trailing data after byte %llu", fn,
                        (unsigned long long)(len - total), (unsigned long long)total);
    return APX_OK;
}

/* Step 4 of the header comment. */
static int check_content(const uint8_t *buf, const char *fn, const file_view *v,
                         apx_error *err) {
    for (uint32_t l = 0; l < v->n_layers; l++) {
        const layer_view *L = &v->layers[l];
        uint32_t used = L->in % 64;
        if (used) {
            uint64_t pad_mask = ~0ull << used;
            for (uint32_t row = 0; row < L->out; row++) {
                uint64_t at = L->weights + ((uint64_t)row * L->words + L->words - 1) * 8;
                if (get_u64(buf + at) & pad_mask)
                    return apx_fail(err, APX_EINPUT,
                                    "%s: layer %u row %u (byte %llu): nonzero padding bits past "
                                    "fan-in %u",
                                    fn, l, row, (unsigned long long)at, L->in);
            }
        }
        if (L->kind == BNN_DENSE_OUT) continue;
        const uint8_t *dir = buf + L->directions;
        for (uint32_t i = 0; i < L->out; i++)
            if (dir[i] != 0x01 && dir[i] != 0xff)
                return apx_fail(err, APX_EINPUT,
                                "%s: layer %u neuron %u (byte %llu): direction %d, expected +1 or -1",
                                fn, l, i, (unsigned long long)(L->directions + i),
                                (int)(int8_t)dir[i]);
        for (uint32_t i = L->out; i % 4; i++)
            if (dir[i])
                return apx_fail(err, APX_EINPUT, "%s: layer %u (byte %llu): pad byte is not zero",
                                fn, l, (unsigned long long)(L->directions + i));
    }
    return APX_OK;
}

/* Checks a whole buffer; on success v describes it. */
static int check_file(const uint8_t *buf, size_t len, const char *fn, file_view *v,
                      apx_error *err) {
    int rc = check_preamble(buf, len, fn, err);
    if (rc) return rc;
    rc = check_structure(buf, len, fn, v, err);
    if (rc) {
        /* Below the minimum size a CRC says nothing new. */
        if (err && len >= BNNF_MIN_HEADER + BNNF_TRAILER_SIZE && !crc_matches(buf, len)) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n,
                     " (and the checksum does not match: the file is probably corrupt)");
        }
        return rc;
    }
    if (!crc_matches(buf, len))
        return apx_fail(err, APX_EINPUT, "%s: checksum mismatch (file corrupt)", fn);
    return check_content(buf, fn, v, err);
}

int bnn_decode(const uint8_t *buf, size_t len, const char *name, bnn_model *m, apx_error *err) {
    const char *fn = name ? name : "(model)";
    file_view *v = malloc(sizeof *v);  /* a few KB: keep it off small thread stacks */
    if (!v) return apx_fail(err, APX_EWORK, "%s: out of memory", fn);
    int rc = check_file(buf ? buf : (const uint8_t *)"", buf ? len : 0, fn, v, err);
    if (rc) {
        free(v);
        return rc;
    }
    bnn_layer_spec spec[BNN_MAX_LAYERS];
    for (uint32_t l = 0; l < v->n_layers; l++)
        spec[l] = (bnn_layer_spec){v->layers[l].kind, v->layers[l].out, v->layers[l].pool};
    bnn_model tmp;
    rc = bnn_create_layers(&tmp, v->name, v->in_rows, v->in_cols, v->in_channels, v->n_layers,
                           spec, err);
    if (rc) {
        free(v);
        return apx_wrap(err, "%s: ", fn);
    }
    tmp.in_threshold = v->in_threshold;
    for (uint32_t l = 0; l < v->n_layers; l++) {
        const layer_view *F = &v->layers[l];
        bnn_layer *L = &tmp.layers[l];
        /* The file's shape chain and bnn_create_layers' must agree; they
         * can only differ through a bug, never through input. */
        if (L->kind != F->kind || L->in != F->in || L->out != F->out || L->words != F->words ||
            L->in_c != F->in_c || L->in_h != F->in_h || L->in_w != F->in_w ||
            L->pool != F->pool) {
            bnn_free(&tmp);
            free(v);
            return apx_fail(err, APX_EWORK,
                            "%s: layer %u: the file's shape and bnn_create_layers' disagree", fn,
                            l);
        }
        uint64_t *w = tmp.image + L->offset;
        size_t n_words = (size_t)L->out * L->words;
        for (size_t i = 0; i < n_words; i++) w[i] = get_u64(buf + F->weights + 8 * i);
        L->scale = F->scale;
        if (L->kind == BNN_DENSE_OUT) continue;
        for (uint32_t i = 0; i < L->out; i++) {
            L->threshold[i] = (int32_t)get_u32(buf + F->thresholds + 4 * (uint64_t)i);
            L->direction[i] = (int8_t)buf[F->directions + i];
        }
    }
    free(v);
    *m = tmp;
    return APX_OK;
}

/* ---- encoding ----------------------------------------------------------- */

/* Output of the serialiser: bytes into buf, or (buf NULL) the FNV-1a hash. */
typedef struct sink {
    uint8_t *buf;
    size_t pos;
    uint64_t fnv;
} sink;

static void put(sink *s, const void *data, size_t n) {
    const uint8_t *p = data;
    if (s->buf) {
        memcpy(s->buf + s->pos, p, n);
    } else {
        for (size_t i = 0; i < n; i++) s->fnv = (s->fnv ^ p[i]) * FNV64_PRIME;
    }
    s->pos += n;
}
static void put_u32(sink *s, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(s, b, 4);
}
static void put_u64(sink *s, uint64_t v) {
    put_u32(s, (uint32_t)v);
    put_u32(s, (uint32_t)(v >> 32));
}

/* Writes the given version of the file without its CRC trailer; with_name 0
 * leaves out the name field (the hash's definition, docs/bnn-format.md). */
static void serialise(const bnn_model *m, sink *s, int with_name, uint32_t version) {
    put(s, BNNF_MAGIC, BNNF_MAGIC_LEN);
    put_u32(s, version);
    put_u32(s, header_size_of[version]);
    if (with_name) {
        char name[BNNF_NAME_LEN] = {0};
        memcpy(name, m->name, strnlen(m->name, BNNF_NAME_LEN - 1));  /* NUL-padded */
        put(s, name, BNNF_NAME_LEN);
    }
    put_u32(s, m->in_rows);
    put_u32(s, m->in_cols);
    put_u32(s, m->n_classes);
    put_u32(s, m->n_layers);
    if (version >= 2) put_u32(s, m->in_channels);
    if (version >= 3) put_u32(s, m->in_threshold);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        uint32_t scale_bits;  /* hidden layers: must be 0, else the check refuses */
        memcpy(&scale_bits, &L->scale, 4);
        put_u32(s, L->kind);
        put_u32(s, L->in);
        put_u32(s, L->out);
        put_u32(s, L->words);
        put_u32(s, scale_bits);
        if (version >= 2) {
            put_u32(s, L->in_c);
            put_u32(s, L->in_h);
            put_u32(s, L->in_w);
            put_u32(s, L->pool);
        }
        const uint64_t *w = m->image + L->offset;
        for (size_t i = 0; i < (size_t)L->out * L->words; i++) put_u64(s, w[i]);
        if (L->kind == BNN_DENSE_OUT) continue;
        for (uint32_t i = 0; i < L->out; i++) put_u32(s, (uint32_t)L->threshold[i]);
        put(s, L->direction, L->out);
        static const uint8_t zeros[4] = {0};
        put(s, zeros, (4 - L->out % 4) % 4);
    }
}

/* The versions a model is written and hashed in: the oldest that holds it.
 * A binarized input (or any input threshold, which the checks then refuse
 * for an 8-bit first layer) needs version 3; version 1 holds dense models
 * on one-channel 8-bit inputs. */
static int needs_version_3(const bnn_model *m) {
    if (m->in_threshold) return 1;
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (is_b1(m->layers[l].kind)) return 1;
    return 0;
}

static uint32_t write_version(const bnn_model *m) { return needs_version_3(m) ? 3 : 2; }

static int fits_version_1(const bnn_model *m) {
    if (m->in_channels != 1 || needs_version_3(m)) return 0;
    for (uint32_t l = 0; l < m->n_layers; l++)
        if (is_conv(m->layers[l].kind)) return 0;
    return 1;
}

/* Checks what the serialiser relies on (no out-of-bounds reads, sizes that
 * cannot overflow) and returns the version to write and the encoded size.
 * Everything else about the model is checked by decoding the encoded bytes. */
static int encoded_size(const bnn_model *m, uint32_t *version, size_t *size, apx_error *err) {
    if (!m || !m->layers || !m->image || m->n_layers < 2 || m->n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT, "model '%s': not a complete model (%u layers)",
                        m ? m->name : "", m ? m->n_layers : 0);
    *version = write_version(m);
    uint64_t total = header_size_of[*version] + BNNF_TRAILER_SIZE;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        if (L->in == 0 || L->in > BNN_MAX_WIDTH || L->out == 0 || L->out > BNN_MAX_WIDTH ||
            L->words != (L->in + 63) / 64 || L->offset > m->image_words ||
            (uint64_t)L->out * L->words > m->image_words - L->offset)
            return apx_fail(err, APX_EINPUT,
                            "model '%s': layer %u: inconsistent shape (in %u, out %u, words %u, "
                            "offset %zu of %zu image words)",
                            m->name, l, L->in, L->out, L->words, L->offset, m->image_words);
        if (L->kind != BNN_DENSE_OUT && (!L->threshold || !L->direction))
            return apx_fail(err, APX_EINPUT, "model '%s': layer %u: hidden layer without thresholds",
                            m->name, l);
        total += record_size_of[*version] + layer_body_bytes(L->kind, L->out, L->words);
    }
    if (total > SIZE_MAX)
        return apx_fail(err, APX_EWORK, "model '%s': %llu bytes do not fit in memory", m->name,
                        (unsigned long long)total);
    *size = (size_t)total;
    return APX_OK;
}

int bnn_encode(const bnn_model *m, uint8_t **buf, size_t *len, apx_error *err) {
    size_t size = 0;
    uint32_t version = 0;
    int rc = encoded_size(m, &version, &size, err);
    if (rc) return rc;
    uint8_t *b = malloc(size);
    if (!b)
        return apx_fail(err, APX_EWORK, "model '%s': out of memory for %zu bytes", m->name, size);
    sink s = {b, 0, 0};
    serialise(m, &s, 1, version);
    uint32_t crc = (uint32_t)crc32_z(0L, b, s.pos);
    put_u32(&s, crc);
    /* Never produce a file the reader refuses: decode's checks are the
     * single definition of a valid model. */
    file_view *v = malloc(sizeof *v);
    if (!v) {
        free(b);
        return apx_fail(err, APX_EWORK, "model '%s': out of memory", m->name);
    }
    char fn[BNNF_NAME_LEN + 16];
    snprintf(fn, sizeof fn, "model '%s'", m->name);
    rc = s.pos == size ? check_file(b, size, fn, v, err)
                       : apx_fail(err, APX_EWORK, "%s: encoded %zu bytes, expected %zu", fn,
                                  s.pos, size);
    free(v);
    if (rc) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = size;
    return APX_OK;
}

/* The hash is over the model, not over the file it came from: a model is
 * hashed as its encoding in the oldest version that holds it (version 1 for
 * dense layers on a one-channel 8-bit input, version 2 for other models on
 * 8-bit inputs, version 3 for binarized inputs, whose in_threshold is then
 * part of the hashed header), so converting a file to a newer version keeps
 * its hash and results databases keep their keys. The version field inside
 * the hashed bytes keeps the domains apart. */
void bnn_hash_hex(const bnn_model *m, char out[17]) {
    sink s = {NULL, 0, FNV64_OFFSET};
    serialise(m, &s, 0, fits_version_1(m) ? 1 : write_version(m));
    snprintf(out, 17, "%016llx", (unsigned long long)s.fnv);
}

/* ---- files -------------------------------------------------------------- */

int bnn_load(const char *path, bnn_model *m, apx_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return apx_fail(err, errno == ENOENT ? APX_EINPUT : APX_EWORK, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return apx_fail(err, APX_EINPUT, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX - 1) {
        close(fd);
        return apx_fail(err, APX_EINPUT, "%s: %lld bytes is too large", path,
                        (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    /* Identify the file from its first bytes before reading all of it, so a
     * large file of the wrong kind is refused without allocating its size. */
    uint8_t head[16];
    size_t head_len = len < sizeof head ? len : sizeof head;
    if (pread(fd, head, head_len, 0) != (ssize_t)head_len) {
        int e = errno;
        close(fd);
        return apx_fail(err, APX_EWORK, "%s: read failed: %s", path, strerror(e));
    }
    int rc = check_preamble(head, head_len, path, err);
    if (rc) {
        close(fd);
        return rc;
    }
    uint8_t *buf = apx_read_exact(fd, len, path, err);
    close(fd);
    if (!buf) return err->code;
    rc = bnn_decode(buf, len, path, m, err);
    free(buf);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int bnn_save(const bnn_model *m, const char *path, apx_error *err) {
    uint8_t *buf;
    size_t len;
    int rc = bnn_encode(m, &buf, &len, err);
    if (rc) return apx_wrap(err, "writing %s: ", path);

    /* Write a temporary file beside the target and rename it over the
     * target: readers see the old file or the new one, never a mixture. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(buf);
        return apx_fail(err, APX_EWORK, "writing %s: out of memory", path);
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = apx_fail(err, APX_EWORK, "writing %s: cannot create %s: %s", path, tmp,
                      strerror(errno));
        free(tmp);
        free(buf);
        return rc;
    }
    const char *step = NULL;
    if (fchmod(fd, 0644) != 0)
        step = "chmod";
    else if (write_all(fd, buf, len) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        rc = apx_fail(err, APX_EWORK, "writing %s: %s failed: %s", path, step, strerror(e));
    }
    free(tmp);
    free(buf);
    return rc;
}
