#include "rng.h"

#include <math.h>

/* SplitMix64 finaliser: spreads seeds that differ in few bits over the key. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

rng_key rng_key_make(uint64_t seed, uint32_t stream_a, uint32_t stream_b) {
    uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ ((uint64_t)stream_a << 32 | stream_b));
    rng_key k = {{(uint32_t)h, (uint32_t)(h >> 32)}};
    return k;
}

void rng_stream_at(rng_stream *s, rng_key key, uint32_t domain, uint64_t block) {
    s->key = key;
    s->domain = domain;
    s->block = block;
    s->used = 4;
}

double rng_normal(rng_stream *s) {
    double u = rng_open01(s), v = rng_open01(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

uint64_t rng_below(rng_stream *s, uint64_t n) {
    /* Rejection keeps the draw exactly uniform: accept below the largest
     * multiple of n that fits in 64 bits. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_u64(s); while (x >= limit);
    return x % n;
}
