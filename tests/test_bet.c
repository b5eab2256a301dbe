/* test_bet.c - the bit-error-tolerance metrics (workloads/bet.h).
 *
 * Everything is checked against a plain reference written here: int8 +-1
 * weights, int64 arithmetic on explicit maps, zero padding by skipping the
 * taps outside the image, max-pool of a before the threshold, the model's
 * raw thresholds. The facts of bnn.md section 8 (B1, B2) are checked by
 * Monte Carlo with the uniform device's bit flips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../models/device.h"
#include "../sim/config.h"
#include "../sim/rng.h"
#include "../workloads/bet.h"
#include "../workloads/bnn.h"

static rng_stream stream(uint32_t test, uint32_t trial) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(0xBE7u, test, trial), 0, 0);
    return s;
}

static int64_t uniform_int(rng_stream *s, int64_t lo, int64_t hi) { /* [lo, hi] */
    return lo + (int64_t)rng_below(s, (uint64_t)(hi - lo + 1));
}

static int fires(int64_t a, int64_t t, int dir) { return dir > 0 ? a > t : a < t; }
static int is_conv(uint32_t k) { return k == BNN_CONV_U8 || k == BNN_CONV_BIN; }

/* ---- the reference ------------------------------------------------------------ */

typedef struct ref_net {
    const bnn_model *m;
    int8_t *w[BNN_MAX_LAYERS]; /* [out][in], +1 / -1 */
    /* the clean output map of every layer for the image `cached` (the last
     * one run without a forced flip): a forced run starts from there */
    const uint8_t *cached;
    int64_t *map[BNN_MAX_LAYERS];
} ref_net;

static void ref_init(ref_net *r, const bnn_model *m, const uint64_t *image) {
    memset(r, 0, sizeof *r);
    r->m = m;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        r->w[l] = malloc((size_t)L->out * L->in);
        r->map[l] = malloc((size_t)L->out * L->in_h * L->in_w * sizeof *r->map[l]);
        for (uint32_t o = 0; o < L->out; o++)
            for (uint32_t j = 0; j < L->in; j++)
                r->w[l][(size_t)o * L->in + j] =
                    image[L->offset + (size_t)o * L->words + j / 64] >> (j % 64) & 1 ? 1 : -1;
    }
}

static void ref_free(ref_net *r) {
    for (uint32_t l = 0; l < r->m->n_layers; l++) {
        free(r->w[l]);
        free(r->map[l]);
    }
}

/* Output positions of a layer (pooled map; dense 1). */
static uint32_t positions(const bnn_layer *L) {
    return is_conv(L->kind) ? (L->in_h / L->pool) * (L->in_w / L->pool) : 1;
}

/* Layer l on its input map x (HWC, the layer's input shape): writes its
 * output map (+-1, or the scores of the output layer) to y and, if pre is
 * non-NULL, the pooled pre-activations (what the threshold sees). */
static void ref_layer(const ref_net *r, uint32_t l, const int64_t *x, int64_t *y, int64_t *pre) {
    const bnn_layer *L = &r->m->layers[l];
    const int8_t *w = r->w[l];
    uint32_t H = L->in_h, W = L->in_w, C = L->in_c;
    if (!is_conv(L->kind)) {
        for (uint32_t o = 0; o < L->out; o++) {
            int64_t s = 0;
            for (uint32_t j = 0; j < L->in; j++) s += w[(size_t)o * L->in + j] * x[j];
            if (pre) pre[o] = s;
            y[o] = L->kind == BNN_DENSE_OUT                     ? s
                   : fires(s, L->threshold[o], L->direction[o]) ? 1
                                                                : -1;
        }
        return;
    }
    uint32_t P = L->pool, Wo = W / P;
    int64_t *a = malloc((size_t)H * W * L->out * sizeof *a);
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t ww = 0; ww < W; ww++)
            for (uint32_t o = 0; o < L->out; o++) {
                int64_t s = 0;
                for (uint32_t t = 0; t < 9; t++) {
                    int64_t hh = (int64_t)h + t / 3 - 1, xx = (int64_t)ww + t % 3 - 1;
                    if (hh < 0 || hh >= H || xx < 0 || xx >= W) continue;
                    for (uint32_t c = 0; c < C; c++)
                        s += w[(size_t)o * L->in + t * C + c] * x[((size_t)hh * W + xx) * C + c];
                }
                a[((size_t)h * W + ww) * L->out + o] = s;
            }
    for (uint32_t p = 0; p < positions(L); p++)
        for (uint32_t o = 0; o < L->out; o++) {
            int64_t mx = INT64_MIN;
            for (uint32_t dy = 0; dy < P; dy++)
                for (uint32_t dx = 0; dx < P; dx++) {
                    int64_t v = a[((size_t)(p / Wo * P + dy) * W + p % Wo * P + dx) * L->out + o];
                    if (v > mx) mx = v;
                }
            size_t i = (size_t)p * L->out + o;
            if (pre) pre[i] = mx;
            y[i] = fires(mx, L->threshold[o], L->direction[o]) ? 1 : -1;
        }
    free(a);
}

/* One image through the network. If force_layer is a hidden layer, unit
 * force_unit's output bits there are flipped at every position. pre, if
 * non-NULL, gets each layer's pooled pre-activations (HWC, unit fastest;
 * the scores for the output layer) where pre[l] is non-NULL. Returns the
 * argmax (lowest class on ties). */
static int ref_run(ref_net *r, const uint8_t *px, int force_layer, uint32_t force_unit,
                   int64_t **pre) {
    const bnn_model *m = r->m;
    uint32_t nl = m->n_layers, first = 0;
    size_t npx = (size_t)m->in_rows * m->in_cols * m->in_channels;
    int64_t *in = malloc(npx * sizeof *in);
    for (size_t i = 0; i < npx; i++) in[i] = px[i];
    if (force_layer >= 0 && px == r->cached && !pre) first = (uint32_t)force_layer + 1;
    else if (force_layer < 0) r->cached = px;
    for (uint32_t l = first; l < nl; l++) {
        const bnn_layer *L = &m->layers[l];
        const int64_t *x = l == 0 ? in : r->map[l - 1];
        if (l == first && l > 0) { /* from the clean map, flipped */
            const bnn_layer *F = &m->layers[l - 1];
            size_t n = (size_t)positions(F) * F->out;
            int64_t *xf = malloc(n * sizeof *xf);
            memcpy(xf, r->map[l - 1], n * sizeof *xf);
            for (uint32_t p = 0; p < positions(F); p++) xf[(size_t)p * F->out + force_unit] *= -1;
            int64_t *y = malloc((size_t)positions(L) * L->out * sizeof *y);
            ref_layer(r, l, xf, y, NULL);
            free(xf);
            /* the rest of a forced run must not overwrite the clean cache */
            int64_t *cur = y;
            for (uint32_t k = l + 1; k < nl; k++) {
                const bnn_layer *K = &m->layers[k];
                int64_t *nxt = malloc((size_t)positions(K) * K->out * sizeof *nxt);
                ref_layer(r, k, cur, nxt, NULL);
                free(cur);
                cur = nxt;
            }
            int best = 0;
            for (uint32_t c = 1; c < m->n_classes; c++)
                if (cur[c] > cur[best]) best = (int)c;
            free(cur);
            free(in);
            return best;
        }
        ref_layer(r, l, x, r->map[l], pre ? pre[l] : NULL);
        if ((int)l == force_layer)
            for (uint32_t p = 0; p < positions(L); p++)
                r->map[l][(size_t)p * L->out + force_unit] *= -1;
    }
    if (force_layer >= 0) r->cached = NULL; /* the maps now hold a forced run */
    const int64_t *sc = r->map[nl - 1];
    int best = 0;
    for (uint32_t c = 1; c < m->n_classes; c++)
        if (sc[c] > sc[best]) best = (int)c;
    free(in);
    return best;
}

/* ---- models and data -------------------------------------------------------------- */

static void random_weights(bnn_model *m, rng_stream *s) {
    for (uint32_t l = 0; l < m->n_layers; l++)
        for (uint32_t r = 0; r < m->layers[l].out; r++)
            for (uint32_t c = 0; c < m->layers[l].in; c++)
                bnn_weight_set(m, l, r, c, rng_u32(s) & 1);
}

