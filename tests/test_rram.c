/* test_rram.c - the RRAM device: closed forms, nesting, determinism, rates,
 * stuck-at cells, cost, configs and errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../models/device.h"
#include "../models/rram/rram.h"
#include "../sim/rng.h"
#include "../sim/sweep.h"
#include "tests.h"

#define DEV_1T1R APXSIM_SOURCE_ROOT "/configs/devices/rram-1t1r.yaml"
#define DEV_2T2R APXSIM_SOURCE_ROOT "/configs/devices/rram-hfo2-2t2r.yaml"

static const char *const config_paths[] = {DEV_1T1R, DEV_2T2R};

/* ---- helpers ---------------------------------------------------------------- */

static void load_params(const char *path, rram_params *p) {
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(path, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    uint64_t hash;
    int rc = rram_params_from_yaml(cfg_root(doc), p, &hash, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    cfg_free(doc);
}

/* A device from YAML text (NULL and the message in err on failure). */
static device *make_device(const char *yaml, apx_error *err) {
    cfg_doc *doc = cfg_load_string(yaml, strlen(yaml), "rram-test.yaml", err);
    if (!doc) return NULL;
    device *d = NULL;
    if (device_create(cfg_root(doc), &d, err)) d = NULL;
    cfg_free(doc);
    return d;
}

/* A device on one of the shipped configs, with extra keys beside `base`. */
static device *config_device(const char *path, const char *extra) {
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\n%s", path, extra ? extra : "");
    apx_error err = {0};
    device *d = make_device(yaml, &err);
    if (!d) fprintf(stderr, "%s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

/* The arrays of the sweep configs: 1024 subarrays of 128 x 128 cells. */
static geometry rram_geometry(void) {
    geometry g = {.count = {1, 1, 1, 1024, 128, 2}, .bus_bits = 64, .mapping = "BaRoCo"};
    apx_error err;
    CU_ASSERT_EQUAL(geometry_init(&g, &err), APX_OK);
    return g;
}

static device_region region_at(uint32_t id, uint64_t rows, uint64_t cols, uint64_t base,
                               const geometry *g) {
    uint64_t stride = (cols + 63) / 64 * 8;
    return (device_region){id, rows, cols, base, stride, g};
}

static void point(double *op, double energy, double time_s) {
    op[RK_ENERGY] = energy;
    op[RK_PULSE] = 10;
    op[RK_TIME] = time_s;
    op[RK_CYCLES] = 0;
    op[RK_READS] = 0;
    op[RK_VREAD] = 0.4;
}

static void faults_of(const device *d, const double *op, uint64_t seed, uint32_t chip,
                      const device_region *r, fmap *m) {
    apx_error err = {0};
    int rc = d->ops->faults(d, op, seed, chip, r, m, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    CU_ASSERT_EQUAL(fmap_check(m, &err), APX_OK);
}

/* The bits of a stored value a fault kind breaks: 1 = a stored 1, 2 = a
 * stored 0 (stuck-at kinds as the value they break). */
static unsigned breaks(uint8_t kind) {
    switch (kind) {
    case FAULT_FLIP: return 3;
    case FAULT_DD1: return 1;
    case FAULT_DD0: return 2;
    case FAULT_STUCK0: return 1;
    case FAULT_STUCK1: return 2;
    }
    return 0;
}

/* Whether every fault of a is in b, breaking at least what it breaks in a
 * (stuck-at cells the same kind in both). */
static int nested_in(const fmap *a, const fmap *b) {
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->bit[j] < a->bit[i]) j++;
        if (j == b->n || b->bit[j] != a->bit[i]) return 0;
        int stuck_a = a->kind[i] == FAULT_STUCK0 || a->kind[i] == FAULT_STUCK1;
        if (stuck_a && b->kind[j] != a->kind[i]) return 0;
        if ((breaks(a->kind[i]) & ~breaks(b->kind[j])) != 0) return 0;
    }
    return 1;
}

static int same_map(const fmap *a, const fmap *b) {
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->bit[i] != b->bit[i] || a->kind[i] != b->kind[i]) return 0;
    return 1;
}

static size_t count_kind(const fmap *m, uint8_t kind) {
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) n += m->kind[i] == kind;
    return n;
}

/* |observed - expected| within 5 binomial standard deviations. */
static int binomial_ok(double observed, double n, double p) {
    double sd = sqrt(n * p * (1 - p));
    return fabs(observed - n * p) <= 5 * sd + 1;
}

/* ---- closed forms -------------------------------------------------------------- */

/* The currents of a config's conditions plus a grid from 0.5 uA to 2 mA. */
static size_t test_currents(double *out) {
    size_t n = 0;
    for (int c = 0; c < 2; c++) {
        rram_params p;
        load_params(config_paths[c], &p);
        for (size_t i = 0; i < p.n_conditions; i++)
            out[n++] = rram_current_ua(&p, p.condition_energy_pj[i], p.pulse_ns);
    }
    for (int i = 0; i <= 60; i++) out[n++] = 0.5 * pow(4000.0, i / 60.0);
    return n;
}

static void test_2t2r_below_1t1r(void) {
    static const double times[] = {0, 1, 3600, 86400, 2.6e6, 31536000};
    static const double cycles[] = {0, 1e3, 1e6, 1e9};
    double currents[128];
    size_t n_currents = test_currents(currents);
    size_t compared = 0;
    for (int c = 0; c < 2; c++) {
        rram_params one, two;
        load_params(config_paths[c], &one);
        two = one;
        one.cell = RRAM_1T1R;
        two.cell = RRAM_2T2R;
        for (size_t i = 0; i < n_currents; i++)
            for (size_t t = 0; t < sizeof times / sizeof *times; t++)
                for (size_t k = 0; k < sizeof cycles / sizeof *cycles; k++) {
                    rram_rates r1, r2;
                    if (rram_rates_at_current(&one, currents[i], times[t], cycles[k], 0, 0.4,
                                              &r1))
                        continue;  /* outside the model for 1T1R */
                    /* wherever 1T1R holds, the pair's window is open too */
                    CU_ASSERT_EQUAL(rram_rates_at_current(&two, currents[i], times[t],
                                                          cycles[k], 0, 0.4, &r2), 0);
                    /* Exact at time 0 (the balanced reference: hypot(sL, sH) <
                     * sL + sH); after relaxation checked for these parameters
                     * wherever 1T1R is not useless (BER below 40 %). */
                    if (times[t] > 0 && r1.ber >= 0.4) continue;
                    if (!(r2.ber < r1.ber))
                        fprintf(stderr, "I=%g t=%g c=%g: 2T2R %g >= 1T1R %g\n", currents[i],
                                times[t], cycles[k], r2.ber, r1.ber);
                    CU_ASSERT(r2.ber < r1.ber);
                    /* and by the margin the spreads give: (sL + sH) / hypot(sL, sH)
                     * = 1.34 for sigma_hrs = 2 sigma_lrs */
                    if (times[t] == 0) CU_ASSERT(r2.margin10 > 1.3 * r1.margin10);
                    compared++;
                }
    }
    CU_ASSERT(compared > 2000);
}

/* BER falls with programming energy and grows with time, wear, reads and
 * read voltage; so does each direction's rate (what nesting needs). */
static void check_harsher(const rram_params *p, const double *mild, const double *harsh) {
    rram_rates a, b;
    if (rram_rates_at(p, harsh, &b)) return;  /* harsher point outside the model */
    CU_ASSERT_EQUAL_FATAL(rram_rates_at(p, mild, &a), 0);
    if (!(b.ber > a.ber))
        fprintf(stderr, "E %g/%g t %g/%g c %g/%g n %g/%g v %g/%g: %.17g %.17g\n", mild[0], harsh[0],
                mild[2], harsh[2], mild[3], harsh[3], mild[4], harsh[4], mild[5], harsh[5], a.ber,
                b.ber);
    CU_ASSERT(b.ber > a.ber);
    CU_ASSERT(b.p10 >= a.p10 && b.p01 >= a.p01);
    CU_ASSERT(b.disturb10 >= a.disturb10 && b.disturb01 >= a.disturb01);
}

static void test_ber_monotone(void) {
    for (int c = 0; c < 2; c++) {
        rram_params p;
        load_params(config_paths[c], &p);
        p.disturb_per_read = 1e-9;  /* switch read disturb on to test it too */
        double mild[RK_COUNT], harsh[RK_COUNT];
        for (int t = 0; t < 3; t++) {
            double time_s = t == 0 ? 0 : t == 1 ? 3600 : 3.15e7;
            for (int i = 0; i < 80; i++) {  /* energy: 20 pJ down to 0.01 pJ */
                point(mild, 20 * pow(0.5e-3, i / 80.0), time_s);
                point(harsh, 20 * pow(0.5e-3, (i + 1) / 80.0), time_s);
                check_harsher(&p, mild, harsh);
            }
        }
        for (size_t i = 0; i < p.n_conditions; i++) {
            double e = p.condition_energy_pj[i];
            for (int k = 0; k < 40; k++) {  /* time: 0, then 1 ms .. 30 years */
                point(mild, e, k == 0 ? 0 : 1e-3 * pow(10, (k - 1) * 0.3));
                point(harsh, e, 1e-3 * pow(10, k * 0.3));
                check_harsher(&p, mild, harsh);
            }
            for (int k = 0; k < 12; k++) {  /* cycles: 0, 10 .. 1e12 */
                point(mild, e, 0);
                point(harsh, e, 0);
                mild[RK_CYCLES] = k == 0 ? 0 : pow(10, k);
                harsh[RK_CYCLES] = pow(10, k + 1);
                check_harsher(&p, mild, harsh);
            }
            for (int k = 0; k < 8; k++) {  /* reads (below saturation) and read voltage */
                point(mild, e, 0);
                point(harsh, e, 0);
                mild[RK_READS] = k == 0 ? 0 : pow(10, k);
                harsh[RK_READS] = pow(10, k + 1);
                check_harsher(&p, mild, harsh);
                mild[RK_READS] = harsh[RK_READS];
                mild[RK_VREAD] = 0.3 + 0.02 * k;
                harsh[RK_VREAD] = 0.32 + 0.02 * k;
                check_harsher(&p, mild, harsh);
            }
        }
    }
}

/* The 2T2R formula at time 0: Phi(-(mu_H - mu_L) / hypot(sL, sH)), and the
 * 1T1R one Phi(-gap / (sL + sH)) with the balanced reference, from the
 * configured values directly. */
static void test_closed_form_values(void) {
    rram_params p;
    load_params(DEV_1T1R, &p);
    double gap = log(p.r_hrs_ohm / p.r_lrs_ohm);
    rram_rates r;
    CU_ASSERT_EQUAL(rram_rates_at_current(&p, p.i_ref_ua, 0, 0, 0, p.v_read, &r), 0);
    double want1 = 0.5 * erfc(gap / (p.sigma_lrs + p.sigma_hrs) / sqrt(2));
    CU_ASSERT_DOUBLE_EQUAL(r.p10, want1, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r.p01, want1, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(r.ber, want1, 1e-12);
    p.cell = RRAM_2T2R;
    CU_ASSERT_EQUAL(rram_rates_at_current(&p, p.i_ref_ua, 0, 0, 0, p.v_read, &r), 0);
    double want2 = 0.5 * erfc(gap / hypot(p.sigma_lrs, p.sigma_hrs) / sqrt(2));
    CU_ASSERT_DOUBLE_EQUAL(r.ber, want2, 1e-15);
    /* The LRS follows R ~ I^-1: at 10x the current the window is ln 10 wider. */
    CU_ASSERT_EQUAL(rram_rates_at_current(&p, 10 * p.i_ref_ua, 0, 0, 0, p.v_read, &r), 0);
    CU_ASSERT_DOUBLE_EQUAL(r.ber, 0.5 * erfc((gap + log(10)) / hypot(p.sigma_lrs, p.sigma_hrs) /
                                             sqrt(2)),
                           1e-15);
    /* energy <-> current: E = n_dev v_prog I t */
    CU_ASSERT_DOUBLE_EQUAL(rram_current_ua(&p, 1.2, 10), 30.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(rram_energy_pj(&p, 30.0, 10), 1.2, 1e-12);
    /* drift moves both medians toward each other by a power law in 1 + t/t0 */
    rram_states s0, s1;
    rram_states_at(&p, 30, 0, 0, &s0);
    rram_states_at(&p, 30, 99 * p.t0_s, 0, &s1);
    CU_ASSERT_DOUBLE_EQUAL(s1.mu_lrs - s0.mu_lrs, p.lrs_per_efold * log(100), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s0.mu_hrs - s1.mu_hrs, p.hrs_per_efold * log(100), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(s1.ln_ref, s0.ln_ref, 1e-12);  /* the reference stays */
    CU_ASSERT_DOUBLE_EQUAL(s1.sigma_hrs, hypot(s0.sigma_hrs, p.sigma_hrs_per_efold * log(100)),
                           1e-12);
    /* wear: per decade of cycles the window shrinks and the spreads grow */
    rram_states_at(&p, 30, 0, 999999, &s1);
    CU_ASSERT_DOUBLE_EQUAL(s1.mu_lrs - s0.mu_lrs, 6 * p.lrs_per_decade, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(s0.mu_hrs - s1.mu_hrs, 6 * p.hrs_per_decade, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(s1.sigma_lrs, s0.sigma_lrs * (1 + 6 * p.sigma_per_decade), 1e-9);
}

/* ---- configs ------------------------------------------------------------------------ */

/* Each `ber-X` condition gives BER X at time 0 (within 3 %); both configs
 * reach the 3.3 % ultra-low-power point and span 1e-6 .. 4e-2; the 1T1R
 * config puts 30x of energy between 1e-4 and 4e-2 (the calibration). */
static void test_conditions(void) {
    for (int c = 0; c < 2; c++) {
        rram_params p;
        load_params(config_paths[c], &p);
        CU_ASSERT_EQUAL(rram_condition(&p, "nominal"), 0);
        double lo = 1, hi = 0;
        int named = 0;
        for (size_t i = 0; i < p.n_conditions; i++) {
            rram_rates r;
            double op[RK_COUNT];
            point(op, p.condition_energy_pj[i], 0);
            CU_ASSERT_EQUAL(rram_rates_at(&p, op, &r), 0);
            lo = fmin(lo, r.ber);
            hi = fmax(hi, r.ber);
            if (strncmp(p.condition_name[i], "ber-", 4)) continue;
            double want = strtod(p.condition_name[i] + 4, NULL);
            if (fabs(r.ber - want) > 0.03 * want)
                fprintf(stderr, "%s: %s gives %g\n", config_paths[c], p.condition_name[i], r.ber);
            CU_ASSERT(fabs(r.ber - want) <= 0.03 * want);
            named++;
        }
        CU_ASSERT_EQUAL(named, 4);
        CU_ASSERT(rram_condition(&p, "ber-3.3e-2") > 0);
        CU_ASSERT(lo <= 1.03e-6);
        CU_ASSERT(hi >= 0.04 * 0.97);
    }
    rram_params p;
    load_params(DEV_1T1R, &p);
    double ratio = p.condition_energy_pj[rram_condition(&p, "ber-1e-4")] /
                   p.condition_energy_pj[rram_condition(&p, "ber-4e-2")];
    CU_ASSERT(fabs(ratio - 30) < 0.3);
}

/* The two device files describe the same devices: only cell and conditions
 * differ. */
static void test_configs_share_devices(void) {
    rram_params a, b;
    load_params(DEV_1T1R, &a);
    load_params(DEV_2T2R, &b);
    CU_ASSERT_EQUAL(a.cell, RRAM_1T1R);
    CU_ASSERT_EQUAL(b.cell, RRAM_2T2R);
    b.cell = a.cell;
    b.n_conditions = a.n_conditions;
    memcpy(b.condition_name, a.condition_name, sizeof a.condition_name);
    memcpy(b.condition_energy_pj, a.condition_energy_pj, sizeof a.condition_energy_pj);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
}

/* The sweep configs load (from the repository root, where their paths
 * point), run the rram device on the 2T2R file over time, and hold every
 * condition of that file among their energies. */
static void test_sweep_configs(void) {
    char cwd[4096];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(APXSIM_SOURCE_ROOT), 0);
    rram_params dev;
    load_params("configs/devices/rram-hfo2-2t2r.yaml", &dev);
    static const char *const sweeps[] = {"configs/sweeps/rram-fc.yaml",
                                         "configs/sweeps/rram-vgg3.yaml"};
    for (int s = 0; s < 2; s++) {
        sweep_plan plan;
        apx_error err = {0};
        int rc = sweep_plan_load(sweeps[s], &plan, &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
        CU_ASSERT_STRING_EQUAL(plan.dev->ops->kind, "rram");
        CU_ASSERT_EQUAL(plan.n_knobs, RK_COUNT);
        for (size_t i = 0; i < dev.n_conditions; i++) {
            int found = 0;
            for (size_t k = 0; k < plan.n_points; k++)
                found |= plan.points[k * RK_COUNT + RK_ENERGY] == dev.condition_energy_pj[i];
            CU_ASSERT(found);
        }
        double t_max = 0;
        for (size_t k = 0; k < plan.n_points; k++)
            t_max = fmax(t_max, plan.points[k * RK_COUNT + RK_TIME]);
        CU_ASSERT(t_max >= 86400);
        CU_ASSERT(plan.n_points * plan.chips <= 200);  /* a few minutes at most */
        sweep_plan_free(&plan);
    }
    CU_ASSERT_EQUAL(chdir(cwd), 0);
}

/* ---- faults --------------------------------------------------------------------- */

/* Weaker programming and longer times fail supersets, for both cells, with
 * stuck-at cells present at every point. */
static void test_nesting(void) {
    static const double energies[] = {3.65, 0.962, 0.16, 0.0854};
    static const double times[] = {0, 3600, 31536000};
    enum { NE = 4, NT = 3 };
    geometry g = rram_geometry();
    device_region r = region_at(2, 512, 1000, 4096, &g);
    for (int c = 0; c < 2; c++) {
        device *d = config_device(config_paths[c], "stuck: {sa0: 0.001, sa1: 0.002}\n");
        rram_params p;
        load_params(config_paths[c], &p);
        for (uint32_t chip = 0; chip < 2; chip++) {
            fmap m[NE][NT];
            for (int e = 0; e < NE; e++)
                for (int t = 0; t < NT; t++) {
                    double op[RK_COUNT];
                    /* the same current for both cells: 1T1R needs half the energy */
                    point(op, energies[e] / (c == 0 ? 2 : 1), times[t]);
                    fmap_init(&m[e][t], 0);
                    faults_of(d, op, 7, chip, &r, &m[e][t]);
                }
            for (int e = 0; e < NE; e++)
                for (int t = 0; t < NT; t++) {
                    if (e + 1 < NE) CU_ASSERT(nested_in(&m[e][t], &m[e + 1][t]));
                    if (t + 1 < NT) CU_ASSERT(nested_in(&m[e][t], &m[e][t + 1]));
                    /* the stuck-at cells are the same at every point */
                    CU_ASSERT_EQUAL(count_kind(&m[e][t], FAULT_STUCK0),
                                    count_kind(&m[0][0], FAULT_STUCK0));
                    CU_ASSERT_EQUAL(count_kind(&m[e][t], FAULT_STUCK1),
                                    count_kind(&m[0][0], FAULT_STUCK1));
                }
            /* the sweep really moves: far more faults at the harshest point */
            CU_ASSERT(m[NE - 1][NT - 1].n > 20 * m[0][0].n);
            /* 1T1R after relaxation: both directions apart (DD kinds) */
            if (c == 0) CU_ASSERT(count_kind(&m[2][2], FAULT_DD0) > 0);
            for (int e = 0; e < NE; e++)
                for (int t = 0; t < NT; t++) fmap_free(&m[e][t]);
        }
        device_destroy(d);
    }
}

/* A map is a function of its inputs alone; cells are named by address. */
static void test_determinism(void) {
    geometry g = rram_geometry();
    device *d = config_device(DEV_1T1R, "stuck: {sa0: 0.001, sa1: 0.001, bitline_fraction: 0.1, "
                                        "bitline_factor: 5}\n");
    double op[RK_COUNT];
    point(op, 0.2, 86400);
    device_region whole = region_at(0, 256, 1024, 0, &g);
    fmap a, b, other;
    fmap_init(&a, 0);
    fmap_init(&b, 0);
    fmap_init(&other, 0);
    faults_of(d, op, 3, 1, &whole, &a);
    CU_ASSERT(a.n > 1000);
    faults_of(d, op, 3, 2, &whole, &other);  /* another chip in between */
    CU_ASSERT(!same_map(&a, &other));
    faults_of(d, op, 4, 1, &whole, &other);  /* another seed */
    CU_ASSERT(!same_map(&a, &other));
    faults_of(d, op, 3, 1, &whole, &b);
    CU_ASSERT(same_map(&a, &b));
    /* The second half of the rows as a region of its own (another id, its own
     * base): the same cells, so the same faults, shifted. */
    device_region half = region_at(9, 128, 1024, 128 * whole.row_stride, &g);
    faults_of(d, op, 3, 1, &half, &b);
    size_t first = 0;
    while (first < a.n && a.bit[first] < 128 * 1024) first++;
    CU_ASSERT_EQUAL_FATAL(b.n, a.n - first);
    for (size_t i = 0; i < b.n; i++) {
        CU_ASSERT_EQUAL(b.bit[i] + 128 * 1024, a.bit[first + i]);
        CU_ASSERT_EQUAL(b.kind[i], a.kind[first + i]);
    }
    /* Padding between rows is never faulted: rows of 1000 used bits. */
    device_region padded = region_at(1, 256, 1000, 0, &g);
    faults_of(d, op, 3, 1, &padded, &b);
    size_t in_used = 0;
    for (size_t i = 0; i < a.n; i++) in_used += a.bit[i] % 1024 < 1000;
    CU_ASSERT_EQUAL(b.n, in_used);
    fmap_free(&a);
    fmap_free(&b);
    fmap_free(&other);
    device_destroy(d);
}

/* Fills words with random bits (a balanced image). */
static void random_words(uint64_t *w, size_t n, uint64_t seed) {
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 0, 0), 0, 0);
    for (size_t i = 0; i < n; i++) w[i] = rng_u64(&s);
}

/* Over a large region the fault counts per direction match the closed-form
 * rates, and the bits a balanced image loses match the BER. */
static void test_empirical_rates(void) {
    geometry g = rram_geometry();
    const uint64_t rows = 2048, cols = 4096, n = rows * cols;
    uint64_t *image = malloc(n / 8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(image);
    for (int c = 0; c < 2; c++) {
        device *d = config_device(config_paths[c], NULL);
        rram_params p;
        load_params(config_paths[c], &p);
        double op[RK_COUNT];
        point(op, 0.3 * rram_devices_per_bit(&p), 31536000);  /* 1T1R: p01 > p10 */
        rram_rates r;
        CU_ASSERT_EQUAL_FATAL(rram_rates_at(&p, op, &r), 0);
        device_region reg = region_at(0, rows, cols, 0, &g);
        fmap m;
        fmap_init(&m, 0);
        faults_of(d, op, 11, 0, &reg, &m);
        double fails1 = (double)(count_kind(&m, FAULT_DD1) + count_kind(&m, FAULT_FLIP));
        double fails0 = (double)(count_kind(&m, FAULT_DD0) + count_kind(&m, FAULT_FLIP));
        CU_ASSERT(binomial_ok(fails1, (double)n, r.p10));
        CU_ASSERT(binomial_ok(fails0, (double)n, r.p01));
        /* one quantile for both directions: flips are the cells below both */
        CU_ASSERT(binomial_ok((double)count_kind(&m, FAULT_FLIP), (double)n, fmin(r.p10, r.p01)));
        if (c == 0) CU_ASSERT(r.p01 > 1.2 * r.p10);
        random_words(image, n / 64, 5);
        fmap_layout where = {image, rows, cols, cols / 64};
        uint64_t changed = fmap_apply(&m, &where);
        /* each bit holds 0 or 1 with probability 1/2: P(change) = ber */
        CU_ASSERT(binomial_ok((double)changed, (double)n, r.ber));
        fmap_free(&m);
        device_destroy(d);
    }
    free(image);
}

/* Stuck-at cells read their stuck value whatever is written, at the
 * configured fractions, clustered along weak lines. */
static double dispersion(const unsigned *count, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += count[i], s2 += (double)count[i] * count[i];
    double mean = s / n;
    return (s2 / n - mean * mean) / mean;
}

static void stuck_lines(const fmap *m, const device_region *r, unsigned *bitlines,
                        unsigned *wordlines) {
    const geometry *g = r->geo;
    for (size_t i = 0; i < m->n; i++) {
        if (m->kind[i] != FAULT_STUCK0 && m->kind[i] != FAULT_STUCK1) continue;
        uint64_t row = m->bit[i] / r->cols, col = m->bit[i] % r->cols;
        cell c;
        apx_error err;
        CU_ASSERT_EQUAL(geometry_addr_to_cell(g, r->base_addr + row * r->row_stride + col / 8,
                                              (unsigned)(col % 8), &c, &err),
                        APX_OK);
        uint64_t line = c.f[GEO_CO] * g->bus_bits + c.bit;
        bitlines[c.f[GEO_BA] * 128 + line]++;
        wordlines[c.f[GEO_BA] * 128 + c.f[GEO_RO]]++;
    }
}

static void test_stuck_at(void) {
    geometry g = rram_geometry();
    const uint64_t rows = 1024, cols = 4096, n = rows * cols;  /* 256 subarrays */
    device_region reg = region_at(0, rows, cols, 0, &g);
    const char *kinds[] = {
        "stuck: {sa0: 0.01, sa1: 0.02}\n",
        "stuck: {sa0: 0.01, sa1: 0.02, bitline_fraction: 0.05, bitline_factor: 10,"
        " wordline_fraction: 0.05, wordline_factor: 6}\n"};
    uint64_t *zeros = malloc(n / 8), *ones = malloc(n / 8);
    unsigned *bl = calloc(256 * 128, sizeof *bl), *wl = calloc(256 * 128, sizeof *wl);
    CU_ASSERT_FATAL(zeros && ones && bl && wl);
    double disp_bl[2], disp_wl[2];
    for (int k = 0; k < 2; k++) {
        device *d = config_device(DEV_2T2R, kinds[k]);
        double op[RK_COUNT];
        point(op, 3.65, 0);  /* strong programming: nearly only stuck cells */
        fmap m;
        fmap_init(&m, 0);
        faults_of(d, op, 1, 0, &reg, &m);
        size_t s0 = count_kind(&m, FAULT_STUCK0), s1 = count_kind(&m, FAULT_STUCK1);
        if (k == 0) {  /* independent cells: binomial counts */
            CU_ASSERT(binomial_ok((double)s0, (double)n, 0.01));
            CU_ASSERT(binomial_ok((double)s1, (double)n, 0.02));
        } else {       /* clustered: the same mean, a wider spread */
            CU_ASSERT(fabs((double)s0 / n - 0.01) < 0.001);
            CU_ASSERT(fabs((double)s1 / n - 0.02) < 0.002);
        }
        memset(zeros, 0, n / 8);
        memset(ones, 0xff, n / 8);
        fmap_layout z = {zeros, rows, cols, cols / 64}, o = {ones, rows, cols, cols / 64};
        fmap_apply(&m, &z);
        fmap_apply(&m, &o);
        for (size_t i = 0; i < m.n; i++) {
            uint64_t b = m.bit[i], word = b / 64, mask = 1ull << (b % 64);
            if (m.kind[i] == FAULT_STUCK0) {
                CU_ASSERT(!(zeros[word] & mask));
                CU_ASSERT(!(ones[word] & mask));
            } else if (m.kind[i] == FAULT_STUCK1) {
                CU_ASSERT((zeros[word] & mask) != 0);
                CU_ASSERT((ones[word] & mask) != 0);
            }
        }
        memset(bl, 0, 256 * 128 * sizeof *bl);
        memset(wl, 0, 256 * 128 * sizeof *wl);
        stuck_lines(&m, &reg, bl, wl);
        disp_bl[k] = dispersion(bl, 256 * 128);
        disp_wl[k] = dispersion(wl, 256 * 128);
        fmap_free(&m);
        device_destroy(d);
    }
    /* Poisson without clustering (dispersion about 1), over-dispersed with it:
     * about 1 + 128 x 0.03 x var(line weight), some 8 and 4 here. */
    CU_ASSERT(disp_bl[0] < 1.2 && disp_wl[0] < 1.2);
    CU_ASSERT(disp_bl[1] > 2.5);
    CU_ASSERT(disp_wl[1] > 1.4);
    free(zeros);
    free(ones);
    free(bl);
    free(wl);
}

/* ---- cost ------------------------------------------------------------------------ */

static double cost_item(const device_cost *c, const char *name) {
    for (int i = 0; i < c->n_items; i++)
        if (!strcmp(c->item[i].name, name)) return c->item[i].value;
    CU_FAIL("cost item missing");
    return NAN;
}

static void test_cost(void) {
    geometry g = rram_geometry();
    /* two tensors, rows of 2 and 13 words: 64 x 2 + 10 x 13 = 258 bus words */
    device_region r[2] = {region_at(0, 64, 100, 0, &g), region_at(1, 10, 784, 64 * 16, &g)};
    device_cost c1, c2, c3;
    apx_error err = {0};
    double op[RK_COUNT];
    point(op, 0.6, 0);
    device *one = config_device(DEV_1T1R, NULL), *two = config_device(DEV_2T2R, NULL);
    CU_ASSERT_EQUAL_FATAL(one->ops->cost(one, op, r, 2, 1, &c1, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c1, "accesses"), 258, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c1, "bits_read"), 258 * 64, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(c1.energy_pj, 258 * 64 * 0.1, 1e-9);   /* NVSim 0.1 pJ per read */
    CU_ASSERT_DOUBLE_EQUAL(c1.latency_ns, 258 * 10.0, 1e-9);      /* NeuroSim 10 ns */
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c1, "program_energy_pj_per_bit"), 0.6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c1, "program_current_ua"), 30, 1e-9);
    rram_params p;
    load_params(DEV_1T1R, &p);
    rram_rates rates;
    rram_rates_at(&p, op, &rates);
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c1, "ber"), rates.ber, 1e-15);
    /* a pair reads two devices; batches share the read; energy ~ V^2 */
    op[RK_ENERGY] = 1.2;
    CU_ASSERT_EQUAL_FATAL(two->ops->cost(two, op, r, 2, 1, &c2, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(c2.energy_pj, 2 * c1.energy_pj, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c2, "program_current_ua"), 30, 1e-9);
    op[RK_VREAD] = 0.8;
    CU_ASSERT_EQUAL_FATAL(two->ops->cost(two, op, r, 2, 4, &c3, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(c3.energy_pj, c2.energy_pj * 4 / 4, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(c3.latency_ns, c2.latency_ns / 4, 1e-9);
    /* the regions' 64 x 100 + 10 x 784 weight bits programmed once */
    CU_ASSERT_DOUBLE_EQUAL(cost_item(&c3, "program_energy_pj_once"), 1.2 * (6400 + 7840), 1e-6);
    /* Read energy follows the states' mean conductance, V^2 G t: at twice the
     * reference current the LRS conducts twice as much. */
    rram_states s;
    rram_states_at(&p, p.i_ref_ua, 0, 0, &s);
    double gl = exp(-s.mu_lrs + s.sigma_lrs * s.sigma_lrs / 2);
    double gh = exp(-s.mu_hrs + s.sigma_hrs * s.sigma_hrs / 2);
    point(op, 1.2, 0);  /* 1T1R at 2 x i_ref */
    CU_ASSERT_DOUBLE_EQUAL(rram_read_energy_pj(&p, op), 0.1 * (2 * gl + gh) / (gl + gh), 1e-12);
    point(op, 0.0824, 0);  /* weak programming: a resistive LRS (R ~ 1/I), cheap reads */
    double k = 0.0824 / 0.6;
    CU_ASSERT_DOUBLE_EQUAL(rram_read_energy_pj(&p, op), 0.1 * (k * gl + gh) / (gl + gh), 1e-12);
    point(op, 0.6, 3.15e7);  /* relaxation raises the LRS: reads get cheaper */
    CU_ASSERT(rram_read_energy_pj(&p, op) < 0.1);
    /* a region outside the memory is refused */
    device_region far = region_at(0, 4, 64, geometry_bytes(&g) - 8, &g);
    CU_ASSERT_EQUAL(one->ops->cost(one, op, &far, 1, 1, &c3, &err), APX_EINPUT);
    device_region wide = region_at(0, 1, 64, 64, &g);  /* one row, a hostile stride */
    wide.row_stride = UINT64_MAX - 8;
    CU_ASSERT_EQUAL(one->ops->cost(one, op, &wide, 1, 1, &c3, &err), APX_EINPUT);
    device_destroy(one);
    device_destroy(two);
}

/* Knobs left out take the config's values; the label of the nominal point
 * is "nominal". */
static void test_knob_defaults(void) {
    device *d = config_device(DEV_2T2R, NULL);
    const device_ops *ops = d->ops;
    CU_ASSERT_EQUAL(device_knob_count(ops), RK_COUNT);
    double want[RK_COUNT] = {1.2, 10, 0, 0, 0, 0.4}, v;
    for (int k = 0; k < RK_COUNT; k++) {
        CU_ASSERT(ops->knob_default(d, k, &v));
        CU_ASSERT_DOUBLE_EQUAL(v, want[k], 1e-12);
    }
    CU_ASSERT(!ops->knob_default(d, RK_COUNT, &v));
    device_destroy(d);
}

/* ---- errors ---------------------------------------------------------------------- */

/* A device file with one line replaced, loaded through a base or directly. */
static void expect_device_error(const char *yaml, const char *want) {
    const char *path = test_write_file("rram-bad.yaml", yaml, strlen(yaml));
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(path, &err);
    device *d = NULL;
    int rc = doc ? device_create(cfg_root(doc), &d, &err) : err.code;
    if (rc != APX_EINPUT || !strstr(err.msg, want))
        fprintf(stderr, "want '%s', got %d '%s'\n", want, rc, err.msg);
    CU_ASSERT_EQUAL(rc, APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
    CU_ASSERT_PTR_NULL(d);
    cfg_free(doc);
}

static void test_yaml_errors(void) {
    char yaml[1024];
    expect_device_error("kind: rram\ncel: 2t2r\n", "rram-bad.yaml:2:1: unknown key 'cel'");
    expect_device_error("kind: rram\ncell: 3t3r\n", "rram-bad.yaml:2:");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nstates:\n  sigma_lrs: -1\n", DEV_2T2R);
    expect_device_error(yaml, "rram-bad.yaml:4:14:");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nstates: {sigma_lsr: 1}\n", DEV_2T2R);
    expect_device_error(yaml, "did you mean 'sigma_lrs'");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nstates: {r_hrs_ohm: 100}\n", DEV_2T2R);
    expect_device_error(yaml, "r_hrs_ohm (100) must be above");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nconditions: {strong: 3}\n", DEV_2T2R);
    expect_device_error(yaml, "rram-bad.yaml:3:13: conditions must name a 'nominal'");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nconditions: {nominal: -3}\n", DEV_2T2R);
    expect_device_error(yaml, "rram-bad.yaml:3:");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nconditions: {nominal: 1e-5}\n", DEV_2T2R);
    expect_device_error(yaml, "condition 'nominal' (1e-05 pJ per bit");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nstuck: {sa0: 0.6, sa1: 0.6}\n", DEV_2T2R);
    expect_device_error(yaml, "sa0 + stuck.sa1 = 1.2");
    snprintf(yaml, sizeof yaml,
             "kind: rram\nbase: %s\nstuck: {sa1: 0.2, bitline_fraction: 0.01, "
             "bitline_factor: 10}\n", DEV_2T2R);
    expect_device_error(yaml, "would exceed 1");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\nprogram: {pulse_ns: 5}\n", DEV_2T2R);
    expect_device_error(yaml, "pulse_ns (5) is below program.pulse_min_ns");
    expect_device_error("kind: rram\nbase: /nonexistent/rram.yaml\n", "rram-bad.yaml:2:7: base:");
    /* a base must be an rram file without a base of its own */
    const char *inner = test_write_file("rram-inner.yaml", "kind: uniform\n", 14);
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\n", inner);
    expect_device_error(yaml, "must be an rram device file");
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\n", DEV_2T2R);
    const char *outer = test_write_file("rram-outer.yaml", yaml, strlen(yaml));
    snprintf(yaml, sizeof yaml, "kind: rram\nbase: %s\n", outer);
    expect_device_error(yaml, "cannot name a base of its own");
    /* a device file missing a key without a default */
    char *text = test_slurp(DEV_2T2R, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *line = strstr(text, "  sigma_hrs:");
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    line[2] = '#';
    expect_device_error(text, "missing states.sigma_hrs");
    free(text);
}

static void test_point_errors(void) {
    device *d = config_device(DEV_1T1R, NULL);
    geometry g = rram_geometry();
    apx_error err = {0};
    double op[RK_COUNT];
    struct { int knob; double value; const char *want; } bad[] = {
        {RK_ENERGY, 0, "energy_pj = 0 is outside (0"},
        {RK_ENERGY, 1e-4, "read margin is not positive"},
        {RK_PULSE, 5, "shorter than the switching time"},
        {RK_TIME, -1, "time_s = -1"},
        {RK_TIME, NAN, "time_s = nan"},
        {RK_CYCLES, 1e16, "cycles = 1e+16"},
        {RK_READS, -1, "reads = -1"},
        {RK_VREAD, 0, "v_read = 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        point(op, 0.6, 0);
        op[bad[i].knob] = bad[i].value;
        CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_EINPUT);
        if (!strstr(err.msg, bad[i].want)) fprintf(stderr, "got '%s'\n", err.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].want));
    }
    point(op, 0.6, 0);
    CU_ASSERT_EQUAL(d->ops->check_point(d, op, NULL, &err), APX_OK);
    /* faults() refuses what check_point refuses, and regions it cannot place */
    fmap m;
    fmap_init(&m, 0);
    device_region r = region_at(0, 4, 64, 0, &g);
    op[RK_ENERGY] = 1e-4;
    CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, 0, &r, &m, &err), APX_EINPUT);
    op[RK_ENERGY] = 0.6;
    r.geo = NULL;
    CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, 0, &r, &m, &err), APX_EINPUT);
    r = region_at(0, 4, 64, geometry_bytes(&g) - 16, &g);
    CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, 0, &r, &m, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "does not fit"));
    r = region_at(0, 4, 640, 0, &g);
    r.row_stride = 8;
    CU_ASSERT_EQUAL(d->ops->faults(d, op, 1, 0, &r, &m, &err), APX_EINPUT);
    fmap_free(&m);
    device_destroy(d);
}

