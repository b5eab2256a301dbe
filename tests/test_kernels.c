/* test_kernels.c - the inference kernels (workloads/kernels.h), the kernel
 * choice (bnn.h) and the benchmark library (workloads/bench.h).
 *
 * Every fast kernel the CPU has is compared bit for bit with the portable
 * one, and both with a naive reference, on random shapes: fan-ins that are
 * not multiples of 64, neuron counts that are not multiples of the 8-row
 * blocks (nor of the 2-block tiles), column counts that are not multiples of
 * the column tiles or table lanes, padding bits of the weights set to 1, and
 * thresholds placed exactly on the pre-activations (ties). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "../sim/rng.h"
#include "../workloads/bench.h"
#include "../workloads/bnn.h"
#include "../workloads/kernels.h"

static rng_stream stream(uint32_t test, uint32_t trial) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(0x4E41u, test, trial), 0, 0);
    return s;
}

static uint32_t pick(rng_stream *s, const uint32_t *v, size_t n) {
    return v[rng_below(s, n)];
}

/* The fast kernels this CPU can run. */
static int fast_kernels(const kern_ops **out) {
    int n = 0;
    if (kern_cpu_has(BNN_KERNEL_AVX2)) out[n++] = &kern_avx2;
    if (kern_cpu_has(BNN_KERNEL_AVX512)) out[n++] = &kern_avx512;
    return n;
}

/* A random layer: row-major weights with every padding bit set (faults may
 * set them; no kernel may count them), and its interleaved copy. */
typedef struct test_layer {
    kern_layer L;
    uint64_t *rm, *il;
    int32_t *thr, *neg;
    void *aux;
} test_layer;

static void layer_make(test_layer *t, rng_stream *s, uint32_t rows, uint32_t n) {
    memset(t, 0, sizeof *t);
    uint32_t words = (n + 63) / 64, blocks = (rows + KERN_RB - 1) / KERN_RB;
    t->rm = malloc((size_t)rows * words * 8);
    t->il = aligned_alloc(64, (size_t)blocks * KERN_RB * words * 8);
    t->thr = malloc((size_t)blocks * KERN_RB * 4 * 16); /* room for 16 classes */
    t->neg = malloc((size_t)blocks * KERN_RB * 4);
    for (size_t i = 0; i < (size_t)rows * words; i++) t->rm[i] = rng_u64(s);
    for (uint32_t r = 0; r < rows; r++) t->rm[(size_t)r * words + words - 1] |= ~kern_last_mask(n);
    t->L = (kern_layer){rows, words, n, blocks, t->rm, NULL, t->thr, t->neg, NULL};
    kern_interleave(&t->L, t->il);
}

static void layer_free(test_layer *t) {
    free(t->rm);
    free(t->il);
    free(t->thr);
    free(t->neg);
    free(t->aux);
}

/* Points the layer at what kernel K reads. */
static void layer_for(test_layer *t, const kern_ops *K) {
    t->L.il = K->interleaved ? t->il : NULL;
    t->L.aux = NULL;
    if (K->u8_prep) {
        free(t->aux);
        t->aux = aligned_alloc(64, (K->u8_aux(t->L.n, t->L.rows) + 127) / 64 * 64);
        K->u8_prep(&t->L, t->aux);
        t->L.aux = t->aux;
    }
}

static int wbit(const test_layer *t, uint32_t r, uint32_t j) {
    return (int)(t->rm[(size_t)r * t->L.words + j / 64] >> (j % 64) & 1);
}

/* Thresholds for the reference pre-activations a[c * rows + r]: each row
 * takes the value of a random column, plus -1, 0 or +1 (so ties are
 * exercised both ways), with a random direction; rows past `rows` as the
 * driver sets them. */
static void set_thresholds(test_layer *t, rng_stream *s, const int32_t *a, uint32_t ncols,
                           uint32_t classes) {
    uint32_t rows8 = t->L.blocks * KERN_RB;
    for (uint32_t cl = 0; cl < classes; cl++)
        for (uint32_t r = 0; r < rows8; r++) {
            int32_t *thr = t->thr + cl * rows8;
            if (r >= t->L.rows) {
                thr[r] = KERN_THR_MAX;
                if (cl == 0) t->neg[r] = 0;
                continue;
            }
            if (cl == 0) t->neg[r] = rng_u32(s) & 1 ? -1 : 0;
            int32_t v = a[rng_below(s, ncols) * t->L.rows + r] + (int32_t)rng_below(s, 3) - 1;
            thr[r] = t->neg[r] ? -v : v;
        }
}

