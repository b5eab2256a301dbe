/* test_resume.c - a sweep stopped in the middle and run again ends with the
 * rows of a sweep that never stopped (docs/sweeps.md, "Keys, resuming and
 * determinism"), and `apxsim check` estimates the run time.
 *
 * The sweeps run build/apxsim as a child process on the synthetic workload
 * (test_workload: a 784-32-10 model, 60 images). The child is stopped with
 * SIGKILL (no chance to clean up: only the per-job transactions protect the
 * database) or SIGINT (Ctrl-C: the jobs in flight finish, the run is marked
 * interrupted, exit 130) once some of its rows are in the database, found by
 * polling `apxsim query` while it runs. If the sweep finishes before the
 * signal lands (a fast machine), the test retries with a plan four times as
 * large rather than fail. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests.h"

#define POINTS 10u               /* operating points of every config below */
#define FIRST_CHIPS 200u         /* 2000 jobs: ~0.4 s on 2 threads in a release build */
#define ATTEMPTS 3               /* then 800 and 3200 chips */
#define ROWS_BUF (8u << 20)      /* the rows of up to 32000 jobs as CSV */

static const char *data_dir, *model_path;
static char out[1 << 16];

static const char rows_sql[] = "SELECT eval_key, chip, n_correct, faults_injected, bits_changed "
                               "FROM evaluations ORDER BY eval_key";

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void pause_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A sweep config of POINTS bit error rates x chips into path (kept by the
 * caller: test_path's slots are reused). */
static void write_config(char *path, size_t len, const char *name, uint32_t chips,
                         const char *extra) {
    char text[2048];
    snprintf(text, sizeof text,
             "name: resume\nseed: 11\nchips: %u\nthreads: 2\noutput: %s\n"
             "workload:\n  model: %s\n  data_dir: %s\n%s"
             "device:\n  kind: uniform\n"
             "operating_points:\n  ber: [0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]\n",
             chips, test_path("unused.db"), model_path, data_dir, extra);
    snprintf(path, len, "%s", test_write_file(name, text, strlen(text)));
}

/* A fresh database path (the file and its WAL removed). */
static void fresh_db(char *path, size_t len, const char *name) {
    snprintf(path, len, "%s", test_path(name));
    char side[600];
    remove(path);
    snprintf(side, sizeof side, "%s-wal", path);
    remove(side);
    snprintf(side, sizeof side, "%s-shm", path);
    remove(side);
}

/* The first number of a one-column CSV answer, or -1 if the query failed
 * (no database yet, or not yet initialised). */
static long query_count(const char *db, const char *sql) {
    char buf[256];
    if (test_run(buf, sizeof buf, APXSIM " query %s --sql \"%s\" --format csv", db, sql) != 0)
        return -1;
    const char *nl = strchr(buf, '\n');
    return nl ? strtol(nl + 1, NULL, 10) : -1;
}

static long eval_count(const char *db) {
    return query_count(db, "SELECT count(*) FROM evaluations");
}

/* The compared columns of every row, as CSV, in a malloc'd buffer. */
static char *rows_of(const char *db) {
    char *buf = malloc(ROWS_BUF);
    if (test_run(buf, ROWS_BUF, APXSIM " query %s --sql '%s' --format csv", db, rows_sql) != 0)
        buf[0] = 0;
    return buf;
}

/* Whether every line of `part` is a line of `whole`, in the same order (both
 * are sorted by eval_key, so a partial run's rows are a subsequence). */
static int lines_subsequence(const char *part, const char *whole) {
    while (*part) {
        size_t n = strcspn(part, "\n") + 1;
        for (;;) {
            if (!*whole) return 0;
            size_t m = strcspn(whole, "\n") + 1;
            int same = m == n && strncmp(part, whole, n) == 0;
            whole += m;
            if (same) break;
        }
        part += n;
    }
    return 1;
}

/* Starts `apxsim sweep cfg -o db -j 2 -q` with its output in log, waits
 * until a tenth of its `total` rows are stored and sends it sig. Returns 1
 * if it stopped with only part of the rows stored (its wait status in
 * *status), 0 if it stored them all first (the caller retries with a larger
 * plan), -1 if no rows appeared within 5 s. */
static int sweep_and_signal(const char *cfg, const char *db, const char *log, int sig,
                            long total, int *status) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(APXSIM, "apxsim", "sweep", cfg, "-o", db, "-j", "2", "-q", (char *)NULL);
        _exit(127);
    }
    long want = total / 10 > 0 ? total / 10 : 1;
    double deadline = now() + 5;
    for (;;) {
        if (waitpid(pid, status, WNOHANG) == pid) return 0; /* finished first */
        if (eval_count(db) >= want) break;
        if (now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return -1;
        }
        pause_ms(2);
    }
    kill(pid, sig);
    waitpid(pid, status, 0);
    return eval_count(db) < total ? 1 : 0;
}

