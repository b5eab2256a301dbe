/* bet.c - bit-error-tolerance metrics (bet.h; definitions in docs/bet-metrics.md).
 *
 * One pass per sample, on error-free weights:
 *
 * 1. Trace. Every layer's pre-activations a (before pooling) and output bits
 *    are computed and kept. Binary layers (dense, and conv as im2col
 *    columns) go through the active inference kernel with int32 output
 *    (kernels.h), conv borders corrected per border class as in bnn.c. The
 *    8-bit layers go through the same binary kernel on the eight bit-planes
 *    of their pixel columns: with x_b = plane b of a column,
 *    popcount(w AND x_b) = (popcount(w) + popcount(x_b) - popcount(w XOR x_b)) / 2
 *    and the kernel's a_b = n - 2 popcount(w XOR x_b), so
 *    a = 2 sum_b 2^b popcount(w AND x_b) - sum_j p_j exactly.
 *
 * 2. Margins and k_tol of every hidden output bit (bet.h), counted into
 *    integer histograms.
 *
 * 3. Importance. For every hidden neuron j of layer l, the sample's output
 *    with j's output bits flipped is found exactly by propagating only what
 *    changes, layer by layer, from the cached trace:
 *      - a dense binary layer whose input changed in c bits can only change
 *        the units whose k_tol is below c (changing c inputs moves a exactly
 *        like c weight flips). Units are bucketed by k_tol per sample, so
 *        when c is small those few candidates are updated from the changed
 *        bits alone: a' = a + 2c - 4e, e = changed inputs whose term was +1
 *        (the "sparse" step). Otherwise the modified input vectors of up to
 *        VARIANTS neurons go through the kernel together (the "dense" step).
 *      - a conv layer recomputes, through the kernel, the positions whose
 *        3x3 window holds a changed bit, then re-pools the windows that hold
 *        a recomputed position.
 *      - the output layer adds the changed terms to the scores (or
 *        recomputes them when many changed) and takes the argmax.
 *    A neuron whose changes die out in some layer leaves the prediction as
 *    it was. tests/test_bet.c checks all of it against a plain
 *    re-evaluation of the whole network with the neuron forced.
 *
 * Each thread takes a contiguous slice of the samples and keeps its own
 * integer counts; they are added in thread order at the end, so nothing
 * depends on the thread count. */
#include "bet.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/progress.h"
#include "kernels.h"

#define CHUNK_COLS 256     /* kernel columns per call in the trace */
#define VARIANTS 64        /* flipped neurons propagated together */
#define KCAP 32            /* sparse steps: at most this many changed inputs */
#define DIST_MAX ((size_t)1 << 21) /* entries of a value-count array (for medians) */
#define CONV_CLASSES 16

/* ---- small helpers ------------------------------------------------------------ */

static size_t round_up(size_t n, size_t k) { return (n + k - 1) / k * k; }
static int is_conv(uint32_t kind) { return kind == BNN_CONV_U8 || kind == BNN_CONV_BIN; }
static int is_u8(uint32_t kind) { return kind == BNN_DENSE_U8 || kind == BNN_CONV_U8; }
static int fires(int64_t a, int64_t t, int dir) { return dir > 0 ? a > t : a < t; }
static int bit_get(const uint64_t *v, uint64_t i) { return (int)(v[i / 64] >> (i % 64) & 1); }
static void bit_flip(uint64_t *v, uint64_t i) { v[i / 64] ^= 1ull << (i % 64); }

static void *alloc64(size_t bytes) { return aligned_alloc(64, round_up(bytes ? bytes : 1, 64)); }

/* The smallest change of a in the harmful direction that changes the output
 * bit (>= 1); *up = 1 when that direction is an increase. */
static int64_t need_of(int64_t a, int64_t t, int dir, int *up) {
    if (dir > 0) {
        *up = !(a > t);
        return a > t ? a - t : t + 1 - a;
    }
    *up = a < t;
    return a < t ? t - a : a - t + 1;
}

uint32_t bet_ktol_bin(uint64_t k) {
    if (k < 16) return (uint32_t)k;
    if (k >= (1u << 20)) return BET_KTOL_BINS - 1;
    uint32_t lg = 63 - (uint32_t)__builtin_clzll(k); /* 4..19 */
    return 16 + lg - 4;
}

uint64_t bet_ktol_bin_low(uint32_t bin) {
    if (bin < 16) return bin;
    if (bin >= BET_KTOL_BINS - 1) return 1u << 20;
    return 1ull << (bin - 16 + 4);
}

/* An exact sum of many non-negative 64-bit values. */
typedef struct wide {
    uint64_t lo, hi;
} wide;

static void wide_add(wide *w, uint64_t v) {
    w->lo += v;
    w->hi += w->lo < v;
}
static double wide_double(wide w) { return ldexp((double)w.hi, 64) + (double)w.lo; }

/* Integer values counted exactly: how many, their sum and minimum, and a
 * count per value for the median (values past the array's end share its
 * last entry, so a median out there reads as that value). */
typedef struct dist {
    uint64_t *count;
    size_t size;
    int64_t lo;        /* value of count[0] */
    uint64_t n;
    wide sum;          /* of value - lo */
    int64_t min;
} dist;

static int dist_init(dist *d, int64_t lo, uint64_t range) {
    d->size = range < DIST_MAX ? (size_t)range : DIST_MAX;
    d->count = calloc(d->size, sizeof *d->count);
    d->lo = lo;
    d->n = 0;
    d->sum = (wide){0, 0};
    d->min = INT64_MAX;
    return d->count ? 0 : -1;
}

static void dist_add(dist *d, int64_t v) {
    uint64_t off = (uint64_t)(v - d->lo);
    d->count[off < d->size ? off : d->size - 1]++;
    wide_add(&d->sum, off);
    d->n++;
    if (v < d->min) d->min = v;
}

static void dist_merge(dist *into, const dist *from) {
    for (size_t i = 0; i < into->size; i++) into->count[i] += from->count[i];
    wide_add(&into->sum, from->sum.lo);
    into->sum.hi += from->sum.hi;
    into->n += from->n;
    if (from->min < into->min) into->min = from->min;
}

static double dist_mean(const dist *d) {
    return d->n ? (double)d->lo + wide_double(d->sum) / (double)d->n : 0;
}

/* The median: the mean of the two middle values (the middle one for odd n). */
static double dist_median(const dist *d) {
    if (!d->n) return 0;
    uint64_t want[2] = {(d->n - 1) / 2, d->n / 2}, seen = 0;
    double v[2] = {0, 0};
    int k = 0;
    for (size_t i = 0; i < d->size && k < 2; i++) {
        seen += d->count[i];
        while (k < 2 && want[k] < seen) v[k++] = (double)d->lo + (double)i;
    }
    return (v[0] + v[1]) / 2;
}

static void dist_free(dist *d) {
    free(d->count);
    d->count = NULL;
}

/* ---- the prepared network ------------------------------------------------------- */

/* One layer's shapes and what the kernel and the metrics need of it. */
typedef struct net_layer {
    const bnn_layer *L;
    kern_layer kl;             /* weights for the kernel (int32 output) */
    uint32_t H, W, C;          /* input map (dense: 1 x 1 x in) */
    uint32_t P;                /* positions before pooling (dense 1) */
    uint32_t pool, Ho, Wo, PO; /* pooled map (dense: 1, 1, 1, 1) */
    uint32_t O;                /* units */
    uint32_t astride;          /* int32 per position in a: round_up(O, KERN_RB) */
    uint64_t out_bits;         /* PO * O */
    size_t out_words;          /* words of the output map, + 1 slack word */
    int64_t amax;              /* bound of |a|: in * (255 or 1) */
    int64_t *thr;              /* thresholds clamped into [-amax - 1, amax + 1] */
    int32_t *sthr, *neg;       /* the same in kernel form: fires iff ((a ^ neg) - neg) > sthr */
    int32_t *corr;             /* binary conv: [CONV_CLASSES][astride] border corrections */
    int32_t *rowpc;            /* 8-bit layers: popcount of each weight row */
} net_layer;

typedef struct bet_net {
    const bnn_model *m;
    const uint64_t *image;
    const kern_ops *K;
    uint32_t nl;
    net_layer *lay;
    uint64_t *il;              /* interleaved weight copies (interleaving kernels) */
    /* sizes of the per-thread buffers */
    size_t max_map_words, max_a, max_col_words, max_u8_col, max_astride;
} bet_net;