/* Bits of the reference: fires iff ((a ^ neg) - neg) > thr of the column's class. */
static void ref_bits(const test_layer *t, const int32_t *a, uint32_t ncols, const uint8_t *cls,
                     uint64_t *bits, size_t bs) {
    uint32_t rows8 = t->L.blocks * KERN_RB;
    memset(bits, 0, (size_t)ncols * bs * 8);
    for (uint32_t c = 0; c < ncols; c++)
        for (uint32_t r = 0; r < t->L.rows; r++) {
            const int32_t *thr = t->thr + (cls ? cls[c] : 0) * rows8;
            int32_t v = (a[c * t->L.rows + r] ^ t->neg[r]) - t->neg[r];
            bits[c * bs + r / 64] |= (uint64_t)(v > thr[r]) << (r % 64);
        }
}

/* ---- the kernel choice ------------------------------------------------------------ */

static void test_choice(void) {
    apx_error err;
    CU_ASSERT_STRING_EQUAL(bnn_kernel_name(BNN_KERNEL_AVX512), "avx512");
    CU_ASSERT_STRING_EQUAL(bnn_kernel_name(BNN_KERNEL_PORTABLE), "portable");
    CU_ASSERT_EQUAL(bnn_kernel_parse("avx2"), BNN_KERNEL_AVX2);
    CU_ASSERT_EQUAL(bnn_kernel_parse("AVX2"), -1);
    CU_ASSERT_EQUAL(bnn_kernel_parse(NULL), -1);
    CU_ASSERT(bnn_kernel_supported(BNN_KERNEL_PORTABLE));
    CU_ASSERT_NOT_EQUAL(bnn_kernel_active(), BNN_KERNEL_AUTO);
    CU_ASSERT_EQUAL(bnn_set_kernel((enum bnn_kernel)9, &err), APX_EINPUT);
    for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++) {
        int rc = bnn_set_kernel((enum bnn_kernel)k, &err);
        if (bnn_kernel_supported((enum bnn_kernel)k)) {
            CU_ASSERT_EQUAL(rc, APX_OK);
            CU_ASSERT_EQUAL(bnn_kernel_active(), (enum bnn_kernel)k);
            CU_ASSERT_EQUAL(kern_active()->id, (enum bnn_kernel)k);
        } else {
            CU_ASSERT_EQUAL(rc, APX_EINPUT); /* refused, naming what is missing */
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bnn_kernel_name((enum bnn_kernel)k)));
        }
    }
    CU_ASSERT_EQUAL(bnn_set_kernel(BNN_KERNEL_AUTO, &err), APX_OK);
    CU_ASSERT_EQUAL(kern_forced(), BNN_KERNEL_AUTO);
    /* APXSIM_KERNEL: a supported name wins; unknown names and kernels the
     * CPU lacks fall back to the best one, which is what AUTO runs unset */
    enum bnn_kernel best = kern_choose(NULL);
    CU_ASSERT(bnn_kernel_supported(best));
    CU_ASSERT_EQUAL(kern_choose("portable"), BNN_KERNEL_PORTABLE);
    CU_ASSERT_EQUAL(kern_choose("bogus"), best);
    CU_ASSERT_EQUAL(kern_choose("auto"), best);
    CU_ASSERT_EQUAL(kern_choose("avx2"), bnn_kernel_supported(BNN_KERNEL_AVX2) ? BNN_KERNEL_AVX2 : best);
    CU_ASSERT_EQUAL(kern_choose("avx512"),
                    bnn_kernel_supported(BNN_KERNEL_AVX512) ? BNN_KERNEL_AVX512 : best);
    if (bnn_kernel_supported(BNN_KERNEL_AVX512)) CU_ASSERT_EQUAL(best, BNN_KERNEL_AVX512);
    CU_ASSERT_EQUAL(bnn_kernel_active(), kern_choose(getenv("APXSIM_KERNEL")));
}

/* ---- binary kernels ---------------------------------------------------------------- */

