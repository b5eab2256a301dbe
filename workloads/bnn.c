/* bnn.c - BNN model allocation, batch-norm folding, and the inference driver.
 *
 * Model files (bnn_load/save/encode/decode/hash) live in bnn_file.c; the
 * inner loops (binary and 8-bit matrix products, per instruction set) in
 * kernels*.c behind kernels.h.
 *
 * Ownership: bnn_create_layers allocates layers[], each hidden layer's
 * threshold[] and direction[] as separate blocks, and image[]; bnn_free
 * releases exactly those, so any code that builds a bnn_model by hand (the
 * file reader) must allocate the same way (or simply call bnn_create_layers
 * and fill it in).
 *
 * The driver. bnn_eval_range takes up to BNN_BATCH images per pass:
 *   - a binarized-input model (B1 first layer) has each image's pixels
 *     thresholded into bits first (kern_ops.binarize, one bit per pixel in
 *     HWC order); from there its first layer is a binary layer like any other;
 *   - the leading convolutional layers run image by image; a convolution is
 *     im2col (each output position's 3x3 patch as one column: pixels for
 *     BNN_CONV_U8, bits for BNN_CONV_BIN and BNN_CONV_B1) and one kernel call
 *     over all positions, so the kernel sees H*W columns per weight block;
 *   - the dense layers run over the whole batch (one column per image), so a
 *     weight block loaded once serves every image of the batch.
 * Zero padding: a tap outside the image must be left out of the sum. For
 * 8-bit inputs the patch holds pixel 0 there, which adds nothing. For binary
 * inputs the patch holds bit 0 (-1) there, so the kernel's full dot product
 * includes -w for each missing tap:
 *   a_valid = a_full + sum over missing taps t of tapsum[o][t],
 * tapsum[o][t] = sum_c w(o, t, c) as +-1, counted from the image being
 * evaluated (faults included) at the start of each call. Which taps are
 * missing depends only on the border class of the position (top/bottom row,
 * left/right column: 16 classes), so the correction is folded into one
 * threshold array per class and the kernel thresholds every position itself.
 * Pooling: max-pool before the threshold equals, per channel, the OR of the
 * four thresholded outputs for direction +1 and their AND for -1 (the
 * threshold test is monotone in a), so the kernel's per-position bits are
 * pooled with word-wide OR/AND selected by a direction mask. */
#include "bnn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Images per pass of bnn_eval_range. 32 fills the 16-bit lanes of one
 * 512-bit vector in the 8-bit layer tables; the binary kernels take columns
 * in smaller groups and reuse each weight block for all of them. */
#define BNN_BATCH 32

/* ---- model ------------------------------------------------------------- */

static int is_conv(uint32_t kind) {
    return kind == BNN_CONV_U8 || kind == BNN_CONV_BIN || kind == BNN_CONV_B1;
}
static int is_u8(uint32_t kind) { return kind == BNN_DENSE_U8 || kind == BNN_CONV_U8; }
static int is_b1(uint32_t kind) { return kind == BNN_DENSE_B1 || kind == BNN_CONV_B1; }
/* convolutions on bits: im2col of a bit map, border corrections */
static int is_conv_bits(uint32_t kind) { return kind == BNN_CONV_BIN || kind == BNN_CONV_B1; }

/* Output bits of a layer (conv: the pooled H x W x C map). */
static uint64_t layer_out_bits(const bnn_layer *L) {
    if (!is_conv(L->kind)) return L->out;
    return (uint64_t)(L->in_h / L->pool) * (L->in_w / L->pool) * L->out;
}

/* Activation maps are bounded so that every bit index fits in 32 bits with
 * room to spare and a workspace stays a sane size. */
#define BNN_MAX_MAP_BITS (1ull << 28)

int bnn_create(bnn_model *m, const char *name, uint32_t in_rows, uint32_t in_cols,
               uint32_t n_layers, const uint32_t *widths, apx_error *err) {
    memset(m, 0, sizeof *m);
    if (n_layers < 2 || n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT,
                        "model needs 2..%u layers (an 8-bit input layer and an output layer), "
                        "got %u", BNN_MAX_LAYERS, n_layers);
    if ((uint64_t)in_rows * in_cols != widths[0])
        return apx_fail(err, APX_EINPUT, "input size %ux%u does not match layer 0 fan-in %u",
                        in_rows, in_cols, widths[0]);
    for (uint32_t l = 0; l <= n_layers; l++)
        if (widths[l] == 0 || widths[l] > BNN_MAX_WIDTH)
            return apx_fail(err, APX_EINPUT, "width %u of layer %u is outside 1..%u", widths[l],
                            l, BNN_MAX_WIDTH);
    bnn_layer_spec spec[BNN_MAX_LAYERS];
    for (uint32_t l = 0; l < n_layers; l++) {
        spec[l].kind = l == 0 ? BNN_DENSE_U8 : l + 1 == n_layers ? BNN_DENSE_OUT : BNN_DENSE_BIN;
        spec[l].out = widths[l + 1];
        spec[l].pool = 1;
    }
    return bnn_create_layers(m, name, in_rows, in_cols, 1, n_layers, spec, err);
}

