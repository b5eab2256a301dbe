/* test_cli.c - the apxsim binary end to end: exit statuses, help, errors
 * that name file and position, sweeps that are deterministic, resumable and
 * untouched by bad input. Runs build/apxsim on a small synthetic workload
 * (a random 784-32-10 model and a 60-image IDX data set in a temp dir), so
 * it does not need the Fashion-MNIST package. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "../sim/rng.h"
#include "../workloads/bnn.h"
#include "tests.h"


static char out[1 << 16];

static void test_version_help_and_usage(void) {
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " --version"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "apxsim 0."));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " --help"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "sweep"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " frobnicate"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown command 'frobnicate'"));
    const char *cmds[] = {"sweep", "eval", "train", "query", "check"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " %s --help", cmds[i]), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Usage: apxsim"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Example"));
        CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " %s --no-such-option x", cmds[i]), 2);
    }
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval m.bnn --ber 2"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--ber needs a rate between 0 and 1"));
}

/* ---- a small synthetic workload -------------------------------------------- */



static const char *data_dir, *model_path;

static void make_workload(void) { test_workload(&data_dir, &model_path); }


static const char *write_sweep(const char *name, const char *model, const char *data,
                               const char *extra) {
    char text[2048];
    snprintf(text, sizeof text,
             "name: cli\nseed: 5\nchips: 3\noutput: %s\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device:\n  kind: uniform\n"
             "operating_points:\n  ber: [0, 0.01, 0.2]\n%s",
             test_path("unused.db"), model, data, extra);
    return test_write_file(name, text, strlen(text));
}


static void test_sweep_is_deterministic_and_resumable(void) {
    make_workload();
    char cfg[512]; /* test_path's slots are reused: keep a copy */
    snprintf(cfg, sizeof cfg, "%s", write_sweep("ok.yaml", model_path, data_dir, ""));
    char db1[512], db2[512];
    snprintf(db1, sizeof db1, "%s", test_path("t1.db"));
    snprintf(db2, sizeof db2, "%s", test_path("t2.db"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -j 1", cfg, db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "9 jobs run"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ber=0.01"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -j 2 -q", cfg, db2), 0);
    const char *q = " query %s --sql 'SELECT eval_key, chip, n_correct, faults_injected, "
                    "bits_changed FROM evaluations ORDER BY eval_key' --format csv";
    char a[1 << 14], b[1 << 14], cmd[1024];
    snprintf(cmd, sizeof cmd, APXSIM "%s", q);
    CU_ASSERT_EQUAL(test_run(a, sizeof a, cmd, db1), 0);
    CU_ASSERT_EQUAL(test_run(b, sizeof b, cmd, db2), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* 9 rows + header; faults grow with ber and are 0 at ber 0. */
    int lines = 0;
    for (char *c = a; *c; c++) lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, 10);
    /* Running again stores nothing new: the keys are already there. */
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", cfg, db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "0 jobs run, 9 already in the database"));
    CU_ASSERT_EQUAL(test_run(b, sizeof b, cmd, db1), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* Two shards merged give the same rows as one run; merging is idempotent. */
    char s1[512], s2[512], merged[512];
    snprintf(s1, sizeof s1, "%s", test_path("shard1.db"));
    snprintf(s2, sizeof s2, "%s", test_path("shard2.db"));
    snprintf(merged, sizeof merged, "%s", test_path("merged.db"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s --shard 1/2", cfg, s1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "5 jobs run"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s --shard 2/2 -q", cfg, s2), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " merge %s %s %s", merged, s1, s2), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "9 evaluations added, 9 in all"));
    CU_ASSERT_EQUAL(test_run(b, sizeof b, cmd, merged), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " merge %s %s", merged, s2), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "0 evaluations added, 9 in all"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " merge %s %s", merged, merged), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " merge %s %s", merged, cfg), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "not an apxsim results database"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s --shard 3/2", cfg, s1), 2);
    CU_ASSERT_EQUAL(test_run(b, sizeof b, cmd, merged), 0);
    CU_ASSERT_STRING_EQUAL(a, b);

    /* The per-layer fault rows add up to each evaluation's totals. */
    CU_ASSERT_EQUAL(test_run(out, sizeof out,
                             APXSIM " query %s --sql 'SELECT count(*) FROM evaluations e WHERE "
                             "faults_injected != (SELECT sum(faults_injected) FROM layer_faults l "
                             "WHERE l.eval_key = e.eval_key) OR bits_changed != (SELECT "
                             "sum(bits_changed) FROM layer_faults l WHERE l.eval_key = e.eval_key) "
                             "OR 2 != (SELECT count(*) FROM layer_faults l WHERE l.eval_key = "
                             "e.eval_key)' --format csv",
                             db1),
                    0);
    CU_ASSERT_STRING_EQUAL(out, "count(*)\r\n0\r\n");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --preset faults --format csv", db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ber=0.2"));

    /* The presets answer in every format. */
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --format json", db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"mean_accuracy\""));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --preset nope", db1), 2);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --sql 'DELETE FROM runs'", db1), 2);
}