static void test_binary_kernels(void) {
    static const uint32_t rows_v[] = {1, 3, 8, 9, 15, 16, 17, 24, 33, 100};
    static const uint32_t n_v[] = {1, 9, 63, 64, 65, 127, 130, 576, 630, 1000, 2100};
    static const uint32_t cols_v[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 31, 33, 70};
    const kern_ops *fast[2];
    int nf = fast_kernels(fast);
    long compared = 0, a_wrong = 0, bits_wrong = 0, fired = 0, total_bits = 0, ties = 0;
    long extreme = 0;
    for (uint32_t t = 0; t < 120; t++) {
        rng_stream s = stream(1, t);
        uint32_t rows = pick(&s, rows_v, 10), n = pick(&s, n_v, 11), nc = pick(&s, cols_v, 12);
        if (t % 8 == 0) n = 2100 + (uint32_t)rng_below(&s, 2000); /* > 31 words */
        test_layer tl;
        layer_make(&tl, &s, rows, n);
        uint32_t words = tl.L.words, rows8 = tl.L.blocks * KERN_RB;
        /* columns with a stride beyond their words (unused words random) */
        size_t xs = words + rng_below(&s, 2);
        uint64_t *x = malloc((size_t)nc * xs * 8);
        for (size_t i = 0; i < (size_t)nc * xs; i++) x[i] = rng_u64(&s);
        /* extremes: a column equal to a row (a = n) and one its complement
         * (a = -n: every byte of the XOR counts 8, the worst case for
         * narrow per-byte accumulators); long rows in these trials */
        if (t % 4 == 0) {
            uint32_t r0 = (uint32_t)rng_below(&s, rows);
            for (uint32_t j = 0; j < words; j++) {
                x[j] = ~tl.rm[(size_t)r0 * words + j];
                if (nc > 1) x[xs + j] = tl.rm[(size_t)r0 * words + j];
            }
        }
        for (uint32_t c = 0; c < nc; c++) x[c * xs + words - 1] &= kern_last_mask(n);
        /* the naive reference */
        int32_t *ref = malloc((size_t)nc * rows * 4);
        for (uint32_t c = 0; c < nc; c++)
            for (uint32_t r = 0; r < rows; r++) {
                int32_t a = 0;
                for (uint32_t j = 0; j < n; j++)
                    a += (wbit(&tl, r, j) ^ (int)(x[c * xs + j / 64] >> (j % 64) & 1)) ? -1 : 1;
                ref[c * rows + r] = a;
                extreme += words > 31 && (a == -(int32_t)n);
            }
        uint32_t classes = t % 3 == 0 ? 16 : 1;
        uint8_t *cls = malloc(nc);
        for (uint32_t c = 0; c < nc; c++) cls[c] = (uint8_t)rng_below(&s, classes);
        set_thresholds(&tl, &s, ref, nc, classes);
        size_t bs = (rows + 63) / 64 + (t % 2);
        uint64_t *want = malloc((size_t)nc * bs * 8), *got = malloc((size_t)nc * bs * 8);
        ref_bits(&tl, ref, nc, classes > 1 ? cls : NULL, want, bs);
        int32_t *a = malloc((size_t)nc * rows8 * 4);
        const kern_ops *all[3] = {&kern_portable, nf > 0 ? fast[0] : NULL, nf > 1 ? fast[1] : NULL};
        for (int k = 0; k < 3 && all[k]; k++) {
            layer_for(&tl, all[k]);
            kern_out oa = {a, rows8, NULL, 0, NULL, 0};
            all[k]->bin(&tl.L, x, xs, nc, &oa);
            for (uint32_t c = 0; c < nc; c++)
                for (uint32_t r = 0; r < rows; r++) a_wrong += a[c * rows8 + r] != ref[c * rows + r];
            memset(got, 0, (size_t)nc * bs * 8);
            kern_out ob = {NULL, 0, got, bs, classes > 1 ? cls : NULL, rows8};
            all[k]->bin(&tl.L, x, xs, nc, &ob);
            bits_wrong += memcmp(got, want, (size_t)nc * bs * 8) != 0;
            compared++;
        }
        for (uint32_t c = 0; c < nc; c++)
            for (uint32_t r = 0; r < rows; r++) {
                fired += want[c * bs + r / 64] >> (r % 64) & 1;
                int32_t v = (ref[c * rows + r] ^ tl.neg[r]) - tl.neg[r];
                ties += v == tl.thr[(classes > 1 ? cls[c] : 0) * rows8 + r];
                total_bits++;
            }
        free(x);
        free(ref);
        free(cls);
        free(want);
        free(got);
        free(a);
        layer_free(&tl);
    }
    CU_ASSERT_EQUAL(a_wrong, 0);
    CU_ASSERT_EQUAL(bits_wrong, 0);
    CU_ASSERT(compared >= 120 * (1 + nf));
    CU_ASSERT(fired > total_bits / 5 && fired < total_bits * 4 / 5);
    CU_ASSERT(ties > 50);
    CU_ASSERT(extreme >= 5);
}

/* ---- 8-bit kernels ----------------------------------------------------------------- */

