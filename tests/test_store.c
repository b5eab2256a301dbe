/* test_store.c - the results database (sim/store.h).
 *
 * The foreign and newer-version files are made with the SQLite API directly,
 * as another program would make them; everything else goes through the
 * store's own functions. */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/store.h"
#include "tests.h"

static int file_exists(const char *path) {
    return access(path, F_OK) == 0;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap && !(buf = realloc(buf, (cap = cap * 2 + 4096)))) break;
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* Runs a query and returns its output (caller frees), or NULL with err set. */
static char *query(store *s, const char *sql, enum store_format fmt, apx_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return NULL;
    int rc = store_print_query(s, sql, fmt, out, err);
    fclose(out);
    if (rc != APX_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The single value of a one-row, one-column query, as CSV text. */
static int query_equals(store *s, const char *sql, const char *expected_csv) {
    apx_error err = {0};
    char *got = query(s, sql, STORE_CSV, &err);
    int same = got && strcmp(got, expected_csv) == 0;
    if (!same) fprintf(stderr, "\n%s\n  got: [%s]%s\n  want: [%s]\n", sql, got ? got : "(error)",
                       got ? "" : err.msg, expected_csv);
    free(got);
    return same;
}

static int64_t count_rows(store *s, const char *table) {
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    apx_error err = {0};
    char *got = query(s, sql, STORE_CSV, &err);
    long long n = -1;
    if (!got || sscanf(got, "count(*)\r\n%lld", &n) != 1) n = -1;
    free(got);
    return n;
}

static store *open_ok(const char *path) {
    store *s = NULL;
    apx_error err = {0};
    int rc = store_open(path, &s, &err);
    if (rc != APX_OK) fprintf(stderr, "\nstore_open: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == APX_OK && s != NULL);
    return s;
}

static int64_t begin_run(store *s) {
    store_run run = {.campaign = "test", .config_path = "configs/sweeps/t.yaml",
                     .config_text = "sweep: {}\n", .tool_version = "0.1.0", .seed = 42};
    int64_t id = 0;
    apx_error err = {0};
    CU_ASSERT_FATAL(store_run_begin(s, &run, &id, &err) == APX_OK);
    return id;
}

static const char *const ber_knob[] = {"ber"};
static const char *const dram_knobs[] = {"vdd", "trcd"};
static const double dram_values[] = {1.05, 9.5};

/* An evaluation at one "ber" point; values must outlive the call. */
static store_eval ber_eval(const char *key, int64_t run, const char *op_key, const double *ber,
                           uint32_t chip, uint32_t n_correct) {
    return (store_eval){.eval_key = key, .run_id = run, .campaign = "test", .op_key = op_key,
                        .device = "uniform", .op_label = "ber", .knobs = ber_knob,
                        .values = ber, .n_knobs = 1, .chip = chip, .workload = "mlp",
                        .model_path = "m.bnn", .model_hash = "abc", .dataset = "fmnist/test",
                        .n_samples = 10, .n_correct = n_correct, .bits_exposed = 1000,
                        .faults_injected = 3, .bits_changed = 2, .seconds = 0.5};
}

static int put(store *s, const store_eval *e, int *inserted, apx_error *err) {
    int dummy;
    return store_put_eval(s, e, inserted ? inserted : &dummy, err);
}

/* ------------------------------------------------------------------ tests */

static void test_fresh_database(void) {
    const char *path = test_db_path("fresh.db");
    store *s = open_ok(path);
    CU_ASSERT_EQUAL(store_schema_version(s), STORE_SCHEMA_VERSION);
    CU_ASSERT(query_equals(s, "PRAGMA user_version", "user_version\r\n4\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA journal_mode", "journal_mode\r\nwal\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA application_id", "application_id\r\n1095784531\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA foreign_keys", "foreign_keys\r\n1\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA busy_timeout", "timeout\r\n5000\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA synchronous", "synchronous\r\n1\r\n")); /* NORMAL */
    CU_ASSERT(query_equals(s,
                           "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master"
                           " WHERE type IN ('table', 'view') ORDER BY name)",
                           "\"group_concat(name, ' ')\"\r\naccuracy_by_point eval_costs evaluations "
                           "evaluations_flat faults_by_layer layer_faults model_metrics op_knobs "
                           "operating_points runs\r\n"));
    int64_t n = -1;
    apx_error err = {0};
    CU_ASSERT(store_count_evals(s, &n, &err) == APX_OK && n == 0);
    store_close(s);
}

static void test_reopen_is_idempotent(void) {
    const char *path = test_db_path("reopen.db");
    store *s = open_ok(path);
    const char *schema_sql = "SELECT group_concat(sql, ';') FROM sqlite_master";
    apx_error err = {0};
    char *schema1 = query(s, schema_sql, STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(schema1);
    double ber = 1e-3;
    store_eval e = ber_eval("k1", begin_run(s), "op1", &ber, 0, 9);
    CU_ASSERT(put(s, &e, NULL, &err) == APX_OK);
    store_close(s);

    for (int round = 0; round < 2; round++) {
        s = open_ok(path);
        CU_ASSERT_EQUAL(store_schema_version(s), STORE_SCHEMA_VERSION);
        char *schema2 = query(s, schema_sql, STORE_CSV, &err);
        CU_ASSERT(schema2 && strcmp(schema1, schema2) == 0);
        free(schema2);
        CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 1);
        CU_ASSERT_EQUAL(count_rows(s, "runs"), 1);
        store_close(s);
    }
    CU_ASSERT(store_open_readonly(path, &s, &err) == APX_OK);
    CU_ASSERT_EQUAL(store_schema_version(s), STORE_SCHEMA_VERSION);
    int64_t n = 0;
    CU_ASSERT(store_count_evals(s, &n, &err) == APX_OK && n == 1);
    store_close(s);
    free(schema1);
}

static void test_runs(void) {
    store *s = open_ok(test_db_path("runs.db"));
    apx_error err = {0};
    store_run run = {.campaign = "volt", .config_path = NULL, .config_text = "a: 1\n",
                     .tool_version = "9.9", .seed = UINT64_MAX};
    int64_t id1 = 0, id2 = 0;
    CU_ASSERT_FATAL(store_run_begin(s, &run, &id1, &err) == APX_OK);
    run.seed = 7;
    CU_ASSERT_FATAL(store_run_begin(s, &run, &id2, &err) == APX_OK);
    CU_ASSERT(id1 > 0 && id2 > 0 && id1 != id2);

    char host[256] = "";
    gethostname(host, sizeof host);
    char sql[512], want[1024];
    snprintf(sql, sizeof sql,
             "SELECT campaign, config_path IS NULL, config_text, tool_version, seed, host,"
             " status, ended_at IS NULL,"
             " started_at GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:"
             "[0-5][0-9]:[0-6][0-9]Z' AS iso FROM runs WHERE run_id = %lld",
             (long long)id1);
    snprintf(want, sizeof want,
             "campaign,config_path IS NULL,config_text,tool_version,seed,host,status,"
             "ended_at IS NULL,iso\r\nvolt,1,\"a: 1\n\",9.9,-1,%s,running,1,1\r\n",
             host);
    CU_ASSERT(query_equals(s, sql, want));

    CU_ASSERT(store_run_end(s, id1, "done", &err) == APX_OK);
    snprintf(sql, sizeof sql,
             "SELECT status, ended_at GLOB '[0-9][0-9][0-9][0-9]-*T*:*:*Z' AS iso, ended_at >= started_at"
             " AS ordered FROM runs WHERE run_id = %lld",
             (long long)id1);
    CU_ASSERT(query_equals(s, sql, "status,iso,ordered\r\ndone,1,1\r\n"));
    snprintf(sql, sizeof sql, "SELECT status, seed FROM runs WHERE run_id = %lld",
             (long long)id2);
    CU_ASSERT(query_equals(s, sql, "status,seed\r\nrunning,7\r\n"));

    CU_ASSERT_EQUAL(store_run_end(s, id2, "finished", &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "finished"));
    CU_ASSERT_EQUAL(store_run_end(s, id2, NULL, &err), APX_EINPUT);
    int64_t missing = id1 ^ id2 ? (id1 ^ id2) : 1;
    CU_ASSERT_EQUAL(store_run_end(s, missing, "failed", &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no run"));
    run.campaign = NULL;
    CU_ASSERT_EQUAL(store_run_begin(s, &run, &id2, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(count_rows(s, "runs"), 2);
    store_close(s);
}

static void test_put_eval_once(void) {
    store *s = open_ok(test_db_path("put.db"));
    apx_error err = {0};
    int64_t run = begin_run(s);
    store_eval e = {.eval_key = "e1", .run_id = run, .campaign = "test", .op_key = "dram-1",
                    .device = "dram", .op_label = "vdd=1.05 trcd=9.5", .knobs = dram_knobs,
                    .values = dram_values, .n_knobs = 2, .chip = 3, .workload = "mlp",
                    .dataset = "fmnist/test", .n_samples = 200, .n_correct = 150,
                    .bits_exposed = 1 << 20, .faults_injected = 17, .bits_changed = 9,
                    .seconds = 1.25};
    int inserted = -1, exists = -1;
    CU_ASSERT(store_has_eval(s, "e1", &exists, &err) == APX_OK && exists == 0);
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT(store_has_eval(s, "e1", &exists, &err) == APX_OK && exists == 1);
    const char *row_sql =
        "SELECT eval_key, campaign, op_key, chip, workload, model_path, dataset, n_samples,"
        " n_correct, accuracy, bits_exposed, faults_injected, bits_changed, seconds"
        " FROM evaluations";
    char *row1 = query(s, row_sql, STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(row1);
    CU_ASSERT_STRING_EQUAL(row1,
                           "eval_key,campaign,op_key,chip,workload,model_path,dataset,n_samples,"
                           "n_correct,accuracy,bits_exposed,faults_injected,bits_changed,"
                           "seconds\r\ne1,test,dram-1,3,mlp,,fmnist/test,200,150,0.75,1048576,"
                           "17,9,1.25\r\n");

    /* Same key again, even with other numbers: nothing changes. */
    e.n_correct = 10;
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 0);
    char *row2 = query(s, row_sql, STORE_CSV, &err);
    CU_ASSERT(row2 && strcmp(row1, row2) == 0);
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 2);
    CU_ASSERT(query_equals(s, "SELECT knob, value FROM op_knobs ORDER BY knob",
                           "knob,value\r\ntrcd,9.5\r\nvdd,1.05\r\n"));
    CU_ASSERT(query_equals(s, "SELECT device, label, sort_key FROM operating_points",
                           "device,label,sort_key\r\ndram,vdd=1.05 trcd=9.5,1.05\r\n"));
    CU_ASSERT(store_has_eval(s, "e2", &exists, &err) == APX_OK && exists == 0);
    free(row1);
    free(row2);
    store_close(s);
}

static void test_shared_operating_point(void) {
    store *s = open_ok(test_db_path("shared.db"));
    apx_error err = {0};
    int64_t run = begin_run(s);
    double ber = 1e-4;
    store_eval a = ber_eval("chip0", run, "p", &ber, 0, 8);
    store_eval b = ber_eval("chip1", run, "p", &ber, 1, 6);
    int inserted = 0;
    CU_ASSERT(put(s, &a, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT(put(s, &b, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 2);
    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 1);
    CU_ASSERT(query_equals(s,
                           "SELECT eval_key, device, label, sort_key, accuracy"
                           " FROM evaluations_flat ORDER BY chip",
                           "eval_key,device,label,sort_key,accuracy\r\n"
                           "chip0,uniform,ber,0.0001,0.8\r\nchip1,uniform,ber,0.0001,0.6\r\n"));
    store_close(s);
}

static void test_accuracy_by_point(void) {
    const char *path = test_db_path("accuracy.db");
    store *s = open_ok(path);
    apx_error err = {0};
    int64_t run = begin_run(s);
    static const double mild = 0.001, harsh = 0.01;
    /* The harsh point first, so that the order of the view is not the order
     * of insertion. */
    store_eval evals[] = {
        ber_eval("h0", run, "harsh", &harsh, 0, 3), ber_eval("m0", run, "mild", &mild, 0, 5),
        ber_eval("m1", run, "mild", &mild, 1, 7),   ber_eval("m2", run, "mild", &mild, 2, 9),
        ber_eval("x0", run, "mild", &mild, 0, 1),
    };
    evals[4].workload = "cnn"; /* another network at the same point: its own row */
    for (size_t i = 0; i < sizeof evals / sizeof evals[0]; i++)
        CU_ASSERT(put(s, &evals[i], NULL, &err) == APX_OK);

    char *csv = query(s,
                      "SELECT chips, mean_accuracy, std_accuracy, min_accuracy, max_accuracy"
                      " FROM accuracy_by_point WHERE op_key = 'mild' AND workload = 'mlp'",
                      STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    int chips = 0;
    double mean = 0, std = 0, lo = 0, hi = 0;
    CU_ASSERT_EQUAL(sscanf(csv, "chips,mean_accuracy,std_accuracy,min_accuracy,max_accuracy\r\n"
                                "%d,%lf,%lf,%lf,%lf",
                           &chips, &mean, &std, &lo, &hi),
                    5);
    CU_ASSERT_EQUAL(chips, 3);
    CU_ASSERT_DOUBLE_EQUAL(mean, 0.7, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(std, 0.2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(lo, 0.5, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(hi, 0.9, 1e-15);
    free(csv);
    /* One chip: a standard deviation of 0, not NULL. */
    CU_ASSERT(query_equals(s,
                           "SELECT workload, chips, mean_accuracy, std_accuracy"
                           " FROM accuracy_by_point WHERE op_key = 'harsh' OR workload = 'cnn'"
                           " ORDER BY workload",
                           "workload,chips,mean_accuracy,std_accuracy\r\n"
                           "cnn,1,0.1,0.0\r\nmlp,1,0.3,0.0\r\n"));

    /* Identical chips: exactly 0, not the rounding noise of sum-of-squares. */
    store_eval same[] = {ber_eval("s0", run, "harsh", &harsh, 0, 7),
                         ber_eval("s1", run, "harsh", &harsh, 1, 7),
                         ber_eval("s2", run, "harsh", &harsh, 2, 7)};
    for (size_t i = 0; i < 3; i++) {
        same[i].workload = "same";
        CU_ASSERT(put(s, &same[i], NULL, &err) == APX_OK);
    }
    CU_ASSERT(query_equals(s,
                           "SELECT chips, std_accuracy FROM accuracy_by_point"
                           " WHERE workload = 'same'",
                           "chips,std_accuracy\r\n3,0.0\r\n"));
    CU_ASSERT(query_equals(s, "DELETE FROM evaluations WHERE workload = 'same' RETURNING chip",
                           "chip\r\n0\r\n1\r\n2\r\n"));

    /* The preset: mild point before harsh, whatever the insertion order. */
    const char *preset = store_preset_sql("accuracy");
    CU_ASSERT_PTR_NOT_NULL_FATAL(preset);
    char *table = query(s, preset, STORE_TABLE, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(table);
    CU_ASSERT_STRING_EQUAL(
        table,
        "campaign  workload  dataset      device   operating_point  chips  mean_accuracy"
        "  std_accuracy  min_accuracy  max_accuracy\n"
        "--------  --------  -----------  -------  ---------------  -----  -------------"
        "  ------------  ------------  ------------\n"
        "test      cnn       fmnist/test  uniform  ber                  1            0.1"
        "             0           0.1           0.1\n"
        "test      mlp       fmnist/test  uniform  ber                  3            0.7"
        "           0.2           0.5           0.9\n"
        "test      mlp       fmnist/test  uniform  ber                  1            0.3"
        "             0           0.3           0.3\n");
    free(table);
    store_close(s);

    /* The view works on a read-only handle too (sqrt and all). */
    CU_ASSERT_FATAL(store_open_readonly(path, &s, &err) == APX_OK);
    CU_ASSERT(query_equals(s,
                           "SELECT round(std_accuracy, 9) AS s FROM accuracy_by_point"
                           " WHERE chips = 3",
                           "s\r\n0.2\r\n"));
    store_close(s);
}

static void test_failed_put_changes_nothing(void) {
    store *s = open_ok(test_db_path("rollback.db"));
    apx_error err = {0};
    int64_t run = begin_run(s);
    double ber = 0.5, other = 0.25, nan_value = NAN;
    store_eval good = ber_eval("good", run, "p1", &ber, 0, 5);
    int inserted = -1;
    CU_ASSERT_FATAL(put(s, &good, &inserted, &err) == APX_OK && inserted == 1);

    /* A new point, then an evaluation whose run does not exist: the point
     * was already inserted inside the transaction and must go again. */
    store_eval bad = ber_eval("bad", run == 1 ? 2 : 1, "p2", &other, 0, 5);
    CU_ASSERT_EQUAL(put(s, &bad, &inserted, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(inserted, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "FOREIGN KEY"));
    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 1);

    /* A known op_key described as another point. */
    store_eval clash = ber_eval("clash", run, "p1", &other, 1, 5);
    CU_ASSERT_EQUAL(put(s, &clash, &inserted, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "already stored"));
    clash.values = &ber;
    clash.op_label = "ber=other";
    CU_ASSERT_EQUAL(put(s, &clash, &inserted, &err), APX_EINPUT);

    /* Bad fields, refused before anything is written. */
    store_eval broken = ber_eval(NULL, run, "p3", &other, 0, 5);
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "eval_key"));
    broken = ber_eval("b", run, "p3", &other, 0, 11); /* 11 of 10 correct */
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);
    broken = ber_eval("b", run, "p3", &nan_value, 0, 5);
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);
    static const char *const twice[] = {"ber", "ber"};
    static const double two[] = {0.1, 0.2};
    broken = ber_eval("b", run, "p3", two, 0, 5);
    broken.knobs = twice;
    broken.n_knobs = 2;
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "twice"));
    broken = ber_eval("b", run, "p3", &other, 0, 5);
    broken.dataset = NULL;
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);
    broken = ber_eval("b", run, "p3", &other, 0, 5);
    broken.bits_changed = UINT64_MAX;
    CU_ASSERT_EQUAL(put(s, &broken, &inserted, &err), APX_EINPUT);

    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 1);

    /* No transaction was left open: the next good evaluation lands. */
    bad.run_id = run;
    CU_ASSERT(put(s, &bad, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 2);
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 2);
    store_close(s);
}

/* Makes a SQLite file as another program would. */
static void make_sqlite_file(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
    CU_ASSERT_FATAL(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

/* Both open calls refuse the file, the message says expected, and the file
 * is byte for byte what it was. */
static void assert_refused(const char *path, const char *expected) {
    size_t len1 = 0, len2 = 0;
    char *before = read_all(path, &len1);
    for (int readonly = 0; readonly < 2; readonly++) {
        store *s = (store *)1;
        apx_error err = {0};
        int rc = readonly ? store_open_readonly(path, &s, &err) : store_open(path, &s, &err);
        CU_ASSERT_EQUAL(rc, APX_EINPUT);
        CU_ASSERT_PTR_NULL(s);
        if (!strstr(err.msg, expected))
            fprintf(stderr, "\nmessage [%s] lacks [%s]\n", err.msg, expected);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, expected));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));
    }
    char *after = read_all(path, &len2);
    CU_ASSERT(before && after && len1 == len2 && memcmp(before, after, len1) == 0);
    /* WAL not turned on: no log with content next to the file. */
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    size_t wal_len = 0;
    char *log = read_all(wal, &wal_len);
    CU_ASSERT(!log || wal_len == 0);
    free(log);
    free(before);
    free(after);
}

static void test_foreign_sqlite_refused(void) {
    const char *path = test_db_path("foreign.db");
    make_sqlite_file(path, "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
    assert_refused(path, "is not an apxsim results database");

    /* Another program's versioned schema, even at our version number. */
    path = test_db_path("foreign-versioned.db");
    make_sqlite_file(path, "CREATE TABLE runs (x); PRAGMA user_version = 1;");
    assert_refused(path, "is not an apxsim results database");

    /* Someone else's application_id on an otherwise empty file. */
    path = test_db_path("foreign-appid.db");
    make_sqlite_file(path, "PRAGMA application_id = 42; CREATE TABLE t (x); DROP TABLE t;");
    assert_refused(path, "is not an apxsim results database");
}

static void test_newer_version_refused(void) {
    const char *path = test_db_path("newer.db");
    store_close(open_ok(path));
    make_sqlite_file(path, "PRAGMA user_version = 5;");
    assert_refused(path, "was written by a newer apxsim (schema 5, this build knows 4)");
}

static void test_garbage_refused(void) {
    char text[4096];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 26);
    const char *path = test_write_file("garbage.db", text, sizeof text);
    assert_refused(path, "is not an apxsim results database");

    /* The SQLite magic, then nonsense. */
    unsigned char fake[1024];
    memset(fake, 0xA5, sizeof fake);
    memcpy(fake, "SQLite format 3", 16);
    path = test_write_file("fake-header.db", fake, sizeof fake);
    store *s = NULL;
    apx_error err = {0};
    CU_ASSERT_EQUAL(store_open(path, &s, &err), APX_EINPUT);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, path));

    /* An empty file is not a database to read from. */
    path = test_write_file("empty.db", "", 0);
    CU_ASSERT_EQUAL(store_open_readonly(path, &s, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "is not an apxsim results database"));

    /* Missing files: not created by a read-only open, and a clear message
     * for a directory that does not exist. */
    path = test_db_path("missing.db");
    CU_ASSERT_EQUAL(store_open_readonly(path, &s, &err), APX_EINPUT);
    CU_ASSERT_FALSE(file_exists(path));
    path = test_path("no/such/dir/x.db");
    CU_ASSERT_NOT_EQUAL(store_open(path, &s, &err), APX_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no/such/dir/x.db"));
    CU_ASSERT_EQUAL(store_open(NULL, &s, &err), APX_EINPUT);
}

static void test_readonly_refuses_writes(void) {
    const char *path = test_db_path("readonly.db");
    store *s = open_ok(path);
    apx_error err = {0};
    double ber = 0.1;
    store_eval e = ber_eval("k", begin_run(s), "p", &ber, 0, 5);
    CU_ASSERT(put(s, &e, NULL, &err) == APX_OK);
    store_close(s);

    CU_ASSERT_FATAL(store_open_readonly(path, &s, &err) == APX_OK);
    static const char *const writes[] = {
        ("INSERT INTO runs (campaign, config_text, tool_version, seed, host, started_at)"
         " VALUES ('x', '', '', 0, 'h', 't')"),
        "DELETE FROM evaluations",
        "UPDATE operating_points SET label = 'x'",
        "PRAGMA user_version = 7",
        "DROP VIEW accuracy_by_point",
    };
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        char *out = query(s, writes[i], STORE_TABLE, &err);
        CU_ASSERT_PTR_NULL(out);
        CU_ASSERT_EQUAL(err.code, APX_EINPUT);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "read-only"));
        free(out);
    }
    int inserted = 0;
    e.eval_key = "k2";
    CU_ASSERT_NOT_EQUAL(put(s, &e, &inserted, &err), APX_OK);
    CU_ASSERT(query_equals(s, "SELECT count(*) AS n FROM evaluations", "n\r\n1\r\n"));
    CU_ASSERT(query_equals(s, "PRAGMA user_version", "user_version\r\n4\r\n"));
    CU_ASSERT(query_equals(s, "SELECT label FROM operating_points", "label\r\nber\r\n"));
    store_close(s);
}

