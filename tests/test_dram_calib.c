/* test_dram_calib.c - the shipped DDR3L vendor profiles
 * (configs/devices/ddr3l-vendor{A,B,C}.yaml) reproduce the public data they
 * were calibrated to (docs/dram-model.md, scripts/calibrate_dram.py).
 *
 * The test reads the data excerpt in tests/data/dram/ itself and computes
 * every statistic it compares from it (medians over DIMMs and modules,
 * onsets, the retention exponent and temperature factor), so a profile that
 * drifts from the data fails. What is proved, per vendor, with the C model
 * (dram_errors_expected_fail / _line_fraction on the shipped YAML):
 *   - zero: P(fail) is exactly 0 at nominal VDD and timing, for weak chips
 *     and at 20 and 70 C, and for refresh windows up to 256 ms;
 *   - Voltron: the onset VDD (the highest tested VDD with a faulty line in
 *     the median DIMM; for the model, more than one expected faulty line per
 *     module for the median chip, z = 0) agrees within one 25 mV step, and
 *     the median faulty-line fraction is within 3x wherever the data's
 *     median is non-zero;
 *   - DIVA: the data's and the model's bit errors jump by at least 3 decades
 *     from tRCD 10 ns to 7.5 ns; the model's median-module bit errors at
 *     tRCD 7.5 ns and at each tested tRP are within 3x of the data's, or,
 *     where the data show no latency effect (zero, or at most twice the
 *     baseline's errors), stay below half a bit or twice the baseline;
 *     points whose median falls below that of a milder setting of the same
 *     knob cannot be followed by a nested model and are skipped;
 *   - retention: the growth exponent from 1024 to 2048 ms at 70 C and the
 *     70 / 20 C factor at 2048 ms match the data's medians within 1 %, and
 *     the median-DIMM counts at 70 C (1024-2048 ms) are within 1.5x, at
 *     20 C (2048 ms) within 3x;
 *   - the checks can fail: each vendor's data reject the other vendors'
 *     profiles, and a retention exponent 10 % off;
 *   - the calibration script computes what the C functions compute: its
 *     values at every fitted point (tests/data/dram/model_points.csv) match
 *     them to a relative 1e-4.
 * The tolerances are those docs/dram-model.md states. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/device.h"
#include "../models/dram/dram_errors.h"
#include "../sim/config.h"
#include "tests.h"

#define DATA APXSIM_SOURCE_ROOT "/tests/data/dram/"
#define VENDORS 3
#define MODULE_BITS 17179869184.0   /* 2 GiB */
#define MODULE_LINES (MODULE_BITS / 512)
#define TCK_DIVA 2.5                /* ns per DIVA controller cycle */
#define MAX_ROWS 2048               /* rows any excerpt file may hold */

static const char vendor_names[] = "ABC";

/* DDR3L-1600 nominal timing at 20 C: the Voltron faulty-line tests. */
static void voltron_op(double vdd, double *op) {
    const double o[DK_COUNT] = {vdd, 13.75, 13.75, 35, 64, 20, 0};
    memcpy(op, o, sizeof o);
}

/* A DIVA test at nominal VDD (cycles of 2.5 ns, 256 ms refresh). */
static void diva_op(int trcd, int tras, int trp, double *op) {
    const double o[DK_COUNT] = {1.35, trcd * TCK_DIVA, trp * TCK_DIVA, tras * TCK_DIVA, 256,
                                20, 0};
    memcpy(op, o, sizeof o);
}

/* ---- the profiles --------------------------------------------------------------- */

/* The errors of a shipped profile; the whole file must also make a device
 * whose knobs default to the DDR3L-1600 nominal point at 20 C. */
