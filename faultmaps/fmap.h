/* fmap.h - a fault map in memory: which bits of a region fail, and how.
 *
 * A region is a run of `region_bits` logical bits (for a BNN weight tensor:
 * its used weight bits, row by row). Faults are kept sorted by bit index,
 * one kind per bit. Generated and (later) replayed maps are the same object
 * (docs/DESIGN.md, "Fault map"). The on-disk .fmap format builds on this. */
#ifndef APX_FMAP_H
#define APX_FMAP_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/error.h"

enum fault_kind {
    FAULT_FLIP = 0,    /* reads the inverse of what was written */
    FAULT_STUCK0 = 1,  /* always reads 0 */
    FAULT_STUCK1 = 2,  /* always reads 1 */
    /* Data-dependent: the cell fails only while it stores its vulnerable
     * value, and then reads the other one (EDEN's error model 3; the
     * vulnerable value is e.g. the charged state of a true or anti cell).
     * On one read a DD0 cell reads like stuck-at-1 and a DD1 cell like
     * stuck-at-0; the kinds stay apart because they name a different
     * mechanism, and models that fail a vulnerable cell with a probability
     * need to know which value is vulnerable. */
    FAULT_DD0 = 3,     /* vulnerable value 0: storing 0 reads 1 */
    FAULT_DD1 = 4,     /* vulnerable value 1: storing 1 reads 0 */
    FAULT_KINDS = 5
};

/* "flip", "stuck0", "stuck1", "dd0", "dd1" (the CSV and inspect names);
 * "?" for an unknown kind. */
const char *fault_kind_name(unsigned kind);
/* The kind with that name; -1 if none. */
int fault_kind_parse(const char *name);

typedef struct fmap {
    uint64_t region_bits;
    size_t n, cap;
    uint64_t *bit;     /* sorted, strictly increasing, < region_bits */
    uint8_t *kind;     /* enum fault_kind, one per bit */
} fmap;

void fmap_init(fmap *m, uint64_t region_bits);
void fmap_free(fmap *m);
/* Forgets the faults, keeps the memory, sets a new region size. */
void fmap_reset(fmap *m, uint64_t region_bits);
/* Appends a fault; bits must come in increasing order. */
int fmap_push(fmap *m, uint64_t bit, uint8_t kind, apx_error *err);
/* Checks the invariants (sorted, in range, known kinds). */
int fmap_check(const fmap *m, apx_error *err);

/* Where a region lives in a memory image of 64-bit words: `rows` rows of
 * `cols` used bits, each row starting at a word boundary `stride_words`
 * apart. Logical bit b sits at bit (b % cols) of row b / cols. */
typedef struct fmap_layout {
    uint64_t *base;
    uint64_t rows, cols, stride_words;
} fmap_layout;

/* Applies the faults to the image. Returns how many stored bits changed
 * value (a stuck-at fault on a bit that already holds its value changes
 * nothing). Cost: O(faults). */
uint64_t fmap_apply(const fmap *m, const fmap_layout *where);

#endif