/* Border class of a 3x3 convolution at (h, w): bits 0/1 = the top/bottom tap
 * row falls outside, bits 2/3 = the left/right column does (as bnn.c). */
static uint32_t border_class(uint32_t h, uint32_t w, uint32_t H, uint32_t W) {
    return (h == 0) | (h + 1 == H) << 1 | (w == 0) << 2 | (w + 1 == W) << 3;
}

static int tap_missing(uint32_t cls, uint32_t t) {
    uint32_t kh = t / 3, kw = t % 3;
    return (kh == 0 && (cls & 1)) || (kh == 2 && (cls & 2)) || (kw == 0 && (cls & 4)) ||
           (kw == 2 && (cls & 8));
}

static void net_free(bet_net *n) {
    if (n->lay)
        for (uint32_t l = 0; l < n->nl; l++) {
            free(n->lay[l].thr);
            free(n->lay[l].sthr);
            free(n->lay[l].neg);
            free(n->lay[l].corr);
            free(n->lay[l].rowpc);
        }
    free(n->lay);
    free(n->il);
    memset(n, 0, sizeof *n);
}

static int net_layer_init(bet_net *n, uint32_t l, size_t *il_words) {
    const bnn_layer *L = &n->m->layers[l];
    net_layer *N = &n->lay[l];
    N->L = L;
    N->O = L->out;
    N->astride = (uint32_t)round_up(L->out, KERN_RB);
    if (is_conv(L->kind)) {
        N->H = L->in_h, N->W = L->in_w, N->C = L->in_c, N->pool = L->pool;
    } else {
        N->H = N->W = 1, N->C = L->in, N->pool = 1;
    }
    N->P = N->H * N->W;
    N->Ho = N->H / N->pool, N->Wo = N->W / N->pool, N->PO = N->Ho * N->Wo;
    N->out_bits = (uint64_t)N->PO * N->O;
    N->out_words = (size_t)(N->out_bits + 63) / 64 + 1;
    N->amax = (int64_t)L->in * (is_u8(L->kind) ? 255 : 1);
    kern_layer *k = &N->kl;
    k->rows = L->out;
    k->words = L->words;
    k->n = L->in;
    k->blocks = (L->out + KERN_RB - 1) / KERN_RB;
    k->rm = n->image + L->offset;
    if (n->K->interleaved) *il_words += (size_t)k->blocks * KERN_RB * L->words;
    if (L->kind != BNN_DENSE_OUT) {
        N->thr = malloc(N->O * sizeof *N->thr);
        N->sthr = malloc(N->O * sizeof *N->sthr);
        N->neg = malloc(N->O * sizeof *N->neg);
        if (!N->thr || !N->sthr || !N->neg) return -1;
        for (uint32_t o = 0; o < N->O; o++) {
            int64_t t = L->threshold[o];
            N->thr[o] = t > N->amax + 1 ? N->amax + 1 : t < -N->amax - 1 ? -N->amax - 1 : t;
            /* |thr| <= 2^28 + 1: a < t <=> -a > -t fits int32 */
            N->neg[o] = L->direction[o] > 0 ? 0 : -1;
            N->sthr[o] = (int32_t)(L->direction[o] > 0 ? N->thr[o] : -N->thr[o]);
        }
    }
    if (is_u8(L->kind)) {
        N->rowpc = malloc(N->O * sizeof *N->rowpc);
        if (!N->rowpc) return -1;
        for (uint32_t o = 0; o < N->O; o++)
            N->rowpc[o] = (int32_t)bnn_popcount_range(k->rm + (size_t)o * L->words, 0, L->in);
    }
    if (L->kind == BNN_CONV_BIN) {
        /* a over the valid taps = the kernel's full sum (missing taps read
         * as -1) + the sum of the missing taps' weights */
        N->corr = calloc((size_t)CONV_CLASSES * N->astride, sizeof *N->corr);
        if (!N->corr) return -1;
        for (uint32_t o = 0; o < N->O; o++) {
            int32_t ts[9];
            for (uint32_t t = 0; t < 9; t++)
                ts[t] = 2 * (int32_t)bnn_popcount_range(k->rm + (size_t)o * L->words,
                                                    (uint64_t)t * N->C, N->C) - (int32_t)N->C;
            for (uint32_t c = 0; c < CONV_CLASSES; c++)
                for (uint32_t t = 0; t < 9; t++)
                    if (tap_missing(c, t)) N->corr[c * N->astride + o] += ts[t];
        }
    }
    return 0;
}

static int net_init(bet_net *n, const bnn_model *m, const uint64_t *image, apx_error *err) {
    memset(n, 0, sizeof *n);
    n->m = m;
    n->image = image;
    n->K = kern_active();
    n->nl = m->n_layers;
    n->lay = calloc(n->nl, sizeof *n->lay);
    if (!n->lay) goto oom;
    size_t il_words = 0;
    for (uint32_t l = 0; l < n->nl; l++) {
        if (net_layer_init(n, l, &il_words)) goto oom;
        const net_layer *N = &n->lay[l];
        size_t in_words = is_conv(N->L->kind) ? ((size_t)N->P * N->C + 63) / 64 + 1 : N->L->words;
        if (N->out_words > n->max_map_words) n->max_map_words = N->out_words;
        if (in_words > n->max_map_words) n->max_map_words = in_words;
        if ((size_t)N->P * N->astride > n->max_a) n->max_a = (size_t)N->P * N->astride;
        if (N->L->words > n->max_col_words) n->max_col_words = N->L->words;
        if (is_u8(N->L->kind) && N->L->in > n->max_u8_col) n->max_u8_col = N->L->in;
        if (N->astride > n->max_astride) n->max_astride = N->astride;
    }
    if (n->K->interleaved) {
        n->il = alloc64(il_words * 8);
        if (!n->il) goto oom;
        size_t off = 0;
        for (uint32_t l = 0; l < n->nl; l++) {
            kern_layer *k = &n->lay[l].kl;
            kern_interleave(k, n->il + off);
            k->il = n->il + off;
            off += (size_t)k->blocks * KERN_RB * k->words;
        }
    }
    return APX_OK;
oom:
    net_free(n);
    return apx_fail(err, APX_EWORK, "out of memory preparing the metrics of model '%s'",
                    m->name);
}

/* ---- per-thread state ------------------------------------------------------------ */

/* What one thread counts. */
typedef struct bet_acc {
    dist margin[BNN_MAX_LAYERS];   /* need values of the hidden output bits */
    uint64_t hist[BNN_MAX_LAYERS][BET_KTOL_BINS];
    uint32_t *flips[BNN_MAX_LAYERS], *correct[BNN_MAX_LAYERS];
    dist out_margin;               /* g = s_y - max other */
    int64_t g_sum_correct;
    uint64_t out_hist[BET_KTOL_BINS];
    uint64_t n_samples, n_correct, sparse, dense;
} bet_acc;

/* The changed output bits of up to VARIANTS flipped neurons: variant v's
 * bit indices are buf[off[v] .. off[v] + cnt[v]). */
typedef struct wave {
    uint32_t *buf;
    size_t n, cap;
    size_t off[VARIANTS], cnt[VARIANTS];
} wave;

typedef struct bet_work {
    const bet_net *net;
    /* the trace of the current sample */
    int32_t *a[BNN_MAX_LAYERS];    /* [P][astride] pre-activations before pooling */
    uint64_t *z[BNN_MAX_LAYERS];   /* output maps (hidden layers) */
    uint32_t *sorted[BNN_MAX_LAYERS]; /* 8-bit layers: per position, its nonzero pixels by value */
    uint32_t *n_sorted[BNN_MAX_LAYERS];
    /* dense binary layers: units ordered by k_tol, bucket starts 0..KCAP+1 */
    uint32_t *order[BNN_MAX_LAYERS];
    uint32_t bucket[BNN_MAX_LAYERS][KCAP + 2];
    uint8_t *ktsmall;              /* k_tol capped at KCAP, one layer at a time */
    /* scratch */
    uint64_t *cols;                /* CHUNK_COLS kernel columns */
    int32_t *tmp;                  /* CHUNK_COLS x max_astride kernel outputs */
    uint8_t *pix;                  /* one 8-bit column */
    uint64_t *xm;                  /* a modified input map */
    int32_t *aq;                   /* recomputed conv positions [P][astride] */
    uint32_t *qmark, *qidx, *qlist, *pmark, *plist, gen;
    int32_t *best;                 /* one pooled row of pre-activations */
    wave w[2];
    bet_acc acc;
} bet_work;