static void test_output_formats(void) {
    store *s = open_ok(test_db_path("formats.db"));
    apx_error err = {0};
    const char *sql = "SELECT 1 AS n, 'a,b \"c\"' AS label, 0.25 AS x, NULL AS z"
                      " UNION ALL SELECT 22, 'tab' || char(9) || 'nl' || char(10) || 'end\\',"
                      " -1.5, 'µs'";
    char *csv = query(s, sql, STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    CU_ASSERT_STRING_EQUAL(csv, "n,label,x,z\r\n"
                                "1,\"a,b \"\"c\"\"\",0.25,\r\n"
                                "22,\"tab\tnl\nend\\\",-1.5,µs\r\n");
    char *json = query(s, sql, STORE_JSON, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_STRING_EQUAL(json, "[\n"
                                 "  {\"n\": 1, \"label\": \"a,b \\\"c\\\"\", \"x\": 0.25, "
                                 "\"z\": null},\n"
                                 "  {\"n\": 22, \"label\": \"tab\\tnl\\nend\\\\\", \"x\": -1.5, "
                                 "\"z\": \"µs\"}\n"
                                 "]\n");
    char *table = query(s, sql, STORE_TABLE, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(table);
    CU_ASSERT_STRING_EQUAL(table, " n  label             x  z\n"
                                  "--  -------------  ----  ----\n"
                                  " 1  a,b \"c\"        0.25  NULL\n"
                                  "22  tab\\tnl\\nend\\  -1.5  µs\n");
    free(csv);
    free(json);
    free(table);

    /* Numbers: integers in full, reals exactly in CSV and JSON (and still
     * reals when integral), %.6g in the table; an empty string is not NULL;
     * control characters and invalid UTF-8 in JSON strings. */
    sql = "SELECT 9007199254740993 AS i, 2.0 AS r, 1.0 / 3 AS third, 1e308 * 10 AS inf,"
          " '' AS empty, char(1) || CAST(x'ff41' AS TEXT) AS odd, x'00ff' AS blob";
    csv = query(s, sql, STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(csv);
    CU_ASSERT_STRING_EQUAL(csv, "i,r,third,inf,empty,odd,blob\r\n"
                                "9007199254740993,2.0,0.3333333333333333,inf,\"\",\001\377A,"
                                "00ff\r\n");
    json = query(s, sql, STORE_JSON, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_STRING_EQUAL(json, "[\n  {\"i\": 9007199254740993, \"r\": 2.0, "
                                 "\"third\": 0.3333333333333333, \"inf\": null, \"empty\": \"\", "
                                 "\"odd\": \"\\u0001\\ufffdA\", \"blob\": \"00ff\"}\n]\n");
    free(csv);
    free(json);
    table = query(s, "SELECT 1.0 / 3 AS third, 2.0 AS r", STORE_TABLE, &err);
    CU_ASSERT(table && strcmp(table, "   third  r\n--------  -\n0.333333  2\n") == 0);
    free(table);

    /* Empty results. */
    sql = "SELECT label FROM operating_points";
    table = query(s, sql, STORE_TABLE, &err);
    csv = query(s, sql, STORE_CSV, &err);
    json = query(s, sql, STORE_JSON, &err);
    CU_ASSERT(table && strcmp(table, "(no rows)\n") == 0);
    CU_ASSERT(csv && strcmp(csv, "label\r\n") == 0);
    CU_ASSERT(json && strcmp(json, "[]\n") == 0);
    free(table);
    free(csv);
    free(json);

    /* A label with a comma and a quote, through the store and back. */
    double v = 1.5;
    store_eval e = ber_eval("q", begin_run(s), "p", &v, 0, 5);
    e.op_label = "vdd=1,5 \"low\"";
    CU_ASSERT(put(s, &e, NULL, &err) == APX_OK);
    CU_ASSERT(query_equals(s, sql, "label\r\n\"vdd=1,5 \"\"low\"\"\"\r\n"));
    json = query(s, sql, STORE_JSON, &err);
    CU_ASSERT(json && strcmp(json, "[\n  {\"label\": \"vdd=1,5 \\\"low\\\"\"}\n]\n") == 0);
    free(json);
    store_close(s);
}

static void test_one_statement_only(void) {
    store *s = open_ok(test_db_path("statements.db"));
    apx_error err = {0};
    static const char *const refused[] = {
        "SELECT 1; SELECT 2",
        "SELECT 1; DELETE FROM runs",
        "SELECT 1; garbage",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        CU_ASSERT_EQUAL(store_print_query(s, refused[i], STORE_CSV, out, &err), APX_EINPUT);
        fclose(out);
        CU_ASSERT_EQUAL(len, 0); /* nothing printed */
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "only one statement per query"));
        free(buf);
    }
    /* Blanks and comments after the statement are fine. */
    CU_ASSERT(query_equals(s, "SELECT 1 AS one; -- done\n  /* really */ ", "one\r\n1\r\n"));
    CU_ASSERT_PTR_NULL(query(s, "", STORE_CSV, &err));
    CU_ASSERT_EQUAL(err.code, APX_EINPUT);
    CU_ASSERT_PTR_NULL(query(s, "  -- nothing\n", STORE_CSV, &err));
    CU_ASSERT_PTR_NULL(query(s, "SELEKT 1", STORE_CSV, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "syntax error"));
    CU_ASSERT_PTR_NULL(query(s, "SELECT nope FROM runs", STORE_CSV, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "nope"));
    CU_ASSERT_EQUAL(count_rows(s, "runs"), 0);
    /* A transaction left open by a query would hold back every later put. */
    CU_ASSERT_PTR_NULL(query(s, "BEGIN", STORE_CSV, &err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "transaction"));
    double ber = 0.1;
    store_eval e = ber_eval("after-begin", begin_run(s), "p", &ber, 0, 5);
    CU_ASSERT(put(s, &e, NULL, &err) == APX_OK);
    store_close(s);
    s = open_ok(test_path("statements.db"));
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 1);
    store_close(s);
}

static void test_presets(void) {
    CU_ASSERT_PTR_NULL(store_preset_sql("no-such-preset"));
    CU_ASSERT_PTR_NULL(store_preset_sql(NULL));
    int found = 0;
    for (size_t i = 0; store_preset_names[i]; i++) {
        CU_ASSERT_PTR_NOT_NULL(store_preset_sql(store_preset_names[i]));
        if (strcmp(store_preset_names[i], "accuracy") == 0) found |= 1;
        if (strcmp(store_preset_names[i], "faults") == 0) found |= 2;
    }
    CU_ASSERT_EQUAL(found, 3);
    /* Compiled in verbatim. */
    char *text = read_all(APXSIM_SOURCE_ROOT "/results/presets/accuracy.sql", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_STRING_EQUAL(store_preset_sql("accuracy"), text);
    free(text);
    /* Every preset runs on a new, empty database. */
    store *s = open_ok(test_db_path("presets.db"));
    apx_error err = {0};
    for (size_t i = 0; store_preset_names[i]; i++) {
        char *out = query(s, store_preset_sql(store_preset_names[i]), STORE_JSON, &err);
        CU_ASSERT(out && strcmp(out, "[]\n") == 0);
        free(out);
    }
    store_close(s);
}

/* ------------------------------------------------- schema 2: layer faults */

/* A version 1 database as version 1 of apxsim left it: made here with the
 * version 1 migration text, one run, one point and one evaluation. */
static void make_v1_database(const char *path) {
    const char *v1 = store_migration_sql(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
    CU_ASSERT_PTR_NULL(store_migration_sql(STORE_SCHEMA_VERSION));
    CU_ASSERT_PTR_NULL(store_migration_sql(-1));
    sqlite3 *db = NULL;
    CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
    CU_ASSERT_FATAL(sqlite3_exec(db, "PRAGMA application_id = 1095784531", NULL, NULL, NULL) ==
                    SQLITE_OK);
    CU_ASSERT_FATAL(sqlite3_exec(db, v1, NULL, NULL, NULL) == SQLITE_OK);
    CU_ASSERT_FATAL(
        sqlite3_exec(db,
                     "PRAGMA user_version = 1;"
                     "INSERT INTO runs (run_id, campaign, config_text, tool_version, seed, host,"
                     " started_at, status) VALUES (7, 'old', 'x', '0.1', 1, 'h',"
                     " '2024-01-01T00:00:00Z', 'done');"
                     "INSERT INTO operating_points VALUES ('p', 'uniform', 'ber=0.01', 0.01);"
                     "INSERT INTO op_knobs VALUES ('p', 'ber', 0.01);"
                     "INSERT INTO evaluations VALUES ('e1', 7, 'old', 'p', 0, 'mlp', 'm.bnn',"
                     " 'abc', 'fmnist/test', 10, 7, 0.7, 1000, 12, 6, 0.5,"
                     " '2024-01-01T00:00:01Z');",
                     NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

static void test_migrate_v1(void) {
    const char *path = test_db_path("v1.db");
    make_v1_database(path);
    const char *row_sql = "SELECT group_concat(eval_key || ',' || run_id || ',' || op_key || ','"
                          " || n_correct || ',' || faults_injected || ',' || bits_changed || ','"
                          " || created_at, ';') AS r FROM evaluations";
    const char *row = "r\r\n\"e1,7,p,7,12,6,2024-01-01T00:00:01Z\"\r\n";

    /* Read-only: readable as it is, and not migrated. */
    store *s = NULL;
    apx_error err = {0};
    CU_ASSERT_FATAL(store_open_readonly(path, &s, &err) == APX_OK);
    CU_ASSERT_EQUAL(store_schema_version(s), 1);
    CU_ASSERT(query_equals(s, row_sql, row));
    store_close(s);
    CU_ASSERT_FATAL(store_open_readonly(path, &s, &err) == APX_OK);
    CU_ASSERT(query_equals(s, "PRAGMA user_version", "user_version\r\n1\r\n"));
    store_close(s);

    /* Open for writing: migrated to the current version, rows kept, the new table and view
     * there, and a layer row can be added to the old evaluation's key. */
    s = open_ok(path);
    CU_ASSERT_EQUAL(store_schema_version(s), STORE_SCHEMA_VERSION);
    CU_ASSERT(query_equals(s, "PRAGMA user_version", "user_version\r\n4\r\n"));
    CU_ASSERT(query_equals(s, row_sql, row));
    CU_ASSERT_EQUAL(count_rows(s, "runs"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "layer_faults"), 0);
    CU_ASSERT_EQUAL(count_rows(s, "faults_by_layer"), 0);
    CU_ASSERT_EQUAL(count_rows(s, "accuracy_by_point"), 1);
    double ber = 0.01;
    store_eval e = ber_eval("e2", 7, "p", &ber, 1, 8);
    e.op_label = "ber=0.01";
    store_layer_faults lf[] = {{600, 7, 3}, {400, 5, 2}};
    e.layers = lf;
    e.n_layers = 2;
    int inserted = 0;
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT_EQUAL(count_rows(s, "layer_faults"), 2);
    store_close(s);

    /* The same schema text as a database created at version 2. */
    const char *schema_sql = "SELECT group_concat(type || name || sql, ';') FROM"
                             " (SELECT * FROM sqlite_master ORDER BY name)";
    s = open_ok(path);
    char *migrated = query(s, schema_sql, STORE_CSV, &err);
    store_close(s);
    s = open_ok(test_db_path("v2.db"));
    char *fresh = query(s, schema_sql, STORE_CSV, &err);
    store_close(s);
    CU_ASSERT(migrated && fresh && strcmp(migrated, fresh) == 0);
    free(migrated);
    free(fresh);
}

/* An evaluation with n layers at a point; layer l gets counts from lf. */
static store_eval layer_eval(const char *key, int64_t run, const char *op_key,
                             const double *value, uint32_t chip, const store_layer_faults *lf,
                             uint32_t n) {
    store_eval e = ber_eval(key, run, op_key, value, chip, 5);
    e.layers = lf;
    e.n_layers = n;
    return e;
}

static void test_layer_faults(void) {
    const char *path = test_db_path("layers.db");
    store *s = open_ok(path);
    apx_error err = {0};
    int64_t run = begin_run(s);
    double ber = 0.01, other = 0.02;
    store_layer_faults lf[] = {{800, 9, 4}, {160, 2, 1}, {40, 0, 0}};
    store_eval e = layer_eval("a", run, "p1", &ber, 0, lf, 3);
    int inserted = 0;
    CU_ASSERT_FATAL(put(s, &e, &inserted, &err) == APX_OK && inserted == 1);
    const char *rows_sql = "SELECT group_concat(eval_key || ':' || layer || ':' || bits_exposed"
                           " || ':' || faults_injected || ':' || bits_changed, ' ') AS r FROM"
                           " (SELECT * FROM layer_faults ORDER BY eval_key, layer)";
    const char *rows = "r\r\na:0:800:9:4 a:1:160:2:1 a:2:40:0:0\r\n";
    CU_ASSERT(query_equals(s, rows_sql, rows));

    /* The same key again: nothing changes, layers included. */
    store_layer_faults changed[] = {{1, 1, 1}};
    e = layer_eval("a", run, "p1", &ber, 0, changed, 1);
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 0);
    CU_ASSERT(query_equals(s, rows_sql, rows));

    /* No layers: an evaluation without layer rows. */
    e = layer_eval("none", run, "p1", &ber, 1, NULL, 0);
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT_EQUAL(count_rows(s, "layer_faults"), 3);

    /* Refused up front: layers missing, a count past 2^63. */
    e = layer_eval("b", run, "p2", &other, 0, NULL, 2);
    CU_ASSERT_EQUAL(put(s, &e, &inserted, &err), APX_EINPUT);
    store_layer_faults huge[] = {{10, 1, 1}, {10, UINT64_MAX, 1}};
    e = layer_eval("b", run, "p2", &other, 0, huge, 2);
    CU_ASSERT_EQUAL(put(s, &e, &inserted, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layer 1"));
    store_close(s);

    /* A layer insert that fails inside the transaction (another program's
     * trigger refuses layer 2): the new point, its knob, the evaluation and
     * layers 0 and 1 all go again. */
    make_sqlite_file(path, "CREATE TRIGGER no_layer_2 BEFORE INSERT ON layer_faults"
                           " WHEN NEW.layer = 2 BEGIN SELECT RAISE(ABORT, 'layer 2 refused'); END;");
    s = open_ok(path);
    e = layer_eval("b", run, "p2", &other, 0, lf, 3);
    inserted = -1;
    CU_ASSERT_NOT_EQUAL(put(s, &e, &inserted, &err), APX_OK);
    CU_ASSERT_EQUAL(inserted, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layer 2 refused"));
    CU_ASSERT_EQUAL(count_rows(s, "evaluations"), 2);
    CU_ASSERT_EQUAL(count_rows(s, "operating_points"), 1);
    CU_ASSERT_EQUAL(count_rows(s, "op_knobs"), 1);
    CU_ASSERT(query_equals(s, rows_sql, rows));
    /* Two layers pass the trigger, and no transaction was left open. */
    e = layer_eval("b", run, "p2", &other, 0, lf, 2);
    CU_ASSERT(put(s, &e, &inserted, &err) == APX_OK && inserted == 1);
    CU_ASSERT_EQUAL(count_rows(s, "layer_faults"), 5);
    store_close(s);
}

static void test_faults_by_layer(void) {
    store *s = open_ok(test_db_path("faults-view.db"));
    apx_error err = {0};
    int64_t run = begin_run(s);
    /* A "vdd" knob: the higher point (1.2) is the milder one, although its
     * sort_key is larger. */
    static const char *const vdd[] = {"vdd"};
    static const double mild = 1.2, harsh = 1.0;
    store_layer_faults m0[] = {{100, 2, 1}, {50, 1, 1}};
    store_layer_faults m1[] = {{100, 4, 3}, {200, 0, 0}};
    store_layer_faults h0[] = {{100, 30, 15}, {50, 20, 9}};
    store_layer_faults x0[] = {{100, 99, 99}};
    store_eval evals[] = {
        layer_eval("m0", run, "mild", &mild, 0, m0, 2),
        layer_eval("m1", run, "mild", &mild, 1, m1, 2),
        layer_eval("h0", run, "harsh", &harsh, 0, h0, 2),
        layer_eval("x0", run, "mild", &mild, 0, x0, 1), /* another campaign */
    };
    evals[3].campaign = "other";
    for (size_t i = 0; i < sizeof evals / sizeof evals[0]; i++) {
        evals[i].knobs = vdd;
        evals[i].op_label = evals[i].values == &mild ? "vdd=1.2" : "vdd=1.0";
        CU_ASSERT(put(s, &evals[i], NULL, &err) == APX_OK);
    }
    /* Means over the two chips of campaign "test" at the mild point; the
     * BER is the mean of each chip's faults / bits: layer 1 has
     * (1/50 + 0/200) / 2 = 0.01 (not 1/250). */
    CU_ASSERT(query_equals(s,
                           "SELECT group_concat(layer || ':' || chips || ':' || mean_bits_exposed"
                           " || ':' || mean_faults_injected || ':' || mean_bits_changed || ':'"
                           " || round(mean_ber, 12) || ':' || label, ' ') AS r FROM"
                           " (SELECT * FROM faults_by_layer WHERE campaign = 'test'"
                           " AND op_key = 'mild' ORDER BY layer)",
                           "r\r\n0:2:100.0:3.0:2.0:0.03:vdd=1.2 1:2:125.0:0.5:0.5:0.01:vdd=1.2\r\n"));
    CU_ASSERT(query_equals(s,
                           "SELECT group_concat(campaign || ':' || op_key || ':' || layer || ':'"
                           " || chips || ':' || mean_faults_injected, ' ') AS r FROM"
                           " (SELECT * FROM faults_by_layer ORDER BY campaign, sort_key, layer)",
                           "r\r\nother:mild:0:1:99.0 test:harsh:0:1:30.0 test:harsh:1:1:20.0"
                           " test:mild:0:2:3.0 test:mild:1:2:0.5\r\n"));
    /* The preset: mildest point first (by BER, not by sort_key). */
    char *out = query(s, store_preset_sql("faults"), STORE_CSV, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    const char *first_mild = strstr(out, "test,mlp,uniform,vdd=1.2,0,");
    const char *first_harsh = strstr(out, "test,mlp,uniform,vdd=1.0,0,");
    if (!first_mild || !first_harsh || first_mild > first_harsh) fprintf(stderr, "\n%s\n", out);
    CU_ASSERT(first_mild && first_harsh && first_mild < first_harsh);
    CU_ASSERT(strncmp(out, "campaign,workload,device,operating_point,layer,chips,", 53) == 0);
    CU_ASSERT(strstr(out, "\r\nother,mlp,uniform,vdd=1.2,0,1,100.0,99.0,99.0,0.99\r\n") == out + strcspn(out, "\r"));
    free(out);
    store_close(s);
}

/* The rows of a table in a fixed order, as CSV (caller frees). */
static char *dump(store *s, const char *sql) {
    apx_error err = {0};
    return query(s, sql, STORE_CSV, &err);
}

static void test_merge_layer_faults(void) {
    const char *pa = test_db_path("merge-a.db");
    char pb[600];
    snprintf(pb, sizeof pb, "%s", test_db_path("merge-b.db"));
    const char *pm = test_db_path("merge-all.db");
    apx_error err = {0};
    double ber = 0.01;
    store_layer_faults l2[] = {{100, 3, 2}, {50, 1, 0}};
    store_layer_faults l3[] = {{100, 5, 4}, {50, 2, 2}, {10, 1, 1}};
    store *a = open_ok(pa), *b = open_ok(pb), *all = open_ok(pm);
    int64_t ra = begin_run(a), rb = begin_run(b), rall = begin_run(all);
    store_eval ea = layer_eval("a0", ra, "p", &ber, 0, l2, 2);
    store_eval eb = layer_eval("b1", rb, "p", &ber, 1, l3, 3);
    CU_ASSERT(put(a, &ea, NULL, &err) == APX_OK);
    CU_ASSERT(put(b, &eb, NULL, &err) == APX_OK);
    ea.run_id = eb.run_id = rall;
    CU_ASSERT(put(all, &ea, NULL, &err) == APX_OK);
    CU_ASSERT(put(all, &eb, NULL, &err) == APX_OK);
    store_close(b);

    int64_t added = -1;
    CU_ASSERT(store_merge(a, pb, &added, &err) == APX_OK);
    CU_ASSERT_EQUAL(added, 1);
    CU_ASSERT_EQUAL(count_rows(a, "layer_faults"), 5);
    const char *layers = "SELECT * FROM layer_faults ORDER BY eval_key, layer";
    const char *view = "SELECT layer, chips, mean_faults_injected, mean_bits_changed, mean_ber"
                       " FROM faults_by_layer ORDER BY layer";
    char *got = dump(a, layers), *want = dump(all, layers);
    CU_ASSERT(got && want && strcmp(got, want) == 0);
    free(got);
    free(want);
    got = dump(a, view);
    want = dump(all, view);
    CU_ASSERT(got && want && strcmp(got, want) == 0);
    free(got);
    free(want);
    /* Again: nothing added. */
    CU_ASSERT(store_merge(a, pb, &added, &err) == APX_OK);
    CU_ASSERT_EQUAL(added, 0);
    CU_ASSERT_EQUAL(count_rows(a, "layer_faults"), 5);
    store_close(a);
    store_close(all);
}

/* Writers in threads: two share one handle, one has its own connection to
 * the same file. Every job lands once. */
struct writer {
    store *s;
    int64_t run;
    int id;
    int failures;
};

static void *write_jobs(void *arg) {
    struct writer *w = arg;
    static const double ber = 0.02;
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "w%d-%d", w->id, i);
        store_eval e = ber_eval(key, w->run, "shared", &ber, (uint32_t)i, (uint32_t)(i % 11));
        apx_error err = {0};
        int inserted = 0;
        if (store_put_eval(w->s, &e, &inserted, &err) != APX_OK || inserted != 1) w->failures++;
    }
    return NULL;
}

static void test_concurrent_writers(void) {
    const char *path = test_db_path("threads.db");
    store *a = open_ok(path), *b = open_ok(path);
    int64_t run = begin_run(a);
    struct writer w[3] = {{a, run, 0, 0}, {a, run, 1, 0}, {b, run, 2, 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) CU_ASSERT_FATAL(pthread_create(&t[i], NULL, write_jobs, &w[i]) == 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(w[i].failures, 0);
    int64_t na = 0, nb = 0;
    apx_error err = {0};
    CU_ASSERT(store_count_evals(a, &na, &err) == APX_OK && na == 60);
    CU_ASSERT(store_count_evals(b, &nb, &err) == APX_OK && nb == 60);
    CU_ASSERT_EQUAL(count_rows(b, "operating_points"), 1);
    store_close(a);
    store_close(b);
}

/* An evaluation with a cost: energy_pj e and latency 2e, two detail items. */
static store_eval cost_eval(const char *key, int64_t run, const char *op_key,
                            const double *ber, uint32_t chip, uint32_t correct, double e) {
    static const char *const names[] = {"act", "energy_act_pj"};
    static double values[2] = {3, 7.5};
    store_eval ev = ber_eval(key, run, op_key, ber, chip, correct);
    ev.has_cost = 1;
    ev.energy_pj = e;
    ev.latency_ns = 2 * e;
    ev.n_costs = 2;
    ev.cost_names = names;
    ev.cost_values = values;
    return ev;
}

/* Costs land with their evaluation and in the views; the pareto and best
 * presets pick the right points; metrics are replaced, not duplicated; merge
 * copies both. */
static void test_costs_and_presets(void) {
    const char *path = test_db_path("costs.db");
    store *s = open_ok(path);
    apx_error err = {0};
    int64_t run = begin_run(s);
    /* Three points: p0 expensive and best (9 of 10), p1 cheaper at 8.5 of 10
     * (mean over two chips), p2 cheapest at 5 of 10. */
    double b0 = 0, b1 = 0.01, b2 = 0.1;
    store_eval evs[] = {cost_eval("k0", run, "p0", &b0, 0, 9, 100),
                        cost_eval("k1", run, "p1", &b1, 0, 9, 60),
                        cost_eval("k2", run, "p1", &b1, 1, 8, 60),
                        cost_eval("k3", run, "p2", &b2, 0, 5, 30)};
    for (size_t i = 0; i < 4; i++) CU_ASSERT(put(s, &evs[i], NULL, &err) == APX_OK);
    CU_ASSERT_EQUAL(count_rows(s, "eval_costs"), 8);
    CU_ASSERT(query_equals(s, "SELECT label, energy_pj, latency_ns FROM accuracy_by_point"
                              " ORDER BY energy_pj",
                           "label,energy_pj,latency_ns\r\nber,30.0,60.0\r\nber,60.0,120.0\r\n"
                           "ber,100.0,200.0\r\n"));
    /* Every point is on the front: cheaper points are less accurate. */
    CU_ASSERT(query_equals(s, "SELECT count(*) AS n FROM (" "SELECT 1 FROM accuracy_by_point)",
                           "n\r\n3\r\n"));
    char *front = query(s, store_preset_sql("pareto"), STORE_CSV, &err);
    CU_ASSERT(front && strstr(front, ",30.0,") && strstr(front, ",60.0,") &&
              strstr(front, ",100.0,"));
    free(front);
    /* Budget 0.01: only p0 (0.9) qualifies against the reference 0.9; budget
     * 0.05 admits p1 (0.85), saving 40 %. */
    char *best = query(s, store_preset_sql("best"), STORE_CSV, &err);
    CU_ASSERT(best && strstr(best, ",100.0,100.0,0.0,"));
    free(best);
    CU_ASSERT(store_set_param(s, "budget", 0.05) == 0);
    best = query(s, store_preset_sql("best"), STORE_CSV, &err);
    CU_ASSERT(best && strstr(best, ",60.0,100.0,0.4"));
    free(best);

    store_metric m[] = {{"margin_mean", 0, 3.5}, {"margin_mean", -1, 2.0}, {"k_tol_p50", 1, NAN}};
    CU_ASSERT(store_put_metrics(s, "h1", "fashion-mnist/test", m, 3, &err) == APX_OK);
    m[0].value = 4.5;
    CU_ASSERT(store_put_metrics(s, "h1", "fashion-mnist/test", m, 1, &err) == APX_OK);
    CU_ASSERT_EQUAL(count_rows(s, "model_metrics"), 3);
    CU_ASSERT(query_equals(s, "SELECT value FROM model_metrics WHERE layer = 0",
                           "value\r\n4.5\r\n"));
    CU_ASSERT(query_equals(s, "SELECT count(*) AS n FROM model_metrics WHERE value IS NULL",
                           "n\r\n1\r\n"));

    char merged[600];
    snprintf(merged, sizeof merged, "%s", test_db_path("costs-merged.db"));
    store *all = open_ok(merged);
    int64_t added = 0;
    CU_ASSERT(store_merge(all, path, &added, &err) == APX_OK && added == 4);
    CU_ASSERT_EQUAL(count_rows(all, "eval_costs"), 8);
    CU_ASSERT_EQUAL(count_rows(all, "model_metrics"), 3);
    store_close(all);
    store_close(s);
}

void add_store_suite(void) {
    TEST_SUITE("store",
               {"fresh database: version 2, WAL, pragmas, tables", test_fresh_database},
               {"reopen is idempotent", test_reopen_is_idempotent},
               {"run begin and end", test_runs},
               {"put_eval stores a key once", test_put_eval_once},
               {"an operating point shared by two evaluations", test_shared_operating_point},
               {"accuracy_by_point and the accuracy preset", test_accuracy_by_point},
               {"a failing put changes nothing", test_failed_put_changes_nothing},
               {"foreign SQLite files are refused", test_foreign_sqlite_refused},
               {"a newer schema is refused", test_newer_version_refused},
               {"garbage and missing files are refused", test_garbage_refused},
               {"read-only handles refuse writes", test_readonly_refuses_writes},
               {"table, CSV and JSON output", test_output_formats},
               {"one statement per query", test_one_statement_only},
               {"presets are compiled in", test_presets},
               {"concurrent writers", test_concurrent_writers},
               {"a version 1 database migrates to 2 and keeps its rows", test_migrate_v1},
               {"layer rows land with their evaluation, or nothing does", test_layer_faults},
               {"faults_by_layer and the faults preset", test_faults_by_layer},
               {"merge copies layer faults", test_merge_layer_faults},
               {"costs, metrics and the pareto and best presets", test_costs_and_presets});
}