/* The reference: the rows of an uninterrupted run of the plan with `chips`
 * chips, made once per chip count. */
static const char *reference_rows(uint32_t chips) {
    static char *rows;
    static uint32_t rows_chips;
    if (rows && rows_chips == chips) return rows;
    free(rows);
    char cfg[512], db[512];
    write_config(cfg, sizeof cfg, "reference.yaml", chips, "");
    fresh_db(db, sizeof db, "reference.db");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -j 2 -q", cfg, db), 0);
    rows = rows_of(db);
    rows_chips = chips;
    return rows;
}

static uint32_t resumed_chips; /* the plan test_kill9 resumed, for the threads test */
static char resumed_db[512];

/* Interrupts a sweep with sig, checks what the signal left, resumes it and
 * compares with an uninterrupted run. Returns the wait status of the stopped
 * run through *status, the chip count through *chips. */
static int interrupt_and_resume(int sig, const char *tag, char *db, size_t db_len,
                                char *log, size_t log_len, uint32_t *chips, int *status) {
    test_workload(&data_dir, &model_path);
    char cfg[512], name[64];
    int got = -1;
    *chips = FIRST_CHIPS;
    for (int attempt = 0; attempt < ATTEMPTS; attempt++, *chips *= 4) {
        snprintf(name, sizeof name, "%s.yaml", tag);
        write_config(cfg, sizeof cfg, name, *chips, "");
        snprintf(name, sizeof name, "%s.db", tag);
        fresh_db(db, db_len, name);
        snprintf(name, sizeof name, "%s.log", tag);
        snprintf(log, log_len, "%s", test_path(name));
        got = sweep_and_signal(cfg, db, log, sig, (long)POINTS * *chips, status);
        if (got != 0) break;
    }
    CU_ASSERT_EQUAL_FATAL(got, 1);
    long total = (long)POINTS * *chips, stored = eval_count(db);
    /* The database opens and holds whole rows only, each one a row of the
     * uninterrupted run, with its operating point and run. */
    CU_ASSERT(stored > 0 && stored < total);
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " query %s --sql 'PRAGMA integrity_check' "
                                              "--format csv", db), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nok"));
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM evaluations e JOIN operating_points "
                                    "USING (op_key) JOIN runs USING (run_id) WHERE n_samples = 60 "
                                    "AND n_correct BETWEEN 0 AND 60 AND bits_exposed = 25408"),
                    stored);
    const char *reference = reference_rows(*chips);
    char *partial = rows_of(db);
    CU_ASSERT(partial[0] != 0);
    CU_ASSERT(lines_subsequence(partial, reference));
    CU_ASSERT(strcmp(partial, reference) != 0);
    free(partial);
    /* Running the same command again finishes it: the same rows as a run
     * that never stopped, none computed twice. */
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s -j 2", cfg, db), 0);
    char expect[128];
    snprintf(expect, sizeof expect, "%ld jobs run, %ld already in the database", total - stored,
             stored);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, expect));
    char *resumed = rows_of(db);
    CU_ASSERT_STRING_EQUAL(resumed, reference);
    free(resumed);
    return 1;
}

static void test_kill9_then_resume(void) {
    char db[512], log[512];
    uint32_t chips;
    int status = 0;
    interrupt_and_resume(SIGKILL, "kill9", db, sizeof db, log, sizeof log, &chips, &status);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* The killed run never ended: it stays 'running' (ended_at NULL); the
     * resumed run is a new run that ended 'done'. */
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM runs WHERE status = 'running' AND "
                                    "ended_at IS NULL"), 1);
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 1);
    resumed_chips = chips;
    snprintf(resumed_db, sizeof resumed_db, "%s", db);
}

static void test_ctrl_c_stops_cleanly_then_resume(void) {
    char db[512], log[512];
    uint32_t chips;
    int status = 0;
    interrupt_and_resume(SIGINT, "sigint", db, sizeof db, log, sizeof log, &chips, &status);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 130);
    size_t len;
    char *text = test_slurp(log, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "sweep interrupted after"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "Run the same command again"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, db));
    free(text);
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM runs WHERE status = 'interrupted' AND "
                                    "ended_at IS NOT NULL"), 1);
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 1);
    CU_ASSERT_EQUAL(query_count(db, "SELECT count(*) FROM runs"), 2);
}

