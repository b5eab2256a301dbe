/* kernels_lut.h - what the AVX2 and AVX-512 8-bit kernels share: the
 * grouping of a layer's inputs for its lookup tables, and the table offsets
 * prepared from the weights. Plain C (no intrinsics), included by both SIMD
 * files, each compiled for its own instruction set.
 *
 * The first layer's pre-activation a = sum_j w_j p_j is summed over groups
 * of LUT_BITS inputs: per group, a table of the 2^LUT_BITS signed subset
 * sums of its pixels (one vector of LUT columns = images per entry), indexed
 * by the group's weight bits. Groups are processed in chunks of LUT_G. */
#ifndef APX_KERNELS_LUT_H
#define APX_KERNELS_LUT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#define LUT_BITS 6 /* inputs per group: tables of 2^LUT_BITS entries */
#define LUT_G 8    /* groups per chunk; LUT_G * 2^LUT_BITS * entry bytes must stay <= 65536 */
#define LUT_E (1u << LUT_BITS)
/* 16-bit lanes are widened every LUT_WIDEN groups: LUT_WIDEN * LUT_BITS * 255 < 65536 */
#define LUT_WIDEN (65535u / (LUT_BITS * 255u) / LUT_G * LUT_G)

/* Groups of LUT_BITS inputs for n inputs, an even count. */
static inline uint32_t lut_groups(uint32_t n) {
    uint32_t g = (n + LUT_BITS - 1) / LUT_BITS;
    return g + (g & 1);
}

/* Groups in the chunk that starts at group gc. */
static inline uint32_t chunk_groups(uint32_t gc, uint32_t G) {
    return G - gc < LUT_G ? G - gc : LUT_G;
}

/* Bytes of the prepared offsets (lut_prep_offsets) for a layer. */
static inline size_t lut_aux_bytes(uint32_t n, uint32_t rows) {
    return (size_t)lut_groups(n) * rows * 2;
}

/* The byte offset of each (row, group)'s table entry within its chunk's
 * tables, (q * LUT_E + weight bits) * entry_bytes, stored at
 * aux[(chunk start) * rows + r * (groups in chunk) + q] so that a row's
 * offsets for one chunk are contiguous. entry_bytes is the vector size. */
static inline void lut_prep_offsets(const kern_layer *L, void *aux, unsigned entry_bytes) {
    uint16_t *out = aux;
    uint32_t G = lut_groups(L->n), words = L->words;
    for (uint32_t r = 0; r < L->rows; r++) {
        const uint64_t *w = L->rm + (size_t)r * words;
        for (uint32_t g = 0; g < G; g++) {
            /* bits j .. j + LUT_BITS - 1 of the row (0 past its words) */
            uint32_t j = g * LUT_BITS, wi = j / 64, sh = j % 64;
            uint64_t bits = wi < words ? w[wi] >> sh : 0;
            if (sh > 64 - LUT_BITS && wi + 1 < words) bits |= w[wi + 1] << (64 - sh);
            uint32_t v = (uint32_t)bits & (LUT_E - 1);
            out[(size_t)(g - g % LUT_G) * L->rows + (size_t)r * chunk_groups(g - g % LUT_G, G) +
                g % LUT_G] = (uint16_t)(((g % LUT_G) * LUT_E + v) * entry_bytes);
        }
    }
}

#endif