int bnn_create_layers(bnn_model *m, const char *name, uint32_t in_rows, uint32_t in_cols,
                      uint32_t in_channels, uint32_t n_layers, const bnn_layer_spec *spec,
                      apx_error *err) {
    memset(m, 0, sizeof *m);
    if (n_layers < 2 || n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT,
                        "model needs 2..%u layers (an input layer and an output layer), "
                        "got %u", BNN_MAX_LAYERS, n_layers);
    if (!in_rows || !in_cols || !in_channels ||
        (uint64_t)in_rows * in_cols * in_channels > BNN_MAX_MAP_BITS / 8)
        return apx_fail(err, APX_EINPUT, "input %ux%ux%u is empty or too large", in_rows,
                        in_cols, in_channels);

    /* Chain the shapes and check the kinds before allocating anything. */
    bnn_layer shape[BNN_MAX_LAYERS];
    memset(shape, 0, sizeof shape);
    uint32_t h = in_rows, w = in_cols, c = in_channels;
    uint64_t total = 0;
    for (uint32_t l = 0; l < n_layers; l++) {
        const bnn_layer_spec *S = &spec[l];
        bnn_layer *L = &shape[l];
        int first = l == 0, last = l + 1 == n_layers;
        uint32_t k = S->kind;
        int kind_ok = first ? (is_u8(k) || is_b1(k))
                    : last  ? k == BNN_DENSE_OUT
                            : (k == BNN_DENSE_BIN || k == BNN_CONV_BIN);
        if (!kind_ok)
            return apx_fail(err, APX_EINPUT,
                            "layer %u has kind %u; the first layer must be dense or conv on "
                            "8-bit or binarized pixels, the last a dense output layer, the "
                            "others binary",
                            l, k);
        if (is_conv(k) && l > 0 && !is_conv(spec[l - 1].kind))
            return apx_fail(err, APX_EINPUT,
                            "layer %u: a convolution cannot follow a dense layer", l);
        if (S->out == 0 || S->out > BNN_MAX_WIDTH)
            return apx_fail(err, APX_EINPUT, "width %u of layer %u is outside 1..%u", S->out,
                            l + 1, BNN_MAX_WIDTH);
        L->kind = k;
        L->out = S->out;
        if (is_conv(k)) {
            if (S->pool != 1 && S->pool != 2)
                return apx_fail(err, APX_EINPUT, "layer %u: pool %u (must be 1 or 2)", l,
                                S->pool);
            if (h < S->pool || w < S->pool)
                return apx_fail(err, APX_EINPUT, "layer %u: a %ux%u map cannot be pooled %u",
                                l, h, w, S->pool);
            if ((uint64_t)9 * c > BNN_MAX_WIDTH)
                return apx_fail(err, APX_EINPUT, "layer %u: fan-in 9 x %u exceeds %u", l, c,
                                BNN_MAX_WIDTH);
            L->in_c = c;
            L->in_h = h;
            L->in_w = w;
            L->pool = S->pool;
            L->in = 9 * c;
            if ((uint64_t)h * w * S->out > BNN_MAX_MAP_BITS)
                return apx_fail(err, APX_EINPUT, "layer %u: output map %ux%ux%u is too large",
                                l, h, w, S->out);
            h /= S->pool;
            w /= S->pool;
            c = S->out;
        } else {
            if (S->pool > 1)
                return apx_fail(err, APX_EINPUT, "layer %u: a dense layer has no pooling", l);
            uint64_t in = (uint64_t)h * w * c;
            if (in > BNN_MAX_WIDTH)
                return apx_fail(err, APX_EINPUT, "layer %u: fan-in %llu exceeds %u", l,
                                (unsigned long long)in, BNN_MAX_WIDTH);
            L->in = (uint32_t)in;
            L->in_c = L->in;
            L->in_h = L->in_w = 1;
            L->pool = 1;
            h = w = 1;
            c = S->out;
        }
        L->words = (L->in + 63) / 64;
        /* each term is at most 2^20 * 2^14 words and there are at most 64
         * layers, so the sum fits in 64 bits; check size_t below */
        L->offset = (size_t)total;
        total += (uint64_t)L->out * L->words;
    }
    if (total > SIZE_MAX / sizeof(uint64_t))
        return apx_fail(err, APX_EINPUT, "model of %llu weight words is too large",
                        (unsigned long long)total);

    m->layers = calloc(n_layers, sizeof *m->layers);
    m->image = calloc(total ? (size_t)total : 1, sizeof *m->image);
    if (!m->layers || !m->image) goto oom;
    m->n_layers = n_layers;
    m->image_words = (size_t)total;
    m->in_rows = in_rows;
    m->in_cols = in_cols;
    m->in_channels = in_channels;
    m->n_classes = spec[n_layers - 1].out;
    m->in_threshold = is_b1(spec[0].kind) ? BNN_IN_THRESHOLD_FINN : 0;
    if (name) snprintf(m->name, sizeof m->name, "%s", name);
    for (uint32_t l = 0; l < n_layers; l++) {
        bnn_layer *L = &m->layers[l];
        *L = shape[l];
        if (L->kind == BNN_DENSE_OUT) {
            L->scale = 1.0f;
            continue;
        }
        L->threshold = calloc(L->out, sizeof *L->threshold);
        L->direction = malloc(L->out * sizeof *L->direction);
        if (!L->threshold || !L->direction) goto oom;
        memset(L->direction, 1, L->out); /* +1: int8_t 1 is the byte 0x01 */
    }
    return APX_OK;

oom:
    bnn_free(m);
    return apx_fail(err, APX_EWORK, "out of memory allocating model '%s' (%llu weight words)",
                    name ? name : "", (unsigned long long)total);
}