/* Bad input of each kind: the specific error, exit 2, and the database
 * byte for byte as it was. */
static void test_bad_input_leaves_database_untouched(void) {
    make_workload();
    char db[512];
    snprintf(db, sizeof db, "%s", test_path("keep.db"));
    const char *good = write_sweep("good.yaml", model_path, data_dir, "");
    CU_ASSERT_EQUAL_FATAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", good, db), 0);
    size_t len0 = 0, len1 = 0;
    char *before = test_slurp(db, &len0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);

    /* Malformed YAML: file, line and column. */
    const char bad_yaml[] = "name: x\nchips: [1, 2\n";
    const char *y = test_write_file("bad.yaml", bad_yaml, sizeof bad_yaml - 1);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", y, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad.yaml:"));
    /* A misspelt key gets a suggestion. */
    const char *typo = write_sweep("typo.yaml", model_path, data_dir, "chipz: 4\n");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", typo, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "did you mean 'chips'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "typo.yaml:12:1"));

    /* A corrupt model file. */
    const char junk[] = "APXSBNN but not really a model";
    const char *bad_model = test_write_file("bad.bnn", junk, sizeof junk - 1);
    const char *m = write_sweep("badmodel.yaml", bad_model, data_dir, "");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", m, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad.bnn"));

    /* A corrupt IDX file: labels where images belong. */
    char bad_dir[512], cmdline[2048];
    snprintf(bad_dir, sizeof bad_dir, "%s", test_path("baddata"));
    snprintf(cmdline, sizeof cmdline,
             "mkdir -p %s && cp %s/* %s/ && cp %s/t10k-labels-idx1-ubyte.gz "
             "%s/t10k-images-idx3-ubyte.gz",
             bad_dir, data_dir, bad_dir, data_dir, bad_dir);
    CU_ASSERT_EQUAL(system(cmdline), 0);
    const char *d = write_sweep("baddata.yaml", model_path, bad_dir, "");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", d, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "t10k-images-idx3-ubyte.gz"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "magic"));

    /* An operating point out of range, with its position. */
    const char *r = write_sweep("range.yaml", model_path, data_dir, "");
    size_t tl = 0;
    char *t = test_slurp(r, &tl);
    char *at = strstr(t, "0.2]");
    memcpy(at, "1.5]", 4);
    r = test_write_file("range.yaml", t, tl);
    free(t);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", r), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ber must be between 0 and 1"));

    char *after = test_slurp(db, &len1);
    CU_ASSERT_EQUAL(len0, len1);
    CU_ASSERT(after && memcmp(before, after, len0) == 0);
    free(before);
    free(after);
}

static void test_check_and_eval(void) {
    make_workload();
    const char *cfg = write_sweep("plan.yaml", model_path, data_dir, "");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "3 operating points x 3 chips = 9 jobs"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s --data %s --json", model_path, data_dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"samples\": 60"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"inferences_per_s\""));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s --data %s --ber 0.5 --threads 2",
                        model_path, data_dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "inferences/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "faults"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s/nonexistent.bnn", data_dir), 2);
    /* The faulty weights written by --write-model reproduce the faulty
     * predictions when evaluated without faults. */
    char faulty[512], p1[512], p2[512];
    snprintf(faulty, sizeof faulty, "%s", test_path("faulty.bnn"));
    snprintf(p1, sizeof p1, "%s", test_path("pred1.txt"));
    snprintf(p2, sizeof p2, "%s", test_path("pred2.txt"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out,
                        APXSIM " eval %s --data %s --ber 0.2 --chip 4 --write-model %s "
                        "--predictions %s",
                        model_path, data_dir, faulty, p1), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s --data %s --predictions %s", faulty,
                        data_dir, p2), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " eval %s --data %s --predictions %s",
                        model_path, data_dir, test_path("clean.txt")), 0);
    size_t l1 = 0, l2 = 0, l3 = 0;
    char *a = test_slurp(p1, &l1), *b = test_slurp(p2, &l2), *c = test_slurp(test_path("clean.txt"), &l3);
    CU_ASSERT(a && b && c && l1 == l2 && l1 > 60 && memcmp(a, b, l1) == 0);
    /* ... and the faults did change some predictions. */
    CU_ASSERT(a && c && (l1 != l3 || memcmp(a, c, l1) != 0));
    free(a);
    free(b);
    free(c);
}

