/* test_nested.c - the nested draw (models/nested.h): equal to its simple
 * form, nested, exact in its u values, and at the right rate. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../models/nested.h"
#include "tests.h"

/* The simple form: each level drawn by geometric skipping among the
 * positions not in a rarer level, members of the rarer levels kept, level j
 * filtered by u < q, everything sorted at the end (the algorithm of
 * nested.h written plainly, as the uniform device first had it). */
typedef struct ref_list { uint64_t *v; size_t n; } ref_list;

static int in_sorted(const ref_list *l, uint64_t x) {
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo < l->n && l->v[lo] == x;
}

static int by_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int by_hit(const void *a, const void *b) {
    uint64_t x = ((const nested_hit *)a)->pos, y = ((const nested_hit *)b)->pos;
    return (x > y) - (x < y);
}

static double ref_u(rng_key key, int k, uint64_t pos) {
    rng_ctr c = {{(uint32_t)pos, (uint32_t)(pos >> 32), 0x10000u + (uint32_t)k, 0}};
    rng_ctr r = philox4x32(c, key);
    double unit = (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
    double lo = k == NESTED_LEVELS ? 0.0 : ldexp(1.0, -(k + 1));
    return lo + unit * (ldexp(1.0, -k) - lo);
}

static size_t reference_draw(rng_key key, uint64_t n, double q, uint64_t *pos, double *u) {
    if (!(q > 0) || n == 0) return 0;
    int j = q >= 1.0 ? 0 : (int)floor(-log2(q));
    if (j > NESTED_LEVELS) j = NESTED_LEVELS;
    ref_list rarer = {malloc(n * sizeof(uint64_t)), 0};
    size_t out = 0;
    for (int k = NESTED_LEVELS; k >= j; k--) {
        double rate = k == NESTED_LEVELS ? ldexp(1.0, -NESTED_LEVELS)
                                         : ldexp(1.0, -(k + 1)) / (1.0 - ldexp(1.0, -(k + 1)));
        uint64_t *members = malloc(n * sizeof *members);
        size_t m = 0;
        if (rate >= 1.0) {
            for (uint64_t b = 0; b < n; b++)
                if (!in_sorted(&rarer, b)) members[m++] = b;
        } else {
            /* any member? one uniform from the (k / 2)-th block of domain
             * 0x20000, two levels per block; then a first gap truncated to
             * [0, n) and plain gaps after it */
            double any = -expm1((double)n * log1p(-rate));
            rng_ctr c = {{(uint32_t)(k / 2), 0, 0x20000u, 0}};
            rng_ctr r = philox4x32(c, key);
            double first = (double)(((uint64_t)r.c[(k & 1) * 2] << 21) ^ r.c[(k & 1) * 2 + 1]) *
                           0x1.0p-53;
            rng_stream s;
            rng_stream_at(&s, key, (uint32_t)k, 0);
            for (uint64_t p = 0; first < any;) {
                double v = rng_open01(&s);
                double gap = floor((p == 0 ? log1p(-v * any) : log(v)) / log1p(-rate));
                if (p == 0 && gap >= (double)n) gap = (double)n - 1;
                if (gap >= (double)(n - p)) break;
                uint64_t b = p + (uint64_t)gap;
                if (!in_sorted(&rarer, b)) members[m++] = b;
                p = b + 1;
                if (p >= n) break;
            }
        }
        for (size_t i = 0; i < m; i++) {
            double x = ref_u(key, k, members[i]);
            if (k > j || q >= 1.0 || x < q) {
                pos[out] = members[i];
                u[out++] = x;
            }
            rarer.v[rarer.n++] = members[i];
        }
        qsort(rarer.v, rarer.n, sizeof *rarer.v, by_u64);
        free(members);
    }
    free(rarer.v);
    /* sort the hits by position, carrying u along */
    nested_hit *h = malloc((out ? out : 1) * sizeof *h);
    for (size_t i = 0; i < out; i++) h[i] = (nested_hit){pos[i], u[i]};
    qsort(h, out, sizeof *h, by_hit);
    for (size_t i = 0; i < out; i++) pos[i] = h[i].pos, u[i] = h[i].u;
    free(h);
    return out;
}

static void test_equals_simple_form(void) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(7, 1, 2), 0, 0);
    nested_list l = {0};
    /* Short streams are drawn with marks, long ones with merges (nested.c,
     * the switch at 65536 positions): sizes on both sides and at it, mixed
     * in one list so that marks left behind by a call would show. */
    static const uint64_t sizes[] = {65535, 65536, 65537, 70000, 64, 200000, 1};
    enum { N_SIZES = sizeof sizes / sizeof sizes[0] };
    for (int trial = 0; trial < 200 + 2 * N_SIZES; trial++) {
        uint64_t n = trial >= 200 ? sizes[(trial - 200) % N_SIZES]
                                  : rng_below(&s, trial < 20 ? 40 : 5000);
        double q = trial % 10 == 0 ? 1.0 + rng_unit(&s) : exp(-rng_unit(&s) * 16);
        if (trial % 37 == 0) q = 0.5; /* a level boundary */
        if (trial >= 200 && q > 0.01) q = 0.01 * q; /* a reference that runs in ms */
        rng_key key = rng_key_make((uint64_t)trial, 3, 4);
        uint64_t *pos = malloc((n + 1) * sizeof *pos);
        double *u = malloc((n + 1) * sizeof *u);
        size_t m = reference_draw(key, n, q, pos, u);
        CU_ASSERT_EQUAL_FATAL(nested_draw(key, n, q, &l), 0);
        CU_ASSERT_EQUAL(l.n, m);
        int same = l.n == m;
        for (size_t i = 0; same && i < m; i++)
            same = l.v[i].pos == pos[i] && l.v[i].u == u[i];
        CU_ASSERT(same);
        free(pos);
        free(u);
    }
    nested_list_free(&l);
}