static void acc_free(bet_acc *a, uint32_t nl) {
    for (uint32_t l = 0; l < nl; l++) {
        dist_free(&a->margin[l]);
        free(a->flips[l]);
        free(a->correct[l]);
    }
    dist_free(&a->out_margin);
}

static int acc_init(bet_acc *a, const bet_net *n) {
    memset(a, 0, sizeof *a);
    for (uint32_t l = 0; l + 1 < n->nl; l++) {
        const net_layer *N = &n->lay[l];
        if (dist_init(&a->margin[l], 1, 2 * (uint64_t)N->amax + 2)) return -1;
        a->flips[l] = calloc(N->O, sizeof *a->flips[l]);
        a->correct[l] = calloc(N->O, sizeof *a->correct[l]);
        if (!a->flips[l] || !a->correct[l]) return -1;
    }
    int64_t n_out = n->lay[n->nl - 1].L->in;
    return dist_init(&a->out_margin, -2 * n_out, 4 * (uint64_t)n_out + 1);
}

static void work_free(bet_work *w) {
    if (!w) return;
    uint32_t nl = w->net->nl;
    for (uint32_t l = 0; l < nl; l++) {
        free(w->a[l]);
        free(w->z[l]);
        free(w->sorted[l]);
        free(w->n_sorted[l]);
        free(w->order[l]);
    }
    free(w->ktsmall);
    free(w->cols);
    free(w->tmp);
    free(w->pix);
    free(w->xm);
    free(w->aq);
    free(w->qmark);
    free(w->qidx);
    free(w->qlist);
    free(w->pmark);
    free(w->plist);
    free(w->best);
    free(w->w[0].buf);
    free(w->w[1].buf);
    acc_free(&w->acc, nl);
    free(w);
}

/* A thread's buffers; with_acc adds the counts of bet_compute (the single
 * image functions need none). */
static bet_work *work_new(const bet_net *n, int with_acc) {
    bet_work *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->net = n;
    size_t max_p = 1, max_o = 1, max_bits = 1;
    int fail = with_acc ? acc_init(&w->acc, n) : 0;
    for (uint32_t l = 0; l < n->nl; l++) {
        const net_layer *N = &n->lay[l];
        w->a[l] = malloc((size_t)N->P * N->astride * sizeof *w->a[l]);
        w->z[l] = calloc(N->out_words, sizeof *w->z[l]);
        fail |= !w->a[l] || !w->z[l];
        if (is_u8(N->L->kind)) {
            w->sorted[l] = malloc((size_t)N->P * N->L->in * sizeof *w->sorted[l]);
            w->n_sorted[l] = malloc((size_t)N->P * sizeof *w->n_sorted[l]);
            fail |= !w->sorted[l] || !w->n_sorted[l];
        }
        if (N->L->kind == BNN_DENSE_BIN) {
            w->order[l] = malloc(N->O * sizeof *w->order[l]);
            fail |= !w->order[l];
        }
        if (N->P > max_p) max_p = N->P;
        if (N->O > max_o) max_o = N->O;
        if (N->L->kind != BNN_DENSE_OUT && N->out_bits > max_bits) max_bits = N->out_bits;
    }
    size_t cw = n->max_col_words;
    w->ktsmall = malloc(max_o);
    w->cols = alloc64((CHUNK_COLS > VARIANTS ? CHUNK_COLS : VARIANTS) * cw * 8);
    w->tmp = alloc64((size_t)CHUNK_COLS * n->max_astride * 4);
    w->pix = malloc(n->max_u8_col + 1);
    w->xm = calloc(n->max_map_words + 1, 8);
    w->aq = malloc(n->max_a * sizeof *w->aq);
    w->qmark = calloc(max_p, sizeof *w->qmark);
    w->qidx = malloc(max_p * sizeof *w->qidx);
    w->qlist = malloc(max_p * sizeof *w->qlist);
    w->pmark = calloc(max_p, sizeof *w->pmark);
    w->plist = malloc(max_p * sizeof *w->plist);
    w->best = malloc(n->max_astride * sizeof *w->best);
    for (int i = 0; i < 2; i++) {
        w->w[i].cap = VARIANTS * max_bits;
        w->w[i].buf = malloc(w->w[i].cap * sizeof *w->w[i].buf);
        fail |= !w->w[i].buf;
    }
    if (fail || !w->ktsmall || !w->cols || !w->tmp || !w->pix || !w->xm || !w->aq ||
        !w->qmark || !w->qidx || !w->qlist || !w->pmark || !w->plist || !w->best) {
        work_free(w);
        return NULL;
    }
    return w;
}

/* ---- the trace ------------------------------------------------------------------- */

/* The im2col column of a binary conv layer at position q from the bit map x
 * (taps outside the image stay 0); dense layers read x itself. */
static void column_bits(const net_layer *N, const uint64_t *x, uint32_t q, uint64_t *col) {
    memset(col, 0, N->L->words * 8);
    uint32_t h = q / N->W, w = q % N->W;
    for (uint32_t t = 0; t < 9; t++) {
        int64_t hh = (int64_t)h + t / 3 - 1, ww = (int64_t)w + t % 3 - 1;
        if (hh < 0 || hh >= N->H || ww < 0 || ww >= N->W) continue;
        bnn_bits_or(col, (uint64_t)t * N->C, x, ((uint64_t)hh * N->W + (uint64_t)ww) * N->C, N->C);
    }
}

/* The 8-bit column of position q (dense: the image; conv: the 3x3 patch,
 * pixel 0 outside the image). */
static void column_pixels(const net_layer *N, const uint8_t *px, uint32_t q, uint8_t *col) {
    if (!is_conv(N->L->kind)) {
        memcpy(col, px, N->L->in);
        return;
    }
    uint32_t h = q / N->W, w = q % N->W, C = N->C;
    for (uint32_t t = 0; t < 9; t++) {
        int64_t hh = (int64_t)h + t / 3 - 1, ww = (int64_t)w + t % 3 - 1;
        if (hh < 0 || hh >= N->H || ww < 0 || ww >= N->W)
            memset(col + t * C, 0, C);
        else
            memcpy(col + t * C, px + ((size_t)hh * N->W + (size_t)ww) * C, C);
    }
}

/* The nonzero entries of an 8-bit column, largest pixel first, each packed
 * as pixel << PIX_SHIFT | index (fan-in < 2^20 = BNN_MAX_WIDTH). */
#define PIX_SHIFT 20
static uint32_t sort_pixels(const uint8_t *col, uint32_t n, uint32_t *out) {
    uint32_t start[257] = {0}; /* slot of the first pixel of value 255 - v */
    for (uint32_t j = 0; j < n; j++) start[255 - col[j] + 1]++;
    for (uint32_t v = 1; v < 257; v++) start[v] += start[v - 1];
    uint32_t nz = start[255]; /* pixels of value 0 come last and are left out */
    for (uint32_t j = 0; j < n; j++)
        if (col[j]) out[start[255 - col[j]]++] = (uint32_t)col[j] << PIX_SHIFT | j;
    return nz;
}

/* Pre-activations of an 8-bit layer at positions [q0, q0 + nq): eight
 * bit-plane columns per position through the binary kernel (file comment). */
