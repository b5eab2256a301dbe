/* nested.c - dyadic levels and geometric skipping (see nested.h).
 *
 * Hot path of every fault map: the levels' constants come from a table made
 * once; each level's candidates come in position order from its own stream,
 * and the ones in a rarer level are skipped either by a walk along the
 * sorted members so far, into which each level is merged (long streams), or
 * by a bit per position, read off in order at the end (short streams: every
 * DRAM and RRAM block), so no sort is needed. Independent Philox blocks
 * (whether each level has members, a member's u) are made in plain loops
 * whose latencies overlap. The output is the same as drawing each level and
 * sorting at the end, which tests/test_nested.c checks against that simple
 * form. */
#include "nested.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The counter domains of a member's exact u in level k, and of the
 * uniforms that decide whether a level has members. */
#define DOMAIN_LEVEL_U 0x10000u
#define DOMAIN_FIRST 0x20000u

/* Level k: u in [lo, lo + width); the skipping rate among positions not in
 * a rarer level, and log(1 - rate) for the gaps. */
typedef struct level {
    double rate, log_keep, lo, width;
} level;

static level levels[NESTED_LEVELS + 1];
static pthread_once_t levels_once = PTHREAD_ONCE_INIT;

static void levels_init(void) {
    for (int k = 0; k <= NESTED_LEVELS; k++) {
        level *L = &levels[k];
        double p = ldexp(1.0, -(k + 1));
        L->rate = k == NESTED_LEVELS ? ldexp(1.0, -NESTED_LEVELS) : p / (1.0 - p);
        L->log_keep = L->rate < 1.0 ? log1p(-L->rate) : 0.0;
        L->lo = k == NESTED_LEVELS ? 0.0 : p;
        L->width = ldexp(1.0, -k) - L->lo;
    }
}

/* P(level k has a member among n positions) = 1 - (1 - rate_k)^n, per
 * level, for the last n a thread asked about (devices draw many blocks of
 * one size). */
static _Thread_local uint64_t any_n;
static _Thread_local double any_cache[NESTED_LEVELS + 1];

static const double *p_any(uint64_t n) {
    if (n != any_n) {
        for (int i = 0; i <= NESTED_LEVELS; i++)
            any_cache[i] = levels[i].rate < 1.0 ? -expm1((double)n * levels[i].log_keep) : 1.0;
        any_n = n;
    }
    return any_cache;
}

/* The uniforms in [0, 1) that decide whether levels j..NESTED_LEVELS have
 * any member: two levels per Philox block, so that the many empty rare
 * levels of a small region cost half a block each and no logarithm. */
