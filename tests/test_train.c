/* test_train.c - the "train" suite: float backward pass, training, export,
 * recipes.
 *
 * Small and fast: a 6-5-4-3 network and a three-conv network on 9x9 images
 * for the gradient checks, a 64-32-32-4 network on a synthetic 8x8 four-class
 * data set and a two-conv CNN on synthetic 10x10 "strokes" for everything that
 * trains. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/nested.h"
#include "../sim/rng.h"
#include "../workloads/train_internal.h"
#include "tests.h"

/* OpenBLAS's own controls (cblas.h is not included here). */
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

/* ---- synthetic data ------------------------------------------------------ */

/* Four classes of 8x8 images: a random prototype per class plus uniform
 * pixel noise of +-160, clipped to 0..255. A trained 64-32-32-4 BNN gets
 * ~100 %; training only BN and Scale on frozen random weights stays near
 * 75 % after the same 6 epochs, so > 90 % needs the weight updates. */
#define SYN_SIDE 8
#define SYN_CLASSES 4

static void make_synthetic(uint64_t seed, uint32_t n, dataset *d) {
    uint32_t px = SYN_SIDE * SYN_SIDE;
    d->n = n;
    d->rows = d->cols = SYN_SIDE;
    d->n_classes = SYN_CLASSES;
    d->pixels = malloc((size_t)n * px);
    d->labels = malloc(n);
    CU_ASSERT_FATAL(d->pixels && d->labels);
    uint8_t proto[SYN_CLASSES][SYN_SIDE * SYN_SIDE];
    rng_stream s;
    rng_stream_at(&s, rng_key_make(12345, 1, 0), 0, 0);  /* same prototypes for every split */
    for (uint32_t c = 0; c < SYN_CLASSES; c++)
        for (uint32_t j = 0; j < px; j++) proto[c][j] = (uint8_t)rng_below(&s, 256);
    rng_stream_at(&s, rng_key_make(seed, 2, 0), 0, 0);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)rng_below(&s, SYN_CLASSES);
        d->labels[i] = (uint8_t)c;
        for (uint32_t j = 0; j < px; j++) {
            int v = proto[c][j] + (int)rng_below(&s, 321) - 160;
            d->pixels[(size_t)i * px + j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static void tiny_recipe(train_recipe *r, uint64_t seed) {
    train_recipe_defaults(r);
    snprintf(r->name, sizeof r->name, "tiny");
    static const uint32_t w[] = {SYN_SIDE * SYN_SIDE, 32, 32, SYN_CLASSES};
    r->n_widths = 4;
    memcpy(r->widths, w, sizeof w);
    r->seed = seed;
    r->epochs = 6;
    r->batch = 50;
    r->lr = 5e-3;
    r->lr_step = 4;
    r->lr_gamma = 0.5;
}

/* A recipe with the given layer list (conv/pool NULL: dense). */
static void set_layers(train_recipe *r, const uint32_t *widths, uint32_t n_widths,
                       const uint8_t *conv, const uint8_t *pool) {
    r->n_widths = n_widths;
    memcpy(r->widths, widths, n_widths * sizeof *widths);
    memset(r->conv, 0, sizeof r->conv);
    memset(r->pool, 0, sizeof r->pool);
    if (conv) memcpy(r->conv, conv, n_widths - 1);
    if (pool) memcpy(r->pool, pool, n_widths - 1);
}

/* Strokes: 10x10 images of four classes, a 3-pixel stroke (horizontal,
 * vertical, diagonal, anti-diagonal) of bright pixels (170..255) at a random
 * place on a noisy background (0..110). The class is the stroke's shape, not
 * where it is, which is what a conv + max-pool layer picks up. */
#define STROKE_SIDE 10
static void make_strokes(uint64_t seed, uint32_t n, dataset *d) {
    const uint32_t px = STROKE_SIDE * STROKE_SIDE;
    static const int dr[4][3] = {{0, 0, 0}, {-1, 0, 1}, {-1, 0, 1}, {-1, 0, 1}};
    static const int dc[4][3] = {{-1, 0, 1}, {0, 0, 0}, {-1, 0, 1}, {1, 0, -1}};
    d->n = n;
    d->rows = d->cols = STROKE_SIDE;
    d->n_classes = 4;
    d->pixels = malloc((size_t)n * px);
    d->labels = malloc(n);
    CU_ASSERT_FATAL(d->pixels && d->labels);
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 3, 0), 0, 0);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *img = d->pixels + (size_t)i * px;
        uint32_t c = (uint32_t)rng_below(&s, 4);
        d->labels[i] = (uint8_t)c;
        for (uint32_t j = 0; j < px; j++) img[j] = (uint8_t)rng_below(&s, 111);
        int r0 = 1 + (int)rng_below(&s, STROKE_SIDE - 2);
        int c0 = 1 + (int)rng_below(&s, STROKE_SIDE - 2);
        for (int k = 0; k < 3; k++)
            img[(r0 + dr[c][k]) * STROKE_SIDE + c0 + dc[c][k]] = (uint8_t)(170 + rng_below(&s, 86));
    }
}

/* 10x10 -> conv 32, pool 2 (5x5x32) -> conv 32, pool 2 (2x2x32: the odd last
 * row and column dropped) -> dense 16 -> 4 classes, BN statistics
 * re-estimated on 1000 samples before each export. (With 8 or 16 channels
 * the binary filters are too few: ~65 % and ~85 % after 6 epochs.) */
static void cnn_recipe(train_recipe *r, uint64_t seed) {
    static const uint32_t w[] = {STROKE_SIDE * STROKE_SIDE, 32, 32, 16, 4};
    static const uint8_t conv[] = {1, 1, 0, 0}, pool[] = {2, 2, 0, 0};
    train_recipe_defaults(r);
    snprintf(r->name, sizeof r->name, "tiny-cnn");
    set_layers(r, w, 5, conv, pool);
    r->seed = seed;
    r->epochs = 6;
    r->batch = 50;
    r->lr = 1e-2;
    r->lr_step = 3;
    r->lr_gamma = 0.3;
    r->bn_recalibrate = 1000;
}

typedef struct progress_log {
    uint32_t calls;
    train_epoch_stats last;
    int epochs_in_order, lr_ok, rates_ok;
    double lr0, gamma;
    uint32_t step;
} progress_log;

static void record_progress(void *ctx, const train_epoch_stats *s) {
    progress_log *p = ctx;
    p->calls++;
    if (s->epoch != p->calls) p->epochs_in_order = 0;
    double want = p->lr0 * pow(p->gamma, (double)((s->epoch - 1) / p->step));
    if (fabs(s->lr - want) > 1e-12 * want) p->lr_ok = 0;
    if (!(s->samples_per_s > 0) || !(s->seconds > 0) || !(s->loss > 0) ||
        s->train_accuracy < 0 || s->train_accuracy > 1)
        p->rates_ok = 0;
    p->last = *s;
}

/* ---- (1) gradient checks ------------------------------------------------- */

typedef struct param_ref {
    float *value;
    float grad;
    const char *what;
} param_ref;

static double loss_now(train_net *net, uint32_t B) {
    train_net_binarize(net);  /* float_weights: wb = w */
    train_net_forward(net, B, 1);
    return train_net_loss(net, B, NULL);
}

/* Random inputs, labels, weights in [-1, 1], Scale 0.8, and BN parameters
 * gamma in [gmin, 2 gmin], |beta| <= 0.1, except channel / neuron 0 of every
 * hidden layer, held saturated (beta = 2). */
static void grad_setup(train_net *net, uint32_t B, double gmin) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(99, 0, 0), 0, 0);
    for (uint32_t i = 0; i < B * net->in_size; i++) net->input[i] = (float)rng_unit(&s);
    for (uint32_t i = 0; i < B; i++) net->labels[i] = (uint8_t)(i % net->n_classes);
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in * L->out; i++) L->w[i] = (float)(2 * rng_unit(&s) - 1);
        if (!L->hidden) continue;
        for (uint32_t j = 0; j < L->out; j++) {
            L->gamma[j] = (float)(gmin * (1 + rng_unit(&s)));
            L->beta[j] = (float)(0.2 * rng_unit(&s) - 0.1);
        }
        L->beta[0] = 2.0f;
    }
    net->scale = 0.8f;
}

/* Sets each hidden channel's gamma to 0.85 / max |xhat| over the batch (layer
 * by layer: a layer's xhat depends on the gammas before it, not on its own),
 * so that |y| <= 0.85 + 0.1 stays clear of the Hardtanh kinks while the
 * gradients are as large as that allows (small gradients drown in the float
 * rounding of the finite differences). Channel 0 stays saturated (beta = 2). */
static void widen_gamma(train_net *net, uint32_t B) {
    for (uint32_t l = 0; l + 1 < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        train_net_binarize(net);
        train_net_forward(net, B, 1);
        size_t rows = (size_t)B * L->out_h * L->out_w;
        for (uint32_t j = 0; j < L->out; j++) {
            float m = 0;
            for (size_t i = 0; i < rows; i++) m = fmaxf(m, fabsf(L->xhat[i * L->out + j]));
            L->gamma[j] = 0.85f / m;
        }
    }
}

/* Every parameter with its analytic gradient from the last backward pass. */
static uint32_t grad_refs(train_net *net, param_ref *refs, uint32_t cap) {
    uint32_t n = 0;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in * L->out && n < cap; i++)
            refs[n++] = (param_ref){&L->w[i], L->gw[i], L->conv ? "conv weight" : "weight"};
        if (L->hidden)
            for (uint32_t j = 0; j < L->out && n + 2 <= cap; j++) {
                refs[n++] = (param_ref){&L->gamma[j], L->ggamma[j], "gamma"};
                refs[n++] = (param_ref){&L->beta[j], L->gbeta[j], "beta"};
            }
    }
    if (n < cap) refs[n++] = (param_ref){&net->scale, net->gscale, "scale"};
    return n;
}

/* Every BN output of the hidden layers is either saturated (channel 0,
 * |y| > 1.05) or clear of the Hardtanh kinks (|y| < 0.95). */
static int kinks_clear(const train_net *net, uint32_t B) {
    for (uint32_t l = 0; l + 1 < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        size_t rows = (size_t)B * L->out_h * L->out_w;
        for (size_t i = 0; i < rows; i++)
            for (uint32_t j = 0; j < L->out; j++) {
                float y = fabsf(L->y[i * L->out + j]);
                if (j == 0 ? !(y > 1.05f) : !(y < 0.95f)) return 0;
            }
    }
    return 1;
}

/* The max-pool winners of every pooled layer, concatenated: a fingerprint of
 * which piece of the piecewise-linear max the forward pass is on. */
static size_t pool_state(const train_net *net, uint32_t B, uint8_t *out) {
    size_t n = 0;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        if (!L->conv || L->pool < 2) continue;
        size_t k = (size_t)B * L->out_h * L->out_w * L->out;
        if (out) memcpy(out + n, L->win, k);
        n += k;
    }
    return n;
}

/* Central differences against the backward pass for every parameter. A
 * parameter whose +-h step changes a max-pool winner is skipped (the loss has
 * a kink there); *skipped counts them. Returns the mismatches. */
static uint32_t grad_compare(train_net *net, uint32_t B, param_ref *refs, uint32_t n,
                             uint32_t *nonzero, uint32_t *skipped) {
    size_t ns = pool_state(net, B, NULL);
    uint8_t *base = calloc(ns + 1, 1), *now = calloc(ns + 1, 1);
    CU_ASSERT_FATAL(base && now);
    loss_now(net, B);
    pool_state(net, B, base);
    const double h = 1e-3;
    uint32_t bad = 0;
    *nonzero = *skipped = 0;
    for (uint32_t k = 0; k < n; k++) {
        float keep = *refs[k].value;
        *refs[k].value = (float)(keep + h);
        double up = loss_now(net, B);
        pool_state(net, B, now);
        int kink = memcmp(base, now, ns) != 0;
        *refs[k].value = (float)(keep - h);
        double down = loss_now(net, B);
        pool_state(net, B, now);
        kink |= memcmp(base, now, ns) != 0;
        *refs[k].value = keep;
        if (kink) {
            (*skipped)++;
            continue;
        }
        double num = (up - down) / (2 * h), ana = refs[k].grad;
        if (fabs(ana) > 1e-3) (*nonzero)++;
        if (fabs(num - ana) > 5e-4 + 1e-2 * fabs(ana)) {
            if (bad++ < 5)
                fprintf(stderr, "\n  %s %u: numeric %.6g analytic %.6g", refs[k].what, k, num, ana);
        }
    }
    free(base);
    free(now);
    return bad;
}

