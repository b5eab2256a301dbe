/* sweep.h - the sweep: a plan of jobs (operating point x chip) for one
 * workload on one device, run on a pthreads pool into the results store.
 *
 * A sweep config (configs/sweeps/, docs/sweeps.md) names the workload
 * (model file and data set), the device and its operating points (a grid over
 * the device's knobs), the number of chips and the run seed. Each job draws
 * the fault map of every weight tensor from the device, applies it to a copy
 * of the model's memory image, evaluates the data set on the faulty image and
 * stores one row in its own transaction under a deterministic key. Keys that
 * are already in the database are skipped, so re-running an interrupted sweep
 * resumes it and ends with the same rows. Results do not depend on the thread
 * count or the order in which jobs finish (rule 1). */
#ifndef APX_SWEEP_H
#define APX_SWEEP_H

#include <stdint.h>

#include "../models/device.h"
#include "../workloads/bnn.h"
#include "../workloads/dataset.h"
#include "config.h"
#include "error.h"
#include "store.h"

#define SWEEP_MAX_POINTS 100000u
#define SWEEP_MAX_CHIPS 100000u
#define SWEEP_MAX_WORKLOADS 64u

/* One workload of a sweep: a model and the data it is evaluated on. */
typedef struct sweep_workload_spec {
    const char *name;           /* in the results; default the model path */
    const char *model_path;
    const char *data_dir;       /* NULL = default Fashion-MNIST location */
    const char *split;          /* "test" or "train" */
    uint32_t limit;             /* 0 = whole split */
} sweep_workload_spec;

/* Where each layer's weights live: in approximate memory at the job's
 * operating point (the default), in approximate memory at a partition's own
 * point (layer_op[l] non-NULL; memory.partitions), or in exact memory
 * (exact[l]; layers left out of memory.approximate), which has no faults. */
typedef struct sweep_layout {
    const double *layer_op[BNN_MAX_LAYERS];
    uint8_t exact[BNN_MAX_LAYERS];
} sweep_layout;

typedef struct sweep_plan {
    cfg_doc *doc;               /* the parsed config (owns all strings below) */
    const char *config_path;
    const char *name;
    uint64_t seed;
    uint32_t chips;
    uint32_t threads;           /* 0 = one per core */
    const char *output;         /* results database */
    /* This process runs the jobs whose index in plan order (workload-major,
     * then point, then chip) is shard_index modulo shard_count: --shard K/N sets
     * shard_index = K - 1, shard_count = N; 0/1 (the default) runs all. Shard
     * databases are combined with store_merge (`apxsim merge`). */
    uint32_t shard_index, shard_count;
    /* workloads (`workload:` or a `workloads:` list); every one is evaluated
     * at every point and chip, on the same chips' fault maps */
    sweep_workload_spec workloads[SWEEP_MAX_WORKLOADS];
    size_t n_workloads;
    /* the memory the weights live in: geometry and the byte address of the
     * first word of the model's memory image (`memory:` section) */
    geometry geo;
    uint64_t base_addr;
    uint32_t batch;             /* inferences sharing one read of the weights (memory.batch) */
    sweep_layout layout;        /* memory.approximate and memory.partitions */
    double *partition_points;   /* n_partitions x n_knobs, pointed to by layout */
    size_t n_partitions;
    uint8_t layer_named[BNN_MAX_LAYERS]; /* layers the memory section names */
    /* device and operating points (n_points x n_knobs values, grid order) */
    cfg_doc *device_doc;        /* the device's file when `device:` names one */
    const cfg_node *device_node;/* the device's mapping (in doc or device_doc) */
    device *dev;
    int n_knobs;
    size_t n_points;
    double *points;
    const cfg_node *points_at;  /* for error positions */
} sweep_plan;

/* Loads and validates a sweep config: every key, range, the device and its
 * points. Paths in the config are relative to the current directory. Does
 * not open the model or data (sweep_run does; `apxsim check` also does). */
int sweep_plan_load(const char *path, sweep_plan *plan, apx_error *err);
/* The same from a document already parsed (a config built in memory, as
 * `apxsim replay` does); the plan owns doc from then on, also on failure.
 * path is what the store records as the config's path. */
