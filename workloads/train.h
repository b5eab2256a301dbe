/* train.h - training a BNN (fully connected or convolutional) in C.
 *
 * Layers: dense (fully connected) and 3x3 convolutions (stride 1, zero
 * padding 1: a tap outside the image contributes 0, as in workloads/bnn.h),
 * each conv optionally followed by a 2x2 max-pool before its batch norm
 * (Conv -> MaxPool -> BN -> sign, facts bnn.md section 1); conv layers come
 * first, dense layers after, and the first dense layer reads the conv output
 * flattened HWC, index (h * W + w) * C + c, like the packed model.
 * Latent float weights, binarised in the forward pass (w > 0 -> +1, else -1);
 * the straight-through estimator for weights and for the sign activation
 * (gradient passed where |BN output| <= 1, as Hardtanh); batch norm with
 * batch statistics in training and running statistics for export (per
 * channel over N, H, W for conv layers; optionally re-estimated over part of
 * the training set with the current weights before every export,
 * bn_recalibrate, optionally under weight flips at a chosen BER,
 * bn_reestimate_ber); cross-entropy or the modified hinge loss (facts bnn.md
 * 4.6) on the last layer times a learnable Scale (initialised to 1e-3), plus
 * an optional margin regularizer on the hidden neurons (facts 4.7); Adam
 * with a step learning-rate schedule; GEMMs through CBLAS (OpenBLAS),
 * convolutions as im2col + GEMM. The first layer sees pixels / 255. Export
 * folds batch norm into integer thresholds (bnn_fold_bn) and produces a
 * bnn_model.
 *
 * Flip training (facts bnn.md 4.2-4.4): the binarised weights of every layer
 * get sign flips in the forward pass of each batch, drawn anew per batch at
 * BER p (or once per model instance: persistent), or from a device model's
 * fault maps at an operating point (models/device.h); a curriculum raises the
 * rate epoch by epoch. The backward pass either inverts the gradient of a
 * flipped weight (mask) or ignores the flip (straight-through). docs/training.md
 * gives every recipe key with its formula and source.
 *
 * Everything random (initialisation, shuffling, flips) comes from rng.h keyed
 * by the recipe's seed. Results are reproducible for a given seed, machine and
 * BLAS thread count (BLAS summation order may differ across CPUs). */
#ifndef APX_TRAIN_H
#define APX_TRAIN_H

#include <stdint.h>

#include "../models/device.h"
#include "../models/geometry.h"
#include "../sim/config.h"
#include "../sim/error.h"
#include "bnn.h"
#include "dataset.h"

#define TRAIN_MAX_LAYERS 16
#define TRAIN_MAX_CURRICULUM 32

/* The MHL margin b of myay/SPICE-Torch and myay/LTA-BNN (facts bnn.md 4.6). */
#define TRAIN_MHL_MARGIN 128.0

typedef enum train_loss_kind {
    TRAIN_LOSS_CE = 0,   /* softmax cross-entropy */
    TRAIN_LOSS_MHL = 1   /* modified hinge loss, margin mhl_margin */
} train_loss_kind;

/* How the backward pass treats a flipped weight (facts bnn.md 4.3). */
typedef enum train_flip_grad {
    TRAIN_FLIP_MASK = 0, /* w_f = M . sign(w): dL/dw = M . dL/dw_f (sign inverted) */
    TRAIN_FLIP_STE = 1   /* straight-through: dL/dw = dL/dw_f (the flip ignored) */
} train_flip_grad;

/* One rate of the flip schedule, in force from epoch `epoch` (0-based) until
 * the next entry. */
typedef struct train_flip_step {
    uint32_t epoch;
    double p;                     /* plain flips: the bit error rate */
    double op[DEVICE_MAX_KNOBS];  /* device: the operating point, in knob order */
} train_flip_step;

/* Flip training. Plain flips (device == NULL): every weight bit of every
 * layer flips independently with probability p. With a device: the faults
 * the device model produces for each weight tensor (a device_region laid out
 * like a sweep lays out the packed model at memory.base) at the operating
 * point; a fault that leaves the stored bit unchanged (a stuck-at or
 * data-dependent fault on a bit already holding the value it reads as) is no
 * flip. Per batch (persistent = 0) the faults are drawn anew every batch;
 * persistent = 1 keeps one fault map per model instance (per schedule entry:
 * nested, so a harsher entry fails a superset). */
typedef struct train_flip {
    int on;
    train_flip_grad gradient;
    int persistent;
    const cfg_node *device;       /* NULL: plain flips; else the device section (in the
                                     recipe's doc, or the root of device_doc) */
    cfg_doc *device_doc;          /* owned: the device file 'device' names, or NULL */
    geometry geo;                 /* device: the memory holding the weights */
    uint64_t base_addr;           /* device: byte address of the packed weights */
    uint32_t n_steps;             /* 1 .. TRAIN_MAX_CURRICULUM when on */
    train_flip_step step[TRAIN_MAX_CURRICULUM];  /* epochs strictly increasing, first 0 */
} train_flip;

/* The schedule entry in force in epoch `epoch` (0-based): the last one whose
 * epoch is <= it. */
uint32_t train_flip_step_at(const train_flip *f, uint32_t epoch);

