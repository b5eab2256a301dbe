/* test_bnn.c - the model, batch-norm folding and packed inference of bnn.h.
 *
 * Hidden neuron outputs are not part of the API, so several tests read them
 * through a "probe" output layer: h classes, row c has +1 only at input c, so
 * s_c = 2 z_c - Z with Z = sum_j z_j; from the scores, Z = sum_c s_c / (2 - h)
 * and z_c = (s_c + Z) / 2 (h >= 3). A constant neuron (threshold beyond the
 * reachable range) lets a test choose a layer's outputs directly. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../sim/rng.h"
#include "../workloads/bnn.h"

static rng_stream stream(uint32_t test, uint32_t trial) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(0xB11Bu, test, trial), 0, 0);
    return s;
}

static int64_t uniform_int(rng_stream *s, int64_t lo, int64_t hi) { /* [lo, hi] */
    return lo + (int64_t)rng_below(s, (uint64_t)(hi - lo + 1));
}

/* Random weights in the used bits; padding bits stay zero (a clean model). */
static void randomize_weights(bnn_model *m, rng_stream *s) {
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < L->out; r++)
            for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(m, l, r, c, rng_u32(s) & 1);
    }
}

/* Makes the last layer (width h == its fan-in) a probe: row c = +1 only at c. */
static void make_probe(bnn_model *m) {
    uint32_t l = m->n_layers - 1;
    const bnn_layer *L = &m->layers[l];
    for (uint32_t r = 0; r < L->out; r++)
        for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(m, l, r, c, r == c);
}

/* Recovers the probed layer's outputs (+1/-1) from the scores; 0 on a
 * malformed score vector. */
static int probe_read(const int32_t *s, uint32_t h, int *z) {
    int64_t sum = 0;
    for (uint32_t c = 0; c < h; c++) sum += s[c];
    if (sum % (2 - (int64_t)h)) return 0;
    int64_t Z = sum / (2 - (int64_t)h);
    for (uint32_t c = 0; c < h; c++) {
        int64_t v = s[c] + Z;
        if (v != 2 && v != -2) return 0;
        z[c] = (int)(v / 2);
    }
    return 1;
}

/* The float network: BN in double, this exact order, strict sign. */
static int bn_ref(double a, double scale, double g, double b, double mu, double var, double eps) {
    double z = a / scale;
    return g * (z - mu) / sqrt(var + eps) + b > 0;
}

static int folded_fires(int64_t a, int32_t t, int8_t d) { return d < 0 ? a < t : a > t; }

/* ---- create ---------------------------------------------------------------- */

static void test_create_layout(void) {
    bnn_model m;
    apx_error err = {0};
    uint32_t widths[] = {70, 130, 64, 3};
    CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "t", 7, 10, 3, widths, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(m.name, "t");
    CU_ASSERT_EQUAL(m.n_classes, 3);
    CU_ASSERT_EQUAL(m.layers[0].kind, BNN_DENSE_U8);
    CU_ASSERT_EQUAL(m.layers[1].kind, BNN_DENSE_BIN);
    CU_ASSERT_EQUAL(m.layers[2].kind, BNN_DENSE_OUT);
    CU_ASSERT_EQUAL(m.layers[0].words, 2);
    CU_ASSERT_EQUAL(m.layers[1].words, 3);
    CU_ASSERT_EQUAL(m.layers[2].words, 1);
    CU_ASSERT_EQUAL(m.layers[0].offset, 0);
    CU_ASSERT_EQUAL(m.layers[1].offset, 130 * 2);
    CU_ASSERT_EQUAL(m.layers[2].offset, 130 * 2 + 64 * 3);
    CU_ASSERT_EQUAL(m.image_words, 130 * 2 + 64 * 3 + 3);
    CU_ASSERT_PTR_NULL(m.layers[2].threshold);
    CU_ASSERT_EQUAL(m.layers[2].scale, 1.0f);
    int all_clean = 1;
    for (size_t i = 0; i < m.image_words; i++) all_clean &= m.image[i] == 0;
    for (uint32_t l = 0; l < 2; l++)
        for (uint32_t r = 0; r < m.layers[l].out; r++)
            all_clean &= m.layers[l].threshold[r] == 0 && m.layers[l].direction[r] == 1;
    CU_ASSERT(all_clean);
    bnn_weight_set(&m, 1, 5, 129, 1);
    CU_ASSERT_EQUAL(m.image[m.layers[1].offset + 5 * 3 + 2], 1ull << 1);
    CU_ASSERT_EQUAL(bnn_weight_get(&m, 1, 5, 129), 1);
    bnn_free(&m);
    CU_ASSERT_PTR_NULL(m.image);
    bnn_free(&m); /* a freed model can be freed again */

    uint32_t bad_w[] = {70, 0, 3};
    CU_ASSERT_EQUAL(bnn_create(&m, "x", 7, 10, 2, bad_w, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "width 0"));
    CU_ASSERT_PTR_NULL(m.layers);
    CU_ASSERT_EQUAL(bnn_create(&m, "x", 7, 11, 3, widths, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "7x11"));
    CU_ASSERT_EQUAL(bnn_create(&m, "x", 7, 10, 1, widths, &err), APX_EINPUT);
}

/* ---- (a) folding ------------------------------------------------------------ */

typedef struct bn_params { double g, b, mu, var, eps; } bn_params;

/* Random BN parameters whose threshold falls within +-spread (in z units);
 * about 1 in 8 has gamma = 0. */
static bn_params random_bn(rng_stream *s, double spread) {
    bn_params p;
    uint32_t kind = rng_u32(s) % 8;
    p.g = kind == 0 ? 0.0 : (rng_unit(s) * 2 + 0.01) * (kind % 2 ? 1 : -1);
    p.var = rng_unit(s) * 4 + 0.001;
    p.eps = rng_u32(s) % 2 ? 1e-5 : 1e-3;
    p.mu = (rng_unit(s) * 2 - 1) * spread;
    p.b = rng_normal(s) * 0.5;
    return p;
}

/* Sets the BN so that the threshold is exactly the reachable value a0: with
 * beta = 0 and mu = a0 / scale, BN(a0 / scale) is exactly 0 (no fire). */
static bn_params tie_bn(rng_stream *s, int64_t a0, double scale) {
    bn_params p = random_bn(s, 1);
    if (p.g == 0) p.g = 1;
    p.b = 0;
    p.mu = (double)a0 / scale;
    return p;
}

/* Exhaustive over every reachable a for small ranges: the folded comparison
 * equals BN + strict sign. */