void bnn_free(bnn_model *m) {
    if (!m) return;
    if (m->layers) {
        for (uint32_t l = 0; l < m->n_layers; l++) {
            free(m->layers[l].threshold);
            free(m->layers[l].direction);
        }
    }
    free(m->layers);
    free(m->image);
    memset(m, 0, sizeof *m);
}

/* ---- batch-norm folding ------------------------------------------------ */

/* The float network's decision for integer pre-activation a, evaluated in
 * double in this exact order: BN(z) = gamma*(z - mean)/sqrt(var+eps) + beta,
 * z = a / input_scale, fires iff BN(z) > 0 (strict; NaN never fires). */
static int bn_fires(double a, double gamma, double beta, double mean, double sd,
                    double input_scale) {
    double z = a / input_scale;
    return gamma * (z - mean) / sd + beta > 0;
}

/* Why a search instead of floor/ceil of tau_a = (mean - beta*sd/gamma) *
 * input_scale: tau_a is rounded, and when the true tau is exactly an integer
 * reachable by a (e.g. mean = a0/255) the rounded tau_a may land a few ulps on
 * the wrong side and move the threshold by one. Each IEEE operation above is
 * monotone, so the double-evaluated BN(a) is monotone in a (non-decreasing
 * for gamma > 0, non-increasing for gamma < 0, constant for gamma = 0); the
 * set of firing integers is therefore a half-line, and a binary search over
 * [-lim, lim] (at most 33 evaluations) finds its end exactly. The folded
 * neuron then agrees bit for bit with the double BN + strict sign for every
 * reachable a. Invalid inputs (NaN anywhere, input_scale <= 0, var + eps < 0)
 * make the predicate false everywhere: the neuron never fires. */
void bnn_fold_bn(double gamma, double beta, double mean, double var, double eps,
                 double input_scale, double max_abs_a, int32_t *threshold,
                 int8_t *direction) {
    /* lim + 1 must fit in int32 */
    double lim_d = (max_abs_a >= 0 && max_abs_a <= (double)INT32_MAX - 1) ? floor(max_abs_a)
                                                                           : (double)INT32_MAX - 1;
    int64_t lim = (int64_t)lim_d;
    double sd = sqrt(var + eps);
    int valid = input_scale > 0 && isfinite(input_scale) && !isnan(gamma);

    if (!valid) {
        *direction = 1;
        *threshold = (int32_t)lim; /* a > lim never holds for |a| <= lim */
        return;
    }
    if (gamma >= 0) {
        /* smallest m in [-lim, lim+1] that fires (lim+1 as sentinel); T = m - 1 */
        int64_t lo = -lim, hi = lim + 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (bn_fires((double)mid, gamma, beta, mean, sd, input_scale))
                hi = mid;
            else
                lo = mid + 1;
        }
        *direction = 1;
        *threshold = (int32_t)(lo - 1);
    } else {
        /* largest m in [-lim-1, lim] that fires (-lim-1 as sentinel); T = m + 1 */
        int64_t lo = -lim - 1, hi = lim;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo + 1) / 2;
            if (bn_fires((double)mid, gamma, beta, mean, sd, input_scale))
                lo = mid;
            else
                hi = mid - 1;
        }
        *direction = -1;
        *threshold = (int32_t)(lo + 1);
    }
}