/* With float weights and Hardtanh activations the network is differentiable
 * away from |y| = 1, so central differences must match the backward pass:
 * weights of every layer (dW = dA^T X through the BN backward), BN gamma and
 * beta, and Scale. Neuron 0 of each hidden layer is held saturated (beta = 2)
 * so that the STE mask must zero its gradients; every other neuron stays in
 * |y| < 1 (|gamma * xhat| <= 0.3 * sqrt(B - 1) < 0.85, |beta| <= 0.1), so no
 * finite difference straddles a kink. */
static void test_gradient_check(void) {
    static const uint32_t widths[] = {6, 5, 4, 3};
    const uint32_t B = 8;
    apx_error err = {0};
    train_recipe r;
    train_recipe_defaults(&r);
    set_layers(&r, widths, 4, NULL, NULL);
    r.weight_clip = 0.0;
    train_net *net = train_net_new(&r, 2, 3, B, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    net->float_weights = net->float_activations = 1;
    grad_setup(net, B, 0.2);

    double base = loss_now(net, B);
    CU_ASSERT(isfinite(base) && base > 0);
    CU_ASSERT(kinks_clear(net, B));
    train_net_backward(net, B);

    param_ref refs[128];
    uint32_t n = grad_refs(net, refs, 128);
    CU_ASSERT_EQUAL(n, 6 * 5 + 5 * 4 + 4 * 3 + 2 * (5 + 4) + 1);

    /* Saturated neurons: no gradient reaches their BN parameters. */
    CU_ASSERT_EQUAL(net->layer[0].gbeta[0], 0.0f);
    CU_ASSERT_EQUAL(net->layer[1].ggamma[0], 0.0f);

    uint32_t nonzero, skipped;
    CU_ASSERT_EQUAL(grad_compare(net, B, refs, n, &nonzero, &skipped), 0);
    CU_ASSERT_EQUAL(skipped, 0);     /* no max-pool here */
    CU_ASSERT(nonzero > n / 2);      /* the check compares real gradients, not zeros */
    train_net_free(net);
}

/* The same for convolutions: 9x9 images -> conv 3, pool 2 (4x4x3, the odd
 * last row and column dropped) -> conv 4, no pool (4x4x4) -> conv 2, pool 2
 * (2x2x2) -> dense 5 -> dense 3. This checks im2col with zero padding, the
 * conv GEMMs, col2im (the gradient into a conv layer's input, through two
 * conv layers), the max-pool backward (gradient to the window's maximum),
 * BatchNorm2d over N, H, W and the HWC flatten into the dense layer. BN rows
 * are B x positions (64, 64, 16, 4), so gamma <= 0.1 keeps
 * |gamma * xhat| <= 0.1 * sqrt(63) < 0.8. Parameters whose step moves a
 * max-pool winner are skipped; with random float weights they are few. */
static void test_conv_gradient_check(void) {
    static const uint32_t widths[] = {81, 3, 4, 2, 5, 3};
    static const uint8_t conv[] = {1, 1, 1, 0, 0}, pool[] = {2, 1, 2, 0, 0};
    const uint32_t B = 4;
    apx_error err = {0};
    train_recipe r;
    train_recipe_defaults(&r);
    set_layers(&r, widths, 6, conv, pool);
    r.weight_clip = 0.0;
    train_net *net = train_net_new(&r, 9, 9, B, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    CU_ASSERT(net->layer[0].conv && net->layer[0].in == 9 && net->layer[0].out_h == 4);
    CU_ASSERT(net->layer[1].in == 27 && net->layer[1].out_h == 4 && net->layer[1].pool == 1);
    CU_ASSERT(net->layer[2].in == 36 && net->layer[2].out_w == 2);
    CU_ASSERT(!net->layer[3].conv && net->layer[3].in == 8);
    net->float_weights = net->float_activations = 1;
    grad_setup(net, B, 0.05);
    widen_gamma(net, B);

    double base = loss_now(net, B);
    CU_ASSERT(isfinite(base) && base > 0);
    CU_ASSERT(kinks_clear(net, B));
    train_net_backward(net, B);

    param_ref refs[512];
    uint32_t n = grad_refs(net, refs, 512);
    CU_ASSERT_EQUAL(n, 9 * 3 + 27 * 4 + 36 * 2 + 8 * 5 + 5 * 3 + 2 * (3 + 4 + 2 + 5) + 1);
    for (uint32_t l = 0; l < 4; l++) {
        CU_ASSERT_EQUAL(net->layer[l].gbeta[0], 0.0f);
        CU_ASSERT_EQUAL(net->layer[l].ggamma[0], 0.0f);
    }

    uint32_t nonzero, skipped;
    CU_ASSERT_EQUAL(grad_compare(net, B, refs, n, &nonzero, &skipped), 0);
    CU_ASSERT(skipped < n / 10);
    CU_ASSERT(nonzero > n / 2);
    /* Every conv layer's weights get real gradients, the first one included
     * (it sees the loss only through two col2im steps and two max-pools). */
    for (uint32_t l = 0; l < 3; l++) {
        const train_layer *L = &net->layer[l];
        double g = 0;
        for (uint32_t i = 0; i < L->in * L->out; i++) g += fabs(L->gw[i]);
        CU_ASSERT(g > 1e-3);
    }
    train_net_free(net);
}

/* ---- (2) training reaches high accuracy as a packed model ---------------- */

static void test_tiny_training(void) {
    dataset tr, te;
    make_synthetic(1, 2000, &tr);
    make_synthetic(2, 500, &te);
    train_recipe r;
    tiny_recipe(&r, 3);
    progress_log log = {.epochs_in_order = 1, .lr_ok = 1, .rates_ok = 1,
                        .lr0 = r.lr, .gamma = r.lr_gamma, .step = r.lr_step};
    bnn_model m;
    apx_error err = {0};
    int rc = train_run(&r, &tr, &te, record_progress, &log, NULL, &m, &err);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(log.calls, r.epochs);
    CU_ASSERT(log.epochs_in_order && log.lr_ok && log.rates_ok);
    CU_ASSERT(log.last.test_accuracy > 0.9);
    CU_ASSERT(log.last.train_accuracy > 0.9);
    /* The reported accuracy is that of the returned packed model. */
    bnn_workspace *ws = bnn_workspace_new(&m);
    size_t correct = bnn_eval_range(&m, m.image, &te, 0, te.n, ws, NULL);
    CU_ASSERT_DOUBLE_EQUAL((double)correct / te.n, log.last.test_accuracy, 1e-12);
    CU_ASSERT(m.layers[2].scale > 0);
    CU_ASSERT_STRING_EQUAL(m.name, "tiny");
    bnn_workspace_free(ws);
    bnn_free(&m);
    dataset_free(&tr);
    dataset_free(&te);
}

/* ---- (3) exported model == float eval-mode network ----------------------- */

/* Compares the packed model m with net's eval-mode forward pass on every
 * sample of te: the packed integer scores must equal the float output
 * layer's pre-activations (exact integers, negated if Scale < 0) and the
 * predictions must agree, unless some hidden BN output of that sample (at any
 * position of a conv layer, after pooling) sits within rounding distance of
 * 0. Adds the agreeing predictions to *agree and returns the unexplained
 * differences. Also checks that bnn_eval_range (which reports the training
 * accuracy) predicts what bnn_classify does. */
static uint32_t compare_export(train_net *net, const bnn_model *m, const dataset *te,
                               uint32_t *agree) {
    bnn_workspace *ws = bnn_workspace_new(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    uint8_t *batch_pred = malloc(te->n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(batch_pred);
    bnn_eval_range(m, m->image, te, 0, te->n, ws, batch_pred);
    uint32_t range_differs = 0;
    const train_layer *out = &net->layer[net->n_layers - 1];
    uint32_t unexplained = 0, idx[64];
    int32_t scores[16];
    CU_ASSERT_FATAL(net->n_classes <= 16 && net->max_batch <= 64);
    for (uint32_t start = 0; start < te->n; start += net->max_batch) {
        uint32_t B = te->n - start < net->max_batch ? te->n - start : net->max_batch;
        for (uint32_t i = 0; i < B; i++) idx[i] = start + i;
        train_net_load(net, te, idx, B);
        train_net_forward(net, B, 0);
        for (uint32_t i = 0; i < B; i++) {
            int cls = bnn_classify(m, m->image, dataset_image(te, start + i), ws, scores);
            if (batch_pred[start + i] != cls) range_differs++;
            const float *z = net->logits + (size_t)i * net->n_classes;
            const float *a = out->a + (size_t)i * net->n_classes;
            uint32_t best = 0;
            int same_scores = 1;
            for (uint32_t c = 0; c < net->n_classes; c++) {
                if (z[c] > z[best]) best = c;
                if ((float)scores[c] != (net->scale < 0 ? -a[c] : a[c])) same_scores = 0;
            }
            if (best == (uint32_t)cls) (*agree)++;
            if (same_scores && best == (uint32_t)cls) continue;
            float closest = INFINITY;
            for (uint32_t l = 0; l + 1 < net->n_layers; l++) {
                const train_layer *L = &net->layer[l];
                size_t size = (size_t)L->out_h * L->out_w * L->out;
                for (size_t j = 0; j < size; j++)
                    closest = fminf(closest, fabsf(L->y[i * size + j]));
            }
            if (!(closest < 1e-4f)) unexplained++;
        }
    }
    CU_ASSERT_EQUAL(range_differs, 0);
    free(batch_pred);
    bnn_workspace_free(ws);
    return unexplained;
}

static void test_export_matches_float(void) {
    dataset tr, te;
    make_synthetic(4, 1000, &tr);
    make_synthetic(5, 600, &te);
    train_recipe r;
    tiny_recipe(&r, 11);
    r.epochs = 3;
    bnn_model m;
    train_net *net = NULL;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(train_fit(&r, &tr, &te, NULL, NULL, NULL, &m, &net, &err), APX_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);

    /* Second round: the same function with the Scale's sign flipped (Scale
     * and the output weights negated). Whichever round has Scale < 0, export
     * must negate the output weights so that packed scores = a * sign(Scale). */
    for (int negative = 0; negative < 2; negative++) {
        if (negative) {
            net->scale = -net->scale;
            for (uint32_t i = 0; i < net->layer[2].in * net->layer[2].out; i++)
                net->layer[2].w[i] = -net->layer[2].w[i];
            train_net_binarize(net);
            train_net_export(net, &m);
            CU_ASSERT(m.layers[2].scale > 0);
        }
        uint32_t agree = 0;
        CU_ASSERT_EQUAL(compare_export(net, &m, &te, &agree), 0);
        CU_ASSERT(agree >= 0.995 * te.n);
    }
    train_net_free(net);
    bnn_free(&m);
    dataset_free(&tr);
    dataset_free(&te);
}

/* ---- (3b) convolutional network: learns, exports, recalibrates ----------- */

/* A tiny CNN trains to > 90 % on strokes as a packed model (the reported
 * accuracy is the returned model's), and the packed conv model (conv layers
 * with pooling before the folded BN, HWC flatten, the odd row and column of
 * a 5x5 map dropped) computes exactly the float network's eval-mode scores. A
 * dense 100-16-4 network on the same data, for comparison, stays well below
 * (the stroke's place varies; measured ~30 %), so > 90 % needs the
 * convolutions to work. */
static void test_cnn_training(void) {
    dataset tr, te;
    make_strokes(1, 3000, &tr);
    make_strokes(2, 600, &te);
    train_recipe r;
    cnn_recipe(&r, 5);
    progress_log log = {.epochs_in_order = 1, .lr_ok = 1, .rates_ok = 1,
                        .lr0 = r.lr, .gamma = r.lr_gamma, .step = r.lr_step};
    bnn_model m;
    train_net *net = NULL;
    apx_error err = {0};
    int rc = train_fit(&r, &tr, &te, record_progress, &log, NULL, &m, &net, &err);
    if (rc) fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(log.calls, r.epochs);
    CU_ASSERT(log.epochs_in_order && log.lr_ok && log.rates_ok);
    CU_ASSERT(log.last.test_accuracy > 0.9);
    /* The packed model's shapes: conv layers with pooling, the HWC flatten. */
    CU_ASSERT_EQUAL(m.n_layers, 4);
    CU_ASSERT(m.layers[0].kind == BNN_CONV_U8 && m.layers[0].pool == 2 && m.layers[0].in == 9);
    CU_ASSERT(m.layers[1].kind == BNN_CONV_BIN && m.layers[1].pool == 2 &&
              m.layers[1].in == 9 * 32 && m.layers[1].in_h == 5);
    CU_ASSERT(m.layers[2].kind == BNN_DENSE_BIN && m.layers[2].in == 2 * 2 * 32);
    CU_ASSERT(m.layers[3].kind == BNN_DENSE_OUT && m.layers[3].scale > 0);
    bnn_workspace *ws = bnn_workspace_new(&m);
    size_t correct = bnn_eval_range(&m, m.image, &te, 0, te.n, ws, NULL);
    CU_ASSERT_DOUBLE_EQUAL((double)correct / te.n, log.last.test_accuracy, 1e-12);
    bnn_workspace_free(ws);

    uint32_t agree = 0;
    CU_ASSERT_EQUAL(compare_export(net, &m, &te, &agree), 0);
    CU_ASSERT(agree >= 0.995 * te.n);
    train_net_free(net);
    bnn_free(&m);

    /* The same budget without convolutions. */
    static const uint32_t dense[] = {STROKE_SIDE * STROKE_SIDE, 16, 4};
    set_layers(&r, dense, 3, NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, &te, record_progress, &log, NULL, &m, &err), APX_OK);
    CU_ASSERT(log.last.test_accuracy < 0.8);
    bnn_free(&m);
    dataset_free(&tr);
    dataset_free(&te);
}

/* Exact mean and unbiased variance of every channel of layer l's
 * pre-activations over all of d, in eval mode. */
static void layer_stats(train_net *net, const dataset *d, uint32_t l, double *mean, double *var) {
    const train_layer *L = &net->layer[l];
    double *s1 = calloc(L->out, sizeof *s1), *s2 = calloc(L->out, sizeof *s2);
    CU_ASSERT_FATAL(s1 && s2);
    uint32_t idx[64];
    size_t rows = 0;
    for (uint32_t start = 0; start < d->n; start += net->max_batch) {
        uint32_t B = d->n - start < net->max_batch ? d->n - start : net->max_batch;
        for (uint32_t i = 0; i < B; i++) idx[i] = start + i;
        train_net_load(net, d, idx, B);
        train_net_forward(net, B, 0);
        size_t n = (size_t)B * L->out_h * L->out_w;
        for (size_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < L->out; j++) s1[j] += L->a[i * L->out + j];
        rows += n;
    }
    for (uint32_t j = 0; j < L->out; j++) mean[j] = s1[j] / (double)rows;
    for (uint32_t start = 0; start < d->n; start += net->max_batch) {
        uint32_t B = d->n - start < net->max_batch ? d->n - start : net->max_batch;
        for (uint32_t i = 0; i < B; i++) idx[i] = start + i;
        train_net_load(net, d, idx, B);
        train_net_forward(net, B, 0);
        size_t n = (size_t)B * L->out_h * L->out_w;
        for (size_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < L->out; j++) {
                double x = L->a[i * L->out + j] - mean[j];
                s2[j] += x * x;
            }
    }
    for (uint32_t j = 0; j < L->out; j++) var[j] = s2[j] / (double)(rows - 1);
    free(s1);
    free(s2);
}

/* After train_net_recalibrate_bn over the whole set, every hidden layer's
 * running statistics are the exact statistics of its pre-activations in the
 * eval-mode network, whose earlier layers use their re-estimated statistics
 * (so the order, first layer to last, matters: the momentum averages of
 * training are far from them). */
static void test_bn_recalibration(void) {
    dataset tr;
    make_strokes(3, 700, &tr);
    train_recipe r;
    cnn_recipe(&r, 8);
    r.epochs = 1;
    bnn_model m;
    train_net *net = NULL;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(train_fit(&r, &tr, NULL, NULL, NULL, NULL, &m, &net, &err), APX_OK);
    bnn_free(&m);
    train_net_recalibrate_bn(net, &tr, tr.n, 100000);  /* capped at n: every sample */
    for (uint32_t l = 0; l + 1 < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        double mean[64], var[64];
        CU_ASSERT_FATAL(L->out <= 64);
        layer_stats(net, &tr, l, mean, var);
        uint32_t bad = 0;
        for (uint32_t j = 0; j < L->out; j++) {
            double tol = 1e-5 * (1 + sqrt(var[j]));
            if (fabs(L->run_mean[j] - mean[j]) > tol ||
                fabs(L->run_var[j] - var[j]) > 1e-5 * (1 + var[j]))
                bad++;
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
    /* A subset: samples floor(k * n / count), here every other one. */
    dataset half = tr;
    uint8_t *px = malloc((size_t)tr.n / 2 * tr.rows * tr.cols), *lb = malloc(tr.n / 2);
    CU_ASSERT_FATAL(px && lb);
    for (uint32_t k = 0; k < tr.n / 2; k++) {
        memcpy(px + (size_t)k * tr.rows * tr.cols, dataset_image(&tr, 2 * k),
               (size_t)tr.rows * tr.cols);
        lb[k] = tr.labels[2 * k];
    }
    half.n = tr.n / 2;
    half.pixels = px;
    half.labels = lb;
    train_net_recalibrate_bn(net, &tr, tr.n, tr.n / 2);
    double mean[64], var[64];
    layer_stats(net, &half, 2, mean, var);
    for (uint32_t j = 0; j < net->layer[2].out; j++)
        CU_ASSERT(fabs(net->layer[2].run_mean[j] - mean[j]) < 1e-5 * (1 + sqrt(var[j])));
    dataset_free(&half);
    train_net_free(net);
    dataset_free(&tr);
}

/* ---- (4) determinism ----------------------------------------------------- */

static int models_equal(const bnn_model *a, const bnn_model *b) {
    if (a->image_words != b->image_words || a->n_layers != b->n_layers) return 0;
    if (memcmp(a->image, b->image, a->image_words * sizeof *a->image) != 0) return 0;
    for (uint32_t l = 0; l < a->n_layers; l++) {
        const bnn_layer *x = &a->layers[l], *y = &b->layers[l];
        if (x->scale != y->scale) return 0;
        if (x->threshold &&
            (memcmp(x->threshold, y->threshold, x->out * sizeof *x->threshold) != 0 ||
             memcmp(x->direction, y->direction, x->out * sizeof *x->direction) != 0))
            return 0;
    }
    return 1;
}

static void test_determinism(void) {
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    dataset tr;
    make_synthetic(6, 600, &tr);
    train_recipe r;
    tiny_recipe(&r, 21);
    r.epochs = 2;
    bnn_model a, b, c;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &a, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &b, &err), APX_OK);
    r.seed = 22;
    CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &c, &err), APX_OK);
    CU_ASSERT(models_equal(&a, &b));
    CU_ASSERT(!models_equal(&a, &c));
    bnn_free(&a);
    bnn_free(&b);
    bnn_free(&c);
    dataset_free(&tr);
    openblas_set_num_threads(threads);
}

/* ---- stop flag and shape checks ------------------------------------------ */

static void count_calls(void *ctx, const train_epoch_stats *s) {
    (void)s;
    ++*(int *)ctx;
}

static void test_stop_and_mismatch(void) {
    dataset tr;
    make_synthetic(7, 300, &tr);
    train_recipe r;
    tiny_recipe(&r, 5);
    bnn_model m;
    memset(&m, 0, sizeof m);
    apx_error err = {0};
    volatile int stop = 1;
    int calls = 0;
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, count_calls, &calls, &stop, &m, &err), APX_EINTR);
    CU_ASSERT_EQUAL(err.code, APX_EINTR);
    CU_ASSERT_EQUAL(calls, 0);
    CU_ASSERT_PTR_NULL(m.image);

    r.widths[0] = 63;  /* the data have 64 pixels */
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "64 pixels"));
    r.widths[0] = 64;
    r.widths[3] = 5;   /* 4 classes */
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NULL(m.image);
    dataset_free(&tr);
}