/* Images with a black background and bright blobs, like Fashion-MNIST. */
static void random_data(dataset *d, uint32_t n, uint32_t rows, uint32_t cols, uint32_t chans,
                        uint32_t classes, rng_stream *s) {
    d->n = n;
    d->rows = rows;
    d->cols = cols * chans; /* HWC bytes per row: the size check counts bytes */
    d->n_classes = classes;
    size_t px = (size_t)rows * cols * chans;
    d->pixels = malloc(n * px);
    d->labels = malloc(n);
    for (uint32_t i = 0; i < n; i++) {
        for (size_t j = 0; j < px; j++) {
            uint32_t v = rng_u32(s);
            d->pixels[i * px + j] = v % 3 == 0 ? 0 : v % 7 == 0 ? 255 : (uint8_t)(v >> 8);
        }
        d->labels[i] = (uint8_t)rng_below(s, classes);
    }
}

/* Thresholds of every hidden unit at the median of its pre-activation over
 * the data (+- jitter), directions random: many units sit near their
 * threshold, so flips cascade through the layers. With spread, each unit
 * takes a random quantile between 2 % and 98 % instead, so many units are
 * nearly constant and changes stay local. Layer by layer, since a layer's
 * inputs depend on the thresholds before it. */
static void quantile_thresholds(bnn_model *m, const dataset *d, rng_stream *s, int64_t jitter,
                                int spread) {
    size_t npx = (size_t)d->rows * d->cols;
    for (uint32_t l = 0; l + 1 < m->n_layers; l++) {
        bnn_layer *L = &m->layers[l];
        uint32_t P = positions(L);
        int64_t *vals = malloc((size_t)d->n * P * L->out * sizeof *vals);
        int64_t *pre[BNN_MAX_LAYERS] = {0};
        ref_net r;
        ref_init(&r, m, m->image);
        for (uint32_t i = 0; i < d->n; i++) {
            pre[l] = vals + (size_t)i * P * L->out;
            ref_run(&r, d->pixels + i * npx, -1, 0, pre);
        }
        ref_free(&r);
        int64_t *col = malloc((size_t)d->n * P * sizeof *col);
        for (uint32_t o = 0; o < L->out; o++) {
            size_t k = 0;
            for (size_t i = 0; i < (size_t)d->n * P; i++) col[k++] = vals[i * L->out + o];
            for (size_t i = 1; i < k; i++) /* insertion sort: small */
                for (size_t j = i; j > 0 && col[j - 1] > col[j]; j--) {
                    int64_t t = col[j];
                    col[j] = col[j - 1];
                    col[j - 1] = t;
                }
            size_t at = spread ? (size_t)((0.02 + 0.96 * rng_unit(s)) * (k - 1)) : k / 2;
            L->threshold[o] = (int32_t)(col[at] + uniform_int(s, -jitter, jitter));
            L->direction[o] = rng_u32(s) & 1 ? 1 : -1;
        }
        free(col);
        free(vals);
    }
}

/* A few model shapes: dense chains, convolutions with and without pooling,
 * several input channels, widths not multiples of 64. */
static void make_model(bnn_model *m, int which, rng_stream *s, uint32_t *rows, uint32_t *cols,
                       uint32_t *chans) {
    apx_error err;
    int rc = APX_OK;
    if (which == 0) {
        uint32_t w[] = {30, 100, 80, 70, 6};
        *rows = 5, *cols = 6, *chans = 1;
        rc = bnn_create(m, "dense4", 5, 6, 4, w, &err);
    } else if (which == 1) {
        bnn_layer_spec sp[] = {{BNN_CONV_U8, 8, 2}, {BNN_CONV_BIN, 12, 1}, {BNN_CONV_BIN, 9, 2},
                               {BNN_DENSE_BIN, 40, 1}, {BNN_DENSE_OUT, 5, 1}};
        *rows = 8, *cols = 8, *chans = 1;
        rc = bnn_create_layers(m, "conv", 8, 8, 1, 5, sp, &err);
    } else if (which == 2) {
        bnn_layer_spec sp[] = {{BNN_CONV_U8, 70, 2}, {BNN_CONV_BIN, 5, 2}, {BNN_DENSE_OUT, 4, 1}};
        *rows = 7, *cols = 5, *chans = 3;
        rc = bnn_create_layers(m, "conv-rgb", 7, 5, 3, 3, sp, &err);
    } else {
        bnn_layer_spec sp[] = {{BNN_CONV_U8, 4, 1}, {BNN_CONV_BIN, 6, 1}, {BNN_CONV_BIN, 5, 2},
                               {BNN_CONV_BIN, 7, 1}, {BNN_DENSE_OUT, 3, 1}};
        *rows = 12, *cols = 11, *chans = 1;
        rc = bnn_create_layers(m, "conv-deep", 12, 11, 1, 5, sp, &err);
    }
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    random_weights(m, s);
}

/* ---- pre-activations ---------------------------------------------------------------- */

static void test_preactivations(void) {
    long checked = 0, wrong = 0;
    for (int which = 0; which < 3; which++) {
        rng_stream s = stream(1, (uint32_t)which);
        bnn_model m;
        uint32_t rows, cols, chans;
        make_model(&m, which, &s, &rows, &cols, &chans);
        dataset d;
        random_data(&d, 12, rows, cols, chans, m.n_classes, &s);
        quantile_thresholds(&m, &d, &s, 3, 0);
        /* the same weights with every padding bit set: never read as data */
        uint64_t *padded = malloc(m.image_words * 8);
        memcpy(padded, m.image, m.image_words * 8);
        for (uint32_t l = 0; l < m.n_layers; l++) {
            const bnn_layer *L = &m.layers[l];
            if (L->in % 64)
                for (uint32_t r = 0; r < L->out; r++)
                    padded[L->offset + (size_t)r * L->words + L->words - 1] |= ~0ull
                                                                               << (L->in % 64);
        }
        ref_net r;
        ref_init(&r, &m, m.image);
        for (uint32_t i = 0; i < d.n; i++) {
            const uint8_t *px = d.pixels + (size_t)i * d.rows * d.cols;
            int64_t *pre[BNN_MAX_LAYERS] = {0};
            for (uint32_t l = 0; l < m.n_layers; l++)
                pre[l] = malloc((size_t)positions(&m.layers[l]) * m.layers[l].out * 8);
            ref_run(&r, px, -1, 0, pre);
            for (uint32_t l = 0; l < m.n_layers; l++) {
                size_t n = (size_t)positions(&m.layers[l]) * m.layers[l].out;
                int64_t *got = malloc(n * 8);
                apx_error err;
                for (int v = 0; v < 2; v++) {
                    CU_ASSERT_EQUAL(bet_preactivations(&m, v ? padded : m.image, px, l, got, &err),
                                    APX_OK);
                    for (size_t k = 0; k < n; k++) wrong += got[k] != pre[l][k];
                    checked += (long)n;
                }
                free(got);
                free(pre[l]);
            }
        }
        ref_free(&r);
        free(padded);
        dataset_free(&d);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(checked > 10000);
}

/* ---- B1, B2: Monte Carlo under symmetric BER ---------------------------------------- */

/* Flips the weights of layer l of image (a copy of m's) where the uniform
 * device's chip `chip` fails at rate p: independent Bernoulli(p) per bit,
 * a fresh draw per chip. */
static void device_flips(const device *dev, double p, uint32_t chip, const bnn_model *m,
                         uint32_t l, uint64_t *image) {
    const bnn_layer *L = &m->layers[l];
    device_region reg = {l, L->out, L->in, L->offset * 8, (uint64_t)L->words * 8, NULL};
    fmap fm;
    fmap_init(&fm, 0);
    apx_error err;
    CU_ASSERT_EQUAL(dev->ops->faults(dev, &p, 7, chip, &reg, &fm, &err), APX_OK);
    fmap_layout where = {image + L->offset, L->out, L->in, L->words};
    fmap_apply(&fm, &where);
    fmap_free(&fm);
}

static device *uniform_device(cfg_doc **doc) {
    static const char yaml[] = "kind: uniform\n";
    apx_error err;
    *doc = cfg_load_string(yaml, sizeof yaml - 1, "test", &err);
    device *dev = NULL;
    CU_ASSERT_EQUAL_FATAL(device_create(cfg_root(*doc), &dev, &err), APX_OK);
    return dev;
}

/* A probe for one binary neuron: 1 pixel (0) -> n constant first-layer
 * neurons giving the inputs x (+1: threshold -1, a = 0 fires; -1:
 * threshold 0) -> the neuron under test (layer 1, unit 0) -> 2 classes. */
static void binary_probe(bnn_model *m, uint32_t n, const int *x, rng_stream *s) {
    uint32_t widths[] = {1, n, 1, 2};
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bnn_create(m, "probe", 1, 1, 3, widths, &err), APX_OK);
    random_weights(m, s);
    for (uint32_t j = 0; j < n; j++) m->layers[0].threshold[j] = x[j] > 0 ? -1 : 0;
}