static void test_u8_kernels(void) {
    static const uint32_t rows_v[] = {1, 5, 8, 9, 16, 17, 33, 64, 70};
    static const uint32_t n_v[] = {1, 5, 6, 7, 9, 27, 63, 64, 65, 200, 576, 784, 2000};
    static const uint32_t cols_v[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 70};
    const kern_ops *fast[2];
    int nf = fast_kernels(fast);
    long compared = 0, bits_wrong = 0, fired = 0, total_bits = 0, saturated = 0;
    void *scratch = NULL;
    for (uint32_t t = 0; t < 90; t++) {
        rng_stream s = stream(2, t);
        uint32_t rows = pick(&s, rows_v, 9), n = pick(&s, n_v, 13), nc = pick(&s, cols_v, 10);
        test_layer tl;
        layer_make(&tl, &s, rows, n);
        int bright = t % 4 == 0; /* the largest sums: 16-bit lanes must be widened */
        if (bright)
            for (uint32_t r = 0; r < rows; r++)
                for (uint32_t j = 0; j < n; j++)
                    if (rng_u32(&s) % 16) tl.rm[(size_t)r * tl.L.words + j / 64] |= 1ull << (j % 64);
        size_t ps = n + rng_below(&s, 3);
        uint8_t *px = malloc((size_t)nc * ps);
        for (size_t i = 0; i < (size_t)nc * ps; i++)
            px[i] = bright ? (uint8_t)(250 + rng_below(&s, 6)) : (uint8_t)rng_u32(&s);
        int32_t *ref = malloc((size_t)nc * rows * 4);
        for (uint32_t c = 0; c < nc; c++)
            for (uint32_t r = 0; r < rows; r++) {
                int32_t a = 0;
                for (uint32_t j = 0; j < n; j++) a += (wbit(&tl, r, j) ? 1 : -1) * px[c * ps + j];
                ref[c * rows + r] = a;
                saturated += a > 65535;
            }
        set_thresholds(&tl, &s, ref, nc, 1);
        size_t bs = (rows + 63) / 64;
        uint64_t *want = malloc((size_t)nc * bs * 8), *got = malloc((size_t)nc * bs * 8);
        ref_bits(&tl, ref, nc, NULL, want, bs);
        const kern_ops *all[3] = {&kern_portable, nf > 0 ? fast[0] : NULL, nf > 1 ? fast[1] : NULL};
        for (int k = 0; k < 3 && all[k]; k++) {
            layer_for(&tl, all[k]);
            free(scratch);
            scratch = aligned_alloc(64, (all[k]->u8_scratch(n, rows) + 63) / 64 * 64);
            memset(got, 0, (size_t)nc * bs * 8);
            kern_out o = {NULL, 0, got, bs, NULL, 0};
            all[k]->u8(&tl.L, px, ps, nc, scratch, &o);
            bits_wrong += memcmp(got, want, (size_t)nc * bs * 8) != 0;
            compared++;
        }
        for (size_t i = 0; i < (size_t)nc * bs; i++) fired += __builtin_popcountll(want[i]);
        total_bits += (long)nc * rows;
        free(px);
        free(ref);
        free(want);
        free(got);
        layer_free(&tl);
    }
    free(scratch);
    CU_ASSERT_EQUAL(bits_wrong, 0);
    CU_ASSERT(compared >= 90 * (1 + nf));
    CU_ASSERT(fired > total_bits / 5 && fired < total_bits * 4 / 5);
    CU_ASSERT(saturated > 100);
}

/* ---- binarized input ---------------------------------------------------------------- */

/* binarize: every kernel equals bit j = (p_j >= t) on ragged lengths,
 * unaligned sources, pixels at t - 1, t and t + 1, thresholds 1 and 255 and
 * the out-of-range 0 (all ones) and 256+ (all zeros); bits past n are zero
 * and no word past ceil(n / 64) is written. */
