/* kernels_avx2.c - AVX2 kernels (with POPCNT and BMI2).
 *
 * Compiled with -mavx2 -mpopcnt -mbmi2 (meson.build) and only called after
 * kern_cpu_has(BNN_KERNEL_AVX2).
 *
 * Binary layers read the interleaved weights (kernels.h): a block of 8
 * neurons is two ymm per word. AVX2 has no vector popcount, so each XOR
 * result is counted per byte with two 16-entry nibble lookups (VPSHUFB,
 * Mula's method) into byte accumulators, which VPSADBW folds into 64-bit
 * sums every BYTE_WORDS words (each byte gains at most 8 per word, 31 * 8 <
 * 256). A tile is one block x 4 columns: per word 2 weight loads and 4
 * broadcast activation words feed 8 ymm counts.
 *
 * 8-bit layers: the table lookups of kernels_avx512.c with the 16 16-bit
 * lanes of a ymm holding 16 columns (see there). */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "kernels_lut.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- binary layers ----------------------------------------------------------- */

#define TILE_COLS 4
#define BYTE_WORDS 31

/* per-byte popcount of x */
ALWAYS_INLINE __m256i popcnt_bytes(__m256i x, __m256i lut, __m256i low4) {
    __m256i lo = _mm256_and_si256(x, low4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* 4 pre-activations (rows of one ymm half) to the output */
ALWAYS_INLINE void emit(const kern_layer *L, const kern_out *o, uint32_t b, uint32_t c,
                        __m256i cnt_lo, __m256i cnt_hi) {
    /* 64-bit counts of rows 0-3 and 4-7 -> 8 int32 */
    __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m128i c0 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(cnt_lo, idx));
    __m128i c1 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(cnt_hi, idx));
    __m256i cnt = _mm256_inserti128_si256(_mm256_castsi128_si256(c0), c1, 1);
    __m256i a = _mm256_sub_epi32(_mm256_set1_epi32((int)L->n), _mm256_slli_epi32(cnt, 1));
    if (o->bits) {
        const int32_t *thr = o->cls ? L->thr + o->cls[c] * o->cls_stride : L->thr;
        __m256i neg = _mm256_loadu_si256((const __m256i *)(L->neg + b * KERN_RB));
        __m256i t = _mm256_loadu_si256((const __m256i *)(thr + b * KERN_RB));
        __m256i s = _mm256_sub_epi32(_mm256_xor_si256(a, neg), neg);
        uint32_t f = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(s, t)));
        ((uint8_t *)(o->bits + c * o->bits_stride))[b] = (uint8_t)f;
    } else {
        _mm256_storeu_si256((__m256i *)(o->a + c * o->a_stride + b * KERN_RB), a);
    }
}

/* Block b against columns c0 .. c0 + TILE_COLS - 1; columns past ncols
 * re-read the last column and are not written. */
