/* search.h - the EDEN-style search: the lowest-energy operating point of
 * each workload within an accuracy-loss budget, and a per-layer partition
 * assignment, greedy by layer tolerance (Koppula et al., MICRO 2019, sec.
 * 1.6 of ../shared facts dram.md: sort data by tolerance, map each to the
 * cheapest partition it tolerates, verify).
 *
 * The candidates are a sweep plan's operating points; the device must model
 * energy (device_ops.cost) and have a default for every knob (its nominal
 * point, the reference). Accuracy at a placement is the mean over the plan's
 * chips, each an evaluation of the workload's data. Steps:
 *   1. reference: every layer at the nominal point: accuracy a0, energy E0;
 *   2. coarse: the cheapest candidate (all layers there) with mean accuracy
 *      >= a0 - budget, scanning from the cheapest (the first hit is the
 *      cheapest that passes, accuracy need not be monotone in energy);
 *   3. tolerance of layer l: the cheapest candidate for layer l alone (the
 *      others nominal) that passes;
 *   4. partitions: layers from the most tolerant (largest saving alone) to
 *      the least, each moved to its tolerated point while the combination
 *      passes; when it does not, that layer steps back to ever more expensive
 *      candidates it also tolerated alone, down to nominal.
 * Deterministic: the same plan gives the same answer (rule 1). */
#ifndef APX_SEARCH_H
#define APX_SEARCH_H

#include "sweep.h"

typedef struct search_result {
    const char *workload;
    uint32_t n_layers;
    double ref_accuracy, ref_energy_pj;
    /* coarse: the index into plan->points, or -1 if no candidate passes */
    long coarse_point;
    double coarse_accuracy, coarse_energy_pj;
    /* per layer: the candidate index, or -1 for nominal */
    long tolerance[BNN_MAX_LAYERS];
    long assigned[BNN_MAX_LAYERS];
    double partition_accuracy, partition_energy_pj;
    uint32_t evaluations;       /* placements evaluated (each over every chip) */
} search_result;

typedef void (*search_progress_fn)(void *ctx, const char *what);

/* Runs the search for every workload of plan; out has plan->n_workloads
 * entries. *stop (from a signal) ends it with APX_EINTR. */
int search_run(const sweep_plan *plan, double budget, uint32_t threads,
               search_progress_fn progress, void *ctx, volatile int *stop,
               search_result *out, apx_error *err);

#endif
