/* test_train.c - the "train" suite: float backward pass, training, export.
 *
 * Small and fast: a 6-5-4-3 network for the gradient check, a 64-32-32-4
 * network on a synthetic 8x8 four-class data set for everything that trains. */
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

/* ---- (1) gradient check -------------------------------------------------- */

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
    train_net *net = train_net_new(widths, 4, B, 1e-5, 0.1, 0.0, 7, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    net->float_weights = net->float_activations = 1;
    rng_stream s;
    rng_stream_at(&s, rng_key_make(99, 0, 0), 0, 0);
    for (uint32_t i = 0; i < B * widths[0]; i++) net->input[i] = (float)rng_unit(&s);
    for (uint32_t i = 0; i < B; i++) net->labels[i] = (uint8_t)(i % 3);
    for (uint32_t l = 0; l < 2; l++) {
        train_layer *L = &net->layer[l];
        for (uint32_t j = 0; j < L->out; j++) {
            L->gamma[j] = (float)(0.2 + 0.1 * rng_unit(&s));
            L->beta[j] = (float)(0.2 * rng_unit(&s) - 0.1);
        }
        L->beta[0] = 2.0f;
    }
    for (uint32_t l = 0; l < 3; l++) {
        train_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in * L->out; i++) L->w[i] = (float)(2 * rng_unit(&s) - 1);
    }
    net->scale = 0.8f;

    double base = loss_now(net, B);
    CU_ASSERT(isfinite(base) && base > 0);
    train_net_backward(net, B);

    /* Collect every parameter with its analytic gradient. */
    param_ref refs[128];
    uint32_t n = 0;
    for (uint32_t l = 0; l < 3; l++) {
        train_layer *L = &net->layer[l];
        for (uint32_t i = 0; i < L->in * L->out; i++)
            refs[n++] = (param_ref){&L->w[i], L->gw[i], "weight"};
        if (L->hidden)
            for (uint32_t j = 0; j < L->out; j++) {
                refs[n++] = (param_ref){&L->gamma[j], L->ggamma[j], "gamma"};
                refs[n++] = (param_ref){&L->beta[j], L->gbeta[j], "beta"};
            }
    }
    refs[n++] = (param_ref){&net->scale, net->gscale, "scale"};
    CU_ASSERT_EQUAL(n, 6 * 5 + 5 * 4 + 4 * 3 + 2 * (5 + 4) + 1);

    /* Saturated neurons: no gradient reaches their BN parameters. */
    CU_ASSERT_EQUAL(net->layer[0].gbeta[0], 0.0f);
    CU_ASSERT_EQUAL(net->layer[1].ggamma[0], 0.0f);

    const double h = 1e-3;
    uint32_t bad = 0, nonzero = 0;
    for (uint32_t k = 0; k < n; k++) {
        float keep = *refs[k].value;
        *refs[k].value = (float)(keep + h);
        double up = loss_now(net, B);
        *refs[k].value = (float)(keep - h);
        double down = loss_now(net, B);
        *refs[k].value = keep;
        double num = (up - down) / (2 * h), ana = refs[k].grad;
        if (fabs(ana) > 1e-3) nonzero++;
        if (fabs(num - ana) > 5e-4 + 1e-2 * fabs(ana)) {
            if (bad++ < 5)
                fprintf(stderr, "\n  %s %u: numeric %.6g analytic %.6g", refs[k].what, k, num, ana);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(nonzero > n / 2);  /* the check compares real gradients, not zeros */
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
        bnn_workspace *ws = bnn_workspace_new(&m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        uint32_t agree = 0, unexplained = 0, idx[64];
        for (uint32_t start = 0; start < te.n; start += net->max_batch) {
            uint32_t B = te.n - start < net->max_batch ? te.n - start : net->max_batch;
            for (uint32_t i = 0; i < B; i++) idx[i] = start + i;
            train_net_load(net, &te, idx, B);
            train_net_forward(net, B, 0);
            for (uint32_t i = 0; i < B; i++) {
                /* The packed model's integer scores equal the float output
                 * layer's pre-activations (exact integers) unless some hidden
                 * BN output sits within rounding distance of 0. */
                int32_t scores[SYN_CLASSES];
                int cls = bnn_classify(&m, m.image, dataset_image(&te, start + i), ws, scores);
                const float *z = net->logits + (size_t)i * net->n_classes;
                const float *a = net->layer[2].a + (size_t)i * net->n_classes;
                uint32_t best = 0;
                int same_scores = 1;
                for (uint32_t c = 0; c < net->n_classes; c++) {
                    if (z[c] > z[best]) best = c;
                    if ((float)scores[c] != (net->scale < 0 ? -a[c] : a[c])) same_scores = 0;
                }
                if (best == (uint32_t)cls) agree++;
                if (same_scores && best == (uint32_t)cls) continue;
                float closest = INFINITY;
                for (uint32_t l = 0; l + 1 < net->n_layers; l++) {
                    const train_layer *L = &net->layer[l];
                    for (uint32_t j = 0; j < L->out; j++)
                        closest = fminf(closest, fabsf(L->y[(size_t)i * L->out + j]));
                }
                if (!(closest < 1e-4f)) unexplained++;
            }
        }
        CU_ASSERT(agree >= 0.995 * te.n);
        CU_ASSERT_EQUAL(unexplained, 0);
        bnn_workspace_free(ws);
    }
    train_net_free(net);
    bnn_free(&m);
    dataset_free(&tr);
    dataset_free(&te);
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
        "weight_clip: -1\n", "name: ''\n", "seed: -3\n",
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
        CU_ASSERT_EQUAL(parse(bad_values[i], &r, &err, NULL), APX_EINPUT);
    CU_ASSERT_EQUAL(parse("- 1\n- 2\n", &r, &err, NULL), APX_EINPUT);  /* not a mapping */
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
    cfg_free(doc);
}

void add_train_suite(void) {
    TEST_SUITE("train",
               {"gradient check (BN, Hardtanh mask, weights, Scale)", test_gradient_check},
               {"tiny network trains to > 90% as a packed model", test_tiny_training},
               {"exported model matches float eval network", test_export_matches_float},
               {"same seed gives the same model", test_determinism},
               {"stop flag and shape mismatches", test_stop_and_mismatch},
               {"recipe YAML", test_recipe_yaml},
               {"shipped recipe", test_shipped_recipe});
}
