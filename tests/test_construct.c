/* test_construct.c - the constructive BNNs (workloads/construct.h,
 * docs/construct.md; facts bnn.md section 7, check B4).
 *
 * Boolean networks must be exact on all 2^n inputs (random functions up to
 * n = 14, parity, majority, constants) with exactly the detectors the proof
 * names, the complement when it is smaller. Lipschitz networks must keep
 * their proven bound on >= 10^4 random inputs, at every threshold and cell
 * corner (every 8-bit input for n = 2), with exactly one detector firing;
 * x1^2 on [0,1]^2 must beat 1/8, the floor of any one-hidden-layer BNN. The
 * models are evaluated by bnn_eval_range (the sweep's kernels) after a save
 * and load, on data sets written as IDX files and read by dataset.c; `apxsim
 * construct` is run end to end into eval and sweep. Bad tables, functions and
 * parameters are refused with messages that say what is wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sim/config.h"
#include "sim/rng.h"
#include "tests.h"
#include "workloads/bnn.h"
#include "workloads/construct.h"
#include "workloads/dataset.h"

#define ASSERT_HAS(msg, sub)                                                          \
    do {                                                                              \
        int has_ = strstr((msg), (sub)) != NULL;                                     \
        if (!has_) fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", (msg), (sub)); \
        CU_ASSERT(has_);                                                              \
    } while (0)

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Predictions of m (clean weights) on all of d, with the active kernel. */
static size_t eval_all(const bnn_model *m, const dataset *d, uint8_t *pred) {
    bnn_workspace *ws = bnn_workspace_new(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    size_t right = bnn_eval_range(m, m->image, d, 0, d->n, ws, pred);
    bnn_workspace_free(ws);
    return right;
}

/* ---- Boolean ------------------------------------------------------------------- */

/* Builds the network for t and checks it on all 2^n inputs: every prediction
 * is f, and the hidden width is min(#ones, #zeros) (at least 1). */
static void check_boolean_exact(const construct_truth *t) {
    apx_error err = {0};
    bnn_model m;
    construct_boolean_info info;
    dataset d;
    CU_ASSERT_EQUAL_FATAL(construct_boolean(t, "b", &m, &info, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_boolean_dataset(t, &d, &err), APX_OK);
    uint32_t total = 1u << t->n, ones = 0;
    for (uint32_t i = 0; i < total; i++) ones += t->f[i];
    uint32_t fewer = ones < total - ones ? ones : total - ones;
    CU_ASSERT_EQUAL(info.positives, ones);
    CU_ASSERT_EQUAL(info.patterns, fewer);
    CU_ASSERT_EQUAL(info.complement, ones > total - ones);
    CU_ASSERT_EQUAL(m.layers[0].out, fewer ? fewer : 1);
    CU_ASSERT_EQUAL(m.n_layers, 3);
    uint8_t *pred = malloc(total);
    size_t right = eval_all(&m, &d, pred);
    CU_ASSERT_EQUAL(right, total);
    uint32_t wrong = 0;
    for (uint32_t i = 0; i < total; i++) wrong += pred[i] != t->f[i];
    if (wrong) fprintf(stderr, "\n  %s n=%u: %u wrong\n", t->source, t->n, wrong);
    CU_ASSERT_EQUAL(wrong, 0);
    free(pred);
    dataset_free(&d);
    bnn_free(&m);
}

static void test_boolean_random_exact(void) {
    apx_error err = {0};
    for (uint32_t n = 1; n <= 14; n++) {
        construct_truth t;
        CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("random", n, 100 + n, &t, &err), APX_OK);
        check_boolean_exact(&t);
        construct_truth_free(&t);
    }
}

static void test_boolean_parity_majority(void) {
    apx_error err = {0};
    for (uint32_t n = 1; n <= 12; n++) {
        construct_truth p, q;
        CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("parity", n, 0, &p, &err), APX_OK);
        CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("majority", n, 0, &q, &err), APX_OK);
        for (uint32_t i = 0; i < (1u << n); i++) {
            int ones = __builtin_popcount(i);
            CU_ASSERT_EQUAL(p.f[i], ones % 2);
            CU_ASSERT_EQUAL(q.f[i], 2 * ones > (int)n);
        }
        check_boolean_exact(&p);
        check_boolean_exact(&q);
        construct_truth_free(&p);
        construct_truth_free(&q);
    }
}