static void first_units(rng_key key, int j, double unit[NESTED_LEVELS + 2]) {
    for (int b = j / 2; b <= NESTED_LEVELS / 2; b++) {
        rng_ctr c = {{(uint32_t)b, 0, DOMAIN_FIRST, 0}};
        rng_ctr r = philox4x32(c, key);
        unit[2 * b] = (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
        unit[2 * b + 1] = (double)(((uint64_t)r.c[2] << 21) ^ r.c[3]) * 0x1.0p-53;
    }
}

/* A level's stream of open uniforms: rng_stream's sequence (domain k, from
 * block 0, read through rng_open01), made STREAM_BLOCKS blocks at a time. */
#define STREAM_BLOCKS 2

typedef struct level_stream {
    rng_key key;
    uint32_t domain;
    uint64_t block;  /* next block */
    int used;
    uint32_t buf[4 * STREAM_BLOCKS];
} level_stream;

static double stream_open01(level_stream *s) {
    if (s->used == 4 * STREAM_BLOCKS) {
        for (int b = 0; b < STREAM_BLOCKS; b++) {
            uint64_t i = s->block + (uint64_t)b;
            rng_ctr c = {{(uint32_t)i, (uint32_t)(i >> 32), s->domain, 0}};
            rng_ctr r = philox4x32(c, s->key);
            memcpy(s->buf + 4 * b, r.c, sizeof r.c);
        }
        s->block += STREAM_BLOCKS;
        s->used = 0;
    }
    uint64_t hi = s->buf[s->used], lo = s->buf[s->used + 1];
    s->used += 2;
    return ((double)((hi << 32 | lo) >> 11) + 0.5) * 0x1.0p-53;
}

/* A member of level k: its u, uniform within the level, from the position's
 * own counter so that it does not depend on which positions were drawn. */
static double level_u(rng_key key, int k, uint64_t pos) {
    rng_ctr c = {{(uint32_t)pos, (uint32_t)(pos >> 32), DOMAIN_LEVEL_U + (uint32_t)k, 0}};
    rng_ctr r = philox4x32(c, key);
    double unit = (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
    return levels[k].lo + unit * levels[k].width;
}

static int reserve(nested_list *l, uint64_t n) {
    if (n <= l->cap) return 0;
    if (n > SIZE_MAX / sizeof(nested_hit) / 2) return -1; /* cannot be held */
    size_t cap = l->cap ? l->cap : 64;
    while (cap < n) cap *= 2;
    nested_hit *v = realloc(l->v, cap * sizeof *v);
    if (!v) return -1;
    l->v = v;
    l->cap = cap;
    return 0;
}

static int push(nested_list *l, uint64_t pos) {
    if (l->n == l->cap && reserve(l, l->n + 1)) return -1;
    l->v[l->n++].pos = pos;
    return 0;
}

/* The candidates of level k into cand, in position order: every position its
 * stream picks among the n, members of rarer levels included (they are
 * skipped by the caller, which is what makes a candidate's level the rarest
 * that picks it). */
static int level_candidates(rng_key key, int k, uint64_t n, double first, nested_list *cand) {
    cand->n = 0;
    if (levels[k].rate >= 1.0) { /* every position */
        if (reserve(cand, n)) return -1;
        for (uint64_t b = 0; b < n; b++) cand->v[b].pos = b;
        cand->n = n;
        return 0;
    }
    /* Whether the level has any candidate among the n positions (rare levels
     * mostly have none); if it has, the first gap is geometric truncated to
     * [0, n), the later ones plain geometric, from the level's own stream. */
    double any = p_any(n)[k];
    if (!(first < any)) return 0;
    level_stream s = {.key = key, .domain = (uint32_t)k, .used = 4 * STREAM_BLOCKS};
    double log_keep = levels[k].log_keep;
    uint64_t pos = 0; /* next position */
    for (int first_gap = 1;; first_gap = 0) {
        double v = stream_open01(&s);
        double gap = floor((first_gap ? log1p(-v * any) : log(v)) / log_keep);
        if (first_gap && gap >= (double)n) gap = (double)n - 1; /* rounding at the top */
        if (gap >= (double)(n - pos)) break;
        uint64_t b = pos + (uint64_t)gap;
        if (push(cand, b)) return -1;
        pos = b + 1;
        if (pos >= n) break;
    }
    return 0;
}

/* The u of each item of l, a member of level k; then, unless keep_all, only
 * the items with u < q are kept. */
static void set_u(rng_key key, int k, int keep_all, double q, nested_list *l) {
    for (size_t i = 0; i < l->n; i++) l->v[i].u = level_u(key, k, l->v[i].pos);
    if (keep_all) return;
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].u < q) l->v[kept++] = l->v[i];
    l->n = kept;
}

/* out = a merged with b (both sorted by position, disjoint). */
static int merge(const nested_list *a, const nested_list *b, nested_list *out) {
    if (reserve(out, a->n + b->n)) return -1;
    size_t i = 0, j = 0, o = 0;
    while (i < a->n && j < b->n) out->v[o++] = a->v[i].pos < b->v[j].pos ? a->v[i++] : b->v[j++];
    if (i < a->n) memcpy(out->v + o, a->v + i, (a->n - i) * sizeof *out->v), o += a->n - i;
    if (j < b->n) memcpy(out->v + o, b->v + j, (b->n - j) * sizeof *out->v), o += b->n - j;
    out->n = o;
    return 0;
}

/* Exchanges the items (not the working memory) of two lists. */
static void swap_items(nested_list *a, nested_list *b) {
    nested_hit *v = a->v;
    size_t n = a->n, cap = a->cap;
    a->v = b->v, a->n = b->n, a->cap = b->cap;
    b->v = v, b->n = n, b->cap = cap;
}

/* Levels k = NESTED_LEVELS .. j of a long stream: out holds the members of
 * the rarer levels so far, sorted; each level's candidates not in out are
 * its members, merged in. */
static int draw_merged(rng_key key, uint64_t n, double q, int j, const double *first,
                       nested_list *lvl, nested_list *tmp, nested_list *out) {
    for (int k = NESTED_LEVELS; k >= j; k--) {
        if (level_candidates(key, k, n, first[k], lvl)) return -1;
        size_t r = 0, kept = 0;
        for (size_t i = 0; i < lvl->n; i++) {
            uint64_t b = lvl->v[i].pos;
            while (r < out->n && out->v[r].pos < b) r++;
            if (!(r < out->n && out->v[r].pos == b)) lvl->v[kept++].pos = b;
        }
        lvl->n = kept;
        /* Every member of a rarer level is below q; level j is filtered. */
        set_u(key, k, k > j || q >= 1.0, q, lvl);
        if (lvl->n && out->n == 0) swap_items(out, lvl);
        else if (lvl->n && merge(out, lvl, tmp)) return -1;
        else if (lvl->n) swap_items(out, tmp);
    }
    return 0;
}

