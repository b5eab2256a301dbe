/* kernels_avx512.c - AVX-512 (F, BW, VL, VPOPCNTDQ) kernels.
 *
 * Compiled with the AVX-512 flags (meson.build) and only called after
 * kern_cpu_has(BNN_KERNEL_AVX512).
 *
 * Binary layers read the interleaved weights (kernels.h): one zmm = word j
 * of 8 neurons. A tile is 2 blocks (16 neurons) x 8 columns: per word, 2
 * weight loads and 8 broadcast activation words feed 16 XOR + VPOPCNTQ + add,
 * with 16 accumulators in registers; no horizontal reduction. The weight
 * block stays in L1 while every column group passes over it. The lanes end
 * as 8 pre-activations, thresholded by one compare into 8 output bits (one
 * byte of the output vector) or stored as 8 int32.
 *
 * 8-bit layers use lookup tables (the "four Russians" of the portable
 * kernel) with the 32 16-bit lanes of a zmm holding 32 columns: the table of
 * a group of LUT_BITS inputs has 2^LUT_BITS entries, entry v holding per
 * column the sum of the pixels at the inputs whose bit is set in v, and the
 * row's LUT_BITS weight bits select one entry: one load + add serves
 * LUT_BITS inputs of 32 columns. Tables are built for LUT_G groups at a time
 * (LUT_G * 2^LUT_BITS * 64 B) and every row adds its entries into a 16-bit
 * accumulator kept in scratch, widened into 32 bits every LUT_WIDEN groups.
 * The byte offsets of the entries each row selects are derived from the
 * weights once per call (u8_prep), so the inner loop is a 16-bit load and a
 * vector add per lookup. Measured on the Zen 4 this was tuned on (a 512-bit
 * load + add costs ~0.5 ns there even from L1), 6-bit groups in chunks of 8
 * (32 KiB of tables) beat 8-bit ones (256-entry tables: twice the table
 * stores per column) and smaller groups (more lookups). The thresholded bits
 * of 8 rows x 32 columns are transposed into one byte per column with PDEP. */
#include <immintrin.h>
#include <string.h>

#include "kernels.h"
#include "kernels_lut.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- binary layers ----------------------------------------------------------- */

#define TILE_COLS 8

ALWAYS_INLINE void emit(const kern_layer *L, const kern_out *o, uint32_t b, uint32_t c,
                        __m512i acc) {
    __m512i a64 = _mm512_sub_epi64(_mm512_set1_epi64(L->n), _mm512_slli_epi64(acc, 1));
    __m256i a = _mm512_cvtepi64_epi32(a64);
    if (o->bits) {
        const int32_t *thr = o->cls ? L->thr + o->cls[c] * o->cls_stride : L->thr;
        __m256i neg = _mm256_loadu_si256((const __m256i *)(L->neg + b * KERN_RB));
        __m256i t = _mm256_loadu_si256((const __m256i *)(thr + b * KERN_RB));
        __m256i s = _mm256_sub_epi32(_mm256_xor_si256(a, neg), neg);
        ((uint8_t *)(o->bits + c * o->bits_stride))[b] = (uint8_t)_mm256_cmpgt_epi32_mask(s, t);
    } else {
        _mm256_storeu_si256((__m256i *)(o->a + c * o->a_stride + b * KERN_RB), a);
    }
}

/* nrb (1 or 2) blocks from b against columns c0 .. c0 + TILE_COLS - 1; columns
 * past ncols re-read the last column and are not written. */
ALWAYS_INLINE void bin_tile(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                            uint32_t b, int nrb, uint32_t c0, const kern_out *o) {
    uint32_t words = L->words;
    const uint64_t *w0 = L->il + (size_t)b * words * KERN_RB;
    const uint64_t *w1 = w0 + (size_t)words * KERN_RB;
    const uint64_t *xc[TILE_COLS];
    for (int i = 0; i < TILE_COLS; i++)
        xc[i] = x + (c0 + i < ncols ? c0 + i : ncols - 1) * xs;
    __m512i acc0[TILE_COLS], acc1[TILE_COLS];
    for (int i = 0; i < TILE_COLS; i++) acc0[i] = acc1[i] = _mm512_setzero_si512();
    for (uint32_t j = 0; j < words; j++) {
        __m512i wa = _mm512_load_si512(w0 + (size_t)j * KERN_RB);
        __m512i wb = nrb == 2 ? _mm512_load_si512(w1 + (size_t)j * KERN_RB) : wa;
        for (int i = 0; i < TILE_COLS; i++) {
            __m512i xb = _mm512_set1_epi64((long long)xc[i][j]);
            acc0[i] = _mm512_add_epi64(acc0[i], _mm512_popcnt_epi64(_mm512_xor_si512(wa, xb)));
            if (nrb == 2)
                acc1[i] = _mm512_add_epi64(acc1[i], _mm512_popcnt_epi64(_mm512_xor_si512(wb, xb)));
        }
    }
    for (int i = 0; i < TILE_COLS; i++) {
        if (c0 + i >= ncols) break;
        emit(L, o, b, c0 + i, acc0[i]);
        if (nrb == 2) emit(L, o, b + 1, c0 + i, acc1[i]);
    }
}