static int load_profile(char vendor, dram_error_params *p) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/devices/ddr3l-vendor%c.yaml", APXSIM_SOURCE_ROOT,
             vendor);
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(path, &err);
    if (!doc) {
        fprintf(stderr, "\n%s\n", err.msg);
        return -1;
    }
    double vdd = 0;
    int rc = cfg_get_double(cfg_find(cfg_root(doc), "power"), "vdd", 1, 0, 0, 10, &vdd, &err);
    if (!rc) rc = dram_error_params_from_yaml(cfg_find(cfg_root(doc), "errors"), vdd, p, &err);
    device *d = NULL;
    if (!rc) rc = device_create(cfg_root(doc), &d, &err);
    if (rc) fprintf(stderr, "\n%s\n", err.msg);
    const double nominal[DK_COUNT] = {1.35, 13.75, 13.75, 35, 64, 20, 0};
    for (int k = 0; d && k < DK_COUNT; k++) {
        double x = NAN;
        if (!d->ops->knob_default(d, k, &x) || x != nominal[k]) rc = -1;
    }
    if (d) device_destroy(d);
    cfg_free(doc);
    return rc ? -1 : 0;
}

/* ---- the data excerpt ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, size_t n) {
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Voltron faulty-line fractions of one vendor: tested VDDs (descending) and
 * the median over DIMMs at each. */
typedef struct voltron {
    size_t n;
    double vdd[32], med[32];
} voltron;

static int read_voltron(char vendor, voltron *out) {
    FILE *f = fopen(DATA "voltron_faulty_cachelines.csv", "r");
    if (!f) return -1;
    static double vdd[MAX_ROWS], frac[MAX_ROWS];
    size_t n = 0;
    char line[256], name[32], v;
    int bad = !fgets(line, sizeof line, f) || strncmp(line, "dimm_name,vdd,vendor,", 21);
    while (!bad && fgets(line, sizeof line, f)) {
        double x, pct;
        if (sscanf(line, "%31[^,],%lf,%c,%lf", name, &x, &v, &pct) != 4 || pct < 0 ||
            pct > 100 || n == MAX_ROWS) {
            bad = 1;
            break;
        }
        if (v == vendor) vdd[n] = x, frac[n++] = pct / 100;
    }
    fclose(f);
    if (bad) return -1;
    out->n = 0;
    for (size_t i = 0; i < n; i++) {   /* distinct VDDs, descending */
        size_t k = 0;
        while (k < out->n && out->vdd[k] != vdd[i]) k++;
        if (k < out->n) continue;
        if (out->n == 32) return -1;
        size_t j = out->n++;
        while (j > 0 && out->vdd[j - 1] < vdd[i]) out->vdd[j] = out->vdd[j - 1], j--;
        out->vdd[j] = vdd[i];
    }
    for (size_t k = 0; k < out->n; k++) {
        double xs[MAX_ROWS];
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (vdd[i] == out->vdd[k]) xs[m++] = frac[i];
        out->med[k] = median(xs, m);
    }
    return out->n ? 0 : -1;
}

/* DIVA medians over a vendor's modules at each tested timing (cycles). */
typedef struct diva {
    size_t n;
    int t[8][3];          /* tRCD, tRAS, tRP */
    double med[8];
} diva;

static int read_diva(char vendor, diva *out) {
    static double counts[8][128];
    size_t modules = 0;
    out->n = 0;
    for (int id = 1; id < 100; id++) {
        char path[512], line[256];
        snprintf(path, sizeof path, DATA "diva/vendor%c/summary_%02d", vendor, id);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (modules == 128) {
            fclose(f);
            return -1;
        }
        for (size_t k = 0; k < 8; k++) counts[k][modules] = NAN;   /* untested */
        int bad = 0;
        while (!bad && fgets(line, sizeof line, f)) {
            int trcd, tras, trp, twr;
            char *colon = strchr(line, ':');
            if (strncmp(line, "READ", 4)) continue;
            if (!colon || sscanf(line, "READ %*s %d %d %d %d", &trcd, &tras, &trp, &twr) != 4) {
                bad = 1;
                break;
            }
            /* after the colon: two pattern words, then the count if any */
            double count = 0;
            char w1[32], w2[32];
            if (sscanf(colon + 1, "%31s %31s %lf", w1, w2, &count) < 2 || count < 0 ||
                count > MODULE_BITS) {
                bad = 1;
                break;
            }
            size_t k = 0;
            while (k < out->n && !(out->t[k][0] == trcd && out->t[k][1] == tras &&
                                   out->t[k][2] == trp))
                k++;
            if (k == out->n) {
                if (out->n == 8) {
                    bad = 1;
                    break;
                }
                out->t[k][0] = trcd, out->t[k][1] = tras, out->t[k][2] = trp;
                for (size_t m = 0; m < modules; m++) counts[k][m] = NAN;
                out->n++;
            }
            counts[k][modules] = count;
        }
        fclose(f);
        if (bad) return -1;
        modules++;
    }
    for (size_t k = 0; k < out->n; k++) {
        double xs[128];
        size_t m = 0;
        for (size_t i = 0; i < modules; i++)
            if (!isnan(counts[k][i])) xs[m++] = counts[k][i];
        out->med[k] = median(xs, m);
    }
    return modules ? 0 : -1;
}

