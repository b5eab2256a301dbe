/* test_dram.c - the DRAM error model (models/dram/dram_errors.h) and the
 * `dram` device (models/dram/dram.c).
 *
 * What is proved: nested maps (rule 2) along every knob, on several regions
 * and chips; determinism and independence of call order and of other regions
 * (a sub-region's faults are the big region's faults at the same addresses);
 * zero faults at the nominal point and below t_min; the measured fail and
 * line fractions match the analytic expectations within binomial bounds; the
 * column contrast, row ramp, edge rows and weak lines show in the maps;
 * fault kinds follow the cell layout; VRT changes with the time window and
 * transient faults with the read, each nested at fixed time; the work is
 * proportional to the faults (rule 3); bad YAML, bad points and bad regions
 * are refused with positions; the shipped DDR4 device loads.
 *
 * A small memory (2 MiB: 2 bank groups x 2 banks x 1024 rows x 64 columns
 * of a 64-bit bus word, RoBaBgCoCh) keeps the suite fast: a 4 KiB block then
 * spans two rows of four banks, so blocks mix banks and rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/device.h"
#include "../models/dram/dram_energy.h"
#include "../models/dram/dram_errors.h"
#include "../sim/rng.h"
#include "tests.h"

/* ---- fixtures ---------------------------------------------------------------- */

/* Every mechanism on, with spatial structure, weak lines and stripes. */
static const char *const full_yaml =
    "activation: {bulk_mu: 8.3, bulk_sigma: 0.62, weak_fraction: 1e-3, weak_mu: 11,\n"
    "             weak_sigma: 0.8, guard: 13.3, v_threshold: 0.97, alpha: 0.08}\n"
    "precharge: {bulk_mu: 5.5, bulk_sigma: 0.62, guard: 13.3, v_threshold: 0.9, alpha: 0.1}\n"
    "sigma_chip: 0.03\n"
    "sigma_bank: 0.01\n"
    "retention: {t_min_ms: 256, t_ref_ms: 2048, ber_ref: 1e-3, beta: 6, temp_ref: 70,\n"
    "            k10: 1.22}\n"
    "vrt: {fraction: 0.05, ratio: 2, dwell_s: 100, duty: 0.5}\n"
    "transient: {band: 1.5, p_read: 0.3}\n"
    "spatial: {column_period: 16, column_phase: 3, column_contrast: 10, subarray_rows: 64,\n"
    "          edge_rows: 4, row_ramp: 1, edge_boost: 2, weak_bitline_fraction: 0.05,\n"
    "          weak_bitline_factor: 3, weak_wordline_fraction: 0.05,\n"
    "          weak_wordline_factor: 3}\n"
    "layout: row_stripes\n"
    "stripe: 3\n";

#define VDD_NOM 1.2
static const double nominal[DK_COUNT] = {VDD_NOM, 13.3, 13.3, 32, 64, 45, 0};

static int parse_params(const char *yaml, dram_error_params *p, apx_error *err) {
    cfg_doc *doc = cfg_load_string(yaml, strlen(yaml), "errors.yaml", err);
    if (!doc) return err->code;
    int rc = dram_error_params_from_yaml(cfg_root(doc), VDD_NOM, p, err);
    cfg_free(doc);
    return rc;
}

static dram_error_params params(const char *yaml) {
    dram_error_params p;
    apx_error err = {0};
    int rc = parse_params(yaml, &p, &err);
    if (rc) fprintf(stderr, "test params: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    return p;
}

static geometry test_geo(void) {
    geometry g;
    geometry_default(&g);
    g.count[GEO_BG] = 2;
    g.count[GEO_BA] = 2;
    g.count[GEO_RO] = 1024;
    g.count[GEO_CO] = 64;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    return g;
}

/* The whole 2 MiB memory as 4096 rows of 4096 bits. */
static device_region whole(const geometry *g) {
    return (device_region){0, 4096, 4096, 0, 512, g};
}

static void op_with(double *op, int knob, double v) {
    memcpy(op, nominal, sizeof nominal);
    op[knob] = v;
}

static size_t faults_of(const dram_error_params *p, const double *op, uint32_t chip,
                        const device_region *r, fmap *m) {
    apx_error err = {0};
    int rc = dram_errors_faults(p, op, 1, chip, r, m, &err);
    if (rc) fprintf(stderr, "faults: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(fmap_check(m, &err), APX_OK);
    CU_ASSERT_EQUAL(m->region_bits, r->rows * r->cols);
    return m->n;
}

/* The cell that holds logical bit b of region r. */
static cell cell_of(const device_region *r, uint64_t b) {
    uint64_t row = b / r->cols, col = b % r->cols;
    cell c;
    apx_error err;
    CU_ASSERT_EQUAL(geometry_addr_to_cell(r->geo, r->base_addr + row * r->row_stride + col / 8,
                                          (unsigned)(col % 8), &c, &err),
                    APX_OK);
    return c;
}

/* Whether every fault of a is in b; with same_kind, with the same kind, else
 * with the same kind or FLIP in b. */
static int subset(const fmap *a, const fmap *b, int same_kind) {
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->bit[j] < a->bit[i]) j++;
        if (j == b->n || b->bit[j] != a->bit[i]) return 0;
        if (b->kind[j] != a->kind[i] && (same_kind || b->kind[j] != FAULT_FLIP)) return 0;
    }
    return 1;
}

static int same_map(const fmap *a, const fmap *b) {
    return a->n == b->n && a->region_bits == b->region_bits &&
           (a->n == 0 || (!memcmp(a->bit, b->bit, a->n * sizeof *a->bit) &&
                          !memcmp(a->kind, b->kind, a->n)));
}

/* |k - n p| within z standard deviations of a binomial (plus extra variance). */
static int within(double k, double n, double p, double extra_var, double z) {
    double var = n * p * (1 - p) + extra_var;
    return fabs(k - n * p) <= z * sqrt(var) + 1;
}

/* ---- nesting ------------------------------------------------------------------ */