/* ---- workspace ----------------------------------------------------------- */

/* Border classes of a 3x3 convolution: bits 0/1 = the top/bottom tap row
 * falls outside, bits 2/3 = the left/right tap column does. */
#define CONV_CLASSES 16

static uint32_t border_class(uint32_t h, uint32_t w, uint32_t H, uint32_t W) {
    return (h == 0) | (h + 1 == H) << 1 | (w == 0) << 2 | (w + 1 == W) << 3;
}

static int tap_missing(uint32_t cls, uint32_t t) {
    uint32_t kh = t / 3, kw = t % 3;
    return (kh == 0 && (cls & 1)) || (kh == 2 && (cls & 2)) || (kw == 0 && (cls & 4)) ||
           (kw == 2 && (cls & 8));
}

struct bnn_workspace {
    uint32_t n_layers, n_classes;
    size_t aw;             /* words per image's activation vector (+1 slack word) */
    uint64_t *act[2];      /* [BNN_BATCH][aw] each: ping-pong buffers */
    size_t iw;             /* words per image's binarized pixels (+1 slack word) */
    uint64_t *xin;         /* [BNN_BATCH][iw]: B1 models' binarized input, else unused */
    void *cols;            /* im2col patches of one image (conv layers) */
    uint64_t *pbits;       /* a conv layer's thresholded outputs per position */
    int32_t *scores;       /* [BNN_BATCH][round_up(n_classes, KERN_RB)] */
    void *scratch;         /* the 8-bit kernels' tables */
    void *aux;             /* the 8-bit kernels' per-call data (kern_ops.u8_prep) */
    kern_layer *kl;        /* [n_layers], filled by prepare() per call */
    uint64_t *il;          /* interleaved weight copies of the binary layers */
    int32_t *thr, *neg;    /* kernel thresholds of the hidden layers (conv binary:
                              CONV_CLASSES arrays, one per border class) */
    uint64_t *dirmask;     /* conv layers: bit o set iff direction[o] > 0 */
    uint8_t *cls;          /* conv binary layers: border class per position */
    size_t *il_off, *thr_off, *dir_off, *cls_off; /* [n_layers] offsets into the above */
};

static size_t round_up(size_t n, size_t k) { return (n + k - 1) / k * k; }

static void *alloc64(size_t bytes) {
    return aligned_alloc(64, round_up(bytes ? bytes : 1, 64));
}

/* A workspace fits the model it was made for and any model of the same shape;
 * its buffers are sized from the layer shapes. */
