/* train.c - training a fully connected BNN (train.h, train_internal.h).
 *
 * The float network follows the group's FC model (facts bnn.md sections 1
 * and 5): Linear (binarised weights, no bias) -> BatchNorm1d -> Hardtanh ->
 * sign for every hidden layer, last Linear -> * Scale -> softmax
 * cross-entropy. Choices the facts leave open, and what this file does:
 *   - Weight clip: latent weights are clamped to [-weight_clip, weight_clip]
 *     after every step (BinaryConnect). The group's `Clippy` meant to do the
 *     same but its clamp is not in place, so it has no effect (facts 4.2.7);
 *     weight_clip = 0 reproduces that effective behaviour.
 *   - Biases: none (as myay/SPICE-Torch); BN's beta plays that role and is
 *     folded into the threshold.
 *   - The last partial batch of an epoch is used if it holds >= 2 samples
 *     (batch norm needs two); a single left-over sample is skipped that epoch
 *     (a different one each epoch, as the order is reshuffled).
 *   - Export of a negative Scale: the output layer's weights are negated and
 *     |Scale| stored, which leaves every score s_c * Scale unchanged; a zero
 *     Scale is stored as FLT_MIN (the argmax of the integer scores is what
 *     the packed model predicts either way).
 * All GEMMs go through CBLAS; ±1 inputs times ±1 weights sum exactly in float
 * (|a| <= fan-in < 2^24), so only the first layer (pixels / 255) rounds. */
#include "train_internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sim/rng.h"

/* rng.h stream identifiers: who draws. */
#define TRAIN_STREAM_INIT 0x54524E49u     /* "TRNI": weight initialisation, per layer */
#define TRAIN_STREAM_SHUFFLE 0x54525348u  /* "TRSH": sample order, per epoch */

#define ADAM_BETA1 0.9
#define ADAM_BETA2 0.999
#define ADAM_EPS 1e-8

#define SCALE_INIT 1e-3f  /* facts bnn.md section 1: Scale initialised to 1e-3 */

/* Fashion-MNIST shape, which every recipe read from YAML trains on. */
#define RECIPE_INPUTS 784u
#define RECIPE_CLASSES 10u

/* ------------------------------------------------------------------------ */
/* Recipe                                                                    */

void train_recipe_defaults(train_recipe *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", "fmnist-fc");
    static const uint32_t fc[] = {784, 2048, 2048, 10};
    r->n_widths = 4;
    memcpy(r->widths, fc, sizeof fc);
    r->seed = 1;
    r->epochs = 10;  /* lower end of the README's "10-100 epochs" */
    r->batch = 256;
    r->lr = 1e-3;
    r->lr_step = 25;
    r->lr_gamma = 0.5;
    r->bn_eps = 1e-5;       /* PyTorch BatchNorm1d defaults */
    r->bn_momentum = 0.1;
    r->weight_clip = 1.0;
    r->train_limit = 0;
    r->output = NULL;
    r->data_dir = NULL;
}

static int read_layers(const cfg_node *root, train_recipe *r, apx_error *err) {
    const cfg_node *layers = cfg_find(root, "layers");
    if (!layers) return APX_OK;
    if (layers->kind != CFG_SEQ)
        return cfg_fail(layers, err, "'layers' must be a list of widths, e.g. [784, 2048, 2048, 10]");
    if (layers->n < 3 || layers->n > TRAIN_MAX_LAYERS + 1)
        return cfg_fail(layers, err,
                        "'layers' needs between 3 and %u widths (input, at least one hidden "
                        "layer, classes); got %zu",
                        TRAIN_MAX_LAYERS + 1, layers->n);
    for (size_t i = 0; i < layers->n; i++) {
        long long v;
        if (cfg_as_int(layers->items[i], 1, BNN_MAX_WIDTH, &v, err)) return err->code;
        r->widths[i] = (uint32_t)v;
    }
    r->n_widths = (uint32_t)layers->n;
    if (r->widths[0] != RECIPE_INPUTS)
        return cfg_fail(layers->items[0], err,
                        "the first width must be %u (28x28 Fashion-MNIST pixels); got %u",
                        RECIPE_INPUTS, r->widths[0]);
    if (r->widths[r->n_widths - 1] != RECIPE_CLASSES)
        return cfg_fail(layers->items[layers->n - 1], err,
                        "the last width must be %u (Fashion-MNIST classes); got %u",
                        RECIPE_CLASSES, r->widths[r->n_widths - 1]);
    return APX_OK;
}

