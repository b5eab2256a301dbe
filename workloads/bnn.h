/* bnn.h - binarized neural networks: the model, its memory image, inference.
 *
 * A model is a list of fully connected layers:
 *   BNN_DENSE_U8   first layer: 8-bit pixels x binary weights, exact integer
 *                  pre-activation a = sum_j w_j * p_j, p_j in 0..255;
 *   BNN_DENSE_BIN  hidden layer: binary inputs x binary weights,
 *                  a = in - 2 * popcount(w XOR x);
 *   BNN_DENSE_OUT  last layer: like BNN_DENSE_BIN but no threshold; its
 *                  integer scores s_c = a_c are the class scores (the learned
 *                  Scale of the float network is stored, scale > 0, so the
 *                  argmax is that of the integer scores; ties -> lowest class).
 *   BNN_CONV_U8    first layer, convolutional: 3x3 kernel, stride 1, on 8-bit
 *                  pixels (in_c channels, exact integer arithmetic);
 *   BNN_CONV_BIN   convolutional on binary activations;
 *   BNN_DENSE_B1   first layer on binarized pixels (FINN style): pixel p_j
 *                  becomes x_j = +1 if p_j >= in_threshold, else -1, and the
 *                  layer is then exactly BNN_DENSE_BIN on x;
 *   BNN_CONV_B1    first layer, convolutional, on binarized pixels: exactly
 *                  BNN_CONV_BIN on the H x W x C map of thresholded pixels.
 * The binarized input is packed once per image (one bit per pixel, HWC
 * order) and the whole network then runs on the binary kernels.
 * Convolutions (version 2 of the file format): the input is in_h x in_w x
 * in_c, stored HWC (channel fastest); fan-in in = 9 * in_c and weight bit
 * (kh * 3 + kw) * in_c + c of row o is the tap (kh, kw), channel c of output
 * channel o. Padding is 1 on each side with ZERO: a tap outside the image
 * contributes nothing (it is left out of the sum, which is what PyTorch's
 * zero padding does to +/-1 values), so at a border a = sum over the valid
 * taps only. With pool = 2 a 2x2 max-pool (stride 2, odd rows/columns
 * dropped) is taken over a BEFORE the threshold, as in the group's models
 * (Conv -> MaxPool -> BN -> sign); for direction +1 that equals the OR of the
 * four thresholded outputs, for direction -1 their AND. The output is
 * (in_h / pool) x (in_w / pool) x out, HWC. A dense layer after a conv layer
 * reads the flattened HWC vector: input index (h * W + w) * C + c.
 * Dense layers have in_c = in, in_h = in_w = 1, pool = 1.
 * Hidden layers (U8, B1, BIN and CONV) end in a folded batch norm + sign: neuron i fires
 * (output bit 1, i.e. +1) iff a > threshold[i] when direction[i] = +1, and iff
 * a < threshold[i] when direction[i] = -1 (gamma < 0). See
 * docs/bnn-format.md and ../shared facts bnn.md section 1 for the folding.
 *
 * Bits: 1 means +1, 0 means -1. Weight row r of a layer is `words` 64-bit
 * words, input j at bit (j % 64) of word (j / 64); padding bits past `in` are
 * zero in a clean model and are never read as data (kernels mask them).
 *
 * The memory image: all packed weights of a model live in one array of
 * 64-bit words (`image`), layer after layer (the layout table `tensors`).
 * This is what the simulated memory holds; fault maps are applied to a copy
 * of it, and inference reads whatever image it is given. Thresholds live
 * outside the image (exact memory) in this version. */
#ifndef APX_BNN_H
#define APX_BNN_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"
#include "dataset.h"

enum bnn_layer_kind {
    BNN_DENSE_U8 = 1,
    BNN_DENSE_BIN = 2,
    BNN_DENSE_OUT = 3,
    BNN_CONV_U8 = 4,
    BNN_CONV_BIN = 5,
    BNN_DENSE_B1 = 6,
    BNN_CONV_B1 = 7,
};

/* The input threshold FINN uses for MNIST: Xilinx/BNN-PYNQ,
 * bnn/src/training/mnist.py scales pixels to [0, 1], maps them to 2x - 1 and
 * binarizes with np.where(x < 0, -1, 1), i.e. +1 iff p / 255 >= 0.5, which
 * for integer pixels is p >= 128 (127.5 is not a pixel value). */
#define BNN_IN_THRESHOLD_FINN 128u

#define BNN_MAX_LAYERS 64
#define BNN_MAX_WIDTH (1u << 20)

