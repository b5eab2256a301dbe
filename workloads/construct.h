/* construct.h - BNNs built from the universal-approximation proofs, as
 * workloads with known exact outputs (facts bnn.md section 7; docs/construct.md).
 *
 * Boolean (7.1): a truth table of n binary inputs becomes a network that
 * computes it exactly: one pattern detector per input where f = 1 (or, when
 * fewer, per input where f = 0, with the output negated) and an output neuron
 * that fires iff a detector fired. Layers: U8 (detectors) -> BIN (1 output
 * neuron) -> OUT (1 -> 2: class = f). Input bit j is pixel j of a 1 x n image:
 * 255 for 1, 0 for 0. Truth table entry i is f(x) for x_j = bit j of i.
 *
 * Lipschitz (7.3): an L-Lipschitz (max norm) f on [0,1]^n becomes a network
 * with two hidden layers: thermometer codes of n independent +-1 directions
 * u = W x on 8-bit pixels (U8), one detector per cell of the resulting grid
 * (BIN), and the readout (OUT). Cells have side delta = step / 255 in u, a
 * whole number of pixel steps, so on 8-bit inputs the cell of a pixel vector
 * is computed exactly and the proven bound |f(x) - f(centre)| <= L rho delta / 2
 * holds with no rounding term. The OUT layer cannot hold real weights, so the
 * readout is a classification into `classes` equal bins of f's range; the
 * network's real value is the centre of the predicted bin (+ bin / 2 to the
 * bound), and a real input rounded to 8 bits adds L / 510. Balancing neurons
 * (never firing: their threshold is above any pre-activation) give every
 * class row the same bias, so the right bin wins by 4 score units.
 *
 * Everything here is deterministic: random truth tables, data sets and check
 * points are Philox draws keyed by the seed. */
#ifndef APX_CONSTRUCT_H
#define APX_CONSTRUCT_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"
#include "bnn.h"
#include "dataset.h"

#define CONSTRUCT_BOOL_MAX_N 16          /* the exhaustive data set grows as 4^n */
#define CONSTRUCT_LIP_MAX_N 8
#define CONSTRUCT_MAX_CANDIDATES (1u << 24)  /* cells enumerated before keeping */
#define CONSTRUCT_MAX_TABLE 65536u       /* values of a piecewise-linear table */
#define CONSTRUCT_MAX_CLASSES 256u       /* labels are bytes */

/* ---- Boolean functions ------------------------------------------------------ */

typedef struct construct_truth {
    uint32_t n;          /* inputs, 1..CONSTRUCT_BOOL_MAX_N */
    uint8_t *f;          /* 2^n entries, each 0 or 1 */
    char source[32];     /* "parity", "majority", "random" or "table" */
    uint64_t seed;       /* of "random" */
} construct_truth;

/* parity (odd number of ones), majority (more ones than zeros; a tie is 0)
 * or random (each entry a fair Philox bit keyed by seed). */
int construct_truth_builtin(const char *name, uint32_t n, uint64_t seed, construct_truth *t,
                            apx_error *err);
/* A text file of 2^n characters '0' and '1' (entry 0 first); whitespace is
 * ignored and '#' starts a comment to the end of the line. Errors name the
 * file, line and column. construct_truth_parse does the same on a buffer. */
int construct_truth_load(const char *path, construct_truth *t, apx_error *err);
int construct_truth_parse(const char *text, size_t len, const char *name, construct_truth *t,
                          apx_error *err);
void construct_truth_free(construct_truth *t);

typedef struct construct_boolean_info {
    uint32_t positives;  /* inputs with f = 1 */
    int complement;      /* detectors for the zeros of f (fewer), output negated */
    uint32_t patterns;   /* detectors that match an input (0 for a constant f) */
    uint32_t detectors;  /* width of the hidden layer: max(patterns, 1) */
} construct_boolean_info;

/* The exact network for t (7.1.1). A constant f gets one detector that never
 * fires (threshold above any pre-activation). */
int construct_boolean(const construct_truth *t, const char *name, bnn_model *m,
                      construct_boolean_info *info, apx_error *err);
/* All 2^n inputs (pixels 0/255) with labels f: the exhaustive data set. */
int construct_boolean_dataset(const construct_truth *t, dataset *d, apx_error *err);