/* The same for a short stream (n <= NESTED_MARKS), where a bit per position
 * marks the members so far and holds their u: no merges, and out is read
 * off the marks in position order at the end, through a second level of
 * bits (one per word of marks in use) so that a sparse draw reads a few
 * words. The marks are all clear between calls (cleared as they are read). */
#define NESTED_MARKS 65536

static int draw_marked(rng_key key, uint64_t n, double q, int j, const double *first,
                       nested_list *lvl, nested_list *out) {
    if (n > out->mark_cap) { /* marks for a multiple of 4096 positions */
        uint64_t cap = (n + 4095) / 4096 * 4096;
        uint64_t *mark = calloc(cap / 64 + cap / 4096, sizeof *mark);
        double *mark_u = malloc(cap * sizeof *mark_u);
        if (!mark || !mark_u) {
            free(mark);
            free(mark_u);
            return -1;
        }
        free(out->mark);
        free(out->mark_u);
        out->mark = mark;
        out->mark_u = mark_u;
        out->mark_cap = cap;
    }
    uint64_t *mark = out->mark, *summary = out->mark + out->mark_cap / 64;
    double *mark_u = out->mark_u;
    size_t members = 0;
    int rc = 0;
    for (int k = NESTED_LEVELS; k >= j; k--) {
        if (level_candidates(key, k, n, first[k], lvl)) {
            rc = -1; /* the marks set so far are cleared below */
            break;
        }
        size_t kept = 0;
        for (size_t i = 0; i < lvl->n; i++) {
            uint64_t b = lvl->v[i].pos;
            lvl->v[kept].pos = b;
            kept += !(mark[b / 64] >> (b % 64) & 1);
        }
        lvl->n = kept;
        set_u(key, k, k > j || q >= 1.0, q, lvl);
        for (size_t i = 0; i < lvl->n; i++) {
            uint64_t b = lvl->v[i].pos;
            mark[b / 64] |= 1ull << (b % 64);
            summary[b / 4096] |= 1ull << (b / 64 % 64);
            mark_u[b] = lvl->v[i].u;
        }
        members += lvl->n;
    }
    if (rc == 0) rc = reserve(out, members);
    for (uint64_t s = 0; members && s < (n + 4095) / 4096; s++) {
        for (uint64_t sm = summary[s]; sm; sm &= sm - 1) {
            uint64_t w = s * 64 + (uint64_t)__builtin_ctzll(sm);
            for (uint64_t m = mark[w]; m && rc == 0; m &= m - 1) {
                uint64_t b = w * 64 + (uint64_t)__builtin_ctzll(m);
                out->v[out->n++] = (nested_hit){b, mark_u[b]};
            }
            mark[w] = 0;
        }
        summary[s] = 0;
    }
    return rc;
}

int nested_draw(rng_key key, uint64_t n, double q, nested_list *out) {
    out->n = 0;
    if (!(q > 0.0) || n == 0) return 0;
    pthread_once(&levels_once, levels_init);
    /* The level that contains q: 2^-(j+1) <= q < 2^-j. */
    int j = q >= 1.0 ? 0 : (int)floor(-log2(q));
    if (j > NESTED_LEVELS) j = NESTED_LEVELS;
    double first[NESTED_LEVELS + 2];
    first_units(key, j, first);
    /* The candidates of a level and the merge target reuse out's working
     * memory. */
    nested_list lvl = {.v = out->work[0], .cap = out->work_cap[0]};
    nested_list tmp = {.v = out->work[1], .cap = out->work_cap[1]};
    int rc = n <= NESTED_MARKS ? draw_marked(key, n, q, j, first, &lvl, out)
                               : draw_merged(key, n, q, j, first, &lvl, &tmp, out);
    out->work[0] = lvl.v;
    out->work_cap[0] = lvl.cap;
    out->work[1] = tmp.v;
    out->work_cap[1] = tmp.cap;
    if (rc) out->n = 0;
    return rc;
}

void nested_list_free(nested_list *l) {
    free(l->v);
    free(l->mark);
    free(l->mark_u);
    free(l->work[0]);
    free(l->work[1]);
    *l = (nested_list){0};
}