/* For each knob, a list of points from mild to harsh (the other knobs at the
 * given base point): maps are supersets with the same kinds. */
static void check_nesting(const dram_error_params *p, int knob, const double *values, int n,
                          const double *base, int same_kind) {
    geometry g = test_geo();
    device_region regions[3] = {whole(&g), {1, 100, 1000, 123457, 200, &g},
                                {2, 3, 77, 999, 12288, &g}};
    uint32_t chips[3] = {0, 1, 7};
    fmap prev, cur;
    fmap_init(&prev, 0);
    fmap_init(&cur, 0);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            double op[DK_COUNT];
            memcpy(op, base, sizeof op);
            size_t first = 0;
            for (int i = 0; i < n; i++) {
                op[knob] = values[i];
                faults_of(p, op, chips[c], &regions[r], &cur);
                if (i == 0) first = cur.n;
                if (i > 0) CU_ASSERT(subset(&prev, &cur, same_kind));
                fmap t = prev;
                prev = cur;
                cur = t;
            }
            if (r == 0) { /* the big region: the harshest point must add faults */
                CU_ASSERT(prev.n > 100);
                CU_ASSERT(prev.n > first);
            }
        }
    fmap_free(&prev);
    fmap_free(&cur);
}

static void test_nested_along_every_knob(void) {
    dram_error_params p = params(full_yaml);
    double base[DK_COUNT];
    memcpy(base, nominal, sizeof base);
    const double trcd[] = {13.3, 12.5, 12, 11.5, 11.2};
    check_nesting(&p, DK_TRCD, trcd, 5, base, 1);
    const double trp[] = {13.3, 8.5, 8, 7.8, 7.6};
    check_nesting(&p, DK_TRP, trp, 5, base, 1);
    base[DK_TRCD] = 12.2;  /* the weak population starts to fail: VDD scales it */
    const double vdd[] = {1.3, 1.2, 1.1, 1.05, 1.02};
    check_nesting(&p, DK_VDD, vdd, 5, base, 1);
    memcpy(base, nominal, sizeof base);
    base[DK_TEMP] = 70;
    const double trefw[] = {64, 256, 512, 1024, 1400};
    check_nesting(&p, DK_TREFW, trefw, 5, base, 1);
    base[DK_TREFW] = 1024;
    const double temp[] = {-40, 45, 70, 85, 95};
    check_nesting(&p, DK_TEMP, temp, 5, base, 1);
}

/* With data_dependent false a cell may go from DD (retention) to FLIP
 * (retention and activation) as tRCD falls, never back. */
static void test_nested_with_flips(void) {
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%sdata_dependent: false\n", full_yaml);
    dram_error_params p = params(yaml);
    double base[DK_COUNT];
    memcpy(base, nominal, sizeof base);
    base[DK_TEMP] = 70;
    base[DK_TREFW] = 1200;
    const double trcd[] = {13.3, 12, 11.6, 11.3, 11.1};
    check_nesting(&p, DK_TRCD, trcd, 5, base, 0);
}

/* ---- determinism ---------------------------------------------------------------- */

static void test_deterministic_and_independent(void) {
    dram_error_params p = params(full_yaml);
    geometry g = test_geo();
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 11.2);
    op[DK_TREFW] = 1024;
    op[DK_TEMP] = 85;
    op[DK_TIME] = 30;
    device_region big = whole(&g);
    fmap a, b, c, d;
    fmap_init(&a, 0);
    fmap_init(&b, 0);
    fmap_init(&c, 0);
    fmap_init(&d, 0);
    /* same inputs, same map; another chip, another map */
    CU_ASSERT(faults_of(&p, op, 3, &big, &a) > 1000);
    faults_of(&p, op, 3, &big, &b);
    CU_ASSERT(same_map(&a, &b));
    faults_of(&p, op, 4, &big, &c);
    CU_ASSERT(!same_map(&a, &c));
    /* another seed, another map */
    apx_error err;
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 2, 3, &big, &d, &err), APX_OK);
    CU_ASSERT(!same_map(&a, &d));

    /* A sub-region (rows 100..299 from byte 64 of each row, 1000 bits) holds
     * exactly the big region's faults at the same addresses, whatever was
     * asked before, and the region id plays no part. */
    device_region sub = {9, 200, 1000, 100 * 512 + 64, 512, &g};
    faults_of(&p, op, 3, &sub, &b);
    faults_of(&p, op, 4, &big, &c);  /* something else in between */
    sub.id = 0;
    faults_of(&p, op, 3, &sub, &c);
    CU_ASSERT(same_map(&b, &c));
    fmap expect;
    fmap_init(&expect, sub.rows * sub.cols);
    for (size_t i = 0; i < a.n; i++) {
        uint64_t row = a.bit[i] / big.cols, col = a.bit[i] % big.cols;
        if (row >= 100 && row < 300 && col >= 512 && col < 1512)
            CU_ASSERT_EQUAL(fmap_push(&expect, (row - 100) * 1000 + col - 512, a.kind[i], &err),
                            APX_OK);
    }
    CU_ASSERT(expect.n > 10);
    CU_ASSERT(same_map(&expect, &b));
    fmap_free(&expect);
    fmap_free(&a);
    fmap_free(&b);
    fmap_free(&c);
    fmap_free(&d);
}

/* ---- the nominal point and t_min ------------------------------------------------------ */