static void test_fold_exhaustive(void) {
    long mismatches = 0, ties = 0, fires = 0, total = 0;
    for (uint32_t t = 0; t < 3000; t++) {
        rng_stream s = stream(1, t);
        int u8 = t % 2;
        double scale = u8 ? 255.0 : 1.0;
        int64_t n = uniform_int(&s, 1, u8 ? 40 : 300);
        int64_t max_a = u8 ? 255 * n : n;
        bn_params p;
        if (t % 3 == 0) {
            int64_t a0 = uniform_int(&s, -max_a, max_a);
            if (!u8 && (a0 + n) % 2) a0 += a0 < max_a ? 1 : -1; /* parity of n */
            p = tie_bn(&s, a0, scale);
            ties++;
        } else {
            p = random_bn(&s, (double)max_a / scale * 0.3);
        }
        int32_t thr;
        int8_t dir;
        bnn_fold_bn(p.g, p.b, p.mu, p.var, p.eps, scale, (double)max_a, &thr, &dir);
        CU_ASSERT(dir == 1 || dir == -1);
        CU_ASSERT(p.g >= 0 ? dir == 1 : dir == -1);
        for (int64_t a = -max_a; a <= max_a; a += u8 ? 1 : 2) {
            int ref = bn_ref((double)a, scale, p.g, p.b, p.mu, p.var, p.eps);
            mismatches += ref != folded_fires(a, thr, dir);
            fires += ref;
            total++;
        }
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    CU_ASSERT(fires > total / 10 && fires < total * 9 / 10); /* both outputs exercised */
    CU_ASSERT(ties > 500);
}

/* At an exact integer tie the rounded tau * 255 can sit on either side of a0;
 * the fold must still say "does not fire" at a0 and "fires" one step past. */
static void test_fold_u8_ties(void) {
    long wrong = 0;
    for (int64_t a0 = -20000; a0 <= 20000; a0 += 7) {
        int32_t thr;
        int8_t dir;
        double mu = (double)a0 / 255.0;
        bnn_fold_bn(0.75, 0.0, mu, 0.3, 1e-5, 255.0, 255.0 * 784, &thr, &dir);
        wrong += !(dir == 1 && thr == a0);
        bnn_fold_bn(-0.75, 0.0, mu, 0.3, 1e-5, 255.0, 255.0 * 784, &thr, &dir);
        wrong += !(dir == -1 && thr == a0);
    }
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_fold_edges(void) {
    int32_t t;
    int8_t d;
    /* gamma = 0: constant sign(beta), strict */
    bnn_fold_bn(0, 0.5, 3, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(folded_fires(-100, t, d) && folded_fires(100, t, d));
    bnn_fold_bn(0, 0.0, 3, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(!folded_fires(-100, t, d) && !folded_fires(100, t, d));
    bnn_fold_bn(0, -0.5, 3, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(!folded_fires(-100, t, d) && !folded_fires(100, t, d));
    /* tau far outside the range: clamped, constant */
    bnn_fold_bn(1e-300, 1, 0, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(t == -101 && d == 1);
    bnn_fold_bn(-1e-300, 1, 0, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(t == 101 && d == -1);
    bnn_fold_bn(1, 0, 1e9, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(!folded_fires(100, t, d));
    /* NaN anywhere: never fires */
    bnn_fold_bn(NAN, 0.5, 0, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(!folded_fires(-100, t, d) && !folded_fires(100, t, d) && !folded_fires(0, t, d));
    bnn_fold_bn(1, NAN, 0, 1, 1e-5, 1, 100, &t, &d);
    CU_ASSERT(!folded_fires(-100, t, d) && !folded_fires(100, t, d));
    bnn_fold_bn(1, 0, 0, -1, 1e-5, 1, 100, &t, &d); /* var + eps < 0 */
    CU_ASSERT(!folded_fires(-100, t, d) && !folded_fires(100, t, d));
    /* huge bound: threshold stays representable */
    bnn_fold_bn(1, 0, 1e300, 1, 1e-5, 1, 1e300, &t, &d);
    CU_ASSERT(t == INT32_MAX - 1 && d == 1);
}

/* Folded thresholds through the real kernels, every neuron of a U8 layer
 * (model n -> h -> probe h) and of a binary layer (1 -> n -> h -> probe h,
 * the first layer's constant neurons choosing the binary layer's input). */
static void test_fold_through_kernels(void) {
    long checked = 0, wrong = 0, fired = 0;
    for (uint32_t t = 0; t < 40; t++) {
        rng_stream s = stream(2, t);
        int u8 = t % 2;
        uint32_t n = (uint32_t)uniform_int(&s, 1, 200);
        uint32_t h = (uint32_t)uniform_int(&s, 3, 90);
        bnn_model m;
        apx_error err;
        uint32_t w_u8[] = {n, h, h}, w_bin[] = {1, n, h, h};
        int rc = u8 ? bnn_create(&m, "f", 1, n, 2, w_u8, &err)
                    : bnn_create(&m, "f", 1, 1, 3, w_bin, &err);
        CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
        uint32_t tl = u8 ? 0 : 1; /* layer under test */
        randomize_weights(&m, &s);
        make_probe(&m);
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        double scale = u8 ? 255.0 : 1.0, max_a = u8 ? 255.0 * n : n;

        for (uint32_t img = 0; img < 12; img++) {
            /* input: pixels, or the binary vector x set by constant neurons */
            uint8_t px[200];
            int x[200];
            for (uint32_t j = 0; j < n; j++) {
                px[j] = (uint8_t)rng_u32(&s);
                x[j] = rng_u32(&s) & 1 ? 1 : -1;
            }
            if (!u8) {
                px[0] = (uint8_t)rng_u32(&s);
                for (uint32_t j = 0; j < n; j++) {
                    m.layers[0].threshold[j] = x[j] > 0 ? -256 : 256;
                    m.layers[0].direction[j] = 1;
                }
            }
            /* exact integer a of every neuron, and BN parameters folded */
            bn_params p[90];
            int64_t a[90];
            for (uint32_t r = 0; r < h; r++) {
                a[r] = 0;
                for (uint32_t j = 0; j < n; j++) {
                    int w = bnn_weight_get(&m, tl, r, j) ? 1 : -1;
                    a[r] += u8 ? w * (int64_t)px[j] : w * x[j];
                }
                /* a third of the neurons have their threshold exactly at a,
                 * or one step (2 for binary) below it */
                uint32_t pick = rng_u32(&s) % 6;
                if (pick == 0) p[r] = tie_bn(&s, a[r], scale);
                else if (pick == 1) p[r] = tie_bn(&s, a[r] - (u8 ? 1 : 2), scale);
                else p[r] = random_bn(&s, sqrt((double)n) * (u8 ? 128 : 1) / scale);
                bnn_fold_bn(p[r].g, p[r].b, p[r].mu, p[r].var, p[r].eps, scale, max_a,
                            &m.layers[tl].threshold[r], &m.layers[tl].direction[r]);
            }
            int32_t scores[90];
            int z[90];
            bnn_classify(&m, m.image, px, ws, scores);
            CU_ASSERT_FATAL(probe_read(scores, h, z));
            for (uint32_t r = 0; r < h; r++) {
                int ref = bn_ref((double)a[r], scale, p[r].g, p[r].b, p[r].mu, p[r].var, p[r].eps);
                wrong += (z[r] > 0) != ref;
                fired += ref;
                checked++;
            }
        }
        bnn_workspace_free(ws);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(fired > checked / 10 && fired < checked * 9 / 10);
}

/* ---- (b) packed inference vs a float reference ------------------------------ */

static void random_thresholds(bnn_model *m, rng_stream *s) {
    for (uint32_t l = 0; l + 1 < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        double spread = sqrt((double)L->in) * (l == 0 ? 150 : 2);
        for (uint32_t r = 0; r < L->out; r++) {
            L->threshold[r] = (int32_t)((rng_unit(s) * 2 - 1) * spread);
            L->direction[r] = rng_u32(s) & 1 ? 1 : -1;
        }
    }
}

/* Plain double arithmetic on +-1 values; returns the argmax (lowest on ties). */
static int ref_forward(const bnn_model *m, const uint64_t *image, const uint8_t *px,
                       double *scores) {
    double x[1024], y[1024];
    uint32_t n = m->layers[0].in;
    for (uint32_t j = 0; j < n; j++) x[j] = px[j];
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < L->out; r++) {
            double a = 0;
            for (uint32_t j = 0; j < L->in; j++) {
                uint64_t word = image[L->offset + (size_t)r * L->words + j / 64];
                a += (word >> (j % 64) & 1 ? 1.0 : -1.0) * x[j];
            }
            if (L->kind == BNN_DENSE_OUT) {
                y[r] = a;
            } else {
                int f = L->direction[r] > 0 ? a > L->threshold[r] : a < L->threshold[r];
                y[r] = f ? 1.0 : -1.0;
            }
        }
        memcpy(x, y, L->out * sizeof *x);
    }
    int best = 0;
    for (uint32_t c = 0; c < m->n_classes; c++) {
        scores[c] = x[c];
        if (x[c] > x[best]) best = (int)c;
    }
    return best;
}

/* Random models, incl. widths that are not multiples of 64 and a 784-input
 * first layer with mostly +1 weights and saturated images (the largest |a|,
 * which would overflow a too-narrow accumulator). Every image goes through
 * bnn_classify (single-image path) and bnn_eval_range (batched path). */
static void test_matches_reference(void) {
    long images = 0, class_wrong = 0, score_wrong = 0, pad_changed = 0, ties = 0;
    long batch_wrong = 0, big_a = 0;
    int class_seen[8] = {0};
    enum { N_IMG = 43 };
    for (uint32_t t = 0; t < 30; t++) {
        rng_stream s = stream(3, t);
        static const uint32_t pick[] = {1, 5, 63, 64, 65, 70, 128, 130, 200};
        uint32_t nl = (uint32_t)uniform_int(&s, 2, 4);
        uint32_t widths[5];
        for (uint32_t l = 0; l < nl; l++) widths[l] = pick[rng_below(&s, 9)];
        int bright = t % 5 == 0;
        uint32_t rows = bright ? 28 : 7, cols = bright ? 28 : 10 * (uint32_t)uniform_int(&s, 1, 3);
        widths[0] = rows * cols;
        widths[nl] = (uint32_t)uniform_int(&s, 2, 8);
        /* Small, low-resolution class layers make score ties common. */
        if (t % 3 == 0) widths[nl - 1] = (uint32_t)uniform_int(&s, 1, 4);
        bnn_model m;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "r", rows, cols, nl, widths, &err), APX_OK);
        randomize_weights(&m, &s);
        random_thresholds(&m, &s);
        if (bright) { /* first layer: 90 % +1 weights, thresholds near the top */
            const bnn_layer *L = &m.layers[0];
            for (uint32_t r = 0; r < L->out; r++) {
                for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(&m, 0, r, c, rng_u32(&s) % 10 != 0);
                L->threshold[r] = (int32_t)uniform_int(&s, 100000, 199920);
            }
        }
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);

        /* the same weights, with every padding bit set */
        uint64_t *padded = malloc(m.image_words * sizeof *padded);
        memcpy(padded, m.image, m.image_words * sizeof *padded);
        for (uint32_t l = 0; l < nl; l++) {
            const bnn_layer *L = &m.layers[l];
            if (L->in % 64 == 0) continue;
            for (uint32_t r = 0; r < L->out; r++)
                padded[L->offset + (size_t)r * L->words + L->words - 1] |= ~0ull << (L->in % 64);
        }

        dataset d = {.n = N_IMG, .rows = rows, .cols = cols, .n_classes = widths[nl]};
        d.pixels = malloc((size_t)N_IMG * widths[0]);
        d.labels = calloc(N_IMG, 1);
        int cref[N_IMG];
        for (uint32_t img = 0; img < N_IMG; img++) {
            uint8_t *px = d.pixels + (size_t)img * widths[0];
            for (uint32_t j = 0; j < widths[0]; j++) {
                uint32_t v = rng_u32(&s);
                px[j] = bright ? (img % 2 ? 255 : (uint8_t)(200 + v % 56))
                        : img % 4 == 0 ? (uint8_t)(v % 2 * 255) : (uint8_t)v;
            }
            double ref[8];
            int32_t got[8], got_pad[8];
            cref[img] = ref_forward(&m, m.image, px, ref);
            int c = bnn_classify(&m, m.image, px, ws, got);
            int cpad = bnn_classify(&m, padded, px, ws, got_pad);
            class_wrong += c != cref[img];
            for (uint32_t k = 0; k < m.n_classes; k++) {
                score_wrong += (double)got[k] != ref[k];
                pad_changed += got_pad[k] != got[k];
                ties += k != (uint32_t)cref[img] && ref[k] == ref[cref[img]];
            }
            pad_changed += cpad != c;
            class_seen[cref[img]]++;
            images++;
        }
        if (bright) { /* the saturated images really reach the large sums */
            int64_t a = 0;
            for (uint32_t j = 0; j < widths[0]; j++)
                a += (bnn_weight_get(&m, 0, 0, j) ? 1 : -1) * (int64_t)d.pixels[widths[0] + j];
            big_a += a > 65535 * 2;
        }
        const uint64_t *imgs[2] = {m.image, padded};
        for (int v = 0; v < 2; v++) {
            uint8_t pred[N_IMG];
            bnn_eval_range(&m, imgs[v], &d, 0, N_IMG, ws, pred);
            for (uint32_t img = 0; img < N_IMG; img++) batch_wrong += pred[img] != cref[img];
        }
        free(d.pixels);
        free(d.labels);
        free(padded);
        bnn_workspace_free(ws);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(class_wrong, 0);
    CU_ASSERT_EQUAL(score_wrong, 0);
    CU_ASSERT_EQUAL(pad_changed, 0);
    CU_ASSERT_EQUAL(batch_wrong, 0);
    CU_ASSERT(big_a >= 5);
    CU_ASSERT(ties > 20); /* the lowest-index rule was exercised */
    CU_ASSERT(class_seen[0] < images && class_seen[1] > 0);
}

/* ---- (c) k_tol ------------------------------------------------------------- */

/* Facts section 2, with the folded integer threshold: fires iff a' > tau
 * where a' = a, tau = T for direction +1 and a' = -a, tau = -T for -1. */
static int64_t k_tol(int64_t a, int64_t tau) {
    if (a > tau) return (a - tau + 1) / 2 - 1; /* ceil((a - tau) / 2) - 1, a - tau > 0 */
    int64_t d = tau - a;                        /* floor((tau - a) / 2), d >= 0 */
    return d / 2;
}

typedef struct kt_net {
    bnn_model m;
    bnn_workspace *ws;
    uint64_t *faulty;
    uint32_t n;
} kt_net;

/* Output of neuron 0 of the binary layer of the net 1 -> n -> 3 -> probe 3. */
static int kt_output(kt_net *k) {
    uint8_t px = 0;
    int32_t s[3];
    int z[3];
    bnn_classify(&k->m, k->faulty, &px, k->ws, s);
    if (!probe_read(s, 3, z)) return 99;
    return z[0];
}

static void kt_flip(kt_net *k, uint32_t j) {
    const bnn_layer *L = &k->m.layers[1];
    k->faulty[L->offset + j / 64] ^= 1ull << (j % 64);
}

static void test_k_tol(void) {
    long trials = 0, violated = 0, not_tight = 0, tight_checked = 0, subsets = 0;
    for (uint32_t t = 0; t < 400; t++) {
        rng_stream s = stream(4, t);
        kt_net k;
        apx_error err;
        k.n = t < 200 ? (uint32_t)uniform_int(&s, 1, 12) : (uint32_t)uniform_int(&s, 13, 300);
        uint32_t widths[] = {1, k.n, 3, 3};
        CU_ASSERT_EQUAL_FATAL(bnn_create(&k.m, "k", 1, 1, 3, widths, &err), APX_OK);
        randomize_weights(&k.m, &s);
        make_probe(&k.m);
        int x[300];
        for (uint32_t j = 0; j < k.n; j++) {
            x[j] = rng_u32(&s) & 1 ? 1 : -1;
            k.m.layers[0].threshold[j] = x[j] > 0 ? -256 : 256; /* constant neurons */
        }
        /* neuron 0 under test; neurons 1, 2 constant */
        bnn_layer *L = &k.m.layers[1];
        int64_t a = 0;
        for (uint32_t j = 0; j < k.n; j++) a += (bnn_weight_get(&k.m, 1, 0, j) ? 1 : -1) * x[j];
        int8_t dir = rng_u32(&s) & 1 ? 1 : -1;
        /* thresholds near a so k_tol is small enough to test exhaustively,
         * sometimes exactly at a (tie) */
        int32_t thr = (int32_t)(a + uniform_int(&s, -9, 9));
        L->threshold[0] = thr;
        L->direction[0] = dir;
        L->threshold[1] = L->threshold[2] = (int32_t)k.n + 1;
        k.ws = bnn_workspace_new(&k.m);
        k.faulty = malloc(k.m.image_words * sizeof *k.faulty);
        memcpy(k.faulty, k.m.image, k.m.image_words * sizeof *k.faulty);
        CU_ASSERT_PTR_NOT_NULL_FATAL(k.ws);

        int out0 = kt_output(&k);
        CU_ASSERT_EQUAL(out0, folded_fires(a, thr, dir) ? 1 : -1);
        int64_t ad = dir > 0 ? a : -a, tau = dir > 0 ? thr : -(int64_t)thr;
        int64_t kt = k_tol(ad, tau);
        /* pushers: flipping weight j moves ad by -2 w_j x_j (times dir); those
         * that move ad toward tau */
        uint32_t push[300], np = 0;
        for (uint32_t j = 0; j < k.n; j++) {
            int64_t term = (bnn_weight_get(&k.m, 1, 0, j) ? 1 : -1) * x[j] * dir;
            if ((ad > tau && term > 0) || (ad <= tau && term < 0)) push[np++] = j;
        }

        if (k.n <= 12) {
            /* every subset of size <= k_tol */
            for (uint32_t mask = 1; mask < (1u << k.n); mask++) {
                if (__builtin_popcount(mask) > kt) continue;
                for (uint32_t j = 0; j < k.n; j++)
                    if (mask >> j & 1) kt_flip(&k, j);
                violated += kt_output(&k) != out0;
                subsets++;
                for (uint32_t j = 0; j < k.n; j++)
                    if (mask >> j & 1) kt_flip(&k, j);
            }
        } else {
            /* the worst case: k_tol adversarial flips, in random order, plus
             * random non-pushing flips mixed in should not matter either */
            for (uint32_t i = 0; i < np; i++) { /* shuffle */
                uint32_t r = i + (uint32_t)rng_below(&s, np - i), tmp = push[i];
                push[i] = push[r];
                push[r] = tmp;
            }
            for (int64_t i = 0; i < kt && i < np; i++) kt_flip(&k, push[i]);
            violated += kt_output(&k) != out0;
            for (int64_t i = 0; i < kt && i < np; i++) kt_flip(&k, push[i]);
            subsets++;
        }
        /* tight: k_tol + 1 pushing flips change the output, when there are enough */
        if (kt + 1 <= np) {
            for (int64_t i = 0; i <= kt; i++) kt_flip(&k, push[i]);
            not_tight += kt_output(&k) == out0;
            tight_checked++;
        }
        trials++;
        free(k.faulty);
        bnn_workspace_free(k.ws);
        bnn_free(&k.m);
    }
    CU_ASSERT_EQUAL(violated, 0);
    CU_ASSERT_EQUAL(not_tight, 0);
    CU_ASSERT(tight_checked > trials / 2);
    CU_ASSERT(subsets > 1000);
}

/* ---- (d) bnn_eval_range ---------------------------------------------------- */

static void test_eval_range(void) {
    rng_stream s = stream(5, 0);
    uint32_t widths[] = {70, 130, 70, 5};
    bnn_model m;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "e", 7, 10, 3, widths, &err), APX_OK);
    randomize_weights(&m, &s);
    random_thresholds(&m, &s);
    dataset d = {.n = 45, .rows = 7, .cols = 10, .n_classes = 5};
    d.pixels = malloc((size_t)d.n * 70);
    d.labels = malloc(d.n);
    for (size_t i = 0; i < (size_t)d.n * 70; i++) d.pixels[i] = (uint8_t)rng_u32(&s);
    bnn_workspace *ws = bnn_workspace_new(&m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);

    /* a faulty image: a few hundred random flips anywhere, padding included */
    uint64_t *faulty = malloc(m.image_words * sizeof *faulty);
    memcpy(faulty, m.image, m.image_words * sizeof *faulty);
    for (int f = 0; f < 300; f++) faulty[rng_below(&s, m.image_words)] ^= 1ull << (rng_u32(&s) % 64);

    const uint64_t *images[2] = {m.image, faulty};
    for (int v = 0; v < 2; v++) {
        int expect[45];
        for (uint32_t i = 0; i < d.n; i++) {
            expect[i] = bnn_classify(&m, images[v], dataset_image(&d, i), ws, NULL);
            /* half the labels right, half wrong */
            d.labels[i] = (uint8_t)(i % 2 ? (uint32_t)expect[i] : ((uint32_t)expect[i] + 1 + i % 4) % 5);
        }
        /* ranges that start and end off batch boundaries, and the whole set */
        static const uint32_t ranges[][2] = {{0, 45}, {3, 40}, {7, 8}, {9, 26}, {44, 45}};
        for (size_t q = 0; q < sizeof ranges / sizeof ranges[0]; q++) {
            uint32_t b = ranges[q][0], e = ranges[q][1];
            uint8_t pred[45];
            memset(pred, 0xEE, sizeof pred);
            size_t want = 0;
            for (uint32_t i = b; i < e; i++) want += i % 2;
            CU_ASSERT_EQUAL(bnn_eval_range(&m, images[v], &d, b, e, ws, pred), want);
            int same = 1;
            for (uint32_t i = b; i < e; i++) same &= pred[i - b] == expect[i];
            CU_ASSERT(same);
            if (e - b < 45) CU_ASSERT_EQUAL(pred[e - b], 0xEE); /* nothing past the range */
            CU_ASSERT_EQUAL(bnn_eval_range(&m, images[v], &d, b, e, ws, NULL), want);
        }
        CU_ASSERT_EQUAL(bnn_eval_range(&m, images[v], &d, 5, 5, ws, NULL), 0);
    }
    /* the faulty image gives different predictions somewhere (else the test
     * above could not tell the images apart) */
    int differ = 0;
    for (uint32_t i = 0; i < d.n; i++)
        differ |= bnn_classify(&m, m.image, dataset_image(&d, i), ws, NULL) !=
                  bnn_classify(&m, faulty, dataset_image(&d, i), ws, NULL);
    CU_ASSERT(differ);
    free(faulty);
    free(d.pixels);
    free(d.labels);
    bnn_workspace_free(ws);
    bnn_free(&m);
}

/* A fan-in too wide for the batch tables: eval_range falls back to the
 * single-image path and still matches the reference. */
static void test_eval_range_wide(void) {
    rng_stream s = stream(6, 0);
    uint32_t widths[] = {130 * 130, 5, 3};
    bnn_model m;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "w", 130, 130, 2, widths, &err), APX_OK);
    randomize_weights(&m, &s);
    random_thresholds(&m, &s);
    dataset d = {.n = 11, .rows = 130, .cols = 130, .n_classes = 3};
    d.pixels = malloc((size_t)d.n * widths[0]);
    d.labels = malloc(d.n);
    for (size_t i = 0; i < (size_t)d.n * widths[0]; i++) d.pixels[i] = (uint8_t)rng_u32(&s);
    static double x[130 * 130];
    int ok = 1, want_correct = 0;
    bnn_workspace *ws = bnn_workspace_new(&m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    for (uint32_t i = 0; i < d.n; i++) {
        /* the reference, inline: too wide for ref_forward's buffers */
        const uint8_t *px = dataset_image(&d, i);
        for (uint32_t j = 0; j < widths[0]; j++) x[j] = px[j];
        double z[5], best = -1e300;
        int cls = 0;
        for (uint32_t r = 0; r < 5; r++) {
            double a = 0;
            for (uint32_t j = 0; j < widths[0]; j++) a += (bnn_weight_get(&m, 0, r, j) ? 1 : -1) * x[j];
            int f = m.layers[0].direction[r] > 0 ? a > m.layers[0].threshold[r]
                                                  : a < m.layers[0].threshold[r];
            z[r] = f ? 1 : -1;
        }
        for (uint32_t c = 0; c < 3; c++) {
            double sc = 0;
            for (uint32_t j = 0; j < 5; j++) sc += (bnn_weight_get(&m, 1, c, j) ? 1 : -1) * z[j];
            if (sc > best) best = sc, cls = (int)c;
        }
        d.labels[i] = (uint8_t)(i % 3 ? cls : (cls + 1) % 3);
        want_correct += i % 3 != 0;
        ok &= bnn_classify(&m, m.image, px, ws, NULL) == cls;
    }
    uint8_t pred[11];
    CU_ASSERT_EQUAL(bnn_eval_range(&m, m.image, &d, 0, d.n, ws, pred), (size_t)want_correct);
    for (uint32_t i = 0; i < d.n; i++) ok &= pred[i] == (i % 3 ? d.labels[i] : (d.labels[i] + 2) % 3);
    CU_ASSERT(ok);
    free(d.pixels);
    free(d.labels);
    bnn_workspace_free(ws);
    bnn_free(&m);
}

/* ---- (e) convolutional layers ------------------------------------------------ */

static int kind_is_conv(uint32_t k) {
    return k == BNN_CONV_U8 || k == BNN_CONV_BIN || k == BNN_CONV_B1;
}

/* The naive reference: int64 arithmetic on explicit maps. The input map is
 * the pixels, or for a binarized input (B1 first layer) +1 where the pixel
 * is >= in_threshold and -1 elsewhere. A conv layer pads
 * its input map with a ring of zeros (PyTorch's zero padding of +-1 values
 * or pixels), sums w * x over all 3x3 x C taps, max-pools a (2x2, stride 2,
 * odd row/column dropped), then applies the folded threshold. A dense layer
 * reads the HWC map flattened. Returns the argmax; scores[] gets the class
 * scores. */
static int ref_net(const bnn_model *m, const uint64_t *image, const uint8_t *px,
                   int64_t *scores) {
    uint32_t H = m->in_rows, W = m->in_cols, C = m->in_channels;
    size_t cap = (size_t)H * W * C;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        size_t o = (size_t)m->layers[l].out * (kind_is_conv(m->layers[l].kind) ? H * W : 1);
        if (o > cap) cap = o;
    }
    int64_t *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    int b1 = m->layers[0].kind == BNN_DENSE_B1 || m->layers[0].kind == BNN_CONV_B1;
    for (size_t i = 0; i < (size_t)H * W * C; i++)
        x[i] = b1 ? (px[i] >= m->in_threshold ? 1 : -1) : px[i];
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        const uint64_t *wt = image + L->offset;
        if (kind_is_conv(L->kind)) {
            /* explicit zero-padded copy */
            uint32_t Hp = H + 2, Wp = W + 2;
            int64_t *pad = calloc((size_t)Hp * Wp * C, sizeof *pad);
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t w = 0; w < W; w++)
                    for (uint32_t c = 0; c < C; c++)
                        pad[((size_t)(h + 1) * Wp + w + 1) * C + c] = x[((size_t)h * W + w) * C + c];
            uint32_t P = L->pool, Ho = H / P, Wo = W / P;
            for (uint32_t ph = 0; ph < Ho; ph++)
                for (uint32_t pw = 0; pw < Wo; pw++)
                    for (uint32_t oc = 0; oc < L->out; oc++) {
                        int64_t best = INT64_MIN;
                        for (uint32_t dy = 0; dy < P; dy++)
                            for (uint32_t dx = 0; dx < P; dx++) {
                                uint32_t h = ph * P + dy, w = pw * P + dx;
                                int64_t a = 0;
                                for (uint32_t kh = 0; kh < 3; kh++)
                                    for (uint32_t kw = 0; kw < 3; kw++)
                                        for (uint32_t c = 0; c < C; c++) {
                                            uint32_t j = (kh * 3 + kw) * C + c;
                                            int64_t wv = wt[(size_t)oc * L->words + j / 64] >> (j % 64) & 1 ? 1 : -1;
                                            a += wv * pad[((size_t)(h + kh) * Wp + w + kw) * C + c];
                                        }
                                if (a > best) best = a;
                            }
                        int f = L->direction[oc] > 0 ? best > L->threshold[oc] : best < L->threshold[oc];
                        y[((size_t)ph * Wo + pw) * L->out + oc] = f ? 1 : -1;
                    }
            free(pad);
            H = Ho, W = Wo, C = L->out;
        } else {
            for (uint32_t r = 0; r < L->out; r++) {
                int64_t a = 0;
                for (uint32_t j = 0; j < L->in; j++)
                    a += (wt[(size_t)r * L->words + j / 64] >> (j % 64) & 1 ? 1 : -1) * x[j];
                if (L->kind == BNN_DENSE_OUT)
                    y[r] = a;
                else
                    y[r] = (L->direction[r] > 0 ? a > L->threshold[r] : a < L->threshold[r]) ? 1 : -1;
            }
            H = W = 1, C = L->out;
        }
        int64_t *t = x; x = y; y = t;
    }
    int best = 0;
    for (uint32_t c = 0; c < m->n_classes; c++) {
        scores[c] = x[c];
        if (x[c] > x[best]) best = (int)c;
    }
    free(x);
    free(y);
    return best;
}

