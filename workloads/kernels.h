/* kernels.h - the inner loops of BNN inference, one implementation per
 * instruction set (internal to workloads/: bnn.c, bench.c and the tests).
 *
 * Every layer is computed as a matrix product over "columns": a column is one
 * input vector (one image for a dense layer, one image position's 3x3 patch
 * for a convolution, im2col). A kernel computes, for every row r < rows (a
 * neuron / output channel) and column c < ncols, the integer pre-activation
 *   binary layers:  a = n - 2 * popcount(w_r XOR x_c)   (n used bits)
 *   8-bit layers:   a = sum_j w_rj * p_cj = 2 * S - sum_j p_cj,
 *                   S = sum of the pixels where the weight bit is 1,
 * and either stores a (int32) or thresholds it into an output bit.
 * Results are identical across kernels, bit for bit: integer arithmetic only.
 *
 * Weights: `rm` points into the memory image (row-major, `words` words per
 * row; padding bits past n may be set by faults and are never counted).
 * Kernels with `interleaved` set read `il` instead: a compute copy with the
 * rows grouped in blocks of KERN_RB, word j of the rows of block b at
 * il[(b * words + j) * KERN_RB + i], padding bits cleared and missing rows of
 * the last block zero. One 512-bit vector then holds the same word of 8
 * neurons, so a broadcast activation word feeds 8 dot products without any
 * horizontal reduction (facts peers.md 3.4). The copy is built from the image
 * per evaluation call (kern_interleave), so it always reflects the faults of
 * the image being evaluated.
 *
 * Thresholds (hidden layers): row r fires iff ((a XOR neg[r]) - neg[r]) >
 * thr[r], i.e. a > t for direction +1 (neg 0, thr t) and -a > -t, i.e.
 * a < t, for direction -1 (neg -1). |a| < 2^29 always (fan-in <= 2^20, pixels
 * <= 255), so thresholds are clamped into [-2^30, 2^30] without changing any
 * decision, and a correction of a (below) can be folded into thr without
 * overflow. The arrays have blocks * KERN_RB entries; rows past `rows` never
 * fire (thr 2^30, neg 0).
 *
 * Binarized inputs (B1 first layers): `binarize` packs pixels into bits,
 * bit j = (p_j >= t), in the layout of a binary column (bit j % 64 of word
 * j / 64, bits past n zero); the layer is then an ordinary binary layer.
 *
 * Threshold classes (binary convolutions): the kernel sees the full 3x3 dot
 * product, but at the border the taps outside the image must be left out,
 * which changes a by a per-row amount that depends only on which taps are
 * missing. The driver folds that into one threshold array per border class
 * (thr + class * cls_stride) and tells the kernel each column's class.
 *
 * Thread safety: kernels only read the layer and write their outputs and the
 * scratch they are given; the only global state is the kernel choice. */
#ifndef APX_KERNELS_H
#define APX_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "bnn.h"

#define KERN_RB 8             /* rows per interleaved block */
#define KERN_THR_MAX (1 << 30) /* thresholds are clamped into +-KERN_THR_MAX */

typedef struct kern_layer {
    uint32_t rows, words, n;  /* neurons, words per weight row, used bits (fan-in) */
    uint32_t blocks;          /* ceil(rows / KERN_RB) */
    const uint64_t *rm;       /* row-major weights in the image */
    const uint64_t *il;       /* interleaved copy (interleaving kernels), else NULL */
    const int32_t *thr;       /* [blocks * KERN_RB], NULL for layers without threshold */
    const int32_t *neg;       /* [blocks * KERN_RB], 0 or -1 */
    const void *aux;          /* 8-bit layers: the kernel's u8_prep output, or NULL */
} kern_layer;

/* Output of a kernel call, one of:
 *   a     int32 pre-activations (binary kernels only): column c, row r at
 *         a[c * a_stride + r]; entries up to the next multiple of KERN_RB
 *         may be written too;
 *   bits  thresholded: column c, row r at bit r % 64 of word
 *         bits[c * bits_stride + r / 64]. The caller zeroes them first;
 *         kernels set bits and may rewrite whole bytes of rows below
 *         blocks * KERN_RB (padding rows stay 0).
 * cls (binary kernels, bits only): NULL, or the threshold class of each
 * column; column c then uses thr + cls[c] * cls_stride. */
typedef struct kern_out {
    int32_t *a;
    size_t a_stride;
    uint64_t *bits;
    size_t bits_stride;
    const uint8_t *cls;
    size_t cls_stride;
} kern_out;

typedef struct kern_ops {
    enum bnn_kernel id;
    const char *name;
    int interleaved; /* reads L->il */
    /* binary layer: x column c = x + c * x_stride words, bits past n zero */
    void (*bin)(const kern_layer *L, const uint64_t *x, size_t x_stride, uint32_t ncols,
                const kern_out *o);
    /* 8-bit layer, bits output only: column c = n bytes at px + c * px_stride;
     * scratch holds at least u8_scratch(n, rows) bytes, 64-byte aligned */
    void (*u8)(const kern_layer *L, const uint8_t *px, size_t px_stride, uint32_t ncols,
               void *scratch, const kern_out *o);
    size_t (*u8_scratch)(uint32_t n, uint32_t rows);
    /* Optional (NULL if unused): per-call data an 8-bit kernel derives from
     * the weights (e.g. table offsets), built into L->aux by u8_prep before
     * the layer is run; u8_aux gives its size in bytes. Like the interleaved
     * copy it is rebuilt for every image evaluated. */
    size_t (*u8_aux)(uint32_t n, uint32_t rows);
    void (*u8_prep)(const kern_layer *L, void *aux);
    /* Binarized input: out[j / 64] bit j % 64 = (px[j] >= t) for j < n, the
     * rest of the last word zero; ceil(n / 64) words written. Any t (0: all
     * ones, > 255: all zeros). */
    void (*binarize)(const uint8_t *px, uint32_t n, uint32_t t, uint64_t *out);
} kern_ops;

/* The implementations. kern_avx2 and kern_avx512 may only be called on a CPU
 * that has the instructions (kern_cpu_has). */
extern const kern_ops kern_portable;
extern const kern_ops kern_avx2;
extern const kern_ops kern_avx512;

/* 1 if this CPU can run kernel k (AUTO and PORTABLE: always). */
int kern_cpu_has(enum bnn_kernel k);
/* The ops of the active kernel (bnn_set_kernel, APXSIM_KERNEL, or the best
 * the CPU has), and of a given supported kernel (AUTO = the active one). */
const kern_ops *kern_active(void);
const kern_ops *kern_get(enum bnn_kernel k);
/* The automatic choice for a value of APXSIM_KERNEL (NULL: unset): the named
 * kernel if this CPU has it, else the best it has. */
enum bnn_kernel kern_choose(const char *env);
/* The explicit bnn_set_kernel choice, AUTO if none (to restore it later). */
enum bnn_kernel kern_forced(void);

/* Builds the interleaved copy of a layer's weights into il
 * (blocks * KERN_RB * words words). */
void kern_interleave(const kern_layer *L, uint64_t *il);

/* The portable binarize (kern_portable.binarize), which the SIMD versions
 * use for thresholds outside 1..255 and for the tail of a row. */
void kern_binarize_portable(const uint8_t *px, uint32_t n, uint32_t t, uint64_t *out);

/* Mask of the used bits in the last word of a row of n bits. */
static inline uint64_t kern_last_mask(uint32_t n) {
    return n % 64 ? (1ull << (n % 64)) - 1 : ~0ull;
}

#endif