/* B1: E[a'] = (1 - 2p) a and Var[a'] = 4 p (1 - p) sum_j x_j^2, for a binary
 * neuron (x = +-1) and an 8-bit one (x = pixels), within 5 standard errors
 * of the Monte Carlo estimates (the variance's from the exact fourth moment). */
static void test_moments(void) {
    cfg_doc *doc;
    device *dev = uniform_device(&doc);
    enum { TRIALS = 3000 };
    static const double ps[] = {0.01, 0.1, 0.3};
    int checks = 0;
    for (int u8 = 0; u8 < 2; u8++)
        for (int pi = 0; pi < 3; pi++) {
            rng_stream s = stream(2, (uint32_t)(u8 * 3 + pi));
            uint32_t n = 200;
            bnn_model m;
            uint8_t px[200];
            double sumsq = 0;
            uint32_t layer = u8 ? 0 : 1;
            if (u8) {
                uint32_t widths[] = {n, 1, 2};
                apx_error err;
                CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "u8", 1, n, 2, widths, &err), APX_OK);
                random_weights(&m, &s);
                for (uint32_t j = 0; j < n; j++) {
                    px[j] = (uint8_t)rng_u32(&s);
                    sumsq += (double)px[j] * px[j];
                }
            } else {
                int x[200];
                for (uint32_t j = 0; j < n; j++) x[j] = rng_u32(&s) & 1 ? 1 : -1;
                binary_probe(&m, n, x, &s);
                px[0] = 0;
                sumsq = n;
            }
            double p = ps[pi];
            int64_t a0;
            apx_error err;
            CU_ASSERT_EQUAL(bet_preactivations(&m, m.image, px, layer, &a0, &err), APX_OK);
            uint64_t *img = malloc(m.image_words * 8);
            double sum = 0, sum2 = 0;
            for (uint32_t t = 0; t < TRIALS; t++) {
                memcpy(img, m.image, m.image_words * 8);
                device_flips(dev, p, t, &m, layer, img);
                int64_t a;
                bet_preactivations(&m, img, px, layer, &a, &err);
                sum += (double)a;
                sum2 += (double)a * a;
            }
            double mean = sum / TRIALS, var = (sum2 - TRIALS * mean * mean) / (TRIALS - 1);
            double mu = (1 - 2 * p) * a0, sigma2 = 4 * p * (1 - p) * sumsq;
            /* fourth central moment of a sum of independent terms 2 x_j (B_j - p)
             * (sign aside): kappa4 = sum 16 x_j^4 p q (1 - 6 p q), mu4 = kappa4 + 3 sigma^4 */
            double sum4 = 0;
            for (uint32_t j = 0; j < n; j++) {
                double xj = u8 ? px[j] : 1;
                sum4 += xj * xj * xj * xj;
            }
            double pq = p * (1 - p), mu4 = 16 * sum4 * pq * (1 - 6 * pq) + 3 * sigma2 * sigma2;
            double se_mean = sqrt(sigma2 / TRIALS);
            double se_var = sqrt((mu4 - sigma2 * sigma2 * (TRIALS - 3.0) / (TRIALS - 1)) / TRIALS);
            CU_ASSERT(fabs(mean - mu) < 5 * se_mean);
            CU_ASSERT(fabs(var - sigma2) < 5 * se_var);
            /* the test is sharp enough to see a wrong law: e.g. mean a (no
             * shrinkage) or variance 4 p n (no (1 - p)) */
            if (pi == 2) {
                CU_ASSERT(fabs(mean - a0) > 5 * se_mean || llabs(a0) < 30);
                CU_ASSERT(fabs(var - 4 * p * sumsq) > 5 * se_var);
            }
            checks++;
            free(img);
            bnn_free(&m);
        }
    CU_ASSERT_EQUAL(checks, 6);
    device_destroy(dev);
    cfg_free(doc);
}

/* The binomial formula against brute force over every flip pattern (n <= 10). */
static void test_flip_probability_exact(void) {
    double worst = 0;
    int cases = 0;
    for (uint32_t n = 1; n <= 10; n++)
        for (int64_t a = -(int64_t)n; a <= (int64_t)n; a += 2)
            for (int32_t t = (int32_t)-n - 2; t <= (int32_t)n + 2; t++)
                for (int dir = -1; dir <= 1; dir += 2)
                    for (int pi = 0; pi < 3; pi++) {
                        double p = (double[]){0.0, 0.13, 0.61}[pi];
                        /* terms: the first A agree (w x = +1), the rest disagree */
                        uint32_t A = (uint32_t)((n + a) / 2);
                        double ref = 0;
                        int orig = fires(a, t, dir);
                        for (uint32_t mask = 0; mask < (1u << n); mask++) {
                            int64_t ap = a;
                            for (uint32_t j = 0; j < n; j++)
                                if (mask >> j & 1) ap += j < A ? -2 : 2;
                            int k = __builtin_popcount(mask);
                            double pr = pow(p, k) * pow(1 - p, (int)n - k);
                            if (fires(ap, t, dir) != orig) ref += pr;
                        }
                        double got = bet_flip_probability(n, a, t, dir, p);
                        if (fabs(got - ref) > worst) worst = fabs(got - ref);
                        cases++;
                    }
    CU_ASSERT(worst < 1e-12);
    CU_ASSERT(cases > 1000);
    CU_ASSERT(isnan(bet_flip_probability(4, 1, 0, 1, 0.1)));  /* parity */
    CU_ASSERT(isnan(bet_flip_probability(4, 6, 0, 1, 0.1)));  /* |a| > n */
    CU_ASSERT(isnan(bet_flip_probability(4, 2, 0, 1, 1.5)));  /* p */
    CU_ASSERT(isnan(bet_flip_probability(4, 2, 0, 0, 0.1)));  /* direction */
}

/* B2: the measured flip probability of a real neuron (faults from the
 * uniform device, output through the model) matches the formula. */
static void test_flip_probability_mc(void) {
    cfg_doc *doc;
    device *dev = uniform_device(&doc);
    enum { TRIALS = 3000 };
    /* n, threshold offset from a, direction, p */
    static const struct { uint32_t n; int off, dir; double p; } cases[] = {
        {101, -4, 1, 0.05}, {101, 3, 1, 0.05}, {64, 0, -1, 0.02}, {64, 5, -1, 0.1},
        {300, -20, 1, 0.1}, {33, 1, 1, 0.3},
    };
    int mid = 0;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        rng_stream s = stream(3, (uint32_t)c);
        uint32_t n = cases[c].n;
        int x[300];
        for (uint32_t j = 0; j < n; j++) x[j] = rng_u32(&s) & 1 ? 1 : -1;
        bnn_model m;
        binary_probe(&m, n, x, &s);
        uint8_t px = 0;
        int64_t a;
        apx_error err;
        CU_ASSERT_EQUAL(bet_preactivations(&m, m.image, &px, 1, &a, &err), APX_OK);
        int32_t t = (int32_t)(a + cases[c].off);
        int dir = cases[c].dir;
        m.layers[1].threshold[0] = t;
        m.layers[1].direction[0] = (int8_t)dir;
        double want = bet_flip_probability(n, a, t, dir, cases[c].p);
        uint64_t *img = malloc(m.image_words * 8);
        uint32_t flipped = 0;
        int orig = fires(a, t, dir);
        for (uint32_t k = 0; k < TRIALS; k++) {
            memcpy(img, m.image, m.image_words * 8);
            device_flips(dev, cases[c].p, k, &m, 1, img);
            int64_t ap;
            bet_preactivations(&m, img, &px, 1, &ap, &err);
            flipped += fires(ap, t, dir) != orig;
        }
        double got = (double)flipped / TRIALS, se = sqrt(want * (1 - want) / TRIALS);
        CU_ASSERT(fabs(got - want) <= 5 * se + 1e-9);
        mid += want > 0.05 && want < 0.95;
        free(img);
        bnn_free(&m);
    }
    CU_ASSERT(mid >= 4); /* most cases are far from 0 and 1, where the check has teeth */
    device_destroy(dev);
    cfg_free(doc);
}

/* ---- k_tol --------------------------------------------------------------------------------- */

/* The output bit of unit `bit` (pooled HWC index) of layer l with the
 * weights in image, by the reference. */
static int ref_bit(const bnn_model *m, const uint64_t *image, const uint8_t *px, uint32_t l,
                   uint32_t bit) {
    ref_net r;
    ref_init(&r, m, image);
    int64_t *pre[BNN_MAX_LAYERS] = {0};
    pre[l] = malloc((size_t)positions(&m->layers[l]) * m->layers[l].out * 8);
    ref_run(&r, px, -1, 0, pre);
    uint32_t o = bit % m->layers[l].out;
    int f = fires(pre[l][bit], m->layers[l].threshold[o], m->layers[l].direction[o]);
    free(pre[l]);
    ref_free(&r);
    return f;
}