/* ---- (5) recipes from YAML ----------------------------------------------- */

static int parse(const char *text, train_recipe *r, apx_error *err, cfg_doc **doc_out) {
    cfg_doc *doc = cfg_load_string(text, strlen(text), "recipe.yaml", err);
    if (!doc) return err->code;
    int rc = train_recipe_from_yaml(cfg_root(doc), r, err);
    if (doc_out)
        *doc_out = doc;
    else
        cfg_free(doc);
    return rc;
}

static void test_recipe_yaml(void) {
    train_recipe r;
    apx_error err = {0};
    cfg_doc *doc = NULL;
    const char *full =
        "name: small\n"
        "layers: [784, 100, 50, 10]\n"
        "seed: 42\nepochs: 3\nbatch: 128\nlr: 2.0e-3\nlr_step: 2\nlr_gamma: 0.25\n"
        "bn_eps: 1.0e-4\nbn_momentum: 0.2\nweight_clip: 0\ntrain_limit: 1000\n"
        "output: out/small.bnn\ndata_dir: /data/fm\n";
    CU_ASSERT_EQUAL_FATAL(parse(full, &r, &err, &doc), APX_OK);
    CU_ASSERT_STRING_EQUAL(r.name, "small");
    CU_ASSERT_EQUAL(r.n_widths, 4);
    CU_ASSERT(r.widths[0] == 784 && r.widths[1] == 100 && r.widths[2] == 50 && r.widths[3] == 10);
    CU_ASSERT(r.seed == 42 && r.epochs == 3 && r.batch == 128 && r.lr_step == 2);
    CU_ASSERT(r.lr == 2e-3 && r.lr_gamma == 0.25 && r.bn_eps == 1e-4 && r.bn_momentum == 0.2);
    CU_ASSERT(r.weight_clip == 0 && r.train_limit == 1000);
    CU_ASSERT_STRING_EQUAL(r.output, "out/small.bnn");
    CU_ASSERT_STRING_EQUAL(r.data_dir, "/data/fm");
    cfg_free(doc);

    /* Absent keys keep the documented defaults. */
    CU_ASSERT_EQUAL_FATAL(parse("name: d\n", &r, &err, NULL), APX_OK);
    CU_ASSERT(r.n_widths == 4 && r.widths[1] == 2048 && r.batch == 256 && r.lr == 1e-3 &&
              r.lr_step == 25 && r.lr_gamma == 0.5 && r.bn_eps == 1e-5 &&
              r.bn_momentum == 0.1 && r.weight_clip == 1.0 && r.output == NULL);

    /* Unknown key: refused, pointing at the line, with a suggestion. */
    CU_ASSERT_EQUAL(parse("name: x\nepoch: 3\n", &r, &err, NULL), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "recipe.yaml:2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "did you mean 'epochs'"));
    CU_ASSERT_EQUAL(parse("lr_gama: 0.5\n", &r, &err, NULL), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "'lr_gamma'"));
    /* Far from every key: refused, listing the keys it takes. */
    CU_ASSERT_EQUAL(parse("learning_rate: 0.1\n", &r, &err, NULL), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "weight_clip"));

    /* Layer lists that cannot describe a Fashion-MNIST BNN. */
    static const char *const bad_layers[] = {
        "layers: [784]\n",                 /* fewer than 2 entries */
        "layers: [784, 10]\n",             /* no hidden layer */
        "layers: [100, 2048, 10]\n",       /* first != 784 */
        "layers: [784, 2048, 12]\n",       /* last != 10 */
        "layers: [784, 0, 10]\n",          /* empty layer */
        "layers: 784\n",                   /* not a list */
        ("layers: [784, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, "
         "2048, 2048, 2048, 2048, 2048, 10]\n"),  /* more than TRAIN_MAX_LAYERS layers */
    };
    for (size_t i = 0; i < sizeof bad_layers / sizeof bad_layers[0]; i++) {
        err.msg[0] = 0;
        CU_ASSERT_EQUAL(parse(bad_layers[i], &r, &err, NULL), APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "recipe.yaml:1"));
    }
    /* Out-of-range settings. */
    static const char *const bad_values[] = {
        "batch: 1\n", "lr: 0\n", "epochs: 0\n", "lr_gamma: 1.5\n", "bn_momentum: -0.1\n",
        "weight_clip: -1\n", "name: ''\n", "seed: -3\n", "bn_recalibrate: -1\n",
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
        CU_ASSERT_EQUAL(parse(bad_values[i], &r, &err, NULL), APX_EINPUT);
    CU_ASSERT_EQUAL(parse("- 1\n- 2\n", &r, &err, NULL), APX_EINPUT);  /* not a mapping */
}

