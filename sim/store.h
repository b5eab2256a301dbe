/* store.h - the results database (SQLite). The only code that speaks SQL.
 *
 * One file per campaign (or per shard). The schema carries its version in
 * PRAGMA user_version and is migrated forward on open, one transaction per
 * step (docs/schema.md). The database runs in WAL mode with a busy timeout.
 * Each finished job is stored in its own transaction (rule 6), under a
 * deterministic key, so re-running or resuming a sweep never duplicates rows:
 * store_put_eval() on an existing key is a no-op that reports it.
 *
 * Tables (version 1):
 *   runs(run_id, campaign, config_path, config_text, tool_version, seed, host,
 *        started_at, ended_at, status)
 *   operating_points(op_key, device, label)            one per distinct point
 *   op_knobs(op_key, knob, value)                      its knob values
 *   evaluations(eval_key, run_id, campaign, op_key, chip, workload, model_path,
 *        model_hash, dataset, n_samples, n_correct, accuracy, bits_exposed,
 *        faults_injected, bits_changed, seconds, created_at)
 * Tables (version 2):
 *   layer_faults(eval_key, layer, bits_exposed, faults_injected, bits_changed)
 *                                                      per layer of an evaluation
 * Views: accuracy_by_point (mean/std/min/max accuracy over chips per point),
 *   evaluations_flat, faults_by_layer (mean faults, bits changed and BER over
 *   chips per point and layer). */
#ifndef APX_STORE_H
#define APX_STORE_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"

#define STORE_SCHEMA_VERSION 4

/* A handle may be shared by threads: calls on it are serialized. */
typedef struct store store;

/* Opens (creating if needed) and migrates a results database. A database
 * whose user_version is newer than STORE_SCHEMA_VERSION is refused (written
 * by a newer apxsim), as is a file that is not an apxsim database. */
int store_open(const char *path, store **out, apx_error *err);
/* Opens an existing database read-only, for queries; never creates or migrates
 * (an older schema is still readable if its version is known). */
int store_open_readonly(const char *path, store **out, apx_error *err);
void store_close(store *s);
int store_schema_version(store *s);
/* The SQL of the migration step from from_version to from_version + 1 (0 is
 * the first schema); NULL outside 0 .. STORE_SCHEMA_VERSION - 1. For tests
 * that build an older database by hand. */
const char *store_migration_sql(int from_version);

typedef struct store_run {
    const char *campaign;      /* sweep name */
    const char *config_path;
    const char *config_text;   /* the exact YAML text */
    const char *tool_version;
    uint64_t seed;
    const char *device_path;   /* the device file the config names, or NULL */
    const char *device_text;   /* that file's exact text, or NULL */
} store_run;

/* Inserts a run row (host and started_at filled in here); returns its id. */
int store_run_begin(store *s, const store_run *run, int64_t *run_id, apx_error *err);
/* Sets ended_at and status ("done", "interrupted", "failed"). */
int store_run_end(store *s, int64_t run_id, const char *status, apx_error *err);

/* The faults in one layer's weight tensor. */
typedef struct store_layer_faults {
    uint64_t bits_exposed;     /* bits of the tensor in approximate memory */
    uint64_t faults;           /* faults in its map */
    uint64_t bits_changed;     /* stored bits whose value changed */
} store_layer_faults;