static void flip_weight(const bnn_model *m, uint64_t *image, uint32_t l, uint32_t o, uint32_t j) {
    const bnn_layer *L = &m->layers[l];
    image[L->offset + (size_t)o * L->words + j / 64] ^= 1ull << (j % 64);
}

/* Dense units, binary and 8-bit: every set of <= k_tol flips of the unit's
 * weights (all subsets for small fan-in; the most harmful ones in random
 * order for large fan-in) leaves its output; k_tol + 1 most harmful flips
 * change it unless k_tol is the whole fan-in. */
static void test_ktol_dense(void) {
    long units = 0, subsets = 0, violated = 0, not_tight = 0, tight = 0, saturated = 0, ties = 0;
    for (uint32_t t = 0; t < 160; t++) {
        rng_stream s = stream(4, t);
        int u8 = t % 2;
        uint32_t n =
            t < 100 ? (uint32_t)uniform_int(&s, 1, 11) : (uint32_t)uniform_int(&s, 40, 300);
        bnn_model m;
        uint8_t px[300];
        uint32_t layer = u8 ? 0 : 1, units_here = 3;
        int xin[300];
        if (u8) {
            uint32_t widths[] = {n, units_here, 2};
            apx_error err;
            CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "u8", 1, n, 2, widths, &err), APX_OK);
            random_weights(&m, &s);
            for (uint32_t j = 0; j < n; j++)
                px[j] = rng_u32(&s) % 4 == 0 ? 0 : (uint8_t)uniform_int(&s, 1, 255);
        } else {
            for (uint32_t j = 0; j < n; j++) xin[j] = rng_u32(&s) & 1 ? 1 : -1;
            uint32_t widths[] = {1, n, units_here, 2};
            apx_error err;
            CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "bin", 1, 1, 3, widths, &err), APX_OK);
            random_weights(&m, &s);
            for (uint32_t j = 0; j < n; j++) m.layers[0].threshold[j] = xin[j] > 0 ? -1 : 0;
            px[0] = 0;
        }
        bnn_layer *L = &m.layers[layer];
        int64_t a[3];
        apx_error err;
        CU_ASSERT_EQUAL(bet_preactivations(&m, m.image, px, layer, a, &err), APX_OK);
        for (uint32_t o = 0; o < units_here; o++) { /* thresholds near a, sometimes far */
            int64_t span = u8 ? 600 : 9;
            L->threshold[o] = (int32_t)(a[o] + uniform_int(&s, -span, span) * (o == 2 ? 40 : 1));
            L->direction[o] = rng_u32(&s) & 1 ? 1 : -1;
        }
        if (u8) {
            /* unit 1 exactly at a tie: direction +1, firing, and the k0
             * largest harmful pixels (weight +1) move a exactly onto T */
            uint32_t big[300], nb = 0;
            for (uint32_t j = 0; j < n; j++)
                if (bnn_weight_get(&m, 0, 1, j) && px[j]) big[nb++] = px[j];
            for (uint32_t i = 1; i < nb; i++)
                for (uint32_t k = i; k > 0 && big[k - 1] < big[k]; k--) {
                    uint32_t tmp = big[k];
                    big[k] = big[k - 1];
                    big[k - 1] = tmp;
                }
            if (nb) {
                uint32_t k0 = 1 + (uint32_t)rng_below(&s, nb < 3 ? nb : 3);
                int64_t moved = 0;
                for (uint32_t i = 0; i < k0; i++) moved += 2 * (int64_t)big[i];
                L->threshold[1] = (int32_t)(a[1] - moved);
                L->direction[1] = 1;
                ties++;
            }
        }
        uint64_t kt[3];
        CU_ASSERT_EQUAL(bet_ktols(&m, px, layer, kt, &err), APX_OK);
        uint64_t *img = malloc(m.image_words * 8);
        memcpy(img, m.image, m.image_words * 8);
        for (uint32_t o = 0; o < units_here; o++) {
            int out0 = ref_bit(&m, img, px, layer, o), up = !out0 == (L->direction[o] > 0);
            /* harmful flips: for binary any term that moves a toward the
             * threshold; for 8-bit the same, largest pixel first */
            uint32_t harm[300], nh = 0;
            for (uint32_t j = 0; j < n; j++) {
                int wbit = bnn_weight_get(&m, layer, o, j);
                int term = (wbit ? 1 : -1) * (u8 ? (px[j] > 0) : xin[j]);
                if ((up && term < 0) || (!up && term > 0)) harm[nh++] = j;
            }
            if (u8) /* by pixel, largest first (insertion sort) */
                for (uint32_t i = 1; i < nh; i++)
                    for (uint32_t k = i; k > 0 && px[harm[k - 1]] < px[harm[k]]; k--) {
                        uint32_t tmp = harm[k];
                        harm[k] = harm[k - 1];
                        harm[k - 1] = tmp;
                    }
            else
                for (uint32_t i = 0; i < nh; i++) { /* any order: shuffle */
                    uint32_t r = i + (uint32_t)rng_below(&s, nh - i), tmp = harm[i];
                    harm[i] = harm[r];
                    harm[r] = tmp;
                }
            if (n <= 11) {
                for (uint32_t mask = 1; mask < (1u << n); mask++) {
                    if ((uint64_t)__builtin_popcount(mask) > kt[o]) continue;
                    for (uint32_t j = 0; j < n; j++)
                        if (mask >> j & 1) flip_weight(&m, img, layer, o, j);
                    violated += ref_bit(&m, img, px, layer, o) != out0;
                    subsets++;
                    memcpy(img, m.image, m.image_words * 8);
                }
            } else {
                for (uint64_t i = 0; i < kt[o] && i < nh; i++)
                    flip_weight(&m, img, layer, o, harm[i]);
                violated += ref_bit(&m, img, px, layer, o) != out0;
                subsets++;
                memcpy(img, m.image, m.image_words * 8);
            }
            if (kt[o] == n) {
                /* nothing can change it: not even every harmful flip */
                for (uint32_t i = 0; i < nh; i++) flip_weight(&m, img, layer, o, harm[i]);
                violated += ref_bit(&m, img, px, layer, o) != out0;
                saturated++;
            } else {
                CU_ASSERT(kt[o] + 1 <= nh);
                for (uint64_t i = 0; i <= kt[o] && i < nh; i++)
                    flip_weight(&m, img, layer, o, harm[i]);
                not_tight += ref_bit(&m, img, px, layer, o) == out0;
                tight++;
            }
            memcpy(img, m.image, m.image_words * 8);
            units++;
        }
        free(img);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(violated, 0);
    CU_ASSERT_EQUAL(not_tight, 0);
    CU_ASSERT(tight > units / 2);
    CU_ASSERT(saturated > 5);
    CU_ASSERT(ties > 50);
    CU_ASSERT(subsets > 3000);
}

/* The input map of layer l (pixels, or the +-1 outputs of layer l - 1 from
 * the reference's pre-activations), HWC. */
static int64_t *input_map(const bnn_model *m, const uint8_t *px, int64_t *const *pre, uint32_t l) {
    const bnn_layer *L = &m->layers[l];
    size_t n = (size_t)L->in_h * L->in_w * L->in_c;
    int64_t *x = malloc(n * sizeof *x);
    for (size_t q = 0; q < n; q++) {
        if (l == 0) {
            x[q] = px[q];
            continue;
        }
        const bnn_layer *P = &m->layers[l - 1];
        uint32_t o = (uint32_t)(q % P->out);
        x[q] = fires(pre[l - 1][q], P->threshold[o], P->direction[o]) ? 1 : -1;
    }
    return x;
}

/* Pre-activation of unit o of conv layer l at (h, w) before pooling, from
 * its input map x and the weights in image (taps outside are left out). */
static int64_t conv_a(const bnn_model *m, const uint64_t *image, uint32_t l, const int64_t *x,
                      uint32_t o, uint32_t h, uint32_t w) {
    const bnn_layer *L = &m->layers[l];
    int64_t a = 0;
    for (uint32_t t = 0; t < 9; t++) {
        int64_t hh = (int64_t)h + t / 3 - 1, ww = (int64_t)w + t % 3 - 1;
        if (hh < 0 || hh >= L->in_h || ww < 0 || ww >= L->in_w) continue;
        for (uint32_t c = 0; c < L->in_c; c++) {
            uint32_t j = t * L->in_c + c;
            int wb = image[L->offset + (size_t)o * L->words + j / 64] >> (j % 64) & 1;
            a += (wb ? 1 : -1) * x[((size_t)hh * L->in_w + ww) * L->in_c + c];
        }
    }
    return a;
}

