/* bnn.c - BNN model allocation, batch-norm folding and packed inference.
 *
 * Model files (bnn_load/save/encode/decode/hash) live in bnn_file.c.
 *
 * Ownership: bnn_create allocates layers[], each hidden layer's threshold[]
 * and direction[] as separate blocks, and image[]; bnn_free releases exactly
 * those, so any code that builds a bnn_model by hand (the file reader) must
 * allocate the same way (or simply call bnn_create and fill it in).
 *
 * Inference kernels (portable; the only machine-specific step is letting the
 * compiler use the POPCNT instruction where the CPU has it):
 *   BNN_DENSE_U8   exact a = 2*S - sum(pixels), S = sum of the pixels where
 *                  w = +1. Two methods, same result:
 *                  - single image: 8 bit-planes of the pixels packed like a
 *                    weight row, S = sum_b 2^b popcount(plane_b & w);
 *                  - batches (bnn_eval_range): table lookup ("four
 *                    Russians"): each group of 8 inputs gets a 256-entry
 *                    table of its subset sums, and a weight byte picks one
 *                    entry. Four images share an entry as 16-bit lanes of
 *                    one 64-bit word, so one lookup and one add serve 8
 *                    inputs of 4 images. On a 784 -> 2048 layer this took
 *                    ~40 us per image against ~63 us for the planes.
 *                  Inputs past `in` are pixel 0 in planes and tables, so
 *                  weight padding bits (which a fault may set) never count.
 *   BNN_DENSE_BIN  a = in - 2 * popcount(w XOR x), last word masked.
 *   BNN_DENSE_OUT  same dot product; the scores are the class scores.
 * bnn_eval_range runs BNN_BATCH images per pass over a weight row, so that a
 * row loaded from memory is used several times while it is in L1; the tail
 * of a range (fewer than BNN_BATCH images) goes one image at a time. */
#include "bnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BNN_BATCH 8

/* ---- model ------------------------------------------------------------- */

int bnn_create(bnn_model *m, const char *name, uint32_t in_rows, uint32_t in_cols,
               uint32_t n_layers, const uint32_t *widths, apx_error *err) {
    memset(m, 0, sizeof *m);
    if (n_layers < 2 || n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT,
                        "model needs 2..%u layers (an 8-bit input layer and an output layer), "
                        "got %u", BNN_MAX_LAYERS, n_layers);
    if ((uint64_t)in_rows * in_cols != widths[0])
        return apx_fail(err, APX_EINPUT, "input size %ux%u does not match layer 0 fan-in %u",
                        in_rows, in_cols, widths[0]);
    for (uint32_t l = 0; l <= n_layers; l++)
        if (widths[l] == 0 || widths[l] > BNN_MAX_WIDTH)
            return apx_fail(err, APX_EINPUT, "width %u of layer %u is outside 1..%u", widths[l],
                            l, BNN_MAX_WIDTH);

    /* Layer offsets: each term is at most 2^20 * 2^14 words and there are at
     * most 64 layers, so the sum fits easily in 64 bits; check size_t. */
    uint64_t total = 0;
    for (uint32_t l = 0; l < n_layers; l++)
        total += (uint64_t)widths[l + 1] * ((widths[l] + 63) / 64);
    if (total > SIZE_MAX / sizeof(uint64_t))
        return apx_fail(err, APX_EINPUT, "model of %llu weight words is too large",
                        (unsigned long long)total);

    m->layers = calloc(n_layers, sizeof *m->layers);
    m->image = calloc(total ? (size_t)total : 1, sizeof *m->image);
    if (!m->layers || !m->image) goto oom;
    m->n_layers = n_layers;
    m->image_words = (size_t)total;
    m->in_rows = in_rows;
    m->in_cols = in_cols;
    m->n_classes = widths[n_layers];
    if (name) snprintf(m->name, sizeof m->name, "%s", name);

    size_t offset = 0;
    for (uint32_t l = 0; l < n_layers; l++) {
        bnn_layer *L = &m->layers[l];
        L->in = widths[l];
        L->out = widths[l + 1];
        L->words = (widths[l] + 63) / 64;
        L->offset = offset;
        offset += (size_t)L->out * L->words;
        if (l == n_layers - 1) {
            L->kind = BNN_DENSE_OUT;
            L->scale = 1.0f;
            continue;
        }
        L->kind = l == 0 ? BNN_DENSE_U8 : BNN_DENSE_BIN;
        L->threshold = calloc(L->out, sizeof *L->threshold);
        L->direction = malloc(L->out * sizeof *L->direction);
        if (!L->threshold || !L->direction) goto oom;
        memset(L->direction, 1, L->out); /* +1: int8_t 1 is the byte 0x01 */
    }
    return APX_OK;

oom:
    bnn_free(m);
    return apx_fail(err, APX_EWORK, "out of memory allocating model '%s' (%llu weight words)",
                    name ? name : "", (unsigned long long)total);
}

