/* search.c - the EDEN-style search (see search.h). */
#include "search.h"

#include <stdlib.h>
#include <string.h>

typedef struct searcher {
    const sweep_plan *plan;
    const sweep_workload *w;
    uint32_t threads;
    uint64_t *scratch;
    double nominal[DEVICE_MAX_KNOBS];
    double budget;
    volatile int *stop;
    search_result *res;
    search_progress_fn progress;
    void *ctx;
} searcher;

/* The layout where layer l sits at candidate a[l] (-1: nominal); layers the
 * plan keeps in exact memory stay there. */
static void make_layout(const searcher *S, const long *a, sweep_layout *L) {
    const sweep_plan *p = S->plan;
    memset(L, 0, sizeof *L);
    for (uint32_t l = 0; l < S->w->model.n_layers; l++) {
        L->exact[l] = p->layout.exact[l];
        L->layer_op[l] = a[l] < 0 ? S->nominal : &p->points[(size_t)a[l] * p->n_knobs];
    }
}

/* Mean accuracy over the plan's chips and the energy per inference of the
 * placement a. */
static int evaluate(searcher *S, const long *a, double *accuracy, double *energy,
                    apx_error *err) {
    const sweep_plan *p = S->plan;
    if (S->stop && *S->stop) return apx_fail(err, APX_EINTR, "search interrupted");
    sweep_layout L;
    make_layout(S, a, &L);
    uint64_t correct = 0, samples = 0;
    for (uint32_t c = 0; c < p->chips; c++) {
        job_result r;
        if (sweep_eval_job(S->w, p->dev, S->nominal, &L, &p->geo, p->base_addr, p->seed, c,
                           S->threads, S->scratch, &r, err))
            return err->code;
        correct += r.n_correct;
        samples += r.n_samples;
    }
    device_cost cost;
    int has_cost;
    if (sweep_job_cost(S->w, p->dev, S->nominal, &L, &p->geo, p->base_addr, p->batch, &cost,
                       &has_cost, err))
        return err->code;
    *accuracy = samples ? (double)correct / (double)samples : 0;
    *energy = cost.energy_pj;
    S->res->evaluations++;
    return APX_OK;
}

static int passes(const searcher *S, double accuracy) {
    return accuracy >= S->res->ref_accuracy - S->budget;
}

/* Candidate indices sorted by the energy of placing every layer there
 * (ties by index, so the order is deterministic). */
typedef struct ranked { long point; double energy; } ranked;

static int by_energy(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->energy != y->energy) return x->energy < y->energy ? -1 : 1;
    return (x->point > y->point) - (x->point < y->point);
}