static void test_zero_at_nominal(void) {
    dram_error_params p = params(full_yaml);
    geometry g = test_geo();
    device_region big = whole(&g);
    fmap m;
    fmap_init(&m, 0);
    int weak_chips = 0;
    for (uint32_t chip = 0; chip < 40; chip++) {
        weak_chips += dram_errors_chip_z(1, chip) > 1;
        CU_ASSERT_EQUAL(faults_of(&p, nominal, chip, &big, &m), 0);
        CU_ASSERT_DOUBLE_EQUAL(dram_errors_expected_fail(&p, nominal, dram_errors_chip_z(1, chip)),
                               0, 0);
    }
    CU_ASSERT(weak_chips > 0);  /* chips whose latencies are worse than median */
    /* retention: nothing at t <= t_min (at temp_ref t is trefw), much above */
    double op[DK_COUNT];
    op_with(op, DK_TREFW, 256);
    op[DK_TEMP] = 70;
    for (uint32_t chip = 0; chip < 10; chip++) CU_ASSERT_EQUAL(faults_of(&p, op, chip, &big, &m), 0);
    op[DK_TREFW] = 1024;  /* 2^-6 * 1e-3 * 16.8 M cells, and 2.6x that with VRT: ~680 */
    CU_ASSERT(faults_of(&p, op, 0, &big, &m) > 300);
    /* colder than temp_ref the window may exceed t_min: 300 ms at 45 C */
    op[DK_TREFW] = 300;
    op[DK_TEMP] = 45;
    CU_ASSERT_EQUAL(faults_of(&p, op, 0, &big, &m), 0);
    /* without an errors section nothing ever fails */
    dram_error_params none;
    apx_error err;
    CU_ASSERT_EQUAL(dram_error_params_from_yaml(NULL, VDD_NOM, &none, &err), APX_OK);
    double harsh[DK_COUNT] = {1.0, 5, 5, 10, 5000, 95, 0};
    CU_ASSERT_EQUAL(faults_of(&none, harsh, 0, &big, &m), 0);
    fmap_free(&m);
}

/* ---- statistics --------------------------------------------------------------------- */

/* Spatial structure without weak lines, no chip or bank spread, no
 * transients (the expectation leaves them out). */
static const char *const stat_yaml =
    "activation: {bulk_mu: 8.3, bulk_sigma: 0.62, weak_fraction: 1e-3, weak_mu: 11,\n"
    "             weak_sigma: 0.8, guard: 13.3, v_threshold: 0.97, alpha: 0.08}\n"
    "precharge: {bulk_mu: 5.5, bulk_sigma: 0.62, guard: 13.3, v_threshold: 0.9, alpha: 0.1}\n"
    "retention: {t_min_ms: 256, t_ref_ms: 2048, ber_ref: 1e-3, beta: 6, temp_ref: 70,\n"
    "            k10: 1.22}\n"
    "vrt: {fraction: 0.05, ratio: 2, dwell_s: 100, duty: 0.5}\n"
    "spatial: {column_period: 16, column_phase: 3, column_contrast: 10, subarray_rows: 64,\n"
    "          edge_rows: 4, row_ramp: 1, edge_boost: 2}\n";

static void test_fail_fraction_matches_expectation(void) {
    dram_error_params p = params(stat_yaml);
    geometry g = test_geo();
    device_region big = whole(&g);
    double n = (double)(big.rows * big.cols);
    fmap m;
    fmap_init(&m, 0);
    /* every mechanism contributes: activation and precharge at reduced VDD,
     * retention and VRT at 1.2 s and 70 C */
    double op[DK_COUNT] = {1.1, 11.5, 8.2, 32, 1200, 70, 0};
    double e = dram_errors_expected_fail(&p, op, 0);
    CU_ASSERT(e > 2e-4 && e < 5e-3);
    CU_ASSERT(within((double)faults_of(&p, op, 0, &big, &m), n, e, 0, 5));
    /* one mechanism at a time, so none hides an error in another */
    double act[DK_COUNT] = {1.2, 11, 13.3, 32, 64, 45, 0};
    double ret[DK_COUNT] = {1.2, 13.3, 13.3, 32, 1400, 85, 0};
    double pre[DK_COUNT] = {1.05, 13.3, 7.8, 32, 64, 45, 0};
    const double *ops[3] = {act, ret, pre};
    for (int i = 0; i < 3; i++) {
        e = dram_errors_expected_fail(&p, ops[i], 0);
        CU_ASSERT(e > 1e-4);
        CU_ASSERT(within((double)faults_of(&p, ops[i], 1, &big, &m), n, e, 0, 5));
    }
    /* a chip spread: each chip matches the expectation at its own z */
    dram_error_params q = p;
    q.sigma_chip = 0.04;
    for (uint32_t chip = 0; chip < 4; chip++) {
        e = dram_errors_expected_fail(&q, act, dram_errors_chip_z(1, chip));
        CU_ASSERT(within((double)faults_of(&q, act, chip, &big, &m), n, e, 0, 5));
    }
    CU_ASSERT(dram_errors_expected_fail(&q, act, 1) > 1.3 * dram_errors_expected_fail(&q, act, 0));
    fmap_free(&m);
}

/* Weak bitlines: the count of weak lines is random, which adds the variance
 * L f (1 - f) dm^2 (L lines, dm the difference of a weak and a strong
 * line's expected faults) to the binomial one. */
static void test_fail_fraction_with_weak_bitlines(void) {
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s",
             "activation: {bulk_mu: 8.3, bulk_sigma: 0.62, guard: 13.3, v_threshold: 0.97,\n"
             "             alpha: 0.08}\n"
             "spatial: {column_period: 16, column_contrast: 4, subarray_rows: 64,\n"
             "          weak_bitline_fraction: 0.05, weak_bitline_factor: 5}\n");
    dram_error_params p = params(yaml);
    geometry g = test_geo();
    device_region big = whole(&g);
    double n = (double)(big.rows * big.cols), op[DK_COUNT];
    op_with(op, DK_TRCD, 10.6);
    double e = dram_errors_expected_fail(&p, op, 0);  /* = G: no clamping */
    double lines = 4.0 * 16 * 64 * 64, f = 0.05, m = 1 + f * 4;
    double dm = 64 * e * (5 - 1) / m;
    fmap fm;
    fmap_init(&fm, 0);
    for (uint32_t chip = 0; chip < 3; chip++)
        CU_ASSERT(within((double)faults_of(&p, op, chip, &big, &fm), n, e,
                         lines * f * (1 - f) * dm * dm, 5));
    fmap_free(&fm);
}