static void trace_u8(bet_work *w, const net_layer *N, const uint8_t *px, uint32_t q0,
                     uint32_t nq, int32_t *a) {
    const kern_ops *K = w->net->K;
    uint32_t n = N->L->in, words = N->L->words;
    int32_t pixsum[CHUNK_COLS / 8], plane_pc[CHUNK_COLS];
    memset(w->cols, 0, (size_t)nq * 8 * words * 8);
    for (uint32_t i = 0; i < nq; i++) {
        column_pixels(N, px, q0 + i, w->pix);
        uint64_t *pl = w->cols + (size_t)i * 8 * words;
        pixsum[i] = 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t p = w->pix[j];
            pixsum[i] += (int32_t)p;
            for (uint32_t b = 0; b < 8; b++)
                pl[(size_t)b * words + j / 64] |= (uint64_t)(p >> b & 1) << (j % 64);
        }
        for (uint32_t b = 0; b < 8; b++)
            plane_pc[i * 8 + b] = (int32_t)bnn_popcount_range(pl + (size_t)b * words, 0, n);
    }
    kern_out o = {w->tmp, N->astride, NULL, 0, NULL, 0};
    K->bin(&N->kl, w->cols, words, nq * 8, &o);
    for (uint32_t i = 0; i < nq; i++)
        for (uint32_t r = 0; r < N->O; r++) {
            int64_t s = 0;
            for (uint32_t b = 0; b < 8; b++) {
                int32_t ab = w->tmp[(size_t)(i * 8 + b) * N->astride + r];
                int32_t xor_pc = ((int32_t)n - ab) / 2;
                s += (int64_t)((N->rowpc[r] + plane_pc[i * 8 + b] - xor_pc) / 2) << b;
            }
            a[(size_t)(q0 + i) * N->astride + r] = (int32_t)(2 * s - pixsum[i]);
        }
}

/* Pre-activations of a binary conv layer at the positions qs[0 .. nq) (into
 * out[i * astride]) from the input map x. */
static void conv_positions(bet_work *w, const net_layer *N, const uint64_t *x,
                           const uint32_t *qs, uint32_t nq, int32_t *out) {
    uint32_t words = N->L->words;
    for (uint32_t i0 = 0; i0 < nq; i0 += CHUNK_COLS) {
        uint32_t m = nq - i0 < CHUNK_COLS ? nq - i0 : CHUNK_COLS;
        for (uint32_t i = 0; i < m; i++)
            column_bits(N, x, qs ? qs[i0 + i] : i0 + i, w->cols + (size_t)i * words);
        kern_out o = {out + (size_t)i0 * N->astride, N->astride, NULL, 0, NULL, 0};
        w->net->K->bin(&N->kl, w->cols, words, m, &o);
        for (uint32_t i = 0; i < m; i++) {
            uint32_t q = qs ? qs[i0 + i] : i0 + i;
            const int32_t *c = N->corr + border_class(q / N->W, q % N->W, N->H, N->W) * N->astride;
            int32_t *row = out + (size_t)(i0 + i) * N->astride;
            for (uint32_t r = 0; r < N->O; r++) row[r] += c[r];
        }
    }
}

/* best[o] = what the threshold of output bit (p, o) sees: the max of a over
 * the pool window of pooled position p. Positions marked in generation gen
 * (gen > 0) read their recomputed row in w->aq, the others a. */
static void pool_row(const bet_work *w, const net_layer *N, const int32_t *a, uint32_t gen,
                     uint32_t p, int32_t *best) {
    uint32_t ph = p / N->Wo, pw = p % N->Wo;
    for (uint32_t dy = 0; dy < N->pool; dy++)
        for (uint32_t dx = 0; dx < N->pool; dx++) {
            uint32_t q = (ph * N->pool + dy) * N->W + pw * N->pool + dx;
            const int32_t *row = gen && w->qmark[q] == gen ? w->aq + (size_t)w->qidx[q] * N->astride
                                                           : a + (size_t)q * N->astride;
            if (dy == 0 && dx == 0)
                memcpy(best, row, N->O * sizeof *best);
            else
                for (uint32_t o = 0; o < N->O; o++) best[o] = best[o] > row[o] ? best[o] : row[o];
        }
}

/* Bit i set iff unit o0 + i fires at pre-activation a[o0 + i] (cnt <= 64). */
static uint64_t fire_bits(const net_layer *N, const int32_t *a, uint32_t o0, uint32_t cnt) {
    uint64_t bits = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        int32_t s = (a[o0 + i] ^ N->neg[o0 + i]) - N->neg[o0 + i];
        bits |= (uint64_t)(s > N->sthr[o0 + i]) << i;
    }
    return bits;
}

/* cnt <= 64 bits of v from bit `at` (v has a slack word). */
static uint64_t get_bits(const uint64_t *v, uint64_t at, uint32_t cnt) {
    uint64_t w = at / 64, sh = at % 64, x = v[w] >> sh;
    if (sh && cnt > 64 - sh) x |= v[w + 1] << (64 - sh);
    return cnt < 64 ? x & ((1ull << cnt) - 1) : x;
}

/* Sets output bits p * O + o of the map z for the units that fire at best[o]. */
static void put_row(const net_layer *N, const int32_t *best, uint32_t p, uint64_t *z) {
    for (uint32_t o0 = 0; o0 < N->O; o0 += 64) {
        uint32_t cnt = N->O - o0 < 64 ? N->O - o0 : 64;
        uint64_t bits = fire_bits(N, best, o0, cnt);
        bnn_bits_or(z, (uint64_t)p * N->O + o0, &bits, 0, cnt);
    }
}

/* Runs one image through the network, keeping every layer's a and bits. */
static void trace(bet_work *w, const uint8_t *px) {
    const bet_net *n = w->net;
    for (uint32_t l = 0; l < n->nl; l++) {
        const net_layer *N = &n->lay[l];
        uint32_t kind = N->L->kind;
        if (is_u8(kind)) {
            for (uint32_t q0 = 0; q0 < N->P; q0 += CHUNK_COLS / 8) {
                uint32_t nq = N->P - q0 < CHUNK_COLS / 8 ? N->P - q0 : CHUNK_COLS / 8;
                trace_u8(w, N, px, q0, nq, w->a[l]);
            }
            for (uint32_t q = 0; q < N->P; q++) {
                column_pixels(N, px, q, w->pix);
                w->n_sorted[l][q] = sort_pixels(w->pix, N->L->in,
                                                w->sorted[l] + (size_t)q * N->L->in);
            }
        } else if (kind == BNN_CONV_BIN) {
            conv_positions(w, N, w->z[l - 1], NULL, N->P, w->a[l]);
        } else {
            kern_out o = {w->a[l], N->astride, NULL, 0, NULL, 0};
            n->K->bin(&N->kl, w->z[l - 1], N->L->words, 1, &o);
        }
        if (kind == BNN_DENSE_OUT) continue;
        memset(w->z[l], 0, N->out_words * 8);
        for (uint32_t p = 0; p < N->PO; p++) {
            pool_row(w, N, w->a[l], 0, p, w->best);
            put_row(N, w->best, p, w->z[l]);
        }
    }
}

/* argmax, ties to the lowest class */
static int argmax32(const int32_t *s, uint32_t n) {
    int best = 0;
    for (uint32_t c = 1; c < n; c++)
        if (s[c] > s[best]) best = (int)c;
    return best;
}

/* ---- margins and k_tol ----------------------------------------------------------- */

/* k_tol of unit o at position q alone (bet.h). */
static uint64_t position_ktol(const bet_work *w, uint32_t l, uint32_t q, uint32_t o) {
    const net_layer *N = &w->net->lay[l];
    int64_t a = w->a[l][(size_t)q * N->astride + o];
    int up;
    int64_t need = need_of(a, N->thr[o], N->L->direction[o], &up);
    const uint64_t *row = N->kl.rm + (size_t)o * N->L->words;
    if (is_u8(N->L->kind)) {
        /* the largest harmful pixels first: flipping a weight +1 (bit 1)
         * lowers a by 2p, flipping a -1 raises it by 2p */
        const uint32_t *s = w->sorted[l] + (size_t)q * N->L->in;
        uint32_t ns = w->n_sorted[l][q];
        int want = !up;
        int64_t moved = 0;
        uint64_t k = 0;
        for (uint32_t i = 0; i < ns; i++) {
            if (bit_get(row, s[i] & ((1u << PIX_SHIFT) - 1)) != want) continue;
            moved += 2 * (int64_t)(s[i] >> PIX_SHIFT);
            if (moved >= need) return k; /* k + 1 flips suffice */
            k++;
        }
        return N->L->in;
    }
    int64_t nv = N->L->in;
    if (is_conv(N->L->kind)) {
        uint32_t h = q / N->W, ww = q % N->W;
        int64_t rows = 3 - (h == 0) - (h + 1 == N->H), cols = 3 - (ww == 0) - (ww + 1 == N->W);
        nv = (int64_t)N->C * rows * cols;
    }
    int64_t avail = up ? (nv - a) / 2 : (nv + a) / 2; /* terms that move a the harmful way */
    int64_t kmin = (need + 1) / 2;
    return kmin > avail ? N->L->in : (uint64_t)(kmin - 1);
}