int train_recipe_from_yaml(const cfg_node *root, train_recipe *r, apx_error *err) {
    static const char *const keys[] = {
        "name",        "layers",      "seed",       "epochs",        "batch",
        "lr",          "lr_step",     "lr_gamma",   "bn_eps",        "bn_momentum",
        "weight_clip", "train_limit", "output",     "data_dir",      NULL};
    train_recipe_defaults(r);
    if (cfg_expect_map(root, "training recipe", keys, err)) return err->code;

    const char *name = NULL;
    if (cfg_get_string(root, "name", 0, NULL, &name, err)) return err->code;
    if (name) {
        if (!name[0] || strlen(name) >= sizeof r->name)
            return cfg_fail(cfg_find(root, "name"), err,
                            "'name' must have 1 to %zu characters", sizeof r->name - 1);
        snprintf(r->name, sizeof r->name, "%s", name);
    }
    if (read_layers(root, r, err)) return err->code;

    long long v;
    if (cfg_get_int(root, "seed", 0, (long long)r->seed, 0, INT64_MAX, &v, err)) return err->code;
    r->seed = (uint64_t)v;
    if (cfg_get_int(root, "epochs", 0, r->epochs, 1, 100000, &v, err)) return err->code;
    r->epochs = (uint32_t)v;
    if (cfg_get_int(root, "batch", 0, r->batch, 2, 65536, &v, err)) return err->code;
    r->batch = (uint32_t)v;
    if (cfg_get_int(root, "lr_step", 0, r->lr_step, 1, 100000, &v, err)) return err->code;
    r->lr_step = (uint32_t)v;
    if (cfg_get_int(root, "train_limit", 0, r->train_limit, 0, IDX_MAX_ITEMS, &v, err))
        return err->code;
    r->train_limit = (uint32_t)v;

    if (cfg_get_double(root, "lr", 0, r->lr, 1e-12, 10.0, &r->lr, err)) return err->code;
    if (cfg_get_double(root, "lr_gamma", 0, r->lr_gamma, 1e-12, 1.0, &r->lr_gamma, err))
        return err->code;
    if (cfg_get_double(root, "bn_eps", 0, r->bn_eps, 1e-12, 1.0, &r->bn_eps, err))
        return err->code;
    if (cfg_get_double(root, "bn_momentum", 0, r->bn_momentum, 0.0, 1.0, &r->bn_momentum, err))
        return err->code;
    if (cfg_get_double(root, "weight_clip", 0, r->weight_clip, 0.0, 1e6, &r->weight_clip, err))
        return err->code;

    if (cfg_get_string(root, "output", 0, NULL, &r->output, err)) return err->code;
    if (cfg_get_string(root, "data_dir", 0, NULL, &r->data_dir, err)) return err->code;
    return APX_OK;
}

/* ------------------------------------------------------------------------ */
/* The float network                                                        */

void train_net_free(train_net *net) {
    if (!net) return;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        float **fp[] = {&L->w,      &L->wb,     &L->gw,    &L->mw,    &L->vw,   &L->gamma,
                        &L->beta,   &L->ggamma, &L->gbeta, &L->mgamma, &L->vgamma, &L->mbeta,
                        &L->vbeta,  &L->mean,   &L->invstd, &L->a,    &L->xhat, &L->y,
                        &L->act,    &L->grad};
        for (size_t i = 0; i < sizeof fp / sizeof fp[0]; i++) free(*fp[i]);
        free(L->run_mean);
        free(L->run_var);
    }
    free(net->input);
    free(net->labels);
    free(net->logits);
    free(net->dlogits);
    free(net->acc_a);
    free(net->acc_b);
    free(net);
}

static float *falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