static int search_one(searcher *S, apx_error *err) {
    const sweep_plan *p = S->plan;
    search_result *R = S->res;
    uint32_t n_layers = S->w->model.n_layers;
    long a[BNN_MAX_LAYERS];
    for (uint32_t l = 0; l < BNN_MAX_LAYERS; l++) a[l] = -1;
    R->n_layers = n_layers;
    if (S->progress) S->progress(S->ctx, "reference (nominal)");
    if (evaluate(S, a, &R->ref_accuracy, &R->ref_energy_pj, err)) return err->code;

    ranked *order = malloc(p->n_points * sizeof *order);
    if (!order) return apx_fail(err, APX_EWORK, "out of memory");
    int rc = APX_OK;
    for (size_t i = 0; rc == APX_OK && i < p->n_points; i++) {
        long all[BNN_MAX_LAYERS];
        for (uint32_t l = 0; l < BNN_MAX_LAYERS; l++) all[l] = (long)i;
        sweep_layout L;
        make_layout(S, all, &L);
        device_cost cost;
        int has_cost;
        rc = sweep_job_cost(S->w, p->dev, S->nominal, &L, &p->geo, p->base_addr, p->batch,
                            &cost, &has_cost, err);
        order[i] = (ranked){(long)i, cost.energy_pj};
    }
    if (rc) goto out;
    qsort(order, p->n_points, sizeof *order, by_energy);

    /* 2. coarse: cheapest first, the first that passes. */
    if (S->progress) S->progress(S->ctx, "one operating point for all layers");
    R->coarse_point = -1;
    for (size_t i = 0; rc == APX_OK && i < p->n_points; i++) {
        long all[BNN_MAX_LAYERS];
        for (uint32_t l = 0; l < BNN_MAX_LAYERS; l++) all[l] = order[i].point;
        double acc, e;
        if ((rc = evaluate(S, all, &acc, &e, err))) break;
        if (passes(S, acc)) {
            R->coarse_point = order[i].point;
            R->coarse_accuracy = acc;
            R->coarse_energy_pj = e;
            break;
        }
    }

    /* 3. each layer's tolerance alone. */
    double saving[BNN_MAX_LAYERS] = {0};
    for (uint32_t l = 0; rc == APX_OK && l < n_layers; l++) {
        R->tolerance[l] = -1;
        if (p->layout.exact[l]) continue;
        char what[64];
        snprintf(what, sizeof what, "tolerance of layer %u", l);
        if (S->progress) S->progress(S->ctx, what);
        for (size_t i = 0; rc == APX_OK && i < p->n_points; i++) {
            a[l] = order[i].point;
            double acc, e;
            if ((rc = evaluate(S, a, &acc, &e, err))) break;
            if (passes(S, acc) && e < R->ref_energy_pj) {
                R->tolerance[l] = order[i].point;
                saving[l] = R->ref_energy_pj - e;
                break;
            }
        }
        a[l] = -1;
    }

    /* 4. greedy: most tolerant layer first; back off while the whole fails. */
    uint32_t by_tol[BNN_MAX_LAYERS];
    for (uint32_t l = 0; l < n_layers; l++) by_tol[l] = l;
    for (uint32_t i = 1; i < n_layers; i++) /* insertion sort: stable, few layers */
        for (uint32_t j = i; j > 0 && saving[by_tol[j]] > saving[by_tol[j - 1]]; j--) {
            uint32_t t = by_tol[j];
            by_tol[j] = by_tol[j - 1];
            by_tol[j - 1] = t;
        }
    R->partition_accuracy = R->ref_accuracy;
    R->partition_energy_pj = R->ref_energy_pj;
    for (uint32_t k = 0; rc == APX_OK && k < n_layers; k++) {
        uint32_t l = by_tol[k];
        if (R->tolerance[l] < 0) continue;
        char what[64];
        snprintf(what, sizeof what, "partition for layer %u", l);
        if (S->progress) S->progress(S->ctx, what);
        /* From the tolerated point towards the expensive end of the order. */
        size_t start = 0;
        while (order[start].point != R->tolerance[l]) start++;
        for (size_t i = start; rc == APX_OK && i < p->n_points; i++) {
            if (order[i].energy >= R->ref_energy_pj) break;
            a[l] = order[i].point;
            double acc, e;
            if ((rc = evaluate(S, a, &acc, &e, err))) break;
            if (passes(S, acc)) {
                R->partition_accuracy = acc;
                R->partition_energy_pj = e;
                break;
            }
            a[l] = -1;
        }
    }
    for (uint32_t l = 0; l < n_layers; l++) R->assigned[l] = a[l];
out:
    free(order);
    return rc;
}

int search_run(const sweep_plan *p, double budget, uint32_t threads,
               search_progress_fn progress, void *ctx, volatile int *stop,
               search_result *out, apx_error *err) {
    const device_ops *ops = p->dev->ops;
    if (!ops->cost)
        return apx_fail(err, APX_EINPUT,
                        "the %s device models no energy: the search needs a device with a cost "
                        "model (dram, rram)", ops->kind);
    searcher S = {.plan = p, .threads = sweep_threads(threads), .budget = budget,
                  .stop = stop, .progress = progress, .ctx = ctx};
    for (int k = 0; k < p->n_knobs; k++)
        if (!ops->knob_default || !ops->knob_default(p->dev, k, &S.nominal[k]))
            return apx_fail(err, APX_EINPUT,
                            "the %s device has no nominal value for knob '%s': the search "
                            "measures savings against the nominal point", ops->kind,
                            ops->knobs[k]);
    int rc = APX_OK;
    for (size_t i = 0; rc == APX_OK && i < p->n_workloads; i++) {
        sweep_workload w;
        memset(&out[i], 0, sizeof out[i]);
        out[i].workload = p->workloads[i].name;
        if ((rc = sweep_workload_load_spec(&p->workloads[i], &w, err))) break;
        rc = sweep_check_layout(p, &w.model, err);
        S.w = &w;
        S.res = &out[i];
        S.scratch = rc ? NULL : malloc(w.model.image_words * sizeof *S.scratch);
        if (rc == APX_OK && !S.scratch) rc = apx_fail(err, APX_EWORK, "out of memory");
        if (rc == APX_OK) rc = search_one(&S, err);
        free(S.scratch);
        sweep_workload_free(&w);
        if (rc) apx_wrap(err, "workload %s: ", p->workloads[i].name);
    }
    return rc;
}