/* Random tables depend on the seed only. */
static void test_truth_random_seeded(void) {
    apx_error err = {0};
    construct_truth a, b, c;
    CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("random", 12, 7, &a, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("random", 12, 7, &b, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("random", 12, 8, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(memcmp(a.f, b.f, 4096), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a.f, c.f, 4096), 0);
    uint32_t ones = 0;
    for (uint32_t i = 0; i < 4096; i++) ones += a.f[i];
    CU_ASSERT(ones > 1848 && ones < 2248);  /* a fair coin: 2048 +- 6 sigma */
    construct_truth_free(&a);
    construct_truth_free(&b);
    construct_truth_free(&c);
}

/* The complement is taken exactly when the zeros are fewer; constants get
 * one never-firing detector. */
static void test_boolean_complement(void) {
    apx_error err = {0};
    construct_truth t;
    CU_ASSERT_EQUAL_FATAL(construct_truth_parse("1111 1110", 9, "mostly-one", &t, &err), APX_OK);
    check_boolean_exact(&t);  /* 7 ones, 1 zero: complement, 1 detector */
    bnn_model m;
    construct_boolean_info info;
    CU_ASSERT_EQUAL_FATAL(construct_boolean(&t, "c", &m, &info, &err), APX_OK);
    CU_ASSERT(info.complement);
    CU_ASSERT_EQUAL(info.detectors, 1);
    CU_ASSERT_EQUAL(m.layers[1].direction[0], -1);
    bnn_free(&m);
    construct_truth_free(&t);

    const char *cases[] = {"0000 0001", "1100 0011", "0000 0000", "1111 1111", "01", "10"};
    const uint32_t detectors[] = {1, 4, 1, 1, 1, 1};
    const int complement[] = {0, 0, 0, 1, 0, 0};
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_EQUAL_FATAL(construct_truth_parse(cases[i], strlen(cases[i]), "case", &t, &err),
                              APX_OK);
        check_boolean_exact(&t);
        CU_ASSERT_EQUAL_FATAL(construct_boolean(&t, "c", &m, &info, &err), APX_OK);
        CU_ASSERT_EQUAL(info.detectors, detectors[i]);
        CU_ASSERT_EQUAL(info.complement, complement[i]);
        bnn_free(&m);
        construct_truth_free(&t);
    }
}

/* The probe of the detector layer: on the inputs the detectors stand for,
 * exactly one fires (the r-th for the r-th pattern), elsewhere none. */
static void test_boolean_probe_detectors(void) {
    apx_error err = {0};
    construct_truth t;
    CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("random", 8, 3, &t, &err), APX_OK);
    bnn_model m, probe;
    construct_boolean_info info;
    CU_ASSERT_EQUAL_FATAL(construct_boolean(&t, "p", &m, &info, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_probe(&m, 0, 0, &probe, &err), APX_OK);
    CU_ASSERT_EQUAL(probe.n_classes, 1 + 7u);  /* count row + ceil(log2(width)) bits */
    bnn_workspace *ws = bnn_workspace_new(&probe);
    uint8_t match = info.complement ? 0 : 1;
    uint32_t rank = 0, bad = 0;
    for (uint32_t i = 0; i < 256; i++) {
        uint8_t px[8];
        for (int j = 0; j < 8; j++) px[j] = (i >> j & 1) ? 255 : 0;
        int32_t scores[16];
        uint32_t index;
        bnn_classify(&probe, probe.image, px, ws, scores);
        uint32_t fired = construct_probe_read(&probe, scores, &index);
        if (t.f[i] == match) bad += fired != 1 || index != rank++;
        else bad += fired != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rank, info.patterns);
    bnn_workspace_free(ws);
    bnn_free(&probe);
    CU_ASSERT_EQUAL(construct_probe(&m, 2, 0, &probe, &err), APX_EINPUT);  /* not hidden */
    ASSERT_HAS(err.msg, "layer 2 is not a hidden layer");
    bnn_free(&m);
    construct_truth_free(&t);
}

static void test_truth_table_files(void) {
    apx_error err = {0};
    construct_truth t;
    const char good[] = "# xor of two inputs\n0 1\n1 0   # x1 is the low bit\n";
    const char *path = test_write_file("xor.txt", good, sizeof good - 1);
    CU_ASSERT_EQUAL_FATAL(construct_truth_load(path, &t, &err), APX_OK);
    CU_ASSERT_EQUAL(t.n, 2);
    CU_ASSERT(t.f[0] == 0 && t.f[1] == 1 && t.f[2] == 1 && t.f[3] == 0);
    CU_ASSERT_STRING_EQUAL(t.source, "table");
    construct_truth_free(&t);

    path = test_write_file("bad-char.txt", "0110\n01x0\n", 10);
    CU_ASSERT_EQUAL(construct_truth_load(path, &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "bad-char.txt:2:3: unexpected character 'x'");
    CU_ASSERT_PTR_NULL(t.f);
    CU_ASSERT_EQUAL(construct_truth_parse("01\x01", 3, "ctl", &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "ctl:1:3: unexpected character \\x01");
    path = test_write_file("six.txt", "011010", 6);
    CU_ASSERT_EQUAL(construct_truth_load(path, &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "six.txt: 6 entries; a truth table of n inputs has 2^n");
    CU_ASSERT_EQUAL(construct_truth_parse("1", 1, "one", &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "one: 1 entries");
    CU_ASSERT_EQUAL(construct_truth_parse("# only a comment\n", 17, "empty", &t, &err),
                    APX_EINPUT);
    ASSERT_HAS(err.msg, "empty: 0 entries");
    size_t big = (1u << 17);
    char *huge = malloc(big);
    memset(huge, '1', big);
    CU_ASSERT_EQUAL(construct_truth_parse(huge, big, "huge", &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "more than 65536 entries (at most n = 16 inputs)");
    free(huge);
    CU_ASSERT_EQUAL(construct_truth_load(test_path("absent.txt"), &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "absent.txt: cannot open");
    CU_ASSERT_EQUAL(construct_truth_builtin("parity", 17, 0, &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "n = 17 is too large: at most 16 inputs");
    CU_ASSERT_EQUAL(construct_truth_builtin("parity", 0, 0, &t, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(construct_truth_builtin("xor", 3, 0, &t, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "unknown Boolean function 'xor'");
}

/* ---- Lipschitz: directions and plans ------------------------------------------- */

static void test_lipschitz_directions(void) {
    apx_error err = {0};
    for (uint32_t n = 1; n <= 8; n++) {
        construct_fn f;
        construct_lip c;
        CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("max", n, &f, &err), APX_OK);
        /* a coarse plan is enough to see the directions */
        CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 100, 2, &c, &err), APX_OK);
        double worst = 0;
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < n; j++) {
                CU_ASSERT(c.w[i][j] == 1 || c.w[i][j] == -1);
                double s = 0;
                for (uint32_t k = 0; k < n; k++) s += c.w[i][k] * c.winv[k][j];
                worst = fmax(worst, fabs(s - (i == j)));
            }
        CU_ASSERT(worst < 1e-12);
        double rho = (n & (n - 1)) == 0 ? 1 : (n > 3 ? n - 2.0 : 1.0);  /* facts 7.3 */
        CU_ASSERT_DOUBLE_EQUAL(c.rho, rho, 1e-12);
        CU_ASSERT_EQUAL(c.K, 2);  /* epsilon 100 caps delta at n / 2 */
        construct_lip_free(&c);
        construct_fn_free(&f);
    }
}

/* delta is the largest whole number of pixel steps within epsilon. */
static void test_lipschitz_step(void) {
    apx_error err = {0};
    construct_fn f;
    construct_lip c;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("square", 2, &f, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 0.05, 10, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.step, 12);  /* 2 * 12 / 510 = 0.047 <= 0.05 < 2 * 13 / 510 */
    CU_ASSERT_EQUAL(c.K, 43);     /* ceil(510 / 12) */
    CU_ASSERT_EQUAL(c.M, 84);
    CU_ASSERT_DOUBLE_EQUAL(c.bound, 12.0 / 255, 1e-15);
    CU_ASSERT(c.bound <= 0.05);
    construct_lip_free(&c);
    /* epsilon exactly at a step: 10 steps give 20/510 */
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 20.0 / 510, 10, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.step, 10);
    construct_lip_free(&c);
    /* a larger L than the function's is allowed and refines the grid */
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, 4, 0.05, 10, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.step, 6);
    CU_ASSERT_DOUBLE_EQUAL(c.L, 4, 0);
    construct_lip_free(&c);
    construct_fn_free(&f);
}

/* Builds, checks with `points` random inputs, and asserts the whole report. */
static void check_lipschitz(const construct_fn *f, double epsilon, uint32_t classes,
                            uint32_t points, construct_lip_report *out) {
    apx_error err = {0};
    construct_lip c;
    bnn_model m;
    construct_lip_report r;
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(f, NAN, epsilon, classes, &c, &err), APX_OK);
    CU_ASSERT(c.bound <= epsilon);
    CU_ASSERT_EQUAL_FATAL(construct_lip_model(&c, "l", &m, &err), APX_OK);
    CU_ASSERT_EQUAL(m.layers[0].out, c.M);
    CU_ASSERT_EQUAL(m.layers[1].out, c.cells + c.constants);
    CU_ASSERT_EQUAL(m.n_classes, classes);
    CU_ASSERT_EQUAL_FATAL(construct_lip_check(&c, &m, points, 5, &r, &err), APX_OK);
    CU_ASSERT(r.probed_points >= points);
    CU_ASSERT(r.real_points == points);
    CU_ASSERT(r.boundary_points >= 2 * c.M);
    CU_ASSERT_EQUAL(r.exhaustive, f->n <= 2);
    if (r.not_one_hot || r.wrong_cell || r.wrong_class || r.cell_error > c.bound + 1e-12 ||
        r.readout_error > c.readout_bound + 1e-12 || r.real_error > c.real_bound + 1e-12)
        fprintf(stderr, "\n  %s n=%u eps=%g: %llu/%llu/%llu, errors %g <= %g, %g <= %g, %g <= %g\n",
                f->name, f->n, epsilon, (unsigned long long)r.not_one_hot,
                (unsigned long long)r.wrong_cell, (unsigned long long)r.wrong_class, r.cell_error,
                c.bound, r.readout_error, c.readout_bound, r.real_error, c.real_bound);
    CU_ASSERT_EQUAL(r.not_one_hot, 0);
    CU_ASSERT_EQUAL(r.wrong_cell, 0);
    CU_ASSERT_EQUAL(r.wrong_class, 0);
    CU_ASSERT(r.cell_error <= c.bound + 1e-12);
    CU_ASSERT(r.readout_error <= c.readout_bound + 1e-12);
    CU_ASSERT(r.real_error <= c.real_bound + 1e-12);
    /* the bound is not vacuous: the error reaches a good part of it */
    CU_ASSERT(r.cell_error >= 0.25 * c.bound);
    if (out) *out = r;
    bnn_free(&m);
    construct_lip_free(&c);
}

static void test_lipschitz_builtins(void) {
    apx_error err = {0};
    /* 10^4 random points each; n = 5 (rho = 3, the first non-Hadamard W with
     * rho > 1) has thousands of cells even when coarse, so fewer there. */
    static const struct { const char *name; uint32_t n; double eps; uint32_t points; } cases[] = {
        {"square", 2, 0.1, 10000}, {"sine", 2, 0.2, 10000}, {"mean", 3, 0.1, 10000},
        {"max", 3, 0.1, 10000},    {"square", 1, 0.01, 10000}, {"mean", 5, 1.5, 2000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        construct_fn f;
        CU_ASSERT_EQUAL_FATAL(construct_fn_builtin(cases[i].name, cases[i].n, &f, &err), APX_OK);
        check_lipschitz(&f, cases[i].eps, 10, cases[i].points, NULL);
        construct_fn_free(&f);
    }
}

/* For n = 2, every one of the 65,536 8-bit inputs: exactly one detector
 * fires, and it is the input's cell (construct_lip_check probes all but this
 * exhaustive sweep, to stay fast on wide networks). */
static void test_lipschitz_one_detector_all(void) {
    apx_error err = {0};
    construct_fn f;
    construct_lip c;
    bnn_model m, probe;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("sine", 2, &f, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 0.3, 10, &c, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_model(&c, "sine", &m, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_probe(&m, 1, 0, &probe, &err), APX_OK);  /* incl. balancing */
    bnn_workspace *ws = bnn_workspace_new(&probe);
    uint32_t not_one = 0, wrong = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        uint8_t px[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
        int32_t scores[33];
        uint32_t index;
        bnn_classify(&probe, probe.image, px, ws, scores);
        if (construct_probe_read(&probe, scores, &index) != 1) not_one++;
        else wrong += (int64_t)index != construct_lip_cell(&c, px);
    }
    CU_ASSERT_EQUAL(not_one, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    bnn_workspace_free(ws);
    bnn_free(&probe);
    bnn_free(&m);
    construct_lip_free(&c);
    construct_fn_free(&f);
}

/* Halving delta roughly halves the worst cell error (facts 7.3 test c). */
static void test_lipschitz_error_shrinks(void) {
    apx_error err = {0};
    construct_fn f;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("mean", 2, &f, &err), APX_OK);
    construct_lip_report coarse, fine;
    check_lipschitz(&f, 0.2, 10, 2000, &coarse);
    check_lipschitz(&f, 0.05, 10, 2000, &fine);
    double ratio = fine.cell_error / coarse.cell_error;
    CU_ASSERT(ratio > 0.15 && ratio < 0.35);  /* delta shrank 4x: ~0.25 */
    construct_fn_free(&f);
}

/* x1^2 on [0,1]^2: no one-hidden-layer FC-BNN gets below 1/8 (facts 7.2: the
 * rectangle functional Delta is 0 on sums g1(x1 + x2) + g2(x1 - x2) and 1/2
 * on x1^2); the two-hidden-layer network's proven bound, for real inputs and
 * with the readout bins, is below it, and so is its measured error on every
 * 8-bit input and 10^4 real ones. On the rectangle's corners, moved to 8-bit
 * inputs, the network's Delta is far from the 0 of any one-hidden-layer
 * network. */
static void test_square_beats_one_hidden_layer(void) {
    apx_error err = {0};
    construct_fn f;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("square", 2, &f, &err), APX_OK);
    double x[4][2] = {{0, 0.5}, {0.5, 0}, {0.5, 1}, {1, 0.5}};
    double delta_f = construct_fn_eval(&f, x[0]) - construct_fn_eval(&f, x[1]) -
                     construct_fn_eval(&f, x[2]) + construct_fn_eval(&f, x[3]);
    CU_ASSERT_DOUBLE_EQUAL(delta_f, 0.5, 1e-15);

    construct_lip c;
    bnn_model m;
    construct_lip_report r;
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 0.04, 10, &c, &err), APX_OK);
    CU_ASSERT(c.real_bound < 0.125);
    CU_ASSERT_EQUAL_FATAL(construct_lip_model(&c, "square", &m, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_check(&c, &m, 10000, 9, &r, &err), APX_OK);
    CU_ASSERT(r.exhaustive);
    CU_ASSERT(r.wrong_class == 0 && r.not_one_hot == 0);
    CU_ASSERT(r.readout_error < 0.125 && r.real_error < 0.125);

    /* corners in pixels: u = p1 + p2 in {127, 381}, v = p1 - p2 in {-127, 127} */
    const uint8_t px[4][2] = {{0, 127}, {127, 0}, {127, 254}, {254, 127}};
    bnn_workspace *ws = bnn_workspace_new(&m);
    double y[4], fx[4];
    for (int i = 0; i < 4; i++) {
        y[i] = construct_lip_class_value(&c, (uint32_t)bnn_classify(&m, m.image, px[i], ws, NULL));
        double xi[2] = {px[i][0] / 255.0, px[i][1] / 255.0};
        fx[i] = construct_fn_eval(&f, xi);
    }
    double delta_lattice = fx[0] - fx[1] - fx[2] + fx[3];
    double delta_net = y[0] - y[1] - y[2] + y[3];
    CU_ASSERT_DOUBLE_EQUAL(delta_lattice, 2 * (127.0 / 255) * (127.0 / 255), 1e-12);
    CU_ASSERT(fabs(delta_net - delta_lattice) <= 4 * c.readout_bound);
    CU_ASSERT(delta_net > 0.1);
    bnn_workspace_free(ws);
    bnn_free(&m);
    construct_lip_free(&c);
    construct_fn_free(&f);
}

/* ---- piecewise-linear tables ------------------------------------------------------ */

static void test_table_function(void) {
    apx_error err = {0};
    construct_fn f;
    /* 3 x 2 grid: x1 in {0, .5, 1}, x2 in {0, 1} */
    const char yaml[] = "name: ramp\ngrid: [3, 2]\nvalues: [0, 0.5, 0.25,  1, 0, 0.75]\n";
    CU_ASSERT_EQUAL_FATAL(construct_fn_parse(yaml, sizeof yaml - 1, "ramp.yaml", &f, &err),
                          APX_OK);
    CU_ASSERT_EQUAL(f.n, 2);
    CU_ASSERT_STRING_EQUAL(f.name, "ramp");
    CU_ASSERT_DOUBLE_EQUAL(f.min, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(f.max, 1, 0);
    double g[2] = {0.5, 1}, mid[2] = {0.25, 0.75}, lo[2] = {0.75, 0.25};
    CU_ASSERT_DOUBLE_EQUAL(construct_fn_eval(&f, g), 0, 1e-15);  /* a grid point */
    /* cell x1 in [0, .5]: t1 = .5, t2 = .75: path x2 first: 0 + (1 - 0) .75 + (0 - 1) .5 */
    CU_ASSERT_DOUBLE_EQUAL(construct_fn_eval(&f, mid), 0.25, 1e-15);
    /* cell x1 in [.5, 1]: t1 = .5, t2 = .25: x1 first: .5 + (.25 - .5) .5 + (.75 - .25) .25 */
    CU_ASSERT_DOUBLE_EQUAL(construct_fn_eval(&f, lo), 0.5, 1e-15);
    /* steepest simplex path: 0 -> 1 along x2 (1), then 1 -> 0 along x1 (2): 3 */
    CU_ASSERT_DOUBLE_EQUAL(f.lipschitz, 3, 1e-12);
    check_lipschitz(&f, 0.1, 10, 10000, NULL);
    construct_fn_free(&f);

    const char one[] = "grid: [2]\nvalues: [1, -1]\n";  /* 1 - 2 x1 */
    CU_ASSERT_EQUAL_FATAL(construct_fn_parse(one, sizeof one - 1, "line", &f, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(f.lipschitz, 2, 0);
    double q[1] = {0.25};
    CU_ASSERT_DOUBLE_EQUAL(construct_fn_eval(&f, q), 0.5, 1e-15);
    construct_fn_free(&f);
}

/* A random Lipschitz piecewise-linear function (facts 7.3 test a). */
static void test_table_random(void) {
    apx_error err = {0};
    char yaml[4096];
    int len = snprintf(yaml, sizeof yaml, "grid: [5, 4]\nvalues: [");
    rng_stream s;
    rng_stream_at(&s, rng_key_make(11, 0, 0), 0, 0);
    for (int i = 0; i < 20; i++)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len, "%s%.6f", i ? ", " : "",
                        rng_unit(&s));
    len += snprintf(yaml + len, sizeof yaml - (size_t)len, "]\n");
    const char *path = test_write_file("random-pwl.yaml", yaml, (size_t)len);
    construct_fn f;
    CU_ASSERT_EQUAL_FATAL(construct_fn_load(path, &f, &err), APX_OK);
    CU_ASSERT_STRING_EQUAL(f.name, "table");
    /* the Lipschitz constant bounds every difference quotient */
    rng_stream_at(&s, rng_key_make(12, 0, 0), 0, 0);
    double worst = 0;
    for (int i = 0; i < 20000; i++) {
        double a[2] = {rng_unit(&s), rng_unit(&s)}, b[2] = {rng_unit(&s), rng_unit(&s)};
        double dist = fmax(fabs(a[0] - b[0]), fabs(a[1] - b[1]));
        if (dist > 0)
            worst = fmax(worst, fabs(construct_fn_eval(&f, a) - construct_fn_eval(&f, b)) / dist);
    }
    CU_ASSERT(worst <= f.lipschitz * (1 + 1e-9));
    CU_ASSERT(worst >= 0.5 * f.lipschitz);
    check_lipschitz(&f, 0.2, 10, 10000, NULL);
    construct_fn_free(&f);
}

static void test_table_bad(void) {
    apx_error err = {0};
    construct_fn f;
    static const struct { const char *yaml, *msg; } bad[] = {
        {"grid: [3, 3]\nvalues: [1, 2, 3]\n", "t.yaml:2:9: 3 values, but the grid has 9 points"},
        {"grid: [1, 3]\nvalues: [1, 2, 3]\n", "t.yaml:1:8:"},
        {"values: [1, 2]\n", "missing 'grid'"},
        {"grid: 3\nvalues: [1, 2, 3]\n", "'grid' must be a list"},
        {"grid: [2]\nvalues: [1, x]\n", "t.yaml:2:13:"},
        {"grid: [2]\nvalues: [1, 2]\nvalue: 3\n", "did you mean 'values'"},
        {"grid: [2, 2, 2, 2, 2, 2, 2, 2, 2]\nvalues: [1]\n", "1..8 point counts"},
        {"grid: [1025, 1025]\nvalues: [1]\n", "more than 65536 points"},
        {"grid: [2]\nvalues: [1, .inf]\n", "t.yaml:2:13:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = construct_fn_parse(bad[i].yaml, strlen(bad[i].yaml), "t.yaml", &f, &err);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        ASSERT_HAS(err.msg, bad[i].msg);
        CU_ASSERT_PTR_NULL(f.values);
    }
    CU_ASSERT_EQUAL(construct_fn_load(test_path("no-table.yaml"), &f, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "no-table.yaml: cannot open");
    const char *dir = test_path("table-dir");
    mkdir(dir, 0700);
    CU_ASSERT_EQUAL(construct_fn_load(dir, &f, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "not a regular file");
}

static void test_lipschitz_bad_parameters(void) {
    apx_error err = {0};
    construct_fn f, flat;
    construct_lip c;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("square", 2, &f, &err), APX_OK);
    static const struct { double L, eps; uint32_t classes; const char *msg; } bad[] = {
        {NAN, 0, 10, "epsilon must be a positive number, got 0"},
        {NAN, -0.1, 10, "epsilon must be a positive number"},
        {NAN, NAN, 10, "epsilon must be a positive number"},
        {0, 0.1, 10, "L must be a positive number, got 0"},
        {-2, 0.1, 10, "L must be a positive number"},
        {1.5, 0.1, 10, "L = 1.5 is below the Lipschitz constant of square (2"},
        {NAN, 0.1, 1, "classes = 1: the readout takes 2..256 classes"},
        {NAN, 0.1, 257, "classes = 257"},
        {NAN, 0.003, 10, "epsilon = 0.003 is below L rho / 510 = 0.00392157"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(construct_lip_plan(&f, bad[i].L, bad[i].eps, bad[i].classes, &c, &err),
                        APX_EINPUT);
        ASSERT_HAS(err.msg, bad[i].msg);
        CU_ASSERT_PTR_NULL(c.cell_id);
    }
    construct_fn_free(&f);
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("mean", 8, &f, &err), APX_OK);
    CU_ASSERT_EQUAL(construct_lip_plan(&f, NAN, 0.3, 10, &c, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "candidate cells: raise epsilon");
    construct_fn_free(&f);
    CU_ASSERT_EQUAL(construct_fn_builtin("sine", 1, &f, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "needs n >= 2");
    CU_ASSERT_EQUAL(construct_fn_builtin("mean", 9, &f, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "n = 9: a Lipschitz construction takes 1..8 inputs");
    CU_ASSERT_EQUAL(construct_fn_builtin("mean", 0, &f, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(construct_fn_builtin("cube", 2, &f, &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "unknown function 'cube'");
    /* a constant table: L = 0, one class value, every input right */
    const char yaml[] = "grid: [2, 2]\nvalues: [0.5, 0.5, 0.5, 0.5]\n";
    CU_ASSERT_EQUAL_FATAL(construct_fn_parse(yaml, sizeof yaml - 1, "flat", &flat, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(flat.lipschitz, 0, 0);
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&flat, NAN, 0.01, 10, &c, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.real_bound, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(construct_lip_class_value(&c, 0), 0.5, 0);
    construct_lip_free(&c);
    construct_fn_free(&flat);
}

/* ---- workloads: data sets, files ---------------------------------------------------- */

/* The Lipschitz data set: labels are what the network outputs, draws depend
 * on (seed, split) only, and model and data survive a round trip through
 * their files into the sweep's loaders (fmnist_load, bnn_load) and kernels. */
static void test_lipschitz_workload_files(void) {
    apx_error err = {0};
    construct_fn f;
    construct_lip c;
    bnn_model m, loaded;
    dataset test, again, train, read;
    CU_ASSERT_EQUAL_FATAL(construct_fn_builtin("sine", 2, &f, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_plan(&f, NAN, 0.2, 10, &c, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_model(&c, "sine", &m, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_dataset(&c, 3000, 4, 0, &test, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_dataset(&c, 3000, 4, 0, &again, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_lip_dataset(&c, 3000, 4, 1, &train, &err), APX_OK);
    CU_ASSERT_EQUAL(memcmp(test.pixels, again.pixels, 6000), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(test.pixels, train.pixels, 6000), 0);
    uint32_t seen[10] = {0}, classes = 0;
    for (uint32_t i = 0; i < test.n; i++) seen[test.labels[i]]++;
    for (int k = 0; k < 10; k++) classes += seen[k] > 0;
    CU_ASSERT(classes >= 8);  /* sin(2 pi x1) x2 spreads over the bins */

    const char *dir = test_path("sine-data");
    CU_ASSERT_EQUAL_FATAL(construct_dataset_save(&test, dir, "test", &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_dataset_save(&train, dir, "train", &err), APX_OK);
    CU_ASSERT_EQUAL(construct_dataset_save(&test, dir, "valid", &err), APX_EINPUT);
    CU_ASSERT_EQUAL_FATAL(fmnist_load(dir, "test", 0, &read, &err), APX_OK);
    CU_ASSERT(read.n == 3000 && read.rows == 1 && read.cols == 2);
    CU_ASSERT_EQUAL(memcmp(read.pixels, test.pixels, 6000), 0);
    CU_ASSERT_EQUAL(memcmp(read.labels, test.labels, 3000), 0);
    const char *path = test_path("sine.bnn");
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &loaded, &err), APX_OK);
    char h1[17], h2[17];
    bnn_hash_hex(&m, h1);
    bnn_hash_hex(&loaded, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    CU_ASSERT_EQUAL(eval_all(&loaded, &read, NULL), read.n);
    dataset_free(&read);
    CU_ASSERT_EQUAL_FATAL(fmnist_load(dir, "train", 0, &read, &err), APX_OK);
    CU_ASSERT_EQUAL(eval_all(&loaded, &read, NULL), read.n);
    /* a file where the directory should be */
    const char *file = test_write_file("not-a-dir", "x", 1);
    CU_ASSERT_EQUAL(construct_dataset_save(&test, file, "test", &err), APX_EINPUT);
    ASSERT_HAS(err.msg, "a file of that name exists");

    /* the parameters are YAML that names the bound and the model */
    char *text = construct_lip_yaml(&c, &m, NULL, dir, 3000, 4, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cfg_doc *doc = cfg_load_string(text, strlen(text), "sidecar", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    double bound, eps;
    const char *hash;
    CU_ASSERT_EQUAL(cfg_get_double(cfg_root(doc), "bound", 1, 0, 0, 10, &bound, &err), APX_OK);
    CU_ASSERT_EQUAL(cfg_get_double(cfg_root(doc), "epsilon", 1, 0, 0, 10, &eps, &err), APX_OK);
    CU_ASSERT_EQUAL(cfg_get_string(cfg_root(doc), "model_hash", 1, NULL, &hash, &err), APX_OK);
    CU_ASSERT_EQUAL(bound, c.bound);
    CU_ASSERT_EQUAL(eps, 0.2);
    CU_ASSERT_STRING_EQUAL(hash, h1);
    cfg_free(doc);
    free(text);

    dataset_free(&read);
    dataset_free(&test);
    dataset_free(&again);
    dataset_free(&train);
    bnn_free(&loaded);
    bnn_free(&m);
    construct_lip_free(&c);
    construct_fn_free(&f);
}

/* The Boolean data set is all 2^n inputs; it reads back with its 2 classes. */
static void test_boolean_workload_files(void) {
    apx_error err = {0};
    construct_truth t;
    bnn_model m, loaded;
    construct_boolean_info info;
    dataset d, read;
    CU_ASSERT_EQUAL_FATAL(construct_truth_builtin("majority", 9, 0, &t, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_boolean(&t, "maj9", &m, &info, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(construct_boolean_dataset(&t, &d, &err), APX_OK);
    const char *dir = test_path("maj-data");
    CU_ASSERT_EQUAL_FATAL(construct_dataset_save(&d, dir, "test", &err), APX_OK);
    char images[600], labels[600];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    CU_ASSERT_EQUAL_FATAL(idx_load(images, labels, 2, 0, &read, &err), APX_OK);
    CU_ASSERT(read.n == 512 && read.cols == 9);
    const char *path = test_path("maj9.bnn");
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, path, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(bnn_load(path, &loaded, &err), APX_OK);
    CU_ASSERT_EQUAL(eval_all(&loaded, &read, NULL), 512);
    char *text = construct_boolean_yaml(&t, &info, &m, NULL, dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cfg_doc *doc = cfg_load_string(text, strlen(text), "sidecar", &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    long long n, det;
    CU_ASSERT_EQUAL(cfg_get_int(cfg_root(doc), "n", 1, 0, 0, 99, &n, &err), APX_OK);
    CU_ASSERT_EQUAL(cfg_get_int(cfg_root(doc), "detectors", 1, 0, 0, 1 << 20, &det, &err),
                    APX_OK);
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_EQUAL(det, 256);
    cfg_free(doc);
    free(text);
    dataset_free(&read);
    dataset_free(&d);
    bnn_free(&loaded);
    bnn_free(&m);
    construct_truth_free(&t);
}

/* ---- the command ------------------------------------------------------------------- */

static char out[1 << 16];

static void test_cli_construct(void) {
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct --help"), 0);
    ASSERT_HAS(out, "Usage: apxsim construct");
    ASSERT_HAS(out, "Example");
    const char *model = test_path("cli-parity.bnn");
    const char *data = test_path("cli-parity");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct boolean -f parity -n 6 -o %s "
                                              "--data %s", model, data), 0);
    ASSERT_HAS(out, "exact on all 64 inputs");
    char side[600];
    snprintf(side, sizeof side, "%s.yaml", model);
    char *yaml = test_slurp(side, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(yaml);
    ASSERT_HAS(yaml, "function: parity\n");
    ASSERT_HAS(yaml, "complement: false\n");
    free(yaml);

    /* usage errors: exit 2, nothing written */
    const char *none = test_path("cli-none.bnn");
    const char *usage[] = {
        "construct", "construct cube -f x -n 2 -o %s", "construct boolean -f parity -o %s",
        "construct boolean -f parity -n 3 --table t -o %s",
        "construct boolean -f parity -n 3 -e 0.1 -o %s", "construct lipschitz -f square -n 2 -o %s",
        "construct lipschitz -f square -n 2 -e abc -o %s", "construct boolean -f parity -n 3",
        "construct boolean --no-such-option x -o %s",
        "construct lipschitz -f max -n 2 -e 0.1 -o %s extra"};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, usage[i], none);
        CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " %s", cmd), 2);
    }
    const char *bad = test_write_file("cli-bad.txt", "0110 2", 6);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct boolean --table %s -o %s", bad,
                             none), 2);
    ASSERT_HAS(out, "cli-bad.txt:1:6: unexpected character '2'");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct boolean -f parity -n 20 -o %s",
                             none), 2);
    ASSERT_HAS(out, "n = 20 is too large");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct lipschitz -f max -n 2 -e -1 "
                                              "-o %s", none), 2);
    ASSERT_HAS(out, "epsilon must be a positive number");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct lipschitz -f max -n 2 -e 0.1 "
                                              "-L 0 -o %s", none), 2);
    ASSERT_HAS(out, "L must be a positive number");
    CU_ASSERT(!exists(none));
}

/* A constructed model is a workload like any other: apxsim eval and a sweep
 * over bit error rates run on it, clean accuracy 100 %. */
static void test_cli_lipschitz_sweep(void) {
    const char *model = test_path("cli-square.bnn");
    const char *data = test_path("cli-square");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " construct lipschitz -f square -n 2 "
                                              "-e 0.04 --samples 500 --check 2000 -o %s "
                                              "--data %s", model, data), 0);
    ASSERT_HAS(out, "(all of them)");
    ASSERT_HAS(out, "L rho delta / 2 = 0.0392157");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s --data %s --json", model, data),
                    0);
    ASSERT_HAS(out, "\"accuracy\": 1.000000");
    char cfg[2048];
    const char *db = test_db_path("cli-square.db");
    int len = snprintf(cfg, sizeof cfg,
                       "name: construct-square\nseed: 1\nchips: 2\noutput: %s\n"
                       "workload:\n  model: %s\n  data_dir: %s\n"
                       "device:\n  kind: uniform\noperating_points:\n  ber: [0, 0.05]\n",
                       db, model, data);
    const char *cfg_path = test_write_file("cli-square.yaml", cfg, (size_t)len);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -q", cfg_path), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --preset accuracy --format csv",
                             db), 0);
    ASSERT_HAS(out, "ber=0,2,1.0,0.0,1.0,1.0");
    char *line = strstr(out, "ber=0.05,");
    CU_ASSERT_PTR_NOT_NULL_FATAL(line);
    double mean = atof(strchr(line + 9, ',') + 1);  /* after the chips column */
    CU_ASSERT(mean < 0.9);  /* 5 % bit errors hurt this fragile network */
}

void add_construct_suite(void) {
    TEST_SUITE("construct",
               {"boolean: random functions n = 1..14 exact", test_boolean_random_exact},
               {"boolean: parity and majority n = 1..12 exact", test_boolean_parity_majority},
               {"boolean: random tables depend on the seed", test_truth_random_seeded},
               {"boolean: complement when smaller, constants", test_boolean_complement},
               {"boolean: one detector per pattern (probe)", test_boolean_probe_detectors},
               {"boolean: truth table files and bad input", test_truth_table_files},
               {"lipschitz: directions, W^-1 and rho", test_lipschitz_directions},
               {"lipschitz: delta in whole pixel steps", test_lipschitz_step},
               {"lipschitz: built-ins within the bound", test_lipschitz_builtins},
               {"lipschitz: one detector on every 8-bit input", test_lipschitz_one_detector_all},
               {"lipschitz: error shrinks with delta", test_lipschitz_error_shrinks},
               {"lipschitz: x1^2 beats the 1/8 floor", test_square_beats_one_hidden_layer},
               {"lipschitz: piecewise-linear tables", test_table_function},
               {"lipschitz: a random piecewise-linear table", test_table_random},
               {"lipschitz: bad tables refused", test_table_bad},
               {"lipschitz: bad parameters refused", test_lipschitz_bad_parameters},
               {"workload: Lipschitz model and data files", test_lipschitz_workload_files},
               {"workload: Boolean model and data files", test_boolean_workload_files},
               {"cli: construct, usage and bad input", test_cli_construct},
               {"cli: eval and sweep a constructed model", test_cli_lipschitz_sweep});
}