/* The layer-map form: conv and dense layers, the input implied. */
static void test_recipe_conv_yaml(void) {
    train_recipe r;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(parse("layers: [{conv: 64, pool: 2}, {conv: 32}, {dense: 2048}, "
                                "{dense: 10}]\n",
                                &r, &err, NULL),
                          APX_OK);
    CU_ASSERT_EQUAL(r.n_widths, 5);
    CU_ASSERT(r.widths[0] == 784 && r.widths[1] == 64 && r.widths[2] == 32 &&
              r.widths[3] == 2048 && r.widths[4] == 10);
    CU_ASSERT(r.conv[0] == 1 && r.conv[1] == 1 && r.conv[2] == 0 && r.conv[3] == 0);
    CU_ASSERT(r.pool[0] == 2 && r.pool[1] == 1);
    /* The block form, and a dense-only network in map form. */
    CU_ASSERT_EQUAL_FATAL(parse("layers:\n  - dense: 100\n  - dense: 10\nbn_recalibrate: 500\n",
                                &r, &err, NULL),
                          APX_OK);
    CU_ASSERT(r.n_widths == 3 && r.widths[0] == 784 && r.widths[1] == 100 && !r.conv[0]);
    CU_ASSERT_EQUAL(r.bn_recalibrate, 500);
    /* The width form after a map form resets the conv flags. */
    CU_ASSERT_EQUAL_FATAL(parse("layers: [784, 64, 10]\n", &r, &err, NULL), APX_OK);
    CU_ASSERT(r.n_widths == 3 && !r.conv[0] && !r.conv[1]);

    /* Each bad form is refused at the entry at fault (the recipe's line 4,
     * after a good first layer on line 3, unless the case says otherwise),
     * at the column of the offending node. */
    static const struct {
        const char *lines;  /* the layers from line 4 on, before {dense: 10} */
        const char *where, *says;
    } bad[] = {
        {"  - {conv: 8, pool: 3}\n", "recipe.yaml:4:21", "pool"},
        {"  - {conv: 8, pol: 2}\n", "recipe.yaml:4:", "did you mean 'pool'"},
        {"  - {conv: 8, dense: 8}\n", "recipe.yaml:4:5", "exactly one"},
        {"  - {pool: 2}\n", "recipe.yaml:4:5", "exactly one"},
        {"  - {dense: 8, pool: 2}\n", "recipe.yaml:4:22", "conv layers only"},
        {"  - {conv: 0}\n", "recipe.yaml:4:12", "conv"},
        {"  - 2048\n", "recipe.yaml:4:5", "mixes"},
        {"  - {dense: 2048}\n  - {conv: 8}\n", "recipe.yaml:5:5", "cannot follow a dense"},
        /* 28 -> 14 (line 3) -> 7 -> 3 -> 1 -> 0 (line 7) */
        {"  - {conv: 8, pool: 2}\n  - {conv: 8, pool: 2}\n  - {conv: 8, pool: 2}\n"
         "  - {conv: 8, pool: 2}\n",
         "recipe.yaml:7:5", "leaves no pixels"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "name: bad\nlayers:\n  - {conv: 8, pool: 2}\n%s  - {dense: 10}\n",
                 bad[i].lines);
        err.msg[0] = 0;
        CU_ASSERT_EQUAL(parse(text, &r, &err, NULL), APX_EINPUT);
        if (!strstr(err.msg, bad[i].where) || !strstr(err.msg, bad[i].says))
            fprintf(stderr, "\n  case %zu: %s", i, err.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].where));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    }
    /* The last layer: dense, 10 classes; at least two layers. */
    static const struct {
        const char *text, *where, *says;
    } bad_end[] = {
        {"layers:\n  - {conv: 8}\n  - {conv: 10}\n", "recipe.yaml:3:5", "must be dense"},
        {"layers:\n  - {conv: 8}\n  - {dense: 12}\n", "recipe.yaml:3:5", "{dense: 10}"},
        {"layers:\n  - {dense: 10}\n", "recipe.yaml:2:3", "between 2 and"},
        {"layers: [{conv: 8}, 2048, 10]\n", "recipe.yaml:1:21", "mixes"},
        {"layers: [784, {dense: 10}]\n", "recipe.yaml:1:15", "mixes"},
        {"layers: []\n", "recipe.yaml:1:9", "must be a list"},
    };
    for (size_t i = 0; i < sizeof bad_end / sizeof bad_end[0]; i++) {
        err.msg[0] = 0;
        CU_ASSERT_EQUAL(parse(bad_end[i].text, &r, &err, NULL), APX_EINPUT);
        if (!strstr(err.msg, bad_end[i].where) || !strstr(err.msg, bad_end[i].says))
            fprintf(stderr, "\n  end case %zu: %s", i, err.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad_end[i].where));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad_end[i].says));
    }
}

/* The flip, loss and regularizer keys: read with their values, defaults
 * when absent, and every bad form refused at its position. */
static void test_recipe_flip_yaml(void) {
    train_recipe r;
    apx_error err = {0};
    cfg_doc *doc = NULL;
    CU_ASSERT_EQUAL_FATAL(parse("epochs: 5\nloss: mhl\nmhl_margin: 64\n"
                                "margin_reg: {lambda: 0.01, margin: 0.1}\n"
                                "bn_recalibrate: 1000\nbn_reestimate_ber: 0.02\n"
                                "flip:\n  gradient: mask\n  persistent: true\n"
                                "  curriculum:\n    - {epoch: 0, p: 0.01}\n"
                                "    - {epoch: 2, p: 0.05}\n    - {epoch: 4, p: 0.1}\n",
                                &r, &err, NULL),
                          APX_OK);
    CU_ASSERT(r.loss == TRAIN_LOSS_MHL && r.mhl_margin == 64);
    CU_ASSERT(r.reg_lambda == 0.01 && r.reg_margin == 0.1);
    CU_ASSERT(r.bn_recalibrate == 1000 && r.bn_reestimate_ber == 0.02);
    CU_ASSERT(r.flip.on && r.flip.gradient == TRAIN_FLIP_MASK && r.flip.persistent);
    CU_ASSERT(r.flip.device == NULL && r.flip.n_steps == 3);
    CU_ASSERT(r.flip.step[1].epoch == 2 && r.flip.step[1].p == 0.05 && r.flip.step[2].p == 0.1);
    /* Defaults: no flips, CE, MHL margin 128 (facts 4.6), no regularizer;
     * a flip section defaults to per-batch straight-through flips. */
    CU_ASSERT_EQUAL_FATAL(parse("name: d\n", &r, &err, NULL), APX_OK);
    CU_ASSERT(!r.flip.on && r.loss == TRAIN_LOSS_CE && r.mhl_margin == 128 &&
              r.reg_lambda == 0 && r.bn_reestimate_ber == 0);
    CU_ASSERT_EQUAL_FATAL(parse("flip: {p: 0.05}\n", &r, &err, NULL), APX_OK);
    CU_ASSERT(r.flip.on && r.flip.gradient == TRAIN_FLIP_STE && !r.flip.persistent &&
              r.flip.n_steps == 1 && r.flip.step[0].p == 0.05 && r.flip.step[0].epoch == 0);
    CU_ASSERT_EQUAL_FATAL(parse("flip: {p: 0.05, gradient: straight_through}\n", &r, &err, NULL),
                          APX_OK);
    CU_ASSERT(r.flip.gradient == TRAIN_FLIP_STE);
    /* A device with its memory placement. */
    CU_ASSERT_EQUAL_FATAL(parse("flip:\n  device: {kind: uniform}\n"
                                "  memory: {base: 4096, geometry: {rows: 32768}}\n"
                                "  operating_point: {ber: 0.02}\n",
                                &r, &err, &doc),
                          APX_OK);
    CU_ASSERT(r.flip.device && r.flip.base_addr == 4096 && r.flip.geo.count[GEO_RO] == 32768);
    CU_ASSERT(r.flip.n_steps == 1 && r.flip.step[0].op[0] == 0.02);
    cfg_free(doc);

    static const struct {
        const char *text, *where, *says;
    } bad[] = {
        {"loss: hinge\n", "recipe.yaml:1:7", "ce"},
        {"mhl_margin: 64\n", "recipe.yaml:1:13", "loss: mhl"},
        {"loss: mhl\nmhl_margin: 0\n", "recipe.yaml:2:13", "mhl_margin"},
        {"margin_reg: {lambda: 0.1}\n", "recipe.yaml:1:13", "margin"},
        {"margin_reg: {lambda: 0.1, margin: 0}\n", "recipe.yaml:1:35", "margin"},
        {"margin_reg: {lambda: -1, margin: 0.1}\n", "recipe.yaml:1:22", "lambda"},
        {"margin_reg: {lamda: 1, margin: 0.1}\n", "recipe.yaml:1:14", "did you mean 'lambda'"},
        {"bn_reestimate_ber: 0.05\n", "recipe.yaml:1:20", "bn_recalibrate"},
        {"bn_recalibrate: 10\nbn_reestimate_ber: 1.5\n", "recipe.yaml:2:20", "bn_reestimate_ber"},
        {"flip: 0.05\n", "recipe.yaml:1:7", "mapping"},
        {"flip: {p: 1.5}\n", "recipe.yaml:1:11", "p"},
        {"flip: {p: 0.1, gradient: invert}\n", "recipe.yaml:1:26", "mask"},
        {"flip: {p: 0.1, persistant: true}\n", "recipe.yaml:1:16", "did you mean 'persistent'"},
        {"flip: {gradient: mask}\n", "recipe.yaml:1:7", "exactly one of 'p'"},
        {"flip: {p: 0.1, curriculum: [{epoch: 0, p: 0.1}]}\n", "recipe.yaml:1:7",
         "exactly one of 'p'"},
        {"flip: {p: 0.1, operating_point: {ber: 0.1}}\n", "recipe.yaml:1:33", "needs a 'device'"},
        {"flip: {p: 0.1, memory: {base: 0}}\n", "recipe.yaml:1:24", "needs a 'device'"},
        {"flip:\n  curriculum: []\n", "recipe.yaml:2:15", "list of 1 to"},
        {"flip:\n  curriculum: [{epoch: 1, p: 0.1}]\n", "recipe.yaml:2:24", "start at epoch 0"},
        {"epochs: 5\nflip:\n  curriculum: [{epoch: 0, p: 0.1}, {epoch: 0, p: 0.2}]\n",
         "recipe.yaml:3:44", "increase strictly"},
        {"epochs: 3\nflip:\n  curriculum: [{epoch: 0, p: 0.1}, {epoch: 3, p: 0.2}]\n",
         "recipe.yaml:3:44", "never reached"},
        {"flip:\n  curriculum: [{epoch: 0, ber: 0.1}]\n", "recipe.yaml:2:27", "curriculum step"},
        {"flip:\n  curriculum: [{epoch: 0}]\n", "recipe.yaml:2:16", "'p'"},
        {"flip:\n  curriculum: [0.1]\n", "recipe.yaml:2:16", "must be a map"},
        {"flip:\n  device: {kind: uniform}\n  p: 0.1\n", "recipe.yaml:3:6", "not 'p'"},
        {"flip:\n  device: {kind: uniform}\n", "recipe.yaml:2:3", "exactly one of 'operating"},
        {"flip:\n  device: {kind: dramm}\n  operating_point: {ber: 0.1}\n", "recipe.yaml:2:18",
         "unknown device kind"},
        {"flip:\n  device: {kind: uniform, size: 3}\n  operating_point: {ber: 0.1}\n",
         "recipe.yaml:2:27", "unknown key 'size'"},
        {"flip:\n  device: {kind: uniform}\n  operating_point: {bre: 0.1}\n", "recipe.yaml:3:21",
         "did you mean 'ber'"},
        {"flip:\n  device: {kind: uniform}\n  operating_point: {}\n", "recipe.yaml:3:20",
         "needs a value for 'ber'"},
        {"flip:\n  device: {kind: uniform}\n  operating_point: {ber: 2}\n", "recipe.yaml:3:20",
         "between 0 and 1"},
        {"flip:\n  device: {kind: uniform}\n  curriculum: [{epoch: 0, p: 0.1}]\n",
         "recipe.yaml:3:27", "curriculum step"},
        {"flip:\n  device: {kind: uniform}\n  memory: {base: -5}\n  operating_point: {ber: 0.1}\n",
         "recipe.yaml:3:18", "base"},
        {"flip:\n  device: {kind: uniform}\n  memory: {geometry: {rows: 1000}}\n"
         "  operating_point: {ber: 0.1}\n",
         "recipe.yaml:3:29", "power of two"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        int rc = parse(bad[i].text, &r, &err, NULL);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        if (!strstr(err.msg, bad[i].where) || !strstr(err.msg, bad[i].says))
            fprintf(stderr, "\n  flip case %zu: %s", i, err.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].where));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].says));
    }

    /* A recipe built in code gets the same checks before training. */
    dataset tr;
    make_synthetic(7, 100, &tr);
    bnn_model m;
    tiny_recipe(&r, 1);
    r.flip.on = 1;
    r.flip.n_steps = 1;
    r.flip.step[0].p = -0.1;
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "outside [0, 1]"));
    r.flip.step[0].p = 0.1;
    r.flip.step[0].epoch = 1;
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &m, &err), APX_EINPUT);
    r.flip.on = 0;
    r.mhl_margin = 0;
    CU_ASSERT_EQUAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &m, &err), APX_EINPUT);
    dataset_free(&tr);
}

