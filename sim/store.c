/* store.c - the results database (SQLite); contract in store.h, schema in
 * docs/schema.md. This is the only file that speaks SQL (besides the query
 * presets in results/presets/). Every value reaches SQLite as a bound
 * parameter; the only SQL built at run time is "PRAGMA user_version = k",
 * whose k is a migration index of ours, because pragmas take no parameters. */
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Generated from results/presets/NAME.sql by scripts/embed_presets.py. */
extern const struct {
    const char *name;
    const char *sql;
} store_presets[];

/* PRAGMA application_id of every apxsim results database: "APXS" in ASCII.
 * It tells our files from other SQLite files whatever their user_version. */
#define STORE_APPLICATION_ID 0x41505853

/* ---------------------------------------------------------------- schema */

/* migrations[k] takes a database from user_version k to k + 1. Each step runs
 * in its own BEGIN IMMEDIATE transaction together with the new user_version,
 * so a database is always at exactly one version. A new schema version is
 * one more entry here (and STORE_SCHEMA_VERSION raised in store.h); never
 * edit a step that has shipped, since databases in the field were made by it. */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE runs (\n"
    "    run_id       INTEGER PRIMARY KEY,\n"
    "    campaign     TEXT NOT NULL,\n"
    "    config_path  TEXT,\n"
    "    config_text  TEXT NOT NULL,\n"
    "    tool_version TEXT NOT NULL,\n"
    "    seed         INTEGER NOT NULL,\n"
    "    host         TEXT NOT NULL,\n"
    "    started_at   TEXT NOT NULL,\n"
    "    ended_at     TEXT,\n"
    "    status       TEXT NOT NULL DEFAULT 'running'\n"
    "                 CHECK (status IN ('running', 'done', 'interrupted', 'failed'))\n"
    ");\n"
    "CREATE TABLE operating_points (\n"
    "    op_key   TEXT PRIMARY KEY NOT NULL,\n"
    "    device   TEXT NOT NULL,\n"
    "    label    TEXT NOT NULL,\n"
    "    sort_key REAL\n"
    ");\n"
    "CREATE TABLE op_knobs (\n"
    "    op_key TEXT NOT NULL REFERENCES operating_points (op_key),\n"
    "    knob   TEXT NOT NULL,\n"
    "    value  REAL NOT NULL,\n"
    "    PRIMARY KEY (op_key, knob)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE evaluations (\n"
    "    eval_key        TEXT PRIMARY KEY NOT NULL,\n"
    "    run_id          INTEGER NOT NULL REFERENCES runs (run_id),\n"
    "    campaign        TEXT NOT NULL,\n"
    "    op_key          TEXT NOT NULL REFERENCES operating_points (op_key),\n"
    "    chip            INTEGER NOT NULL CHECK (chip >= 0),\n"
    "    workload        TEXT NOT NULL,\n"
    "    model_path      TEXT,\n"
    "    model_hash      TEXT,\n"
    "    dataset         TEXT NOT NULL,\n"
    "    n_samples       INTEGER NOT NULL CHECK (n_samples > 0),\n"
    "    n_correct       INTEGER NOT NULL CHECK (n_correct BETWEEN 0 AND n_samples),\n"
    "    accuracy        REAL NOT NULL,\n"
    "    bits_exposed    INTEGER NOT NULL CHECK (bits_exposed >= 0),\n"
    "    faults_injected INTEGER NOT NULL CHECK (faults_injected >= 0),\n"
    "    bits_changed    INTEGER NOT NULL CHECK (bits_changed >= 0),\n"
    "    seconds         REAL NOT NULL,\n"
    "    created_at      TEXT NOT NULL\n"
    ");\n"
    "CREATE INDEX evaluations_by_op ON evaluations (op_key);\n"
    "CREATE INDEX evaluations_by_run ON evaluations (run_id);\n"
    /* Sample standard deviation from running sums; max(0, .) because
     * rounding can push the variance of identical values a hair below 0,
     * where sqrt would give NULL. Grouped by campaign, workload and data set
     * as well as the point: a mean over different networks means nothing. */
    "CREATE VIEW accuracy_by_point AS\n"
    "SELECT e.campaign AS campaign, e.workload AS workload, e.dataset AS dataset,\n"
    "       o.device AS device, o.op_key AS op_key, o.label AS label,\n"
    "       o.sort_key AS sort_key,\n"
    "       count(*) AS chips,\n"
    "       CAST(sum(e.n_correct) AS REAL) / sum(e.n_samples) AS mean_accuracy,\n"
    /* The sample variance in exact integer arithmetic on the correct
     * counts (a group shares one data set, so one n_samples): identical
     * chips give exactly 0, not rounding noise. */
    "       CASE WHEN count(*) > 1\n"
    "            THEN sqrt((count(*) * sum(e.n_correct * e.n_correct)\n"
    "                       - sum(e.n_correct) * sum(e.n_correct))\n"
    "                      / (count(*) * (count(*) - 1.0))) / max(e.n_samples)\n"
    "            ELSE 0.0 END AS std_accuracy,\n"
    "       min(e.accuracy) AS min_accuracy,\n"
    "       max(e.accuracy) AS max_accuracy\n"
    "FROM evaluations AS e JOIN operating_points AS o ON o.op_key = e.op_key\n"
    "GROUP BY e.campaign, e.workload, e.dataset, o.device, o.op_key;\n"
    "CREATE VIEW evaluations_flat AS\n"
    "SELECT e.eval_key AS eval_key, e.run_id AS run_id, e.campaign AS campaign,\n"
    "       o.device AS device, e.op_key AS op_key, o.label AS label,\n"
    "       o.sort_key AS sort_key, e.chip AS chip, e.workload AS workload,\n"
    "       e.model_path AS model_path, e.model_hash AS model_hash,\n"
    "       e.dataset AS dataset, e.n_samples AS n_samples,\n"
    "       e.n_correct AS n_correct, e.accuracy AS accuracy,\n"
    "       e.bits_exposed AS bits_exposed, e.faults_injected AS faults_injected,\n"
    "       e.bits_changed AS bits_changed, e.seconds AS seconds,\n"
    "       e.created_at AS created_at\n"
    "FROM evaluations AS e JOIN operating_points AS o ON o.op_key = e.op_key;\n",
    /* 1 -> 2: faults per layer (weight tensor) of each evaluation. Additive:
     * evaluations stored by version 1 simply have no layer rows. */
    "CREATE TABLE layer_faults (\n"
    "    eval_key        TEXT NOT NULL REFERENCES evaluations (eval_key),\n"
    "    layer           INTEGER NOT NULL CHECK (layer >= 0),\n"
    "    bits_exposed    INTEGER NOT NULL CHECK (bits_exposed >= 0),\n"
    "    faults_injected INTEGER NOT NULL CHECK (faults_injected >= 0),\n"
    "    bits_changed    INTEGER NOT NULL CHECK (bits_changed >= 0),\n"
    "    PRIMARY KEY (eval_key, layer)\n"
    ") WITHOUT ROWID;\n"
    /* Means over the chips of a point; the BER is each chip's
     * faults_injected / bits_exposed, averaged (NULL for a layer with no
     * exposed bits). Grouped by op_key, which label and sort_key describe. */
    "CREATE VIEW faults_by_layer AS\n"
    "SELECT e.campaign AS campaign, e.workload AS workload, o.device AS device,\n"
    "       o.op_key AS op_key, o.label AS label, o.sort_key AS sort_key,\n"
    "       l.layer AS layer,\n"
    "       count(*) AS chips,\n"
    "       avg(l.bits_exposed) AS mean_bits_exposed,\n"
    "       avg(l.faults_injected) AS mean_faults_injected,\n"
    "       avg(l.bits_changed) AS mean_bits_changed,\n"
    "       avg(CAST(l.faults_injected AS REAL) / nullif(l.bits_exposed, 0)) AS mean_ber\n"
    "FROM layer_faults AS l\n"
    "JOIN evaluations AS e ON e.eval_key = l.eval_key\n"
    "JOIN operating_points AS o ON o.op_key = e.op_key\n"
    "GROUP BY e.campaign, e.workload, o.device, o.op_key, l.layer;\n",
    /* 2 -> 3: energy and latency per inference (NULL where the device models
     * no cost), the device's cost details, and per-model metrics (BET
     * metrics, construction parameters). The two views gain columns at
     * their end, so queries written for version 2 still work. */
    "ALTER TABLE evaluations ADD COLUMN energy_pj REAL;\n"
    "ALTER TABLE evaluations ADD COLUMN latency_ns REAL;\n"
    "CREATE TABLE eval_costs (\n"
    "    eval_key TEXT NOT NULL REFERENCES evaluations (eval_key),\n"
    "    item     TEXT NOT NULL,\n"
    "    value    REAL NOT NULL,\n"
    "    PRIMARY KEY (eval_key, item)\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE model_metrics (\n"
    "    model_hash TEXT NOT NULL,\n"
    "    dataset    TEXT NOT NULL,\n"
    "    name       TEXT NOT NULL,\n"
    "    layer      INTEGER NOT NULL CHECK (layer >= -1),\n"
    "    value      REAL,\n"
    "    PRIMARY KEY (model_hash, dataset, name, layer)\n"
    ") WITHOUT ROWID;\n"
    "DROP VIEW accuracy_by_point;\n"
    "CREATE VIEW accuracy_by_point AS\n"
    "SELECT e.campaign AS campaign, e.workload AS workload, e.dataset AS dataset,\n"
    "       o.device AS device, o.op_key AS op_key, o.label AS label,\n"
    "       o.sort_key AS sort_key,\n"
    "       count(*) AS chips,\n"
    "       CAST(sum(e.n_correct) AS REAL) / sum(e.n_samples) AS mean_accuracy,\n"
    "       CASE WHEN count(*) > 1\n"
    "            THEN sqrt((count(*) * sum(e.n_correct * e.n_correct)\n"
    "                       - sum(e.n_correct) * sum(e.n_correct))\n"
    "                      / (count(*) * (count(*) - 1.0))) / max(e.n_samples)\n"
    "            ELSE 0.0 END AS std_accuracy,\n"
    "       min(e.accuracy) AS min_accuracy,\n"
    "       max(e.accuracy) AS max_accuracy,\n"
    "       avg(CAST(e.faults_injected AS REAL) / nullif(e.bits_exposed, 0)) AS mean_ber,\n"
    "       avg(e.energy_pj) AS energy_pj,\n"
    "       avg(e.latency_ns) AS latency_ns,\n"
    "       min(e.model_hash) AS model_hash\n"
    "FROM evaluations AS e JOIN operating_points AS o ON o.op_key = e.op_key\n"
    "GROUP BY e.campaign, e.workload, e.dataset, o.device, o.op_key;\n"
    "DROP VIEW evaluations_flat;\n"
    "CREATE VIEW evaluations_flat AS\n"
    "SELECT e.eval_key AS eval_key, e.run_id AS run_id, e.campaign AS campaign,\n"
    "       o.device AS device, e.op_key AS op_key, o.label AS label,\n"
    "       o.sort_key AS sort_key, e.chip AS chip, e.workload AS workload,\n"
    "       e.model_path AS model_path, e.model_hash AS model_hash,\n"
    "       e.dataset AS dataset, e.n_samples AS n_samples,\n"
    "       e.n_correct AS n_correct, e.accuracy AS accuracy,\n"
    "       e.bits_exposed AS bits_exposed, e.faults_injected AS faults_injected,\n"
    "       e.bits_changed AS bits_changed, e.seconds AS seconds,\n"
    "       e.created_at AS created_at, e.energy_pj AS energy_pj,\n"
    "       e.latency_ns AS latency_ns\n"
    "FROM evaluations AS e JOIN operating_points AS o ON o.op_key = e.op_key;\n",
    /* 3 -> 4: a config may name its device's file instead of holding it;
     * the run keeps that file's exact text, so no result loses its device. */
    "ALTER TABLE runs ADD COLUMN device_path TEXT;\n"
    "ALTER TABLE runs ADD COLUMN device_text TEXT;\n",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SCHEMA_VERSION,
               "one migration step per schema version");