void bnn_free(bnn_model *m) {
    if (!m) return;
    if (m->layers) {
        for (uint32_t l = 0; l < m->n_layers; l++) {
            free(m->layers[l].threshold);
            free(m->layers[l].direction);
        }
    }
    free(m->layers);
    free(m->image);
    memset(m, 0, sizeof *m);
}

/* ---- batch-norm folding ------------------------------------------------ */

/* The float network's decision for integer pre-activation a, evaluated in
 * double in this exact order: BN(z) = gamma*(z - mean)/sqrt(var+eps) + beta,
 * z = a / input_scale, fires iff BN(z) > 0 (strict; NaN never fires). */
static int bn_fires(double a, double gamma, double beta, double mean, double sd,
                    double input_scale) {
    double z = a / input_scale;
    return gamma * (z - mean) / sd + beta > 0;
}

/* Why a search instead of floor/ceil of tau_a = (mean - beta*sd/gamma) *
 * input_scale: tau_a is rounded, and when the true tau is exactly an integer
 * reachable by a (e.g. mean = a0/255) the rounded tau_a may land a few ulps on
 * the wrong side and move the threshold by one. Each IEEE operation above is
 * monotone, so the double-evaluated BN(a) is monotone in a (non-decreasing
 * for gamma > 0, non-increasing for gamma < 0, constant for gamma = 0); the
 * set of firing integers is therefore a half-line, and a binary search over
 * [-lim, lim] (at most 33 evaluations) finds its end exactly. The folded
 * neuron then agrees bit for bit with the double BN + strict sign for every
 * reachable a. Invalid inputs (NaN anywhere, input_scale <= 0, var + eps < 0)
 * make the predicate false everywhere: the neuron never fires. */
void bnn_fold_bn(double gamma, double beta, double mean, double var, double eps,
                 double input_scale, double max_abs_a, int32_t *threshold,
                 int8_t *direction) {
    /* lim + 1 must fit in int32 */
    double lim_d = (max_abs_a >= 0 && max_abs_a <= (double)INT32_MAX - 1) ? floor(max_abs_a)
                                                                           : (double)INT32_MAX - 1;
    int64_t lim = (int64_t)lim_d;
    double sd = sqrt(var + eps);
    int valid = input_scale > 0 && isfinite(input_scale) && !isnan(gamma);

    if (!valid) {
        *direction = 1;
        *threshold = (int32_t)lim; /* a > lim never holds for |a| <= lim */
        return;
    }
    if (gamma >= 0) {
        /* smallest m in [-lim, lim+1] that fires (lim+1 as sentinel); T = m - 1 */
        int64_t lo = -lim, hi = lim + 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (bn_fires((double)mid, gamma, beta, mean, sd, input_scale))
                hi = mid;
            else
                lo = mid + 1;
        }
        *direction = 1;
        *threshold = (int32_t)(lo - 1);
    } else {
        /* largest m in [-lim-1, lim] that fires (-lim-1 as sentinel); T = m + 1 */
        int64_t lo = -lim - 1, hi = lim;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo + 1) / 2;
            if (bn_fires((double)mid, gamma, beta, mean, sd, input_scale))
                lo = mid;
            else
                hi = mid - 1;
        }
        *direction = -1;
        *threshold = (int32_t)(lo + 1);
    }
}