/* Lines of 64 bytes with an observed error: a DD fault shows when the cell
 * holds its vulnerable value (a hash with probability test_vulnerable), a
 * FLIP always. Lines are independent, so the count is within a binomial
 * bound of expected_line_fraction. */
static double observed_line_fraction(const dram_error_params *p, const double *op,
                                     const device_region *lines) {
    fmap m;
    fmap_init(&m, 0);
    faults_of(p, op, 0, lines, &m);
    rng_key key = rng_key_make(12345, 6, 7);
    uint64_t with_error = 0, last = UINT64_MAX;
    for (size_t i = 0; i < m.n; i++) {
        uint64_t line = m.bit[i] / lines->cols;
        rng_ctr c = philox4x32((rng_ctr){{(uint32_t)m.bit[i], (uint32_t)(m.bit[i] >> 32), 0, 0}},
                               key);
        int shown = m.kind[i] == FAULT_FLIP || c.c[0] * 0x1.0p-32 < p->test_vulnerable;
        if (shown && line != last) with_error++, last = line;
    }
    fmap_free(&m);
    return (double)with_error;
}

static void test_line_fraction_matches_expectation(void) {
    dram_error_params p = params(stat_yaml);
    geometry g = test_geo();
    device_region lines = {0, 32768, 512, 0, 64, &g};  /* every 64-byte line */
    double op[DK_COUNT] = {1.2, 11.1, 13.3, 32, 1100, 70, 0};
    double e = dram_errors_expected_line_fraction(&p, op, 0);
    CU_ASSERT(e > 0.05 && e < 0.5);
    CU_ASSERT(within(observed_line_fraction(&p, op, &lines), 32768, e, 0, 5));
    p.data_dependent = 0;  /* activation failures show whatever is stored */
    double e_flip = dram_errors_expected_line_fraction(&p, op, 0);
    CU_ASSERT(e_flip > e * 1.3);
    CU_ASSERT(within(observed_line_fraction(&p, op, &lines), 32768, e_flip, 0, 5));
    /* with retention only, FLIP or not makes no difference */
    double ret[DK_COUNT] = {1.2, 13.3, 13.3, 32, 1500, 70, 0};
    double e_ret_flip = dram_errors_expected_line_fraction(&p, ret, 0);
    p.data_dependent = 1;
    CU_ASSERT(e_ret_flip > 0.01);
    CU_ASSERT_DOUBLE_EQUAL(dram_errors_expected_line_fraction(&p, ret, 0), e_ret_flip, 1e-15);
}

/* ---- spatial structure -------------------------------------------------------------- */

static const char *const act_only_fmt =
    "activation: {bulk_mu: 8.3, bulk_sigma: 0.62, guard: 13.3, v_threshold: 0.97, alpha: 0.08}\n"
    "spatial: {%s}\n";

/* log(a / b) within z standard deviations of log(expect) (Poisson counts). */
static int ratio_within(double a, double b, double expect, double z) {
    return a > 0 && b > 0 && fabs(log(a / b) - log(expect)) <= z * sqrt(1 / a + 1 / b);
}

static void test_column_and_row_structure(void) {
    char yaml[1024];
    geometry g = test_geo();
    device_region big = whole(&g);
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 10.3);  /* P ~ 6e-4: ~10,000 faults */
    fmap m;
    fmap_init(&m, 0);

    /* columns: high iff (c + 5) mod 16 < 8, ten times the low rate */
    snprintf(yaml, sizeof yaml, act_only_fmt,
             "column_period: 16, column_phase: 5, column_contrast: 10");
    dram_error_params p = params(yaml);
    faults_of(&p, op, 0, &big, &m);
    double hi = 0, lo = 0;
    for (size_t i = 0; i < m.n; i++) {
        cell c = cell_of(&big, m.bit[i]);
        if ((c.f[GEO_CO] + 5) % 16 < 8) hi++; else lo++;
    }
    CU_ASSERT(lo > 100);
    CU_ASSERT(ratio_within(hi, lo, 10, 5));

    /* rows: a ramp of 3 over 64-row subarrays; first vs last quarter */
    snprintf(yaml, sizeof yaml, act_only_fmt, "subarray_rows: 64, row_ramp: 3");
    p = params(yaml);
    faults_of(&p, op, 0, &big, &m);
    double first = 0, last = 0, w_first = 0, w_last = 0;
    for (int r = 0; r < 16; r++) w_first += 1 + 3.0 * r / 64, w_last += 1 + 3.0 * (r + 48) / 64;
    for (size_t i = 0; i < m.n; i++) {
        uint32_t r = cell_of(&big, m.bit[i]).f[GEO_RO] % 64;
        if (r < 16) first++;
        if (r >= 48) last++;
    }
    CU_ASSERT(ratio_within(last, first, w_last / w_first, 5));
    CU_ASSERT(last > 2 * first);

    /* edge rows: the first 4 of each subarray at 5x */
    snprintf(yaml, sizeof yaml, act_only_fmt, "subarray_rows: 64, edge_rows: 4, edge_boost: 5");
    p = params(yaml);
    faults_of(&p, op, 0, &big, &m);
    double edge = 0, rest = 0;
    for (size_t i = 0; i < m.n; i++) {
        if (cell_of(&big, m.bit[i]).f[GEO_RO] % 64 < 4)
            edge++;
        else
            rest++;
    }
    CU_ASSERT(ratio_within(edge / 4, rest / 60, 5, 5));
    fmap_free(&m);
}

/* var/mean of the faults per line: ~1 for independent cells, well above with
 * weak lines. line_of gives a cell's line id in [0, n_lines). */
static double dispersion(const fmap *m, const device_region *r, size_t n_lines,
                         uint64_t (*line_of)(const cell *)) {
    double *count = calloc(n_lines, sizeof *count);
    for (size_t i = 0; i < m->n; i++) {
        cell c = cell_of(r, m->bit[i]);
        count[line_of(&c)]++;
    }
    double mean = (double)m->n / (double)n_lines, var = 0;
    for (size_t i = 0; i < n_lines; i++) var += (count[i] - mean) * (count[i] - mean);
    free(count);
    return var / (double)n_lines / mean;
}

