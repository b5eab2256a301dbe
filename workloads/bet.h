/* bet.h - bit-error-tolerance (BET) metrics of a BNN on a data set.
 *
 * The definitions, with formulas and sources (facts bnn.md sections 2 and
 * 3), are in docs/bet-metrics.md. In short, on error-free weights:
 *
 * Units. A hidden dense layer's unit is a neuron. A hidden conv layer's unit
 * for margins is one output bit: (pooled position, channel); its
 * pre-activation is what the batch norm sees, the max of a over the pool
 * window (Conv -> MaxPool -> BN -> sign). For importance a conv "neuron" is
 * a channel, flipped at every position of its output map.
 *
 * Margin. With the folded threshold T and direction d of bnn.h (fires iff
 * a > T for d = +1, a < T for d = -1), `need` is the smallest change of a
 * in the harmful direction that changes the output bit:
 *     d = +1: need = a - T (firing), T + 1 - a (not firing);
 *     d = -1: need = T - a (firing), a - T + 1 (not firing).
 * The raw margin is m = need - 1/2 = |a - tau*|, tau* = T + 1/2 (d = +1) or
 * T - 1/2 (d = -1), the midpoint of the integer gap where the float
 * threshold lies; the normalised margin is m / (fan_in * s), s = 255 for
 * the 8-bit first layer (its a is in pixel units) and 1 otherwise.
 * Thresholds beyond the reachable range |a| <= fan_in * s are clamped to
 * just beyond it (no output changes), so a constant neuron's margin is
 * finite.
 *
 * k_tol of a unit on a sample: the largest k such that no set of k flips of
 * the unit's own weight bits changes its output bit (fan_in when no set of
 * flips can). Binary inputs: each flip moves a by exactly 2, so
 * k_tol = ceil(need / 2) - 1 when that many harmful terms exist (facts
 * section 2). 8-bit inputs: a flip moves a by 2 p_j, so k_tol = (the least
 * number of the largest harmful pixels whose doubled sum reaches need) - 1.
 * Pooled conv units: per window position q as above, then the min over q
 * when one position changing suffices (exact), and the max over the
 * positions that agree with the output when all must change (a lower bound:
 * still a guarantee that <= k_tol flips never change the output).
 *
 * Importance of hidden neuron (l, j): its output (conv: its channel) forced
 * to the complement on each sample, the rest of the network evaluated
 * exactly. flips = samples whose prediction changes, correct = samples
 * still classified correctly; importance = (clean correct - correct) / N
 * (the accuracy drop), flip rate = flips / N (facts section 3.2).
 *
 * Output margin: g(x) = s_y - max_{c != y} s_c (integer scores, y the true
 * class); OM = g / 2 in flip units. The output k_tol of a sample is the
 * largest k such that no k flips of the output layer's weights change the
 * predicted class (ties go to the lowest class, as bnn.h).
 *
 * Everything is counted in integers per sample and merged in a fixed order,
 * so the metrics do not depend on the thread count (rule 1) or the kernel. */
#ifndef APX_BET_H
#define APX_BET_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"
#include "bnn.h"
#include "dataset.h"

/* k_tol histograms have bounded bins: bin k holds k_tol = k for k < 16,
 * bin 16 + i holds [2^(4+i), 2^(5+i)) for i = 0..15 (up to 2^20 - 1), and
 * the last bin k_tol >= 2^20. */
#define BET_KTOL_BINS 33
uint32_t bet_ktol_bin(uint64_t ktol);
/* Smallest k_tol of a bin. */
uint64_t bet_ktol_bin_low(uint32_t bin);

/* Mean, population variance over the neurons, and the scale-free variance
 * var / (mean of |value|)^2 (0 when every value is 0). */
typedef struct bet_stat {
    double mean, var, scale_free;
} bet_stat;