static void test_binarize(void) {
    static const uint32_t n_v[] = {1, 7, 31, 32, 33, 63, 64, 65, 127, 128, 129, 784, 1000};
    static const uint32_t t_v[] = {0, 1, 2, 127, 128, 129, 254, 255, 256, 1000};
    const kern_ops *fast[2];
    int nf = fast_kernels(fast);
    const kern_ops *all[3] = {&kern_portable, nf > 0 ? fast[0] : NULL, nf > 1 ? fast[1] : NULL};
    long wrong = 0, compared = 0, ones = 0, bits = 0, at_t = 0;
    for (uint32_t trial = 0; trial < 200; trial++) {
        rng_stream s = stream(5, trial);
        uint32_t n = trial % 4 == 0 ? 1 + (uint32_t)rng_below(&s, 3000) : pick(&s, n_v, 13);
        uint32_t t = trial < 10 ? t_v[trial] : pick(&s, t_v, 10);
        uint32_t off = (uint32_t)rng_below(&s, 4), words = (n + 63) / 64;
        uint8_t *buf = malloc(n + off), *px = buf + off;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t r = rng_u32(&s) % 6;
            int v = r == 0 ? (int)t - 1 : r == 1 ? (int)t : r == 2 ? (int)t + 1 : (int)rng_u32(&s) % 256;
            px[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            at_t += px[j] == t;
        }
        uint64_t want[48] = {0}, got[50];
        for (uint32_t j = 0; j < n; j++) want[j / 64] |= (uint64_t)(px[j] >= t) << (j % 64);
        for (uint32_t i = 0; i < words; i++) ones += __builtin_popcountll(want[i]);
        bits += n;
        for (int k = 0; k < 3 && all[k]; k++) {
            for (int i = 0; i < 50; i++) got[i] = 0x5A5A5A5A5A5A5A5Aull;
            all[k]->binarize(px, n, t, got);
            wrong += memcmp(got, want, words * 8) != 0;
            wrong += got[words] != 0x5A5A5A5A5A5A5A5Aull;
            compared++;
        }
        free(buf);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(compared >= 200 * (1 + nf));
    CU_ASSERT(ones > bits / 5 && ones < bits * 4 / 5);
    CU_ASSERT(at_t > 1000);
}

/* The first layer on binarized pixels as the driver runs it (binarize each
 * column, then the binary kernel) against a scalar reference that never
 * packs bits: a = sum_j w_j * (p_j >= t ? +1 : -1), thresholded with
 * direction (ties included); every kernel, ragged fan-ins and row counts,
 * padding weight bits set. */
static void test_b1_layer(void) {
    static const uint32_t rows_v[] = {1, 5, 8, 9, 16, 17, 33, 70};
    static const uint32_t n_v[] = {1, 9, 63, 64, 65, 130, 784, 1000};
    static const uint32_t cols_v[] = {1, 2, 7, 8, 9, 17, 32, 33};
    const kern_ops *fast[2];
    int nf = fast_kernels(fast);
    const kern_ops *all[3] = {&kern_portable, nf > 0 ? fast[0] : NULL, nf > 1 ? fast[1] : NULL};
    long a_wrong = 0, bits_wrong = 0, compared = 0, fired = 0, total = 0, ties = 0;
    for (uint32_t trial = 0; trial < 80; trial++) {
        rng_stream s = stream(6, trial);
        uint32_t rows = pick(&s, rows_v, 8), n = pick(&s, n_v, 8), nc = pick(&s, cols_v, 8);
        uint32_t t = 1 + (uint32_t)rng_below(&s, 255);
        test_layer tl;
        layer_make(&tl, &s, rows, n);
        uint32_t words = tl.L.words, rows8 = tl.L.blocks * KERN_RB;
        size_t ps = n + rng_below(&s, 3), xs = words + 1;
        uint8_t *px = malloc((size_t)nc * ps);
        for (size_t i = 0; i < (size_t)nc * ps; i++)
            px[i] = rng_u32(&s) % 4 ? (uint8_t)rng_u32(&s) : (uint8_t)t;
        int32_t *ref = malloc((size_t)nc * rows * 4);
        for (uint32_t c = 0; c < nc; c++)
            for (uint32_t r = 0; r < rows; r++) {
                int32_t a = 0;
                for (uint32_t j = 0; j < n; j++)
                    a += (wbit(&tl, r, j) ? 1 : -1) * (px[c * ps + j] >= t ? 1 : -1);
                ref[c * rows + r] = a;
            }
        set_thresholds(&tl, &s, ref, nc, 1);
        size_t bs = (rows + 63) / 64;
        uint64_t *want = malloc((size_t)nc * bs * 8), *got = malloc((size_t)nc * bs * 8);
        ref_bits(&tl, ref, nc, NULL, want, bs);
        uint64_t *x = malloc((size_t)nc * xs * 8);
        int32_t *a = malloc((size_t)nc * rows8 * 4);
        for (int k = 0; k < 3 && all[k]; k++) {
            layer_for(&tl, all[k]);
            for (uint32_t c = 0; c < nc; c++) all[k]->binarize(px + c * ps, n, t, x + c * xs);
            kern_out oa = {a, rows8, NULL, 0, NULL, 0};
            all[k]->bin(&tl.L, x, xs, nc, &oa);
            for (uint32_t c = 0; c < nc; c++)
                for (uint32_t r = 0; r < rows; r++) a_wrong += a[c * rows8 + r] != ref[c * rows + r];
            memset(got, 0, (size_t)nc * bs * 8);
            kern_out ob = {NULL, 0, got, bs, NULL, 0};
            all[k]->bin(&tl.L, x, xs, nc, &ob);
            bits_wrong += memcmp(got, want, (size_t)nc * bs * 8) != 0;
            compared++;
        }
        for (uint32_t c = 0; c < nc; c++)
            for (uint32_t r = 0; r < rows; r++) {
                fired += want[c * bs + r / 64] >> (r % 64) & 1;
                int32_t v = (ref[c * rows + r] ^ tl.neg[r]) - tl.neg[r];
                ties += v == tl.thr[r];
                total++;
            }
        free(px);
        free(ref);
        free(want);
        free(got);
        free(x);
        free(a);
        layer_free(&tl);
    }
    CU_ASSERT_EQUAL(a_wrong, 0);
    CU_ASSERT_EQUAL(bits_wrong, 0);
    CU_ASSERT(compared >= 80 * (1 + nf));
    CU_ASSERT(fired > total / 5 && fired < total * 4 / 5);
    CU_ASSERT(ties > 50);
}

/* ---- whole networks ---------------------------------------------------------------- */

typedef struct net_case {
    bnn_model m;
    dataset d;
    uint64_t *faulty[2];
} net_case;

/* Network shapes: dense or conv, first layer on 8-bit or binarized pixels. */
enum { NET_DENSE, NET_CONV, NET_DENSE_B1, NET_CONV_B1, NET_SHAPES };

static void net_make(net_case *nc, rng_stream *s, int shape, uint32_t n_images) {
    apx_error err;
    memset(nc, 0, sizeof *nc);
    if (shape == NET_CONV || shape == NET_CONV_B1) {
        bnn_layer_spec spec[] = {{shape == NET_CONV ? BNN_CONV_U8 : BNN_CONV_B1, 20, 2},
                                 {BNN_CONV_BIN, 70, 1}, {BNN_DENSE_BIN, 33, 1},
                                 {BNN_DENSE_OUT, 7, 1}};
        CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&nc->m, "c", 9, 7, 2, 4, spec, &err), APX_OK);
    } else if (shape == NET_DENSE_B1) {
        bnn_layer_spec spec[] = {{BNN_DENSE_B1, 130, 1}, {BNN_DENSE_BIN, 65, 1},
                                 {BNN_DENSE_OUT, 9, 1}};
        CU_ASSERT_EQUAL_FATAL(bnn_create_layers(&nc->m, "b", 7, 10, 1, 3, spec, &err), APX_OK);
        nc->m.in_threshold = 100;
    } else {
        uint32_t widths[] = {70, 130, 65, 9};
        CU_ASSERT_EQUAL_FATAL(bnn_create(&nc->m, "d", 7, 10, 3, widths, &err), APX_OK);
    }
    bnn_model *m = &nc->m;
    for (size_t i = 0; i < m->image_words; i++) m->image[i] = rng_u64(s);
    for (uint32_t l = 0; l + 1 < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        double spread = L->kind == BNN_DENSE_U8 || L->kind == BNN_CONV_U8 ? 400 : 4;
        for (uint32_t r = 0; r < L->out; r++) {
            L->threshold[r] = (int32_t)((rng_unit(s) * 2 - 1) * spread);
            L->direction[r] = rng_u32(s) & 1 ? 1 : -1;
        }
    }
    size_t npx = (size_t)m->in_rows * m->in_cols * m->in_channels;
    nc->d = (dataset){.n = n_images, .rows = m->in_rows, .cols = m->in_cols * m->in_channels,
                      .n_classes = m->n_classes};
    nc->d.pixels = malloc(n_images * npx);
    nc->d.labels = malloc(n_images);
    for (size_t i = 0; i < n_images * npx; i++) nc->d.pixels[i] = (uint8_t)rng_u32(s);
    for (uint32_t i = 0; i < n_images; i++) nc->d.labels[i] = (uint8_t)(i % m->n_classes);
    for (int f = 0; f < 2; f++) {
        nc->faulty[f] = malloc(m->image_words * 8);
        memcpy(nc->faulty[f], m->image, m->image_words * 8);
        for (int k = 0; k < 60; k++)
            nc->faulty[f][rng_below(s, m->image_words)] ^= 1ull << rng_below(s, 64);
    }
}