static uint64_t wordline_of(const cell *c) {
    return ((uint64_t)(c->f[GEO_BG] * 2 + c->f[GEO_BA]) << 10) | c->f[GEO_RO];
}

static uint64_t bitline_of(const cell *c) {  /* bank, 64-row subarray (of 4), column, bit */
    uint64_t bank = c->f[GEO_BG] * 2 + c->f[GEO_BA];
    return ((bank * 4 + c->f[GEO_RO] / 64) * 64 + c->f[GEO_CO]) * 64 + c->bit;
}

static void test_weak_lines_cluster(void) {
    char yaml[1024];
    geometry g = test_geo();
    device_region big = whole(&g);
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 10.3);  /* P ~ 6e-4: ~2.5 faults per wordline of 4096 cells */
    fmap m;
    fmap_init(&m, 0);
    snprintf(yaml, sizeof yaml, act_only_fmt, "subarray_rows: 64");
    dram_error_params plain = params(yaml);
    faults_of(&plain, op, 0, &big, &m);
    CU_ASSERT(dispersion(&m, &big, 4096, wordline_of) < 1.3);
    snprintf(yaml, sizeof yaml, act_only_fmt,
             "subarray_rows: 64, weak_wordline_fraction: 0.1, weak_wordline_factor: 10");
    dram_error_params p = params(yaml);
    faults_of(&p, op, 0, &big, &m);
    CU_ASSERT(dispersion(&m, &big, 4096, wordline_of) > 3);  /* ~6 expected */
    /* bitlines in the first 256 rows (a quarter of the memory): 65,536 of 64
     * cells; ~1.1 faults each at P ~ 1.8e-2 */
    device_region quarter = {0, 1024, 4096, 0, 512, &g};
    op[DK_TRCD] = 9.6;
    faults_of(&plain, op, 0, &quarter, &m);
    CU_ASSERT(dispersion(&m, &quarter, 65536, bitline_of) < 1.1);
    snprintf(yaml, sizeof yaml, act_only_fmt,
             "subarray_rows: 64, weak_bitline_fraction: 0.1, weak_bitline_factor: 10");
    p = params(yaml);
    faults_of(&p, op, 0, &quarter, &m);
    CU_ASSERT(dispersion(&m, &quarter, 65536, bitline_of) > 2);  /* ~3.3 expected */
    fmap_free(&m);
}

/* ---- direction ------------------------------------------------------------------------ */

static void test_kinds_follow_the_layout(void) {
    const char *layouts[] = {"true_cells", "anti_cells", "row_stripes", "column_stripes"};
    geometry g = test_geo();
    device_region big = whole(&g);
    double op[DK_COUNT] = {1.2, 11.2, 13.3, 32, 1300, 70, 0};  /* activation and retention */
    fmap m;
    fmap_init(&m, 0);
    for (int l = 0; l < 4; l++) {
        char yaml[2048];
        snprintf(yaml, sizeof yaml, "%slayout: %s\nstripe: 3\n", stat_yaml, layouts[l]);
        dram_error_params p = params(yaml);
        CU_ASSERT(faults_of(&p, op, 0, &big, &m) > 1000);
        size_t dd0 = 0, wrong = 0;
        for (size_t i = 0; i < m.n; i++) {
            cell c = cell_of(&big, m.bit[i]);
            int anti = l == 1 || (l == 2 && (c.f[GEO_RO] / 3) % 2) ||
                       (l == 3 && (c.f[GEO_CO] / 3) % 2);
            wrong += m.kind[i] != (anti ? FAULT_DD0 : FAULT_DD1);
            dd0 += m.kind[i] == FAULT_DD0;
        }
        CU_ASSERT_EQUAL(wrong, 0);
        if (l == 0) CU_ASSERT_EQUAL(dd0, 0);
        if (l == 1) CU_ASSERT_EQUAL(dd0, m.n);
        if (l >= 2) CU_ASSERT(dd0 > m.n / 4 && dd0 < 3 * m.n / 4);
    }
    /* data_dependent false: latency failures flip, retention stays DD */
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%sdata_dependent: false\n", stat_yaml);
    dram_error_params p = params(yaml);
    double act[DK_COUNT] = {1.2, 11.2, 7.9, 32, 64, 45, 0};
    double ret[DK_COUNT] = {1.2, 13.3, 13.3, 32, 1300, 70, 0};
    CU_ASSERT(faults_of(&p, act, 0, &big, &m) > 1000);
    size_t flips = 0;
    for (size_t i = 0; i < m.n; i++) flips += m.kind[i] == FAULT_FLIP;
    CU_ASSERT_EQUAL(flips, m.n);
    CU_ASSERT(faults_of(&p, ret, 0, &big, &m) > 100);
    for (size_t i = 0; i < m.n; i++) CU_ASSERT(m.kind[i] == FAULT_DD1);
    fmap_free(&m);
}

/* ---- time: VRT windows and transient reads -------------------------------------------------- */