/* Thresholds spread around the middle of each layer's reachable range. */
static void conv_thresholds(bnn_model *m, rng_stream *s) {
    for (uint32_t l = 0; l + 1 < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        int u8 = L->kind == BNN_DENSE_U8 || L->kind == BNN_CONV_U8;
        double spread = sqrt((double)L->in) * (u8 ? 150 : 2);
        for (uint32_t r = 0; r < L->out; r++) {
            L->threshold[r] = (int32_t)((rng_unit(s) * 2 - 1) * spread) + (u8 ? 0 : 0);
            L->direction[r] = rng_u32(s) & 1 ? 1 : -1;
        }
    }
}

/* A copy of the image with every padding bit of every row set. */
static uint64_t *padded_copy(const bnn_model *m, const uint64_t *image) {
    uint64_t *p = malloc(m->image_words * sizeof *p);
    memcpy(p, image, m->image_words * sizeof *p);
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        if (L->in % 64 == 0) continue;
        for (uint32_t r = 0; r < L->out; r++)
            p[L->offset + (size_t)r * L->words + L->words - 1] |= ~0ull << (L->in % 64);
    }
    return p;
}

static void test_create_layers(void) {
    bnn_model m;
    apx_error err = {0};
    /* VGG3 of facts bnn.md 5 */
    bnn_layer_spec vgg[] = {{BNN_CONV_U8, 64, 2}, {BNN_CONV_BIN, 64, 2},
                            {BNN_DENSE_BIN, 2048, 1}, {BNN_DENSE_OUT, 10, 1}};
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "vgg3", 28, 28, 1, 4, vgg, &err), APX_OK);
    const bnn_layer *L = m.layers;
    CU_ASSERT_EQUAL(m.in_channels, 1);
    CU_ASSERT(L[0].in == 9 && L[0].in_c == 1 && L[0].in_h == 28 && L[0].in_w == 28 && L[0].pool == 2);
    CU_ASSERT(L[0].words == 1 && L[0].out == 64);
    CU_ASSERT(L[1].in == 576 && L[1].in_c == 64 && L[1].in_h == 14 && L[1].in_w == 14);
    CU_ASSERT(L[1].words == 9 && L[1].pool == 2);
    CU_ASSERT(L[2].in == 3136 && L[2].in_c == 3136 && L[2].in_h == 1 && L[2].in_w == 1);
    CU_ASSERT(L[2].words == 49 && L[2].pool == 1);
    CU_ASSERT(L[3].in == 2048 && L[3].words == 32 && L[3].kind == BNN_DENSE_OUT);
    CU_ASSERT_EQUAL(L[1].offset, 64);
    CU_ASSERT_EQUAL(L[2].offset, 64 + 64 * 9);
    CU_ASSERT_EQUAL(L[3].offset, 64 + 64 * 9 + 2048 * 49);
    CU_ASSERT_EQUAL(m.image_words, 64 + 64 * 9 + 2048 * 49 + 10 * 32);
    CU_ASSERT_EQUAL(m.n_classes, 10);
    CU_ASSERT(L[0].threshold && L[1].direction && L[1].direction[63] == 1 && !L[3].threshold);
    bnn_free(&m);
    /* dense models made by bnn_create carry the same geometry fields */
    uint32_t widths[] = {70, 130, 3};
    CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "d", 7, 10, 2, widths, &err), APX_OK);
    CU_ASSERT(m.in_channels == 1 && m.layers[0].in_c == 70 && m.layers[0].in_h == 1 &&
              m.layers[0].in_w == 1 && m.layers[0].pool == 1 && m.layers[1].in_c == 130);
    bnn_free(&m);

    /* odd maps: 5x7 pooled to 2x3, 3 input channels */
    bnn_layer_spec odd[] = {{BNN_CONV_U8, 70, 2}, {BNN_CONV_BIN, 5, 1}, {BNN_DENSE_OUT, 4, 0}};
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "o", 5, 7, 3, 3, odd, &err), APX_OK);
    CU_ASSERT(m.layers[0].in == 27 && m.layers[1].in_c == 70 && m.layers[1].in_h == 2 &&
              m.layers[1].in_w == 3 && m.layers[1].in == 630 && m.layers[1].words == 10);
    CU_ASSERT(m.layers[2].in == 2 * 3 * 5);
    CU_ASSERT_EQUAL(m.in_threshold, 0); /* 8-bit input: no threshold */
    bnn_free(&m);

    /* binarized inputs chain like the 8-bit kinds and get FINN's threshold */
    bnn_layer_spec odd_b1[] = {{BNN_CONV_B1, 70, 2}, {BNN_CONV_BIN, 5, 1}, {BNN_DENSE_OUT, 4, 0}};
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "o1", 5, 7, 3, 3, odd_b1, &err), APX_OK);
    CU_ASSERT(m.layers[0].kind == BNN_CONV_B1 && m.layers[0].in == 27 && m.layers[0].in_c == 3 &&
              m.layers[0].in_h == 5 && m.layers[0].in_w == 7 && m.layers[0].words == 1);
    CU_ASSERT(m.layers[1].in == 630 && m.layers[2].in == 2 * 3 * 5);
    CU_ASSERT(m.layers[0].threshold && m.layers[0].direction[69] == 1);
    CU_ASSERT_EQUAL(m.in_threshold, BNN_IN_THRESHOLD_FINN);
    bnn_free(&m);
    bnn_layer_spec lfc[] = {{BNN_DENSE_B1, 1024, 1}, {BNN_DENSE_BIN, 1024, 1},
                            {BNN_DENSE_BIN, 1024, 1}, {BNN_DENSE_OUT, 10, 1}};
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "lfc", 28, 28, 1, 4, lfc, &err), APX_OK);
    CU_ASSERT(m.layers[0].in == 784 && m.layers[0].words == 13 && m.in_threshold == 128);
    CU_ASSERT_EQUAL(m.image_words, 1024 * 13 + 2 * 1024 * 16 + 10 * 16);
    bnn_free(&m);

    struct { bnn_layer_spec s[3]; uint32_t n, h, w; const char *msg; } bad[] = {
        {{{BNN_DENSE_U8, 4, 1}, {BNN_CONV_BIN, 4, 1}, {BNN_DENSE_OUT, 2, 1}}, 3, 4, 4, "cannot follow"},
        {{{BNN_CONV_U8, 4, 3}, {BNN_DENSE_OUT, 2, 1}}, 2, 4, 4, "pool 3"},
        {{{BNN_CONV_U8, 4, 2}, {BNN_CONV_BIN, 4, 2}, {BNN_DENSE_OUT, 2, 1}}, 3, 3, 3, "cannot be pooled"},
        {{{BNN_CONV_BIN, 4, 1}, {BNN_DENSE_OUT, 2, 1}}, 2, 4, 4, "kind"},
        {{{BNN_CONV_U8, 4, 1}, {BNN_CONV_BIN, 2, 1}}, 2, 4, 4, "kind"},
        {{{BNN_CONV_U8, 0, 1}, {BNN_DENSE_OUT, 2, 1}}, 2, 4, 4, "width 0"},
        {{{BNN_DENSE_U8, 4, 2}, {BNN_DENSE_OUT, 2, 1}}, 2, 4, 4, "no pooling"},
        /* binarized-input kinds are first layers only */
        {{{BNN_DENSE_U8, 4, 1}, {BNN_DENSE_B1, 4, 1}, {BNN_DENSE_OUT, 2, 1}}, 3, 4, 4, "kind 6"},
        {{{BNN_CONV_B1, 4, 1}, {BNN_CONV_B1, 4, 1}, {BNN_DENSE_OUT, 2, 1}}, 3, 4, 4, "kind 7"},
        {{{BNN_DENSE_B1, 4, 1}, {BNN_DENSE_B1, 2, 1}}, 2, 4, 4, "kind 6"},
        {{{BNN_DENSE_B1, 4, 2}, {BNN_DENSE_OUT, 2, 1}}, 2, 4, 4, "no pooling"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        CU_ASSERT_EQUAL(bnn_create_layers(&m, "b", bad[i].h, bad[i].w, 1, bad[i].n, bad[i].s, &err),
                        APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].msg));
        CU_ASSERT_PTR_NULL(m.layers);
    }
}