train_net *train_net_new(const uint32_t *widths, uint32_t n_widths, uint32_t max_batch,
                         double bn_eps, double bn_momentum, double weight_clip,
                         uint64_t seed, apx_error *err) {
    if (n_widths < 3 || n_widths > TRAIN_MAX_LAYERS + 1) {
        apx_fail(err, APX_EINPUT, "a network needs 3 to %u widths, got %u",
                 TRAIN_MAX_LAYERS + 1, n_widths);
        return NULL;
    }
    if (max_batch < 2) {
        apx_fail(err, APX_EINPUT, "batch must be at least 2 (batch norm), got %u", max_batch);
        return NULL;
    }
    uint32_t widest = 0;
    for (uint32_t i = 0; i < n_widths; i++) {
        if (widths[i] == 0 || widths[i] > BNN_MAX_WIDTH) {
            apx_fail(err, APX_EINPUT, "width %u of layer list entry %u is out of range 1..%u",
                     widths[i], i, BNN_MAX_WIDTH);
            return NULL;
        }
        if (widths[i] > widest) widest = widths[i];
    }
    train_net *net = calloc(1, sizeof *net);
    if (!net) goto oom;
    net->n_layers = n_widths - 1;
    net->max_batch = max_batch;
    net->n_classes = widths[n_widths - 1];
    net->bn_eps = bn_eps;
    net->bn_momentum = bn_momentum;
    net->weight_clip = weight_clip;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        L->in = widths[l];
        L->out = widths[l + 1];
        L->hidden = l + 1 < net->n_layers;
        size_t nw = (size_t)L->in * L->out, nb = (size_t)max_batch * L->out;
        if (!(L->w = falloc(nw)) || !(L->wb = falloc(nw)) || !(L->gw = falloc(nw)) ||
            !(L->mw = falloc(nw)) || !(L->vw = falloc(nw)) || !(L->a = falloc(nb)) ||
            !(L->grad = falloc(nb)))
            goto oom;
        if (L->hidden) {
            if (!(L->gamma = falloc(L->out)) || !(L->beta = falloc(L->out)) ||
                !(L->ggamma = falloc(L->out)) || !(L->gbeta = falloc(L->out)) ||
                !(L->mgamma = falloc(L->out)) || !(L->vgamma = falloc(L->out)) ||
                !(L->mbeta = falloc(L->out)) || !(L->vbeta = falloc(L->out)) ||
                !(L->mean = falloc(L->out)) || !(L->invstd = falloc(L->out)) ||
                !(L->xhat = falloc(nb)) || !(L->y = falloc(nb)) || !(L->act = falloc(nb)) ||
                !(L->run_mean = calloc(L->out, sizeof(double))) ||
                !(L->run_var = calloc(L->out, sizeof(double))))
                goto oom;
        }
    }
    if (!(net->input = falloc((size_t)max_batch * widths[0])) ||
        !(net->labels = calloc(max_batch, 1)) ||
        !(net->logits = falloc((size_t)max_batch * net->n_classes)) ||
        !(net->dlogits = falloc((size_t)max_batch * net->n_classes)) ||
        !(net->acc_a = calloc(widest, sizeof(double))) ||
        !(net->acc_b = calloc(widest, sizeof(double))))
        goto oom;
    train_net_init(net, seed);
    return net;
oom:
    train_net_free(net);
    apx_fail(err, APX_EWORK, "out of memory allocating the training network");
    return NULL;
}

static inline float binarize(float w) { return w > 0.0f ? 1.0f : -1.0f; }

void train_net_binarize(train_net *net) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        size_t nw = (size_t)L->in * L->out;
        for (size_t i = 0; i < nw; i++)
            L->wb[i] = net->float_weights ? L->w[i] : binarize(L->w[i]);
    }
}

void train_net_init(train_net *net, uint64_t seed) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        /* PyTorch's Linear default (kaiming_uniform with a = sqrt(5)) gives
         * this same bound 1/sqrt(fan_in). */
        double bound = 1.0 / sqrt((double)L->in);
        rng_stream s;
        rng_stream_at(&s, rng_key_make(seed, TRAIN_STREAM_INIT, l), 0, 0);
        size_t nw = (size_t)L->in * L->out;
        for (size_t i = 0; i < nw; i++) L->w[i] = (float)((2.0 * rng_unit(&s) - 1.0) * bound);
        memset(L->mw, 0, nw * sizeof(float));
        memset(L->vw, 0, nw * sizeof(float));
        if (L->hidden) {
            for (uint32_t j = 0; j < L->out; j++) {
                L->gamma[j] = 1.0f;
                L->beta[j] = 0.0f;
                L->mgamma[j] = L->vgamma[j] = L->mbeta[j] = L->vbeta[j] = 0.0f;
                L->run_mean[j] = 0.0;
                L->run_var[j] = 1.0;
            }
        }
    }
    net->scale = SCALE_INIT;
    net->mscale = net->vscale = 0.0f;
    net->adam_t = 0;
    train_net_binarize(net);
}

