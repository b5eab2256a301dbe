/* nested.c - dyadic levels and geometric skipping (see nested.h). */
#include "nested.h"

#include <math.h>
#include <stdlib.h>

/* The counter domain of a member's exact u in level k. */
#define DOMAIN_LEVEL_U 0x10000u

/* Sorted position lists, grown by doubling. */
typedef struct poslist {
    uint64_t *v;
    size_t n, cap;
} poslist;

static int poslist_push(poslist *l, uint64_t x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uint64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

/* The positions whose u lies in level k and not in a rarer level. `rarer`
 * holds the members of all rarer levels (sorted); the result goes to out. */
static int draw_level(rng_key key, int k, uint64_t n, const poslist *rarer, poslist *out) {
    double q = k == NESTED_LEVELS ? ldexp(1.0, -NESTED_LEVELS)
                                  : ldexp(1.0, -(k + 1)) / (1.0 - ldexp(1.0, -(k + 1)));
    out->n = 0;
    size_t r = 0;
    if (q >= 1.0) { /* every position not in a rarer level */
        for (uint64_t b = 0; b < n; b++) {
            if (r < rarer->n && rarer->v[r] == b) { r++; continue; }
            if (poslist_push(out, b)) return -1;
        }
        return 0;
    }
    rng_stream s;
    rng_stream_at(&s, key, (uint32_t)k, 0);
    double log_keep = log1p(-q);
    uint64_t pos = 0; /* next candidate */
    for (;;) {
        double gap = floor(log(rng_open01(&s)) / log_keep);
        if (gap >= (double)(n - pos)) break;
        uint64_t b = pos + (uint64_t)gap;
        while (r < rarer->n && rarer->v[r] < b) r++;
        if (!(r < rarer->n && rarer->v[r] == b) && poslist_push(out, b)) return -1;
        pos = b + 1;
        if (pos >= n) break;
    }
    return 0;
}

/* Merges two sorted, disjoint lists into out. */
static int merge(const poslist *a, const poslist *b, poslist *out) {
    size_t i = 0, j = 0;
    out->n = 0;
    while (i < a->n || j < b->n) {
        uint64_t x = (j >= b->n || (i < a->n && a->v[i] < b->v[j])) ? a->v[i++] : b->v[j++];
        if (poslist_push(out, x)) return -1;
    }
    return 0;
}

/* A member of level k: its u, uniform within the level, from the position's
 * own counter so that it does not depend on which positions were drawn. */
static double level_u(rng_key key, int k, uint64_t pos) {
    rng_ctr c = {{(uint32_t)pos, (uint32_t)(pos >> 32), DOMAIN_LEVEL_U + (uint32_t)k, 0}};
    rng_ctr r = philox4x32(c, key);
    double unit = (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
    double lo = k == NESTED_LEVELS ? 0.0 : ldexp(1.0, -(k + 1));
    double hi = ldexp(1.0, -k);
    return lo + unit * (hi - lo);
}

static int hits_reserve(nested_list *l, size_t n) {
    if (n <= l->cap) return 0;
    size_t cap = l->cap ? l->cap : 64;
    while (cap < n) cap *= 2;
    nested_hit *v = realloc(l->v, cap * sizeof *v);
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
    return 0;
}

static int by_pos(const void *a, const void *b) {
    uint64_t x = ((const nested_hit *)a)->pos, y = ((const nested_hit *)b)->pos;
    return (x > y) - (x < y);
}

int nested_draw(rng_key key, uint64_t n, double q, nested_list *out) {
    out->n = 0;
    if (!(q > 0.0) || n == 0) return 0;
    /* The level that contains q: 2^-(j+1) <= q < 2^-j. */
    int j = q >= 1.0 ? 0 : (int)floor(-log2(q));
    if (j > NESTED_LEVELS) j = NESTED_LEVELS;
    poslist rarer = {0}, level = {0}, merged = {0};
    int rc = 0;
    for (int k = NESTED_LEVELS; k >= j; k--) {
        if (draw_level(key, k, n, &rarer, &level) || hits_reserve(out, out->n + level.n)) {
            rc = -1;
            break;
        }
        /* Every member of a rarer level is below q; level j is filtered. */
        for (size_t i = 0; i < level.n; i++) {
            double u = level_u(key, k, level.v[i]);
            if (k > j || q >= 1.0 || u < q) out->v[out->n++] = (nested_hit){level.v[i], u};
        }
        if (k == j) break;
        if (merge(&rarer, &level, &merged)) {
            rc = -1;
            break;
        }
        poslist t = rarer;
        rarer = merged;
        merged = t;
    }
    free(rarer.v);
    free(level.v);
    free(merged.v);
    if (rc) {
        out->n = 0;
        return -1;
    }
    /* The levels came as sorted runs, rarest first: one sort by position. */
    qsort(out->v, out->n, sizeof *out->v, by_pos);
    return 0;
}

void nested_list_free(nested_list *l) {
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}