/* ---- workspace ----------------------------------------------------------- */

/* Images per lookup table: four 16-bit lanes in a 64-bit word. */
#define LANES 4
#define LUT_SETS (BNN_BATCH / LANES)
/* Tables take in_words * 32 KiB; above this fan-in (8 MiB of tables) the
 * workspace has none and every image takes the single-image path. */
#define LUT_MAX_WORDS 256u

struct bnn_workspace {
    uint32_t in_words;     /* words of the input layer's fan-in */
    uint32_t act_words;    /* words of the widest hidden activation vector */
    uint32_t n_classes;
    /* First layer tables, LUT_SETS sets of in_words * 8 groups * 256 entries:
     * entry (g, v) of set s holds, in lane i, the sum of the pixels of image
     * s * LANES + i at the inputs 8g + k whose bit k of v is set. NULL when
     * the fan-in exceeds LUT_MAX_WORDS words. */
    uint64_t *lut;
    /* Single images (bnn_classify, the tail of a range): 8 bit-planes of the
     * pixels, word j plane b at j * 8 + b; bits past `in` are zero. */
    uint64_t *planes;
    int32_t pixsum[BNN_BATCH];
    uint64_t *act[2];      /* [BNN_BATCH][act_words] each: ping-pong buffers */
    int32_t *scores;       /* [BNN_BATCH][n_classes] */
};

static size_t lut_set_words(const bnn_workspace *ws) { return (size_t)ws->in_words * 8 * 256; }

/* A workspace fits the model it was made for (and any model of the same
 * shape); its buffers are sized from the layer widths. */
bnn_workspace *bnn_workspace_new(const bnn_model *m) {
    if (!m || m->n_layers < 2) return NULL;
    bnn_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->in_words = m->layers[0].words;
    ws->n_classes = m->n_classes;
    uint32_t aw = 1;
    for (uint32_t l = 0; l + 1 < m->n_layers; l++) {
        uint32_t w = (m->layers[l].out + 63) / 64;
        if (w > aw) aw = w;
    }
    ws->act_words = aw;
    if (ws->in_words <= LUT_MAX_WORDS) {
        ws->lut = malloc(LUT_SETS * lut_set_words(ws) * sizeof *ws->lut);
        if (!ws->lut) {
            bnn_workspace_free(ws);
            return NULL;
        }
    }
    ws->planes = malloc((size_t)ws->in_words * 8 * sizeof *ws->planes);
    ws->act[0] = calloc((size_t)BNN_BATCH * aw, sizeof(uint64_t));
    ws->act[1] = calloc((size_t)BNN_BATCH * aw, sizeof(uint64_t));
    ws->scores = calloc((size_t)BNN_BATCH * ws->n_classes, sizeof *ws->scores);
    if (!ws->planes || !ws->act[0] || !ws->act[1] || !ws->scores) {
        bnn_workspace_free(ws);
        return NULL;
    }
    return ws;
}

void bnn_workspace_free(bnn_workspace *ws) {
    if (!ws) return;
    free(ws->lut);
    free(ws->planes);
    free(ws->act[0]);
    free(ws->act[1]);
    free(ws->scores);
    free(ws);
}

/* ---- kernels ------------------------------------------------------------- */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Builds one table set for `lanes` images of n
 * pixels each, over in_words * 64 inputs; inputs past n count as pixel 0, so
 * weight padding bits select nothing. Entry v of a group is built from the
 * entry without v's top bit: 255 additions per group. */