ALWAYS_INLINE void bin_tile(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                            uint32_t b, uint32_t c0, const kern_out *o) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
    uint32_t words = L->words;
    const uint64_t *w = L->il + (size_t)b * words * KERN_RB;
    const uint64_t *xc[TILE_COLS];
    for (int i = 0; i < TILE_COLS; i++)
        xc[i] = x + (c0 + i < ncols ? c0 + i : ncols - 1) * xs;
    __m256i sum[TILE_COLS][2];
    for (int i = 0; i < TILE_COLS; i++) sum[i][0] = sum[i][1] = zero;
    for (uint32_t j0 = 0; j0 < words; j0 += BYTE_WORDS) {
        uint32_t j1 = j0 + BYTE_WORDS < words ? j0 + BYTE_WORDS : words;
        __m256i acc[TILE_COLS][2];
        for (int i = 0; i < TILE_COLS; i++) acc[i][0] = acc[i][1] = zero;
        for (uint32_t j = j0; j < j1; j++) {
            __m256i w0 = _mm256_load_si256((const __m256i *)(w + (size_t)j * KERN_RB));
            __m256i w1 = _mm256_load_si256((const __m256i *)(w + (size_t)j * KERN_RB + 4));
            for (int i = 0; i < TILE_COLS; i++) {
                __m256i xb = _mm256_set1_epi64x((long long)xc[i][j]);
                acc[i][0] = _mm256_add_epi8(acc[i][0], popcnt_bytes(_mm256_xor_si256(w0, xb), lut, low4));
                acc[i][1] = _mm256_add_epi8(acc[i][1], popcnt_bytes(_mm256_xor_si256(w1, xb), lut, low4));
            }
        }
        for (int i = 0; i < TILE_COLS; i++) {
            sum[i][0] = _mm256_add_epi64(sum[i][0], _mm256_sad_epu8(acc[i][0], zero));
            sum[i][1] = _mm256_add_epi64(sum[i][1], _mm256_sad_epu8(acc[i][1], zero));
        }
    }
    for (int i = 0; i < TILE_COLS; i++) {
        if (c0 + i >= ncols) break;
        emit(L, o, b, c0 + i, sum[i][0], sum[i][1]);
    }
}

static void bin_avx2(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                     const kern_out *o) {
    for (uint32_t b = 0; b < L->blocks; b++)
        for (uint32_t c = 0; c < ncols; c += TILE_COLS) bin_tile(L, x, xs, ncols, b, c, o);
}

/* ---- 8-bit layers ------------------------------------------------------------ */

#define LUT_COLS 16 /* 16-bit lanes per ymm */



typedef struct lut_scratch {
    __m256i *tab, *acc16, *acc32;
    uint16_t *pt;
    int32_t *pixsum;
} lut_scratch;

static size_t u8_scratch_avx2(uint32_t n, uint32_t rows) {
    return (size_t)LUT_G * LUT_E * 32 + (size_t)rows * 32 * 3 +
           (size_t)lut_groups(n) * LUT_BITS * LUT_COLS * 2 + LUT_COLS * 4;
}

static lut_scratch lut_scratch_at(void *p, uint32_t n, uint32_t rows) {
    lut_scratch s;
    char *c = p;
    s.tab = (__m256i *)c;
    c += (size_t)LUT_G * LUT_E * 32;
    s.acc16 = (__m256i *)c;
    c += (size_t)rows * 32;
    s.acc32 = (__m256i *)c;
    c += (size_t)rows * 64;
    s.pt = (uint16_t *)c;
    c += (size_t)lut_groups(n) * LUT_BITS * LUT_COLS * 2;
    s.pixsum = (int32_t *)c;
    return s;
}

static size_t u8_aux_avx2(uint32_t n, uint32_t rows) { return lut_aux_bytes(n, rows); }

static void u8_prep_avx2(const kern_layer *L, void *aux) { lut_prep_offsets(L, aux, 32); }

/* The 2^LUT_BITS entries of one group from its pixel vectors p_k: the subset
 * sums of the low half of the inputs stay in registers, those of the high
 * half are walked in Gray-code order (one add or subtract each), and entry
 * h * 2^LO + l = hi_h + lo_l is stored without ever being read back (reading
 * back just-stored vectors stalls on store forwarding). */
#define LUT_LO (LUT_BITS / 2)
ALWAYS_INLINE void table_build(__m256i *T, const uint16_t *p) {
    __m256i pk[LUT_BITS], lo[1 << LUT_LO];
    for (int k = 0; k < LUT_BITS; k++) pk[k] = _mm256_load_si256((const __m256i *)(p + k * LUT_COLS));
    lo[0] = _mm256_setzero_si256();
    for (int k = 0; k < LUT_LO; k++)
        for (int v = 0; v < 1 << k; v++) lo[(1 << k) + v] = _mm256_add_epi16(lo[v], pk[k]);
    __m256i hv = _mm256_setzero_si256();
    for (int i = 0; i < 1 << (LUT_BITS - LUT_LO); i++) {
        int g = i ^ (i >> 1);
        if (i) {
            int bit = __builtin_ctz((unsigned)i);
            hv = g >> bit & 1 ? _mm256_add_epi16(hv, pk[LUT_LO + bit])
                              : _mm256_sub_epi16(hv, pk[LUT_LO + bit]);
        }
        __m256i *row = T + (g << LUT_LO);
        for (int l = 0; l < 1 << LUT_LO; l++) _mm256_store_si256(row + l, _mm256_add_epi16(hv, lo[l]));
    }
}