/* The sum of one column of layer_faults for a layer at a point's ber. */
static long long layer_sum(const char *db, const char *column, int layer, double ber) {
    char cmd[1024], res[256];
    snprintf(cmd, sizeof cmd,
             APXSIM " query %s --format csv --sql 'SELECT sum(l.%s) FROM layer_faults l JOIN "
             "evaluations e USING (eval_key) JOIN op_knobs k ON k.op_key = e.op_key "
             "WHERE l.layer = %d AND k.knob = \"ber\" AND k.value = %g'",
             db, column, layer, ber);
    if (test_run(res, sizeof res, "%s", cmd) != 0) return -1;
    const char *nl = strchr(res, '\n');
    return nl ? atoll(nl + 1) : -1;
}

/* memory.approximate keeps layers out of approximate memory; a partition
 * puts layers at their own point; operating points may be a list; bad
 * layouts are refused with the position and exit 2. */
static void test_layout_and_point_lists(void) {
    make_workload();
    char cfg[512], db[512];
    snprintf(db, sizeof db, "%s", test_db_path("layout.db"));
    snprintf(cfg, sizeof cfg, "%s",
             write_sweep("approx.yaml", model_path, data_dir, "memory:\n  approximate: [1]\n"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 0);
    CU_ASSERT_EQUAL(layer_sum(db, "bits_exposed", 0, 0.2), 0);
    CU_ASSERT_EQUAL(layer_sum(db, "faults_injected", 0, 0.2), 0);
    CU_ASSERT(layer_sum(db, "faults_injected", 1, 0.2) > 0);

    snprintf(db, sizeof db, "%s", test_db_path("partition.db"));
    snprintf(cfg, sizeof cfg, "%s",
             write_sweep("part.yaml", model_path, data_dir,
                         "memory:\n  partitions:\n    - layers: [0]\n"
                         "      operating_point: {ber: 0.3}\n"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 0);
    /* At the sweep's ber 0, layer 0 still fails at its partition's 0.3. */
    long long f0 = layer_sum(db, "faults_injected", 0, 0), b0 = layer_sum(db, "bits_exposed", 0, 0);
    CU_ASSERT(f0 > 0.25 * b0 && f0 < 0.35 * b0);
    CU_ASSERT_EQUAL(layer_sum(db, "faults_injected", 1, 0), 0);

    static const struct { const char *extra, *message; } bad[] = {
        {"memory:\n  approximate: [0, 7]\n", "layer 7 does not exist"},
        {"memory:\n  approximate: [0, 0]\n", "listed twice"},
        {"memory:\n  partitions:\n    - {layers: [0], operating_point: {ber: 0.1}}\n"
         "    - {layers: [0], operating_point: {ber: 0.2}}\n", "in two partitions"},
        {"memory:\n  approximate: [1]\n  partitions:\n"
         "    - {layers: [0], operating_point: {ber: 0.1}}\n", "not in memory.approximate"},
        {"memory:\n  partitions:\n    - {layers: [0]}\n", "needs an operating_point"},
        {"memory:\n  partitions:\n    - {layers: [0], operating_point: {ber: 2}}\n",
         "ber must be between 0 and 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cfg, sizeof cfg, "%s", write_sweep("bad-layout.yaml", model_path, data_dir,
                                                   bad[i].extra));
        CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 2);
        if (!strstr(out, bad[i].message)) fprintf(stderr, "\n%s lacks %s\n", out, bad[i].message);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, bad[i].message));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad-layout.yaml:"));
    }

    /* A list of points instead of a grid. */
    char text[1024];
    snprintf(text, sizeof text,
             "name: list\nseed: 5\nchips: 3\noutput: %s\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device:\n  kind: uniform\n"
             "operating_points:\n  - {ber: 0.01}\n  - {ber: 0.2}\n",
             db, model_path, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("list.yaml", text, strlen(text)));
    snprintf(db, sizeof db, "%s", test_db_path("list.db"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s", cfg, db), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "6 jobs run"));
    snprintf(text, sizeof text,
             "name: list\nseed: 5\noutput: x.db\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device:\n  kind: uniform\n"
             "operating_points:\n  - {ber: 0.01}\n  - {}\n",
             model_path, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("list-bad.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "missing knob 'ber'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "list-bad.yaml:"));
}

/* Two workloads in one sweep: each gets the rows a sweep of it alone gives
 * (same keys, same results: the chips' fault maps do not depend on what
 * else runs), and the same model twice is refused. */
static void test_several_workloads(void) {
    make_workload();
    char m2[512], cfg[512], both[512], alone[512];
    snprintf(m2, sizeof m2, "%s", test_path("second.bnn"));
    CU_ASSERT_EQUAL_FATAL(test_run(out, sizeof out,
                                   APXSIM " eval %s --data %s --ber 0.05 --write-model %s",
                                   model_path, data_dir, m2), 0);
    snprintf(both, sizeof both, "%s", test_db_path("two-workloads.db"));
    snprintf(alone, sizeof alone, "%s", test_db_path("one-workload.db"));
    char text[2048];
    snprintf(text, sizeof text,
             "name: two\nseed: 5\nchips: 3\noutput: %s\n"
             "workloads:\n  - {name: first, model: %s, data_dir: %s}\n"
             "  - {name: second, model: %s, data_dir: %s}\n"
             "device:\n  kind: uniform\noperating_points:\n  ber: [0, 0.01, 0.2]\n",
             both, model_path, data_dir, m2, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("two.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "2 workloads x 3 operating points x 3 chips = 18 jobs"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -q", cfg), 0);
    snprintf(cfg, sizeof cfg, "%s", write_sweep("first.yaml", model_path, data_dir, ""));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, alone), 0);
    const char *q = APXSIM " query %s --format csv --sql 'SELECT eval_key, chip, n_correct, "
                    "faults_injected FROM evaluations WHERE model_hash = (SELECT model_hash "
                    "FROM evaluations WHERE workload = \"%s\" LIMIT 1) ORDER BY eval_key'";
    char a[1 << 14], b[1 << 14];
    CU_ASSERT_EQUAL(test_run(a, sizeof a, q, both, "first"), 0);
    CU_ASSERT_EQUAL(test_run(b, sizeof b, q, alone, model_path), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_EQUAL(test_run(a, sizeof a, APXSIM " query %s --format csv --sql 'SELECT workload,"
                                           " count(*) FROM evaluations GROUP BY workload'", both), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "first,9"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "second,9"));

    snprintf(text, sizeof text,
             "name: dup\noutput: %s\n"
             "workloads:\n  - {name: a, model: %s, data_dir: %s}\n"
             "  - {name: b, model: %s, data_dir: %s}\n"
             "device:\n  kind: uniform\noperating_points:\n  ber: 0\n",
             both, model_path, data_dir, model_path, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("dup.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -q", cfg), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "are the same model on the same data"));
}

