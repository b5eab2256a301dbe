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

#define APXSIM APXSIM_BUILD_ROOT "/apxsim"

/* Runs a shell command line; returns the exit status and the combined
 * output in out (truncated to len). */
static int run(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t len, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char out[1 << 16];

static void test_version_help_and_usage(void) {
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " --version"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "apxsim 0."));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " --help"), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "sweep"));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM), 2);
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " frobnicate"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "unknown command 'frobnicate'"));
    const char *cmds[] = {"sweep", "eval", "train", "query", "check"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " %s --help", cmds[i]), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Usage: apxsim"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "Example"));
        CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " %s --no-such-option x", cmds[i]), 2);
    }
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " eval m.bnn --ber 2"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--ber needs a rate between 0 and 1"));
}

/* ---- a small synthetic workload -------------------------------------------- */

static void be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (unsigned char)v;
}

static void write_idx(const char *path, uint32_t magic, uint32_t n, int images, rng_stream *s) {
    gzFile f = gzopen(path, "wb");
    unsigned char h[16];
    be32(h, magic);
    be32(h + 4, n);
    be32(h + 8, 28);
    be32(h + 12, 28);
    gzwrite(f, h, images ? 16 : 8);
    for (uint32_t i = 0; i < n * (images ? 784u : 1u); i++) {
        unsigned char v = images ? (unsigned char)rng_below(s, 256) : (unsigned char)rng_below(s, 10);
        gzwrite(f, &v, 1);
    }
    gzclose(f);
}

static const char *data_dir, *model_path;

static void make_workload(void) {
    if (data_dir) return;
    static char dir[512], model[512];
    snprintf(dir, sizeof dir, "%s", test_path("data"));
    mkdir(dir, 0700);
    rng_stream s;
    rng_stream_at(&s, rng_key_make(3, 0, 0), 0, 0);
    char p[600];
    const char *split[] = {"t10k", "train"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, split[i]);
        write_idx(p, 0x803, 60, 1, &s);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, split[i]);
        write_idx(p, 0x801, 60, 0, &s);
    }
    bnn_model m;
    apx_error err = {0};
    uint32_t widths[] = {784, 32, 10};
    CU_ASSERT_EQUAL_FATAL(bnn_create(&m, "cli-test", 28, 28, 2, widths, &err), APX_OK);
    for (uint32_t l = 0; l < m.n_layers; l++) {
        bnn_layer *L = &m.layers[l];
        for (uint32_t r = 0; r < L->out; r++) {
            for (uint32_t c = 0; c < L->in; c++) bnn_weight_set(&m, l, r, c, (int)rng_below(&s, 2));
            if (L->threshold) L->threshold[r] = l == 0 ? (int32_t)rng_below(&s, 4000) - 2000 : 0;
        }
    }
    snprintf(model, sizeof model, "%s", test_path("model.bnn"));
    CU_ASSERT_EQUAL_FATAL(bnn_save(&m, model, &err), APX_OK);
    bnn_free(&m);
    data_dir = dir;
    model_path = model;
}

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

/* Reads a whole file into a malloc'd buffer (NULL if absent). */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void test_sweep_is_deterministic_and_resumable(void) {
    make_workload();
    const char *cfg = write_sweep("ok.yaml", model_path, data_dir, "");
    char db1[512], db2[512];
    snprintf(db1, sizeof db1, "%s", test_path("t1.db"));
    snprintf(db2, sizeof db2, "%s", test_path("t2.db"));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s -j 1", cfg, db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "9 jobs run"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ber=0.01"));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s -j 2 -q", cfg, db2), 0);
    const char *q = " query %s --sql 'SELECT eval_key, chip, n_correct, faults_injected, "
                    "bits_changed FROM evaluations ORDER BY eval_key' --format csv";
    char a[1 << 14], b[1 << 14], cmd[1024];
    snprintf(cmd, sizeof cmd, APXSIM "%s", q);
    CU_ASSERT_EQUAL(run(a, sizeof a, cmd, db1), 0);
    CU_ASSERT_EQUAL(run(b, sizeof b, cmd, db2), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* 9 rows + header; faults grow with ber and are 0 at ber 0. */
    int lines = 0;
    for (char *c = a; *c; c++) lines += *c == '\n';
    CU_ASSERT_EQUAL(lines, 10);
    /* Running again stores nothing new: the keys are already there. */
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s", cfg, db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "0 jobs run, 9 already in the database"));
    CU_ASSERT_EQUAL(run(b, sizeof b, cmd, db1), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* The presets answer in every format. */
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " query %s --format json", db1), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"mean_accuracy\""));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " query %s --preset nope", db1), 2);
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " query %s --sql 'DELETE FROM runs'", db1), 2);
}

/* Bad input of each kind: the specific error, exit 2, and the database
 * byte for byte as it was. */
static void test_bad_input_leaves_database_untouched(void) {
    make_workload();
    char db[512];
    snprintf(db, sizeof db, "%s", test_path("keep.db"));
    const char *good = write_sweep("good.yaml", model_path, data_dir, "");
    CU_ASSERT_EQUAL_FATAL(run(out, sizeof out, APXSIM " sweep %s -o %s -q", good, db), 0);
    size_t len0 = 0, len1 = 0;
    char *before = slurp(db, &len0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);

    /* Malformed YAML: file, line and column. */
    const char bad_yaml[] = "name: x\nchips: [1, 2\n";
    const char *y = test_write_file("bad.yaml", bad_yaml, sizeof bad_yaml - 1);
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s", y, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad.yaml:"));
    /* A misspelt key gets a suggestion. */
    const char *typo = write_sweep("typo.yaml", model_path, data_dir, "chipz: 4\n");
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s", typo, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "did you mean 'chips'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "typo.yaml:12:1"));

    /* A corrupt model file. */
    const char junk[] = "APXSBNN but not really a model";
    const char *bad_model = test_write_file("bad.bnn", junk, sizeof junk - 1);
    const char *m = write_sweep("badmodel.yaml", bad_model, data_dir, "");
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s", m, db), 2);
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
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " sweep %s -o %s", d, db), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "t10k-images-idx3-ubyte.gz"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "magic"));

    /* An operating point out of range, with its position. */
    const char *r = write_sweep("range.yaml", model_path, data_dir, "");
    size_t tl = 0;
    char *t = slurp(r, &tl);
    char *at = strstr(t, "0.2]");
    memcpy(at, "1.5]", 4);
    r = test_write_file("range.yaml", t, tl);
    free(t);
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " check %s", r), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ber must be between 0 and 1"));

    char *after = slurp(db, &len1);
    CU_ASSERT_EQUAL(len0, len1);
    CU_ASSERT(after && memcmp(before, after, len0) == 0);
    free(before);
    free(after);
}

static void test_check_and_eval(void) {
    make_workload();
    const char *cfg = write_sweep("plan.yaml", model_path, data_dir, "");
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " check %s", cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "3 operating points x 3 chips = 9 jobs"));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " eval %s --data %s --json", model_path, data_dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"samples\": 60"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"inferences_per_s\""));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " eval %s --data %s --ber 0.5 --threads 2",
                        model_path, data_dir), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "inferences/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "faults"));
    CU_ASSERT_EQUAL(run(out, sizeof out, APXSIM " eval %s/nonexistent.bnn", data_dir), 2);
}

void add_cli_suite(void) {
    TEST_SUITE("cli", {"version, help and usage", test_version_help_and_usage},
               {"sweep is deterministic and resumable", test_sweep_is_deterministic_and_resumable},
               {"bad input leaves the database untouched", test_bad_input_leaves_database_untouched},
               {"check and eval", test_check_and_eval});
}
