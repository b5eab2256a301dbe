/* rng.h - counter-based random numbers (Philox4x32-10).
 *
 * Every random draw in apxsim is a pure function of a key and a counter, so a
 * result never depends on thread count, shard or order of execution
 * (docs/DESIGN.md, rule 1). The key names who draws: (run seed, chip,
 * mechanism or tensor); the counter names which draw: a cell or sample index.
 *
 * Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011 (Philox4x32 with 10 rounds). Checked against its known-answer
 * vectors in tests/test_rng.c. */
#ifndef APX_RNG_H
#define APX_RNG_H

#include <stdint.h>

typedef struct rng_key { uint32_t k[2]; } rng_key;
typedef struct rng_ctr { uint32_t c[4]; } rng_ctr;

/* The raw block function: four 32-bit outputs for one (key, counter).
 * Defined here, like the stream readers below, so that the hot loops of
 * fault-map drawing inline them. */
static inline rng_ctr philox4x32(rng_ctr x, rng_key k) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * x.c[0], p1 = (uint64_t)0xCD9E8D57u * x.c[2];
        rng_ctr y = {{(uint32_t)(p1 >> 32) ^ x.c[1] ^ k.k[0], (uint32_t)p1,
                      (uint32_t)(p0 >> 32) ^ x.c[3] ^ k.k[1], (uint32_t)p0}};
        x = y;
        k.k[0] += 0x9E3779B9u; /* golden ratio */
        k.k[1] += 0xBB67AE85u; /* sqrt(3) - 1 */
    }
    return x;
}

/* Key from a run seed and two stream identifiers (e.g. chip and tensor). */
rng_key rng_key_make(uint64_t seed, uint32_t stream_a, uint32_t stream_b);

/* A sequential stream over one key: draws 4 words per block, then advances
 * the 64-bit counter. Position = block index, so a stream can be restarted at
 * any block (rng_stream_at). */
typedef struct rng_stream {
    rng_key key;
    uint64_t block;     /* next block to generate */
    uint32_t buf[4];
    int used;           /* words of buf already consumed (4 = empty) */
    uint32_t domain;    /* high counter word: separates independent uses */
} rng_stream;

void rng_stream_at(rng_stream *s, rng_key key, uint32_t domain, uint64_t block);

static inline uint32_t rng_u32(rng_stream *s) {
    if (s->used == 4) {
        rng_ctr c = {{(uint32_t)s->block, (uint32_t)(s->block >> 32), s->domain, 0}};
        rng_ctr r = philox4x32(c, s->key);
        for (int i = 0; i < 4; i++) s->buf[i] = r.c[i];
        s->block++;
        s->used = 0;
    }
    return s->buf[s->used++];
}

static inline uint64_t rng_u64(rng_stream *s) {
    uint64_t hi = rng_u32(s);
    return hi << 32 | rng_u32(s);
}

/* Uniform in (0, 1): never 0, never 1 (53 bits). Safe for log(). */
static inline double rng_open01(rng_stream *s) {
    return ((double)(rng_u64(s) >> 11) + 0.5) * 0x1.0p-53;
}

/* Uniform in [0, 1). */
static inline double rng_unit(rng_stream *s) {
    return (double)(rng_u64(s) >> 11) * 0x1.0p-53;
}
/* Standard normal (Box-Muller on two open draws). */
double rng_normal(rng_stream *s);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t rng_below(rng_stream *s, uint64_t n);

#endif
