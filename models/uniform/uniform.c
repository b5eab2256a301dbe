/* uniform.c - the simplest device: every stored bit fails independently
 * with probability `ber`, as a bit flip.
 *
 * Nesting (rule 2) without knowing the sweep: every bit i of a chip has a
 * fixed critical error rate u_i ~ U(0,1) and fails at operating point ber iff
 * u_i < ber. The u_i are never drawn per bit (rule 3). Instead the unit
 * interval is cut into levels L_k = [2^-(k+1), 2^-k) for k < LEVELS and
 * L_LEVELS = [0, 2^-LEVELS). Working from the rarest level up, the members of
 * each level are drawn by geometric skipping among the bits not already in a
 * rarer level: a bit outside the rarer levels has u in L_k with probability
 * q_k = 2^-(k+1) / (1 - 2^-(k+1)), so skipping over all bits at rate q_k and
 * dropping hits already taken gives exactly P(u in L_k) = 2^-(k+1). Only the
 * level that contains ber needs each member's exact u (drawn from the bit's
 * own counter); the rarer levels fail entirely. Every level is drawn from its
 * own stream keyed by (seed, chip, region), so each level's members are the
 * same at every ber: harsher points fail supersets, and the work is about
 * twice the number of faults. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../sim/rng.h"
#include "../device.h"

#define LEVELS 48
#define DOMAIN_LEVEL_U 0x10000u

typedef struct uniform_device {
    device base;
} uniform_device;

static const char *const uniform_knobs[] = {"ber", NULL};

static int uniform_create(const cfg_node *node, device **out, apx_error *err) {
    static const char *const keys[] = {"kind", "name", NULL};
    if (cfg_expect_map(node, "device", keys, err)) return err->code;
    uniform_device *d = calloc(1, sizeof *d);
    if (!d) return apx_fail(err, APX_EWORK, "out of memory");
    extern const device_ops uniform_device_ops;
    d->base.ops = &uniform_device_ops;
    *out = &d->base;
    return APX_OK;
}

static void uniform_destroy(device *d) { free(d); }

static int uniform_check_point(const device *d, const double *op, const cfg_node *at,
                               apx_error *err) {
    (void)d;
    if (!(op[0] >= 0.0 && op[0] <= 1.0)) {
        if (at) return cfg_fail(at, err, "ber must be between 0 and 1, got %g", op[0]);
        return apx_fail(err, APX_EINPUT, "ber must be between 0 and 1, got %g", op[0]);
    }
    return APX_OK;
}

/* Sorted bit lists, grown by doubling. */
typedef struct bitlist {
    uint64_t *v;
    size_t n, cap;
} bitlist;

static int bitlist_push(bitlist *l, uint64_t x) {
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

/* The bits whose u lies in level k and not in a rarer level. `rarer` holds
 * the members of all rarer levels (sorted); the result goes to `out`. */
static int draw_level(rng_key key, int k, uint64_t nbits, const bitlist *rarer, bitlist *out) {
    double q = k == LEVELS ? ldexp(1.0, -LEVELS)
                           : ldexp(1.0, -(k + 1)) / (1.0 - ldexp(1.0, -(k + 1)));
    out->n = 0;
    size_t r = 0;
    if (q >= 1.0) { /* every bit not in a rarer level */
        for (uint64_t b = 0; b < nbits; b++) {
            if (r < rarer->n && rarer->v[r] == b) { r++; continue; }
            if (bitlist_push(out, b)) return -1;
        }
        return 0;
    }
    rng_stream s;
    rng_stream_at(&s, key, (uint32_t)k, 0);
    double log_keep = log1p(-q);
    uint64_t pos = 0; /* next candidate bit */
    for (;;) {
        double gap = floor(log(rng_open01(&s)) / log_keep);
        if (gap >= (double)(nbits - pos)) break;
        uint64_t b = pos + (uint64_t)gap;
        while (r < rarer->n && rarer->v[r] < b) r++;
        if (!(r < rarer->n && rarer->v[r] == b) && bitlist_push(out, b)) return -1;
        pos = b + 1;
        if (pos >= nbits) break;
    }
    return 0;
}

/* Merges two sorted, disjoint lists into out. */
static int merge(const bitlist *a, const bitlist *b, bitlist *out) {
    size_t i = 0, j = 0;
    out->n = 0;
    while (i < a->n || j < b->n) {
        uint64_t x = (j >= b->n || (i < a->n && a->v[i] < b->v[j])) ? a->v[i++] : b->v[j++];
        if (bitlist_push(out, x)) return -1;
    }
    return 0;
}

/* The critical rate of a member of level k: uniform within the level, drawn
 * from the bit's own counter so it does not depend on which bits were drawn. */
static double level_u(rng_key key, int k, uint64_t bit) {
    rng_ctr c = {{(uint32_t)bit, (uint32_t)(bit >> 32), DOMAIN_LEVEL_U + (uint32_t)k, 0}};
    rng_ctr r = philox4x32(c, key);
    double unit = (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
    double lo = k == LEVELS ? 0.0 : ldexp(1.0, -(k + 1));
    double hi = ldexp(1.0, -k);
    return lo + unit * (hi - lo);
}

static int uniform_faults(const device *d, const double *op, uint64_t seed, uint32_t chip,
                          const device_region *where, fmap *out, apx_error *err) {
    (void)d;
    double ber = op[0];
    uint32_t region = where->id;
    uint64_t region_bits = device_region_bits(where);
    fmap_reset(out, region_bits);
    if (ber <= 0.0 || region_bits == 0) return APX_OK;
    rng_key key = rng_key_make(seed, chip, region);
    /* The level that contains ber: 2^-(j+1) <= ber < 2^-j. */
    int j = ber >= 1.0 ? 0 : (int)floor(-log2(ber));
    if (j > LEVELS) j = LEVELS;
    bitlist rarer = {0}, level = {0}, merged = {0};
    int rc = APX_OK;
    for (int k = LEVELS; k > j; k--) {
        if (draw_level(key, k, region_bits, &rarer, &level) || merge(&rarer, &level, &merged))
            goto oom;
        bitlist t = rarer;
        rarer = merged;
        merged = t;
    }
    if (draw_level(key, j, region_bits, &rarer, &level)) goto oom;
    /* Keep the members of level j below ber, then emit in bit order. */
    size_t kept = 0;
    for (size_t i = 0; i < level.n; i++)
        if (ber >= 1.0 || level_u(key, j, level.v[i]) < ber) level.v[kept++] = level.v[i];
    level.n = kept;
    if (merge(&rarer, &level, &merged)) goto oom;
    for (size_t i = 0; i < merged.n && rc == APX_OK; i++)
        rc = fmap_push(out, merged.v[i], FAULT_FLIP, err);
    goto done;
oom:
    rc = apx_fail(err, APX_EWORK, "uniform device: out of memory drawing faults");
done:
    free(rarer.v);
    free(level.v);
    free(merged.v);
    return rc;
}

const device_ops uniform_device_ops = {
    .version = DEVICE_OPS_VERSION,
    .kind = "uniform",
    .summary = "independent bit flips at a given bit error rate (knob: ber)",
    .knobs = uniform_knobs,
    .create = uniform_create,
    .destroy = uniform_destroy,
    .check_point = uniform_check_point,
    .faults = uniform_faults,
};