typedef struct bnn_layer {
    uint32_t kind;          /* enum bnn_layer_kind */
    uint32_t in, out;       /* fan-in, neurons */
    uint32_t in_c, in_h, in_w;  /* input geometry (dense: in, 1, 1) */
    uint32_t pool;          /* conv: 1 (none) or 2 (2x2 max-pool); dense: 1 */
    uint32_t words;         /* 64-bit words per weight row: ceil(in / 64) */
    size_t offset;          /* first word of this layer's weights in the image */
    int32_t *threshold;     /* [out]; NULL for BNN_DENSE_OUT */
    int8_t *direction;      /* [out], +1 or -1; NULL for BNN_DENSE_OUT */
    float scale;            /* BNN_DENSE_OUT: score scale (> 0), else 0 */
} bnn_layer;

typedef struct bnn_model {
    char name[64];
    uint32_t in_rows, in_cols;  /* input image size */
    uint32_t in_channels;       /* 1 for grey images; in of a dense layer 0 = rows * cols * channels */
    uint32_t n_classes;         /* out of the last layer */
    uint32_t in_threshold;      /* B1 first layers: a pixel is +1 iff p >= in_threshold
                                   (1..255); 0 for 8-bit first layers */
    uint32_t n_layers;
    bnn_layer *layers;
    uint64_t *image;            /* packed weights of all layers */
    size_t image_words;
} bnn_model;

/* A region of the memory image that faults may hit: one weight tensor.
 * Fault maps index its *used* bits row by row: bit b = row * cols + col,
 * which lives at image bit (offset + row * words) * 64 + col. */
typedef struct bnn_tensor {
    uint32_t layer;
    uint32_t rows, cols;        /* out, in */
} bnn_tensor;

static inline uint64_t bnn_tensor_bits(const bnn_model *m, uint32_t layer) {
    return (uint64_t)m->layers[layer].out * m->layers[layer].in;
}

/* Allocates a model with the given layer widths: widths[0] = input size
 * (rows * cols), widths[n_layers] = classes. Layer 0 is BNN_DENSE_U8, the last
 * BNN_DENSE_OUT, the rest BNN_DENSE_BIN. Weights all -1 (zero bits),
 * thresholds 0, directions +1, scale 1. */
int bnn_create(bnn_model *m, const char *name, uint32_t in_rows, uint32_t in_cols,
               uint32_t n_layers, const uint32_t *widths, apx_error *err);

/* One layer of a model to create: its kind, its neurons (dense) or output
 * channels (conv), and for conv layers the pooling (1 or 2). */
typedef struct bnn_layer_spec {
    uint32_t kind, out, pool;
} bnn_layer_spec;

/* Allocates a model from a layer list, chaining the shapes from the input
 * (in_rows x in_cols x in_channels). The first layer must be BNN_DENSE_U8,
 * BNN_CONV_U8, BNN_DENSE_B1 or BNN_CONV_B1, the last BNN_DENSE_OUT (out =
 * classes), hidden layers BNN_DENSE_BIN or BNN_CONV_BIN, and no conv layer
 * after a dense one. Initial values as bnn_create; in_threshold is
 * BNN_IN_THRESHOLD_FINN for a B1 first layer (the caller may change it to
 * any value in 1..255), else 0. bnn_create is this with dense layers. */
int bnn_create_layers(bnn_model *m, const char *name, uint32_t in_rows, uint32_t in_cols,
                      uint32_t in_channels, uint32_t n_layers, const bnn_layer_spec *spec,
                      apx_error *err);
void bnn_free(bnn_model *m);

/* Weight access on the model's own image (for training export and tests). */
static inline int bnn_weight_get(const bnn_model *m, uint32_t l, uint32_t r, uint32_t c) {
    const bnn_layer *L = &m->layers[l];
    return (int)(m->image[L->offset + (size_t)r * L->words + c / 64] >> (c % 64) & 1);
}
static inline void bnn_weight_set(bnn_model *m, uint32_t l, uint32_t r, uint32_t c, int bit) {
    const bnn_layer *L = &m->layers[l];
    uint64_t *w = &m->image[L->offset + (size_t)r * L->words + c / 64];
    uint64_t mask = 1ull << (c % 64);
    *w = bit ? (*w | mask) : (*w & ~mask);
}

/* Folds batch norm into an integer threshold and direction for one neuron
 * (facts bnn.md section 1): tau = mu - beta * sqrt(var + eps) / gamma, and
 * the pre-activation seen by the float network is a / input_scale (255 for the
 * 8-bit first layer trained on p/255, 1 otherwise, including B1 first layers,
 * whose inputs are +-1). The neuron fires iff
 * BN(a / input_scale) > 0 (strict, as the group's binariser). gamma == 0 gives
 * a constant neuron. fan_in bounds |a| / input_scale for clamping. */