int sweep_plan_from_doc(cfg_doc *doc, const char *path, sweep_plan *plan, apx_error *err);
void sweep_plan_free(sweep_plan *plan);

/* Checks that every layer the memory section names exists in the model. */
int sweep_check_layout(const sweep_plan *plan, const bnn_model *m, apx_error *err);

/* "ber=0.001" style label of point i (buffer of at least 256 bytes). */
void sweep_point_label(const sweep_plan *plan, size_t i, char *buf, size_t len);

/* The workload a job evaluates: a model and its data, loaded once. */
typedef struct sweep_workload {
    bnn_model model;
    dataset data;
    char model_hash[17];
    char dataset_name[512];
} sweep_workload;

int sweep_workload_load(const char *model_path, const char *data_dir, const char *split,
                        uint32_t limit, sweep_workload *w, apx_error *err);
void sweep_workload_free(sweep_workload *w);

/* The result of evaluating one (point, chip) on a workload. */
typedef struct job_result {
    uint32_t n_samples, n_correct;
    uint64_t bits_exposed, faults, bits_changed;
    double seconds;             /* the whole job */
    double fault_seconds;       /* of which drawing and applying fault maps */
    /* The same counts per layer (their sums are the totals above); n_layers
     * is 0 without a device. */
    uint32_t n_layers;
    store_layer_faults layers[BNN_MAX_LAYERS];
} job_result;

/* Runs one job: faults from dev at op for (seed, chip) applied to a copy of
 * the weights held in `scratch_image` (model.image_words words), then the
 * evaluation of samples [0, n) with `threads` threads. dev may be NULL (no
 * faults). layout (NULL: every layer approximate at op) places each layer.
 * The image sits at base_addr in geo (which must hold it). This is the whole of `apxsim eval` and one job of a sweep. */
int sweep_eval_job(const sweep_workload *w, const device *dev, const double *op,
                   const sweep_layout *layout, const geometry *geo, uint64_t base_addr,
                   uint64_t seed, uint32_t chip,
                   uint32_t threads, uint64_t *scratch_image, job_result *res,
                   apx_error *err);

/* The energy and latency per inference of reading the weights at op, from
 * the device's cost op (device.h) with batch inferences per read of the
 * weights. With a layout that reads layers at several points (partitions;
 * exact layers at the device's default point when every knob has one), the
 * whole stream is costed at each point and each point is charged its
 * layers' share of the weight bits. *has_cost is 0 (and cost zeroed) for a device
 * without a cost op. */
int sweep_job_cost(const sweep_workload *w, const device *dev, const double *op,
                   const sweep_layout *layout, const geometry *geo, uint64_t base_addr, uint32_t batch, device_cost *cost,
                   int *has_cost, apx_error *err);

typedef struct sweep_stats {
    size_t jobs_total, jobs_done, jobs_skipped;
    double seconds;             /* wall time of sweep_run */
    /* Where the workers' time went (thread-seconds over the jobs run):
     * inference, fault maps, the device's cost model; the rest of
     * threads x seconds is planning, the store and scheduling. */
    double inference_seconds, fault_seconds, cost_seconds;
    uint32_t threads;
    int64_t run_id;
} sweep_stats;

typedef void (*sweep_progress_fn)(void *ctx, size_t done, size_t total);

/* Loads workload i of the plan. */
int sweep_workload_load_spec(const sweep_workload_spec *spec, sweep_workload *w,
                             apx_error *err);

/* Runs the plan into `db_path` (NULL: plan->output). *stop, when set from a
 * signal handler, ends the sweep after the jobs in flight are stored and
 * returns APX_EINTR; the run is marked "interrupted". */
int sweep_run(const sweep_plan *plan, const char *db_path, const char *config_text,
              uint32_t threads, sweep_progress_fn progress, void *ctx,
              volatile int *stop, sweep_stats *stats, apx_error *err);

/* Number of threads to use for a request of `threads` (0 = cores online). */
uint32_t sweep_threads(uint32_t threads);

#endif
