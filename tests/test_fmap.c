#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../faultmaps/fmap.h"
#include "../models/device.h"
#include "tests.h"

static void test_push_keeps_invariants(void) {
    fmap m;
    apx_error err = {0};
    fmap_init(&m, 100);
    CU_ASSERT_EQUAL(fmap_push(&m, 5, FAULT_FLIP, &err), APX_OK);
    CU_ASSERT_EQUAL(fmap_push(&m, 5, FAULT_FLIP, &err), APX_EWORK);   /* not increasing */
    CU_ASSERT_EQUAL(fmap_push(&m, 100, FAULT_FLIP, &err), APX_EWORK); /* outside */
    CU_ASSERT_EQUAL(fmap_push(&m, 7, 9, &err), APX_EWORK);            /* unknown kind */
    CU_ASSERT_EQUAL(m.n, 1);
    CU_ASSERT_EQUAL(fmap_check(&m, &err), APX_OK);
    m.bit[0] = 200;
    CU_ASSERT_EQUAL(fmap_check(&m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "outside the region"));
    fmap_free(&m);
}

static void test_apply_kinds_and_layout(void) {
    /* 3 rows of 70 used bits, stride 2 words: logical bit 70 is row 1, col 0. */
    uint64_t img[6] = {0, 0, ~0ull, ~0ull, 0, 0};
    fmap m;
    apx_error err = {0};
    fmap_init(&m, 210);
    CU_ASSERT_EQUAL(fmap_push(&m, 3, FAULT_FLIP, &err), 0);     /* row 0 word 0 bit 3 */
    CU_ASSERT_EQUAL(fmap_push(&m, 69, FAULT_STUCK1, &err), 0);  /* row 0 word 1 bit 5 */
    CU_ASSERT_EQUAL(fmap_push(&m, 70, FAULT_STUCK0, &err), 0);  /* row 1 word 2 bit 0 */
    CU_ASSERT_EQUAL(fmap_push(&m, 71, FAULT_STUCK1, &err), 0);  /* already 1: no change */
    CU_ASSERT_EQUAL(fmap_push(&m, 209, FAULT_FLIP, &err), 0);   /* row 2 word 5 bit 5 */
    fmap_layout where = {img, 3, 70, 2};
    CU_ASSERT_EQUAL(fmap_apply(&m, &where), 4);
    CU_ASSERT_EQUAL(img[0], 1ull << 3);
    CU_ASSERT_EQUAL(img[1], 1ull << 5);
    CU_ASSERT_EQUAL(img[2], ~0ull << 1);
    CU_ASSERT_EQUAL(img[3], ~0ull);
    CU_ASSERT_EQUAL(img[4], 0);
    CU_ASSERT_EQUAL(img[5], 1ull << 5);
    fmap_free(&m);
}

static device uniform_dev(void) {
    device d = {device_find("uniform")};
    return d;
}

static void draw(double ber, uint64_t seed, uint32_t chip, uint32_t region, uint64_t bits,
                 fmap *m) {
    device d = uniform_dev();
    apx_error err = {0};
    fmap_init(m, bits);
    device_region where = {region, 1, bits, 0, 0, NULL};
    CU_ASSERT_EQUAL_FATAL(d.ops->faults(&d, &ber, seed, chip, &where, m, &err), APX_OK);
    CU_ASSERT_EQUAL(fmap_check(m, &err), APX_OK);
}

/* The fault count is Binomial(N, p): it must lie within 5 standard
 * deviations of N p (a false alarm rate below 1e-6 per check). */
static void test_uniform_ber_within_binomial_bounds(void) {
    const double bers[] = {1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.3, 0.5, 0.75};
    const uint64_t bits = 1u << 21;
    for (size_t i = 0; i < sizeof bers / sizeof bers[0]; i++) {
        for (uint32_t chip = 0; chip < 3; chip++) {
            fmap m;
            draw(bers[i], 11, chip, 0, bits, &m);
            double mean = bits * bers[i], sd = sqrt(mean * (1 - bers[i]));
            CU_ASSERT(fabs((double)m.n - mean) <= 5 * sd + 1);
            fmap_free(&m);
        }
    }
}

/* Positions are uniform over the region: chi-square over 64 bins. */
static void test_uniform_positions_are_uniform(void) {
    fmap m;
    draw(0.01, 5, 0, 3, 1u << 20, &m);
    double bins[64] = {0};
    for (size_t i = 0; i < m.n; i++) bins[m.bit[i] >> 14]++;
    double expect = m.n / 64.0, chi2 = 0;
    for (int b = 0; b < 64; b++) chi2 += (bins[b] - expect) * (bins[b] - expect) / expect;
    CU_ASSERT(chi2 < 120); /* 63 degrees of freedom: P(chi2 > 120) < 1e-5 */
    fmap_free(&m);
}

static int is_subset(const fmap *a, const fmap *b) {
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->bit[j] < a->bit[i]) j++;
        if (j == b->n || b->bit[j] != a->bit[i]) return 0;
    }
    return 1;
}