static void net_free(net_case *nc) {
    free(nc->d.pixels);
    free(nc->d.labels);
    free(nc->faulty[0]);
    free(nc->faulty[1]);
    bnn_free(&nc->m);
}

/* Every kernel through bnn_eval_range on dense and conv networks on 8-bit
 * and binarized pixels, ranges
 * whose lengths are not multiples of the batch (1, 31, 33, 70 images), and
 * one workspace reused across three different images in turn (clean, faulty,
 * another faulty, clean again): predictions equal bnn_classify's (portable)
 * for every image. */
static void test_networks_all_kernels(void) {
    apx_error err;
    long wrong = 0, evals = 0, faults_matter = 0;
    for (int shape = 0; shape < NET_SHAPES; shape++) {
        rng_stream s = stream(3, (uint32_t)shape);
        net_case nc;
        net_make(&nc, &s, shape, 70);
        bnn_workspace *ws = bnn_workspace_new(&nc.m);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
        const uint64_t *images[4] = {nc.m.image, nc.faulty[0], nc.faulty[1], nc.m.image};
        uint8_t want[4][70];
        for (int v = 0; v < 4; v++)
            for (uint32_t i = 0; i < 70; i++)
                want[v][i] = (uint8_t)bnn_classify(&nc.m, images[v], dataset_image(&nc.d, i), ws, NULL);
        for (uint32_t i = 0; i < 70; i++) faults_matter += want[0][i] != want[1][i];
        static const uint32_t ranges[][2] = {{0, 70}, {5, 6}, {1, 32}, {2, 35}, {0, 33}};
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++) {
            if (!bnn_kernel_supported((enum bnn_kernel)k)) continue;
            CU_ASSERT_EQUAL_FATAL(bnn_set_kernel((enum bnn_kernel)k, &err), APX_OK);
            for (size_t q = 0; q < sizeof ranges / sizeof ranges[0]; q++)
                for (int v = 0; v < 4; v++) {
                    uint32_t b = ranges[q][0], e = ranges[q][1];
                    uint8_t pred[70];
                    size_t correct = bnn_eval_range(&nc.m, images[v], &nc.d, b, e, ws, pred);
                    size_t want_correct = 0;
                    for (uint32_t i = b; i < e; i++) {
                        wrong += pred[i - b] != want[v][i];
                        want_correct += want[v][i] == nc.d.labels[i];
                    }
                    wrong += correct != want_correct;
                    evals++;
                }
        }
        bnn_set_kernel(BNN_KERNEL_AUTO, &err);
        bnn_workspace_free(ws);
        net_free(&nc);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(evals >= 80);
    CU_ASSERT(faults_matter > 0);
}