static void lut_build(uint64_t *T, uint32_t in_words, const uint8_t *const *px, int lanes,
                      uint32_t n) {
    for (uint32_t g = 0; g < in_words * 8; g++, T += 256) {
        uint64_t p[8];
        for (uint32_t k = 0; k < 8; k++) {
            uint32_t j = g * 8 + k;
            p[k] = 0;
            for (int i = 0; i < lanes; i++)
                if (j < n) p[k] |= (uint64_t)px[i][j] << (16 * i);
        }
        T[0] = 0;
        for (uint32_t k = 0; k < 8; k++) {
            uint32_t half = 1u << k;
            for (uint32_t v = 0; v < half; v++) T[half + v] = T[v] + p[k];
        }
    }
}

/* Splits n pixels into 8 packed bit-planes (padding bits zero). */
static void planes_build(uint64_t *planes, uint32_t words, const uint8_t *px, uint32_t n) {
    for (uint32_t j = 0; j < words; j++) {
        uint64_t p[8] = {0};
        uint32_t end = (j + 1) * 64 < n ? (j + 1) * 64 : n;
        for (uint32_t k = j * 64; k < end; k++)
            for (int b = 0; b < 8; b++) p[b] |= (uint64_t)(px[k] >> b & 1) << (k % 64);
        memcpy(&planes[(size_t)j * 8], p, sizeof p);
    }
}

static int32_t pixel_sum(const uint8_t *px, uint32_t n) {
    int32_t s = 0;
    for (uint32_t j = 0; j < n; j++) s += px[j];
    return s;
}

ALWAYS_INLINE int fires(int32_t a, const bnn_layer *L, uint32_t r) {
    return L->direction[r] < 0 ? a < L->threshold[r] : a > L->threshold[r];
}

/* Mask of the used bits of the last word of a row of n inputs. */
ALWAYS_INLINE uint64_t last_mask(uint32_t n) {
    return n % 64 ? (1ull << (n % 64)) - 1 : ~0ull;
}

/* The first layer for BNN_BATCH images from LUT_SETS table sets. Each weight
 * byte selects one entry per set: S = sum of the selected pixels, and
 * a = 2 S - sum of all pixels.
 * A 16-bit lane gains at most 8 * 255 per group, so lanes are widened into
 * 32-bit sums every 32 groups (32 * 2040 = 65280 < 65536), i.e. every 4
 * words. */
ALWAYS_INLINE void layer_u8(const bnn_layer *L, const uint64_t *image, const uint64_t *lut,
                            size_t set_words, const int32_t *pixsum, uint64_t *out,
                            size_t out_stride) {
    uint32_t words = L->words;
    for (int i = 0; i < BNN_BATCH; i++) memset(out + i * out_stride, 0, ((L->out + 63) / 64) * 8);
    for (uint32_t r = 0; r < L->out; r++) {
        const uint64_t *w = image + L->offset + (size_t)r * words;
        uint32_t sum[BNN_BATCH] = {0};
        for (uint32_t j0 = 0; j0 < words; j0 += 4) {
            uint32_t j1 = j0 + 4 < words ? j0 + 4 : words;
            uint64_t acc[LUT_SETS] = {0};
            for (uint32_t j = j0; j < j1; j++) {
                uint64_t x = w[j];
                const uint64_t *T = lut + (size_t)j * 8 * 256;
                for (int k = 0; k < 8; k++, T += 256) {
                    uint32_t v = (uint32_t)(x >> (8 * k)) & 255;
                    for (int s = 0; s < LUT_SETS; s++) acc[s] += T[s * set_words + v];
                }
            }
            for (int s = 0; s < LUT_SETS; s++)
                for (int i = 0; i < LANES; i++) sum[s * LANES + i] += acc[s] >> (16 * i) & 0xFFFF;
        }
        for (int i = 0; i < BNN_BATCH; i++) {
            int32_t a = 2 * (int32_t)sum[i] - pixsum[i];
            out[i * out_stride + r / 64] |= (uint64_t)fires(a, L, r) << (r % 64);
        }
    }
}