/* Lookups of one chunk for all rows: acc16[r] += the chunk's nq entries. */
ALWAYS_INLINE void chunk_rows_n(__m256i *restrict acc16, const char *restrict tab,
                                const uint16_t *restrict off, uint32_t rows, uint32_t nq) {
    for (uint32_t r = 0; r < rows; r++, off += nq) {
        __m256i a = acc16[r], b = _mm256_setzero_si256();
        for (uint32_t q = 0; q < nq; q += 2) {
            a = _mm256_add_epi16(a, _mm256_load_si256((const __m256i *)(tab + off[q])));
            b = _mm256_add_epi16(b, _mm256_load_si256((const __m256i *)(tab + off[q + 1])));
        }
        acc16[r] = _mm256_add_epi16(a, b);
    }
}

static void chunk_rows(__m256i *restrict acc16, const char *restrict tab,
                       const uint16_t *restrict off, uint32_t rows, uint32_t nq) {
    if (nq == LUT_G) { /* the common case, with a constant trip count */
        chunk_rows_n(acc16, tab, off, rows, LUT_G);
        return;
    }
    chunk_rows_n(acc16, tab, off, rows, nq);
}

/* 8 rows x 16 columns of bits (m[i] bit c = row i, column c) as byte b of
 * each column's output */
ALWAYS_INLINE void store_bits8(const kern_out *o, uint32_t b, uint32_t c0, uint32_t nc,
                               const uint32_t *m) {
    for (uint32_t q = 0; q < LUT_COLS / 8; q++) {
        if (q * 8 >= nc) break;
        uint64_t bytes = 0;
        for (int i = 0; i < 8; i++)
            bytes |= _pdep_u64(m[i] >> (8 * q) & 0xFF, 0x0101010101010101ull) << i;
        for (uint32_t k = 0; k < 8 && q * 8 + k < nc; k++)
            ((uint8_t *)(o->bits + (c0 + q * 8 + k) * o->bits_stride))[b] =
                (uint8_t)(bytes >> (8 * k));
    }
}

