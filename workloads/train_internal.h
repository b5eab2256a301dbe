/* train_internal.h - the float training network behind train.h, for tests.
 *
 * Not a public contract: train.c and tests/test_train.c use it; everything
 * else goes through train.h. It exposes the network struct so that tests can
 * set parameters, read gradients (finite-difference checks) and compare the
 * float network's eval-mode predictions with the exported packed model.
 *
 * Layout: every matrix is row-major. Weights of layer l are [out x in] (row r
 * = neuron r, as in PyTorch's Linear); for a conv layer in = 9 * in_c and
 * column (kh * 3 + kw) * in_c + c is tap (kh, kw) of input channel c, the
 * bit order of the packed model (workloads/bnn.h). Batch buffers are
 * [batch x size] with size = out_h * out_w * out, each sample HWC (channel
 * fastest); a dense layer has out_h = out_w = 1. Batch norm treats the rows
 * of [batch * out_h * out_w x out] as its samples (BatchNorm2d for conv). */
#ifndef APX_TRAIN_INTERNAL_H
#define APX_TRAIN_INTERNAL_H

#include <stdint.h>

#include "../faultmaps/fmap.h"
#include "../models/nested.h"
#include "../sim/rng.h"
#include "train.h"

typedef struct train_layer {
    uint32_t in, out;      /* fan-in (conv: 9 * in_c), neurons / output channels */
    int hidden;            /* 1: BN + Hardtanh/sign follow; 0: the output layer */
    int conv;              /* 1: 3x3 convolution, stride 1, zero padding 1 */
    uint32_t in_c, in_h, in_w;  /* input geometry, HWC (dense: in, 1, 1) */
    uint32_t pool;         /* conv: 1 or 2 (2x2 max-pool before BN); dense: 1 */
    uint32_t out_h, out_w; /* output geometry after pooling (dense: 1, 1) */
    uint32_t chunk;        /* conv: samples per im2col block */
    /* [out * in]: latent weights, their binarised float copy (what the GEMMs
     * use), gradient and Adam moments. */
    float *w, *wb, *gw, *mw, *vw;
    /* Hidden layers only, [out]: BN affine parameters, their gradients and
     * Adam moments; running statistics (double: they are folded in double). */
    float *gamma, *beta, *ggamma, *gbeta, *mgamma, *vgamma, *mbeta, *vbeta;
    double *run_mean, *run_var;
    float *mean, *invstd;  /* [out] mean and 1/sqrt(var + eps) used by the last forward */
    /* Batch buffers [max_batch * out_h * out_w * out]. */
    float *a;              /* pre-activation X * Wb^T (conv: after pooling) */
    float *xhat;           /* hidden: (a - mean) * invstd */
    float *y;              /* hidden: BN output gamma * xhat + beta */
    float *act;            /* hidden: sign(y) (input of the next layer) */
    float *grad;           /* backward scratch: dL/d(act), then dL/d(a) */
    /* Conv only. col: [chunk * in_h * in_w * in], im2col rows of a block of
     * samples (row = output position, taps outside the image 0), in the
     * backward pass also dL/d(col). pre (pool 2): [max_batch * in_h * in_w *
     * out], the convolution before pooling; the backward pass overwrites it
     * with its gradient. win (pool 2): [max_batch * out_h * out_w * out], which
     * element of each window is the maximum: the first in the order 0 =
     * (0,0), 1 = (0,1), 2 = (1,0), 3 = (1,1); the gradient goes there. */
    float *col, *pre;
    uint8_t *win;
    /* Flip training: the positions (indices into w, wb, gw; sorted) whose
     * sign the current batch flips. train_net_flip_weights negates wb there;
     * the backward pass negates gw there when flip_mask is set; a refresh of
     * wb from w (train_net_binarize, train_net_adam) ends the flips and
     * empties the list. */
    uint64_t *flip;
    size_t n_flip, cap_flip;
} train_layer;

