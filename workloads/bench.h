/* bench.h - the inference benchmark behind `apxsim bench`.
 *
 * For each benchmark network and each kernel this CPU can run, the same
 * synthetic images (random pixels) are classified with bnn_eval_range on one
 * thread, timed with a monotonic clock, best of `repeats` runs of at least
 * `min_seconds` each (the machine may be shared: the best run is the one
 * least disturbed). The 2-thread row evaluates the same images split in two
 * halves on two threads, each with its own workspace, timed alternately with
 * the 1-thread run so that both see the same machine load.
 *
 * Networks (random weights from sim/rng.h, random thresholds; speed does not
 * depend on the values):
 *   lfc     FINN LFC  784-1024-1024-1024-10 (facts peers.md 3.2) on binarized
 *           pixels, as FINN runs it (BNN_DENSE_B1, threshold 128)
 *   sfc     FINN SFC  784-256-256-256-10, binarized pixels
 *   lfc-u8  LFC with an exact 8-bit first layer (BNN_DENSE_U8)
 *   sfc-u8  SFC with an exact 8-bit first layer
 *   fc      784-2048-2048-10 (the shipped Fashion-MNIST model's shape, 8-bit)
 *   vgg3    conv 1->64 pool 2, conv 64->64 pool 2, FC 3136-2048, FC 2048-10
 *           on 28x28, 8-bit pixels (facts bnn.md 5)
 *
 * Words per inference (peers.md 3.3): one word = one 64-bit
 * popcount(w XOR x) with its accumulation, i.e. 64 binary MACs.
 *   binary dense layer   out * ceil(in / 64) (a first layer on binarized
 *                        pixels too: it is a binary layer once the pixels
 *                        are packed, so LFC's is 1024 * 13)
 *   binary conv layer    H * W * out * ceil(9 * in_c / 64) (every position,
 *                        the full 3x3 patch, as the kernel computes it)
 *   8-bit first layer    counted like a binary layer of the same shape
 *                        (dense: out * ceil(in / 64); conv: H * W * out *
 *                        ceil(9 * in_c / 64)), which is how peers.md 3.3
 *                        counts LFC (46,240 words). It does more work than
 *                        that (8-bit inputs, exact integer sums), so
 *                        words/ns is an equivalent rate there.
 *                        u8_words_per_inference gives its share.
 * Ceiling A (peers.md 3.3): one VPOPCNTQ zmm per cycle = 8 words per cycle
 * at the given clock, for every kernel (it is the CPU's limit, not the
 * kernel's); assumes the core sustains one 512-bit popcount per cycle and
 * that loads, XORs and adds fit beside it. The clock is a parameter; by
 * default the "cpu MHz" of /proc/cpuinfo (the nominal or current clock the
 * OS reports, which may be below the turbo clock, making the fraction an
 * overestimate), else 3.0 GHz; clock_source says which. */
#ifndef APX_BENCH_H
#define APX_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"
#include "bnn.h"

typedef struct bench_options {
    const char *models;     /* comma-separated subset of "lfc,sfc,lfc-u8,sfc-u8,fc,vgg3";
                               NULL = all */
    const char *kernels;    /* comma-separated subset of "portable,avx2,avx512"; NULL = all
                               the CPU has */
    double clock_ghz;       /* <= 0: from /proc/cpuinfo, else 3.0 */
    double min_seconds;     /* per timed run (default 0.25) */
    uint32_t repeats;       /* timed runs, the best counts (default 3) */
    uint32_t images;        /* synthetic images per run (default 2048; vgg3 uses a quarter) */
    int threads;            /* 1: also the 2-thread row for every model and kernel (default 1) */
    uint64_t seed;          /* weights and images (default 1) */
} bench_options;

void bench_defaults(bench_options *opt);

typedef struct bench_result {
    char model[16];              /* "lfc", "sfc", "lfc-u8", "sfc-u8", "fc", "vgg3" */
    char kernel[16];             /* "portable", "avx2", "avx512" */
    uint32_t threads;            /* 1 or 2 */
    uint32_t images;             /* per timed run */
    double seconds;              /* best timed run */
    double inferences_per_s;     /* images / seconds */
    double us_per_inference;     /* per image (for threads = 2: wall time / images) */
    double words_per_inference;  /* all layers, as above */
    double u8_words_per_inference; /* the 8-bit first layer's share (0 on binarized pixels) */
    double words_per_ns;         /* words_per_inference * inferences_per_s / 1e9 */
    double clock_ghz;
    const char *clock_source;    /* "option", "/proc/cpuinfo", "default 3.0 GHz" */
    double ceiling_words_per_ns; /* 8 * clock_ghz */
    double ceiling_fraction;     /* words_per_ns / ceiling_words_per_ns */
    double speedup;              /* threads = 2: 1-thread time / 2-thread time; else 1 */
    double cpu_seconds;          /* per run: CPU time of the (busier) thread */
    double cpu_speedup;          /* threads = 2: 1-thread CPU time / cpu_seconds; else 1 */
} bench_result;

/* Runs the benchmark; *out (malloc'ed, free with free()) receives *n_out
 * rows: per model, per kernel, the 1-thread row then (if opt->threads) the
 * 2-thread row. An unknown model or kernel name, or a kernel the CPU lacks,
 * is an APX_EINPUT error. The kernel choice active before the call is
 * restored after it. */
int bench_run(const bench_options *opt, bench_result **out, size_t *n_out, apx_error *err);

/* Builds a benchmark network by name with random weights and thresholds. */
int bench_model(const char *name, uint64_t seed, bnn_model *m, apx_error *err);

/* Words per inference of a model (all layers) and, in *u8_words if not NULL,
 * of its 8-bit first layer (0 for a first layer on binarized pixels), as
 * counted above. */
double bench_words(const bnn_model *m, double *u8_words);

/* The clock used for the ceiling: opt_ghz if > 0, else /proc/cpuinfo, else
 * 3.0; *source names which. */
double bench_clock_ghz(double opt_ghz, const char **source);

#endif
