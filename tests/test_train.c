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
        "layers: [784, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, "
        "2048, 2048, 2048, 2048, 2048, 10]\n",  /* more than TRAIN_MAX_LAYERS layers */
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
               {"shipped recipes", test_shipped_recipe},
               {"shipped VGG3 model", test_shipped_vgg3_model});
}