static double diva_median(const diva *d, int trcd, int tras, int trp) {
    for (size_t k = 0; k < d->n; k++)
        if (d->t[k][0] == trcd && d->t[k][1] == tras && d->t[k][2] == trp) return d->med[k];
    return NAN;
}

/* Retention: per-DIMM mean counts at 1.35 V, {20, 70} C x {1024, 1536, 2048} ms. */
enum { RET_DIMMS = 16 };
static const double ret_ms[3] = {1024, 1536, 2048};

typedef struct retention {
    size_t n;
    char dimm[RET_DIMMS][16];
    double c[RET_DIMMS][2][3];   /* NAN: not measured */
} retention;

static int ret_slot(retention *r, const char *name) {
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->dimm[i], name)) return (int)i;
    if (r->n == RET_DIMMS) return -1;
    snprintf(r->dimm[r->n], sizeof r->dimm[0], "%s", name);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) r->c[r->n][t][k] = NAN;
    return (int)r->n++;
}

static int read_retention(char vendor, retention *out) {
    FILE *f = fopen(DATA "voltron_retention_per_dimm.csv", "r");
    if (!f) return -1;
    char line[256];
    out->n = 0;
    int bad = !fgets(line, sizeof line, f) || strncmp(line, "vendor,dimm,vdd,", 16);
    while (!bad && fgets(line, sizeof line, f)) {
        char v, name[16];
        double vdd, temp, ms, mean;
        int runs, nonzero;
        if (sscanf(line, "%c,%15[^,],%lf,%lf,%lf,%d,%d,%lf", &v, name, &vdd, &temp, &ms, &runs,
                   &nonzero, &mean) != 8 || mean < 0 || runs < 1) {
            bad = 1;
            break;
        }
        if (v != vendor || vdd != 1.35 || (temp != 20 && temp != 70)) continue;
        for (int k = 0; k < 3; k++)
            if (ms == ret_ms[k]) {
                int s = ret_slot(out, name);
                if (s < 0) bad = 1;
                else out->c[s][temp == 70][k] = mean;
            }
    }
    fclose(f);
    return bad || !out->n ? -1 : 0;
}

/* ---- the properties, as counts of violations ----------------------------------------- */

static int quiet;   /* no messages while checking profiles that must fail */

static int report(int ok, char vendor, const char *what, double data, double model) {
    if (!ok && !quiet)
        fprintf(stderr, "\n  vendor %c: %s: data %g, model %g", vendor, what, data, model);
    return !ok;
}

static int zero_violations(const dram_error_params *p, char vendor) {
    int bad = 0;
    double op[DK_COUNT];
    voltron_op(1.35, op);
    for (double z = 0; z <= 3; z += 1)
        for (double t = 20; t <= 70; t += 50) {
            op[DK_TEMP] = t;
            double f = dram_errors_expected_fail(p, op, z);
            bad += report(f == 0, vendor, "P(fail) at the nominal point", 0, f);
        }
    voltron_op(1.35, op);
    for (double ms = 64; ms <= 256; ms *= 2)
        for (double t = 20; t <= 70; t += 50) {
            op[DK_TREFW] = ms, op[DK_TEMP] = t;
            double f = dram_errors_expected_fail(p, op, 0);
            bad += report(f == 0, vendor, "retention P(fail) at <= 256 ms", ms, f);
        }
    return bad;
}