void train_net_load(train_net *net, const dataset *d, const uint32_t *idx, uint32_t batch) {
    uint32_t in = net->layer[0].in;
    for (uint32_t i = 0; i < batch; i++) {
        const uint8_t *p = dataset_image(d, idx[i]);
        float *x = net->input + (size_t)i * in;
        for (uint32_t j = 0; j < in; j++) x[j] = (float)p[j] * (1.0f / 255.0f);
        net->labels[i] = d->labels[idx[i]];
    }
}

/* Batch norm over the batch (training) or with running statistics, then the
 * activation. Statistics are summed in double: the first layer's
 * pre-activations reach hundreds with a small spread. */
static void bn_forward(train_net *net, train_layer *L, uint32_t B, int training) {
    uint32_t n = L->out;
    if (training) {
        double *sum = net->acc_a, *sq = net->acc_b;
        memset(sum, 0, n * sizeof(double));
        memset(sq, 0, n * sizeof(double));
        for (uint32_t i = 0; i < B; i++) {
            const float *a = L->a + (size_t)i * n;
            for (uint32_t j = 0; j < n; j++) sum[j] += a[j];
        }
        for (uint32_t j = 0; j < n; j++) {
            sum[j] /= B;
            L->mean[j] = (float)sum[j];
        }
        for (uint32_t i = 0; i < B; i++) {
            const float *a = L->a + (size_t)i * n;
            for (uint32_t j = 0; j < n; j++) {
                double d = a[j] - sum[j];
                sq[j] += d * d;
            }
        }
        /* Normalise with the biased variance; the running variance gets the
         * unbiased one (PyTorch's convention). */
        double m = net->bn_momentum;
        for (uint32_t j = 0; j < n; j++) {
            double var = sq[j] / B;
            L->invstd[j] = (float)(1.0 / sqrt(var + net->bn_eps));
            L->run_mean[j] = (1.0 - m) * L->run_mean[j] + m * sum[j];
            L->run_var[j] = (1.0 - m) * L->run_var[j] + m * (sq[j] / (B - 1));
        }
    } else {
        for (uint32_t j = 0; j < n; j++) {
            L->mean[j] = (float)L->run_mean[j];
            L->invstd[j] = (float)(1.0 / sqrt(L->run_var[j] + net->bn_eps));
        }
    }
    for (uint32_t i = 0; i < B; i++) {
        size_t o = (size_t)i * n;
        const float *a = L->a + o;
        float *xh = L->xhat + o, *y = L->y + o, *act = L->act + o;
        for (uint32_t j = 0; j < n; j++) {
            xh[j] = (a[j] - L->mean[j]) * L->invstd[j];
            y[j] = L->gamma[j] * xh[j] + L->beta[j];
        }
        if (net->float_activations)
            for (uint32_t j = 0; j < n; j++) act[j] = fminf(1.0f, fmaxf(-1.0f, y[j]));
        else
            for (uint32_t j = 0; j < n; j++) act[j] = y[j] > 0.0f ? 1.0f : -1.0f;
    }
}

void train_net_forward(train_net *net, uint32_t B, int training) {
    const float *x = net->input;
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)L->out, (int)L->in,
                    1.0f, x, (int)L->in, L->wb, (int)L->in, 0.0f, L->a, (int)L->out);
        if (L->hidden) {
            bn_forward(net, L, B, training);
            x = L->act;
        } else {
            size_t n = (size_t)B * L->out;
            for (size_t i = 0; i < n; i++) net->logits[i] = net->scale * L->a[i];
        }
    }
}

double train_net_loss(train_net *net, uint32_t B, uint32_t *correct) {
    uint32_t C = net->n_classes;
    double total = 0.0;
    for (uint32_t i = 0; i < B; i++) {
        const float *z = net->logits + (size_t)i * C;
        float *dz = net->dlogits + (size_t)i * C;
        uint32_t best = 0;
        for (uint32_t c = 1; c < C; c++)
            if (z[c] > z[best]) best = c;
        double zmax = z[best], sum = 0.0;
        for (uint32_t c = 0; c < C; c++) sum += exp((double)z[c] - zmax);
        double lse = zmax + log(sum);
        uint32_t y = net->labels[i];
        total += lse - z[y];
        for (uint32_t c = 0; c < C; c++) {
            double p = exp((double)z[c] - lse);
            dz[c] = (float)((p - (c == y ? 1.0 : 0.0)) / B);
        }
        if (correct && best == y) (*correct)++;
    }
    return total / B;
}