bnn_workspace *bnn_workspace_new(const bnn_model *m) {
    if (!m || m->n_layers < 2) return NULL;
    bnn_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    uint32_t nl = m->n_layers;
    ws->n_layers = nl;
    ws->n_classes = m->n_classes;
    size_t aw = 1, cols_bytes = 8, pbits_words = 1;
    size_t il_words = 0, thr_ints = 0, dir_words = 0, cls_bytes = 0;
    ws->il_off = calloc(nl, sizeof *ws->il_off);
    ws->thr_off = calloc(nl, sizeof *ws->thr_off);
    ws->dir_off = calloc(nl, sizeof *ws->dir_off);
    ws->cls_off = calloc(nl, sizeof *ws->cls_off);
    ws->kl = calloc(nl, sizeof *ws->kl);
    if (!ws->il_off || !ws->thr_off || !ws->dir_off || !ws->cls_off || !ws->kl) goto fail;
    uint32_t scratch_rows = 1;
    for (uint32_t l = 0; l < nl; l++) {
        const bnn_layer *L = &m->layers[l];
        size_t rows8 = round_up(L->out, KERN_RB);
        if (l + 1 < nl) {
            size_t w = (size_t)((layer_out_bits(L) + 63) / 64);
            if (w > aw) aw = w;
        }
        if (is_u8(L->kind) && L->out > scratch_rows) scratch_rows = L->out;
        if (is_conv(L->kind)) {
            size_t P = (size_t)L->in_h * L->in_w;
            size_t col = is_u8(L->kind) ? round_up(L->in, 8) : (size_t)L->words * 8;
            if (P * col > cols_bytes) cols_bytes = P * col;
            size_t pw = P * ((L->out + 63) / 64);
            if (pw > pbits_words) pbits_words = pw;
            ws->dir_off[l] = dir_words;
            dir_words += (L->out + 63) / 64;
        }
        if (!is_u8(L->kind)) {
            ws->il_off[l] = il_words;
            il_words += rows8 * L->words;
        }
        if (L->kind != BNN_DENSE_OUT) {
            ws->thr_off[l] = thr_ints;
            thr_ints += rows8 * (is_conv_bits(L->kind) ? CONV_CLASSES : 1);
        }
        if (is_conv_bits(L->kind)) {
            ws->cls_off[l] = cls_bytes;
            cls_bytes += (size_t)L->in_h * L->in_w;
        }
    }
    ws->aw = aw + 1; /* slack: the bit copier reads one word past a run */
    const bnn_layer *L0 = &m->layers[0];
    uint64_t npx = (uint64_t)m->in_rows * m->in_cols * m->in_channels;
    ws->iw = is_b1(L0->kind) ? (size_t)((npx + 63) / 64) + 1 : 1;
    /* the 8-bit kernels' tables and per-call data: only for an 8-bit first layer */
    size_t scratch = 0, aux = 0;
    for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512 && is_u8(L0->kind); k++) {
        const kern_ops *K = kern_get((enum bnn_kernel)k);
        if (!kern_cpu_has((enum bnn_kernel)k)) continue;
        size_t sk = K->u8_scratch(L0->in, scratch_rows);
        size_t ak = K->u8_aux ? K->u8_aux(L0->in, L0->out) : 0;
        if (sk > scratch) scratch = sk;
        if (ak > aux) aux = ak;
    }
    ws->act[0] = alloc64(BNN_BATCH * ws->aw * 8);
    ws->act[1] = alloc64(BNN_BATCH * ws->aw * 8);
    ws->xin = alloc64(BNN_BATCH * ws->iw * 8);
    ws->cols = alloc64(cols_bytes + 8);
    ws->pbits = alloc64(pbits_words * 8);
    ws->scores = alloc64(BNN_BATCH * round_up(m->n_classes, KERN_RB) * sizeof(int32_t));
    ws->scratch = alloc64(scratch);
    ws->aux = alloc64(aux);
    ws->il = alloc64(il_words * 8);
    ws->thr = alloc64(thr_ints * 4);
    ws->neg = alloc64(thr_ints * 4);
    ws->dirmask = alloc64(dir_words * 8);
    ws->cls = alloc64(cls_bytes);
    if (!ws->act[0] || !ws->act[1] || !ws->xin || !ws->cols || !ws->pbits || !ws->scores ||
        !ws->scratch || !ws->aux || !ws->il || !ws->thr || !ws->neg || !ws->dirmask || !ws->cls)
        goto fail;
    /* border classes depend on the shape only */
    for (uint32_t l = 0; l < nl; l++) {
        const bnn_layer *L = &m->layers[l];
        if (!is_conv_bits(L->kind)) continue;
        uint8_t *cls = ws->cls + ws->cls_off[l];
        for (uint32_t h = 0; h < L->in_h; h++)
            for (uint32_t w = 0; w < L->in_w; w++)
                cls[(size_t)h * L->in_w + w] = (uint8_t)border_class(h, w, L->in_h, L->in_w);
    }
    return ws;
fail:
    bnn_workspace_free(ws);
    return NULL;
}

void bnn_workspace_free(bnn_workspace *ws) {
    if (!ws) return;
    free(ws->act[0]);
    free(ws->act[1]);
    free(ws->xin);
    free(ws->cols);
    free(ws->pbits);
    free(ws->scores);
    free(ws->scratch);
    free(ws->aux);
    free(ws->kl);
    free(ws->il);
    free(ws->thr);
    free(ws->neg);
    free(ws->dirmask);
    free(ws->cls);
    free(ws->il_off);
    free(ws->thr_off);
    free(ws->dir_off);
    free(ws->cls_off);
    free(ws);
}

/* ---- per-call preparation ------------------------------------------------ */

uint32_t bnn_popcount_range(const uint64_t *v, uint64_t from, uint64_t len) {
    uint32_t s = 0;
    while (len) {
        uint64_t w = from / 64, sh = from % 64, take = 64 - sh < len ? 64 - sh : len;
        uint64_t mask = take == 64 ? ~0ull : ((1ull << take) - 1);
        s += (uint32_t)__builtin_popcountll(v[w] >> sh & mask);
        from += take;
        len -= take;
    }
    return s;
}

static int32_t clamp_thr(int64_t t) {
    return t > KERN_THR_MAX ? KERN_THR_MAX : t < -KERN_THR_MAX ? -KERN_THR_MAX : (int32_t)t;
}