typedef struct store_eval {
    const char *eval_key;      /* deterministic: see sweep.c */
    int64_t run_id;
    const char *campaign;
    const char *op_key;        /* deterministic key of the operating point */
    const char *device;        /* device kind */
    const char *op_label;      /* e.g. "ber=0.001" */
    const char *const *knobs;  /* knob names, n_knobs of them */
    const double *values;
    int n_knobs;
    uint32_t chip;
    const char *workload;      /* workload name */
    const char *model_path;
    const char *model_hash;
    const char *dataset;       /* e.g. "fashion-mnist/test" */
    uint32_t n_samples, n_correct;
    uint64_t bits_exposed;     /* bits in approximate memory */
    uint64_t faults_injected;  /* faults in the map */
    uint64_t bits_changed;     /* stored bits whose value changed */
    double seconds;            /* wall time of the job */
    /* Optional: per layer l = 0 .. n_layers - 1 (layers may be NULL when
     * n_layers is 0), stored as layer_faults rows. */
    const store_layer_faults *layers;
    uint32_t n_layers;
    /* Optional: what reading the weights costs per inference (device.h,
     * device_cost), stored as energy_pj, latency_ns and eval_costs rows. */
    int has_cost;
    double energy_pj, latency_ns;
    int n_costs;
    const char *const *cost_names;
    const double *cost_values;
} store_eval;

/* Stores one evaluation (its operating point, if new, and its layer rows) in
 * one transaction: all of it or nothing. *inserted is 0 when the key was
 * already there (nothing changed). */
int store_put_eval(store *s, const store_eval *e, int *inserted, apx_error *err);

/* One metric of a model on a data set (layer -1: the whole model). */
typedef struct store_metric {
    const char *name;
    int layer;
    double value;              /* NaN is stored as NULL */
} store_metric;

/* Whether a model has metric `name` (any layer) on dataset. */
int store_has_metric(store *s, const char *model_hash, const char *dataset, const char *name,
                     int *exists, apx_error *err);

/* Stores (or replaces) a model's metrics in one transaction. */
int store_put_metrics(store *s, const char *model_hash, const char *dataset,
                      const store_metric *m, size_t n, apx_error *err);
/* Whether an evaluation with this key exists. */
int store_has_eval(store *s, const char *eval_key, int *exists, apx_error *err);
/* Number of rows in evaluations. */
int store_count_evals(store *s, int64_t *n, apx_error *err);

/* Adds the rows of another results database (a shard of the same sweep,
 * or any apxsim database of the same schema version) to s, in one
 * transaction: runs, operating points, knobs, evaluations and layer faults
 * whose keys s does not have yet. Idempotent: merging the same shard again adds nothing.
 * A file that is not an apxsim database, or has another schema version, is
 * refused and s is unchanged. *added receives the evaluations added. */
int store_merge(store *s, const char *shard_path, int64_t *added, apx_error *err);

/* Query output. */
enum store_format { STORE_TABLE, STORE_CSV, STORE_JSON };

/* Runs one SQL statement (a SELECT, or a preset's text) and prints its rows:
 * an aligned text table, RFC 4180 CSV with a header, or a JSON array of
 * objects. Statements that would write are refused on read-only handles. */
/* Sets a named parameter (":name" in SQL) for the queries store_print_query
 * runs from now on; a query that does not use it ignores it. Returns -1 if
 * the name is too long or there are too many. */
int store_set_param(store *s, const char *name, double value);

int store_print_query(store *s, const char *sql, enum store_format fmt, FILE *out,
                      apx_error *err);

/* Reads the named columns of a table or view (e.g. accuracy_by_point), row
 * by row, in no particular order: row() gets each row's column names, its
 * numeric values (NAN for NULL or text) and its text (NULL for NULL). A
 * non-zero return from row() (an apx_error code, err filled) stops the
 * reading and is returned. An unknown table or column is APX_EINPUT. row()
 * runs under the handle's lock and must not call the store. */
typedef int (*store_row_fn)(void *ctx, int ncol, const char *const *names,
                            const double *values, const char *const *texts, apx_error *err);
int store_read_columns(store *s, const char *source, const char *const *columns, int ncol,
                       store_row_fn row, void *ctx, apx_error *err);

/* Query presets, by name ("accuracy"); NULL if unknown. Their SQL text lives
 * in results/presets/NAME.sql and is compiled in. */
const char *store_preset_sql(const char *name);
/* NULL-terminated list of preset names. */
extern const char *const store_preset_names[];

#endif