/* The first layer for one image from its bit-planes: S = sum_b 2^b
 * popcount(plane_b & w); one count per plane, weighted once per row. For a
 * single image this beats the tables, whose build is paid for one image only
 * and whose lookups then serve one lane of four. */
ALWAYS_INLINE void layer_u8_planes(const bnn_layer *L, const uint64_t *image,
                                   const uint64_t *planes, int32_t pixsum, uint64_t *out) {
    uint32_t words = L->words;
    memset(out, 0, ((L->out + 63) / 64) * 8);
    for (uint32_t r = 0; r < L->out; r++) {
        const uint64_t *w = image + L->offset + (size_t)r * words, *p = planes;
        int32_t c[8] = {0};
        for (uint32_t j = 0; j < words; j++, p += 8) {
            uint64_t x = w[j];
            for (int b = 0; b < 8; b++) c[b] += __builtin_popcountll(p[b] & x);
        }
        int32_t s = 0;
        for (int b = 0; b < 8; b++) s += c[b] << b;
        out[r / 64] |= (uint64_t)fires(2 * s - pixsum, L, r) << (r % 64);
    }
}

/* Pre-activations of row r of a binary layer for nb images: in - 2*popcount. */
ALWAYS_INLINE void bin_rows(const uint64_t *w, uint32_t words, uint32_t n, const uint64_t *x,
                            size_t x_stride, int32_t *a, int nb) {
    int32_t pc[BNN_BATCH] = {0};
    for (uint32_t j = 0; j + 1 < words; j++) {
        uint64_t wj = w[j];
        for (int i = 0; i < nb; i++) pc[i] += __builtin_popcountll(wj ^ x[i * x_stride + j]);
    }
    uint64_t wl = w[words - 1], mask = last_mask(n);
    for (int i = 0; i < nb; i++) {
        pc[i] += __builtin_popcountll((wl ^ x[i * x_stride + words - 1]) & mask);
        a[i] = (int32_t)n - 2 * pc[i];
    }
}

ALWAYS_INLINE void layer_bin(const bnn_layer *L, const uint64_t *image, const uint64_t *x,
                             size_t x_stride, uint64_t *out, size_t out_stride, int nb) {
    for (int i = 0; i < nb; i++) memset(out + i * out_stride, 0, ((L->out + 63) / 64) * 8);
    for (uint32_t r = 0; r < L->out; r++) {
        int32_t a[BNN_BATCH];
        bin_rows(image + L->offset + (size_t)r * L->words, L->words, L->in, x, x_stride, a, nb);
        for (int i = 0; i < nb; i++)
            out[i * out_stride + r / 64] |= (uint64_t)fires(a[i], L, r) << (r % 64);
    }
}

ALWAYS_INLINE void layer_out(const bnn_layer *L, const uint64_t *image, const uint64_t *x,
                             size_t x_stride, int32_t *scores, size_t s_stride, int nb) {
    for (uint32_t r = 0; r < L->out; r++) {
        int32_t a[BNN_BATCH];
        bin_rows(image + L->offset + (size_t)r * L->words, L->words, L->in, x, x_stride, a, nb);
        for (int i = 0; i < nb; i++) scores[i * s_stride + r] = a[i];
    }
}

/* Whole network for nb images whose tables (nb > 1) or planes (nb = 1) and
 * pixel sums are in ws; leaves
 * the class scores in ws->scores. nb is 1 or BNN_BATCH (a constant). */
ALWAYS_INLINE void forward(const bnn_model *m, const uint64_t *image, bnn_workspace *ws,
                           int nb) {
    size_t as = ws->act_words;
    if (nb == 1)
        layer_u8_planes(&m->layers[0], image, ws->planes, ws->pixsum[0], ws->act[0]);
    else
        layer_u8(&m->layers[0], image, ws->lut, lut_set_words(ws), ws->pixsum, ws->act[0], as);
    int cur = 0;
    for (uint32_t l = 1; l + 1 < m->n_layers; l++) {
        layer_bin(&m->layers[l], image, ws->act[cur], as, ws->act[cur ^ 1], as, nb);
        cur ^= 1;
    }
    layer_out(&m->layers[m->n_layers - 1], image, ws->act[cur], as, ws->scores, ws->n_classes,
              nb);
}