/* k_tol of output bit (p, o) of hidden layer l: per window position, then
 * min (one position changing changes the output) or max over the positions
 * agreeing with the output (all of them must change: a lower bound). */
static uint64_t unit_ktol(bet_work *w, uint32_t l, uint32_t p, uint32_t o, int out_bit) {
    const net_layer *N = &w->net->lay[l];
    uint32_t ph = p / N->Wo, pw = p % N->Wo;
    if (N->pool == 1) return position_ktol(w, l, p, o);
    int dir = N->L->direction[o];
    int all_must_change = (dir > 0) == (out_bit == 1);
    uint64_t best = all_must_change ? 0 : UINT64_MAX;
    for (uint32_t dy = 0; dy < N->pool; dy++)
        for (uint32_t dx = 0; dx < N->pool; dx++) {
            uint32_t q = (ph * N->pool + dy) * N->W + pw * N->pool + dx;
            uint64_t k = position_ktol(w, l, q, o);
            if (all_must_change) {
                int bit_q = fires(w->a[l][(size_t)q * N->astride + o], N->thr[o], dir);
                if (bit_q == out_bit && k > best) best = k;
            } else if (k < best) {
                best = k;
            }
        }
    return best;
}

/* Margins and k_tol of every output bit of hidden layer l; for dense binary
 * layers also the units ordered by k_tol (capped at KCAP) for the sparse
 * importance steps. */
static void layer_margins(bet_work *w, uint32_t l) {
    const net_layer *N = &w->net->lay[l];
    bet_acc *acc = &w->acc;
    int dense_bin = N->L->kind == BNN_DENSE_BIN;
    for (uint32_t p = 0; p < N->PO; p++) {
        pool_row(w, N, w->a[l], 0, p, w->best);
        for (uint32_t o = 0; o < N->O; o++) {
            int up, out_bit = bit_get(w->z[l], (uint64_t)p * N->O + o);
            int64_t need = need_of(w->best[o], N->thr[o], N->L->direction[o], &up);
            dist_add(&acc->margin[l], need);
            uint64_t kt = unit_ktol(w, l, p, o, out_bit);
            acc->hist[l][bet_ktol_bin(kt)]++;
            if (dense_bin) w->ktsmall[o] = (uint8_t)(kt < KCAP ? kt : KCAP);
        }
    }
    if (!dense_bin) return;
    uint32_t *b = w->bucket[l];
    memset(b, 0, (KCAP + 2) * sizeof *b);
    for (uint32_t o = 0; o < N->O; o++) b[w->ktsmall[o] + 1]++;
    for (uint32_t k = 1; k < KCAP + 2; k++) b[k] += b[k - 1];
    uint32_t fill[KCAP + 1];
    memcpy(fill, b, sizeof fill);
    for (uint32_t o = 0; o < N->O; o++) w->order[l][fill[w->ktsmall[o]]++] = o;
}

/* The output layer: margin g = s_y - max_{c != y} s_c and the k_tol of the
 * prediction c* (each flip moves one score by 2; class c takes over from c*
 * at a gap of 0 if c < c*, below 0 otherwise). */
static void output_margins(bet_work *w, int label) {
    const net_layer *N = &w->net->lay[w->net->nl - 1];
    const int32_t *s = w->a[w->net->nl - 1];
    uint32_t nc = N->O;
    int pred = argmax32(s, nc);
    int64_t other = INT64_MIN, kmin = INT64_MAX;
    for (uint32_t c = 0; c < nc; c++) {
        if ((int)c != label && s[c] > other) other = s[c];
        if ((int)c == pred) continue;
        int64_t g = (int64_t)s[pred] - s[c];
        int64_t k = (int)c < pred ? (g + 1) / 2 : g / 2 + 1;
        if (k < kmin) kmin = k;
    }
    int64_t g = nc > 1 ? (int64_t)s[label] - other : 0;
    dist_add(&w->acc.out_margin, g);
    if (pred == label) w->acc.g_sum_correct += g;
    uint64_t kt = nc > 1 ? (uint64_t)(kmin - 1) : N->L->in;
    w->acc.out_hist[bet_ktol_bin(kt)]++;
}

/* ---- importance ------------------------------------------------------------------- */

static void wave_begin(wave *wv, uint32_t v) {
    wv->off[v] = wv->n;
    wv->cnt[v] = 0;
}
static void wave_push(wave *wv, uint32_t v, uint32_t bit) {
    wv->buf[wv->n++] = bit;
    wv->cnt[v]++;
}

/* Appends to variant v the output bits of pooled position p whose value at
 * best[] differs from the clean map z. */
static void push_changes(wave *wv, uint32_t v, const net_layer *N, const int32_t *best,
                         const uint64_t *z, uint32_t p) {
    for (uint32_t o0 = 0; o0 < N->O; o0 += 64) {
        uint32_t cnt = N->O - o0 < 64 ? N->O - o0 : 64;
        uint64_t at = (uint64_t)p * N->O + o0;
        uint64_t diff = fire_bits(N, best, o0, cnt) ^ get_bits(z, at, cnt);
        for (; diff; diff &= diff - 1) wave_push(wv, v, (uint32_t)(at + __builtin_ctzll(diff)));
    }
}

/* Conv layer k: the output bits that change when the input bits chg[0..nc)
 * flip, appended to variant v of next. */
static void step_conv(bet_work *w, uint32_t k, const uint32_t *chg, size_t nc, wave *next,
                      uint32_t v) {
    const net_layer *N = &w->net->lay[k];
    const net_layer *I = &w->net->lay[k - 1];
    memcpy(w->xm, w->z[k - 1], I->out_words * 8);
    uint32_t gen = ++w->gen, nq = 0, last_r = UINT32_MAX;
    for (size_t i = 0; i < nc; i++) {
        bit_flip(w->xm, chg[i]);
        uint32_t r = chg[i] / N->C;
        if (r == last_r) continue;
        last_r = r;
        uint32_t h = r / N->W, x = r % N->W;
        for (int dh = -1; dh <= 1; dh++)
            for (int dx = -1; dx <= 1; dx++) {
                int64_t hh = (int64_t)h + dh, xx = (int64_t)x + dx;
                if (hh < 0 || hh >= N->H || xx < 0 || xx >= N->W) continue;
                uint32_t q = (uint32_t)(hh * N->W + xx);
                if (w->qmark[q] == gen) continue;
                w->qmark[q] = gen;
                w->qidx[q] = nq;
                w->qlist[nq++] = q;
            }
    }
    conv_positions(w, N, w->xm, w->qlist, nq, w->aq);
    /* re-pool the windows holding a recomputed position */
    uint32_t np = 0;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t q = w->qlist[i], ph = q / N->W / N->pool, pw = q % N->W / N->pool;
        if (ph >= N->Ho || pw >= N->Wo) continue; /* odd row/column dropped by pooling */
        uint32_t p = ph * N->Wo + pw;
        if (w->pmark[p] == gen) continue;
        w->pmark[p] = gen;
        w->plist[np++] = p;
    }
    for (uint32_t i = 0; i < np; i++) {
        pool_row(w, N, w->a[k], gen, w->plist[i], w->best);
        push_changes(next, v, N, w->best, w->z[k], w->plist[i]);
    }
}

/* Dense binary layer k for every live variant of cur: sparse updates of the
 * units whose k_tol is below the number of changed inputs, or the modified
 * input vectors through the kernel together. */