/* ---- Lipschitz functions -------------------------------------------------- */

enum construct_fn_kind {
    CONSTRUCT_SQUARE,  /* x1^2 */
    CONSTRUCT_SINE,    /* sin(2 pi x1) x2, n >= 2 */
    CONSTRUCT_MEAN,    /* (x1 + ... + xn) / n */
    CONSTRUCT_MAX,     /* max_i xi */
    CONSTRUCT_TABLE,   /* piecewise linear: values on a grid, Kuhn simplices */
};

typedef struct construct_fn {
    int kind;
    uint32_t n;
    char name[64];
    double lipschitz;    /* exact Lipschitz constant for the max norm on x */
    double min, max;     /* range of f over [0,1]^n */
    uint32_t grid[CONSTRUCT_LIP_MAX_N];  /* table: points per axis (>= 2) */
    double *values;      /* table: prod(grid) values, x1 fastest */
} construct_fn;

/* "square", "sine", "mean" or "max" on n inputs. */
int construct_fn_builtin(const char *name, uint32_t n, construct_fn *f, apx_error *err);
/* A YAML table: `grid: [G1, ..., Gn]` (points per axis, 2..1025, n <= 8) and
 * `values: [...]` (prod(G) finite numbers, x1 fastest; grid point (i1..in)
 * is x = (i1 / (G1 - 1), ...)), optional `name`. f is the continuous
 * piecewise-linear interpolant on the Kuhn triangulation of the grid; its
 * Lipschitz constant (the largest l1 norm of a simplex's gradient) is computed
 * exactly. Errors name file, line and column. */
int construct_fn_load(const char *path, construct_fn *f, apx_error *err);
int construct_fn_parse(const char *text, size_t len, const char *name, construct_fn *f,
                       apx_error *err);
double construct_fn_eval(const construct_fn *f, const double *x);
void construct_fn_free(construct_fn *f);

/* A planned Lipschitz construction: everything that defines the network and
 * how its output is read. */
typedef struct construct_lip {
    const construct_fn *f;       /* borrowed */
    uint32_t n;
    double L, epsilon;           /* the Lipschitz constant used, the target */
    uint32_t step;               /* delta in pixel units */
    double delta, rho;           /* delta = step / 255, rho = ||W^-1||_inf */
    int8_t w[CONSTRUCT_LIP_MAX_N][CONSTRUCT_LIP_MAX_N];    /* directions (rows), +-1 */
    double winv[CONSTRUCT_LIP_MAX_N][CONSTRUCT_LIP_MAX_N];
    int32_t lo[CONSTRUCT_LIP_MAX_N];  /* smallest w_i . p over pixels p (= -255 #minus) */
    uint32_t K;                  /* cells per direction; thresholds lo + k step, k = 1..K-1 */
    uint32_t M;                  /* thermometer neurons: n (K - 1) */
    uint32_t cells;              /* kept cells = detectors */
    uint32_t constants;          /* balancing neurons after the detectors */
    uint64_t *cell_id;           /* [cells] sum_i k_i K^i, increasing */
    double *cell_value;          /* [cells] f(clamp(centre, 0, 1)) */
    uint32_t classes;
    double bin;                  /* (f->max - f->min) / classes */
    double bound;                /* L rho delta / 2: |f(x) - cell value|, 8-bit x */
    double readout_bound;        /* + bin / 2: |f(x) - class value|, 8-bit x */
    double real_bound;           /* + L / 510: the same for real x rounded to 8 bits */
} construct_lip;

/* Plans the construction for f: L = 0 takes f's own constant (a smaller L
 * than f's is refused: the bound would not hold); delta is the largest whole
 * number of pixel steps with L rho delta / 2 <= epsilon (at most n / 2, two
 * cells per direction); classes 2..CONSTRUCT_MAX_CLASSES. */
int construct_lip_plan(const construct_fn *f, double L, double epsilon, uint32_t classes,
                       construct_lip *c, apx_error *err);
void construct_lip_free(construct_lip *c);
/* The network: U8 (M thermometer neurons) -> BIN (cells + constants) ->
 * OUT (classes). */
