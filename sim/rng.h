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

/* The raw block function: four 32-bit outputs for one (key, counter). */
rng_ctr philox4x32(rng_ctr ctr, rng_key key);

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
uint32_t rng_u32(rng_stream *s);
uint64_t rng_u64(rng_stream *s);
/* Uniform in (0, 1): never 0, never 1 (53 bits). Safe for log(). */
double rng_open01(rng_stream *s);
/* Uniform in [0, 1). */
double rng_unit(rng_stream *s);
/* Standard normal (Box-Muller on two open draws). */
double rng_normal(rng_stream *s);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t rng_below(rng_stream *s, uint64_t n);

#endif