/* Fills ws->kl for this image and kernel: weight pointers (and the
 * interleaved copies the kernel wants), thresholds in kernel form (per border
 * class for binary convolutions), and the conv direction masks. Everything
 * that depends on the image is rebuilt here, so a workspace is correct for
 * any image, faulty or not, on every call. */
static void prepare(const bnn_model *m, const uint64_t *image, bnn_workspace *ws,
                    const kern_ops *K) {
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        kern_layer *k = &ws->kl[l];
        k->rows = L->out;
        k->words = L->words;
        k->n = L->in;
        k->blocks = (L->out + KERN_RB - 1) / KERN_RB;
        k->rm = image + L->offset;
        k->il = NULL;
        k->thr = k->neg = NULL;
        k->aux = NULL;
        if (is_u8(L->kind) && K->u8_prep) {
            K->u8_prep(k, ws->aux);
            k->aux = ws->aux;
        }
        if (K->interleaved && !is_u8(L->kind)) {
            uint64_t *il = ws->il + ws->il_off[l];
            kern_interleave(k, il);
            k->il = il;
        }
        if (L->kind == BNN_DENSE_OUT) continue;
        size_t rows8 = (size_t)k->blocks * KERN_RB;
        int32_t *thr = ws->thr + ws->thr_off[l], *neg = ws->neg + ws->thr_off[l];
        for (uint32_t r = 0; r < rows8; r++) {
            if (r >= L->out) {
                thr[r] = KERN_THR_MAX; /* padding rows never fire */
                neg[r] = 0;
            } else if (L->direction[r] < 0) {
                thr[r] = clamp_thr(-(int64_t)L->threshold[r]); /* a < t <=> -a > -t */
                neg[r] = -1;
            } else {
                thr[r] = clamp_thr(L->threshold[r]);
                neg[r] = 0;
            }
        }
        k->thr = thr;
        k->neg = neg;
        if (is_conv(L->kind)) {
            uint64_t *dm = ws->dirmask + ws->dir_off[l];
            memset(dm, 0, ((L->out + 63) / 64) * 8);
            for (uint32_t o = 0; o < L->out; o++)
                dm[o / 64] |= (uint64_t)(L->direction[o] > 0) << (o % 64);
        }
        if (is_conv_bits(L->kind)) {
            /* class c: a = a_full + corr, corr = sum of the missing taps' weights;
             * s = +-a > thr  <=>  +-a_full > thr -+ corr */
            for (uint32_t o = 0; o < L->out; o++) {
                int32_t ts[9];
                for (uint32_t t = 0; t < 9; t++)
                    ts[t] = 2 * (int32_t)bnn_popcount_range(k->rm + (size_t)o * L->words,
                                                        (uint64_t)t * L->in_c, L->in_c) -
                            (int32_t)L->in_c;
                for (uint32_t c = 1; c < CONV_CLASSES; c++) {
                    int32_t corr = 0;
                    for (uint32_t t = 0; t < 9; t++)
                        if (tap_missing(c, t)) corr += ts[t];
                    thr[c * rows8 + o] = neg[o] ? thr[o] + corr : thr[o] - corr;
                }
            }
            for (uint32_t c = 1; c < CONV_CLASSES; c++)
                for (uint32_t r = L->out; r < rows8; r++) thr[c * rows8 + r] = KERN_THR_MAX;
        }
    }
}

/* ---- convolution ----------------------------------------------------------- */

void bnn_bits_or(uint64_t *dst, uint64_t d, const uint64_t *src, uint64_t s, uint32_t len) {
    if (d % 64 == 0 && s % 64 == 0) { /* whole words (64 channels and up) */
        for (uint32_t i = 0; i < len / 64; i++) dst[d / 64 + i] |= src[s / 64 + i];
        d += len / 64 * 64;
        s += len / 64 * 64;
        len %= 64;
    }
    while (len) {
        uint32_t take = len < 64 ? len : 64;
        uint64_t sw = s / 64, ss = s % 64;
        uint64_t v = src[sw] >> ss;
        if (ss && take > 64 - ss) v |= src[sw + 1] << (64 - ss);
        if (take < 64) v &= (1ull << take) - 1;
        uint64_t dw = d / 64, ds = d % 64;
        dst[dw] |= v << ds;
        if (ds && take > 64 - ds) dst[dw + 1] |= v >> (64 - ds);
        s += take;
        d += take;
        len -= take;
    }
}

/* Pools (2x2, or none) one image's per-position output bits (position p at
 * pb + p * cw) into the HWC bit map out: per channel OR for direction +1,
 * AND for -1 (dm). */