/* Output bit `bit` (pooled HWC) of conv layer l: max of a over the window,
 * then the threshold. */
static int conv_bit(const bnn_model *m, const uint64_t *image, uint32_t l, const int64_t *x,
                    uint32_t bit) {
    const bnn_layer *L = &m->layers[l];
    uint32_t o = bit % L->out, p = bit / L->out, Wo = L->in_w / L->pool;
    int64_t best = INT64_MIN;
    for (uint32_t dy = 0; dy < L->pool; dy++)
        for (uint32_t dx = 0; dx < L->pool; dx++) {
            int64_t a = conv_a(m, image, l, x, o, p / Wo * L->pool + dy, p % Wo * L->pool + dx);
            if (a > best) best = a;
        }
    return fires(best, L->threshold[o], L->direction[o]);
}

/* Pooled conv units: random sets of <= k_tol flips of the channel's kernel
 * never change the output bit; where one window position suffices (the
 * exact case), some position changes with k_tol + 1 harmful flips. Flips of
 * layer l leave its input map as it was, so the unit is evaluated alone
 * (conv_bit, checked against the whole reference first). */
static void test_ktol_conv(void) {
    long units = 0, tries = 0, violated = 0, exact = 0, not_tight = 0, ref_wrong = 0;
    for (int which = 1; which < 4; which++) {
        rng_stream s = stream(5, (uint32_t)which);
        bnn_model m;
        uint32_t rows, cols, chans;
        make_model(&m, which, &s, &rows, &cols, &chans);
        dataset d;
        random_data(&d, 8, rows, cols, chans, m.n_classes, &s);
        quantile_thresholds(&m, &d, &s, 2, which == 3);
        uint64_t *img = malloc(m.image_words * 8);
        for (uint32_t i = 0; i < 3; i++) {
            const uint8_t *px = d.pixels + (size_t)i * d.rows * d.cols;
            ref_net r;
            ref_init(&r, &m, m.image);
            int64_t *pre[BNN_MAX_LAYERS] = {0};
            for (uint32_t l = 0; l < m.n_layers; l++)
                pre[l] = malloc((size_t)positions(&m.layers[l]) * m.layers[l].out * 8);
            ref_run(&r, px, -1, 0, pre);
            for (uint32_t l = 0; l + 1 < m.n_layers; l++) {
                const bnn_layer *L = &m.layers[l];
                if (!is_conv(L->kind)) continue;
                uint32_t PO = positions(L);
                int64_t *x = input_map(&m, px, pre, l);
                uint64_t *kt = malloc((size_t)PO * L->out * 8);
                apx_error err;
                CU_ASSERT_EQUAL(bet_ktols(&m, px, l, kt, &err), APX_OK);
                for (uint32_t bit = 0; bit < PO * L->out; bit++) {
                    uint32_t o = bit % L->out;
                    int out0 = fires(pre[l][bit], L->threshold[o], L->direction[o]);
                    ref_wrong += conv_bit(&m, m.image, l, x, bit) != out0;
                    for (int k = 0; k < 6; k++) { /* random flip sets of size <= k_tol */
                        memcpy(img, m.image, m.image_words * 8);
                        uint64_t size =
                            kt[bit] < L->in ? (uint64_t)rng_below(&s, kt[bit] + 1) : L->in;
                        if (k == 0) size = kt[bit] < L->in ? kt[bit] : L->in;
                        for (uint64_t f = 0; f < size; f++)
                            flip_weight(&m, img, l, o, (uint32_t)rng_below(&s, L->in));
                        violated += conv_bit(&m, img, l, x, bit) != out0;
                        tries++;
                    }
                    units++;
                    /* the exact case: direction +1 not firing, or -1 firing */
                    if ((L->direction[o] > 0) == out0 || kt[bit] >= L->in) continue;
                    exact++;
                    int up = !out0 == (L->direction[o] > 0), changed = 0;
                    uint32_t p = bit / L->out, Wo = L->in_w / L->pool;
                    for (uint32_t dy = 0; dy < L->pool; dy++)
                        for (uint32_t dx = 0; dx < L->pool; dx++) {
                            uint32_t h = p / Wo * L->pool + dy, w = p % Wo * L->pool + dx;
                            /* the harmful taps at (h, w), largest input first */
                            uint32_t harm[1024], nh = 0;
                            int64_t val[1024];
                            for (uint32_t t = 0; t < 9; t++) {
                                int64_t hh = (int64_t)h + t / 3 - 1, ww = (int64_t)w + t % 3 - 1;
                                if (hh < 0 || hh >= L->in_h || ww < 0 || ww >= L->in_w) continue;
                                for (uint32_t c = 0; c < L->in_c; c++) {
                                    uint32_t j = t * L->in_c + c;
                                    int64_t xv = x[((size_t)hh * L->in_w + ww) * L->in_c + c];
                                    int64_t term = (bnn_weight_get(&m, l, o, j) ? 1 : -1) * xv;
                                    if ((up && term < 0) || (!up && term > 0)) {
                                        harm[nh] = j;
                                        val[nh++] = xv < 0 ? -xv : xv;
                                    }
                                }
                            }
                            for (uint32_t a = 1; a < nh; a++)
                                for (uint32_t b = a; b > 0 && val[b - 1] < val[b]; b--) {
                                    uint32_t th = harm[b];
                                    harm[b] = harm[b - 1];
                                    harm[b - 1] = th;
                                    int64_t tv = val[b];
                                    val[b] = val[b - 1];
                                    val[b - 1] = tv;
                                }
                            if (kt[bit] + 1 > nh) continue;
                            memcpy(img, m.image, m.image_words * 8);
                            for (uint64_t f = 0; f <= kt[bit]; f++)
                                flip_weight(&m, img, l, o, harm[f]);
                            changed |= conv_bit(&m, img, l, x, bit) != out0;
                        }
                    not_tight += !changed;
                }
                free(kt);
                free(x);
            }
            for (uint32_t l = 0; l < m.n_layers; l++) free(pre[l]);
            ref_free(&r);
        }
        free(img);
        dataset_free(&d);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(ref_wrong, 0);
    CU_ASSERT_EQUAL(violated, 0);
    CU_ASSERT_EQUAL(not_tight, 0);
    CU_ASSERT(exact > 100);
    CU_ASSERT(tries > 5000);
    CU_ASSERT(units > 1000);
}

/* The output k_tol of a sample: exhaustive over all flip sets of a small
 * output layer, no set of <= k_tol flips changes the prediction and some
 * set of k_tol + 1 does. */
static void test_ktol_output(void) {
    int checked = 0, violated = 0, not_tight = 0;
    for (uint32_t t = 0; t < 40; t++) {
        rng_stream s = stream(6, t);
        uint32_t n = (uint32_t)uniform_int(&s, 2, 4), classes = 3;
        uint32_t widths[] = {1, n, classes};
        bnn_model m;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "out", 1, 1, 2, widths, &err), APX_OK);
        random_weights(&m, &s);
        for (uint32_t j = 0; j < n; j++) m.layers[0].threshold[j] = rng_u32(&s) & 1 ? -1 : 0;
        uint8_t px = 0, label = (uint8_t)rng_below(&s, classes);
        dataset d = {1, 1, 1, classes, &px, &label};
        bet_metrics b;
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, NULL, &b, &err), APX_OK);
        uint64_t kt = UINT64_MAX;
        for (uint32_t k = 0; k < 16; k++)
            if (b.output_ktol_hist[k]) kt = k;
        CU_ASSERT_FATAL(kt != UINT64_MAX);
        bet_metrics_free(&b);
        ref_net r;
        ref_init(&r, &m, m.image);
        int pred0 = ref_run(&r, &px, -1, 0, NULL);
        ref_free(&r);
        uint32_t bits = n * classes;
        uint64_t *img = malloc(m.image_words * 8);
        int changed_at_next = 0;
        for (uint32_t mask = 1; mask < (1u << bits); mask++) {
            uint64_t k = (uint64_t)__builtin_popcount(mask);
            if (k > kt + 1) continue;
            memcpy(img, m.image, m.image_words * 8);
            for (uint32_t b2 = 0; b2 < bits; b2++)
                if (mask >> b2 & 1) flip_weight(&m, img, 1, b2 / n, b2 % n);
            ref_init(&r, &m, img);
            int pred = ref_run(&r, &px, -1, 0, NULL);
            ref_free(&r);
            if (k <= kt) violated += pred != pred0;
            else changed_at_next |= pred != pred0;
        }
        not_tight += !changed_at_next;
        checked++;
        free(img);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(violated, 0);
    CU_ASSERT_EQUAL(not_tight, 0);
    CU_ASSERT_EQUAL(checked, 40);
}