typedef struct train_net {
    uint32_t n_layers;     /* weight layers = n_widths - 1 */
    uint32_t max_batch;
    uint32_t n_classes;
    uint32_t in_rows, in_cols;  /* input image */
    uint32_t in_size;      /* in_rows * in_cols pixels per sample */
    train_layer layer[TRAIN_MAX_LAYERS];
    float *input;          /* [max_batch * in_size]: pixels / 255 */
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
    /* Loss and regularizer (from the recipe; train.h). */
    train_loss_kind loss;
    double mhl_margin;
    double reg_lambda, reg_margin;
    int flip_mask;         /* 1: mask gradient for flipped weights; 0: straight-through */
} train_net;

/* Checks the layer list of r (widths, conv, pool) against an input image of
 * in_rows x in_cols pixels (one channel): at least one hidden layer, conv
 * layers before dense ones, the first width = the pixels, fan-ins within
 * BNN_MAX_WIDTH, pooling that leaves at least one pixel. On failure sets err
 * and, if bad_layer is non-NULL, the layer at fault (0-based). */
int train_check_layers(const train_recipe *r, uint32_t in_rows, uint32_t in_cols,
                       uint32_t *bad_layer, apx_error *err);

/* Allocates the network of r's layer list (and bn_eps, bn_momentum,
 * weight_clip, loss, mhl_margin, reg_lambda, reg_margin, flip gradient) for
 * in_rows x in_cols images and batches of up to max_batch (>= 2) samples,
 * and initialises it with r->seed (train_net_init). */
train_net *train_net_new(const train_recipe *r, uint32_t in_rows, uint32_t in_cols,
                         uint32_t max_batch, apx_error *err);
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

/* The mean loss over the batch of the last forward pass: softmax
 * cross-entropy of logits against labels, or the modified hinge loss
 *   MHL = (1/K) sum_c max(0, b - y_c * logit_c) / b,  y_c = +1 (true class) or -1
 * (facts bnn.md 4.6; the gradient flows where b - y_c * logit_c >= 0, as
 * PyTorch's clamp(min=0)), plus the margin regularizer when reg_lambda > 0
 * (train_net_margin_reg). Writes dlogits (the gradient of the mean data
 * loss) and adds the number of correct argmax predictions (ties -> lowest
 * class) to *correct if non-NULL. */
double train_net_loss(train_net *net, uint32_t batch, uint32_t *correct);

/* The margin regularizer of the last training-mode forward pass (facts
 * bnn.md 4.7, our normalisation):
 *   R = lambda / (B * N) * sum_{samples, l, j, positions} max(0, b_h - |a - tau| / n_l)
 * over the hidden layers l, their neurons (conv: channels at every output
 * position) j, with fan-in n_l, N the hidden outputs per sample, and tau the
 * gamma-sign-aware threshold of the batch-norm statistics the forward pass
 * used, tau = mu - beta * sigma / gamma, so a - tau = sigma * (xhat + beta /
 * gamma) (a neuron with gamma = 0 has no threshold and no term). 0 when
 * reg_lambda = 0. */
double train_net_margin_reg(const train_net *net, uint32_t batch);

/* Backward pass of the last training-mode forward, from dlogits: fills gw,
 * ggamma, gbeta and gscale. Straight-through: the sign passes gradient where
 * |y| <= 1 (Hardtanh), the weight binarisation passes it unchanged. The
 * margin regularizer's exact gradient (through a and the batch statistics)
 * is added to every hidden layer. With flip_mask, the gradient of each
 * flipped weight (the layer's flip list) is negated. */
void train_net_backward(train_net *net, uint32_t batch);

/* One Adam step (beta1 0.9, beta2 0.999, eps 1e-8, PyTorch's bias
 * correction) with learning rate lr on every parameter, then the weight clip
 * and the refresh of wb. */
void train_net_adam(train_net *net, double lr);

/* Re-estimates the running statistics of every hidden layer, first to last:
 * an eval-mode forward pass through the layers before it (with their
 * re-estimated statistics), then the exact mean and unbiased variance of its
 * pre-activations over `count` samples of d evenly spaced over [0, n)
 * (sample floor(k * n / count)); count is capped at n. Uses the input
 * buffers, so the loaded batch is lost. */
void train_net_recalibrate_bn(train_net *net, const dataset *d, uint32_t n, uint32_t count);

/* The same with the weights of every layer flipped at rate ber during the
 * re-estimation: fresh plain flips for every batch of samples, drawn from
 * (key, layer, batch) (rng.h), the same for a batch whichever layer is being
 * re-estimated. wb is clean again afterwards. */