static void step_dense(bet_work *w, uint32_t k, const wave *cur, const uint8_t *live,
                       uint32_t nv, wave *next) {
    const net_layer *N = &w->net->lay[k];
    const uint64_t *zin = w->z[k - 1], *zout = w->z[k];
    uint32_t words = N->L->words, batch[VARIANTS], nb = 0;
    size_t dense_cost = (size_t)N->O * words / 8;
    for (uint32_t v = 0; v < nv; v++) {
        if (!live[v]) continue;
        const uint32_t *chg = cur->buf + cur->off[v];
        size_t c = cur->cnt[v];
        size_t ncand = c <= KCAP ? w->bucket[k][c] : N->O;
        if (c > KCAP || c * ncand > dense_cost) {
            uint64_t *col = w->cols + (size_t)nb * words;
            memcpy(col, zin, words * 8);
            for (size_t i = 0; i < c; i++) bit_flip(col, chg[i]);
            batch[nb++] = v;
            continue;
        }
        w->acc.sparse++;
        wave_begin(next, v);
        for (size_t i = 0; i < ncand; i++) {
            uint32_t o = w->order[k][i];
            const uint64_t *row = N->kl.rm + (size_t)o * words;
            int64_t e = 0; /* changed inputs whose term w * x was +1 */
            for (size_t j = 0; j < c; j++) e += bit_get(row, chg[j]) == bit_get(zin, chg[j]);
            int64_t a = w->a[k][o] + 2 * (int64_t)c - 4 * e;
            if (fires(a, N->thr[o], N->L->direction[o]) != bit_get(zout, o)) wave_push(next, v, o);
        }
    }
    if (!nb) return;
    w->acc.dense += nb;
    kern_out ko = {w->tmp, N->astride, NULL, 0, NULL, 0};
    w->net->K->bin(&N->kl, w->cols, words, nb, &ko);
    for (uint32_t b = 0; b < nb; b++) {
        uint32_t v = batch[b];
        wave_begin(next, v);
        push_changes(next, v, N, w->tmp + (size_t)b * N->astride, zout, 0);
    }
}

/* The predicted class when the inputs chg[0..c) of the output layer flip. */
static int step_output(bet_work *w, const uint32_t *chg, size_t c) {
    uint32_t k = w->net->nl - 1;
    const net_layer *N = &w->net->lay[k];
    const uint64_t *zin = w->z[k - 1];
    uint32_t words = N->L->words;
    int32_t *s = w->tmp;
    if (c <= 2 * (size_t)words) {
        for (uint32_t r = 0; r < N->O; r++) {
            const uint64_t *row = N->kl.rm + (size_t)r * words;
            int64_t e = 0;
            for (size_t j = 0; j < c; j++) e += bit_get(row, chg[j]) == bit_get(zin, chg[j]);
            s[r] = w->a[k][r] + (int32_t)(2 * (int64_t)c - 4 * e);
        }
    } else {
        memcpy(w->cols, zin, words * 8);
        for (size_t j = 0; j < c; j++) bit_flip(w->cols, chg[j]);
        kern_out ko = {s, N->astride, NULL, 0, NULL, 0};
        w->net->K->bin(&N->kl, w->cols, words, 1, &ko);
    }
    return argmax32(s, N->O);
}

/* Flips neurons [j0, j0 + nv) of hidden layer l one at a time and counts
 * how the prediction changes. */
static void flip_neurons(bet_work *w, uint32_t l, uint32_t j0, uint32_t nv, int pred0,
                         int label) {
    const bet_net *n = w->net;
    const net_layer *S = &n->lay[l];
    wave *cur = &w->w[0], *next = &w->w[1];
    uint8_t live[VARIANTS];
    int pred[VARIANTS];
    cur->n = 0;
    for (uint32_t v = 0; v < nv; v++) {
        wave_begin(cur, v);
        for (uint32_t p = 0; p < S->PO; p++) wave_push(cur, v, p * S->O + j0 + v);
        live[v] = 1;
        pred[v] = pred0;
    }
    for (uint32_t k = l + 1; k < n->nl; k++) {
        uint32_t kind = n->lay[k].L->kind;
        if (kind == BNN_DENSE_OUT) {
            for (uint32_t v = 0; v < nv; v++)
                if (live[v]) pred[v] = step_output(w, cur->buf + cur->off[v], cur->cnt[v]);
            break;
        }
        next->n = 0;
        if (kind == BNN_CONV_BIN) {
            for (uint32_t v = 0; v < nv; v++) {
                if (!live[v]) continue;
                wave_begin(next, v);
                step_conv(w, k, cur->buf + cur->off[v], cur->cnt[v], next, v);
                w->acc.dense++;
            }
        } else {
            step_dense(w, k, cur, live, nv, next);
        }
        int any = 0;
        for (uint32_t v = 0; v < nv; v++) {
            if (live[v] && next->cnt[v] == 0) live[v] = 0;
            any |= live[v];
        }
        wave *t = cur;
        cur = next;
        next = t;
        if (!any) break;
    }
    for (uint32_t v = 0; v < nv; v++) {
        w->acc.flips[l][j0 + v] += pred[v] != pred0;
        w->acc.correct[l][j0 + v] += pred[v] == label;
    }
}

/* Everything for one sample. */
static void sample_metrics(bet_work *w, const uint8_t *px, int label) {
    const bet_net *n = w->net;
    trace(w, px);
    for (uint32_t l = 0; l + 1 < n->nl; l++) layer_margins(w, l);
    output_margins(w, label);
    int pred0 = argmax32(w->a[n->nl - 1], n->lay[n->nl - 1].O);
    w->acc.n_samples++;
    w->acc.n_correct += pred0 == label;
    for (uint32_t l = 0; l + 1 < n->nl; l++)
        for (uint32_t j0 = 0; j0 < n->lay[l].O; j0 += VARIANTS) {
            uint32_t nv = n->lay[l].O - j0 < VARIANTS ? n->lay[l].O - j0 : VARIANTS;
            flip_neurons(w, l, j0, nv, pred0, label);
        }
}

/* ---- threads and the result ----------------------------------------------------------- */

typedef struct slice {
    const bet_net *net;
    const dataset *d;
    const bet_options *opt;
    uint32_t begin, end, total;
    _Atomic size_t *done;
    int report;             /* this slice calls opt->progress */
    bet_work *w;
    int rc;                 /* APX_OK, APX_EWORK (no memory), APX_EINTR */
} slice;

static void *slice_run(void *arg) {
    slice *s = arg;
    s->w = work_new(s->net, 1);
    if (!s->w) {
        s->rc = APX_EWORK;
        return NULL;
    }
    size_t npx = (size_t)s->d->rows * s->d->cols;
    for (uint32_t i = s->begin; i < s->end; i++) {
        if (s->opt->stop && *s->opt->stop) {
            s->rc = APX_EINTR;
            return NULL;
        }
        sample_metrics(s->w, s->d->pixels + (size_t)i * npx, s->d->labels[i]);
        size_t done = atomic_fetch_add(s->done, 1) + 1;
        if (s->report && s->opt->progress) s->opt->progress(s->opt->ctx, done, s->total);
    }
    return NULL;
}

static void stat_of(const double *v, uint32_t n, bet_stat *st) {
    double mean = 0, mabs = 0, var = 0;
    for (uint32_t i = 0; i < n; i++) {
        mean += v[i];
        mabs += fabs(v[i]);
    }
    mean /= n;
    mabs /= n;
    for (uint32_t i = 0; i < n; i++) var += (v[i] - mean) * (v[i] - mean);
    var /= n;
    st->mean = mean;
    st->var = var;
    st->scale_free = mabs > 0 ? var / (mabs * mabs) : 0;
}