/* Turns L->grad from dL/d(act) into dL/d(a): the Hardtanh/sign STE mask, the
 * BN affine gradients, and the batch-norm backward with batch statistics:
 *   da = invstd / B * (B * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)). */
static void bn_backward(train_net *net, train_layer *L, uint32_t B) {
    uint32_t n = L->out;
    double *sg = net->acc_a, *sgx = net->acc_b;  /* sum dy, sum dy * xhat */
    memset(sg, 0, n * sizeof(double));
    memset(sgx, 0, n * sizeof(double));
    for (uint32_t i = 0; i < B; i++) {
        size_t o = (size_t)i * n;
        float *g = L->grad + o;
        const float *y = L->y + o, *xh = L->xhat + o;
        for (uint32_t j = 0; j < n; j++) {
            float dy = fabsf(y[j]) <= 1.0f ? g[j] : 0.0f;
            g[j] = dy;
            sg[j] += dy;
            sgx[j] += (double)dy * xh[j];
        }
    }
    for (uint32_t j = 0; j < n; j++) {
        L->gbeta[j] = (float)sg[j];
        L->ggamma[j] = (float)sgx[j];
        /* Reuse the sums as the per-neuron constants of the da formula. */
        sg[j] = L->gamma[j] * sg[j] / B;
        sgx[j] = L->gamma[j] * sgx[j] / B;
    }
    for (uint32_t i = 0; i < B; i++) {
        size_t o = (size_t)i * n;
        float *g = L->grad + o;
        const float *xh = L->xhat + o;
        for (uint32_t j = 0; j < n; j++)
            g[j] = L->invstd[j] *
                   (float)(L->gamma[j] * g[j] - sg[j] - xh[j] * sgx[j]);
    }
}

void train_net_backward(train_net *net, uint32_t B) {
    train_layer *out = &net->layer[net->n_layers - 1];
    size_t n = (size_t)B * out->out;
    double gs = 0.0;
    for (size_t i = 0; i < n; i++) {
        gs += (double)net->dlogits[i] * out->a[i];
        out->grad[i] = net->dlogits[i] * net->scale;
    }
    net->gscale = (float)gs;
    for (uint32_t l = net->n_layers; l-- > 0;) {
        train_layer *L = &net->layer[l];
        if (L->hidden) bn_backward(net, L, B);
        const float *x = l == 0 ? net->input : net->layer[l - 1].act;
        /* dW = dA^T X (identity STE for the weight binarisation). */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)L->out, (int)L->in, (int)B,
                    1.0f, L->grad, (int)L->out, x, (int)L->in, 0.0f, L->gw, (int)L->in);
        if (l > 0) /* dX = dA Wb: the gradient of the previous layer's output */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)L->in,
                        (int)L->out, 1.0f, L->grad, (int)L->out, L->wb, (int)L->in, 0.0f,
                        net->layer[l - 1].grad, (int)L->in);
    }
}

typedef struct adam_step {
    float lr_corr;        /* lr / (1 - beta1^t) */
    float inv_sqrt_bc2;   /* 1 / sqrt(1 - beta2^t) */
} adam_step;

static void adam_update(float *p, const float *g, float *m, float *v, size_t n, adam_step s) {
    const float b1 = (float)ADAM_BETA1, b2 = (float)ADAM_BETA2, eps = (float)ADAM_EPS;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= s.lr_corr * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + eps);
    }
}

/* Adam on one weight matrix fused with the clip and the refresh of wb, in
 * one pass over the five arrays (the step is bound by memory traffic). The
 * sign is computed on the bits, without a branch: latent signs are random,
 * and the branch GCC makes of `w > 0 ? 1 : -1` here mispredicts half the
 * time. */