int construct_lip_model(const construct_lip *c, const char *name, bnn_model *m, apx_error *err);

/* Exact integer arithmetic on 8-bit inputs: the kept cell of pixel vector p
 * (its detector index; -1 if p lies in no kept cell, which a correct plan
 * never gives), the class of a value and the value of a class (bin centre). */
int64_t construct_lip_cell(const construct_lip *c, const uint8_t *pixels);
uint32_t construct_lip_class(const construct_lip *c, double value);
double construct_lip_class_value(const construct_lip *c, uint32_t cls);
/* x in [0,1] to its pixel: round(255 x), clamped. */
uint8_t construct_pixel(double x);

/* `samples` random 8-bit inputs (uniform pixels; split 0 = test, 1 = train
 * draw different points) labelled with the class of their cell's value, which
 * is what the fault-free network outputs. */
int construct_lip_dataset(const construct_lip *c, uint32_t samples, uint64_t seed,
                          uint32_t split, dataset *d, apx_error *err);

/* Checks a built network against the plan on: `points` random 8-bit inputs,
 * `points` random real inputs (rounded), inputs on both sides of every
 * threshold, cell corners, the corners of the cube, and every 8-bit input
 * when n <= 2. The class comes from bnn_eval_range (the sweep's kernels) on
 * all of them; the firing detectors from a probe (construct_probe, scores
 * one input at a time) on the 8-bit inputs but the exhaustive sweep. */
typedef struct construct_lip_report {
    uint64_t lattice_points;  /* 8-bit inputs checked (incl. boundary and corners) */
    uint64_t boundary_points; /* of them: at a threshold or one pixel step above */
    uint64_t real_points;
    uint64_t probed_points;   /* inputs whose firing detectors were read */
    int exhaustive;           /* every 8-bit input was checked */
    uint64_t not_one_hot;     /* inputs where the number of firing detectors != 1 */
    uint64_t wrong_cell;      /* the firing detector is not the input's cell */
    uint64_t wrong_class;     /* the predicted class is not the cell value's class */
    double cell_error;        /* max |f(x) - value of the firing cell|, probed 8-bit x */
    double readout_error;     /* max |f(x) - value of the predicted class|, 8-bit x */
    double real_error;        /* the same over the real points */
} construct_lip_report;

int construct_lip_check(const construct_lip *c, const bnn_model *m, uint32_t points,
                        uint64_t seed, construct_lip_report *r, apx_error *err);

/* ---- probes, data sets, parameters ---------------------------------------- */

/* A probe of hidden layer `layer` of m: m's layers 0..layer (weights copied;
 * of `layer` only the first `keep` neurons, 0 = all) and an OUT layer whose
 * scores tell how many of those neurons fire and, when exactly one does,
 * which: row 0 is all +1, row 1 + b is +1 where bit b of the neuron index is
 * 1. construct_probe_read decodes bnn_classify's scores: returns the number
 * firing; *index is the neuron when that is 1. */
int construct_probe(const bnn_model *m, uint32_t layer, uint32_t keep, bnn_model *probe,
                    apx_error *err);
uint32_t construct_probe_read(const bnn_model *probe, const int32_t *scores, uint32_t *index);

/* Writes d as the IDX files dataset.c reads, named as Fashion-MNIST's
 * (DIR/t10k-* for split "test", DIR/train-* for "train", gzip), so that
 * fmnist_load and a sweep's data_dir find them. DIR is created if missing.
 * Each file is written to a temporary name and renamed. */
int construct_dataset_save(const dataset *d, const char *dir, const char *split, apx_error *err);

/* The construction parameters as YAML (the sidecar MODEL.bnn.yaml, since the
 * model file has no metadata field): malloc'd text. data_dir may be NULL. */
char *construct_boolean_yaml(const construct_truth *t, const construct_boolean_info *info,
                             const bnn_model *m, const char *table_path, const char *data_dir);
char *construct_lip_yaml(const construct_lip *c, const bnn_model *m, const char *table_path,
                         const char *data_dir, uint32_t samples, uint64_t seed,
                         const construct_lip_report *check);
/* Writes len bytes to path through a temporary file and a rename. */
int construct_write_file(const char *path, const char *text, size_t len, apx_error *err);

#endif