/* ---- the metrics of bet_compute ---------------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median_of(int64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_i64);
    return ((double)v[(n - 1) / 2] + (double)v[n / 2]) / 2;
}

/* The test models: the four shapes of make_model (the last with spread
 * thresholds, so that changes reach its conv layers at a few positions
 * only), and the shared synthetic workload (784-32-10, random thresholds). */
#define CASES 5
static void load_case(int which, bnn_model *m, dataset *d) {
    rng_stream s = stream(7, (uint32_t)which);
    if (which < 4) {
        uint32_t rows, cols, chans;
        make_model(m, which, &s, &rows, &cols, &chans);
        random_data(d, which == 3 ? 40 : 14, rows, cols, chans, m->n_classes, &s);
        quantile_thresholds(m, d, &s, which == 0 ? 1 : 2, which == 3);
        return;
    }
    const char *dir, *model;
    test_workload(&dir, &model);
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bnn_load(model, m, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(fmnist_load(dir, "test", 0, d, &err), APX_OK);
}

/* Margins, medians, k_tol histograms and the output margin of bet_compute
 * against the reference's pre-activations (and bet_ktols per image). */
static void test_margins(void) {
    for (int which = 0; which < CASES; which++) {
        bnn_model m;
        dataset d;
        load_case(which, &m, &d);
        bet_options opt = {0, 2, NULL, NULL, NULL};
        bet_metrics b;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK);
        ref_net r;
        ref_init(&r, &m, m.image);
        size_t npx = (size_t)d.rows * d.cols;
        uint32_t nl = m.n_layers, correct = 0;
        int64_t *needs[BNN_MAX_LAYERS] = {0}, *gs = malloc(d.n * 8), gsum_correct = 0;
        uint64_t hist[BNN_MAX_LAYERS][BET_KTOL_BINS] = {{0}};
        size_t nn[BNN_MAX_LAYERS] = {0};
        for (uint32_t l = 0; l + 1 < nl; l++)
            needs[l] = malloc((size_t)d.n * positions(&m.layers[l]) * m.layers[l].out * 8);
        for (uint32_t i = 0; i < d.n; i++) {
            int64_t *pre[BNN_MAX_LAYERS];
            for (uint32_t l = 0; l < nl; l++)
                pre[l] = malloc((size_t)positions(&m.layers[l]) * m.layers[l].out * 8);
            int pred = ref_run(&r, d.pixels + i * npx, -1, 0, pre);
            for (uint32_t l = 0; l + 1 < nl; l++) {
                const bnn_layer *L = &m.layers[l];
                size_t nb = (size_t)positions(L) * L->out;
                uint64_t *kt = malloc(nb * 8);
                CU_ASSERT_EQUAL(bet_ktols(&m, d.pixels + i * npx, l, kt, &err), APX_OK);
                for (size_t k = 0; k < nb; k++) {
                    uint32_t o = (uint32_t)(k % L->out);
                    int64_t a = pre[l][k], t = L->threshold[o];
                    int64_t need = L->direction[o] > 0 ? (a > t ? a - t : t + 1 - a)
                                                       : (a < t ? t - a : a - t + 1);
                    needs[l][nn[l]++] = need;
                    hist[l][bet_ktol_bin(kt[k])]++;
                }
                free(kt);
            }
            const int64_t *sc = pre[nl - 1];
            int64_t other = INT64_MIN;
            for (uint32_t c = 0; c < m.n_classes; c++)
                if (c != d.labels[i] && sc[c] > other) other = sc[c];
            gs[i] = sc[d.labels[i]] - other;
            if (pred == d.labels[i]) correct++, gsum_correct += gs[i];
            for (uint32_t l = 0; l < nl; l++) free(pre[l]);
        }
        CU_ASSERT_EQUAL(b.n_samples, d.n);
        CU_ASSERT_EQUAL(b.n_correct, correct);
        for (uint32_t l = 0; l + 1 < nl; l++) {
            const bet_layer_metrics *M = &b.layer[l];
            int64_t sum = 0, mn = INT64_MAX;
            for (size_t k = 0; k < nn[l]; k++) {
                sum += needs[l][k];
                if (needs[l][k] < mn) mn = needs[l][k];
            }
            double mean = (double)sum / nn[l] - 0.5;
            double scale =
                (m.layers[l].kind == BNN_DENSE_U8 || m.layers[l].kind == BNN_CONV_U8) ? 255 : 1;
            CU_ASSERT_EQUAL(M->n_margins, nn[l]);
            CU_ASSERT(fabs(M->margin_mean - mean) < 1e-9 * (1 + fabs(mean)));
            CU_ASSERT_EQUAL(M->margin_min, mn - 0.5);
            CU_ASSERT_EQUAL(M->margin_median, median_of(needs[l], nn[l]) - 0.5);
            CU_ASSERT(fabs(M->margin_norm_mean - mean / (m.layers[l].in * scale)) < 1e-12);
            CU_ASSERT(memcmp(M->ktol_hist, hist[l], sizeof hist[l]) == 0);
            free(needs[l]);
        }
        /* all hidden layers together */
        double norm_sum = 0, norm_layers = 0;
        uint64_t all_hist[BET_KTOL_BINS] = {0}, all_n = 0;
        for (uint32_t l = 0; l + 1 < nl; l++) {
            norm_sum += b.layer[l].margin_norm_mean * nn[l];
            norm_layers += b.layer[l].margin_norm_mean;
            all_n += nn[l];
            for (uint32_t k = 0; k < BET_KTOL_BINS; k++) all_hist[k] += hist[l][k];
        }
        CU_ASSERT_EQUAL(b.n_margins, all_n);
        CU_ASSERT(fabs(b.margin_norm_mean - norm_sum / all_n) < 1e-12);
        CU_ASSERT(fabs(b.margin_norm_mean_layers - norm_layers / (nl - 1)) < 1e-12);
        CU_ASSERT(memcmp(b.ktol_hist, all_hist, sizeof all_hist) == 0);
        int64_t gsum = 0, gmin = INT64_MAX;
        for (uint32_t i = 0; i < d.n; i++) {
            gsum += gs[i];
            if (gs[i] < gmin) gmin = gs[i];
        }
        CU_ASSERT(fabs(b.output_margin_mean - (double)gsum / d.n / 2) < 1e-9);
        CU_ASSERT(fabs(b.output_margin_mean_correct -
                       (correct ? (double)gsum_correct / correct / 2 : 0)) < 1e-9);
        CU_ASSERT_EQUAL(b.output_margin_min, gmin / 2.0);
        CU_ASSERT_EQUAL(b.output_margin_median, median_of(gs, d.n) / 2);
        free(gs);
        ref_free(&r);
        bet_metrics_free(&b);
        dataset_free(&d);
        bnn_free(&m);
    }
}

/* Importance: the counts of every hidden neuron (conv: channel) against
 * re-evaluating the whole network with that neuron's output forced. */
static void test_importance(void) {
    uint64_t sparse = 0, dense = 0;
    long units = 0, wrong = 0, nonzero = 0;
    for (int which = 0; which < CASES; which++) {
        bnn_model m;
        dataset d;
        load_case(which, &m, &d);
        bet_options opt = {0, 3, NULL, NULL, NULL};
        bet_metrics b;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK);
        sparse += b.steps_sparse;
        dense += b.steps_dense;
        ref_net r;
        ref_init(&r, &m, m.image);
        size_t npx = (size_t)d.rows * d.cols;
        uint32_t *flips[BNN_MAX_LAYERS], *correct[BNN_MAX_LAYERS];
        for (uint32_t l = 0; l + 1 < m.n_layers; l++) {
            flips[l] = calloc(m.layers[l].out, sizeof *flips[l]);
            correct[l] = calloc(m.layers[l].out, sizeof *correct[l]);
        }
        for (uint32_t i = 0; i < d.n; i++) {
            const uint8_t *px = d.pixels + i * npx;
            int pred0 = ref_run(&r, px, -1, 0, NULL);
            for (uint32_t l = 0; l + 1 < m.n_layers; l++)
                for (uint32_t j = 0; j < m.layers[l].out; j++) {
                    int p = ref_run(&r, px, (int)l, j, NULL);
                    flips[l][j] += p != pred0;
                    correct[l][j] += p == d.labels[i];
                }
        }
        double imp[BNN_MAX_LAYERS] = {0};
        for (uint32_t l = 0; l + 1 < m.n_layers; l++) {
            for (uint32_t j = 0; j < m.layers[l].out; j++) {
                wrong +=
                    b.layer[l].flips[j] != flips[l][j] || b.layer[l].correct[j] != correct[l][j];
                nonzero += flips[l][j] > 0;
                imp[l] += ((double)b.n_correct - correct[l][j]) / d.n;
                units++;
            }
            free(flips[l]);
            free(correct[l]);
        }
        for (uint32_t l = 0; l + 1 < m.n_layers; l++)
            CU_ASSERT(fabs(b.layer[l].importance.mean - imp[l] / m.layers[l].out) < 1e-12);
        ref_free(&r);
        bet_metrics_free(&b);
        dataset_free(&d);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(nonzero > units / 4); /* the flips do reach the output */
    CU_ASSERT(sparse > 0);          /* both ways of propagating were used */
    CU_ASSERT(dense > 0);
}