/* Fills out from the merged counts (acc of thread 0). */
static int finish(const bet_net *n, bet_acc *acc, bet_metrics *out) {
    uint32_t nl = n->nl, hidden_units = 0;
    for (uint32_t l = 0; l + 1 < nl; l++) hidden_units += n->lay[l].O;
    double *imp = malloc(hidden_units * sizeof *imp), *fr = malloc(hidden_units * sizeof *fr);
    if (!imp || !fr) {
        free(imp);
        free(fr);
        return -1;
    }
    double N = (double)acc->n_samples;
    out->n_samples = (uint32_t)acc->n_samples;
    out->n_correct = (uint32_t)acc->n_correct;
    out->n_layers = nl;
    out->steps_sparse = acc->sparse;
    out->steps_dense = acc->dense;
    double norm_layers = 0, norm_sum = 0;
    uint32_t at = 0;
    for (uint32_t l = 0; l < nl; l++) {
        const net_layer *L = &n->lay[l];
        bet_layer_metrics *M = &out->layer[l];
        M->kind = L->L->kind;
        M->units = L->O;
        M->fan_in = L->L->in;
        M->positions = L->PO;
        M->input_scale = is_u8(L->L->kind) ? 255 : 1;
        if (l + 1 == nl) continue;
        const dist *d = &acc->margin[l];
        M->n_margins = d->n;
        M->margin_mean = dist_mean(d) - 0.5;
        M->margin_min = (double)d->min - 0.5;
        M->margin_median = dist_median(d) - 0.5;
        M->margin_norm_mean = M->margin_mean / (M->fan_in * M->input_scale);
        memcpy(M->ktol_hist, acc->hist[l], sizeof M->ktol_hist);
        for (uint32_t b = 0; b < BET_KTOL_BINS; b++) out->ktol_hist[b] += acc->hist[l][b];
        out->n_margins += d->n;
        norm_layers += M->margin_norm_mean;
        norm_sum += M->margin_norm_mean * (double)d->n;
        M->flips = acc->flips[l];
        M->correct = acc->correct[l];
        acc->flips[l] = acc->correct[l] = NULL; /* out owns them now */
        for (uint32_t j = 0; j < L->O; j++) {
            imp[at + j] = ((double)acc->n_correct - M->correct[j]) / N;
            fr[at + j] = M->flips[j] / N;
        }
        stat_of(imp + at, L->O, &M->importance);
        stat_of(fr + at, L->O, &M->flip_rate);
        at += L->O;
    }
    out->margin_norm_mean = out->n_margins ? norm_sum / (double)out->n_margins : 0;
    out->margin_norm_mean_layers = nl > 1 ? norm_layers / (nl - 1) : 0;
    stat_of(imp, hidden_units, &out->importance);
    stat_of(fr, hidden_units, &out->flip_rate);
    free(imp);
    free(fr);
    const dist *g = &acc->out_margin;
    out->output_margin_mean = dist_mean(g) / 2;
    out->output_margin_mean_correct =
        acc->n_correct ? (double)acc->g_sum_correct / (double)acc->n_correct / 2 : 0;
    out->output_margin_median = dist_median(g) / 2;
    out->output_margin_min = (double)g->min / 2;
    memcpy(out->output_ktol_hist, acc->out_hist, sizeof out->output_ktol_hist);
    return 0;
}

static void acc_merge(bet_acc *into, const bet_acc *from, uint32_t nl, const bet_net *n) {
    for (uint32_t l = 0; l + 1 < nl; l++) {
        dist_merge(&into->margin[l], &from->margin[l]);
        for (uint32_t b = 0; b < BET_KTOL_BINS; b++) into->hist[l][b] += from->hist[l][b];
        for (uint32_t j = 0; j < n->lay[l].O; j++) {
            into->flips[l][j] += from->flips[l][j];
            into->correct[l][j] += from->correct[l][j];
        }
    }
    dist_merge(&into->out_margin, &from->out_margin);
    into->g_sum_correct += from->g_sum_correct;
    for (uint32_t b = 0; b < BET_KTOL_BINS; b++) into->out_hist[b] += from->out_hist[b];
    into->n_samples += from->n_samples;
    into->n_correct += from->n_correct;
    into->sparse += from->sparse;
    into->dense += from->dense;
}

static int check_inputs(const bnn_model *m, const dataset *d, uint32_t limit, apx_error *err) {
    if (!m || !d || m->n_layers < 2 || !m->layers)
        return apx_fail(err, APX_EINPUT, "metrics: no model or data set");
    if (d->n == 0) return apx_fail(err, APX_EINPUT, "metrics: the data set is empty");
    if (limit > d->n)
        return apx_fail(err, APX_EINPUT, "metrics: limit %u exceeds the %u samples of the data set",
                        limit, d->n);
    uint64_t npx = (uint64_t)m->in_rows * m->in_cols * m->in_channels;
    if ((uint64_t)d->rows * d->cols != npx)
        return apx_fail(err, APX_EINPUT,
                        "metrics: model '%s' expects %ux%ux%u inputs, the data set has %ux%u "
                        "images", m->name, m->in_rows, m->in_cols, m->in_channels, d->rows,
                        d->cols);
    if (d->n_classes != m->n_classes)
        return apx_fail(err, APX_EINPUT,
                        "metrics: model '%s' has %u classes, the data set %u", m->name,
                        m->n_classes, d->n_classes);
    return APX_OK;
}

int bet_compute(const bnn_model *m, const dataset *d, const bet_options *opt, bet_metrics *out,
                apx_error *err) {
    static const bet_options defaults = {0};
    if (!opt) opt = &defaults;
    memset(out, 0, sizeof *out);
    if (check_inputs(m, d, opt->limit, err)) return err->code;
    double t0 = progress_now();
    bet_net net;
    if (net_init(&net, m, m->image, err)) return err->code;
    uint32_t n = opt->limit ? opt->limit : d->n;
    uint32_t threads = opt->threads ? opt->threads : 1;
    if (threads > n) threads = n;
    if (threads > 256) threads = 256;
    slice *sl = calloc(threads, sizeof *sl);
    pthread_t *tid = calloc(threads, sizeof *tid);
    _Atomic size_t done = 0;
    int rc = APX_OK;
    if (!sl || !tid) {
        rc = apx_fail(err, APX_EWORK, "out of memory");
        goto out;
    }
    for (uint32_t t = 0; t < threads; t++)
        sl[t] = (slice){&net, d, opt, (uint32_t)((uint64_t)n * t / threads),
                        (uint32_t)((uint64_t)n * (t + 1) / threads), n, &done, t == 0, NULL,
                        APX_OK};
    uint32_t started = 1;
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, slice_run, &sl[started])) break;
    slice_run(&sl[0]);
    for (uint32_t t = 1; t < started; t++) pthread_join(tid[t], NULL);
    if (started < threads)
        rc = apx_fail(err, APX_EWORK, "metrics: cannot start %u threads", threads);
    for (uint32_t t = 0; t < threads && rc == APX_OK; t++) {
        if (sl[t].rc == APX_EINTR) rc = apx_fail(err, APX_EINTR, "metrics: interrupted");
        else if (sl[t].rc) rc = apx_fail(err, APX_EWORK, "metrics: out of memory");
    }
    if (rc == APX_OK) {
        for (uint32_t t = 1; t < threads; t++)
            acc_merge(&sl[0].w->acc, &sl[t].w->acc, net.nl, &net);
        if (finish(&net, &sl[0].w->acc, out)) {
            bet_metrics_free(out);
            rc = apx_fail(err, APX_EWORK, "out of memory");
        }
    }
    if (rc == APX_OK) out->seconds = progress_now() - t0;
out:
    for (uint32_t t = 0; sl && t < threads; t++) work_free(sl[t].w);
    free(sl);
    free(tid);
    net_free(&net);
    return rc;
}

void bet_metrics_free(bet_metrics *b) {
    if (!b) return;
    for (uint32_t l = 0; l < BNN_MAX_LAYERS; l++) {
        free(b->layer[l].flips);
        free(b->layer[l].correct);
    }
    memset(b, 0, sizeof *b);
}

/* ---- rows ------------------------------------------------------------------------------ */

#define BIN_NAMES(p)                                                                        \
    p "0", p "1", p "2", p "3", p "4", p "5", p "6", p "7", p "8", p "9", p "10", p "11",      \
        p "12", p "13", p "14", p "15", p "16_31", p "32_63", p "64_127", p "128_255",         \
        p "256_511", p "512_1023", p "1024_2047", p "2048_4095", p "4096_8191",                \
        p "8192_16383", p "16384_32767", p "32768_65535", p "65536_131071",                    \
        p "131072_262143", p "262144_524287", p "524288_1048575", p "1048576_up"
static const char *const ktol_names[BET_KTOL_BINS] = {BIN_NAMES("bet.ktol_")};
static const char *const output_ktol_names[BET_KTOL_BINS] = {BIN_NAMES("bet.output_ktol_")};
static const uint32_t kappas[] = {0, 1, 2, 5};
static const char *const ktol_le_names[] = {"bet.ktol_le_0", "bet.ktol_le_1", "bet.ktol_le_2",
                                            "bet.ktol_le_5"};
static const char *const output_ktol_le_names[] = {"bet.output_ktol_le_0", "bet.output_ktol_le_1",
                                                   "bet.output_ktol_le_2", "bet.output_ktol_le_5"};

typedef struct row_sink {
    bet_row *rows;
    size_t cap, n;
} row_sink;