/* device: may name a device file; the keys hash its content, so the rows
 * equal those of the same mapping written inline; a missing file is a
 * positioned error. */
static void test_device_file(void) {
    make_workload();
    char dev[512], cfg[512], a_db[512], b_db[512], text[1024];
    static const char device_yaml[] = "kind: uniform\nname: flips\n";
    snprintf(dev, sizeof dev, "%s", test_write_file("flips.yaml", device_yaml,
                                                    sizeof device_yaml - 1));
    snprintf(a_db, sizeof a_db, "%s", test_db_path("devfile.db"));
    snprintf(b_db, sizeof b_db, "%s", test_db_path("inline.db"));
    snprintf(text, sizeof text,
             "name: d\nseed: 5\nchips: 2\noutput: x.db\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device: %s\noperating_points:\n  ber: [0, 0.01]\n", model_path, data_dir, dev);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("devfile.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, a_db), 0);
    snprintf(text, sizeof text,
             "name: d\nseed: 5\nchips: 2\noutput: x.db\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device:\n  kind: uniform\n  name: flips\noperating_points:\n  ber: [0, 0.01]\n",
             model_path, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("inline.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, b_db), 0);
    const char *q = APXSIM " query %s --format csv --sql 'SELECT eval_key, n_correct FROM "
                    "evaluations ORDER BY eval_key'";
    char a[4096], b[4096];
    CU_ASSERT_EQUAL(test_run(a, sizeof a, q, a_db), 0);
    CU_ASSERT_EQUAL(test_run(b, sizeof b, q, b_db), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* the run keeps the device file's path and exact text */
    CU_ASSERT_EQUAL(test_run(a, sizeof a, APXSIM " query %s --format csv --sql 'SELECT "
                                          "device_text FROM runs'", a_db), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "name: flips"));
    snprintf(text, sizeof text,
             "name: d\noutput: x.db\nworkload:\n  model: %s\n  data_dir: %s\n"
             "device: /nonexistent/dev.yaml\noperating_points:\n  ber: 0\n", model_path, data_dir);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("nodev.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, a_db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "nodev.yaml:6:9: device: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "/nonexistent/dev.yaml"));
}

/* apxsim search on the DRAM device: a reference, a coarse point within the
 * budget that saves energy, a per-layer assignment no worse than it within
 * the budget; the same answer twice; JSON that parses; the uniform device
 * (no energy) refused. */
static void test_search(void) {
    make_workload();
    char cfg[512], text[2048], a[8192], b[8192];
    snprintf(text, sizeof text,
             "name: s\nseed: 3\nchips: 2\noutput: x.db\n"
             "workload:\n  model: %s\n  data_dir: %s\n"
             "device: %s/configs/devices/ddr4-2400-8gb-x8.yaml\n"
             "operating_points:\n  vdd: [1.1, 1.0, 0.98]\n  trcd: [13.328, 10]\n",
             model_path, data_dir, APXSIM_SOURCE_ROOT);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("search.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(a, sizeof a, APXSIM " search %s --budget 0.05 -q", cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "one point for all layers: vdd="));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "per-layer partitions:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "layer 1: "));
    CU_ASSERT_EQUAL(test_run(b, sizeof b, APXSIM " search %s --budget 0.05 -q", cfg), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_EQUAL(test_run(a, sizeof a,
                             APXSIM " search %s --budget 0.05 -q --json | python3 -c 'import "
                             "json,sys; r = json.load(sys.stdin)[0]; ref = r[\"reference\"]; "
                             "c = r[\"coarse\"]; p = r[\"partitions\"]; "
                             "assert c[\"energy_pj\"] < ref[\"energy_pj\"]; "
                             "assert c[\"accuracy\"] >= ref[\"accuracy\"] - 0.05; "
                             "assert p[\"energy_pj\"] <= c[\"energy_pj\"] * 1.000001; "
                             "assert p[\"accuracy\"] >= ref[\"accuracy\"] - 0.05; print(\"ok\")'",
                             cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "ok"));
    snprintf(cfg, sizeof cfg, "%s", write_sweep("search-uniform.yaml", model_path, data_dir, ""));
    CU_ASSERT_EQUAL(test_run(a, sizeof a, APXSIM " search %s -q", cfg), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "models no energy"));
}

/* A sweep stores each model's bit-error-tolerance metrics once (the
 * metrics preset shows them), and `metrics: false` leaves them out. */
static void test_sweep_metrics(void) {
    make_workload();
    char cfg[512], db[512], q[1024];
    snprintf(db, sizeof db, "%s", test_db_path("metrics.db"));
    snprintf(cfg, sizeof cfg, "%s", write_sweep("metrics.yaml", model_path, data_dir, ""));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --preset metrics --format csv", db),
                    0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, ",bet.samples,-1,60"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, ",bet.accuracy,-1,"));
    snprintf(q, sizeof q, APXSIM " query %s --format csv --sql 'SELECT count(*) FROM model_metrics'",
             db);
    char before[256], after[256];
    CU_ASSERT_EQUAL(test_run(before, sizeof before, "%s", q), 0);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 0);
    CU_ASSERT_EQUAL(test_run(after, sizeof after, "%s", q), 0);
    CU_ASSERT_STRING_EQUAL(before, after);
    snprintf(db, sizeof db, "%s", test_db_path("nometrics.db"));
    snprintf(cfg, sizeof cfg, "%s", write_sweep("nometrics.yaml", model_path, data_dir,
                                                "metrics: false\n"));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -q", cfg, db), 0);
    snprintf(q, sizeof q, APXSIM " query %s --format csv --sql 'SELECT count(*) AS n FROM "
                          "model_metrics'", db);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, "%s", q), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "n\r\n0"));
}

void add_cli_suite(void) {
    TEST_SUITE("cli", {"version, help and usage", test_version_help_and_usage},
               {"sweep is deterministic and resumable", test_sweep_is_deterministic_and_resumable},
               {"bad input leaves the database untouched", test_bad_input_leaves_database_untouched},
               {"check and eval", test_check_and_eval},
               {"memory layout and point lists", test_layout_and_point_lists},
               {"several workloads in one sweep", test_several_workloads},
               {"a device named by its file", test_device_file},
               {"search", test_search},
               {"sweeps store the models' metrics", test_sweep_metrics});
}