const char *store_migration_sql(int from_version) {
    return from_version >= 0 && from_version < STORE_SCHEMA_VERSION ? migrations[from_version]
                                                                     : NULL;
}

/* ------------------------------------------------------------ statements */

/* Prepared once per handle, on first use, and reused. */
enum stmt_id {
    ST_RUN_BEGIN,
    ST_RUN_END,
    ST_OP_INSERT,
    ST_OP_SELECT,
    ST_KNOB_INSERT,
    ST_KNOB_COUNT,
    ST_KNOB_SELECT,
    ST_EVAL_INSERT,
    ST_EVAL_EXISTS,
    ST_EVAL_COUNT,
    ST_LAYER_INSERT,
    ST_COST_INSERT,
    ST_METRIC_INSERT,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_RUN_BEGIN] =
        "INSERT INTO runs (run_id, campaign, config_path, config_text, tool_version,"
        " seed, host, started_at, status, device_path, device_text)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
    [ST_RUN_END] = "UPDATE runs SET ended_at = ?, status = ? WHERE run_id = ?",
    /* ON CONFLICT (key) DO NOTHING rather than INSERT OR IGNORE: it skips only
     * an existing key, while a NOT NULL or CHECK violation stays an error
     * instead of silently dropping the row. */
    [ST_OP_INSERT] = "INSERT INTO operating_points (op_key, device, label, sort_key)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT (op_key) DO NOTHING",
    [ST_OP_SELECT] = "SELECT device, label FROM operating_points WHERE op_key = ?",
    [ST_KNOB_INSERT] = "INSERT INTO op_knobs (op_key, knob, value) VALUES (?, ?, ?)",
    [ST_KNOB_COUNT] = "SELECT count(*) FROM op_knobs WHERE op_key = ?",
    [ST_KNOB_SELECT] = "SELECT value FROM op_knobs WHERE op_key = ? AND knob = ?",
    [ST_EVAL_INSERT] =
        "INSERT INTO evaluations (eval_key, run_id, campaign, op_key, chip, workload,"
        " model_path, model_hash, dataset, n_samples, n_correct, accuracy,"
        " bits_exposed, faults_injected, bits_changed, seconds, created_at,"
        " energy_pj, latency_ns)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (eval_key) DO NOTHING",
    [ST_EVAL_EXISTS] = "SELECT 1 FROM evaluations WHERE eval_key = ?",
    [ST_EVAL_COUNT] = "SELECT count(*) FROM evaluations",
    [ST_LAYER_INSERT] = "INSERT INTO layer_faults (eval_key, layer, bits_exposed,"
                        " faults_injected, bits_changed) VALUES (?, ?, ?, ?, ?)",
    [ST_COST_INSERT] = "INSERT INTO eval_costs (eval_key, item, value) VALUES (?, ?, ?)",
    [ST_METRIC_INSERT] = "INSERT INTO model_metrics (model_hash, dataset, name, layer, value)"
                         " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model_hash, dataset, name, layer)"
                         " DO UPDATE SET value = excluded.value",
};