/* The shipped recipe parses and names the zoo model it produces. */
static void test_shipped_recipe(void) {
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(APXSIM_SOURCE_ROOT "/configs/workloads/fmnist-fc.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    train_recipe r;
    CU_ASSERT_EQUAL(train_recipe_from_yaml(cfg_root(doc), &r, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(r.name, "fmnist-fc");
    CU_ASSERT(r.n_widths == 4 && r.widths[0] == 784 && r.widths[1] == 2048 &&
              r.widths[2] == 2048 && r.widths[3] == 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.output);
    CU_ASSERT_STRING_EQUAL(r.output, "workloads/zoo/fmnist-fc.bnn");
    CU_ASSERT(!r.conv[0] && !r.conv[1] && !r.conv[2]);
    cfg_free(doc);

    /* VGG3 (facts bnn.md section 5). */
    doc = cfg_load_file(APXSIM_SOURCE_ROOT "/configs/workloads/fmnist-vgg3.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    CU_ASSERT_EQUAL(train_recipe_from_yaml(cfg_root(doc), &r, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(r.name, "fmnist-vgg3");
    CU_ASSERT(r.n_widths == 5 && r.widths[0] == 784 && r.widths[1] == 64 &&
              r.widths[2] == 64 && r.widths[3] == 2048 && r.widths[4] == 10);
    CU_ASSERT(r.conv[0] && r.conv[1] && !r.conv[2] && !r.conv[3]);
    CU_ASSERT(r.pool[0] == 2 && r.pool[1] == 2);
    CU_ASSERT(r.batch == 256 && r.lr == 1e-3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.output);
    CU_ASSERT_STRING_EQUAL(r.output, "workloads/zoo/fmnist-vgg3.bnn");
    cfg_free(doc);
}

/* Every zoo recipe parses, names itself and its output after its file, and
 * carries the settings its name promises (facts bnn.md 4.2-4.7): flipNN at
 * BER 0.NN with the named gradient, drawn per batch (VGG3: BN re-estimated at
 * that BER); mhl with b = 128; reg a and b at lambda 0.1 and 1 with b_h =
 * 0.1; the FC or VGG3 network. */
static void test_zoo_recipes(void) {
    static const char *const archs[] = {"fc", "vgg3"};
    static const char *const variants[] = {"flip01-mask", "flip01-ste", "flip05-mask",
                                           "flip05-ste",  "flip10-mask", "flip10-ste",
                                           "mhl",         "rega",        "regb"};
    for (int a = 0; a < 2; a++)
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            char name[64], path[512], output[128];
            snprintf(name, sizeof name, "fmnist-%s-%s", archs[a], variants[v]);
            snprintf(path, sizeof path, "%s/configs/workloads/%s.yaml", APXSIM_SOURCE_ROOT, name);
            snprintf(output, sizeof output, "workloads/zoo/%s.bnn", name);
            apx_error err = {0};
            cfg_doc *doc = cfg_load_file(path, &err);
            CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
            train_recipe r;
            int rc = train_recipe_from_yaml(cfg_root(doc), &r, &err);
            if (rc) fprintf(stderr, "\n  %s", err.msg);
            CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
            CU_ASSERT_STRING_EQUAL(r.name, name);
            CU_ASSERT_PTR_NOT_NULL_FATAL(r.output);
            CU_ASSERT_STRING_EQUAL(r.output, output);
            CU_ASSERT(r.seed == 1 && r.batch == 256 && r.lr == 1e-3 && r.lr_gamma == 0.5);
            if (a == 0) {
                CU_ASSERT(r.n_widths == 4 && r.widths[1] == 2048 && !r.conv[0] &&
                          r.epochs == 15 && r.lr_step == 4 && r.bn_recalibrate == 0);
            } else {
                CU_ASSERT(r.n_widths == 5 && r.conv[0] && r.conv[1] && r.pool[0] == 2 &&
                          r.epochs == 10 && r.lr_step == 3 && r.bn_recalibrate == 10000);
            }
            const char *var = variants[v];
            if (!strncmp(var, "flip", 4)) {
                double p = (var[4] - '0') * 0.1 + (var[5] - '0') * 0.01;
                int mask = strstr(var, "mask") != NULL;
                CU_ASSERT(r.flip.on && !r.flip.persistent && !r.flip.device &&
                          r.flip.n_steps == 1);
                CU_ASSERT_DOUBLE_EQUAL(r.flip.step[0].p, p, 1e-12);
                CU_ASSERT_EQUAL(r.flip.gradient, mask ? TRAIN_FLIP_MASK : TRAIN_FLIP_STE);
                CU_ASSERT(r.loss == TRAIN_LOSS_CE && r.reg_lambda == 0);
                /* VGG3 re-estimates BN at the training BER (FC exports the
                 * running averages collected under the training flips). */
                CU_ASSERT_DOUBLE_EQUAL(r.bn_reestimate_ber, a == 1 ? p : 0.0, 1e-12);
            } else {
                CU_ASSERT(!r.flip.on && r.bn_reestimate_ber == 0);
                CU_ASSERT_EQUAL(r.loss, !strcmp(var, "mhl") ? TRAIN_LOSS_MHL : TRAIN_LOSS_CE);
                CU_ASSERT_EQUAL(r.mhl_margin, 128);
                CU_ASSERT_EQUAL(r.reg_lambda, !strcmp(var, "rega") ? 0.1
                                              : !strcmp(var, "regb") ? 1.0 : 0.0);
                if (r.reg_lambda > 0) CU_ASSERT_EQUAL(r.reg_margin, 0.1);
            }
            cfg_free(doc);
        }
}

/* The shipped VGG3 model has the architecture of its recipe and, where
 * Fashion-MNIST is installed, classifies the first 1000 test images about as
 * well as the full test set (>= 88 %; the whole set scores >= 90 %, see the
 * recipe). */
static void test_shipped_vgg3_model(void) {
    bnn_model m;
    apx_error err = {0};
    int rc = bnn_load(APXSIM_SOURCE_ROOT "/workloads/zoo/fmnist-vgg3.bnn", &m, &err);
    if (rc) fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_STRING_EQUAL(m.name, "fmnist-vgg3");
    CU_ASSERT(m.in_rows == 28 && m.in_cols == 28 && m.n_classes == 10 && m.n_layers == 4);
    static const uint32_t kind[] = {BNN_CONV_U8, BNN_CONV_BIN, BNN_DENSE_BIN, BNN_DENSE_OUT};
    static const uint32_t in[] = {9, 576, 3136, 2048}, out[] = {64, 64, 2048, 10};
    static const uint32_t pool[] = {2, 2, 1, 1}, side[] = {28, 14, 1, 1};
    for (uint32_t l = 0; l < 4; l++) {
        const bnn_layer *L = &m.layers[l];
        CU_ASSERT(L->kind == kind[l] && L->in == in[l] && L->out == out[l] &&
                  L->pool == pool[l] && L->in_h == side[l] && L->in_w == side[l]);
    }
    dataset te;
    if (fmnist_load(NULL, "test", 1000, &te, &err) == APX_OK) {
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        size_t correct = bnn_eval_range(&m, m.image, &te, 0, te.n, ws, NULL);
        CU_ASSERT(correct >= 880);
        bnn_workspace_free(ws);
        dataset_free(&te);
    } else {
        fprintf(stderr, "\n  (Fashion-MNIST not installed: accuracy not checked)");
    }
    bnn_free(&m);
}

/* ---- (6) losses, regularizer and flips: gradients ----------------------- */

/* The midpoint of the widest gap between neighbours of v[0..n) (sorted in
 * place) among those between the 20th and 80th percentile: a kink placed
 * there is as far as possible from every value. */
static double widest_gap_mid(double *v, size_t n) {
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    size_t best = n / 5;
    for (size_t i = n / 5; i + 1 < 4 * n / 5; i++)
        if (v[i + 1] - v[i] > v[best + 1] - v[best]) best = i;
    return 0.5 * (v[best] + v[best + 1]);
}

/* The float 6-5-4-3 network of test_gradient_check, with its loss settings. */
static train_net *float_net(uint32_t B, train_loss_kind loss, double lambda) {
    static const uint32_t widths[] = {6, 5, 4, 3};
    apx_error err = {0};
    train_recipe r;
    train_recipe_defaults(&r);
    set_layers(&r, widths, 4, NULL, NULL);
    r.weight_clip = 0.0;
    r.loss = loss;
    r.reg_lambda = lambda;
    r.reg_margin = 1.0;
    train_net *net = train_net_new(&r, 2, 3, B, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    CU_ASSERT_EQUAL(net->loss, loss);
    net->float_weights = net->float_activations = 1;
    grad_setup(net, B, 0.2);
    return net;
}

/* MHL (facts bnn.md 4.6): its value is (1/K) sum_c max(0, b - t_c z_c) / b,
 * averaged over the batch, and its backward pass matches central
 * differences for every parameter. b sits in the widest gap of the t_c z_c,
 * so some terms are active and some not, and no step crosses a kink. */
static void test_mhl_gradient(void) {
    const uint32_t B = 8;
    train_net *net = float_net(B, TRAIN_LOSS_MHL, 0.0);
    loss_now(net, B);
    double tz[8 * 3];
    for (uint32_t i = 0; i < B; i++)
        for (uint32_t c = 0; c < 3; c++)
            tz[i * 3 + c] = (c == net->labels[i] ? 1 : -1) * net->logits[i * 3 + c];
    net->mhl_margin = widest_gap_mid(tz, B * 3);
    CU_ASSERT(net->mhl_margin > 0);

    double loss = loss_now(net, B), want = 0;
    uint32_t active = 0;
    for (uint32_t i = 0; i < B; i++)
        for (uint32_t c = 0; c < 3; c++) {
            double t = c == net->labels[i] ? 1 : -1;
            double slack = net->mhl_margin - t * net->logits[i * 3 + c];
            if (slack > 0) want += slack, active++;
            CU_ASSERT((net->dlogits[i * 3 + c] != 0) == (slack > 0));
        }
    want /= 3 * net->mhl_margin * B;
    CU_ASSERT_DOUBLE_EQUAL(loss, want, 1e-6 * want);
    CU_ASSERT(active > 4 && active < 20);  /* both sides of the hinge are exercised */

    train_net_backward(net, B);
    param_ref refs[128];
    uint32_t n = grad_refs(net, refs, 128), nonzero, skipped;
    CU_ASSERT_EQUAL(grad_compare(net, B, refs, n, &nonzero, &skipped), 0);
    CU_ASSERT(nonzero > n / 3);
    train_net_free(net);
}

/* The margin regularizer (facts bnn.md 4.7): its value, recomputed here from
 * the batch statistics (tau = mu - beta sqrt(var + eps) / gamma), and its
 * gradient through a, the batch mean and variance, gamma and beta, by
 * central differences on top of cross-entropy. b_h sits in the widest gap
 * of the normalised margins. */
static void test_margin_reg_gradient(void) {
    const uint32_t B = 8;
    train_net *net = float_net(B, TRAIN_LOSS_CE, 2.0);
    loss_now(net, B);
    double m[8 * 9], direct = 0;
    size_t nm = 0;
    for (uint32_t l = 0; l < 2; l++) {
        const train_layer *L = &net->layer[l];
        for (uint32_t j = 0; j < L->out; j++) {
            double mu = 0, var = 0;
            for (uint32_t i = 0; i < B; i++) mu += L->a[i * L->out + j] / B;
            for (uint32_t i = 0; i < B; i++) var += pow(L->a[i * L->out + j] - mu, 2) / B;
            double tau = mu - L->beta[j] * sqrt(var + net->bn_eps) / L->gamma[j];
            for (uint32_t i = 0; i < B; i++) m[nm++] = fabs(L->a[i * L->out + j] - tau) / L->in;
        }
    }
    double sorted[8 * 9];
    memcpy(sorted, m, sizeof sorted);
    net->reg_margin = widest_gap_mid(sorted, nm);
    for (size_t k = 0; k < nm; k++) direct += fmax(0, net->reg_margin - m[k]);
    direct *= net->reg_lambda / (B * 9.0);
    CU_ASSERT(direct > 0);
    CU_ASSERT_DOUBLE_EQUAL(train_net_margin_reg(net, B), direct, 1e-5 * direct);
    /* No margin near 0 either (|a - tau| has a kink there). */
    for (size_t k = 0; k < nm; k++) CU_ASSERT(m[k] > 1e-3);

    double total = loss_now(net, B);
    train_net_backward(net, B);
    param_ref refs[128];
    uint32_t n = grad_refs(net, refs, 128), nonzero, skipped;
    float with_reg[128];
    for (uint32_t k = 0; k < n; k++) with_reg[k] = refs[k].grad;
    CU_ASSERT_EQUAL(grad_compare(net, B, refs, n, &nonzero, &skipped), 0);
    CU_ASSERT(nonzero > n / 2);
    /* The regularizer moves the gradients: without it they differ. */
    net->reg_lambda = 0;
    CU_ASSERT(loss_now(net, B) < total - 0.5 * direct);
    train_net_backward(net, B);
    double moved = 0;
    n = grad_refs(net, refs, 128);
    for (uint32_t k = 0; k < n; k++) moved = fmax(moved, fabs(refs[k].grad - with_reg[k]));
    CU_ASSERT(moved > 1e-2);
    train_net_free(net);
}

/* Sets every layer's flip list to positions 0, 3, 7, ... (every 4th plus 3
 * from 3 on: 0, 3, 7, 11, ...) and flips wb there. */
static void set_test_flips(train_net *net) {
    apx_error err = {0};
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        fmap fm;
        fmap_init(&fm, (uint64_t)L->in * L->out);
        for (uint64_t b = 0; b < fm.region_bits; b += b == 0 ? 3 : 4)
            CU_ASSERT_EQUAL_FATAL(fmap_push(&fm, b, FAULT_FLIP, &err), APX_OK);
        CU_ASSERT_EQUAL_FATAL(train_layer_flips_from_faults(net, l, &fm, &err), APX_OK);
        CU_ASSERT_EQUAL(L->n_flip, fm.n);
        fmap_free(&fm);
    }
    train_net_flip_weights(net);
}

/* The loss with the test flips applied to the float weights. */
static double flipped_loss(train_net *net, uint32_t B) {
    train_net_binarize(net);
    set_test_flips(net);
    train_net_forward(net, B, 1);
    return train_net_loss(net, B, NULL);
}

static int is_test_flip(uint64_t i) { return i == 0 || (i >= 3 && (i - 3) % 4 == 0); }

/* Flip-training gradients (facts bnn.md 4.3): with the flips in the graph
 * (w_f = M w), the mask variant's gradient of each latent weight equals
 * central differences of the flipped network's loss, i.e. the gradient of a
 * flipped weight is the straight-through one with its sign inverted; every
 * other gradient is the same in both variants. */
static void test_flip_gradient_mask_vs_ste(void) {
    const uint32_t B = 8;
    train_net *net = float_net(B, TRAIN_LOSS_CE, 0.0);
    float *ste[3], *mask[3];
    for (int variant = 0; variant < 2; variant++) {
        net->flip_mask = variant;
        flipped_loss(net, B);
        train_net_backward(net, B);
        for (uint32_t l = 0; l < 3; l++) {
            size_t nw = (size_t)net->layer[l].in * net->layer[l].out;
            float *g = malloc(nw * sizeof *g);
            CU_ASSERT_PTR_NOT_NULL_FATAL(g);
            memcpy(g, net->layer[l].gw, nw * sizeof *g);
            (variant ? mask : ste)[l] = g;
        }
    }
    uint32_t flipped = 0, nonzero = 0, bad = 0;
    const double h = 1e-3;
    for (uint32_t l = 0; l < 3; l++) {
        train_layer *L = &net->layer[l];
        for (uint64_t i = 0; i < (uint64_t)L->in * L->out; i++) {
            if (is_test_flip(i)) {
                flipped++;
                CU_ASSERT_EQUAL(mask[l][i], -ste[l][i]);
                if (fabsf(mask[l][i]) > 1e-3f) nonzero++;
            } else {
                CU_ASSERT_EQUAL(mask[l][i], ste[l][i]);
            }
            float keep = L->w[i];
            L->w[i] = (float)(keep + h);
            double up = flipped_loss(net, B);
            L->w[i] = (float)(keep - h);
            double down = flipped_loss(net, B);
            L->w[i] = keep;
            double num = (up - down) / (2 * h);
            if (fabs(num - mask[l][i]) > 5e-4 + 1e-2 * fabs(mask[l][i])) bad++;
        }
        free(ste[l]);
        free(mask[l]);
    }
    CU_ASSERT_EQUAL(bad, 0);
    if (!(nonzero > flipped / 2))
        fprintf(stderr, "\n  %u of %u flipped gradients nonzero", nonzero, flipped);
    CU_ASSERT(flipped == 8 + 6 + 4 && nonzero > flipped / 2);
    train_net_free(net);
}

/* ---- (7) flips: rates, freshness, persistence, devices ------------------- */

/* |count - n p| within 5 standard deviations of Bin(n, p). */
static int binomial_ok(uint64_t count, double n, double p) {
    return fabs((double)count - n * p) <= 5 * sqrt(n * p * (1 - p)) + 1;
}

/* How many positions two sorted lists share. */
static size_t shared(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb) {
        if (a[i] < b[j]) i++;
        else if (a[i] > b[j]) j++;
        else k++, i++, j++;
    }
    return k;
}

/* A 784-256-256-10 network (268,800 weights) with its packed layout. */
static train_net *flip_net(const train_recipe *r, bnn_model *m) {
    apx_error err = {0};
    train_net *net = train_net_new(r, 28, 28, 4, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    CU_ASSERT_EQUAL_FATAL(train_net_model(net, "flips", m, &err), APX_OK);
    return net;
}

static void flip_recipe(train_recipe *r) {
    static const uint32_t w[] = {784, 256, 256, 10};
    train_recipe_defaults(r);
    set_layers(r, w, 4, NULL, NULL);
    r->flip.on = 1;
    r->flip.n_steps = 2;
    r->flip.step[0] = (train_flip_step){.epoch = 0, .p = 0.05};
    r->flip.step[1] = (train_flip_step){.epoch = 1, .p = 0.1};
}

/* Saves every layer's flip list (sorted positions) into lists[l]. */
static void save_flips(const train_net *net, uint64_t **lists, size_t *n) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        lists[l] = malloc((L->n_flip + 1) * sizeof **lists);
        CU_ASSERT_PTR_NOT_NULL_FATAL(lists[l]);
        memcpy(lists[l], L->flip, L->n_flip * sizeof **lists);
        n[l] = L->n_flip;
        size_t unsorted = 0;
        for (size_t i = 1; i < L->n_flip; i++) unsorted += !(L->flip[i - 1] < L->flip[i]);
        CU_ASSERT_EQUAL(unsorted, 0);
    }
}

/* The checks every drawing mode passes at rate p over batches 0 and 1:
 * binomial counts per layer, sorted in-range positions spread over the
 * tensor (as many in its first half as in its second), and either fresh
 * flips per batch (overlap ~ p^2 n, as for independent draws) or, persistent,
 * the same ones; and batch 0 drawn again is batch 0. */
static void check_draws(train_flipper *f, train_net *net, uint32_t k, double p, int persistent) {
    apx_error err = {0};
    uint64_t *b0[3], *b1[3], *again[3], flips;
    size_t n0[3], n1[3], na[3];
    CU_ASSERT_EQUAL_FATAL(train_flipper_draw(f, net, k, 0, &flips, &err), APX_OK);
    save_flips(net, b0, n0);
    CU_ASSERT_EQUAL(flips, n0[0] + n0[1] + n0[2]);
    CU_ASSERT_EQUAL_FATAL(train_flipper_draw(f, net, k, 1, &flips, &err), APX_OK);
    save_flips(net, b1, n1);
    CU_ASSERT_EQUAL_FATAL(train_flipper_draw(f, net, k, 0, &flips, &err), APX_OK);
    save_flips(net, again, na);
    for (uint32_t l = 0; l < 3; l++) {
        double nw = (double)net->layer[l].in * net->layer[l].out;
        CU_ASSERT(binomial_ok(n0[l], nw, p));
        CU_ASSERT(binomial_ok(n1[l], nw, p));
        CU_ASSERT(n0[l] == 0 || b0[l][n0[l] - 1] < (uint64_t)nw);
        size_t low = 0;
        for (size_t i = 0; i < n0[l]; i++) low += b0[l][i] < (uint64_t)nw / 2;
        CU_ASSERT(binomial_ok(low, (double)n0[l], 0.5));
        CU_ASSERT(na[l] == n0[l] && memcmp(again[l], b0[l], n0[l] * sizeof **b0) == 0);
        size_t same = shared(b0[l], n0[l], b1[l], n1[l]);
        if (persistent) {
            CU_ASSERT(n1[l] == n0[l] && same == n0[l]);
        } else {
            CU_ASSERT(binomial_ok(same, nw, p * p));
        }
        free(b0[l]);
        free(b1[l]);
        free(again[l]);
    }
}

/* Plain flips: at rate p, anew each batch unless persistent; persistent maps
 * are nested across the schedule (the harsher entry fails a superset); p = 0
 * and p = 1 are exact. The flips are applied as sign changes of wb and undone
 * by the next refresh. */
static void test_flip_rates(void) {
    train_recipe r;
    flip_recipe(&r);
    bnn_model m;
    train_net *net = flip_net(&r, &m);
    train_flipper f;
    apx_error err = {0};
    for (int persistent = 0; persistent < 2; persistent++) {
        r.flip.persistent = persistent;
        CU_ASSERT_EQUAL_FATAL(train_flipper_init(&f, &r.flip, r.seed, net, &m, &err), APX_OK);
        check_draws(&f, net, 0, 0.05, persistent);
        check_draws(&f, net, 1, 0.1, persistent);
        if (persistent) { /* nested: every p = 0.05 flip is among the p = 0.1 ones */
            uint64_t *lo[3], *hi[3], flips;
            size_t nlo[3], nhi[3];
            CU_ASSERT_EQUAL(train_flipper_draw(&f, net, 0, 5, &flips, &err), APX_OK);
            save_flips(net, lo, nlo);
            CU_ASSERT_EQUAL(train_flipper_draw(&f, net, 1, 5, &flips, &err), APX_OK);
            save_flips(net, hi, nhi);
            for (uint32_t l = 0; l < 3; l++) {
                CU_ASSERT(nhi[l] > nlo[l] && shared(lo[l], nlo[l], hi[l], nhi[l]) == nlo[l]);
                free(lo[l]);
                free(hi[l]);
            }
        }
        train_flipper_free(&f);
    }
    /* The flips are sign changes of the binarised weights, undone by Adam's
     * refresh (which also ends the batch's list). */
    uint64_t flips;
    r.flip.persistent = 0;
    CU_ASSERT_EQUAL_FATAL(train_flipper_init(&f, &r.flip, r.seed, net, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(train_flipper_draw(&f, net, 0, 0, &flips, &err), APX_OK);
    train_layer *L = &net->layer[1];
    float before = L->wb[L->flip[0]];
    size_t changed = 0, nw = (size_t)L->in * L->out;
    float *copy = malloc(nw * sizeof *copy);
    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    memcpy(copy, L->wb, nw * sizeof *copy);
    train_net_flip_weights(net);
    for (size_t i = 0; i < nw; i++) changed += copy[i] != L->wb[i];
    CU_ASSERT_EQUAL(changed, L->n_flip);
    CU_ASSERT_EQUAL(L->wb[L->flip[0]], -before);
    train_net_adam(net, 0.0);
    CU_ASSERT_EQUAL(L->n_flip, 0);
    CU_ASSERT_EQUAL(L->wb[L->flip[0]], before);
    free(copy);
    train_flipper_free(&f);
    /* p = 0: none; p = 1: every weight. */
    rng_key key = rng_key_make(1, 2, 3);
    CU_ASSERT_EQUAL(train_layer_draw_flips(L, key, 0, 0, 0.0, &err), APX_OK);
    CU_ASSERT_EQUAL(L->n_flip, 0);
    CU_ASSERT_EQUAL(train_layer_draw_flips(L, key, 0, 0, 1.0, &err), APX_OK);
    CU_ASSERT(L->n_flip == nw && L->flip[nw - 1] == nw - 1);
    train_net_free(net);
    bnn_free(&m);
}

/* A recipe read from YAML text (kept alive in *doc). */
static int parse(const char *text, train_recipe *r, apx_error *err, cfg_doc **doc_out);

/* Device-aware flips with the uniform device pass the same statistical
 * checks as plain flips at its ber, per batch and persistent; persistent
 * plain flips are exactly the uniform device's chip-0 faults. */
static void test_device_uniform_flips(void) {
    train_recipe r;
    apx_error err = {0};
    cfg_doc *doc = NULL;
    CU_ASSERT_EQUAL_FATAL(
        parse("layers: [784, 256, 256, 10]\nepochs: 3\nflip:\n  device: {kind: uniform}\n"
              "  curriculum: [{epoch: 0, operating_point: {ber: 0.05}},\n"
              "               {epoch: 2, operating_point: {ber: 0.1}}]\n",
              &r, &err, &doc),
        APX_OK);
    CU_ASSERT(r.flip.on && r.flip.device && r.flip.n_steps == 2 && r.flip.step[1].epoch == 2);
    CU_ASSERT(r.flip.step[0].op[0] == 0.05 && r.flip.step[1].op[0] == 0.1);
    bnn_model m;
    train_net *net = flip_net(&r, &m);
    train_flipper dev, plain;
    for (int persistent = 0; persistent < 2; persistent++) {
        r.flip.persistent = persistent;
        CU_ASSERT_EQUAL_FATAL(train_flipper_init(&dev, &r.flip, r.seed, net, &m, &err), APX_OK);
        CU_ASSERT_PTR_NOT_NULL(dev.dev);
        check_draws(&dev, net, 0, 0.05, persistent);
        check_draws(&dev, net, 1, 0.1, persistent);
        train_flipper_free(&dev);
    }
    /* Persistent plain flips at p = the uniform device's chip 0 at ber = p. */
    train_recipe pr;
    flip_recipe(&pr);
    pr.flip.persistent = 1;
    CU_ASSERT_EQUAL_FATAL(train_flipper_init(&dev, &r.flip, r.seed, net, &m, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(train_flipper_init(&plain, &pr.flip, r.seed, net, &m, &err), APX_OK);
    uint64_t *a[3], *b[3], fa, fb;
    size_t na[3], nb[3];
    CU_ASSERT_EQUAL(train_flipper_draw(&dev, net, 0, 7, &fa, &err), APX_OK);
    save_flips(net, a, na);
    CU_ASSERT_EQUAL(train_flipper_draw(&plain, net, 0, 7, &fb, &err), APX_OK);
    save_flips(net, b, nb);
    CU_ASSERT(fa == fb && fa > 0);
    for (uint32_t l = 0; l < 3; l++) {
        CU_ASSERT(na[l] == nb[l] && memcmp(a[l], b[l], na[l] * sizeof **a) == 0);
        free(a[l]);
        free(b[l]);
    }
    train_flipper_free(&dev);
    train_flipper_free(&plain);
    /* Weights that do not fit in the device's memory are refused. */
    r.flip.base_addr = geometry_bytes(&r.flip.geo) - 1000;
    CU_ASSERT_EQUAL(train_flipper_init(&dev, &r.flip, r.seed, net, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "do not fit"));
    train_flipper_free(&dev);
    train_net_free(net);
    bnn_free(&m);
    cfg_free(doc);
}

/* Device-aware flips from device files, named as a sweep names them: the
 * DDR4 profile over a tRCD curriculum (persistent maps, so the harsher step
 * flips a superset) and the RRAM profile at a programming energy; a file
 * that is not there is an input error at the recipe's position. */
static void test_device_files(void) {
    static const struct { const char *file, *point; } devs[] = {
        {"ddr4-2400-8gb-x8.yaml", "{trcd: 10.4}},\n {epoch: 1, operating_point: {trcd: 10.0}"},
        {"rram-hfo2-2t2r.yaml", "{energy_pj: 0.2}},\n {epoch: 1, operating_point: {energy_pj: 0.1}"},
    };
    for (size_t d = 0; d < sizeof devs / sizeof devs[0]; d++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "layers: [784, 256, 256, 10]\nepochs: 2\nflip:\n"
                 "  device: %s/configs/devices/%s\n  persistent: true\n"
                 "  curriculum: [{epoch: 0, operating_point: %s}]\n",
                 APXSIM_SOURCE_ROOT, devs[d].file, devs[d].point);
        train_recipe r;
        apx_error err = {0};
        cfg_doc *doc = NULL;
        CU_ASSERT_EQUAL_FATAL(parse(text, &r, &err, &doc), APX_OK);
        CU_ASSERT_PTR_NOT_NULL(r.flip.device_doc);
        bnn_model m;
        train_net *net = flip_net(&r, &m);
        train_flipper f;
        CU_ASSERT_EQUAL_FATAL(train_flipper_init(&f, &r.flip, r.seed, net, &m, &err), APX_OK);
        uint64_t *mild[3], *harsh[3], n_mild, n_harsh;
        size_t nm[3], nh[3];
        CU_ASSERT_EQUAL_FATAL(train_flipper_draw(&f, net, 0, 0, &n_mild, &err), APX_OK);
        save_flips(net, mild, nm);
        CU_ASSERT_EQUAL_FATAL(train_flipper_draw(&f, net, 1, 0, &n_harsh, &err), APX_OK);
        save_flips(net, harsh, nh);
        CU_ASSERT(n_mild > 0 && n_harsh > n_mild);
        for (uint32_t l = 0; l < 3; l++) {
            CU_ASSERT_EQUAL(shared(mild[l], nm[l], harsh[l], nh[l]), nm[l]);
            free(mild[l]);
            free(harsh[l]);
        }
        train_flipper_free(&f);
        train_net_free(net);
        bnn_free(&m);
        train_recipe_free(&r);
        CU_ASSERT_PTR_NULL(r.flip.device_doc);
        cfg_free(doc);
    }
    train_recipe r;
    apx_error err = {0};
    CU_ASSERT_EQUAL(parse("layers: [784, 16, 10]\nflip:\n  device: /nonexistent/dev.yaml\n"
                          "  operating_point: {trcd: 10}\n",
                          &r, &err, NULL),
                    APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "recipe.yaml:3:11: device:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/dev.yaml"));
    train_recipe_free(&r);
}

/* Device faults of every kind become sign flips only where they change the
 * stored bit (1 <-> wb > 0; the output layer's bits inverted when Scale < 0,
 * as export stores them). */
static void test_flips_from_faults(void) {
    static const uint32_t w[] = {4, 2, 2};
    train_recipe r;
    train_recipe_defaults(&r);
    set_layers(&r, w, 3, NULL, NULL);
    apx_error err = {0};
    train_net *net = train_net_new(&r, 2, 2, 2, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    /* Layer 0: weights + - + - + - + - (bits 1 0 1 0 ...). */
    for (uint32_t l = 0; l < 2; l++)
        for (uint32_t i = 0; i < net->layer[l].in * net->layer[l].out; i++)
            net->layer[l].w[i] = i % 2 ? -0.5f : 0.5f;
    train_net_binarize(net);
    static const uint8_t kinds[] = {FAULT_FLIP, FAULT_FLIP,  FAULT_STUCK0, FAULT_STUCK0,
                                    FAULT_STUCK1, FAULT_STUCK1, FAULT_DD0, FAULT_DD1};
    /* bit i stores i % 2 == 0 ? 1 : 0 */
    static const int want0[] = {1, 1, 1, 0, 0, 1, 0, 0};
    fmap fm;
    fmap_init(&fm, 8);
    for (uint64_t b = 0; b < 8; b++) CU_ASSERT_EQUAL(fmap_push(&fm, b, kinds[b], &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(train_layer_flips_from_faults(net, 0, &fm, &err), APX_OK);
    size_t k = 0;
    for (uint64_t b = 0; b < 8; b++)
        if (want0[b]) {
            CU_ASSERT(k < net->layer[0].n_flip && net->layer[0].flip[k] == b);
            k++;
        }
    CU_ASSERT_EQUAL(net->layer[0].n_flip, k);
    /* Output layer (4 weights), Scale < 0: stored bits are inverted, so a
     * stuck-at-0 flips the -1 weights and spares the +1 ones. */
    fmap_reset(&fm, 4);
    for (uint64_t b = 0; b < 4; b++) CU_ASSERT_EQUAL(fmap_push(&fm, b, FAULT_STUCK0, &err), APX_OK);
    net->scale = -1.0f;
    CU_ASSERT_EQUAL_FATAL(train_layer_flips_from_faults(net, 1, &fm, &err), APX_OK);
    const train_layer *out = &net->layer[1];
    CU_ASSERT(out->n_flip == 2 && out->flip[0] == 1 && out->flip[1] == 3);
    net->scale = 1.0f;
    CU_ASSERT_EQUAL_FATAL(train_layer_flips_from_faults(net, 1, &fm, &err), APX_OK);
    CU_ASSERT(out->n_flip == 2 && out->flip[0] == 0 && out->flip[1] == 2);
    /* A map of the wrong size is refused. */
    CU_ASSERT_EQUAL(train_layer_flips_from_faults(net, 0, &fm, &err), APX_EWORK);
    fmap_free(&fm);
    train_net_free(net);
}

/* ---- (8) flip training end to end ---------------------------------------- */

typedef struct flip_log {
    uint32_t calls;
    uint32_t step[8];
    double rate[8], seen[8];
} flip_log;

static void record_flips(void *ctx, const train_epoch_stats *s) {
    flip_log *f = ctx;
    if (f->calls < 8) {
        f->step[f->calls] = s->flip_step;
        f->rate[f->calls] = s->flip_rate;
    }
    f->calls++;
}

/* The curriculum takes effect epoch by epoch: the schedule entry of each
 * epoch is the last one that has started, and the measured share of
 * flipped weights follows its rate (binomial bounds over the epoch's
 * batches x weights). */
static void test_curriculum(void) {
    train_recipe r;
    tiny_recipe(&r, 9);
    r.epochs = 4;
    r.flip.on = 1;
    r.flip.n_steps = 3;
    r.flip.step[0] = (train_flip_step){.epoch = 0, .p = 0.0};
    r.flip.step[1] = (train_flip_step){.epoch = 1, .p = 0.02};
    r.flip.step[2] = (train_flip_step){.epoch = 3, .p = 0.2};
    static const uint32_t want_step[] = {0, 1, 1, 2};
    for (uint32_t e = 0; e < 4; e++) CU_ASSERT_EQUAL(train_flip_step_at(&r.flip, e), want_step[e]);
    CU_ASSERT_EQUAL(train_flip_step_at(&r.flip, 100), 2);
    dataset tr;
    make_synthetic(8, 600, &tr);
    flip_log log = {0};
    bnn_model m;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, record_flips, &log, NULL, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(log.calls, 4);
    double exposed = 12.0 * (64 * 32 + 32 * 32 + 32 * 4);  /* 12 batches of 50 */
    for (uint32_t e = 0; e < 4; e++) {
        double p = r.flip.step[want_step[e]].p;
        CU_ASSERT_EQUAL(log.step[e], want_step[e]);
        CU_ASSERT(binomial_ok((uint64_t)llround(log.rate[e] * exposed), exposed, p));
    }
    CU_ASSERT_EQUAL(log.rate[0], 0.0);
    bnn_free(&m);
    dataset_free(&tr);
}

/* A model file's bytes. */
static char *saved_bytes(const bnn_model *m, const char *name, size_t *len) {
    apx_error err = {0};
    const char *path = test_path(name);
    CU_ASSERT_EQUAL_FATAL(bnn_save(m, path, &err), APX_OK);
    char *bytes = test_slurp(path, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    return bytes;
}

/* Flip training is reproducible from its seed: the same recipe gives a
 * bit-identical .bnn, for plain per-batch flips (mask) and device-aware
 * persistent flips (STE) with MHL and the margin regularizer; another seed
 * gives another model. */
static void test_flip_determinism(void) {
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    dataset tr;
    make_synthetic(6, 600, &tr);
    apx_error err = {0};
    cfg_doc *doc = NULL;
    train_recipe dev;
    CU_ASSERT_EQUAL_FATAL(
        parse("flip: {gradient: ste, persistent: true, device: {kind: uniform},\n"
              "       operating_point: {ber: 0.05}}\nloss: mhl\nmhl_margin: 16\n"
              "margin_reg: {lambda: 0.1, margin: 0.2}\n",
              &dev, &err, &doc),
        APX_OK);
    for (int variant = 0; variant < 2; variant++) {
        train_recipe r;
        tiny_recipe(&r, 21);
        r.epochs = 2;
        if (variant) {
            r.flip = dev.flip;
            r.loss = dev.loss;
            r.mhl_margin = dev.mhl_margin;
            r.reg_lambda = dev.reg_lambda;
            r.reg_margin = dev.reg_margin;
        } else {
            r.flip.on = 1;
            r.flip.n_steps = 1;
            r.flip.gradient = TRAIN_FLIP_MASK;
            r.flip.step[0].p = 0.1;
        }
        bnn_model a, b, c;
        CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &a, &err), APX_OK);
        CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &b, &err), APX_OK);
        r.seed = 22;
        CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, NULL, NULL, NULL, NULL, &c, &err), APX_OK);
        size_t la, lb, lc;
        char *ba = saved_bytes(&a, "flip-a.bnn", &la), *bb = saved_bytes(&b, "flip-b.bnn", &lb);
        char *bc = saved_bytes(&c, "flip-c.bnn", &lc);
        CU_ASSERT(la == lb && memcmp(ba, bb, la) == 0);
        CU_ASSERT(!(la == lc && memcmp(ba, bc, la) == 0));
        free(ba);
        free(bb);
        free(bc);
        bnn_free(&a);
        bnn_free(&b);
        bnn_free(&c);
    }
    cfg_free(doc);
    dataset_free(&tr);
    openblas_set_num_threads(threads);
}

/* Every mode still learns the synthetic task as a packed model: flip
 * training at p = 0.1 in both gradient variants, MHL, the margin regularizer,
 * and the BN re-estimation at a BER. Also: flip training makes the packed
 * model more tolerant of the same BER at test time than standard training
 * (accuracy under uniform weight flips, averaged over 10 chips). */
static double accuracy_under_flips(const bnn_model *m, const dataset *te, double ber) {
    bnn_workspace *ws = bnn_workspace_new(m);
    uint64_t *img = malloc(m->image_words * sizeof *img);
    CU_ASSERT_FATAL(ws && img);
    double acc = 0;
    for (uint32_t chip = 0; chip < 10; chip++) {
        memcpy(img, m->image, m->image_words * sizeof *img);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            const bnn_layer *L = &m->layers[l];
            nested_list hits = {0};
            CU_ASSERT_FATAL(nested_draw(rng_key_make(77, chip, l), (uint64_t)L->in * L->out, ber,
                                        &hits) == 0);
            for (size_t i = 0; i < hits.n; i++) {
                uint64_t r = hits.v[i].pos / L->in, c = hits.v[i].pos % L->in;
                img[L->offset + r * L->words + c / 64] ^= 1ull << (c % 64);
            }
            nested_list_free(&hits);
        }
        acc += (double)bnn_eval_range(m, img, te, 0, te->n, ws, NULL) / te->n / 10;
    }
    free(img);
    bnn_workspace_free(ws);
    return acc;
}