static void bin_avx512(const kern_layer *L, const uint64_t *x, size_t xs, uint32_t ncols,
                       const kern_out *o) {
    uint32_t b = 0;
    for (; b + 2 <= L->blocks; b += 2)
        for (uint32_t c = 0; c < ncols; c += TILE_COLS) bin_tile(L, x, xs, ncols, b, 2, c, o);
    if (b < L->blocks)
        for (uint32_t c = 0; c < ncols; c += TILE_COLS) bin_tile(L, x, xs, ncols, b, 1, c, o);
}

/* ---- 8-bit layers ------------------------------------------------------------ */

#define LUT_COLS 32 /* 16-bit lanes per zmm */



/* Rows of the transposed pixels: every group's inputs, in whole 32-row
 * blocks of the transpose. */
static size_t pt_rows(uint32_t n) {
    size_t r = (size_t)lut_groups(n) * LUT_BITS;
    return (r + 31) / 32 * 32;
}

/* Scratch: the chunk's tables, 16-bit and 32-bit accumulators per row, the
 * transposed pixels [groups * LUT_BITS][32] u16, the column pixel sums. */
typedef struct lut_scratch {
    __m512i *tab, *acc16, *acc32;
    uint16_t *pt;
    int32_t *pixsum;
} lut_scratch;

static size_t u8_scratch_avx512(uint32_t n, uint32_t rows) {
    return (size_t)LUT_G * LUT_E * 64 + (size_t)rows * 64 * 3 + pt_rows(n) * LUT_COLS * 2 +
           LUT_COLS * 4;
}

static lut_scratch lut_scratch_at(void *p, uint32_t n, uint32_t rows) {
    lut_scratch s;
    char *c = p;
    s.tab = (__m512i *)c;
    c += (size_t)LUT_G * LUT_E * 64;
    s.acc16 = (__m512i *)c;
    c += (size_t)rows * 64;
    s.acc32 = (__m512i *)c;
    c += (size_t)rows * 128;
    s.pt = (uint16_t *)c;
    c += pt_rows(n) * LUT_COLS * 2;
    s.pixsum = (int32_t *)c;
    return s;
}

/* 32 x 32 transpose of 16-bit elements: r[i] lane c -> r[c] lane i, in five
 * stages that each swap one bit of the row index with the same bit of the
 * lane index (two VPERMT2W per pair of rows). */
static void transpose32_epi16(__m512i *r) {
    for (int b = 0; b < 5; b++) {
        int bit = 1 << b;
        uint16_t ia[32], ib[32];
        for (int c = 0; c < 32; c++) {
            ia[c] = (uint16_t)(c & bit ? 32 + (c & ~bit) : c);
            ib[c] = (uint16_t)(c & bit ? 32 + c : c | bit);
        }
        __m512i va = _mm512_loadu_si512(ia), vb = _mm512_loadu_si512(ib);
        for (int i = 0; i < 32; i++) {
            if (i & bit) continue;
            __m512i x = r[i], y = r[i | bit];
            r[i] = _mm512_permutex2var_epi16(x, va, y);
            r[i | bit] = _mm512_permutex2var_epi16(x, vb, y);
        }
    }
}

/* pt[j][i] = pixel j of column i (16-bit; 0 for j >= n or i >= nc) for rows
 * j < rows_needed, and the columns' pixel sums. 32 x 32 blocks: 32 bytes of
 * each column widened to 16 bits, transposed in registers. */
static void transpose_pixels(uint16_t *pt, int32_t *pixsum, const uint8_t *px, size_t ps,
                             uint32_t n, uint32_t nc, size_t rows_needed) {
    __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
    for (uint32_t j = 0; j < rows_needed; j += 32) {
        __m512i r[32];
        uint32_t left = j < n ? n - j : 0;
        __mmask32 m = left >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << left) - 1);
        for (uint32_t i = 0; i < 32; i++)
            r[i] = i < nc && m ? _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, px + i * ps + j))
                               : _mm512_setzero_si512();
        transpose32_epi16(r);
        __m512i bs = _mm512_setzero_si512(); /* 32 pixels per lane: < 2^14 */
        for (uint32_t k = 0; k < 32; k++) {
            _mm512_store_si512(pt + (size_t)(j + k) * LUT_COLS, r[k]);
            bs = _mm512_add_epi16(bs, r[k]);
        }
        sum0 = _mm512_add_epi32(sum0, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(bs)));
        sum1 = _mm512_add_epi32(sum1, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(bs, 1)));
    }
    _mm512_storeu_si512(pixsum, sum0);
    _mm512_storeu_si512(pixsum + 16, sum1);
}