/* Conv models on random small shapes (odd sizes, channel counts that are not
 * multiples of 64, pools 1 and 2, a dense layer after the convolutions or
 * not) against ref_net: every kernel the CPU has through bnn_eval_range,
 * bnn_classify, and the same with every padding bit set and with a faulty
 * image. */
static void test_conv_matches_reference(void) {
    static const uint32_t chans[] = {1, 3, 5, 64, 70, 128};
    long images = 0, wrong = 0, score_wrong = 0, pad_changed = 0, faulty_differs = 0;
    long border_hits = 0, pooled = 0;
    for (uint32_t t = 0; t < 24; t++) {
        rng_stream s = stream(7, t);
        uint32_t H = (uint32_t)uniform_int(&s, 1, 9), W = (uint32_t)uniform_int(&s, 1, 9);
        if (t < 3) H = 5, W = 7;
        uint32_t C0 = (uint32_t)uniform_int(&s, 1, 3);
        bnn_layer_spec spec[6];
        uint32_t nl = 0, h = H, w = W;
        uint32_t nconv = (uint32_t)uniform_int(&s, 1, 3);
        for (uint32_t c = 0; c < nconv; c++) {
            uint32_t pool = (h >= 2 && w >= 2 && rng_u32(&s) % 2) ? 2 : 1;
            spec[nl++] = (bnn_layer_spec){c == 0 ? BNN_CONV_U8 : BNN_CONV_BIN,
                                          chans[rng_below(&s, 6)], pool};
            pooled += pool == 2;
            h /= pool;
            w /= pool;
        }
        if (rng_u32(&s) % 2) spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, (uint32_t)uniform_int(&s, 3, 90), 1};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_OUT, (uint32_t)uniform_int(&s, 2, 7), 1};
        bnn_model m;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "c", H, W, C0, nl, spec, &err), APX_OK);
        randomize_weights(&m, &s);
        conv_thresholds(&m, &s);
        border_hits += H <= 2 || W <= 2;

        enum { N = 37 };
        size_t npx = (size_t)H * W * C0;
        dataset d = {.n = N, .rows = H, .cols = W * C0, .n_classes = m.n_classes};
        d.pixels = malloc(N * npx);
        d.labels = malloc(N);
        for (size_t i = 0; i < N * npx; i++)
            d.pixels[i] = i % 5 == 0 ? 255 : (uint8_t)rng_u32(&s);
        uint64_t *padded = padded_copy(&m, m.image);
        uint64_t *faulty = malloc(m.image_words * sizeof *faulty);
        memcpy(faulty, m.image, m.image_words * sizeof *faulty);
        for (int f = 0; f < 40; f++) faulty[rng_below(&s, m.image_words)] ^= 1ull << (rng_u32(&s) % 64);
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        int want[N], want_f[N];
        size_t want_correct = 0;
        for (uint32_t i = 0; i < N; i++) {
            int64_t ref[8], ref_f[8];
            int32_t got[8];
            want[i] = ref_net(&m, m.image, dataset_image(&d, i), ref);
            want_f[i] = ref_net(&m, faulty, dataset_image(&d, i), ref_f);
            faulty_differs += want[i] != want_f[i];
            d.labels[i] = (uint8_t)(i % 3 ? (uint32_t)want[i] : ((uint32_t)want[i] + 1) % m.n_classes);
            want_correct += i % 3 != 0;
            wrong += bnn_classify(&m, m.image, dataset_image(&d, i), ws, got) != want[i];
            for (uint32_t c = 0; c < m.n_classes; c++) score_wrong += got[c] != ref[c];
            pad_changed += bnn_classify(&m, padded, dataset_image(&d, i), ws, got) != want[i];
            for (uint32_t c = 0; c < m.n_classes; c++) pad_changed += got[c] != ref[c];
            wrong += bnn_classify(&m, faulty, dataset_image(&d, i), ws, NULL) != want_f[i];
            images++;
        }
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++) {
            if (!bnn_kernel_supported((enum bnn_kernel)k)) continue;
            CU_ASSERT_EQUAL_FATAL(bnn_set_kernel((enum bnn_kernel)k, &err), APX_OK);
            uint8_t pred[N];
            CU_ASSERT_EQUAL(bnn_eval_range(&m, m.image, &d, 0, N, ws, pred), want_correct);
            for (uint32_t i = 0; i < N; i++) wrong += pred[i] != want[i];
            bnn_eval_range(&m, padded, &d, 0, N, ws, pred);
            for (uint32_t i = 0; i < N; i++) pad_changed += pred[i] != want[i];
            bnn_eval_range(&m, faulty, &d, 3, N, ws, pred);
            for (uint32_t i = 3; i < N; i++) wrong += pred[i - 3] != want_f[i];
        }
        bnn_set_kernel(BNN_KERNEL_AUTO, &err);
        free(d.pixels);
        free(d.labels);
        free(padded);
        free(faulty);
        bnn_workspace_free(ws);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(score_wrong, 0);
    CU_ASSERT_EQUAL(pad_changed, 0);
    CU_ASSERT(faulty_differs > 0);
    CU_ASSERT(border_hits > 0);
    CU_ASSERT(pooled > 5);
}