/* End to end: a sweep on the rram device stores accuracy, faults, energy,
 * latency and the cost items per point. */
static void test_sweep_end_to_end(void) {
    const char *data, *model;
    test_workload(&data, &model);
    const char *db = test_db_path("rram.db");
    char yaml[1024], out[4096];
    snprintf(yaml, sizeof yaml,
             "name: rram-e2e\nchips: 2\noutput: %s\n"
             "workload: {model: %s, data_dir: %s}\n"
             "device: {kind: rram, base: %s}\n"
             "operating_points: {energy_pj: [3.65, 0.0854], time_s: [0, 86400]}\n",
             db, model, data, DEV_2T2R);
    const char *cfg = test_write_file("rram-sweep.yaml", yaml, strlen(yaml));
    int rc = test_run(out, sizeof out, "%s sweep %s --threads 2 -o %s", APXSIM, cfg, db);
    if (rc) fprintf(stderr, "%s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out,
                             "sqlite3 %s \"SELECT count(*), count(energy_pj), count(latency_ns), "
                             "sum(faults_injected) > 100 FROM evaluations\"",
                             db),
                    0);
    CU_ASSERT_STRING_EQUAL(out, "8|8|8|1\n");
    CU_ASSERT_EQUAL(test_run(out, sizeof out,
                             "sqlite3 %s \"SELECT count(*) FROM eval_costs WHERE item = 'ber'\"",
                             db),
                    0);
    CU_ASSERT_STRING_EQUAL(out, "8\n");
}

void add_rram_suite(void) {
    TEST_SUITE("rram",
               {"2T2R BER below 1T1R at every condition", test_2t2r_below_1t1r},
               {"BER monotone in every knob", test_ber_monotone},
               {"closed forms", test_closed_form_values},
               {"conditions reach the literature's BERs", test_conditions},
               {"the two configs share their devices", test_configs_share_devices},
               {"sweep configs", test_sweep_configs},
               {"nesting over energy and time", test_nesting},
               {"determinism and placement by address", test_determinism},
               {"empirical rates match the closed form", test_empirical_rates},
               {"stuck-at cells and clustering", test_stuck_at},
               {"cost", test_cost},
               {"knob defaults", test_knob_defaults},
               {"YAML errors", test_yaml_errors},
               {"operating point and region errors", test_point_errors},
               {"sweep end to end", test_sweep_end_to_end});
}