struct store {
    sqlite3 *db;
    char *path;
    int readonly;
    int version;
    /* One handle may be shared by the sweep's worker threads: every public
     * function holds this lock, which also keeps sqlite3_changes() and the
     * cached statements private to the call that uses them. */
    pthread_mutex_t lock;
    sqlite3_stmt *stmts[ST_COUNT];
    /* Named parameters (":budget") that store_print_query binds wherever a
     * query uses them; unbound ones are NULL, which presets default. */
    struct { char name[32]; double value; } params[4];
    int n_params;
};

int store_set_param(store *s, const char *name, double value) {
    if (strlen(name) + 2 > sizeof s->params[0].name) return -1;
    for (int i = 0; i < s->n_params; i++)
        if (!strcmp(s->params[i].name + 1, name)) {
            s->params[i].value = value;
            return 0;
        }
    if (s->n_params == (int)(sizeof s->params / sizeof s->params[0])) return -1;
    snprintf(s->params[s->n_params].name, sizeof s->params[0].name, ":%s", name);
    s->params[s->n_params++].value = value;
    return 0;
}

/* Fails with the connection's current SQLite message and some context. */
static int db_fail(store *s, apx_error *err, const char *what) {
    return apx_fail(err, APX_EWORK, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *get_stmt(store *s, enum stmt_id id, apx_error *err) {
    if (!s->stmts[id] &&
        sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                           &s->stmts[id], NULL) != SQLITE_OK) {
        db_fail(s, err, "preparing a statement");
        s->stmts[id] = NULL;
    }
    return s->stmts[id];
}

/* Makes a cached statement ready for its next use and lets go of the read
 * snapshot it may hold. */
static void done_stmt(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int exec_sql(store *s, const char *sql, const char *what, apx_error *err) {
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_fail(s, err, what);
    return APX_OK;
}

/* Rolls back the open transaction, if SQLite has not already done so (it
 * does by itself after some errors, such as SQLITE_FULL). Keeps err. */
static void rollback(store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int64_t u64_to_i64(uint64_t v) {
    int64_t r;
    memcpy(&r, &v, sizeof r); /* two's complement: SQLite has no unsigned type */
    return r;
}

/* ISO-8601 UTC, e.g. 2024-05-01T12:34:56Z. */
static void utc_now(char buf[32]) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(buf, "1970-01-01T00:00:00Z");
}

/* ------------------------------------------------------------ open/close */

/* The SQL math functions (sqrt, used by accuracy_by_point) are optional in
 * SQLite builds; Debian's has them. Where they are missing, this stands in. */
static void sql_sqrt(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    double x = sqlite3_value_double(argv[0]);
    if (x < 0) sqlite3_result_null(ctx); /* as SQLite's own sqrt */
    else sqlite3_result_double(ctx, sqrt(x));
}

static int ensure_sqrt(store *s, apx_error *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT sqrt(4)", -1, &st, NULL);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) return APX_OK;
    if (sqlite3_create_function(s->db, "sqrt", 1,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                sql_sqrt, NULL, NULL) != SQLITE_OK)
        return db_fail(s, err, "registering sqrt");
    return APX_OK;
}

static int pragma_int(store *s, const char *sql, int64_t *value) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *value = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Reads what the file says about itself and decides whether we may use it.
 * *fresh is set for an empty database (no tables, nothing claimed). */
static int check_identity(store *s, int *version, int *fresh, apx_error *err) {
    int64_t app_id = 0, user_version = 0, n_objects = 0;
    int rc = pragma_int(s, "PRAGMA application_id", &app_id);
    if (rc == SQLITE_OK) rc = pragma_int(s, "PRAGMA user_version", &user_version);
    if (rc == SQLITE_OK) rc = pragma_int(s, "SELECT count(*) FROM sqlite_master", &n_objects);
    if (rc == SQLITE_NOTADB)
        return apx_fail(err, APX_EINPUT, "%s is not an apxsim results database (not a SQLite file)",
                        s->path);
    if (rc == SQLITE_CORRUPT)
        return apx_fail(err, APX_EINPUT, "%s is corrupt: %s", s->path, sqlite3_errmsg(s->db));
    if (rc != SQLITE_OK) return db_fail(s, err, "reading the schema version");

    *fresh = user_version == 0 && n_objects == 0 &&
             (app_id == 0 || app_id == STORE_APPLICATION_ID);
    *version = (int)user_version;
    if (*fresh) return APX_OK;
    if (app_id != STORE_APPLICATION_ID || user_version <= 0)
        return apx_fail(err, APX_EINPUT,
                        "%s is not an apxsim results database (application_id %lld, "
                        "user_version %lld)",
                        s->path, (long long)app_id, (long long)user_version);
    if (user_version > STORE_SCHEMA_VERSION)
        return apx_fail(err, APX_EINPUT,
                        "%s was written by a newer apxsim (schema %lld, this build knows %d)",
                        s->path, (long long)user_version, STORE_SCHEMA_VERSION);
    return APX_OK;
}

/* Brings the schema to STORE_SCHEMA_VERSION, one transaction per step. The
 * version is read again under the write lock, so two processes opening the
 * same new file do not both run a step. */
static int migrate(store *s, apx_error *err) {
    for (;;) {
        int rc = exec_sql(s, "BEGIN IMMEDIATE", "starting a migration", err);
        if (rc) return rc;
        int version = 0, fresh = 0;
        if ((rc = check_identity(s, &version, &fresh, err))) {
            rollback(s);
            return rc;
        }
        if (version == STORE_SCHEMA_VERSION) {
            rollback(s); /* nothing written */
            s->version = version;
            return APX_OK;
        }
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", version + 1);
        if ((fresh && exec_sql(s, "PRAGMA application_id = 1095784531" /* "APXS" */,
                               "setting application_id", err)) ||
            exec_sql(s, migrations[version], "migrating the schema", err) ||
            exec_sql(s, bump, "setting the schema version", err) ||
            exec_sql(s, "COMMIT", "committing a migration", err)) {
            rollback(s);
            return apx_wrap(err, "schema %d -> %d: ", version, version + 1);
        }
    }
}

_Static_assert(STORE_APPLICATION_ID == 1095784531, "application_id literal in migrate()");

static int open_common(const char *path, int readonly, store **out, apx_error *err) {
    *out = NULL;
    if (!path || !*path) return apx_fail(err, APX_EINPUT, "no results database path given");
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return apx_fail(err, APX_EWORK, "%s: out of memory", path);
    }
    pthread_mutex_init(&s->lock, NULL);
    s->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        int rc = apx_fail(err, readonly ? APX_EINPUT : APX_EWORK, "cannot open %s: %s", path,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000);

    /* Identify the file before anything changes it: turning on WAL would
     * already rewrite the header of a foreign database. */
    int version = 0, fresh = 0;
    int rc = check_identity(s, &version, &fresh, err);
    if (rc == APX_OK && readonly && fresh)
        rc = apx_fail(err, APX_EINPUT, "%s is not an apxsim results database (it is empty)", path);
    if (rc == APX_OK) rc = ensure_sqrt(s, err);
    if (rc == APX_OK && readonly) {
        s->version = version;
        rc = exec_sql(s, "PRAGMA query_only = ON", "setting query_only", err);
    }
    if (rc == APX_OK && !readonly) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW) {
            rc = db_fail(s, err, "turning on WAL");
        } else if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
            rc = apx_fail(err, APX_EWORK, "%s: the file system does not allow WAL mode (got %s)",
                          path, (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        if (rc == APX_OK)
            rc = exec_sql(s, "PRAGMA synchronous = NORMAL", "setting synchronous", err);
        if (rc == APX_OK)
            rc = exec_sql(s, "PRAGMA foreign_keys = ON", "turning on foreign keys", err);
        /* An up-to-date file needs no write lock; the rest is checked again
         * under it. */
        if (rc == APX_OK && version == STORE_SCHEMA_VERSION) s->version = version;
        else if (rc == APX_OK) rc = migrate(s, err);
    }
    if (rc != APX_OK) {
        store_close(s);
        return rc;
    }
    *out = s;
    return APX_OK;
}

int store_open(const char *path, store **out, apx_error *err) {
    return open_common(path, 0, out, err);
}

int store_open_readonly(const char *path, store **out, apx_error *err) {
    return open_common(path, 1, out, err);
}

void store_close(store *s) {
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->stmts[i]);
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

int store_schema_version(store *s) {
    return s ? s->version : 0;
}

/* ------------------------------------------------------------------ runs */

int store_run_begin(store *s, const store_run *run, int64_t *run_id, apx_error *err) {
    if (!s || !run || !run_id) return apx_fail(err, APX_EINPUT, "store_run_begin: missing argument");
    if (!run->campaign || !run->config_text || !run->tool_version)
        return apx_fail(err, APX_EINPUT,
                        "%s: a run needs a campaign, its config text and the tool version",
                        s->path);
    char host[256] = "unknown";
    if (gethostname(host, sizeof host) != 0) strcpy(host, "unknown");
    host[sizeof host - 1] = '\0';
    char now[32];
    utc_now(now);

    pthread_mutex_lock(&s->lock);
    int rc = APX_OK;
    sqlite3_stmt *st = get_stmt(s, ST_RUN_BEGIN, err);
    if (!st) rc = APX_EWORK;
    /* A random id rather than the next rowid: shard databases of one sweep
     * then merge with INSERT OR IGNORE without renumbering runs (peers.md 4.4).
     * Retried on the (2^-40-ish) chance that the id is taken. */
    for (int attempt = 0; rc == APX_OK && attempt < 4; attempt++) {
        int64_t id = 0;
        while (id == 0) {
            sqlite3_randomness(sizeof id, &id);
            id &= INT64_MAX;
        }
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, run->campaign, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, run->config_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, run->config_text, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, run->tool_version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, u64_to_i64(run->seed));
        sqlite3_bind_text(st, 7, host, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, run->device_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, run->device_text, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) *run_id = id;
        else if (step != SQLITE_CONSTRAINT || attempt == 3) rc = db_fail(s, err, "recording a run");
        done_stmt(st);
        if (step == SQLITE_DONE) break;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_run_end(store *s, int64_t run_id, const char *status, apx_error *err) {
    if (!s) return apx_fail(err, APX_EINPUT, "store_run_end: no store");
    if (!status || (strcmp(status, "done") && strcmp(status, "interrupted") &&
                    strcmp(status, "failed")))
        return apx_fail(err, APX_EINPUT,
                        "%s: run status must be done, interrupted or failed (got %s)", s->path,
                        status ? status : "nothing");
    char now[32];
    utc_now(now);
    pthread_mutex_lock(&s->lock);
    int rc = APX_OK;
    sqlite3_stmt *st = get_stmt(s, ST_RUN_END, err);
    if (!st) {
        rc = APX_EWORK;
    } else {
        sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, run_id);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_fail(s, err, "ending a run");
        else if (sqlite3_changes(s->db) != 1)
            rc = apx_fail(err, APX_EINPUT, "%s: no run with id %lld", s->path, (long long)run_id);
        done_stmt(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ----------------------------------------------------------- evaluations */

/* Everything SQLite would otherwise refuse half-way through, refused up front
 * with a message that names the field. */
static int check_eval(const store *s, const store_eval *e, apx_error *err) {
    const char *key = e->eval_key ? e->eval_key : "(no key)";
    const char *missing = !e->eval_key || !*e->eval_key ? "eval_key"
                          : !e->campaign                ? "campaign"
                          : !e->op_key || !*e->op_key   ? "op_key"
                          : !e->device                  ? "device"
                          : !e->op_label                ? "op_label"
                          : !e->workload                ? "workload"
                          : !e->dataset                 ? "dataset"
                                                        : NULL;
    if (missing)
        return apx_fail(err, APX_EINPUT, "%s: evaluation %s has no %s", s->path, key, missing);
    if (e->n_samples == 0 || e->n_correct > e->n_samples)
        return apx_fail(err, APX_EINPUT,
                        "%s: evaluation %s: %u correct out of %u samples is impossible", s->path,
                        key, e->n_correct, e->n_samples);
    if (e->bits_exposed > INT64_MAX || e->faults_injected > INT64_MAX ||
        e->bits_changed > INT64_MAX)
        return apx_fail(err, APX_EINPUT, "%s: evaluation %s: a bit count exceeds 2^63", s->path,
                        key);
    if (!isfinite(e->seconds) || e->seconds < 0)
        return apx_fail(err, APX_EINPUT, "%s: evaluation %s: bad wall time %g", s->path, key,
                        e->seconds);
    if (e->n_layers > 0 && !e->layers)
        return apx_fail(err, APX_EINPUT, "%s: evaluation %s: %u layers but no layer counts",
                        s->path, key, e->n_layers);
    for (uint32_t l = 0; l < e->n_layers; l++)
        if (e->layers[l].bits_exposed > INT64_MAX || e->layers[l].faults > INT64_MAX ||
            e->layers[l].bits_changed > INT64_MAX)
            return apx_fail(err, APX_EINPUT, "%s: evaluation %s: layer %u: a bit count exceeds 2^63",
                            s->path, key, l);
    if (e->n_knobs < 0 || (e->n_knobs > 0 && (!e->knobs || !e->values)))
        return apx_fail(err, APX_EINPUT, "%s: evaluation %s: bad knob list", s->path, key);
    for (int i = 0; i < e->n_knobs; i++) {
        if (!e->knobs[i] || !*e->knobs[i])
            return apx_fail(err, APX_EINPUT, "%s: evaluation %s: knob %d has no name", s->path,
                            key, i);
        if (!isfinite(e->values[i]))
            return apx_fail(err, APX_EINPUT, "%s: evaluation %s: knob %s is %g", s->path, key,
                            e->knobs[i], e->values[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(e->knobs[i], e->knobs[j]) == 0)
                return apx_fail(err, APX_EINPUT, "%s: evaluation %s: knob %s given twice",
                                s->path, key, e->knobs[i]);
    }
    return APX_OK;
}

/* An op_key names one operating point. When the key is already stored, the
 * point described now must be the same one, or the sweep's keys are broken
 * and rows would be filed under the wrong point. */
static int check_same_op(store *s, const store_eval *e, apx_error *err) {
    sqlite3_stmt *st = get_stmt(s, ST_OP_SELECT, err);
    if (!st) return APX_EWORK;
    sqlite3_bind_text(st, 1, e->op_key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    int same = step == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(st, 0), e->device) == 0 &&
               strcmp((const char *)sqlite3_column_text(st, 1), e->op_label) == 0;
    int rc = step == SQLITE_ROW ? APX_OK : db_fail(s, err, "reading an operating point");
    done_stmt(st);
    if (rc) return rc;

    if (same) {
        if (!(st = get_stmt(s, ST_KNOB_COUNT, err))) return APX_EWORK;
        sqlite3_bind_text(st, 1, e->op_key, -1, SQLITE_STATIC);
        step = sqlite3_step(st);
        same = step == SQLITE_ROW && sqlite3_column_int64(st, 0) == e->n_knobs;
        rc = step == SQLITE_ROW ? APX_OK : db_fail(s, err, "reading knobs");
        done_stmt(st);
        if (rc) return rc;
    }
    for (int i = 0; same && i < e->n_knobs; i++) {
        if (!(st = get_stmt(s, ST_KNOB_SELECT, err))) return APX_EWORK;
        sqlite3_bind_text(st, 1, e->op_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->knobs[i], -1, SQLITE_STATIC);
        step = sqlite3_step(st);
        same = step == SQLITE_ROW && sqlite3_column_double(st, 0) == e->values[i];
        rc = step == SQLITE_ROW || step == SQLITE_DONE ? APX_OK : db_fail(s, err, "reading knobs");
        done_stmt(st);
        if (rc) return rc;
    }
    if (!same)
        return apx_fail(err, APX_EINPUT,
                        "%s: operating point %s is already stored with other device, label or "
                        "knobs than in evaluation %s (%s %s)",
                        s->path, e->op_key, e->eval_key, e->device, e->op_label);
    return APX_OK;
}

/* The body of store_put_eval, inside its transaction. */
static int put_eval_rows(store *s, const store_eval *e, int *inserted, apx_error *err) {
    sqlite3_stmt *st = get_stmt(s, ST_OP_INSERT, err);
    if (!st) return APX_EWORK;
    sqlite3_bind_text(st, 1, e->op_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->op_label, -1, SQLITE_STATIC);
    /* Orders points for plots: the first knob, the sweep's main axis. */
    if (e->n_knobs > 0) sqlite3_bind_double(st, 4, e->values[0]);
    int rc = sqlite3_step(st) == SQLITE_DONE ? APX_OK
                                              : db_fail(s, err, "storing an operating point");
    done_stmt(st);
    if (rc) return rc;

    if (sqlite3_changes(s->db) == 0) {
        if ((rc = check_same_op(s, e, err))) return rc;
    } else {
        for (int i = 0; i < e->n_knobs; i++) {
            if (!(st = get_stmt(s, ST_KNOB_INSERT, err))) return APX_EWORK;
            sqlite3_bind_text(st, 1, e->op_key, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, e->knobs[i], -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 3, e->values[i]);
            rc = sqlite3_step(st) == SQLITE_DONE ? APX_OK : db_fail(s, err, "storing a knob");
            done_stmt(st);
            if (rc) return rc;
        }
    }

    char now[32];
    utc_now(now);
    if (!(st = get_stmt(s, ST_EVAL_INSERT, err))) return APX_EWORK;
    sqlite3_bind_text(st, 1, e->eval_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->run_id);
    sqlite3_bind_text(st, 3, e->campaign, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, e->op_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, e->chip);
    sqlite3_bind_text(st, 6, e->workload, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->model_path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, e->model_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, e->dataset, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, e->n_samples);
    sqlite3_bind_int64(st, 11, e->n_correct);
    sqlite3_bind_double(st, 12, (double)e->n_correct / (double)e->n_samples);
    sqlite3_bind_int64(st, 13, (int64_t)e->bits_exposed);
    sqlite3_bind_int64(st, 14, (int64_t)e->faults_injected);
    sqlite3_bind_int64(st, 15, (int64_t)e->bits_changed);
    sqlite3_bind_double(st, 16, e->seconds);
    sqlite3_bind_text(st, 17, now, -1, SQLITE_STATIC);
    if (e->has_cost) {
        sqlite3_bind_double(st, 18, e->energy_pj);
        sqlite3_bind_double(st, 19, e->latency_ns);
    }
    int step = sqlite3_step(st);
    if (step == SQLITE_CONSTRAINT && strstr(sqlite3_errmsg(s->db), "FOREIGN KEY"))
        rc = apx_fail(err, APX_EINPUT, "%s: storing an evaluation: %s (is there a run %lld?)",
                      s->path, sqlite3_errmsg(s->db), (long long)e->run_id);
    else if (step != SQLITE_DONE)
        rc = db_fail(s, err, "storing an evaluation");
    done_stmt(st);
    if (rc) return rc;
    *inserted = sqlite3_changes(s->db) > 0;
    if (!*inserted) return APX_OK; /* stored before, with its layers */

    /* The layers, in the same transaction: a failure here rolls back the
     * evaluation and its point too. */
    for (uint32_t l = 0; l < e->n_layers; l++) {
        if (!(st = get_stmt(s, ST_LAYER_INSERT, err))) return APX_EWORK;
        sqlite3_bind_text(st, 1, e->eval_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, l);
        sqlite3_bind_int64(st, 3, (int64_t)e->layers[l].bits_exposed);
        sqlite3_bind_int64(st, 4, (int64_t)e->layers[l].faults);
        sqlite3_bind_int64(st, 5, (int64_t)e->layers[l].bits_changed);
        rc = sqlite3_step(st) == SQLITE_DONE ? APX_OK : db_fail(s, err, "storing layer faults");
        done_stmt(st);
        if (rc) {
            *inserted = 0;
            return apx_wrap(err, "layer %u: ", l);
        }
    }
    for (int i = 0; i < e->n_costs; i++) {
        if (!(st = get_stmt(s, ST_COST_INSERT, err))) return APX_EWORK;
        sqlite3_bind_text(st, 1, e->eval_key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->cost_names[i], -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, e->cost_values[i]);
        rc = sqlite3_step(st) == SQLITE_DONE ? APX_OK : db_fail(s, err, "storing a cost item");
        done_stmt(st);
        if (rc) {
            *inserted = 0;
            return apx_wrap(err, "cost item %s: ", e->cost_names[i]);
        }
    }
    return APX_OK;
}

int store_put_eval(store *s, const store_eval *e, int *inserted, apx_error *err) {
    if (!s || !e || !inserted) return apx_fail(err, APX_EINPUT, "store_put_eval: missing argument");
    *inserted = 0;
    int rc = check_eval(s, e, err);
    if (rc) return rc;
    pthread_mutex_lock(&s->lock);
    rc = exec_sql(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    if (rc == APX_OK) rc = put_eval_rows(s, e, inserted, err);
    if (rc == APX_OK) rc = exec_sql(s, "COMMIT", "committing an evaluation", err);
    if (rc != APX_OK) {
        rollback(s); /* nothing partial lands (rule 5) */
        *inserted = 0;
        apx_wrap(err, "evaluation %s: ", e->eval_key);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_has_metric(store *s, const char *model_hash, const char *dataset, const char *name,
                     int *exists, apx_error *err) {
    *exists = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    int rc = APX_OK;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM model_metrics WHERE model_hash = ? AND dataset = ? "
                           "AND name = ? LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(s, err, "looking up a metric");
    } else {
        sqlite3_bind_text(st, 1, model_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) *exists = 1;
        else if (step != SQLITE_DONE) rc = db_fail(s, err, "looking up a metric");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_put_metrics(store *s, const char *model_hash, const char *dataset,
                      const store_metric *m, size_t n, apx_error *err) {
    if (!s || !model_hash || !dataset || (n && !m))
        return apx_fail(err, APX_EINPUT, "store_put_metrics: missing argument");
    pthread_mutex_lock(&s->lock);
    int rc = exec_sql(s, "BEGIN IMMEDIATE", "starting a transaction", err);
    for (size_t i = 0; rc == APX_OK && i < n; i++) {
        sqlite3_stmt *st = get_stmt(s, ST_METRIC_INSERT, err);
        if (!st) {
            rc = APX_EWORK;
            break;
        }
        sqlite3_bind_text(st, 1, model_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, m[i].layer);
        if (m[i].value == m[i].value) sqlite3_bind_double(st, 5, m[i].value);
        rc = sqlite3_step(st) == SQLITE_DONE ? APX_OK : db_fail(s, err, "storing a metric");
        done_stmt(st);
    }
    if (rc == APX_OK) rc = exec_sql(s, "COMMIT", "committing metrics", err);
    if (rc != APX_OK) rollback(s);
    pthread_mutex_unlock(&s->lock);
    return rc ? apx_wrap(err, "metrics of model %s: ", model_hash) : APX_OK;
}

/* Runs a cached one-row, one-integer query with an optional text key. */
static int query_int(store *s, enum stmt_id id, const char *key, int64_t *value, int *found,
                     apx_error *err) {
    pthread_mutex_lock(&s->lock);
    int rc = APX_OK;
    sqlite3_stmt *st = get_stmt(s, id, err);
    if (!st) {
        rc = APX_EWORK;
    } else {
        if (key) sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        *found = step == SQLITE_ROW;
        if (step == SQLITE_ROW) *value = sqlite3_column_int64(st, 0);
        else if (step != SQLITE_DONE) rc = db_fail(s, err, "reading evaluations");
        done_stmt(st);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int store_has_eval(store *s, const char *eval_key, int *exists, apx_error *err) {
    if (!s || !eval_key || !exists)
        return apx_fail(err, APX_EINPUT, "store_has_eval: missing argument");
    int64_t one = 0;
    return query_int(s, ST_EVAL_EXISTS, eval_key, &one, exists, err);
}

int store_count_evals(store *s, int64_t *n, apx_error *err) {
    if (!s || !n) return apx_fail(err, APX_EINPUT, "store_count_evals: missing argument");
    int found = 0;
    *n = 0;
    return query_int(s, ST_EVAL_COUNT, NULL, n, &found, err);
}

/* ---------------------------------------------------------- query output */

/* Shortest decimal that reads back as the same double, always with a '.' or
 * an exponent so that a REAL stays a real for whoever parses it. */
static void format_real_exact(double v, char *buf, size_t size) {
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(buf, size, "%.*g", precision, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (isfinite(v) && !strpbrk(buf, ".e")) strncat(buf, ".0", size - strlen(buf) - 1);
}

/* The text of one value as the table (for_table) and CSV formats show it:
 * integers in full, reals as %.6g (table) or exactly (CSV), text as is, a
 * BLOB as lowercase hex digits. NULL for SQL NULL and when out of memory
 * (*oom set). *owned is what the caller frees. */
static const char *value_text(sqlite3_stmt *st, int col, int for_table, char buf[64],
                              char **owned, int *oom) {
    *owned = NULL;
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        snprintf(buf, 64, "%lld", (long long)sqlite3_column_int64(st, col));
        return buf;
    case SQLITE_FLOAT:
        if (for_table) snprintf(buf, 64, "%.6g", sqlite3_column_double(st, col));
        else format_real_exact(sqlite3_column_double(st, col), buf, 64);
        return buf;
    case SQLITE_NULL:
        return NULL;
    case SQLITE_BLOB: {
        const unsigned char *bytes = sqlite3_column_blob(st, col);
        size_t n = (size_t)sqlite3_column_bytes(st, col);
        if (!(*owned = malloc(2 * n + 1))) {
            *oom = 1;
            return NULL;
        }
        for (size_t i = 0; i < n; i++) snprintf(*owned + 2 * i, 3, "%02x", bytes[i]);
        (*owned)[2 * n] = '\0';
        return *owned;
    }
    default: {
        const char *text = (const char *)sqlite3_column_text(st, col);
        if (!text) *oom = 1;
        return text;
    }
    }
}

static int is_number(sqlite3_stmt *st, int col) {
    int t = sqlite3_column_type(st, col);
    return t == SQLITE_INTEGER || t == SQLITE_FLOAT;
}

/* One RFC 4180 field. NULL is an empty field; an empty string is quoted so
 * that it differs from NULL. */
static void csv_field(FILE *out, const char *text) {
    if (!text) return;
    if (*text && !strpbrk(text, ",\"\r\n")) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *p = text; *p; p++) {
        if (*p == '"') fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3
                               : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    uint32_t cp = len == 1 ? p[0] : p[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* A JSON string: quotes, backslashes and control characters escaped, valid
 * UTF-8 passed through, each invalid byte replaced by U+FFFD. */
static void json_string(FILE *out, const char *text, size_t n) {
    const unsigned char *p = (const unsigned char *)text;
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = utf8_len(p + i, n - i);
        if (len == 0) {
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fwrite(p + i, 1, len, out);
        i += len;
    }
    fputc('"', out);
}

/* One JSON value: integers as integers, finite reals as exact numbers, NULL
 * and infinities as null (JSON has no infinities), text and hex BLOBs as
 * strings. Returns -1 when out of memory. */
static int json_value(FILE *out, sqlite3_stmt *st, int col) {
    int type = sqlite3_column_type(st, col);
    if (type == SQLITE_NULL || (type == SQLITE_FLOAT && !isfinite(sqlite3_column_double(st, col)))) {
        fputs("null", out);
        return 0;
    }
    char buf[64], *owned;
    int oom = 0;
    const char *text = value_text(st, col, 0, buf, &owned, &oom);
    if (!text) return -1;
    if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) fputs(text, out);
    else json_string(out, text, type == SQLITE_BLOB ? strlen(text) : (size_t)sqlite3_column_bytes(st, col));
    free(owned);
    return 0;
}

/* Cells of a table, buffered because column widths depend on every row. */
typedef struct table {
    int ncol;
    size_t nrow, cap;  /* rows, capacity in rows */
    char **cells;      /* nrow * ncol, NULL for SQL NULL */
    int *all_numeric;  /* per column: every non-NULL cell is a number */
    int *any_value;    /* per column: some cell is not NULL */
} table;

/* Copies a cell for the table, with line breaks and other control characters
 * made visible (\n, \r, \t, \?) so that a row stays on one line. */
static char *table_cell(const char *text) {
    size_t n = strlen(text), extra = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)text[i] < 0x20) extra++;
    char *copy = malloc(n + extra + 1), *q = copy;
    if (!copy) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20) {
            *q++ = (char)c;
        } else {
            *q++ = '\\';
            *q++ = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : '?';
        }
    }
    *q = '\0';
    return copy;
}

/* Display width: one column per UTF-8 code point. */
static size_t text_width(const char *text) {
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p & 0xC0) != 0x80) w++;
    return w;
}

static void pad(FILE *out, size_t n, int fill) {
    while (n--) fputc(fill, out);
}

static int table_add_row(table *t, sqlite3_stmt *st) {
    if (t->nrow == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **cells = realloc(t->cells, cap * (size_t)t->ncol * sizeof *cells);
        if (!cells) return -1;
        t->cells = cells;
        t->cap = cap;
    }
    char **row = t->cells + t->nrow * (size_t)t->ncol;
    for (int c = 0; c < t->ncol; c++) row[c] = NULL;
    t->nrow++; /* counted now so that table_free frees what was copied */
    for (int c = 0; c < t->ncol; c++) {
        char buf[64], *owned;
        int oom = 0;
        const char *text = value_text(st, c, 1, buf, &owned, &oom);
        if (oom) return -1;
        if (!text) continue;
        row[c] = table_cell(text);
        free(owned);
        if (!row[c]) return -1;
        t->any_value[c] = 1;
        if (!is_number(st, c)) t->all_numeric[c] = 0;
    }
    return 0;
}

/* One line of the table; a NULL cells array prints the rule under the
 * header. Numeric columns are right-aligned, the others left-aligned without
 * trailing blanks at the end of the line. */
static void table_line(FILE *out, int ncol, const char *const *cells, const size_t *width,
                       const int *right) {
    for (int c = 0; c < ncol; c++) {
        int last = c + 1 == ncol;
        if (!cells) {
            pad(out, width[c], '-');
        } else {
            const char *text = cells[c] ? cells[c] : "NULL";
            size_t gap = width[c] - text_width(text);
            if (right[c]) pad(out, gap, ' ');
            fputs(text, out);
            if (!right[c] && !last) pad(out, gap, ' ');
        }
        if (!last) fputs("  ", out);
    }
    fputc('\n', out);
}

static int table_print(const table *t, sqlite3_stmt *st, FILE *out) {
    if (t->nrow == 0) {
        fputs("(no rows)\n", out);
        return 0;
    }
    size_t *width = calloc((size_t)t->ncol, sizeof *width);
    int *right = calloc((size_t)t->ncol, sizeof *right);
    const char **names = calloc((size_t)t->ncol, sizeof *names);
    if (!width || !right || !names) {
        free(width);
        free(right);
        free(names);
        return -1;
    }
    for (int c = 0; c < t->ncol; c++) {
        names[c] = sqlite3_column_name(st, c);
        width[c] = text_width(names[c]);
        right[c] = t->all_numeric[c] && t->any_value[c];
        for (size_t r = 0; r < t->nrow; r++) {
            const char *cell = t->cells[r * (size_t)t->ncol + c];
            size_t w = text_width(cell ? cell : "NULL");
            if (w > width[c]) width[c] = w;
        }
    }
    table_line(out, t->ncol, names, width, right);
    table_line(out, t->ncol, NULL, width, right);
    for (size_t r = 0; r < t->nrow; r++)
        table_line(out, t->ncol, (const char *const *)t->cells + r * (size_t)t->ncol, width,
                   right);
    free(width);
    free(right);
    free(names);
    return 0;
}

static void table_free(table *t) {
    for (size_t i = 0; i < t->nrow * (size_t)t->ncol; i++) free(t->cells[i]);
    free(t->cells);
    free(t->all_numeric);
    free(t->any_value);
}

/* One CSV record of the current row. Returns -1 when out of memory. */
static int csv_row(FILE *out, sqlite3_stmt *st, int ncol) {
    for (int c = 0; c < ncol; c++) {
        char buf[64], *owned;
        int oom = 0;
        const char *text = value_text(st, c, 0, buf, &owned, &oom);
        if (oom) return -1;
        if (c) fputc(',', out);
        if (is_number(st, c)) fputs(text, out); /* never needs quotes */
        else csv_field(out, text);
        free(owned);
    }
    fputs("\r\n", out);
    return 0;
}

/* One JSON object for the current row. Returns -1 when out of memory. */
static int json_row(FILE *out, sqlite3_stmt *st, int ncol, int first) {
    fputs(first ? "[\n  {" : ",\n  {", out);
    for (int c = 0; c < ncol; c++) {
        const char *name = sqlite3_column_name(st, c);
        if (c) fputs(", ", out);
        json_string(out, name, strlen(name));
        fputs(": ", out);
        if (json_value(out, st, c)) return -1;
    }
    fputc('}', out);
    return 0;
}

/* Steps through the statement, printing as it goes (CSV, JSON) or buffering
 * (table). On an error the output so far may be incomplete. */
static int print_rows(store *s, sqlite3_stmt *st, enum store_format fmt, FILE *out,
                      apx_error *err) {
    int ncol = sqlite3_column_count(st);
    table t = {.ncol = ncol};
    if (fmt == STORE_TABLE) {
        t.all_numeric = malloc(((size_t)ncol + 1) * sizeof *t.all_numeric);
        t.any_value = calloc((size_t)ncol + 1, sizeof *t.any_value);
        if (!t.all_numeric || !t.any_value) {
            table_free(&t);
            return apx_fail(err, APX_EWORK, "query: out of memory");
        }
        for (int c = 0; c < ncol; c++) t.all_numeric[c] = 1;
    } else if (fmt == STORE_CSV && ncol > 0) {
        for (int c = 0; c < ncol; c++) {
            if (c) fputc(',', out);
            csv_field(out, sqlite3_column_name(st, c));
        }
        fputs("\r\n", out);
    }

    int oom = 0, step;
    size_t rows = 0;
    while (!oom && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (fmt == STORE_TABLE) oom = table_add_row(&t, st);
        else if (fmt == STORE_CSV) oom = csv_row(out, st, ncol);
        else oom = json_row(out, st, ncol, rows == 0);
        rows++;
    }
    int rc = APX_OK;
    if (oom) rc = apx_fail(err, APX_EWORK, "query: out of memory");
    else if (step != SQLITE_DONE) rc = db_fail(s, err, "running the query");
    else if (fmt == STORE_TABLE && table_print(&t, st, out))
        rc = apx_fail(err, APX_EWORK, "query: out of memory");
    else if (fmt == STORE_JSON) fputs(rows ? "\n]\n" : "[]\n", out);
    table_free(&t);
    return rc;
}

int store_merge(store *s, const char *shard_path, int64_t *added, apx_error *err) {
    *added = 0;
    char a[PATH_MAX], b[PATH_MAX];
    if (realpath(shard_path, a) && realpath(s->path, b) && strcmp(a, b) == 0)
        return apx_fail(err, APX_EINPUT, "%s: cannot merge a database into itself", shard_path);
    /* Identify the shard first (magic, application id, version), read-only. */
    store *shard;
    if (store_open_readonly(shard_path, &shard, err)) return err->code;
    int version = store_schema_version(shard);
    store_close(shard);
    if (version != store_schema_version(s))
        return apx_fail(err, APX_EINPUT,
                        "%s has schema version %d, %s has %d: open both with the same apxsim "
                        "(which migrates them) before merging",
                        shard_path, version, s->path, store_schema_version(s));
    pthread_mutex_lock(&s->lock);
    int rc = APX_OK;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "ATTACH DATABASE ? AS shard", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, shard_path, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s, err, "attaching the shard");
    sqlite3_finalize(st);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    /* Parents first, so foreign keys hold at every step. The same schema
     * version means the same columns in the same order. The tables of later
     * versions come after those of version 1 (copy[EVALS] counts the added
     * evaluations). */
    enum { EVALS = 3 };
    static const char *const copy[] = {
        "INSERT OR IGNORE INTO main.runs SELECT * FROM shard.runs",
        "INSERT OR IGNORE INTO main.operating_points SELECT * FROM shard.operating_points",
        "INSERT OR IGNORE INTO main.op_knobs SELECT * FROM shard.op_knobs",
        [EVALS] = "INSERT OR IGNORE INTO main.evaluations SELECT * FROM shard.evaluations",
        /* version 2 */
        "INSERT OR IGNORE INTO main.layer_faults SELECT * FROM shard.layer_faults",
        /* version 3 */
        "INSERT OR IGNORE INTO main.eval_costs SELECT * FROM shard.eval_costs",
        "INSERT OR IGNORE INTO main.model_metrics SELECT * FROM shard.model_metrics",
    };
    _Static_assert(sizeof copy / sizeof copy[0] == 7 && STORE_SCHEMA_VERSION == 4,
                   "store_merge copies every table of the schema");
    rc = exec_sql(s, "BEGIN IMMEDIATE", "starting the merge", err);
    for (size_t i = 0; rc == APX_OK && i < sizeof copy / sizeof copy[0]; i++) {
        rc = exec_sql(s, copy[i], "merging", err);
        if (rc == APX_OK && i == EVALS) *added = sqlite3_changes(s->db);
    }
    if (rc == APX_OK) rc = exec_sql(s, "COMMIT", "committing the merge", err);
    if (rc != APX_OK) {
        rollback(s);
        *added = 0;
    }
    apx_error ignored = {0};
    exec_sql(s, "DETACH DATABASE shard", "detaching the shard", &ignored);
    pthread_mutex_unlock(&s->lock);
    if (rc) apx_wrap(err, "merging %s: ", shard_path);
    return rc;
}

int store_print_query(store *s, const char *sql, enum store_format fmt, FILE *out,
                      apx_error *err) {
    if (!s || !sql || !out) return apx_fail(err, APX_EINPUT, "store_print_query: missing argument");
    if (fmt != STORE_TABLE && fmt != STORE_CSV && fmt != STORE_JSON)
        return apx_fail(err, APX_EINPUT, "query: unknown output format %d", (int)fmt);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL, *next = NULL;
    const char *tail = NULL;
    int rc = APX_OK;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, &tail) != SQLITE_OK) {
        rc = apx_fail(err, APX_EINPUT, "query: %s", sqlite3_errmsg(s->db));
    } else if (!st) {
        rc = apx_fail(err, APX_EINPUT, "query: no SQL statement in the query");
    } else if (tail && *tail &&
               (sqlite3_prepare_v2(s->db, tail, -1, &next, NULL) != SQLITE_OK || next)) {
        /* Anything but blanks and comments after the first statement. */
        rc = apx_fail(err, APX_EINPUT, "query: only one statement per query");
    } else if (s->readonly && !sqlite3_stmt_readonly(st)) {
        rc = apx_fail(err, APX_EINPUT,
                      "query: the statement would change %s, which is open read-only", s->path);
    } else {
        for (int i = 0; i < s->n_params; i++) {
            int at = sqlite3_bind_parameter_index(st, s->params[i].name);
            if (at) sqlite3_bind_double(st, at, s->params[i].value);
        }
        rc = print_rows(s, st, fmt, out, err);
        /* A BEGIN (or SAVEPOINT) left open would swallow the next store_put_eval
         * into a transaction nobody commits. */
        if (!sqlite3_get_autocommit(s->db)) {
            rollback(s);
            if (rc == APX_OK)
                rc = apx_fail(err, APX_EINPUT, "query: transaction statements are not allowed");
        }
    }
    sqlite3_finalize(next);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (rc == APX_OK && (fflush(out) != 0 || ferror(out)))
        rc = apx_fail(err, APX_EWORK, "query: writing the output failed");
    return rc;
}

/* --------------------------------------------------------- reading rows */

/* Appends text to buf (of size bytes, NUL-terminated at *len); -1 if full. */
static int append(char *buf, size_t size, size_t *len, const char *text, int quoted) {
    size_t n = *len;
    if (quoted && n + 1 < size) buf[n++] = '"';
    for (; *text && n + 2 < size; text++) {
        if (quoted && *text == '"') buf[n++] = '"'; /* "" inside a quoted identifier */
        buf[n++] = *text;
    }
    if (*text || n + 2 >= size) return -1;
    if (quoted) buf[n++] = '"';
    buf[n] = '\0';
    *len = n;
    return 0;
}

int store_read_columns(store *s, const char *source, const char *const *columns, int ncol,
                       store_row_fn row, void *ctx, apx_error *err) {
    enum { MAX_COLUMNS = 64 };
    if (!s || !source || !columns || ncol < 1 || ncol > MAX_COLUMNS || !row)
        return apx_fail(err, APX_EINPUT, "store_read_columns: bad argument");
    char sql[4096];
    size_t len = 0;
    int full = append(sql, sizeof sql, &len, "SELECT ", 0);
    for (int i = 0; i < ncol && !full; i++)
        full = (i && append(sql, sizeof sql, &len, ", ", 0)) ||
               append(sql, sizeof sql, &len, columns[i], 1);
    if (full || append(sql, sizeof sql, &len, " FROM ", 0) ||
        append(sql, sizeof sql, &len, source, 1))
        return apx_fail(err, APX_EINPUT, "reading %s: names too long", source);

    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    int rc = APX_OK;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = apx_fail(err, APX_EINPUT, "%s: reading %s: %s", s->path, source,
                      sqlite3_errmsg(s->db));
    } else {
        const char *names[MAX_COLUMNS], *texts[MAX_COLUMNS];
        double values[MAX_COLUMNS];
        for (int i = 0; i < ncol; i++) names[i] = sqlite3_column_name(st, i);
        int step = SQLITE_DONE;
        while (rc == APX_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
            for (int i = 0; i < ncol; i++) {
                int type = sqlite3_column_type(st, i);
                values[i] = type == SQLITE_INTEGER || type == SQLITE_FLOAT
                                ? sqlite3_column_double(st, i) : NAN;
                texts[i] = (const char *)sqlite3_column_text(st, i);
            }
            rc = row(ctx, ncol, names, values, texts, err);
        }
        if (rc == APX_OK && step != SQLITE_DONE) rc = db_fail(s, err, "reading rows");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* --------------------------------------------------------------- presets */

const char *store_preset_sql(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; store_presets[i].name; i++)
        if (strcmp(store_presets[i].name, name) == 0) return store_presets[i].sql;
    return NULL;
}