static void test_vrt_follows_the_time_window(void) {
    const char *yaml =
        "retention: {t_min_ms: 256, t_ref_ms: 2048, ber_ref: 1e-4, beta: 6, temp_ref: 70,\n"
        "            k10: 1.22}\n"
        "vrt: {fraction: 0.2, ratio: 3, dwell_s: 100, duty: 0.5}\n";
    dram_error_params p = params(yaml);
    geometry g = test_geo();
    device_region big = whole(&g);
    double op[DK_COUNT] = {1.2, 13.3, 13.3, 32, 1500, 70, 0};
    fmap w0, w0b, w1, mild;
    fmap_init(&w0, 0);
    fmap_init(&w0b, 0);
    fmap_init(&w1, 0);
    fmap_init(&mild, 0);
    CU_ASSERT(faults_of(&p, op, 0, &big, &w0) > 5000);
    op[DK_TIME] = 99.5;  /* same window */
    faults_of(&p, op, 0, &big, &w0b);
    CU_ASSERT(same_map(&w0, &w0b));
    op[DK_TIME] = 100;   /* the next window: other cells in their low state */
    faults_of(&p, op, 0, &big, &w1);
    CU_ASSERT(!same_map(&w0, &w1));
    CU_ASSERT(!subset(&w0, &w1, 1) && !subset(&w1, &w0, 1));
    /* cells without VRT fail in every window */
    dram_error_params no_vrt = p;
    no_vrt.vrt_fraction = 0;
    CU_ASSERT(faults_of(&no_vrt, op, 0, &big, &mild) > 100);
    CU_ASSERT(subset(&mild, &w0, 1) && subset(&mild, &w1, 1));
    /* nested across the refresh window at a fixed time */
    op[DK_TREFW] = 1300;
    faults_of(&p, op, 0, &big, &mild);
    CU_ASSERT(mild.n > 1000);
    CU_ASSERT(subset(&mild, &w1, 1));
    /* the window's count is near the expectation (states averaged) */
    op[DK_TREFW] = 1500;
    double e = dram_errors_expected_fail(&p, op, 0);
    CU_ASSERT(within((double)w1.n, (double)(big.rows * big.cols), e, 0, 5));
    fmap_free(&w0);
    fmap_free(&w0b);
    fmap_free(&w1);
    fmap_free(&mild);
}

static void test_transients_change_per_read(void) {
    const char *yaml =
        "activation: {bulk_mu: 8.3, bulk_sigma: 0.62, guard: 13.3, v_threshold: 0.97,\n"
        "             alpha: 0.08}\n"
        "transient: {band: 2, p_read: 0.3}\n";
    dram_error_params p = params(yaml), fixed = p, all = p;
    fixed.transient_p_read = 0;  /* only the cells below w G */
    all.transient_p_read = 1;    /* every cell of the band */
    geometry g = test_geo();
    device_region big = whole(&g);
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 10.5);
    fmap read[3], stat, band, mild;
    fmap_init(&stat, 0);
    fmap_init(&band, 0);
    fmap_init(&mild, 0);
    size_t n_stat = faults_of(&fixed, op, 0, &big, &stat);
    CU_ASSERT(n_stat > 2000);
    for (int t = 0; t < 3; t++) {
        fmap_init(&read[t], 0);
        op[DK_TIME] = t;
        faults_of(&p, op, 0, &big, &read[t]);
        faults_of(&all, op, 0, &big, &band);
        CU_ASSERT(subset(&stat, &read[t], 1));
        CU_ASSERT(subset(&read[t], &band, 1));
        /* the band adds (band - 1) * p_read of the static faults per read
         * (the band's own count is random too: variance 0.3 n more) */
        CU_ASSERT(within((double)(read[t].n - n_stat), (double)n_stat, 0.3, 0.3 * n_stat, 5));
        /* each read is nested across tRCD */
        op[DK_TRCD] = 10.8;
        faults_of(&p, op, 0, &big, &mild);
        CU_ASSERT(mild.n > 100 && subset(&mild, &read[t], 1));
        op[DK_TRCD] = 10.5;
    }
    CU_ASSERT(!same_map(&read[0], &read[1]) && !same_map(&read[1], &read[2]));
    for (int t = 0; t < 3; t++) fmap_free(&read[t]);
    fmap_free(&stat);
    fmap_free(&band);
    fmap_free(&mild);
}

/* ---- cost ------------------------------------------------------------------------------ */