/* The VGG3 of facts bnn.md 5 runs, and agrees with the reference on a few
 * images, with random weights and thresholds. */
static void test_vgg3_runs(void) {
    rng_stream s = stream(8, 0);
    bnn_layer_spec vgg[] = {{BNN_CONV_U8, 64, 2}, {BNN_CONV_BIN, 64, 2},
                            {BNN_DENSE_BIN, 2048, 1}, {BNN_DENSE_OUT, 10, 1}};
    bnn_model m;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "vgg3", 28, 28, 1, 4, vgg, &err), APX_OK);
    randomize_weights(&m, &s);
    conv_thresholds(&m, &s);
    enum { N = 3 };
    dataset d = {.n = N, .rows = 28, .cols = 28, .n_classes = 10};
    d.pixels = malloc(N * 784);
    d.labels = calloc(N, 1);
    for (size_t i = 0; i < N * 784; i++) d.pixels[i] = (uint8_t)rng_u32(&s);
    bnn_workspace *ws = bnn_workspace_new(&m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    uint8_t pred[N];
    bnn_eval_range(&m, m.image, &d, 0, N, ws, pred);
    for (uint32_t i = 0; i < N; i++) {
        int64_t ref[10];
        int32_t got[10];
        int want = ref_net(&m, m.image, dataset_image(&d, i), ref);
        CU_ASSERT_EQUAL(pred[i], want);
        CU_ASSERT_EQUAL(bnn_classify(&m, m.image, dataset_image(&d, i), ws, got), want);
        int same = 1;
        for (int c = 0; c < 10; c++) same &= got[c] == ref[c];
        CU_ASSERT(same);
    }
    free(d.pixels);
    free(d.labels);
    bnn_workspace_free(ws);
    bnn_free(&m);
}