typedef struct train_recipe {
    char name[64];
    uint32_t n_widths;                 /* layers + 1 */
    /* widths[0]: input pixels (rows * cols, e.g. 784); widths[l + 1]: the
     * neurons of dense layer l or the output channels of conv layer l; the
     * last entry is the number of classes. E.g. 784, 2048, 2048, 10 (FC) or
     * 784, 64, 64, 2048, 10 (VGG3). */
    uint32_t widths[TRAIN_MAX_LAYERS + 1];
    /* conv[l] = 1: layer l is a 3x3 convolution (stride 1, zero pad 1) with
     * pool[l] = 2 for a 2x2 max-pool (stride 2, odd rows and columns dropped)
     * before its BN, 0 or 1 for none; conv[l] = 0: dense (pool ignored). All
     * zero (the defaults) is a fully connected network. */
    uint8_t conv[TRAIN_MAX_LAYERS];
    uint8_t pool[TRAIN_MAX_LAYERS];
    uint64_t seed;
    uint32_t epochs;
    uint32_t batch;
    double lr;
    uint32_t lr_step;                  /* epochs between decays */
    double lr_gamma;                   /* decay factor */
    double bn_eps, bn_momentum;
    double weight_clip;                /* clamp latent weights to [-c, c]; 0 = off */
    uint32_t train_limit;              /* 0 = all training samples */
    /* Before every export, re-estimate the BN running statistics of each
     * hidden layer in turn (eval-mode forward through the layers before it,
     * exact mean and unbiased variance) over this many training samples,
     * evenly spaced over the training set; 0 = off (the running averages of
     * training, momentum bn_momentum, are exported as they are). */
    uint32_t bn_recalibrate;
    /* The bit error rate of the weights during that re-estimation (fresh
     * plain flips per re-estimation batch, facts bnn.md 4.5); 0 = clean. */
    double bn_reestimate_ber;
    train_loss_kind loss;
    double mhl_margin;                 /* b of the MHL (TRAIN_MHL_MARGIN) */
    /* Margin regularizer (facts bnn.md 4.7), off when reg_lambda = 0:
     * lambda / (B * N) * sum over samples and hidden neuron outputs of
     * max(0, reg_margin - |a - tau| / fan_in), N the hidden outputs per sample. */
    double reg_lambda, reg_margin;
    train_flip flip;
    const char *output;                /* .bnn path the recipe writes (may be NULL) */
    const char *data_dir;              /* Fashion-MNIST override (may be NULL) */
} train_recipe;

/* Defaults: the FC network of facts/bnn.md section 5 (784-2048-2048-10,
 * batch 256, Adam lr 1e-3, step 25, gamma 0.5, eps 1e-5, momentum 0.1). */
void train_recipe_defaults(train_recipe *r);

/* Reads a recipe from YAML (configs/workloads/fmnist-fc.yaml, fmnist-vgg3.yaml):
 *   name, layers, seed, epochs, batch, lr, lr_step, lr_gamma, bn_eps,
 *   bn_momentum, weight_clip, train_limit, bn_recalibrate, bn_reestimate_ber,
 *   loss (ce | mhl), mhl_margin, margin_reg: {lambda, margin}, output,
 *   data_dir, and flip: {p, gradient (mask | ste), persistent, device,
 *   memory: {geometry, base}, operating_point: {KNOB: value, ...},
 *   curriculum: [{epoch, p | operating_point}, ...]} (docs/training.md).
 * `layers` is either a list of widths, input first (a dense network):
 *   layers: [784, 2048, 2048, 10]
 * or a list of layer maps, the input (28x28x1 Fashion-MNIST) implied:
 *   layers: [{conv: 64, pool: 2}, {conv: 64, pool: 2}, {dense: 2048}, {dense: 10}]
 * where {conv: C} has C output channels and optional pool: 1 or 2, {dense: N}
 * has N neurons, conv layers come before dense ones and the last is
 * {dense: 10}. Errors name file:line:col of the offending entry.
 * Strings and flip.device point into the document, which must outlive the
 * recipe's use. A device section is checked by creating the device once
 * (unknown kinds, keys, knobs and out-of-range points are refused). */
int train_recipe_from_yaml(const cfg_node *root, train_recipe *r, apx_error *err);
/* Frees what a recipe owns (the device file its flip section named). Call
 * it after train_recipe_from_yaml, whatever that returned. */
void train_recipe_free(train_recipe *r);

typedef struct train_epoch_stats {
    uint32_t epoch, epochs;
    double loss;             /* mean training loss */
    double train_accuracy;   /* on the training batches, float network */
    double test_accuracy;    /* of the exported (folded, packed) model; -1 if no test set */
    double samples_per_s;
    double seconds;
    double lr;
    uint32_t flip_step;      /* the flip schedule entry of this epoch (0 without flips) */
    double flip_rate;        /* flipped weights / weights, over the epoch's batches */
} train_epoch_stats;

typedef void (*train_progress_fn)(void *ctx, const train_epoch_stats *s);

/* Trains on `train`, evaluating the exported model on `test` (may be NULL)
 * after each epoch, and returns the final exported model in *out. A non-zero
 * *stop (set from a signal handler) ends training early with APX_EINTR. */
int train_run(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop,
              bnn_model *out, apx_error *err);

#endif