static void u8_avx2(const kern_layer *L, const uint8_t *px, size_t ps, uint32_t ncols,
                    void *scratch, const kern_out *o) {
    uint32_t n = L->n, rows = L->rows, G = lut_groups(n);
    lut_scratch s = lut_scratch_at(scratch, n, rows);
    const uint16_t *aux = L->aux;
    for (uint32_t c0 = 0; c0 < ncols; c0 += LUT_COLS) {
        uint32_t nc = ncols - c0 < LUT_COLS ? ncols - c0 : LUT_COLS;
        memset(s.pt, 0, (size_t)G * LUT_BITS * LUT_COLS * 2);
        memset(s.pixsum, 0, LUT_COLS * sizeof *s.pixsum);
        for (uint32_t i = 0; i < nc; i++) {
            const uint8_t *p = px + (c0 + i) * ps;
            int32_t sum = 0;
            for (uint32_t j = 0; j < n; j++) {
                s.pt[(size_t)j * LUT_COLS + i] = p[j];
                sum += p[j];
            }
            s.pixsum[i] = sum;
        }
        /* 16-bit sums per window of LUT_WIDEN groups, widened into 32 bits
         * (the first window's directly) */
        for (uint32_t g0 = 0; g0 < G; g0 += LUT_WIDEN) {
            uint32_t g1 = g0 + LUT_WIDEN < G ? g0 + LUT_WIDEN : G;
            for (uint32_t r = 0; r < rows; r++) s.acc16[r] = _mm256_setzero_si256();
            for (uint32_t gc = g0; gc < g1; gc += LUT_G) {
                uint32_t nq = chunk_groups(gc, G);
                for (uint32_t q = 0; q < nq; q++)
                    table_build(s.tab + q * LUT_E, s.pt + (size_t)(gc + q) * LUT_BITS * LUT_COLS);
                chunk_rows(s.acc16, (const char *)s.tab, aux + (size_t)gc * rows, rows, nq);
            }
            for (uint32_t r = 0; r < rows; r++) {
                __m256i a = s.acc16[r];
                __m256i lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(a));
                __m256i hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(a, 1));
                if (g0) {
                    lo = _mm256_add_epi32(s.acc32[2 * r], lo);
                    hi = _mm256_add_epi32(s.acc32[2 * r + 1], hi);
                }
                s.acc32[2 * r] = lo;
                s.acc32[2 * r + 1] = hi;
            }
        }
        __m256i ps0 = _mm256_loadu_si256((const __m256i *)s.pixsum);
        __m256i ps1 = _mm256_loadu_si256((const __m256i *)(s.pixsum + 8));
        for (uint32_t b = 0; b < L->blocks; b++) {
            uint32_t m[8];
            for (uint32_t i = 0; i < 8; i++) {
                uint32_t r = b * 8 + i;
                if (r >= rows) {
                    m[i] = 0;
                    continue;
                }
                __m256i neg = _mm256_set1_epi32(L->neg[r]), thr = _mm256_set1_epi32(L->thr[r]);
                __m256i a0 = _mm256_sub_epi32(_mm256_slli_epi32(s.acc32[2 * r], 1), ps0);
                __m256i a1 = _mm256_sub_epi32(_mm256_slli_epi32(s.acc32[2 * r + 1], 1), ps1);
                a0 = _mm256_sub_epi32(_mm256_xor_si256(a0, neg), neg);
                a1 = _mm256_sub_epi32(_mm256_xor_si256(a1, neg), neg);
                uint32_t f0 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a0, thr)));
                uint32_t f1 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(a1, thr)));
                m[i] = f0 | f1 << 8;
            }
            store_bits8(o, b, c0, nc, m);
        }
    }
}

/* ---- binarized input ---------------------------------------------------------- */

/* 32 pixels per compare: p >= t iff max(p, t) == p (unsigned bytes), and
 * VPMOVMSKB gathers the 32 results; the last partial block is copied into
 * a zeroed buffer (zero pixels are < t). */
ALWAYS_INLINE uint32_t ge_mask32(const uint8_t *p, __m256i tv) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    return (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(v, tv), v));
}

static void binarize_avx2(const uint8_t *px, uint32_t n, uint32_t t, uint64_t *out) {
    if (t == 0 || t > 255) {
        kern_binarize_portable(px, n, t, out);
        return;
    }
    const __m256i tv = _mm256_set1_epi8((char)t);
    uint32_t j = 0;
    for (; j + 64 <= n; j += 64)
        out[j / 64] = (uint64_t)ge_mask32(px + j, tv) | (uint64_t)ge_mask32(px + j + 32, tv) << 32;
    if (j < n) {
        uint8_t tail[64] = {0};
        memcpy(tail, px + j, n - j);
        out[j / 64] = (uint64_t)ge_mask32(tail, tv) | (uint64_t)ge_mask32(tail + 32, tv) << 32;
    }
}

const kern_ops kern_avx2 = {BNN_KERNEL_AVX2, "avx2", 1, bin_avx2, u8_avx2, u8_scratch_avx2,
                            u8_aux_avx2, u8_prep_avx2, binarize_avx2};