/* ---- (f) binarized inputs ------------------------------------------------- */

/* One thread's share of an evaluation: samples [begin, end) with its own
 * workspace. */
typedef struct eval_slice {
    const bnn_model *m;
    const uint64_t *image;
    const dataset *d;
    uint32_t begin, end;
    uint8_t *pred; /* indexed from 0 = sample 0 */
    size_t correct;
    int ok;
} eval_slice;

static void *eval_slice_run(void *arg) {
    eval_slice *e = arg;
    bnn_workspace *ws = bnn_workspace_new(e->m);
    if (!ws) return NULL;
    e->correct = bnn_eval_range(e->m, e->image, e->d, e->begin, e->end, ws, e->pred + e->begin);
    e->ok = 1;
    bnn_workspace_free(ws);
    return NULL;
}

/* Evaluates all of d on `threads` threads (contiguous ranges, one workspace
 * each, run at the same time); returns the correct count, -1 on failure. */
static long eval_threads(const bnn_model *m, const uint64_t *image, const dataset *d,
                         int threads, uint8_t *pred) {
    eval_slice sl[3];
    pthread_t tid[3];
    long correct = 0;
    for (int t = 0; t < threads; t++) {
        sl[t] = (eval_slice){m, image, d, d->n * (uint32_t)t / (uint32_t)threads,
                             d->n * (uint32_t)(t + 1) / (uint32_t)threads, pred, 0, 0};
        if (pthread_create(&tid[t], NULL, eval_slice_run, &sl[t])) return -1;
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (!sl[t].ok) return -1;
        correct += (long)sl[t].correct;
    }
    return correct;
}

