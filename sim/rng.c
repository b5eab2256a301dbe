#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

rng_ctr philox4x32(rng_ctr x, rng_key k) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, x.c[0], &hi0, &lo0);
        mulhilo(PHILOX_M1, x.c[2], &hi1, &lo1);
        rng_ctr y = {{hi1 ^ x.c[1] ^ k.k[0], lo1, hi0 ^ x.c[3] ^ k.k[1], lo0}};
        x = y;
        k.k[0] += PHILOX_W0;
        k.k[1] += PHILOX_W1;
    }
    return x;
}

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

uint32_t rng_u32(rng_stream *s) {
    if (s->used == 4) {
        rng_ctr c = {{(uint32_t)s->block, (uint32_t)(s->block >> 32), s->domain, 0}};
        rng_ctr r = philox4x32(c, s->key);
        for (int i = 0; i < 4; i++) s->buf[i] = r.c[i];
        s->block++;
        s->used = 0;
    }
    return s->buf[s->used++];
}

uint64_t rng_u64(rng_stream *s) {
    uint64_t hi = rng_u32(s);
    return hi << 32 | rng_u32(s);
}

double rng_unit(rng_stream *s) {
    return (double)(rng_u64(s) >> 11) * 0x1.0p-53;
}

double rng_open01(rng_stream *s) {
    return ((double)(rng_u64(s) >> 11) + 0.5) * 0x1.0p-53;
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
