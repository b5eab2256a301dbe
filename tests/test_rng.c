#include <string.h>

#include "../sim/rng.h"
#include "tests.h"

/* Known-answer vectors of Philox4x32-10 from the Random123 distribution
 * (kat_vectors): a wrong round constant or word order fails these. */
static void test_philox_known_answers(void) {
    struct { rng_ctr ctr; rng_key key; rng_ctr want; } kat[] = {
        {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
        {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}},
         {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
        {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}},
         {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        rng_ctr got = philox4x32(kat[i].ctr, kat[i].key);
        CU_ASSERT_EQUAL(memcmp(&got, &kat[i].want, sizeof got), 0);
    }
}

static void test_stream_restarts_at_block(void) {
    rng_key key = rng_key_make(42, 1, 2);
    rng_stream a, b;
    rng_stream_at(&a, key, 7, 0);
    uint32_t seq[40];
    for (int i = 0; i < 40; i++) seq[i] = rng_u32(&a);
    rng_stream_at(&b, key, 7, 5); /* block 5 = words 20..23 */
    for (int i = 20; i < 40; i++) CU_ASSERT_EQUAL(rng_u32(&b), seq[i]);
    /* Another domain or key gives another sequence. */
    rng_stream_at(&b, key, 8, 0);
    CU_ASSERT_NOT_EQUAL(rng_u32(&b), seq[0]);
    rng_stream_at(&b, rng_key_make(43, 1, 2), 7, 0);
    CU_ASSERT_NOT_EQUAL(rng_u32(&b), seq[0]);
}

static void test_uniform_ranges_and_moments(void) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(1, 0, 0), 0, 0);
    double sum = 0, sum2 = 0;
    int n = 200000, hits[10] = {0};
    for (int i = 0; i < n; i++) {
        double u = rng_open01(&s);
        CU_ASSERT(u > 0.0 && u < 1.0);
        uint64_t k = rng_below(&s, 10);
        CU_ASSERT(k < 10);
        hits[k]++;
        double z = rng_normal(&s);
        sum += z;
        sum2 += z * z;
    }
    /* Mean 0 and variance 1 within ~6 standard errors. */
    CU_ASSERT(sum / n > -0.0135 && sum / n < 0.0135);
    CU_ASSERT(sum2 / n > 0.98 && sum2 / n < 1.02);
    for (int k = 0; k < 10; k++) CU_ASSERT(hits[k] > 19000 && hits[k] < 21000);
}

void add_rng_suite(void) {
    TEST_SUITE("rng", {"philox known answers", test_philox_known_answers},
               {"stream restarts at a block", test_stream_restarts_at_block},
               {"ranges and moments", test_uniform_ranges_and_moments});
}