/* First layers on binarized pixels (BNN_DENSE_B1, BNN_CONV_B1) on random
 * shapes: fan-ins that are not multiples of 64 (and one of 784 = 28 x 28),
 * 1 to 3 channels, thresholds 1, 255, 128 and random, a quarter of the
 * pixels exactly at the threshold and some just below it. Every image
 * against ref_net (a plain +-1 dot product per neuron, the threshold test
 * p >= t, folded thresholds with direction): bnn_classify's scores exactly,
 * and bnn_eval_range's predictions with every kernel the CPU has on 1, 2
 * and 3 threads, for the clean image, one with every padding bit set and a
 * faulty one. The reference with threshold t + 1 must disagree often, so a
 * kernel that tested p > t would fail. */
static void test_b1_matches_reference(void) {
    static const uint32_t widths[] = {1, 5, 63, 64, 65, 70, 130};
    static const uint32_t chans[] = {1, 3, 64, 70};
    long images = 0, wrong = 0, score_wrong = 0, pad_wrong = 0, fault_wrong = 0;
    long count_wrong = 0, evals = 0, off_by_one = 0, faulty_differs = 0;
    for (uint32_t t = 0; t < 24; t++) {
        rng_stream s = stream(9, t);
        int conv = t % 2;
        uint32_t H = (uint32_t)uniform_int(&s, 1, conv ? 9 : 30);
        uint32_t W = (uint32_t)uniform_int(&s, 1, conv ? 9 : 30);
        uint32_t C0 = (uint32_t)uniform_int(&s, 1, 3);
        if (t == 0) H = W = 28, C0 = 1;
        bnn_layer_spec spec[6];
        uint32_t nl = 0, h = H, w = W;
        if (conv) {
            uint32_t nconv = (uint32_t)uniform_int(&s, 1, 2);
            for (uint32_t c = 0; c < nconv; c++) {
                uint32_t pool = (h >= 2 && w >= 2 && rng_u32(&s) % 2) ? 2 : 1;
                spec[nl++] = (bnn_layer_spec){c == 0 ? BNN_CONV_B1 : BNN_CONV_BIN,
                                              chans[rng_below(&s, 4)], pool};
                h /= pool;
                w /= pool;
            }
        } else {
            spec[nl++] = (bnn_layer_spec){BNN_DENSE_B1, widths[rng_below(&s, 7)], 1};
        }
        uint32_t hidden = (uint32_t)uniform_int(&s, 0, 2);
        for (uint32_t k = 0; k < hidden; k++)
            spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, widths[rng_below(&s, 7)], 1};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_OUT, (uint32_t)uniform_int(&s, 2, 8), 1};
        bnn_model m;
        apx_error err;
        CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&m, "b1", H, W, C0, nl, spec, &err), APX_OK);
        CU_ASSERT_EQUAL(m.in_threshold, BNN_IN_THRESHOLD_FINN);
        static const uint32_t fixed_t[] = {1, 255, 128};
        m.in_threshold = t < 3 ? fixed_t[t] : (uint32_t)uniform_int(&s, 1, 255);
        randomize_weights(&m, &s);
        conv_thresholds(&m, &s);

        enum { N = 41 };
        size_t npx = (size_t)H * W * C0;
        dataset d = {.n = N, .rows = H, .cols = W * C0, .n_classes = m.n_classes};
        d.pixels = malloc(N * npx);
        d.labels = malloc(N);
        uint32_t thr = m.in_threshold;
        for (size_t i = 0; i < N * npx; i++) {
            uint32_t r = rng_u32(&s) % 8;
            d.pixels[i] = r < 2 ? (uint8_t)thr : r == 2 ? (uint8_t)(thr - 1) : (uint8_t)rng_u32(&s);
        }
        uint64_t *padded = padded_copy(&m, m.image);
        uint64_t *faulty = malloc(m.image_words * sizeof *faulty);
        memcpy(faulty, m.image, m.image_words * sizeof *faulty);
        for (int f = 0; f < 40; f++) faulty[rng_below(&s, m.image_words)] ^= 1ull << (rng_u32(&s) % 64);
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        int want[N], want_f[N];
        long want_correct = 0;
        for (uint32_t i = 0; i < N; i++) {
            int64_t ref[8], ref_f[8], ref_up[8];
            int32_t got[8];
            const uint8_t *px = dataset_image(&d, i);
            want[i] = ref_net(&m, m.image, px, ref);
            want_f[i] = ref_net(&m, faulty, px, ref_f);
            faulty_differs += want[i] != want_f[i];
            if (thr < 255) {
                m.in_threshold = thr + 1;
                ref_net(&m, m.image, px, ref_up);
                m.in_threshold = thr;
                int differ = 0;
                for (uint32_t c = 0; c < m.n_classes; c++) differ |= ref_up[c] != ref[c];
                off_by_one += differ;
            }
            d.labels[i] = (uint8_t)(i % 3 ? (uint32_t)want[i] : ((uint32_t)want[i] + 1) % m.n_classes);
            want_correct += i % 3 != 0;
            wrong += bnn_classify(&m, m.image, px, ws, got) != want[i];
            for (uint32_t c = 0; c < m.n_classes; c++) score_wrong += got[c] != ref[c];
            pad_wrong += bnn_classify(&m, padded, px, ws, got) != want[i];
            for (uint32_t c = 0; c < m.n_classes; c++) pad_wrong += got[c] != ref[c];
            fault_wrong += bnn_classify(&m, faulty, px, ws, got) != want_f[i];
            for (uint32_t c = 0; c < m.n_classes; c++) fault_wrong += got[c] != ref_f[c];
            images++;
        }
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++) {
            if (!bnn_kernel_supported((enum bnn_kernel)k)) continue;
            CU_ASSERT_EQUAL_FATAL(bnn_set_kernel((enum bnn_kernel)k, &err), APX_OK);
            for (int threads = 1; threads <= 3; threads++) {
                uint8_t pred[N];
                count_wrong += eval_threads(&m, m.image, &d, threads, pred) != want_correct;
                for (uint32_t i = 0; i < N; i++) wrong += pred[i] != want[i];
                eval_threads(&m, padded, &d, threads, pred);
                for (uint32_t i = 0; i < N; i++) pad_wrong += pred[i] != want[i];
                eval_threads(&m, faulty, &d, threads, pred);
                for (uint32_t i = 0; i < N; i++) fault_wrong += pred[i] != want_f[i];
                evals++;
            }
        }
        bnn_set_kernel(BNN_KERNEL_AUTO, &err);
        free(d.pixels);
        free(d.labels);
        free(padded);
        free(faulty);
        bnn_workspace_free(ws);
        bnn_free(&m);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(score_wrong, 0);
    CU_ASSERT_EQUAL(pad_wrong, 0);
    CU_ASSERT_EQUAL(fault_wrong, 0);
    CU_ASSERT_EQUAL(count_wrong, 0);
    CU_ASSERT(evals >= 24 * 3);
    CU_ASSERT(faulty_differs > 0);
    CU_ASSERT(off_by_one > images / 4);
}

void add_bnn_suite(void) {
    TEST_SUITE("bnn",
               {"create: layout, defaults, bad shapes", test_create_layout},
               {"fold: exhaustive over a, incl. exact ties", test_fold_exhaustive},
               {"fold: u8 ties at tau = a0 exactly", test_fold_u8_ties},
               {"fold: gamma 0, clamping, NaN", test_fold_edges},
               {"fold: through the kernels, u8 and binary layers", test_fold_through_kernels},
               {"inference equals float reference; padding ignored", test_matches_reference},
               {"k_tol flips never change a neuron; k_tol+1 can", test_k_tol},
               {"eval_range agrees with classify", test_eval_range},
               {"eval_range with a fan-in too wide for tables", test_eval_range_wide},
               {"create_layers: conv shapes, chaining, bad specs", test_create_layers},
               {"conv: random shapes equal the zero-padded reference", test_conv_matches_reference},
               {"conv: VGG3 runs and equals the reference", test_vgg3_runs},
               {"binarized input: random shapes equal the +-1 reference, kernels, threads",
                test_b1_matches_reference});
}