/* ---- threads ----------------------------------------------------------------------- */

typedef struct thread_job {
    const bnn_model *m;
    const uint64_t *image;
    const dataset *d;
    uint8_t pred[70];
    int rounds, ok;
} thread_job;

static void *thread_run(void *arg) {
    thread_job *j = arg;
    bnn_workspace *ws = bnn_workspace_new(j->m);
    if (!ws) return NULL;
    j->ok = 1;
    for (int r = 0; r < j->rounds; r++) {
        uint8_t pred[70];
        bnn_eval_range(j->m, j->image, j->d, 0, j->d->n, ws, pred);
        j->ok &= memcmp(pred, j->pred, j->d->n) == 0;
    }
    bnn_workspace_free(ws);
    return NULL;
}

/* Two threads evaluate different images of the same model at the same time
 * with the active kernel; each gets what it gets alone (conv networks on
 * 8-bit and on binarized pixels). */
static void test_threads_shape(int shape) {
    rng_stream s = stream(4, (uint32_t)shape);
    net_case nc;
    net_make(&nc, &s, shape, 70);
    bnn_workspace *ws = bnn_workspace_new(&nc.m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    thread_job jobs[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (thread_job){&nc.m, nc.faulty[t], &nc.d, {0}, 6, 0};
        bnn_eval_range(&nc.m, nc.faulty[t], &nc.d, 0, nc.d.n, ws, jobs[t].pred);
    }
    CU_ASSERT(memcmp(jobs[0].pred, jobs[1].pred, 70) != 0);
    pthread_t tid[2];
    for (int t = 0; t < 2; t++) CU_ASSERT_EQUAL_FATAL(pthread_create(&tid[t], NULL, thread_run, &jobs[t]), 0);
    for (int t = 0; t < 2; t++) pthread_join(tid[t], NULL);
    CU_ASSERT(jobs[0].ok && jobs[1].ok);
    bnn_workspace_free(ws);
    net_free(&nc);
}

static void test_threads(void) {
    test_threads_shape(NET_CONV);
    test_threads_shape(NET_CONV_B1);
    test_threads_shape(NET_DENSE_B1);
}

/* ---- the benchmark library --------------------------------------------------------- */

static void test_bench(void) {
    apx_error err;
    bnn_model m;
    double u8w = 0;
    /* peers.md 3.3: LFC 46,240 and SFC 5,416 words per inference; FINN's
     * LFC and SFC binarize the pixels (threshold 128), so their first layer
     * is a binary layer of 784 -> 13 words; the -u8 variants count their
     * exact 8-bit first layer the same way, as its share */
    CU_ASSERT_EQUAL_FATAL(bench_model("lfc", 1, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(bench_words(&m, &u8w), 46240.0);
    CU_ASSERT_EQUAL(u8w, 0.0);
    CU_ASSERT(m.n_layers == 4 && m.layers[2].in == 1024 && m.layers[3].out == 10);
    CU_ASSERT(m.layers[0].kind == BNN_DENSE_B1 && m.layers[0].in == 784 && m.in_threshold == 128);
    bnn_free(&m);
    CU_ASSERT_EQUAL_FATAL(bench_model("lfc-u8", 1, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(bench_words(&m, &u8w), 46240.0);
    CU_ASSERT_EQUAL(u8w, 13.0 * 1024);
    CU_ASSERT(m.layers[0].kind == BNN_DENSE_U8 && m.in_threshold == 0);
    bnn_free(&m);
    CU_ASSERT_EQUAL_FATAL(bench_model("sfc", 1, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(bench_words(&m, NULL), 5416.0);
    CU_ASSERT_EQUAL(m.layers[0].kind, BNN_DENSE_B1);
    bnn_free(&m);
    CU_ASSERT_EQUAL_FATAL(bench_model("sfc-u8", 1, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(bench_words(&m, &u8w), 5416.0);
    CU_ASSERT_EQUAL(u8w, 13.0 * 256);
    bnn_free(&m);
    CU_ASSERT_EQUAL_FATAL(bench_model("vgg3", 1, &m, &err), APX_OK);
    /* conv1 28*28*64*1 + conv2 14*14*64*9 + fc 2048*49 + out 10*32 */
    CU_ASSERT_EQUAL(bench_words(&m, &u8w), 50176.0 + 112896.0 + 100352.0 + 320.0);
    CU_ASSERT_EQUAL(u8w, 50176.0);
    CU_ASSERT_EQUAL(m.layers[2].in, 3136);
    bnn_free(&m);
    CU_ASSERT_EQUAL(bench_model("nope", 1, &m, &err), APX_EINPUT);

    const char *src;
    CU_ASSERT_EQUAL(bench_clock_ghz(2.5, &src), 2.5);
    CU_ASSERT_STRING_EQUAL(src, "option");
    double ghz = bench_clock_ghz(0, &src);
    CU_ASSERT(ghz > 0.1 && ghz < 20);

    bench_options o;
    bench_defaults(&o);
    o.models = "sfc-u8,sfc";
    o.kernels = "portable";
    o.images = 8;
    o.min_seconds = 0.001;
    o.repeats = 1;
    o.clock_ghz = 2.0;
    bench_result *r;
    size_t n;
    enum bnn_kernel before = kern_forced();
    CU_ASSERT_EQUAL_FATAL(bench_run(&o, &r, &n, &err), APX_OK);
    CU_ASSERT_EQUAL(kern_forced(), before);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    /* rows in the table's order (the list's order does not matter) */
    CU_ASSERT_STRING_EQUAL(r[0].model, "sfc");
    CU_ASSERT_STRING_EQUAL(r[2].model, "sfc-u8");
    CU_ASSERT_STRING_EQUAL(r[0].kernel, "portable");
    CU_ASSERT(r[0].threads == 1 && r[1].threads == 2);
    CU_ASSERT(r[0].inferences_per_s > 0 && r[1].speedup > 0);
    CU_ASSERT_EQUAL(r[0].ceiling_words_per_ns, 16.0);
    CU_ASSERT(r[0].words_per_ns > 0 && r[0].ceiling_fraction > 0);
    /* both count 5,416 words; only the -u8 one has an 8-bit share */
    CU_ASSERT(r[0].words_per_inference == 5416 && r[2].words_per_inference == 5416);
    CU_ASSERT(r[0].u8_words_per_inference == 0 && r[2].u8_words_per_inference == 13 * 256);
    CU_ASSERT_DOUBLE_EQUAL(r[0].words_per_ns, 5416 * r[0].inferences_per_s / 1e9, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r[0].ceiling_fraction, r[0].words_per_ns / 16.0, 1e-12);
    free(r);
    o.models = "sfc,bogus";
    CU_ASSERT_EQUAL(bench_run(&o, &r, &n, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bogus"));
    o.models = "sfc";
    o.kernels = "avx3";
    CU_ASSERT_EQUAL(bench_run(&o, &r, &n, &err), APX_EINPUT);
}

void add_kernels_suite(void) {
    TEST_SUITE("kernels",
               {"choice: names, refusal, forcing", test_choice},
               {"binary: every kernel equals the reference, ragged shapes", test_binary_kernels},
               {"8-bit: every kernel equals the reference, ragged shapes", test_u8_kernels},
               {"binarize: every kernel equals p >= t, ragged and unaligned", test_binarize},
               {"binarized first layer: every kernel equals the +-1 reference", test_b1_layer},
               {"networks: every kernel, batches and images in turn", test_networks_all_kernels},
               {"threads: concurrent evaluations are independent", test_threads},
               {"bench: shapes, words, clock, a tiny run", test_bench});
}