/* bet_stat: population variance and var / (mean |I|)^2, 0 for all zeros. */
static void test_stats(void) {
    bnn_model m;
    dataset d;
    load_case(0, &m, &d);
    bet_metrics b;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, NULL, &b, &err), APX_OK);
    double all_sum = 0, all_abs = 0, all_sq = 0;
    uint32_t all_n = 0;
    for (uint32_t l = 0; l + 1 < m.n_layers; l++) {
        const bet_layer_metrics *M = &b.layer[l];
        double sum = 0, sabs = 0, sq = 0;
        for (uint32_t j = 0; j < M->units; j++) {
            double v = ((double)b.n_correct - M->correct[j]) / b.n_samples;
            sum += v, sabs += fabs(v), sq += v * v;
        }
        double mean = sum / M->units, var = sq / M->units - mean * mean, mabs = sabs / M->units;
        CU_ASSERT(fabs(M->importance.var - var) < 1e-12);
        CU_ASSERT(fabs(M->importance.scale_free - (mabs > 0 ? var / (mabs * mabs) : 0)) < 1e-9);
        double fsum = 0;
        for (uint32_t j = 0; j < M->units; j++) fsum += (double)M->flips[j] / b.n_samples;
        CU_ASSERT(fabs(M->flip_rate.mean - fsum / M->units) < 1e-12);
        all_sum += sum, all_abs += sabs, all_sq += sq, all_n += M->units;
    }
    double mean = all_sum / all_n, var = all_sq / all_n - mean * mean;
    CU_ASSERT(fabs(b.importance.mean - mean) < 1e-12);
    CU_ASSERT(fabs(b.importance.var - var) < 1e-12);
    CU_ASSERT(fabs(b.importance.scale_free - var / ((all_abs / all_n) * (all_abs / all_n))) < 1e-9);
    bet_metrics_free(&b);
    dataset_free(&d);
    bnn_free(&m);
}

/* The rows of two metrics are the same, bit for bit. */
static int same_rows(const bet_metrics *x, const bet_metrics *y) {
    size_t n = bet_rows(x, NULL, 0);
    if (n != bet_rows(y, NULL, 0)) return 0;
    bet_row *rx = malloc(n * sizeof *rx), *ry = malloc(n * sizeof *ry);
    bet_rows(x, rx, n);
    bet_rows(y, ry, n);
    int same = 1;
    for (size_t i = 0; i < n; i++)
        same &= strcmp(rx[i].name, ry[i].name) == 0 && rx[i].layer == ry[i].layer &&
                memcmp(&rx[i].value, &ry[i].value, sizeof(double)) == 0;
    for (uint32_t l = 0; l + 1 < x->n_layers; l++) {
        size_t u = x->layer[l].units * sizeof(uint32_t);
        same &= memcmp(x->layer[l].flips, y->layer[l].flips, u) == 0 &&
                memcmp(x->layer[l].correct, y->layer[l].correct, u) == 0;
    }
    free(rx);
    free(ry);
    return same;
}

/* Rule 1: the same metrics on 1, 2, 3 and 7 threads, and with every kernel. */
static void test_deterministic(void) {
    for (int which = 0; which < 2; which++) {
        bnn_model m;
        dataset d;
        load_case(which, &m, &d);
        apx_error err;
        bet_metrics base;
        bet_options opt = {0, 1, NULL, NULL, NULL};
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &base, &err), APX_OK);
        static const uint32_t threads[] = {2, 3, 7};
        for (int t = 0; t < 3; t++) {
            bet_metrics b;
            opt.threads = threads[t];
            CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK);
            CU_ASSERT(same_rows(&base, &b));
            CU_ASSERT_EQUAL(b.steps_sparse, base.steps_sparse);
            bet_metrics_free(&b);
        }
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++) {
            if (!bnn_kernel_supported((enum bnn_kernel)k)) continue;
            CU_ASSERT_EQUAL(bnn_set_kernel((enum bnn_kernel)k, &err), APX_OK);
            bet_metrics b;
            opt.threads = 2;
            CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK);
            CU_ASSERT(same_rows(&base, &b));
            bet_metrics_free(&b);
        }
        bnn_set_kernel(BNN_KERNEL_AUTO, &err);
        /* a limit takes the first samples */
        opt.limit = 5;
        bet_metrics lim;
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &lim, &err), APX_OK);
        CU_ASSERT_EQUAL(lim.n_samples, 5);
        d.n = 5;
        opt.limit = 0;
        bet_metrics five;
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &five, &err), APX_OK);
        CU_ASSERT(same_rows(&lim, &five));
        bet_metrics_free(&lim);
        bet_metrics_free(&five);
        bet_metrics_free(&base);
        dataset_free(&d);
        bnn_free(&m);
    }
}

