/* train_internal.h - the float training network behind train.h, for tests.
 *
 * Not a public contract: train.c and tests/test_train.c use it; everything
 * else goes through train.h. It exposes the network struct so that tests can
 * set parameters, read gradients (finite-difference checks) and compare the
 * float network's eval-mode predictions with the exported packed model.
 *
 * Layout: every matrix is row-major. Weights of layer l are [out x in] (row r
 * = neuron r, as in PyTorch's Linear); batch buffers are [batch x width]. */
#ifndef APX_TRAIN_INTERNAL_H
#define APX_TRAIN_INTERNAL_H

#include <stdint.h>

#include "train.h"

typedef struct train_layer {
    uint32_t in, out;
    int hidden;            /* 1: BN + Hardtanh/sign follow; 0: the output layer */
    /* [out * in]: latent weights, their binarised float copy (what the GEMMs
     * use), gradient and Adam moments. */
    float *w, *wb, *gw, *mw, *vw;
    /* Hidden layers only, [out]: BN affine parameters, their gradients and
     * Adam moments; running statistics (double: they are folded in double). */
    float *gamma, *beta, *ggamma, *gbeta, *mgamma, *vgamma, *mbeta, *vbeta;
    double *run_mean, *run_var;
    float *mean, *invstd;  /* [out] mean and 1/sqrt(var + eps) used by the last forward */
    /* Batch buffers [max_batch * out]. */
    float *a;              /* pre-activation X * Wb^T */
    float *xhat;           /* hidden: (a - mean) * invstd */
    float *y;              /* hidden: BN output gamma * xhat + beta */
    float *act;            /* hidden: sign(y) (input of the next layer) */
    float *grad;           /* backward scratch: dL/d(act), then dL/d(a) */
} train_layer;

typedef struct train_net {
    uint32_t n_layers;     /* weight layers = n_widths - 1 */
    uint32_t max_batch;
    uint32_t n_classes;
    train_layer layer[TRAIN_MAX_LAYERS];
    float *input;          /* [max_batch * in of layer 0]: pixels / 255 */
    uint8_t *labels;       /* [max_batch] labels of the loaded batch */
    float *logits;         /* [max_batch * n_classes]: scale * a of the last layer */
    float *dlogits;        /* [max_batch * n_classes]: dL/dlogits */
    double *acc_a, *acc_b; /* [widest layer] per-neuron sums over a batch */
    float scale, gscale, mscale, vscale;  /* the learnable output Scale */
    double bn_eps, bn_momentum, weight_clip;
    uint64_t adam_t;       /* Adam steps taken (bias correction) */
    /* Test switches, both 0 in training. float_weights: use the latent
     * weights unbinarised; float_activations: Hardtanh instead of sign. With
     * both set the network is differentiable almost everywhere, so its
     * backward pass can be checked by finite differences. */
    int float_weights, float_activations;
} train_net;

/* Allocates a network for widths[0..n_widths) (n_widths >= 3) and batches of
 * up to max_batch (>= 2) samples, and initialises it (train_net_init). */
train_net *train_net_new(const uint32_t *widths, uint32_t n_widths, uint32_t max_batch,
                         double bn_eps, double bn_momentum, double weight_clip,
                         uint64_t seed, apx_error *err);
void train_net_free(train_net *net);

/* Latent weights uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] from rng.h
 * keyed by (seed, layer); gamma 1, beta 0, running mean 0 and variance 1,
 * Scale 1e-3, Adam state zero. Refreshes wb. */
void train_net_init(train_net *net, uint64_t seed);

/* Recomputes wb from w (after tests change w directly). */
void train_net_binarize(train_net *net);

/* Copies samples idx[0..batch) of d into input (pixels / 255) and labels. */
void train_net_load(train_net *net, const dataset *d, const uint32_t *idx, uint32_t batch);

/* Forward pass over the loaded batch. training: batch statistics (and the
 * running statistics are updated); else running statistics. Fills a, xhat, y,
 * act of every layer and logits. */
void train_net_forward(train_net *net, uint32_t batch, int training);

/* Mean softmax cross-entropy of logits against labels; writes dlogits
 * (gradient of the mean loss) and adds the number of correct argmax
 * predictions (ties -> lowest class) to *correct if non-NULL. */
double train_net_loss(train_net *net, uint32_t batch, uint32_t *correct);

/* Backward pass of the last training-mode forward, from dlogits: fills gw,
 * ggamma, gbeta and gscale. Straight-through: the sign passes gradient where
 * |y| <= 1 (Hardtanh), the weight binarisation passes it unchanged. */
void train_net_backward(train_net *net, uint32_t batch);

/* One Adam step (beta1 0.9, beta2 0.999, eps 1e-8, PyTorch's bias
 * correction) with learning rate lr on every parameter, then the weight clip
 * and the refresh of wb. */
void train_net_adam(train_net *net, double lr);

/* Writes the network into m, which bnn_create made with the same widths:
 * packed weights from the signs of the latent weights, thresholds and
 * directions from bnn_fold_bn on the running statistics, |Scale| (with the
 * output weights negated if Scale < 0). */
void train_net_export(const train_net *net, bnn_model *m);

/* train_run, which also hands back the trained float network in *net_out
 * (if non-NULL; caller frees it with train_net_free). */
int train_fit(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              train_net **net_out, apx_error *err);

#endif