static void test_nested_and_exact(void) {
    rng_key key = rng_key_make(11, 0, 0);
    nested_list a = {0}, b = {0};
    const uint64_t n = 200000;
    double qs[] = {1e-6, 3e-5, 1e-3, 0.0123, 0.25, 0.5, 0.75, 1.0};
    for (size_t i = 0; i + 1 < sizeof qs / sizeof qs[0]; i++) {
        CU_ASSERT_FATAL(nested_draw(key, n, qs[i], &a) == 0 && nested_draw(key, n, qs[i + 1], &b) == 0);
        /* sorted, strictly increasing, u < q, and a subset of the harsher list with the same u */
        size_t k = 0, ok = 1;
        for (size_t x = 0; x < a.n; x++) {
            if (x && a.v[x].pos <= a.v[x - 1].pos) ok = 0;
            if (!(a.v[x].u < qs[i] && a.v[x].u >= 0)) ok = 0;
            while (k < b.n && b.v[k].pos < a.v[x].pos) k++;
            if (!(k < b.n && b.v[k].pos == a.v[x].pos && b.v[k].u == a.v[x].u)) ok = 0;
        }
        CU_ASSERT(ok);
        /* the count is Binomial(n, q): within 5 standard deviations */
        double mean = n * qs[i], sd = sqrt(n * qs[i] * (1 - qs[i]));
        CU_ASSERT(fabs((double)a.n - mean) <= 5 * sd + 1);
    }
    CU_ASSERT_FATAL(nested_draw(key, 1000, 1.0, &a) == 0);
    CU_ASSERT_EQUAL(a.n, 1000);
    CU_ASSERT_FATAL(nested_draw(key, 1000, 0.0, &a) == 0);
    CU_ASSERT_EQUAL(a.n, 0);
    CU_ASSERT_FATAL(nested_draw(key, 0, 0.5, &a) == 0);
    CU_ASSERT_EQUAL(a.n, 0);
    /* u is uniform below q: its mean is q/2 */
    CU_ASSERT_FATAL(nested_draw(key, n, 0.01, &a) == 0);
    double sum = 0;
    for (size_t x = 0; x < a.n; x++) sum += a.v[x].u;
    CU_ASSERT(fabs(sum / a.n - 0.005) < 5 * 0.01 / sqrt(12.0 * a.n));
    nested_list_free(&a);
    nested_list_free(&b);
}

void add_nested_suite(void) {
    TEST_SUITE("nested", {"equal to the simple form", test_equals_simple_form},
               {"nested, exact, at its rate", test_nested_and_exact});
}