static void pool_bits(const bnn_layer *L, const uint64_t *pb, size_t cw, const uint64_t *dm,
                      uint64_t *out) {
    uint32_t W = L->in_w, P = L->pool, Ho = L->in_h / P, Wo = W / P, O = L->out;
    memset(out, 0, (((uint64_t)Ho * Wo * O + 63) / 64) * 8);
    uint64_t res[64];
    for (uint32_t ph = 0; ph < Ho; ph++)
        for (uint32_t pw = 0; pw < Wo; pw++) {
            const uint64_t *f0 = pb + ((size_t)ph * P * W + (size_t)pw * P) * cw;
            uint64_t bit = ((uint64_t)ph * Wo + pw) * O;
            if (P == 1) {
                bnn_bits_or(out, bit, f0, 0, O);
                continue;
            }
            const uint64_t *f1 = f0 + cw, *f2 = f0 + W * cw, *f3 = f2 + cw;
            for (size_t j0 = 0; j0 < cw; j0 += 64) { /* 4096 channels per step */
                size_t nj = cw - j0 < 64 ? cw - j0 : 64;
                for (size_t j = 0; j < nj; j++) {
                    size_t i = j0 + j;
                    uint64_t any = f0[i] | f1[i] | f2[i] | f3[i];
                    uint64_t all = f0[i] & f1[i] & f2[i] & f3[i];
                    res[j] = (dm[i] & any) | (~dm[i] & all);
                }
                uint32_t len = (uint32_t)(O - j0 * 64 < nj * 64 ? O - j0 * 64 : nj * 64);
                bnn_bits_or(out, bit + j0 * 64, res, 0, len);
            }
        }
}

/* One conv layer on one image: in is pixels (HWC bytes) for BNN_CONV_U8 and
 * a bit map for BNN_CONV_BIN and BNN_CONV_B1 (the binarized pixels); out
 * receives the pooled, thresholded bit map. */
static void conv_image(const bnn_layer *L, const kern_layer *k, const uint8_t *cls,
                       const uint64_t *dm, const kern_ops *K, bnn_workspace *ws, const void *in,
                       uint64_t *out) {
    uint32_t H = L->in_h, W = L->in_w, C = L->in_c, P = H * W;
    size_t cw = (L->out + 63) / 64;
    memset(ws->pbits, 0, (size_t)P * cw * 8);
    if (L->kind == BNN_CONV_U8) {
        const uint8_t *px = in;
        uint8_t *cols = ws->cols;
        size_t cs = round_up(L->in, 8);
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t w = 0; w < W; w++) {
                /* tap row kh is 3 C contiguous bytes of input row h + kh - 1 */
                uint8_t *col = cols + ((size_t)h * W + w) * cs;
                int inner = w >= 1 && w + 1 < W;
                for (uint32_t kh = 0; kh < 3; kh++) {
                    uint8_t *dst = col + kh * 3 * C;
                    int64_t hh = (int64_t)h + kh - 1;
                    if (hh < 0 || hh >= H) {
                        memset(dst, 0, 3 * C);
                    } else if (inner) {
                        const uint8_t *src = px + ((size_t)hh * W + w - 1) * C;
                        if (C == 1) { /* grey images: a constant-size copy */
                            memcpy(dst, src, 3);
                        } else {
                            for (uint32_t i = 0; i < 3 * C; i++) dst[i] = src[i];
                        }
                    } else {
                        for (uint32_t kw = 0; kw < 3; kw++) {
                            int64_t ww = (int64_t)w + kw - 1;
                            if (ww < 0 || ww >= W) {
                                memset(dst + kw * C, 0, C);
                                continue;
                            }
                            const uint8_t *src = px + ((size_t)hh * W + (size_t)ww) * C;
                            for (uint32_t c = 0; c < C; c++) dst[kw * C + c] = src[c];
                        }
                    }
                }
            }
        kern_out o = {NULL, 0, ws->pbits, cw, NULL, 0};
        K->u8(k, cols, cs, P, ws->scratch, &o);
    } else {
        const uint64_t *x = in;
        uint64_t *cols = ws->cols;
        size_t cs = L->words;
        memset(cols, 0, (size_t)P * cs * 8);
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t w = 0; w < W; w++) {
                uint64_t *col = cols + ((size_t)h * W + w) * cs;
                for (uint32_t t = 0; t < 9; t++) {
                    int64_t hh = (int64_t)h + t / 3 - 1, ww = (int64_t)w + t % 3 - 1;
                    if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
                    bnn_bits_or(col, (uint64_t)t * C, x, ((uint64_t)hh * W + (uint64_t)ww) * C, C);
                }
            }
        kern_out o = {NULL, 0, ws->pbits, cw, cls, (size_t)k->blocks * KERN_RB};
        K->bin(k, cols, cs, P, &o);
    }
    pool_bits(L, ws->pbits, cw, dm, out);
}