int train_net_recalibrate_bn_ber(train_net *net, const dataset *d, uint32_t n, uint32_t count,
                                 double ber, rng_key key, apx_error *err);

/* Negates wb at every position of every layer's flip list (a second call
 * restores it). */
void train_net_flip_weights(train_net *net);

/* Replaces layer l's flip list by the positions of [0, in * out) drawn
 * independently at rate p, by geometric skipping (cost proportional to the
 * flips) over the stream (key, domain, blocks from block0). Uniforms carry
 * 32 bits, so a gap longer than -ln(2^-33) / -ln(1 - p) (probability 2^-33)
 * is cut short. Returns APX_EWORK when out of memory. */
int train_layer_draw_flips(train_layer *L, rng_key key, uint32_t domain, uint64_t block0,
                           double p, apx_error *err);

/* Replaces layer l's flip list by the faults of `faults` (logical bits of the
 * [out x in] tensor, row by row: the indices of w) that change the stored
 * bit: a flip always; stuck-at-0 / data-dependent-1 on a stored 1; stuck-at-1
 * / data-dependent-0 on a stored 0. The stored bit is that of the exported
 * model: 1 iff wb > 0, inverted for the output layer when Scale < 0 (export
 * negates its weights then). */
int train_layer_flips_from_faults(train_net *net, uint32_t l, const fmap *faults,
                                  apx_error *err);

/* Draws the flips of training batches. */
typedef struct train_flipper {
    const train_flip *cfg;
    uint64_t seed;            /* the recipe's seed: plain per-batch flips */
    uint64_t device_seed;     /* derived from it: the device's (and persistent) faults */
    device *dev;              /* device-aware training, else NULL */
    uint32_t n_layers;
    device_region region[TRAIN_MAX_LAYERS];
    fmap map[TRAIN_MAX_LAYERS];   /* the faults of the last draw (persistent: kept) */
    nested_list hits;         /* plain persistent: scratch of nested_draw */
    int64_t cached_step;      /* persistent: the schedule entry map holds; -1 none */
} train_flipper;

/* Prepares drawing for cfg (on, n_steps >= 1) on net, whose packed model m
 * (train_net_model) gives the regions: layer l is region l, rows x cols =
 * out x in at base_addr + offset * 8, row stride words * 8 (as sim/sweep.c
 * places a model). Creates the device, if any, and checks that the weights
 * fit in its memory. */
int train_flipper_init(train_flipper *f, const train_flip *cfg, uint64_t seed,
                       const train_net *net, const bnn_model *m, apx_error *err);
void train_flipper_free(train_flipper *f);

/* Fills every layer's flip list for training batch `batch` (counted from 0
 * over the whole run) under schedule entry k:
 *   plain, per batch:  train_layer_draw_flips at p, stream (seed, layer, batch);
 *   plain, persistent: models/nested.h positions with u < p, keyed
 *                      (device_seed, chip 0, layer), as the uniform device;
 *   device, per batch: the device's faults for chip `batch`;
 *   device, persistent: the device's faults for chip 0;
 * persistent maps are drawn once per schedule entry and kept; their flips are
 * recomputed from the current weights every batch (stuck-at faults flip only
 * the bits holding the other value). Returns the number of flips in *flips. */
int train_flipper_draw(train_flipper *f, train_net *net, uint32_t k, uint64_t batch,
                       uint64_t *flips, apx_error *err);

/* Writes the network into m, which bnn_create / bnn_create_layers made with
 * the same shapes (train_net_model):
 * packed weights from the signs of the latent weights, thresholds and
 * directions from bnn_fold_bn on the running statistics, |Scale| (with the
 * output weights negated if Scale < 0). */
void train_net_export(const train_net *net, bnn_model *m);

/* Allocates the packed model for net's shapes (bnn_create for a dense
 * network, bnn_create_layers with conv layers), named name. */
int train_net_model(const train_net *net, const char *name, bnn_model *m, apx_error *err);

/* train_run, which also hands back the trained float network in *net_out
 * (if non-NULL; caller frees it with train_net_free). */
int train_fit(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop, bnn_model *out,
              train_net **net_out, apx_error *err);

#endif