/* Two copies of the same code: one the compiler may build with POPCNT, one
 * for any CPU. The choice is made at run time and changes nothing but speed. */
static void forward_1(const bnn_model *m, const uint64_t *image, bnn_workspace *ws) {
    forward(m, image, ws, 1);
}
static void forward_batch(const bnn_model *m, const uint64_t *image, bnn_workspace *ws) {
    forward(m, image, ws, BNN_BATCH);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define BNN_POPCNT_CLONE 1
__attribute__((target("popcnt"))) static void forward_1_popcnt(const bnn_model *m,
                                                               const uint64_t *image,
                                                               bnn_workspace *ws) {
    forward(m, image, ws, 1);
}
__attribute__((target("popcnt"))) static void forward_batch_popcnt(const bnn_model *m,
                                                                   const uint64_t *image,
                                                                   bnn_workspace *ws) {
    forward(m, image, ws, BNN_BATCH);
}
static int have_popcnt(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
}
#endif

static void run_forward(const bnn_model *m, const uint64_t *image, bnn_workspace *ws, int nb) {
#ifdef BNN_POPCNT_CLONE
    if (have_popcnt()) {
        if (nb == BNN_BATCH)
            forward_batch_popcnt(m, image, ws);
        else
            forward_1_popcnt(m, image, ws);
        return;
    }
#endif
    if (nb == BNN_BATCH)
        forward_batch(m, image, ws);
    else
        forward_1(m, image, ws);
}

/* argmax, ties to the lowest class */
static int argmax(const int32_t *s, uint32_t n) {
    int best = 0;
    for (uint32_t c = 1; c < n; c++)
        if (s[c] > s[best]) best = (int)c;
    return best;
}

int bnn_classify(const bnn_model *m, const uint64_t *image, const uint8_t *pixels,
                 bnn_workspace *ws, int32_t *scores) {
    uint32_t n = m->layers[0].in;
    planes_build(ws->planes, ws->in_words, pixels, n);
    ws->pixsum[0] = pixel_sum(pixels, n);
    run_forward(m, image, ws, 1);
    if (scores) memcpy(scores, ws->scores, m->n_classes * sizeof *scores);
    return argmax(ws->scores, m->n_classes);
}

size_t bnn_eval_range(const bnn_model *m, const uint64_t *image, const dataset *d,
                      uint32_t begin, uint32_t end, bnn_workspace *ws, uint8_t *predictions) {
    if (end > d->n) end = d->n;
    uint32_t n = m->layers[0].in;
    if (begin >= end || (uint64_t)d->rows * d->cols != n) return 0;
    size_t correct = 0;
    uint32_t i = begin;
    while (i < end) {
        /* full batches, then the tail one image at a time */
        int nb = ws->lut && end - i >= BNN_BATCH ? BNN_BATCH : 1;
        if (nb == 1) {
            planes_build(ws->planes, ws->in_words, dataset_image(d, i), n);
        } else {
            for (int s = 0; s < LUT_SETS; s++) {
                const uint8_t *px[LANES];
                for (int k = 0; k < LANES; k++) px[k] = dataset_image(d, i + s * LANES + k);
                lut_build(ws->lut + s * lut_set_words(ws), ws->in_words, px, LANES, n);
            }
        }
        for (int k = 0; k < nb; k++) ws->pixsum[k] = pixel_sum(dataset_image(d, i + k), n);
        run_forward(m, image, ws, nb);
        for (int k = 0; k < nb; k++) {
            int c = argmax(ws->scores + (size_t)k * ws->n_classes, m->n_classes);
            if (predictions) predictions[i + k - begin] = (uint8_t)c;
            correct += c == d->labels[i + k];
        }
        i += nb;
    }
    return correct;
}