static double model_lines(const dram_error_params *p, double vdd) {
    double op[DK_COUNT];
    voltron_op(vdd, op);
    return dram_errors_expected_line_fraction(p, op, 0);
}

static int voltron_violations(const dram_error_params *p, const voltron *v, char vendor) {
    int bad = 0;
    double onset_data = NAN, onset_model = NAN;
    for (size_t k = 0; k < v->n; k++) {
        double m = model_lines(p, v->vdd[k]);
        if (isnan(onset_data) && v->med[k] > 0) onset_data = v->vdd[k];
        if (isnan(onset_model) && m * MODULE_LINES > 1) onset_model = v->vdd[k];
        if (v->med[k] > 0)
            bad += report(m >= v->med[k] / 3 && m <= v->med[k] * 3, vendor,
                          "median faulty-line fraction (within 3x)", v->med[k], m);
    }
    bad += report(!isnan(onset_data) && !isnan(onset_model) &&
                      fabs(onset_data - onset_model) <= 0.025 + 1e-9,
                  vendor, "onset VDD (within 25 mV)", onset_data, onset_model);
    return bad;
}

static double model_bits(const dram_error_params *p, int trcd, int tras, int trp) {
    double op[DK_COUNT];
    diva_op(trcd, tras, trp, op);
    return 0.5 * dram_errors_expected_fail(p, op, 0) * MODULE_BITS;
}

static int diva_violations(const dram_error_params *p, const diva *d, char vendor) {
    int bad = 0;
    double d10 = diva_median(d, 4, 15, 5), d75 = diva_median(d, 3, 15, 5);
    double m10 = model_bits(p, 4, 15, 5), m75 = model_bits(p, 3, 15, 5);
    bad += report(!isnan(d10) && !isnan(d75) && d75 >= 1e3 * fmax(d10, 0.5), vendor,
                  "data: tRCD 10 -> 7.5 ns cliff of 3 decades", d10, d75);
    bad += report(m75 >= 1e3 * m10 && m75 > 0, vendor,
                  "model: tRCD 10 -> 7.5 ns cliff of 3 decades", m10, m75);
    bad += report(m75 >= d75 / 3 && m75 <= d75 * 3, vendor, "tRCD 7.5 ns bits (within 3x)",
                  d75, m75);
    double base = diva_median(d, 5, 15, 5);
    const int trp_points[][3] = {{5, 14, 4}, {5, 15, 3}, {5, 14, 2}};
    double milder = base;
    for (int i = 0; i < 3; i++) {
        const int *t = trp_points[i];
        double x = diva_median(d, t[0], t[1], t[2]), m = model_bits(p, t[0], t[1], t[2]);
        if (isnan(x)) return bad + report(0, vendor, "a DIVA tRP point is missing", 0, 0);
        if (x < milder) continue;   /* below a milder tRP: not nested, skipped */
        milder = x;
        if (x == 0)
            bad += report(m <= 0.5, vendor, "tRP bits where the data have none", x, m);
        else if (base > 0 && x <= 2 * base)
            bad += report(m <= 2 * base, vendor, "tRP bits at the baseline's level", x, m);
        else
            bad += report(m >= x / 3 && m <= x * 3, vendor, "tRP bits (within 3x)", x, m);
    }
    return bad;
}

static double ret_model(const dram_error_params *p, double ms, double temp) {
    double op[DK_COUNT];
    voltron_op(1.35, op);
    op[DK_TREFW] = ms, op[DK_TEMP] = temp;
    return 0.5 * dram_errors_expected_fail(p, op, 0) * MODULE_BITS;
}

/* The 70 / 20 C ratios at 2048 ms of every vendor's DIMMs with errors at both. */
static double temperature_factor(const retention *all) {
    double xs[VENDORS * RET_DIMMS];
    size_t n = 0;
    for (int v = 0; v < VENDORS; v++)
        for (size_t i = 0; i < all[v].n; i++) {
            double hot = all[v].c[i][1][2], cold = all[v].c[i][0][2];
            if (hot > 0 && cold > 0) xs[n++] = hot / cold;
        }
    return n ? median(xs, n) : NAN;
}