/* Per call: for chunk ch, row r, group q of the chunk, the byte offset of the
 * row's entry in the chunk's tables, (q * LUT_E + weight bits) * 64, as a
 * 16-bit value at aux[(ch * rows + r) * LUT_G + q]. Weight bits past the
 * fan-in (padding, maybe faulty) select inputs whose pixels are 0. */
static size_t u8_aux_avx512(uint32_t n, uint32_t rows) { return lut_aux_bytes(n, rows); }

static void u8_prep_avx512(const kern_layer *L, void *aux) { lut_prep_offsets(L, aux, 64); }

/* The 2^LUT_BITS entries of one group from its pixel vectors p_k: the subset
 * sums of the low half of the inputs stay in registers, those of the high
 * half are walked in Gray-code order (one add or subtract each), and entry
 * h * 2^LO + l = hi_h + lo_l is stored without ever being read back (reading
 * back just-stored vectors stalls on store forwarding). */
#define LUT_LO (LUT_BITS / 2)
ALWAYS_INLINE void table_build(__m512i *T, const uint16_t *p) {
    __m512i pk[LUT_BITS], lo[1 << LUT_LO];
    for (int k = 0; k < LUT_BITS; k++) pk[k] = _mm512_load_si512(p + k * LUT_COLS);
    lo[0] = _mm512_setzero_si512();
    for (int k = 0; k < LUT_LO; k++)
        for (int v = 0; v < 1 << k; v++) lo[(1 << k) + v] = _mm512_add_epi16(lo[v], pk[k]);
    __m512i hv = _mm512_setzero_si512();
    for (int i = 0; i < 1 << (LUT_BITS - LUT_LO); i++) {
        int g = i ^ (i >> 1);
        if (i) {
            int bit = __builtin_ctz((unsigned)i);
            hv = g >> bit & 1 ? _mm512_add_epi16(hv, pk[LUT_LO + bit])
                              : _mm512_sub_epi16(hv, pk[LUT_LO + bit]);
        }
        __m512i *row = T + (g << LUT_LO);
        for (int l = 0; l < 1 << LUT_LO; l++) _mm512_store_si512(row + l, _mm512_add_epi16(hv, lo[l]));
    }
}

/* The 8 x 32 bits of rows b*8 .. b*8+7 (m[i] bit c = row i, column c) as one
 * byte per column, stored as byte b of each column's output. */
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

/* Lookups of one chunk for all rows: acc16[r] += the chunk's nq entries. */
ALWAYS_INLINE void chunk_rows_n(__m512i *restrict acc16, const char *restrict tab,
                                const uint16_t *restrict off, uint32_t rows, uint32_t nq) {
    for (uint32_t r = 0; r < rows; r++, off += nq) {
        __m512i a = acc16[r], b = _mm512_setzero_si512();
        for (uint32_t q = 0; q < nq; q += 2) {
            a = _mm512_add_epi16(a, _mm512_load_si512(tab + off[q]));
            b = _mm512_add_epi16(b, _mm512_load_si512(tab + off[q + 1]));
        }
        acc16[r] = _mm512_add_epi16(a, b);
    }
}

static void chunk_rows(__m512i *restrict acc16, const char *restrict tab,
                       const uint16_t *restrict off, uint32_t rows, uint32_t nq) {
    if (nq == 8 && LUT_G == 8) {
        /* the common case: the 8 offsets of a row as two 64-bit loads, split
         * in registers (fewer load-port uops, which bound this loop) */
        for (uint32_t r = 0; r < rows; r++, off += 8) {
            uint64_t v0, v1; /* memcpy: reading uint16_t data as uint64_t is not allowed */
            memcpy(&v0, off, 8);
            memcpy(&v1, off + 4, 8);
            __m512i a = _mm512_add_epi16(acc16[r], _mm512_load_si512(tab + (v0 & 0xFFFF)));
            __m512i b = _mm512_load_si512(tab + (v0 >> 16 & 0xFFFF));
            a = _mm512_add_epi16(a, _mm512_load_si512(tab + (v0 >> 32 & 0xFFFF)));
            b = _mm512_add_epi16(b, _mm512_load_si512(tab + (v0 >> 48)));
            a = _mm512_add_epi16(a, _mm512_load_si512(tab + (v1 & 0xFFFF)));
            b = _mm512_add_epi16(b, _mm512_load_si512(tab + (v1 >> 16 & 0xFFFF)));
            a = _mm512_add_epi16(a, _mm512_load_si512(tab + (v1 >> 32 & 0xFFFF)));
            b = _mm512_add_epi16(b, _mm512_load_si512(tab + (v1 >> 48)));
            acc16[r] = _mm512_add_epi16(a, b);
        }
        return;
    }
    chunk_rows_n(acc16, tab, off, rows, nq);
}