static void put(row_sink *s, const char *name, int layer, double value) {
    if (s->n < s->cap) s->rows[s->n] = (bet_row){name, layer, value};
    s->n++;
}

static void put_hist(row_sink *s, const uint64_t *h, uint64_t total, int layer,
                     const char *const *le_names, const char *const *bin_names) {
    double t = total ? (double)total : 1;
    for (size_t i = 0; i < sizeof kappas / sizeof *kappas; i++) {
        uint64_t c = 0;
        for (uint32_t b = 0; b <= kappas[i]; b++) c += h[b];
        put(s, le_names[i], layer, (double)c / t);
    }
    for (uint32_t b = 0; b < BET_KTOL_BINS; b++) put(s, bin_names[b], layer, (double)h[b] / t);
}

static void put_stat(row_sink *s, const char *mean, const char *var, const char *sf, int layer,
                     const bet_stat *st) {
    put(s, mean, layer, st->mean);
    put(s, var, layer, st->var);
    put(s, sf, layer, st->scale_free);
}

size_t bet_rows(const bet_metrics *b, bet_row *rows, size_t cap) {
    row_sink s = {rows, rows ? cap : 0, 0};
    put(&s, "bet.samples", -1, b->n_samples);
    put(&s, "bet.accuracy", -1, b->n_samples ? (double)b->n_correct / b->n_samples : 0);
    put(&s, "bet.margin_norm_mean", -1, b->margin_norm_mean);
    put(&s, "bet.margin_norm_mean_layers", -1, b->margin_norm_mean_layers);
    put_hist(&s, b->ktol_hist, b->n_margins, -1, ktol_le_names, ktol_names);
    put_stat(&s, "bet.importance_mean", "bet.importance_var", "bet.importance_var_scalefree", -1,
             &b->importance);
    put_stat(&s, "bet.fliprate_mean", "bet.fliprate_var", "bet.fliprate_var_scalefree", -1,
             &b->flip_rate);
    for (uint32_t l = 0; l < b->n_layers; l++) {
        const bet_layer_metrics *M = &b->layer[l];
        int li = (int)l;
        put(&s, "bet.units", li, M->units);
        put(&s, "bet.fan_in", li, M->fan_in);
        if (l + 1 == b->n_layers) {
            put(&s, "bet.output_margin_mean", li, b->output_margin_mean);
            put(&s, "bet.output_margin_mean_correct", li, b->output_margin_mean_correct);
            put(&s, "bet.output_margin_median", li, b->output_margin_median);
            put(&s, "bet.output_margin_min", li, b->output_margin_min);
            put_hist(&s, b->output_ktol_hist, b->n_samples, li, output_ktol_le_names,
                     output_ktol_names);
            continue;
        }
        put(&s, "bet.positions", li, M->positions);
        put(&s, "bet.margin_mean", li, M->margin_mean);
        put(&s, "bet.margin_min", li, M->margin_min);
        put(&s, "bet.margin_median", li, M->margin_median);
        put(&s, "bet.margin_norm_mean", li, M->margin_norm_mean);
        put_hist(&s, M->ktol_hist, M->n_margins, li, ktol_le_names, ktol_names);
        put_stat(&s, "bet.importance_mean", "bet.importance_var", "bet.importance_var_scalefree",
                 li, &M->importance);
        put_stat(&s, "bet.fliprate_mean", "bet.fliprate_var", "bet.fliprate_var_scalefree", li,
                 &M->flip_rate);
    }
    return s.n;
}

/* ---- single images ------------------------------------------------------------------------ */

/* A net and one work for a single image on `image`. */
static int single_begin(const bnn_model *m, const uint64_t *image, uint32_t layer,
                        bet_net *net, bet_work **w, apx_error *err) {
    if (!m || m->n_layers < 2 || layer >= m->n_layers)
        return apx_fail(err, APX_EINPUT, "metrics: layer %u is not in the model", layer);
    if (net_init(net, m, image, err)) return err->code;
    *w = work_new(net, 0);
    if (!*w) {
        net_free(net);
        return apx_fail(err, APX_EWORK, "out of memory");
    }
    return APX_OK;
}

int bet_preactivations(const bnn_model *m, const uint64_t *image, const uint8_t *pixels,
                       uint32_t layer, int64_t *out, apx_error *err) {
    bet_net net;
    bet_work *w;
    if (single_begin(m, image, layer, &net, &w, err)) return err->code;
    trace(w, pixels);
    const net_layer *N = &net.lay[layer];
    for (uint32_t p = 0; p < N->PO; p++) {
        if (layer + 1 == net.nl)
            memcpy(w->best, w->a[layer], N->O * sizeof *w->best);
        else
            pool_row(w, N, w->a[layer], 0, p, w->best);
        for (uint32_t o = 0; o < N->O; o++) out[(size_t)p * N->O + o] = w->best[o];
    }
    work_free(w);
    net_free(&net);
    return APX_OK;
}

int bet_ktols(const bnn_model *m, const uint8_t *pixels, uint32_t layer, uint64_t *out,
              apx_error *err) {
    if (m && layer + 1 >= m->n_layers)
        return apx_fail(err, APX_EINPUT, "metrics: layer %u is not a hidden layer", layer);
    bet_net net;
    bet_work *w;
    if (single_begin(m, m ? m->image : NULL, layer, &net, &w, err)) return err->code;
    trace(w, pixels);
    const net_layer *N = &net.lay[layer];
    for (uint32_t p = 0; p < N->PO; p++)
        for (uint32_t o = 0; o < N->O; o++) {
            uint64_t bit = (uint64_t)p * N->O + o;
            out[bit] = unit_ktol(w, layer, p, o, bit_get(w->z[layer], bit));
        }
    work_free(w);
    net_free(&net);
    return APX_OK;
}

/* ---- the flip probability ---------------------------------------------------------------- */

/* P(Bin(n, p) = k) for k = 0..n into pmf. */
static void binomial_pmf(uint32_t n, double p, double *pmf) {
    for (uint32_t k = 0; k <= n; k++) {
        if (p <= 0 || p >= 1) {
            pmf[k] = (p <= 0 ? k == 0 : k == n) ? 1 : 0;
            continue;
        }
        pmf[k] = exp(lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0) + k * log(p) +
                     (n - k) * log1p(-p));
    }
}

static int64_t floor_half(int64_t x) { return x >= 0 ? x / 2 : -((-x + 1) / 2); }

double bet_flip_probability(uint32_t n, int64_t a, int32_t threshold, int direction, double p) {
    if (a > (int64_t)n || a < -(int64_t)n || ((int64_t)n - a) % 2 || !(p >= 0 && p <= 1) ||
        (direction != 1 && direction != -1))
        return NAN;
    uint32_t A = (uint32_t)((n + a) / 2), D = (uint32_t)((n - a) / 2);
    double *pa = malloc((A + 1) * sizeof *pa), *cd = malloc((D + 1) * sizeof *cd);
    if (!pa || !cd) {
        free(pa);
        free(cd);
        return NAN;
    }
    binomial_pmf(A, p, pa);
    binomial_pmf(D, p, cd);
    for (uint32_t k = 1; k <= D; k++) cd[k] += cd[k - 1]; /* CDF of F- */
    int orig = fires(a, threshold, direction);
    double prob = 0;
    for (uint32_t fp = 0; fp <= A; fp++) {
        /* a' = a - 2 fp + 2 fm. d = +1: fires iff fm > (T - a + 2 fp) / 2, i.e.
         * fm >= m + 1 with m = floor(...). d = -1: fires iff fm < (T - a + 2 fp) / 2,
         * i.e. fm <= m' with m' = ceil(...) - 1 = -floor(-(...)) - 1. */
        int64_t x = (int64_t)threshold - a + 2 * (int64_t)fp;
        int64_t m = direction > 0 ? floor_half(x) : -floor_half(-x) - 1;
        double le = m < 0 ? 0 : m >= (int64_t)D ? 1 : cd[m]; /* P(fm <= m) */
        /* d = +1: fires' iff fm > m; d = -1: fires' iff fm <= m */
        double p_fires = direction > 0 ? 1 - le : le;
        prob += pa[fp] * (orig ? 1 - p_fires : p_fires);
    }
    free(pa);
    free(cd);
    return prob;
}
