/* nested.h - the cells that fail at a rate, nested across rates.
 *
 * The engine behind rules 2 and 3 of docs/DESIGN.md for every device. Each
 * position i in [0, n) of a stream named by `key` has a fixed critical value
 * u_i ~ U(0,1). nested_draw lists every position with u_i < q together with
 * its exact u_i, without ever drawing a value per position:
 *
 *   - nested: for q' > q the list at q' contains the list at q, with the same
 *     u values (a position's u never depends on q, n or what else was drawn);
 *   - cost: about twice the number of positions listed (plus ~log2(1/q)
 *     levels of constant work), never proportional to n;
 *   - the draw depends on n (each level first decides whether it has any
 *     member among the n positions): a prefix of a longer stream is not the
 *     same draw, so devices draw fixed-size blocks and filter.
 *
 * The unit interval is cut into dyadic levels L_k = [2^-(k+1), 2^-k),
 * k < NESTED_LEVELS, and [0, 2^-NESTED_LEVELS). Working from the rarest level
 * up, each level's members are drawn by geometric skipping among the
 * positions not in a rarer level (rate 2^-(k+1) / (1 - 2^-(k+1)), which gives
 * exactly P(u in L_k) = 2^-(k+1)), each from its own stream, so a level's
 * members are the same whatever q is. A member's exact u is uniform within
 * its level, drawn from a counter of its own position.
 *
 * Devices with spatially varying rates list at the highest rate of a region
 * and keep position i iff u_i < w_i * q (thinning): a cell's failure then
 * depends only on its own u and weight, so nesting holds for any weights. */
#ifndef APX_NESTED_H
#define APX_NESTED_H

#include <stddef.h>
#include <stdint.h>

#include "../sim/rng.h"

/* 24 dyadic levels: below 2^-24 (6e-8) the bottom level holds every rarer
 * u, so a rate under it lists the bottom level's n 2^-24 expected members
 * and filters them by u; every level above it is one uniform to skip when
 * empty, the fixed cost of a draw. */
#define NESTED_LEVELS 24

typedef struct nested_hit {
    uint64_t pos;
    double u;       /* the position's critical value, < q */
} nested_hit;

typedef struct nested_list {
    nested_hit *v;  /* sorted by pos, strictly increasing */
    size_t n, cap;
    /* working memory of nested_draw, kept between calls (a device draws
     * thousands of blocks); freed by nested_list_free */
    nested_hit *work[2];
    size_t work_cap[2];
    uint64_t *mark;    /* short streams: a bit per position, clear between calls */
    double *mark_u;    /* ... and the u of each marked position */
    uint64_t mark_cap; /* positions the marks hold */
} nested_list;

/* Replaces out's content by the positions of [0, n) with u < q (q >= 1: every
 * position). Returns 0, or -1 when out of memory (out is then empty). The
 * list's memory is reused across calls. */
int nested_draw(rng_key key, uint64_t n, double q, nested_list *out);
void nested_list_free(nested_list *l);

#endif