static void u8_avx512(const kern_layer *L, const uint8_t *px, size_t ps, uint32_t ncols,
                      void *scratch, const kern_out *o) {
    uint32_t n = L->n, rows = L->rows, G = lut_groups(n);
    lut_scratch s = lut_scratch_at(scratch, n, rows);
    const uint16_t *aux = L->aux;
    for (uint32_t c0 = 0; c0 < ncols; c0 += LUT_COLS) {
        uint32_t nc = ncols - c0 < LUT_COLS ? ncols - c0 : LUT_COLS;
        transpose_pixels(s.pt, s.pixsum, px + c0 * ps, ps, n, nc, G * LUT_BITS);
        /* 16-bit sums per window of LUT_WIDEN groups, widened into 32 bits
         * (the first window's directly) */
        for (uint32_t g0 = 0; g0 < G; g0 += LUT_WIDEN) {
            uint32_t g1 = g0 + LUT_WIDEN < G ? g0 + LUT_WIDEN : G;
            for (uint32_t r = 0; r < rows; r++) s.acc16[r] = _mm512_setzero_si512();
            for (uint32_t gc = g0; gc < g1; gc += LUT_G) {
                uint32_t nq = chunk_groups(gc, G);
                for (uint32_t q = 0; q < nq; q++)
                    table_build(s.tab + q * LUT_E, s.pt + (size_t)(gc + q) * LUT_BITS * LUT_COLS);
                chunk_rows(s.acc16, (const char *)s.tab, aux + (size_t)gc * rows, rows, nq);
            }
            for (uint32_t r = 0; r < rows; r++) {
                __m512i a = s.acc16[r];
                __m512i lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(a));
                __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(a, 1));
                if (g0) {
                    lo = _mm512_add_epi32(s.acc32[2 * r], lo);
                    hi = _mm512_add_epi32(s.acc32[2 * r + 1], hi);
                }
                s.acc32[2 * r] = lo;
                s.acc32[2 * r + 1] = hi;
            }
        }
        /* a = 2 S - pixel sum; threshold; 8 rows at a time into bytes */
        __m512i ps0 = _mm512_loadu_si512(s.pixsum), ps1 = _mm512_loadu_si512(s.pixsum + 16);
        for (uint32_t b = 0; b < L->blocks; b++) {
            uint32_t m[8];
            for (uint32_t i = 0; i < 8; i++) {
                uint32_t r = b * 8 + i;
                if (r >= rows) {
                    m[i] = 0;
                    continue;
                }
                __m512i neg = _mm512_set1_epi32(L->neg[r]), thr = _mm512_set1_epi32(L->thr[r]);
                __m512i a0 = _mm512_sub_epi32(_mm512_slli_epi32(s.acc32[2 * r], 1), ps0);
                __m512i a1 = _mm512_sub_epi32(_mm512_slli_epi32(s.acc32[2 * r + 1], 1), ps1);
                a0 = _mm512_sub_epi32(_mm512_xor_si512(a0, neg), neg);
                a1 = _mm512_sub_epi32(_mm512_xor_si512(a1, neg), neg);
                m[i] = (uint32_t)_mm512_cmpgt_epi32_mask(a0, thr) |
                       (uint32_t)_mm512_cmpgt_epi32_mask(a1, thr) << 16;
            }
            store_bits8(o, b, c0, nc, m);
        }
    }
}

/* ---- binarized input ---------------------------------------------------------- */

/* One unsigned byte compare of 64 pixels is one word of bits; the last,
 * partial word is a masked load (bytes past n read as 0 < t, and masked
 * off anyway). */
static void binarize_avx512(const uint8_t *px, uint32_t n, uint32_t t, uint64_t *out) {
    if (t == 0 || t > 255) {
        kern_binarize_portable(px, n, t, out);
        return;
    }
    const __m512i tv = _mm512_set1_epi8((char)t);
    uint32_t j = 0;
    for (; j + 64 <= n; j += 64)
        out[j / 64] = _mm512_cmpge_epu8_mask(_mm512_loadu_si512(px + j), tv);
    if (j < n) {
        __mmask64 m = _bzhi_u64(~0ull, n - j);
        out[j / 64] = _mm512_mask_cmpge_epu8_mask(m, _mm512_maskz_loadu_epi8(m, px + j), tv);
    }
}

const kern_ops kern_avx512 = {BNN_KERNEL_AVX512, "avx512", 1, bin_avx512, u8_avx512,
                              u8_scratch_avx512, u8_aux_avx512, u8_prep_avx512, binarize_avx512};