static void test_uniform_harsher_points_fail_supersets(void) {
    const double bers[] = {0, 1e-6, 3e-5, 1e-4, 2.5e-4, 1e-3, 1.1e-3, 0.01, 0.02, 0.05,
                           0.1, 0.24, 0.26, 0.5, 0.51, 0.9, 1.0};
    const size_t n = sizeof bers / sizeof bers[0];
    fmap maps[sizeof bers / sizeof bers[0]];
    for (size_t i = 0; i < n; i++) draw(bers[i], 99, 4, 1, 100003, &maps[i]);
    CU_ASSERT_EQUAL(maps[0].n, 0);
    CU_ASSERT_EQUAL(maps[n - 1].n, 100003);
    for (size_t i = 1; i < n; i++) {
        CU_ASSERT(maps[i].n >= maps[i - 1].n);
        CU_ASSERT(is_subset(&maps[i - 1], &maps[i]));
    }
    for (size_t i = 0; i < n; i++) fmap_free(&maps[i]);
}

static void test_uniform_keys_separate_chips_and_regions(void) {
    fmap a, b, c, a2;
    draw(0.01, 1, 0, 0, 50000, &a);
    draw(0.01, 1, 1, 0, 50000, &b);
    draw(0.01, 1, 0, 1, 50000, &c);
    draw(0.01, 1, 0, 0, 50000, &a2);
    CU_ASSERT(a.n == a2.n && memcmp(a.bit, a2.bit, a.n * sizeof *a.bit) == 0);
    CU_ASSERT(!(a.n == b.n && memcmp(a.bit, b.bit, a.n * sizeof *a.bit) == 0));
    CU_ASSERT(!(a.n == c.n && memcmp(a.bit, c.bit, a.n * sizeof *a.bit) == 0));
    fmap_free(&a);
    fmap_free(&b);
    fmap_free(&c);
    fmap_free(&a2);
}

/* Rule 1: a map is the same whichever thread draws it and in whatever order. */
enum { JOBS = 24 };
typedef struct job_set {
    fmap maps[JOBS];
    int next, stride;
} job_set;

static void *draw_jobs(void *arg) {
    job_set *js = ((job_set **)arg)[0];
    int first = (int)(intptr_t)((void **)arg)[1];
    int last = first + (JOBS - 1 - first) / js->stride * js->stride;
    for (int j = first; j < JOBS; j += js->stride) {
        /* Odd threads take their jobs in reverse order, to vary the schedule. */
        int job = (first % 2) ? last - (j - first) : j;
        device d = uniform_dev();
        double ber = 0.002 * (1 + job % 6);
        apx_error err = {0};
        device_region where = {(uint32_t)job % 3, 1, 300000, 0, 0, NULL};
        fmap_init(&js->maps[job], 300000);
        d.ops->faults(&d, &ber, 7, (uint32_t)(job / 6), &where, &js->maps[job], &err);
    }
    return NULL;
}

static void run_jobs(job_set *js, int threads) {
    pthread_t t[8];
    void *args[8][2];
    js->stride = threads;
    for (int i = 0; i < threads; i++) {
        args[i][0] = js;
        args[i][1] = (void *)(intptr_t)i;
        pthread_create(&t[i], NULL, draw_jobs, args[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

static void test_uniform_same_maps_for_any_thread_count(void) {
    static job_set one, four;
    run_jobs(&one, 1);
    run_jobs(&four, 4);
    for (int j = 0; j < JOBS; j++) {
        CU_ASSERT_EQUAL(one.maps[j].n, four.maps[j].n);
        CU_ASSERT(one.maps[j].n > 0);
        CU_ASSERT(memcmp(one.maps[j].bit, four.maps[j].bit, one.maps[j].n * 8) == 0);
        fmap_free(&one.maps[j]);
        fmap_free(&four.maps[j]);
    }
}

static void test_uniform_refuses_bad_points(void) {
    device d = uniform_dev();
    apx_error err = {0};
    double bad[] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(d.ops->check_point(&d, &bad[i], NULL, &err), APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "ber must be between 0 and 1"));
    }
    double ok = 0.5;
    CU_ASSERT_EQUAL(d.ops->check_point(&d, &ok, NULL, &err), APX_OK);
    CU_ASSERT_PTR_NULL(device_find("nonesuch"));
}

void add_fmap_suite(void) {
    TEST_SUITE("fmap", {"push keeps invariants", test_push_keeps_invariants},
               {"apply kinds and layout", test_apply_kinds_and_layout},
               {"uniform BER within binomial bounds", test_uniform_ber_within_binomial_bounds},
               {"uniform positions are uniform", test_uniform_positions_are_uniform},
               {"harsher points fail supersets", test_uniform_harsher_points_fail_supersets},
               {"keys separate chips and regions", test_uniform_keys_separate_chips_and_regions},
               {"same maps for any thread count", test_uniform_same_maps_for_any_thread_count},
               {"uniform refuses bad points", test_uniform_refuses_bad_points});
}