static int retention_violations(const dram_error_params *p, const retention *r, double factor,
                                char vendor) {
    int bad = 0;
    double betas[RET_DIMMS], med[2][3];
    size_t nb = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->c[i][1][0] > 0 && r->c[i][1][2] > 0)
            betas[nb++] = log(r->c[i][1][2] / r->c[i][1][0]) / log(2.0);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) {
            double xs[RET_DIMMS];
            size_t n = 0;
            for (size_t i = 0; i < r->n; i++)
                if (!isnan(r->c[i][t][k])) xs[n++] = r->c[i][t][k];
            med[t][k] = n ? median(xs, n) : NAN;
        }
    double beta_data = nb ? median(betas, nb) : NAN;
    double beta = log(ret_model(p, 2048, 70) / ret_model(p, 1024, 70)) / log(2.0);
    bad += report(fabs(beta / beta_data - 1) <= 0.01, vendor, "retention exponent (1 %)",
                  beta_data, beta);
    double f = ret_model(p, 2048, 70) / ret_model(p, 2048, 20);
    bad += report(fabs(f / factor - 1) <= 0.01, vendor, "retention 70/20 C factor (1 %)",
                  factor, f);
    for (int k = 0; k < 3; k++) {
        double m = ret_model(p, ret_ms[k], 70);
        bad += report(m >= med[1][k] / 1.5 && m <= med[1][k] * 1.5, vendor,
                      "retention bits at 70 C (within 1.5x)", med[1][k], m);
    }
    if (med[0][2] > 0) {
        double m = ret_model(p, 2048, 20);
        bad += report(m >= med[0][2] / 3 && m <= med[0][2] * 3, vendor,
                      "retention bits at 20 C, 2048 ms (within 3x)", med[0][2], m);
    }
    return bad;
}

/* ---- the tests ------------------------------------------------------------------------ */

typedef struct fixture {
    dram_error_params p[VENDORS];
    voltron volt[VENDORS];
    diva div[VENDORS];
    retention ret[VENDORS];
    double temp_factor;
} fixture;

static fixture fx;

static void load_all(void) {
    static int loaded;
    if (loaded) return;
    for (int v = 0; v < VENDORS; v++) {
        char c = vendor_names[v];
        CU_ASSERT_EQUAL_FATAL(load_profile(c, &fx.p[v]), 0);
        CU_ASSERT_EQUAL_FATAL(read_voltron(c, &fx.volt[v]), 0);
        CU_ASSERT_EQUAL_FATAL(read_diva(c, &fx.div[v]), 0);
        CU_ASSERT_EQUAL_FATAL(read_retention(c, &fx.ret[v]), 0);
    }
    fx.temp_factor = temperature_factor(fx.ret);
    CU_ASSERT_FATAL(fx.temp_factor > 1);
    loaded = 1;
}

static void test_profiles_load(void) {
    load_all();
    for (int v = 0; v < VENDORS; v++) {
        const dram_error_params *p = &fx.p[v];
        CU_ASSERT(p->act.enabled && p->pre.enabled);
        CU_ASSERT(p->ret_ber_ref > 0);
        CU_ASSERT_DOUBLE_EQUAL(p->vdd_nominal, 1.35, 0);
        CU_ASSERT(p->act.guard <= 13.75 && p->pre.guard <= 13.75);
        /* the excerpt: every vendor's VDDs down to an error, 7 DIVA timings */
        CU_ASSERT(fx.volt[v].n >= 8);
        CU_ASSERT_EQUAL(fx.div[v].n, 7);
        CU_ASSERT(fx.ret[v].n >= 9);
    }
}

static void test_zero_at_nominal(void) {
    load_all();
    for (int v = 0; v < VENDORS; v++) CU_ASSERT_EQUAL(zero_violations(&fx.p[v], vendor_names[v]), 0);
}

static void test_voltron(void) {
    load_all();
    for (int v = 0; v < VENDORS; v++)
        CU_ASSERT_EQUAL(voltron_violations(&fx.p[v], &fx.volt[v], vendor_names[v]), 0);
}