static void adam_weights(const train_net *net, train_layer *L, adam_step s) {
    const float b1 = (float)ADAM_BETA1, b2 = (float)ADAM_BETA2, eps = (float)ADAM_EPS;
    const float clip = net->weight_clip > 0 ? (float)net->weight_clip : INFINITY;
    float *restrict w = L->w, *restrict wb = L->wb, *restrict m = L->mw, *restrict v = L->vw;
    const float *restrict g = L->gw;
    size_t n = (size_t)L->in * L->out;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float wi = w[i] - s.lr_corr * mi / (sqrtf(vi) * s.inv_sqrt_bc2 + eps);
        wi = wi > clip ? clip : wi;
        wi = wi < -clip ? -clip : wi;
        w[i] = wi;
        /* +1.0f or -1.0f (bits 0x3f800000 | sign): -1 iff wi <= 0, +0 included */
        uint32_t u;
        memcpy(&u, &wi, sizeof u);
        uint32_t out = 0x3f800000u | ((u >> 31 | (uint32_t)(u == 0)) << 31);
        memcpy(&wb[i], &out, sizeof out);
    }
    if (net->float_weights) memcpy(wb, w, n * sizeof(float));
}

void train_net_adam(train_net *net, double lr) {
    net->adam_t++;
    double t = (double)net->adam_t;
    adam_step s = {(float)(lr / (1.0 - pow(ADAM_BETA1, t))),
                   (float)(1.0 / sqrt(1.0 - pow(ADAM_BETA2, t)))};
    for (uint32_t l = 0; l < net->n_layers; l++) {
        train_layer *L = &net->layer[l];
        adam_weights(net, L, s);
        if (L->hidden) {
            adam_update(L->gamma, L->ggamma, L->mgamma, L->vgamma, L->out, s);
            adam_update(L->beta, L->gbeta, L->mbeta, L->vbeta, L->out, s);
        }
    }
    adam_update(&net->scale, &net->gscale, &net->mscale, &net->vscale, 1, s);
}

void train_net_export(const train_net *net, bnn_model *m) {
    for (uint32_t l = 0; l < net->n_layers; l++) {
        const train_layer *L = &net->layer[l];
        bnn_layer *ML = &m->layers[l];
        int negate = !L->hidden && net->scale < 0.0f;
        for (uint32_t r = 0; r < L->out; r++) {
            const float *w = L->w + (size_t)r * L->in;
            for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(m, l, r, c, (w[c] > 0.0f) ^ negate);
        }
        if (L->hidden) {
            /* Layer 0 is trained on p / 255 but the packed U8 layer sums w * p. */
            double in_scale = l == 0 ? 255.0 : 1.0;
            for (uint32_t r = 0; r < L->out; r++)
                bnn_fold_bn(L->gamma[r], L->beta[r], L->run_mean[r], L->run_var[r], net->bn_eps,
                            in_scale, in_scale * L->in, &ML->threshold[r], &ML->direction[r]);
        } else {
            float s = fabsf(net->scale);
            ML->scale = s > 0.0f ? s : FLT_MIN;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The training loop                                                         */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int check_recipe(const train_recipe *r, const dataset *train, const dataset *test,
                        apx_error *err) {
    if (r->n_widths < 3 || r->n_widths > TRAIN_MAX_LAYERS + 1)
        return apx_fail(err, APX_EINPUT, "recipe '%s': needs 3 to %u layer widths, got %u",
                        r->name, TRAIN_MAX_LAYERS + 1, r->n_widths);
    uint32_t pixels = train->rows * train->cols, classes = r->widths[r->n_widths - 1];
    if (r->widths[0] != pixels)
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': first width %u does not match the %ux%u = %u pixels of the "
                        "training data",
                        r->name, r->widths[0], train->rows, train->cols, pixels);
    if (classes != train->n_classes)
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': last width %u does not match the %u classes of the data",
                        r->name, classes, train->n_classes);
    if (test && (test->rows != train->rows || test->cols != train->cols ||
                 test->n_classes != train->n_classes))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': test set (%ux%u, %u classes) differs from the training "
                        "set (%ux%u, %u classes)",
                        r->name, test->rows, test->cols, test->n_classes, train->rows,
                        train->cols, train->n_classes);
    if (r->epochs < 1 || r->batch < 2 || r->lr_step < 1 || !(r->lr > 0.0) ||
        !(r->lr_gamma > 0.0) || !(r->bn_eps > 0.0) || !(r->bn_momentum >= 0.0) ||
        !(r->bn_momentum <= 1.0) || !(r->weight_clip >= 0.0))
        return apx_fail(err, APX_EINPUT,
                        "recipe '%s': need epochs >= 1, batch >= 2, lr_step >= 1, lr, lr_gamma "
                        "and bn_eps > 0, bn_momentum in [0, 1], weight_clip >= 0",
                        r->name);
    uint32_t n = r->train_limit && r->train_limit < train->n ? r->train_limit : train->n;
    if (n < 2)
        return apx_fail(err, APX_EINPUT, "recipe '%s': needs at least 2 training samples, has %u",
                        r->name, n);
    return APX_OK;
}