static void test_work_is_proportional_to_faults(void) {
    dram_error_params p = params(stat_yaml);
    p.transient_band = 1.5;
    p.transient_p_read = 0.3;
    geometry g = test_geo();
    device_region regions[2] = {whole(&g), {1, 100, 1000, 123457, 200, &g}};
    const double trcd[] = {13.3, 12, 11.5, 11, 10.5};
    fmap m;
    fmap_init(&m, 0);
    apx_error err;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 5; i++) {
            double op[DK_COUNT];
            op_with(op, DK_TRCD, trcd[i]);
            dram_errors_stats st;
            CU_ASSERT_EQUAL(dram_errors_faults_stats(&p, op, 1, 0, &regions[r], &m, &st, &err),
                            APX_OK);
            /* A 1 KiB block sees one column class, so the band makes ~1.1
             * candidates per fault (bound 4); the second region fills 125 of
             * every 200 bytes, so more there (the draws also list the bytes
             * between its rows). */
            CU_ASSERT(st.candidates <= (r ? 8 : 4) * m.n + 4 * st.draws);
            if (i == 0) CU_ASSERT(st.candidates == 0 && st.draws == 0);
            if (r == 0) CU_ASSERT_EQUAL(st.blocks, 2048);  /* 2 MiB of 1 KiB blocks */
            if (r == 0 && i == 4) CU_ASSERT(m.n > 10000);
        }
    /* rows far apart: one block per row, not per block of the span */
    device_region sparse = {2, 10, 64, 4096 * 3 + 17, 65536 * 3, &g};
    dram_errors_stats st;
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 10.5);
    CU_ASSERT_EQUAL(dram_errors_faults_stats(&p, op, 1, 0, &sparse, &m, &st, &err), APX_OK);
    CU_ASSERT_EQUAL(st.blocks, 10);
    fmap_free(&m);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void expect_yaml_error(const char *yaml, const char *fragment) {
    dram_error_params p;
    apx_error err = {0};
    CU_ASSERT_EQUAL(parse_params(yaml, &p, &err), APX_EINPUT);
    if (!strstr(err.msg, fragment)) fprintf(stderr, "\nunexpected: %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, fragment));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "errors.yaml:"));
}

static void test_yaml_errors(void) {
    expect_yaml_error("sigma_chp: 0.1\n", "did you mean 'sigma_chip'");
    expect_yaml_error("activation: {bulk_mean: 8, bulk_sigma: 1, guard: 13, v_threshold: 0.9, "
                      "alpha: 1}\n",
                      "did you mean 'bulk_mu'");
    expect_yaml_error("activation: {bulk_mu: 8, bulk_sigma: 0, guard: 13, v_threshold: 0.9, "
                      "alpha: 1}\n",
                      "errors.yaml:1:38: 'bulk_sigma' must be greater than 0");
    expect_yaml_error("activation: {bulk_mu: 8, bulk_sigma: 1, guard: 13, v_threshold: 1.2, "
                      "alpha: 1}\n",
                      "below the nominal VDD");
    expect_yaml_error("activation: {bulk_mu: 8, bulk_sigma: 1, guard: 13, v_threshold: 0.9}\n",
                      "missing required key 'alpha'");
    expect_yaml_error("activation: {bulk_mu: 8, bulk_sigma: 1, weak_fraction: 0.1, guard: 13, "
                      "v_threshold: 0.9, alpha: 1}\n",
                      "missing required key 'weak_mu'");
    expect_yaml_error("spatial: {column_period: 15}\n", "must be even");
    expect_yaml_error("spatial: {column_period: 16, column_phase: 16}\n", "column_phase");
    expect_yaml_error("spatial: {subarray_rows: 64, edge_rows: 65}\n", "edge_rows");
    expect_yaml_error("spatial: {weak_bitline_fraction: 1.5}\n", "weak_bitline_fraction");
    expect_yaml_error("vrt: {fraction: 0.1, ratio: 2, dwell_s: 10, duty: 0.5}\n",
                      "needs a 'retention' section");
    expect_yaml_error("transient: {band: 2, p_read: 0.1}\n", "need an 'activation'");
    expect_yaml_error("retention: {t_min_ms: 256, t_ref_ms: 2048, ber_ref: 2, beta: 6, "
                      "temp_ref: 70, k10: 1.2}\n",
                      "ber_ref");
    expect_yaml_error("layout: stripes\n", "must be one of true_cells");
    expect_yaml_error("data_dependent: maybe\n", "data_dependent");
    expect_yaml_error("- 1\n- 2\n", "mapping");
}

static void test_bad_regions_and_points(void) {
    dram_error_params p = params(full_yaml);
    geometry g = test_geo();
    fmap m;
    fmap_init(&m, 0);
    apx_error err;
    double op[DK_COUNT];
    op_with(op, DK_TRCD, 11);
    device_region r = {0, 10, 100, 0, 8, &g};  /* rows of 13 bytes, 8 apart */
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "row stride"));
    r = (device_region){0, 2, 100, 2 * 1024 * 1024 - 20, 16, &g};  /* past the end */
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "does not fit"));
    r = (device_region){0, UINT64_MAX / 2, 100, 0, 16, &g};
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_EINPUT);
    r = (device_region){0, 2, 100, 0, 16, NULL};
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(m.n, 0);
    /* an empty region is fine and empty */
    r = (device_region){0, 0, 100, 0, 16, &g};
    CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_OK);
    CU_ASSERT_EQUAL(m.n, 0);
    /* points: each knob out of range, with and without a position */
    const struct { int knob; double v; const char *what; } bad[] = {
        {DK_VDD, 0.97, "vdd"},       {DK_VDD, 1.81, "vdd"},   {DK_VDD, NAN, "vdd"},
        {DK_TRCD, 0, "trcd"},        {DK_TRP, -1, "trp"},     {DK_TRAS, 2e6, "tras"},
        {DK_TREFW, 0, "trefw"},      {DK_TREFW, 1e8, "trefw"}, {DK_TEMP, -41, "temperature"},
        {DK_TEMP, 126, "temperature"}, {DK_TIME, -1, "time_s"}, {DK_TIME, INFINITY, "time_s"},
    };
    cfg_doc *doc = cfg_load_string("point: here\n", 12, "sweep.yaml", &err);
    const cfg_node *at = cfg_find(cfg_root(doc), "point");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        op_with(op, bad[i].knob, bad[i].v);
        CU_ASSERT_EQUAL(dram_errors_check_point(&p, op, NULL, &err), APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].what));
        CU_ASSERT_EQUAL(dram_errors_check_point(&p, op, at, &err), APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "sweep.yaml:1:8:"));
        r = whole(&g);
        CU_ASSERT_EQUAL(dram_errors_faults(&p, op, 1, 0, &r, &m, &err), APX_EINPUT);
    }
    op_with(op, DK_VDD, 0.98);  /* just above the activation threshold */
    CU_ASSERT_EQUAL(dram_errors_check_point(&p, op, NULL, &err), APX_OK);
    cfg_free(doc);
    fmap_free(&m);
}

/* ---- the device ---------------------------------------------------------------------------- */

static void test_device_from_the_shipped_config(void) {
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(APXSIM_SOURCE_ROOT "/configs/devices/ddr4-2400-8gb-x8.yaml",
                                 &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    device *d = NULL;
    int rc = device_create(cfg_root(doc), &d, &err);
    if (rc) fprintf(stderr, "\n%s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_STRING_EQUAL(d->ops->kind, "dram");
    CU_ASSERT_EQUAL(device_knob_count(d->ops), DK_COUNT);
    CU_ASSERT_STRING_EQUAL(d->ops->knobs[DK_TREFW], "trefw");
    double op[DK_COUNT];
    for (int k = 0; k < DK_COUNT; k++) CU_ASSERT_EQUAL(d->ops->knob_default(d, k, &op[k]), 1);
    CU_ASSERT_EQUAL(d->ops->knob_default(d, DK_COUNT, &op[0]), 0);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_VDD], 1.2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TRCD], 13.328, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TRP], 13.328, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TRAS], 32.487, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TREFW], 64, 0);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TEMP], 55, 0);
    CU_ASSERT_DOUBLE_EQUAL(op[DK_TIME], 0, 0);
    CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_OK);
    /* weights of a 784-2048 layer at byte 0 of the default geometry */
    geometry g;
    geometry_default(&g);
    device_region w = {0, 2048, 784, 0, 13 * 8, &g};
    fmap m;
    fmap_init(&m, 0);
    for (uint32_t chip = 0; chip < 20; chip++) {
        CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, chip, &w, &m, &err), APX_OK);
        CU_ASSERT_EQUAL(m.n, 0);
    }
    op[DK_TRCD] = 10;  /* observed BER ~1e-3: P(fail) ~2e-3 for a median chip */
    CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, 0, &w, &m, &err), APX_OK);
    CU_ASSERT(m.n > 10 && m.n < 50000);
    op[DK_TRCD] = 13.328;
    op[DK_VDD] = 0.96;   /* below the sensing threshold */
    CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_EINPUT);
    /* a 1 ms refresh window makes tREFI (122 ns) shorter than 2 tRFC */
    op[DK_VDD] = 1.2;
    op[DK_TREFW] = 1;
    CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "the point's timing"));
    op[DK_TREFW] = 5000;  /* long windows are fine */
    CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_OK);
    device_destroy(d);
    cfg_free(doc);
    fmap_free(&m);
}