static void test_diva(void) {
    load_all();
    for (int v = 0; v < VENDORS; v++)
        CU_ASSERT_EQUAL(diva_violations(&fx.p[v], &fx.div[v], vendor_names[v]), 0);
}

static void test_retention(void) {
    load_all();
    for (int v = 0; v < VENDORS; v++)
        CU_ASSERT_EQUAL(
            retention_violations(&fx.p[v], &fx.ret[v], fx.temp_factor, vendor_names[v]), 0);
}

/* The calibration script's model (scripts/calibrate_dram.py) mirrors the C
 * functions: its values at every fitted point, written with the profiles,
 * match dram_errors_expected_fail / _line_fraction. */
static void test_script_mirrors_the_model(void) {
    load_all();
    FILE *f = fopen(DATA "model_points.csv", "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[512];
    CU_ASSERT_FATAL(fgets(line, sizeof line, f) != NULL);
    CU_ASSERT_EQUAL(strncmp(line, "vendor,function,vdd,", 20), 0);
    int rows = 0, per_vendor[VENDORS] = {0};
    while (fgets(line, sizeof line, f)) {
        char v, fn[32];
        double op[DK_COUNT] = {0}, z, value;
        int got = sscanf(line, "%c,%31[^,],%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v, fn, &op[DK_VDD],
                         &op[DK_TRCD], &op[DK_TRP], &op[DK_TRAS], &op[DK_TREFW], &op[DK_TEMP],
                         &z, &value);
        CU_ASSERT_EQUAL_FATAL(got, 10);
        const char *at = v ? strchr(vendor_names, v) : NULL;
        CU_ASSERT_PTR_NOT_NULL_FATAL(at);
        const dram_error_params *p = &fx.p[at - vendor_names];
        int lines = !strcmp(fn, "line_fraction");
        CU_ASSERT_FATAL(lines || !strcmp(fn, "fail"));
        double c = lines ? dram_errors_expected_line_fraction(p, op, z)
                         : dram_errors_expected_fail(p, op, z);
        int ok = fabs(c - value) <= 1e-4 * fabs(value) + 1e-14;
        if (!ok) fprintf(stderr, "\n  %s", line);
        CU_ASSERT(ok);
        rows++;
        per_vendor[at - vendor_names]++;
    }
    fclose(f);
    for (int v = 0; v < VENDORS; v++) CU_ASSERT(per_vendor[v] >= 30);
    CU_ASSERT(rows >= 100);
}

/* The checks are not vacuous: each vendor's data reject the other vendors'
 * profiles, and a retention exponent 10 % off is rejected. */
static void test_wrong_profiles_fail(void) {
    load_all();
    quiet = 1;
    for (int v = 0; v < VENDORS; v++) {
        char c = vendor_names[v];
        for (int w = 0; w < VENDORS; w++)
            if (w != v) {
                int bad = voltron_violations(&fx.p[w], &fx.volt[v], c) +
                          diva_violations(&fx.p[w], &fx.div[v], c);
                if (!bad) fprintf(stderr, "\n  vendor %c data accept vendor %c's profile", c,
                                  vendor_names[w]);
                CU_ASSERT(bad > 0);
            }
        dram_error_params leaky = fx.p[v];
        leaky.ret_beta *= 1.1;
        CU_ASSERT(retention_violations(&leaky, &fx.ret[v], fx.temp_factor, c) > 0);
    }
    quiet = 0;
}

void add_dram_calib_suite(void) {
    TEST_SUITE("dram_calib", {"profiles and data excerpt load", test_profiles_load},
               {"zero faults at nominal voltage, timing and refresh", test_zero_at_nominal},
               {"Voltron onset and median faulty lines", test_voltron},
               {"DIVA tRCD cliff, tRCD 7.5 ns and tRP points", test_diva},
               {"retention threshold, exponent and temperature factor", test_retention},
               {"the calibration script mirrors the C model", test_script_mirrors_the_model},
               {"profiles off the fit fail the checks", test_wrong_profiles_fail});
}