int train_fit(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              train_net **net_out, apx_error *err) {
    if (check_recipe(r, train, test, err)) return err->code;
    uint32_t n = r->train_limit && r->train_limit < train->n ? r->train_limit : train->n;
    uint32_t batch = r->batch < n ? r->batch : n;
    int rc = APX_OK;
    bnn_model model;
    memset(&model, 0, sizeof model);
    bnn_workspace *ws = NULL;
    uint32_t *order = NULL;
    train_net *net = train_net_new(r->widths, r->n_widths, batch, r->bn_eps, r->bn_momentum,
                                   r->weight_clip, r->seed, err);
    if (!net) return err->code;
    if ((rc = bnn_create(&model, r->name, train->rows, train->cols, r->n_widths - 1, r->widths,
                         err)))
        goto done;
    ws = bnn_workspace_new(&model);
    order = malloc((size_t)n * sizeof *order);
    if (!ws || !order) {
        rc = apx_fail(err, APX_EWORK, "out of memory preparing training");
        goto done;
    }
    for (uint32_t epoch = 0; epoch < r->epochs; epoch++) {
        double lr = r->lr * pow(r->lr_gamma, (double)(epoch / r->lr_step));
        /* Each epoch's order is a pure function of (seed, epoch). */
        rng_stream s;
        rng_stream_at(&s, rng_key_make(r->seed, TRAIN_STREAM_SHUFFLE, epoch), 0, 0);
        for (uint32_t i = 0; i < n; i++) order[i] = i;
        for (uint32_t i = n - 1; i > 0; i--) {
            uint32_t j = (uint32_t)rng_below(&s, (uint64_t)i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double t0 = now_s(), loss_sum = 0.0;
        uint32_t correct = 0, seen = 0;
        for (uint32_t start = 0; start + 1 < n; start += batch) {
            if (stop && *stop) {
                rc = apx_fail(err, APX_EINTR, "training '%s' interrupted in epoch %u of %u",
                              r->name, epoch + 1, r->epochs);
                goto done;
            }
            uint32_t B = n - start < batch ? n - start : batch;
            train_net_load(net, train, order + start, B);
            train_net_forward(net, B, 1);
            double loss = train_net_loss(net, B, &correct);
            if (!isfinite(loss)) {
                rc = apx_fail(err, APX_EWORK,
                              "training '%s' diverged in epoch %u (loss %g); try a smaller lr",
                              r->name, epoch + 1, loss);
                goto done;
            }
            train_net_backward(net, B);
            train_net_adam(net, lr);
            loss_sum += loss * B;
            seen += B;
        }
        double t1 = now_s();
        train_net_export(net, &model);
        train_epoch_stats st = {
            .epoch = epoch + 1,
            .epochs = r->epochs,
            .loss = loss_sum / seen,
            .train_accuracy = (double)correct / seen,
            .test_accuracy = -1.0,
            .samples_per_s = seen / (t1 - t0 > 0 ? t1 - t0 : 1e-9),
            .lr = lr,
        };
        if (test && test->n)
            st.test_accuracy =
                (double)bnn_eval_range(&model, model.image, test, 0, test->n, ws, NULL) / test->n;
        st.seconds = now_s() - t0;  /* training, export and test of this epoch */
        if (progress) progress(ctx, &st);
    }
done:
    free(order);
    if (ws) bnn_workspace_free(ws);
    if (rc == APX_OK) {
        *out = model;
        if (net_out) {
            *net_out = net;
            net = NULL;
        }
    } else if (model.layers) {
        bnn_free(&model);
    }
    train_net_free(net);
    return rc;
}

int train_run(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              apx_error *err) {
    return train_fit(r, train, test, progress, ctx, stop, out, NULL, err);
}