/* One thread, two threads and the database resumed after kill -9: the same
 * rows (results do not depend on the thread count or the order of jobs). */
static void test_thread_counts_and_resume_agree(void) {
    test_workload(&data_dir, &model_path);
    uint32_t chips = resumed_chips ? resumed_chips : FIRST_CHIPS;
    char cfg[512], db[512];
    write_config(cfg, sizeof cfg, "threads.yaml", chips, "");
    fresh_db(db, sizeof db, "one-thread.db");
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " sweep %s -o %s --threads 1 -q", cfg, db),
                    0);
    char *one = rows_of(db);
    const char *two = reference_rows(chips);
    CU_ASSERT(one[0] != 0);
    CU_ASSERT_STRING_EQUAL(one, two);
    if (resumed_chips) {
        char *resumed = rows_of(resumed_db);
        CU_ASSERT_STRING_EQUAL(one, resumed);
        free(resumed);
    }
    free(one);
}

/* The estimate line of `apxsim check`: seconds and rate as printed. */
static int parse_estimate(const char *text, double *seconds, unsigned *threads, double *rate) {
    const char *e = strstr(text, "  estimate   ~"), *m = strstr(text, "measured ");
    return e && m && sscanf(e, "  estimate   ~%lf s on %u thread", seconds, threads) == 2 &&
           sscanf(m, "measured %lf inferences/s per thread", rate) == 1;
}

/* The estimate is jobs x images per job / (inferences per second per thread
 * x threads), with the config's threads and limit; an unreadable data set
 * is an error (the sweep would fail), not a plan without an estimate. */
static void test_check_estimates_run_time(void) {
    test_workload(&data_dir, &model_path);
    char cfg[512];
    /* 10 points x 100000 chips: a million jobs, so that the estimate is tens
     * of seconds and its printed rounding small (check runs none of them). */
    write_config(cfg, sizeof cfg, "estimate.yaml", 100000, "");
    double t0 = now();
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", cfg), 0);
    CU_ASSERT(now() - t0 < 1.0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "10 operating points x 100000 chips = 1000000 jobs"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(60 images)"));
    double seconds = 0, rate = 0;
    unsigned threads = 0;
    CU_ASSERT_FATAL(parse_estimate(out, &seconds, &threads, &rate));
    CU_ASSERT_EQUAL(threads, 2);
    CU_ASSERT(rate > 0);
    double expect = 1e6 * 60 / rate / 2;
    CU_ASSERT(seconds > expect * 0.95 - 1 && seconds < expect * 1.05 + 1);

    /* One thread and a limit of 30 images per job. */
    write_config(cfg, sizeof cfg, "estimate1.yaml", 100000, "  limit: 30\n");
    FILE *f = fopen(cfg, "r+");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char text[2048];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    char *t = strstr(text, "threads: 2");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    t[9] = '1';
    snprintf(cfg, sizeof cfg, "%s", test_write_file("estimate1.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", cfg), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(30 images)"));
    CU_ASSERT_FATAL(parse_estimate(out, &seconds, &threads, &rate));
    CU_ASSERT_EQUAL(threads, 1);
    expect = 1e6 * 30 / rate / 1;
    CU_ASSERT(seconds > expect * 0.95 - 1 && seconds < expect * 1.05 + 1);

    /* No data set: exit 2, the reason, no estimate. */
    write_config(cfg, sizeof cfg, "nodata.yaml", 3, "");
    f = fopen(cfg, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    t = strstr(text, "workload-data");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    memcpy(t, "workload-none", 13);
    snprintf(cfg, sizeof cfg, "%s", test_write_file("nodata.yaml", text, strlen(text)));
    CU_ASSERT_EQUAL(test_run(out, sizeof out, APXSIM " check %s", cfg), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "workload-none"));
    CU_ASSERT_PTR_NULL(strstr(out, "estimate"));
}

void add_resume_suite(void) {
    TEST_SUITE("resume", {"kill -9 then resume: the rows of an uninterrupted run", test_kill9_then_resume},
               {"Ctrl-C: exit 130, run interrupted, resume finishes", test_ctrl_c_stops_cleanly_then_resume},
               {"--threads 1, --threads 2 and a resumed run agree", test_thread_counts_and_resume_agree},
               {"check prints a run-time estimate", test_check_estimates_run_time});
}