/* Bad input: clear errors, nothing to free. */
static void test_bad_inputs(void) {
    bnn_model m;
    dataset d;
    load_case(0, &m, &d);
    apx_error err;
    bet_metrics b;
    bet_options opt = {d.n + 1, 1, NULL, NULL, NULL};
    CU_ASSERT_EQUAL(bet_compute(&m, &d, &opt, &b, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "limit 15 exceeds the 14 samples"));
    opt.limit = 0;
    uint32_t n = d.n;
    d.n = 0;
    CU_ASSERT_EQUAL(bet_compute(&m, &d, &opt, &b, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "empty"));
    d.n = n;
    d.cols++;
    CU_ASSERT_EQUAL(bet_compute(&m, &d, &opt, &b, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expects 5x6x1 inputs"));
    d.cols--;
    d.n_classes = 7;
    CU_ASSERT_EQUAL(bet_compute(&m, &d, &opt, &b, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "has 6 classes, the data set 7"));
    d.n_classes = 6;
    uint64_t kt[6];
    CU_ASSERT_EQUAL(bet_ktols(&m, d.pixels, 3, kt, &err), APX_EINPUT); /* the output layer */
    CU_ASSERT_EQUAL(bet_ktols(&m, d.pixels, 9, kt, &err), APX_EINPUT);
    int64_t pre[6];
    CU_ASSERT_EQUAL(bet_preactivations(&m, m.image, d.pixels, 4, pre, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK); /* and it still works */
    bet_metrics_free(&b);
    dataset_free(&d);
    bnn_free(&m);
}

/* Rows: unique (name, layer), every value finite, the values of the struct. */
static void test_rows(void) {
    bnn_model m;
    dataset d;
    load_case(1, &m, &d);
    apx_error err;
    bet_metrics b;
    CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, NULL, &b, &err), APX_OK);
    size_t n = bet_rows(&b, NULL, 0);
    bet_row *rows = malloc(n * sizeof *rows);
    CU_ASSERT_EQUAL(bet_rows(&b, rows, n), n);
    CU_ASSERT_EQUAL(bet_rows(&b, rows, 3), n); /* a short buffer still counts all */
    bet_rows(&b, rows, n);
    int dup = 0, bad = 0, found = 0;
    double hist_sum[BNN_MAX_LAYERS + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        bad += !rows[i].name || strncmp(rows[i].name, "bet.", 4) || !isfinite(rows[i].value) ||
               rows[i].layer < -1 || rows[i].layer >= (int)m.n_layers;
        for (size_t k = 0; k < i; k++)
            dup += rows[k].layer == rows[i].layer && strcmp(rows[k].name, rows[i].name) == 0;
        if (strncmp(rows[i].name, "bet.ktol_", 9) == 0 && strncmp(rows[i].name, "bet.ktol_le", 11))
            hist_sum[rows[i].layer + 1] += rows[i].value;
        if (rows[i].layer == 2 && strcmp(rows[i].name, "bet.margin_median") == 0)
            found += rows[i].value == b.layer[2].margin_median;
        if (rows[i].layer == -1 && strcmp(rows[i].name, "bet.accuracy") == 0)
            found += rows[i].value == (double)b.n_correct / b.n_samples;
        if (rows[i].layer == 1 && strcmp(rows[i].name, "bet.importance_var_scalefree") == 0)
            found += rows[i].value == b.layer[1].importance.scale_free;
        if (rows[i].layer == 4 && strcmp(rows[i].name, "bet.output_margin_mean") == 0)
            found += rows[i].value == b.output_margin_mean;
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(found, 4);
    for (uint32_t l = 0; l < m.n_layers; l++) /* histograms are fractions summing to 1 */
        CU_ASSERT(fabs(hist_sum[l] - 1) < 1e-12);
    free(rows);
    bet_metrics_free(&b);
    dataset_free(&d);
    bnn_free(&m);
}

/* k_tol bins: exact below 16, powers of two above, bounded. */
static void test_bins(void) {
    CU_ASSERT_EQUAL(bet_ktol_bin(0), 0);
    CU_ASSERT_EQUAL(bet_ktol_bin(15), 15);
    CU_ASSERT_EQUAL(bet_ktol_bin(16), 16);
    CU_ASSERT_EQUAL(bet_ktol_bin(31), 16);
    CU_ASSERT_EQUAL(bet_ktol_bin(32), 17);
    CU_ASSERT_EQUAL(bet_ktol_bin((1u << 20) - 1), 31);
    CU_ASSERT_EQUAL(bet_ktol_bin(1u << 20), 32);
    CU_ASSERT_EQUAL(bet_ktol_bin(UINT64_MAX), BET_KTOL_BINS - 1);
    for (uint32_t b = 0; b < BET_KTOL_BINS; b++) {
        CU_ASSERT_EQUAL(bet_ktol_bin(bet_ktol_bin_low(b)), b);
        if (b) CU_ASSERT_EQUAL(bet_ktol_bin(bet_ktol_bin_low(b) - 1), b - 1);
    }
}

/* ---- the command ------------------------------------------------------------------------ */

static void test_cli(void) {
    const char *dir, *model;
    test_workload(&dir, &model);
    static char out[1 << 16];
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics --help"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Example"));
    CU_ASSERT_EQUAL(
        test_run(out, sizeof out, APXSIM " metrics %s --data %s --limit 20", model, dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/test[:20], 20 samples"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "all hidden"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "k_tol histogram"));
    /* JSON: the accuracy of apxsim eval on the same samples */
    CU_ASSERT_EQUAL(test_run(out, sizeof out,
                             APXSIM " metrics %s --data %s --limit 20 --json --threads 2", model,
                             dir),
                    0);
    const char *acc = strstr(out, "\"accuracy\": ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    double a_metrics = atof(acc + 12);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"layers\": ["));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"ktol_hist\": ["));
    CU_ASSERT_EQUAL(
        test_run(out, sizeof out, APXSIM " eval %s --data %s --limit 20 --json", model, dir), 0);
    acc = strstr(out, "\"accuracy\": ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(acc);
    CU_ASSERT(fabs(atof(acc + 12) - a_metrics) < 1e-6);
    /* stored, and the metrics preset shows them */
    const char *db = test_db_path("bet-metrics.db");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics %s --data %s --limit 20 --db %s",
                             model, dir, db), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "stored "));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --preset metrics", db), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bet.importance_var_scalefree"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/test[:20]"));
    /* bad input */
    CU_ASSERT_EQUAL(
        test_run(out, sizeof out, APXSIM " metrics %s --data %s --limit 61", model, dir), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "limit 61 exceeds the 60 samples"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics %s --threads 0", model), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics %s --limit x", model), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics %s --split dev", model), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics"), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " metrics %s --nope", model), 2);
    CU_ASSERT_NOT_EQUAL(
        test_run(out, sizeof out, APXSIM " metrics %s/no-such.bnn --data %s", dir, dir), 0);
}

/* ---- the model zoo -------------------------------------------------------------------------- */

/* The shipped models on the two Fashion-MNIST test images closest to a
 * change of prediction (where flips matter), against the reference for a
 * sample of neurons of every layer. Skipped without the data set. */
static void test_zoo(void) {
    static const char *const names[] = {"fmnist-fc.bnn", "fmnist-vgg3.bnn"};
    dataset all;
    apx_error err;
    if (fmnist_load(NULL, "test", 60, &all, &err)) {
        fprintf(stderr, "\n  (test_zoo skipped: %s)\n", err.msg);
        return;
    }
    for (int z = 0; z < 2; z++) {
        char path[512];
        snprintf(path, sizeof path, "%s/workloads/zoo/%s", APXSIM_SOURCE_ROOT, names[z]);
        bnn_model m;
        CU_ASSERT_EQUAL_FATAL(bnn_load(path, &m, &err), APX_OK);
        /* the 2 images with the smallest gap between the two best scores */
        enum { NS = 2 };
        bnn_workspace *ws = bnn_workspace_new(&m);
        uint32_t pick[NS] = {0, 1};
        int64_t gap[NS] = {INT64_MAX, INT64_MAX};
        for (uint32_t i = 0; i < all.n; i++) {
            int32_t sc[10];
            int c = bnn_classify(&m, m.image, dataset_image(&all, i), ws, sc);
            int64_t g = INT64_MAX;
            for (int k = 0; k < 10; k++)
                if (k != c && sc[c] - sc[k] < g) g = sc[c] - sc[k];
            int worst = 0;
            for (int k = 1; k < NS; k++)
                if (gap[k] > gap[worst]) worst = k;
            if (g < gap[worst]) gap[worst] = g, pick[worst] = i;
        }
        bnn_workspace_free(ws);
        size_t npx = (size_t)all.rows * all.cols;
        uint8_t px[NS * 784], lab[NS];
        for (int k = 0; k < NS; k++) {
            memcpy(px + k * npx, dataset_image(&all, pick[k]), npx);
            lab[k] = all.labels[pick[k]];
        }
        dataset d = {NS, all.rows, all.cols, all.n_classes, px, lab};
        bet_metrics b;
        bet_options opt = {0, 2, NULL, NULL, NULL};
        CU_ASSERT_EQUAL_FATAL(bet_compute(&m, &d, &opt, &b, &err), APX_OK);
        /* a few neurons per layer that change something, and one at random */
        rng_stream s = stream(8, (uint32_t)z);
        uint32_t units[BNN_MAX_LAYERS][3], fl[BNN_MAX_LAYERS][3] = {{0}},
                                           co[BNN_MAX_LAYERS][3] = {{0}};
        for (uint32_t l = 0; l + 1 < m.n_layers; l++) {
            uint32_t nu = 0;
            for (uint32_t j = 0; j < b.layer[l].units && nu < 2; j++)
                if (b.layer[l].flips[j]) units[l][nu++] = j;
            while (nu < 3) units[l][nu++] = (uint32_t)rng_below(&s, b.layer[l].units);
        }
        ref_net r;
        ref_init(&r, &m, m.image);
        for (int k = 0; k < NS; k++) {
            int pred0 = ref_run(&r, px + k * npx, -1, 0, NULL);
            for (uint32_t l = 0; l + 1 < m.n_layers; l++)
                for (int u = 0; u < 3; u++) {
                    int p = ref_run(&r, px + k * npx, (int)l, units[l][u], NULL);
                    fl[l][u] += p != pred0;
                    co[l][u] += p == lab[k];
                }
        }
        long wrong = 0, checked = 0, changing = 0;
        for (uint32_t l = 0; l + 1 < m.n_layers; l++)
            for (int u = 0; u < 3; u++) {
                wrong += fl[l][u] != b.layer[l].flips[units[l][u]] ||
                         co[l][u] != b.layer[l].correct[units[l][u]];
                changing += fl[l][u] > 0;
                checked++;
            }
        CU_ASSERT_EQUAL(wrong, 0);
        CU_ASSERT(checked >= 6);
        CU_ASSERT(changing >= 2); /* the flips of these images do reach the output */
        ref_free(&r);
        bet_metrics_free(&b);
        bnn_free(&m);
    }
    dataset_free(&all);
}

void add_bet_suite(void) {
    TEST_SUITE("bet", {"preactivations", test_preactivations}, {"moments (B1)", test_moments},
               {"flip probability exact", test_flip_probability_exact},
               {"flip probability MC (B2)", test_flip_probability_mc},
               {"k_tol dense (B2)", test_ktol_dense}, {"k_tol conv", test_ktol_conv},
               {"k_tol output", test_ktol_output}, {"margins", test_margins},
               {"importance", test_importance}, {"stats", test_stats},
               {"deterministic", test_deterministic}, {"bad inputs", test_bad_inputs},
               {"rows", test_rows}, {"bins", test_bins}, {"cli", test_cli}, {"zoo", test_zoo});
}