typedef struct bet_layer_metrics {
    uint32_t kind;             /* enum bnn_layer_kind */
    uint32_t units;            /* neurons (dense) or channels (conv) */
    uint32_t fan_in;
    uint32_t positions;        /* output positions per unit: pooled map size, 1 for dense */
    double input_scale;        /* 255 for 8-bit layers, else 1 */
    /* Hidden layers only (zero for the output layer). Margins over all
     * (sample, unit, position): */
    uint64_t n_margins;
    double margin_mean, margin_min, margin_median; /* raw, in units of a */
    double margin_norm_mean;                       /* raw / (fan_in * input_scale) */
    uint64_t ktol_hist[BET_KTOL_BINS];
    /* Importance: per neuron counts over the samples, and their statistics. */
    uint32_t *flips, *correct; /* [units], owned */
    bet_stat importance;       /* accuracy drop */
    bet_stat flip_rate;
} bet_layer_metrics;

typedef struct bet_metrics {
    uint32_t n_samples, n_correct;
    uint32_t n_layers;
    bet_layer_metrics layer[BNN_MAX_LAYERS];
    /* All hidden layers together. */
    uint64_t n_margins;
    double margin_norm_mean;         /* over all (sample, unit, position) */
    double margin_norm_mean_layers;  /* mean of the hidden layers' means */
    uint64_t ktol_hist[BET_KTOL_BINS];
    bet_stat importance, flip_rate;  /* over all hidden neurons */
    /* The output layer. */
    double output_margin_mean;          /* OM over all samples (misclassified < 0) */
    double output_margin_mean_correct;  /* over correctly classified samples (0 if none) */
    double output_margin_median, output_margin_min;
    uint64_t output_ktol_hist[BET_KTOL_BINS];
    /* How the importance passes ran: (neuron, sample, layer) steps done by
     * sparse updates of the few units near their threshold, and by dense
     * recomputation through the inference kernel. */
    uint64_t steps_sparse, steps_dense;
    double seconds;
} bet_metrics;

typedef struct bet_options {
    uint32_t limit;          /* the first `limit` samples; 0 = all */
    uint32_t threads;        /* worker threads; 0 is taken as 1 */
    volatile int *stop;      /* optional: when set, stop early with APX_EINTR */
    void (*progress)(void *ctx, size_t done, size_t total); /* optional, samples */
    void *ctx;
} bet_options;

/* Computes the metrics of m (its own, error-free image) on the first
 * opt->limit samples of d. Refuses (APX_EINPUT) a limit beyond the data, an
 * empty data set, images of another size than the model's input and a class
 * count other than the model's. out is filled on success and must be
 * released with bet_metrics_free; on failure it holds nothing to free. */
int bet_compute(const bnn_model *m, const dataset *d, const bet_options *opt, bet_metrics *out,
                apx_error *err);
void bet_metrics_free(bet_metrics *b);

/* The metrics as flat rows for storage (docs/bet-metrics.md lists them):
 * name is a string literal starting "bet.", layer the layer index or -1 for
 * the whole model. Returns the number of rows; writes at most cap of them
 * (rows may be NULL with cap 0 to count). */
typedef struct bet_row {
    const char *name;
    int layer;
    double value;
} bet_row;
size_t bet_rows(const bet_metrics *b, bet_row *rows, size_t cap);

/* ---- single images, for tests and tools ---------------------------------- */

/* The pre-activations one image produces with the weights in `image` (the
 * model's own or a faulty copy with its layout): for a hidden layer the
 * value each output bit's threshold sees (conv: the max over the pool
 * window), in the layer's output order (position-major HWC, unit fastest);
 * for the output layer the class scores. out has units x positions entries. */
int bet_preactivations(const bnn_model *m, const uint64_t *image, const uint8_t *pixels,
                       uint32_t layer, int64_t *out, apx_error *err);
/* k_tol of every output bit of hidden layer `layer` for one image, with the
 * model's own weights, in the same order. */
int bet_ktols(const bnn_model *m, const uint8_t *pixels, uint32_t layer, uint64_t *out,
              apx_error *err);

/* The exact probability that a binary neuron's output flips when each of its
 * n weight bits flips independently with probability p (facts section 2):
 * A = (n + a) / 2 agreeing terms, D = (n - a) / 2 disagreeing,
 * a' = a - 2 Bin(A, p) + 2 Bin(D, p), P(output(a') != output(a)) under the
 * folded threshold and direction. n and a must have the same parity and
 * |a| <= n; returns NaN otherwise. */
double bet_flip_probability(uint32_t n, int64_t a, int32_t threshold, int direction, double p);

#endif
