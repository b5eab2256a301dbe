/* train.h - training a fully connected BNN in C.
 *
 * Latent float weights, binarised in the forward pass (w > 0 -> +1, else -1);
 * the straight-through estimator for weights and for the sign activation
 * (gradient passed where |BN output| <= 1, as Hardtanh); batch norm with batch
 * statistics in training and running statistics for export; cross-entropy
 * on the last layer times a learnable Scale (initialised to 1e-3); Adam with
 * a step learning-rate schedule; GEMMs through CBLAS (OpenBLAS). The first
 * layer sees pixels / 255. Export folds batch norm into integer thresholds
 * (bnn_fold_bn) and produces a bnn_model.
 *
 * Everything random (initialisation, shuffling) comes from rng.h keyed by the
 * recipe's seed. Results are reproducible for a given seed, machine and BLAS
 * thread count (BLAS summation order may differ across CPUs). */
#ifndef APX_TRAIN_H
#define APX_TRAIN_H

#include <stdint.h>

#include "../sim/config.h"
#include "../sim/error.h"
#include "bnn.h"
#include "dataset.h"

#define TRAIN_MAX_LAYERS 16

typedef struct train_recipe {
    char name[64];
    uint32_t n_widths;                 /* layers + 1 */
    uint32_t widths[TRAIN_MAX_LAYERS + 1];  /* e.g. 784, 2048, 2048, 10 */
    uint64_t seed;
    uint32_t epochs;
    uint32_t batch;
    double lr;
    uint32_t lr_step;                  /* epochs between decays */
    double lr_gamma;                   /* decay factor */
    double bn_eps, bn_momentum;
    double weight_clip;                /* clamp latent weights to [-c, c]; 0 = off */
    uint32_t train_limit;              /* 0 = all training samples */
    const char *output;                /* .bnn path the recipe writes (may be NULL) */
    const char *data_dir;              /* Fashion-MNIST override (may be NULL) */
} train_recipe;

/* Defaults: the FC network of facts/bnn.md section 5 (784-2048-2048-10,
 * batch 256, Adam lr 1e-3, step 25, gamma 0.5, eps 1e-5, momentum 0.1). */
void train_recipe_defaults(train_recipe *r);

/* Reads a recipe from YAML (docs and configs/workloads/fmnist-fc.yaml):
 *   name, layers: [784, ...], seed, epochs, batch, lr, lr_step, lr_gamma,
 *   bn_eps, bn_momentum, weight_clip, train_limit, output, data_dir.
 * Strings point into the document. */
int train_recipe_from_yaml(const cfg_node *root, train_recipe *r, apx_error *err);

typedef struct train_epoch_stats {
    uint32_t epoch, epochs;
    double loss;             /* mean training loss */
    double train_accuracy;   /* on the training batches, float network */
    double test_accuracy;    /* of the exported (folded, packed) model; -1 if no test set */
    double samples_per_s;
    double seconds;
    double lr;
} train_epoch_stats;

typedef void (*train_progress_fn)(void *ctx, const train_epoch_stats *s);

/* Trains on `train`, evaluating the exported model on `test` (may be NULL)
 * after each epoch, and returns the final exported model in *out. A non-zero
 * *stop (set from a signal handler) ends training early with APX_EINTR. */
int train_run(const train_recipe *r, const dataset *train, const dataset *test,
              train_progress_fn progress, void *ctx, volatile int *stop,
              bnn_model *out, apx_error *err);

#endif