static void test_modes_learn(void) {
    dataset tr, te;
    make_synthetic(1, 2000, &tr);
    make_synthetic(2, 500, &te);
    apx_error err = {0};
    double at_ber[2] = {0, 0};
    for (int mode = 0; mode < 6; mode++) {
        train_recipe r;
        tiny_recipe(&r, 3);
        if (mode == 1 || mode == 2) {
            r.flip.on = 1;
            r.flip.n_steps = 1;
            r.flip.step[0].p = 0.1;
            r.flip.gradient = mode == 1 ? TRAIN_FLIP_MASK : TRAIN_FLIP_STE;
        } else if (mode == 3) {
            r.loss = TRAIN_LOSS_MHL;
            r.mhl_margin = 16;
        } else if (mode == 4) {
            r.reg_lambda = 1.0;
            r.reg_margin = 0.1;
        } else if (mode == 5) {
            r.bn_recalibrate = 1000;
            r.bn_reestimate_ber = 0.05;
        }
        progress_log log = {.epochs_in_order = 1, .lr_ok = 1, .rates_ok = 1,
                            .lr0 = r.lr, .gamma = r.lr_gamma, .step = r.lr_step};
        bnn_model m;
        CU_ASSERT_EQUAL_FATAL(train_run(&r, &tr, &te, record_progress, &log, NULL, &m, &err),
                              APX_OK);
        if (!(log.last.test_accuracy > 0.85))
            fprintf(stderr, "\n  mode %d: test accuracy %.3f", mode, log.last.test_accuracy);
        CU_ASSERT(log.last.test_accuracy > 0.85);
        CU_ASSERT(log.rates_ok);
        if (mode < 2) at_ber[mode] = accuracy_under_flips(&m, &te, 0.1);
        bnn_free(&m);
    }
    if (!(at_ber[1] > at_ber[0]))
        fprintf(stderr, "\n  at BER 0.1: standard %.3f, flip-trained %.3f", at_ber[0], at_ber[1]);
    CU_ASSERT(at_ber[1] > at_ber[0]);
    dataset_free(&tr);
    dataset_free(&te);
}