/* ---- the network ----------------------------------------------------------- */

/* nb images (pixels of image i at px + i * px_stride) through the network;
 * leaves the class scores of image i at ws->scores + i * round_up(n_classes, 8). */
static void forward(const bnn_model *m, bnn_workspace *ws, const kern_ops *K, const uint8_t *px,
                    size_t px_stride, uint32_t nb) {
    size_t aw = ws->aw, iw = ws->iw;
    uint32_t l = 0;
    int cur = 0;
    int b1 = is_b1(m->layers[0].kind);
    if (b1) {
        uint32_t npx = m->in_rows * m->in_cols * m->in_channels; /* < 2^25: checked at create */
        for (uint32_t i = 0; i < nb; i++)
            K->binarize(px + i * px_stride, npx, m->in_threshold, ws->xin + i * iw);
    }
    while (l < m->n_layers && is_conv(m->layers[l].kind)) l++;
    uint32_t nconv = l;
    if (nconv) {
        /* the conv prefix image by image: layer i writes act[i % 2] */
        for (uint32_t i = 0; i < nb; i++)
            for (uint32_t c = 0; c < nconv; c++) {
                const void *in = c > 0 ? (const void *)(ws->act[(c - 1) % 2] + i * aw)
                                 : b1  ? (const void *)(ws->xin + i * iw)
                                       : (const void *)(px + i * px_stride);
                conv_image(&m->layers[c], &ws->kl[c], ws->cls + ws->cls_off[c],
                           ws->dirmask + ws->dir_off[c], K, ws, in, ws->act[c % 2] + i * aw);
            }
        cur = (int)((nconv - 1) % 2);
    } else {
        memset(ws->act[0], 0, nb * aw * 8);
        kern_out o = {NULL, 0, ws->act[0], aw, NULL, 0};
        if (b1)
            K->bin(&ws->kl[0], ws->xin, iw, nb, &o);
        else
            K->u8(&ws->kl[0], px, px_stride, nb, ws->scratch, &o);
        cur = 0;
        l = 1;
    }
    for (; l + 1 < m->n_layers; l++) {
        memset(ws->act[cur ^ 1], 0, nb * aw * 8);
        kern_out o = {NULL, 0, ws->act[cur ^ 1], aw, NULL, 0};
        K->bin(&ws->kl[l], ws->act[cur], aw, nb, &o);
        cur ^= 1;
    }
    kern_out o = {ws->scores, round_up(m->n_classes, KERN_RB), NULL, 0, NULL, 0};
    K->bin(&ws->kl[l], ws->act[cur], aw, nb, &o);
}

/* argmax, ties to the lowest class */
static int argmax(const int32_t *s, uint32_t n) {
    int best = 0;
    for (uint32_t c = 1; c < n; c++)
        if (s[c] > s[best]) best = (int)c;
    return best;
}

int bnn_classify(const bnn_model *m, const uint64_t *image, const uint8_t *pixels,
                 bnn_workspace *ws, int32_t *scores) {
    prepare(m, image, ws, &kern_portable);
    forward(m, ws, &kern_portable, pixels, 0, 1);
    if (scores) memcpy(scores, ws->scores, m->n_classes * sizeof *scores);
    return argmax(ws->scores, m->n_classes);
}

size_t bnn_eval_range(const bnn_model *m, const uint64_t *image, const dataset *d,
                      uint32_t begin, uint32_t end, bnn_workspace *ws, uint8_t *predictions) {
    if (end > d->n) end = d->n;
    size_t npx = (size_t)m->in_rows * m->in_cols * m->in_channels;
    if (begin >= end || (uint64_t)d->rows * d->cols != npx) return 0;
    const kern_ops *K = kern_active();
    prepare(m, image, ws, K);
    size_t correct = 0, ss = round_up(m->n_classes, KERN_RB);
    for (uint32_t i = begin; i < end;) {
        uint32_t nb = end - i < BNN_BATCH ? end - i : BNN_BATCH;
        forward(m, ws, K, dataset_image(d, i), npx, nb);
        for (uint32_t k = 0; k < nb; k++) {
            int c = argmax(ws->scores + k * ss, m->n_classes);
            if (predictions) predictions[i + k - begin] = (uint8_t)c;
            correct += c == d->labels[i + k];
        }
        i += nb;
    }
    return correct;
}