/* The cost op is dram_cost_of with the op's vdd, trcd, trp, tras and trefw
 * in that order, the same for every chip (it has no chip). */
static void test_device_cost(void) {
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(APXSIM_SOURCE_ROOT "/configs/devices/ddr4-2400-8gb-x8.yaml",
                                 &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    device *d = NULL;
    CU_ASSERT_EQUAL_FATAL(device_create(cfg_root(doc), &d, &err), APX_OK);
    dram_timing t;
    dram_power pw;
    CU_ASSERT_EQUAL_FATAL(dram_timing_from_yaml(cfg_find(cfg_root(doc), "timing"), &t, &err),
                          APX_OK);
    CU_ASSERT_EQUAL_FATAL(dram_power_from_yaml(cfg_find(cfg_root(doc), "power"), &pw, &err),
                          APX_OK);
    geometry g;
    geometry_default(&g);
    device_region w[2] = {{0, 2048, 784, 0, 13 * 8, &g}, {1, 2048, 2048, 2048 * 104, 256, &g}};
    double op[DK_COUNT] = {1.1, 10, 12, 30, 128, 55, 0};
    device_cost via_device, direct, swapped;
    CU_ASSERT_EQUAL(d->ops->cost(d, op, w, 2, 4, &via_device, &err), APX_OK);
    CU_ASSERT_EQUAL(dram_cost_of(&pw, &t, 1.1, 10, 12, 30, 128, w, 2, 4, &direct, &err), APX_OK);
    CU_ASSERT(via_device.energy_pj > 0 && via_device.latency_ns > 0);
    CU_ASSERT_DOUBLE_EQUAL(via_device.energy_pj, direct.energy_pj, 0);
    CU_ASSERT_DOUBLE_EQUAL(via_device.latency_ns, direct.latency_ns, 0);
    CU_ASSERT_EQUAL(via_device.n_items, direct.n_items);
    /* a run with other knobs in those places is another cost, so the
     * equality above pins the order */
    CU_ASSERT_EQUAL(dram_cost_of(&pw, &t, 1.2, 12, 10, 30, 64, w, 2, 4, &swapped, &err), APX_OK);
    CU_ASSERT(swapped.energy_pj != direct.energy_pj);
    /* the error knobs (temperature, time) do not change the cost */
    op[DK_TEMP] = 85;
    op[DK_TIME] = 1e4;
    CU_ASSERT_EQUAL(d->ops->cost(d, op, w, 2, 4, &swapped, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(swapped.energy_pj, direct.energy_pj, 0);
    device_destroy(d);
    cfg_free(doc);
}

static void expect_device_error(const char *yaml, const char *fragment) {
    apx_error err = {0};
    cfg_doc *doc = cfg_load_string(yaml, strlen(yaml), "dev.yaml", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    device *d = NULL;
    CU_ASSERT_EQUAL(device_create(cfg_root(doc), &d, &err), APX_EINPUT);
    CU_ASSERT_PTR_NULL(d);
    if (!strstr(err.msg, fragment)) fprintf(stderr, "\nunexpected: %s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, fragment));
    cfg_free(doc);
}

static void test_device_yaml_errors(void) {
    expect_device_error("kind: dram\npower: {vdd: 1.2}\n", "missing 'timing'");
    expect_device_error("kind: dram\ntiming: {trcd: 13, trp: 13, tras: 32}\n",
                        "missing 'power'");
    expect_device_error("kind: dram\nerrorz: {}\n", "did you mean 'errors'");
    expect_device_error("kind: dram\nnominal_temperature: 200\n"
                        "timing: {trcd: 13, trp: 13, tras: 32}\npower: {vdd: 1.2}\n",
                        "dev.yaml:2:22: 'nominal_temperature'");
    expect_device_error("kind: dram\ntiming: {trcd: 13, trp: 13, tras: 32}\npower: {vdd: 1.2}\n",
                        "dev.yaml:2:9:");  /* the timing section is incomplete */
}

void add_dram_suite(void) {
    TEST_SUITE("dram",
               {"nested along every knob", test_nested_along_every_knob},
               {"nested with flips", test_nested_with_flips},
               {"deterministic and independent of other regions",
                test_deterministic_and_independent},
               {"zero at the nominal point and up to t_min", test_zero_at_nominal},
               {"fail fraction matches the expectation", test_fail_fraction_matches_expectation},
               {"fail fraction with weak bitlines", test_fail_fraction_with_weak_bitlines},
               {"line fraction matches the expectation", test_line_fraction_matches_expectation},
               {"column and row structure", test_column_and_row_structure},
               {"weak lines cluster", test_weak_lines_cluster},
               {"kinds follow the layout", test_kinds_follow_the_layout},
               {"VRT follows the time window", test_vrt_follows_the_time_window},
               {"transients change per read", test_transients_change_per_read},
               {"work is proportional to faults", test_work_is_proportional_to_faults},
               {"YAML errors", test_yaml_errors},
               {"bad regions and points", test_bad_regions_and_points},
               {"device from the shipped config", test_device_from_the_shipped_config},
               {"device cost", test_device_cost},
               {"device YAML errors", test_device_yaml_errors});
}