/* BN re-estimation at BER p (facts bnn.md 2 and 4.5): under symmetric weight
 * flips the first layer's pre-activation has mean (1 - 2p) a and variance
 * grown by 4p(1 - p) sum_j x_j^2, so the re-estimated means of layer 0 are
 * (1 - 2p) times the clean ones (slope over its neurons) and the variances
 * grow by that amount on average; wb is clean afterwards; p = 0 is the plain
 * re-estimation exactly. */
static void test_bn_reestimate_ber(void) {
    dataset tr;
    make_synthetic(12, 2000, &tr);
    train_recipe r;
    tiny_recipe(&r, 4);
    r.epochs = 1;
    bnn_model m;
    train_net *net = NULL;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(train_fit(&r, &tr, NULL, NULL, NULL, NULL, &m, &net, &err), APX_OK);
    bnn_free(&m);
    const train_layer *L = &net->layer[0];
    double mean0[32], var0[32], mean1[32], var1[32];
    /* (The re-estimation sums a - the old mean, so each call starts from the
     * same running statistics.) */
    double start_mean[32], start_var[32];
    memcpy(start_mean, L->run_mean, sizeof start_mean);
    memcpy(start_var, L->run_var, sizeof start_var);
    train_net_recalibrate_bn(net, &tr, tr.n, tr.n);
    memcpy(mean0, L->run_mean, sizeof mean0);
    memcpy(var0, L->run_var, sizeof var0);
    rng_key key = rng_key_make(5, 6, 7);
    memcpy(L->run_mean, start_mean, sizeof start_mean);
    memcpy(L->run_var, start_var, sizeof start_var);
    CU_ASSERT_EQUAL(train_net_recalibrate_bn_ber(net, &tr, tr.n, tr.n, 0.0, key, &err), APX_OK);
    CU_ASSERT(memcmp(mean0, L->run_mean, sizeof mean0) == 0);
    CU_ASSERT(memcmp(var0, L->run_var, sizeof var0) == 0);
    memcpy(L->run_mean, start_mean, sizeof start_mean);
    memcpy(L->run_var, start_var, sizeof start_var);
    const double p = 0.2;
    CU_ASSERT_EQUAL(train_net_recalibrate_bn_ber(net, &tr, tr.n, tr.n, p, key, &err), APX_OK);
    memcpy(mean1, L->run_mean, sizeof mean1);
    memcpy(var1, L->run_var, sizeof var1);
    double sxy = 0, sxx = 0, sum_x2 = 0, mean_x[64] = {0}, sum_mean2 = 0, grew = 0;
    for (uint32_t i = 0; i < tr.n; i++)
        for (uint32_t j = 0; j < 64; j++) {
            double x = dataset_image(&tr, i)[j] / 255.0;
            sum_x2 += x * x / tr.n;
            mean_x[j] += x / tr.n;
        }
    for (uint32_t j = 0; j < 64; j++) sum_mean2 += mean_x[j] * mean_x[j];
    for (uint32_t j = 0; j < 32; j++) {
        sxy += mean0[j] * mean1[j];
        sxx += mean0[j] * mean0[j];
        grew += (var1[j] - (1 - 2 * p) * (1 - 2 * p) * var0[j]) / 32;
    }
    /* A batch shares its flips, so a neuron's re-estimated mean carries the
     * noise of 40 masks (2000 samples in batches of 50): standard deviation
     * sqrt(4p(1 - p) sum_j mean(x_j)^2 / 40) per neuron, and
     * that / sqrt(sum mean0^2) on the slope. */
    double slope = sxy / sxx, want = 4 * p * (1 - p) * sum_x2;
    double slope_sd = sqrt(4 * p * (1 - p) * sum_mean2 / 40.0 / sxx);
    if (fabs(slope - (1 - 2 * p)) > 5 * slope_sd || fabs(grew / want - 1) > 0.1)
        fprintf(stderr, "\n  slope %.3f (want %.3f +- %.3f), variance growth %.3f (want %.3f)",
                slope, 1 - 2 * p, slope_sd, grew, want);
    CU_ASSERT(fabs(slope - (1 - 2 * p)) < 5 * slope_sd);
    CU_ASSERT(slope_sd < 0.05);  /* the check can tell 1 - 2p from 1 */
    CU_ASSERT(fabs(grew / want - 1) < 0.1);
    /* The weights are clean again. */
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *K = &net->layer[l];
        CU_ASSERT_EQUAL(K->n_flip, 0);
        for (uint32_t i = 0; i < K->in * K->out; i++)
            if (K->wb[i] != (K->w[i] > 0 ? 1.0f : -1.0f)) {
                CU_FAIL("wb not restored");
                break;
            }
    }
    train_net_free(net);
    dataset_free(&tr);
}