void bnn_fold_bn(double gamma, double beta, double mean, double var, double eps,
                 double input_scale, double max_abs_a, int32_t *threshold,
                 int8_t *direction);

/* Per-thread scratch for inference, sized from the model's shapes (it fits
 * any model of the same shape). Everything derived from the weights (the
 * fast kernels' compute copies, thresholds in kernel form, conv border
 * corrections) is rebuilt at the start of every bnn_classify and
 * bnn_eval_range call, so one workspace may be used with any image (clean or
 * faulty) in any order. One workspace per thread; kernels share nothing else. */
typedef struct bnn_workspace bnn_workspace;
bnn_workspace *bnn_workspace_new(const bnn_model *m);
void bnn_workspace_free(bnn_workspace *ws);

/* Classifies one image using weights from `image` (the model's own or a
 * faulty copy with the same layout). scores, if non-NULL, receives the
 * n_classes integer scores. Returns the predicted class. */
int bnn_classify(const bnn_model *m, const uint64_t *image, const uint8_t *pixels,
                 bnn_workspace *ws, int32_t *scores);

/* Classifies samples [begin, end) of d, 32 images per pass over the weights;
 * writes predictions (if non-NULL, indexed from begin) and returns the number
 * classified correctly. Each sample is d->rows * d->cols bytes, which must
 * equal in_rows * in_cols * in_channels (HWC; else nothing is classified and
 * 0 is returned). */
size_t bnn_eval_range(const bnn_model *m, const uint64_t *image, const dataset *d,
                      uint32_t begin, uint32_t end, bnn_workspace *ws, uint8_t *predictions);

/* Inference kernels (workloads/kernels.h): portable C, AVX2, and AVX-512
 * with VPOPCNTDQ. All give identical results; they differ only in speed.
 * AUTO picks the fastest the CPU has; the environment variable
 * APXSIM_KERNEL=portable|avx2|avx512 (read once, at the first use) overrides
 * AUTO. bnn_eval_range uses the active kernel; bnn_classify (one image)
 * always uses the portable one, which reads the image in place (the fast
 * kernels build a compute copy of the weights per call, worth it only for
 * many images). Set the kernel at start, before threads evaluate. */
enum bnn_kernel { BNN_KERNEL_AUTO, BNN_KERNEL_PORTABLE, BNN_KERNEL_AVX2, BNN_KERNEL_AVX512 };

/* Selects the kernel; refuses (APX_EINPUT, naming the missing feature) one
 * this CPU cannot run. AUTO restores the automatic choice (still subject to
 * APXSIM_KERNEL). */
int bnn_set_kernel(enum bnn_kernel k, apx_error *err);
/* The kernel in use (never AUTO), whether the CPU can run k, and names:
 * "auto", "portable", "avx2", "avx512"; bnn_kernel_parse returns -1 for an
 * unknown name. */
enum bnn_kernel bnn_kernel_active(void);
int bnn_kernel_supported(enum bnn_kernel k);
const char *bnn_kernel_name(enum bnn_kernel k);
int bnn_kernel_parse(const char *name);

/* Model files (.bnn, docs/bnn-format.md): versioned, little endian, CRC32
 * checked. The reader validates every count against the file size before it
 * allocates, and names what is wrong. */
int bnn_load(const char *path, bnn_model *m, apx_error *err);
int bnn_save(const bnn_model *m, const char *path, apx_error *err);
/* Reads from / writes to memory (the file functions use these). */
int bnn_decode(const uint8_t *buf, size_t len, const char *name, bnn_model *m, apx_error *err);
int bnn_encode(const bnn_model *m, uint8_t **buf, size_t *len, apx_error *err);

/* A stable 64-bit content hash of the model (weights, thresholds, shapes), as
 * 16 hex digits + NUL, for provenance in the results store. */
void bnn_hash_hex(const bnn_model *m, char out[17]);

/* ORs len bits of src starting at bit s into dst starting at bit d (dst
 * bits there are zero). src must have one readable word past the run when
 * the run does not start on a word. Packs activations for convolutions. */
void bnn_bits_or(uint64_t *dst, uint64_t d, const uint64_t *src, uint64_t s, uint32_t len);

/* The number of set bits among bits [from, from + len) of a bit vector. */
uint32_t bnn_popcount_range(const uint64_t *v, uint64_t from, uint64_t len);

#endif