void add_train_suite(void) {
    TEST_SUITE("train",
               {"gradient check (BN, Hardtanh mask, weights, Scale)", test_gradient_check},
               {"gradient check (conv, zero padding, max-pool, BN2d)", test_conv_gradient_check},
               {"tiny network trains to > 90% as a packed model", test_tiny_training},
               {"exported model matches float eval network", test_export_matches_float},
               {"tiny CNN trains to > 90% and exports exactly", test_cnn_training},
               {"BN recalibration gives eval-mode statistics", test_bn_recalibration},
               {"same seed gives the same model", test_determinism},
               {"stop flag and shape mismatches", test_stop_and_mismatch},
               {"recipe YAML", test_recipe_yaml},
               {"recipe YAML with conv layers", test_recipe_conv_yaml},
               {"recipe YAML: flips, losses, regularizer", test_recipe_flip_yaml},
               {"shipped recipes", test_shipped_recipe},
               {"shipped VGG3 model", test_shipped_vgg3_model},
               {"zoo recipes", test_zoo_recipes},
               {"MHL value and gradient", test_mhl_gradient},
               {"margin regularizer value and gradient", test_margin_reg_gradient},
               {"flip gradients: mask inverts, STE passes", test_flip_gradient_mask_vs_ste},
               {"flips at rate p, fresh or persistent, nested", test_flip_rates},
               {"uniform device flips equal plain flips", test_device_uniform_flips},
               {"device files: DDR4 and RRAM flips, nested", test_device_files},
               {"device faults become sign flips", test_flips_from_faults},
               {"curriculum applied per epoch", test_curriculum},
               {"flip training is reproducible", test_flip_determinism},
               {"every mode learns; flips buy tolerance", test_modes_learn},
               {"BN re-estimation at a BER", test_bn_reestimate_ber});
}
