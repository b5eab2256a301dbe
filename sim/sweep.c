#include "sweep.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../workloads/bet.h"
#include "apxsim_version.h"
#include "progress.h"
#include "store.h"

uint32_t sweep_threads(uint32_t threads) {
    if (threads) return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

/* ---- plan ---------------------------------------------------------------- */

/* A knob the config leaves out takes the device's default, if it has one. */
static int knob_default(const sweep_plan *p, int k, const cfg_node *at, double *value,
                        apx_error *err) {
    const device_ops *ops = p->dev->ops;
    if (ops->knob_default && ops->knob_default(p->dev, k, value)) return APX_OK;
    return cfg_fail(at, err, "missing knob '%s' (the %s device has no default for it)",
                    ops->knobs[k], ops->kind);
}

/* One operating point written as a mapping of knob values (what: its name
 * in errors): every knob given or defaulted, then range-checked. */
static int read_point(const cfg_node *pt, const char *what, const sweep_plan *p, double *v,
                      apx_error *err) {
    const device_ops *ops = p->dev->ops;
    if (cfg_expect_map(pt, what, ops->knobs, err)) return err->code;
    for (int k = 0; k < p->n_knobs; k++) {
        if (cfg_find(pt, ops->knobs[k])) {
            if (cfg_get_double(pt, ops->knobs[k], 1, 0, -1e300, 1e300, &v[k], err))
                return err->code;
        } else if (knob_default(p, k, pt, &v[k], err)) {
            return err->code;
        }
    }
    return ops->check_point(p->dev, v, pt, err);
}

/* operating_points as a list of points, each a mapping of knob values:
 * knobs that move together (VDD with the tRCD it needs) are listed as such. */
static int load_point_list(const cfg_node *node, sweep_plan *p, apx_error *err) {
    if (node->n == 0) return cfg_fail(node, err, "operating_points is an empty list");
    if (node->n > SWEEP_MAX_POINTS)
        return cfg_fail(node, err, "more than %u operating points", SWEEP_MAX_POINTS);
    p->n_points = node->n;
    p->points = malloc(p->n_points * p->n_knobs * sizeof *p->points);
    if (!p->points) return apx_fail(err, APX_EWORK, "out of memory");
    for (size_t i = 0; i < node->n; i++)
        if (read_point(node->items[i], "operating point", p, &p->points[i * p->n_knobs], err))
            return err->code;
    return APX_OK;
}

/* operating_points as a grid: one value or a list per knob, crossed. */
static int load_points(const cfg_node *node, sweep_plan *p, apx_error *err) {
    const device_ops *ops = p->dev->ops;
    p->n_knobs = device_knob_count(ops);
    if (node->kind == CFG_SEQ) return load_point_list(node, p, err);
    if (cfg_expect_map(node, "operating_points", ops->knobs, err)) return err->code;
    double *lists[DEVICE_MAX_KNOBS] = {0};
    size_t lens[DEVICE_MAX_KNOBS] = {0};
    int rc = APX_OK;
    p->n_points = 1;
    for (int k = 0; k < p->n_knobs && rc == APX_OK; k++) {
        if (!cfg_find(node, ops->knobs[k])) {
            lists[k] = malloc(sizeof *lists[k]);
            if (!lists[k]) rc = apx_fail(err, APX_EWORK, "out of memory");
            else rc = knob_default(p, k, node, lists[k], err);
            lens[k] = 1;
            continue;
        }
        rc = cfg_get_double_list(node, ops->knobs[k], 1, -1e300, 1e300, SWEEP_MAX_POINTS,
                                 &lists[k], &lens[k], err);
        if (rc == APX_OK) {
            p->n_points *= lens[k];
            if (p->n_points > SWEEP_MAX_POINTS)
                rc = cfg_fail(node, err, "the grid has more than %u operating points",
                              SWEEP_MAX_POINTS);
        }
    }
    if (rc == APX_OK) {
        p->points = malloc(p->n_points * p->n_knobs * sizeof *p->points);
        if (!p->points) rc = apx_fail(err, APX_EWORK, "out of memory");
    }
    /* Grid order: the first knob varies slowest. */
    for (size_t i = 0; rc == APX_OK && i < p->n_points; i++) {
        size_t rest = i;
        for (int k = p->n_knobs - 1; k >= 0; k--) {
            p->points[i * p->n_knobs + k] = lists[k][rest % lens[k]];
            rest /= lens[k];
        }
        rc = ops->check_point(p->dev, &p->points[i * p->n_knobs], node, err);
    }
    for (int k = 0; k < p->n_knobs; k++) free(lists[k]);
    return rc;
}

/* A list of layer indices under key (each < BNN_MAX_LAYERS, no repeats) as
 * a bit set. */
static int load_layer_list(const cfg_node *map, const char *key, uint8_t *set, apx_error *err) {
    double *v = NULL;
    size_t n = 0;
    if (cfg_get_double_list(map, key, 1, 0, BNN_MAX_LAYERS - 1, BNN_MAX_LAYERS, &v, &n, err))
        return err->code;
    int rc = APX_OK;
    for (size_t i = 0; i < n && rc == APX_OK; i++) {
        if (v[i] != (double)(uint32_t)v[i])
            rc = cfg_fail(cfg_find(map, key), err, "%s: layer %g is not a whole number", key, v[i]);
        else if (set[(uint32_t)v[i]])
            rc = cfg_fail(cfg_find(map, key), err, "%s: layer %u is listed twice", key,
                          (unsigned)v[i]);
        else set[(uint32_t)v[i]] = 1;
    }
    free(v);
    return rc;
}

/* memory.approximate (which layers' weights live in approximate memory;
 * default all) and memory.partitions (layers at their own operating point,
 * EDEN's partitions). Layer indices are checked against the model when the
 * sweep runs (sweep_check_layout). */
static int load_layout(const cfg_node *mem, sweep_plan *p, apx_error *err) {
    static const char *const part_keys[] = {"layers", "operating_point", NULL};
    sweep_layout *L = &p->layout;
    memset(L, 0, sizeof *L);
    if (!mem) return APX_OK;
    if (cfg_find(mem, "approximate")) {
        uint8_t approx[BNN_MAX_LAYERS] = {0};
        if (load_layer_list(mem, "approximate", approx, err)) return err->code;
        for (int l = 0; l < BNN_MAX_LAYERS; l++) {
            L->exact[l] = !approx[l];
            p->layer_named[l] |= approx[l];
        }
    }
    const cfg_node *parts = cfg_find(mem, "partitions");
    if (!parts) return APX_OK;
    if (parts->kind != CFG_SEQ || parts->n == 0)
        return cfg_fail(parts, err, "partitions must be a list of {layers, operating_point}");
    if (parts->n > BNN_MAX_LAYERS)
        return cfg_fail(parts, err, "more than %d partitions", BNN_MAX_LAYERS);
    p->n_partitions = parts->n;
    p->partition_points = malloc(parts->n * p->n_knobs * sizeof *p->partition_points);
    if (!p->partition_points) return apx_fail(err, APX_EWORK, "out of memory");
    uint8_t taken[BNN_MAX_LAYERS] = {0};
    for (size_t i = 0; i < parts->n; i++) {
        const cfg_node *part = parts->items[i], *pt;
        double *v = &p->partition_points[i * p->n_knobs];
        uint8_t mine[BNN_MAX_LAYERS] = {0};
        if (cfg_expect_map(part, "partition", part_keys, err) ||
            load_layer_list(part, "layers", mine, err))
            return err->code;
        if (!(pt = cfg_find(part, "operating_point")))
            return cfg_fail(part, err, "a partition needs an operating_point");
        if (read_point(pt, "operating_point", p, v, err)) return err->code;
        for (int l = 0; l < BNN_MAX_LAYERS; l++) {
            if (!mine[l]) continue;
            if (taken[l]) return cfg_fail(part, err, "layer %d is in two partitions", l);
            if (L->exact[l])
                return cfg_fail(part, err, "layer %d is in a partition but not in "
                                           "memory.approximate", l);
            taken[l] = 1;
            L->layer_op[l] = v;
            p->layer_named[l] = 1;
        }
    }
    return APX_OK;
}

int sweep_check_layout(const sweep_plan *p, const bnn_model *m, apx_error *err) {
    for (uint32_t l = m->n_layers; l < BNN_MAX_LAYERS; l++)
        if (p->layer_named[l])
            return cfg_fail(cfg_find(cfg_root(p->doc), "memory"), err,
                            "memory: layer %u does not exist (the model has %u layers, 0..%u)",
                            l, m->n_layers, m->n_layers ? m->n_layers - 1 : 0);
    return APX_OK;
}

int sweep_plan_load(const char *path, sweep_plan *p, apx_error *err) {
    memset(p, 0, sizeof *p);
    cfg_doc *doc = cfg_load_file(path, err);
    if (!doc) return err->code;
    return sweep_plan_from_doc(doc, path, p, err);
}

int sweep_plan_from_doc(cfg_doc *doc, const char *path, sweep_plan *p, apx_error *err) {
    static const char *const top_keys[] = {"name",   "seed",   "chips",
                                           "threads", "output", "workload", "workloads",
                                           "metrics",
                                           "memory", "device", "operating_points",
                                           NULL};
    static const char *const memory_keys[] = {"geometry", "base",       "batch",
                                              "approximate", "partitions", NULL};
    static const char *const workload_keys[] = {"name", "model", "dataset", "split",
                                                "limit", "data_dir", NULL};
    static const char *const datasets[] = {"fashion-mnist", NULL};
    static const char *const splits[] = {"test", "train", NULL};
    memset(p, 0, sizeof *p);
    p->doc = doc;
    p->config_path = path;
    const cfg_node *root = cfg_root(p->doc);
    long long seed, chips, threads;
    if (cfg_expect_map(root, "sweep", top_keys, err) ||
        cfg_get_string(root, "name", 1, NULL, &p->name, err) ||
        cfg_get_int(root, "seed", 0, 1, 0, INT64_MAX, &seed, err) ||
        cfg_get_int(root, "chips", 0, 1, 1, SWEEP_MAX_CHIPS, &chips, err) ||
        cfg_get_int(root, "threads", 0, 0, 0, 1024, &threads, err) ||
        cfg_get_string(root, "output", 1, NULL, &p->output, err))
        goto fail;
    const cfg_node *one = cfg_find(root, "workload"), *many = cfg_find(root, "workloads");
    if (!one == !many) {
        cfg_fail(root, err, one ? "give 'workload' or 'workloads', not both"
                                : "missing 'workload' section (model and data set)");
        goto fail;
    }
    if (many && (many->kind != CFG_SEQ || many->n == 0 || many->n > SWEEP_MAX_WORKLOADS)) {
        cfg_fail(many, err, "workloads must be a list of 1 to %u workloads",
                 SWEEP_MAX_WORKLOADS);
        goto fail;
    }
    p->n_workloads = many ? many->n : 1;
    for (size_t i = 0; i < p->n_workloads; i++) {
        const cfg_node *w = many ? many->items[i] : one;
        sweep_workload_spec *s = &p->workloads[i];
        long long limit;
        int ds, split;
        if (cfg_expect_map(w, "workload", workload_keys, err) ||
            cfg_get_string(w, "name", 0, NULL, &s->name, err) ||
            cfg_get_string(w, "model", 1, NULL, &s->model_path, err) ||
            cfg_get_enum(w, "dataset", 0, 0, datasets, &ds, err) ||
            cfg_get_enum(w, "split", 0, 0, splits, &split, err) ||
            cfg_get_int(w, "limit", 0, 0, 0, UINT32_MAX, &limit, err) ||
            cfg_get_string(w, "data_dir", 0, NULL, &s->data_dir, err))
            goto fail;
        if (!s->name) s->name = s->model_path;
        s->split = splits[split];
        s->limit = (uint32_t)limit;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(p->workloads[k].name, s->name)) {
                cfg_fail(w, err, "two workloads are named '%s'", s->name);
                goto fail;
            }
    }
    p->seed = (uint64_t)seed;
    p->chips = (uint32_t)chips;
    p->threads = (uint32_t)threads;
    if (cfg_get_bool(root, "metrics", 0, 1, &p->metrics, err)) goto fail;
    const cfg_node *mem = cfg_find(root, "memory");
    long long base, batch;
    if ((mem && cfg_expect_map(mem, "memory", memory_keys, err)) ||
        geometry_from_yaml(cfg_find(mem, "geometry"), &p->geo, err) ||
        cfg_get_int(mem, "base", 0, 0, 0, INT64_MAX, &base, err) ||
        cfg_get_int(mem, "batch", 0, 1, 1, 1 << 20, &batch, err))
        goto fail;
    p->base_addr = (uint64_t)base;
    p->batch = (uint32_t)batch;
    /* `device:` is the device's mapping, or the path of a YAML file holding
     * it (configs/devices/), read as if it were written here. */
    p->device_node = cfg_find(root, "device");
    if (p->device_node && !(p->device_node = device_section(p->device_node, &p->device_doc, err)))
        goto fail;
    if (device_create(p->device_node, &p->dev, err)) goto fail;
    p->points_at = cfg_find(root, "operating_points");
    if (!p->points_at) {
        cfg_fail(root, err, "missing 'operating_points' (a list of values per knob: %s)",
                 p->dev->ops->knobs[0]);
        goto fail;
    }
    if (load_points(p->points_at, p, err) || load_layout(mem, p, err)) goto fail;
    return APX_OK;
fail:
    sweep_plan_free(p);
    return err->code;
}

void sweep_plan_free(sweep_plan *p) {
    device_destroy(p->dev);
    free(p->points);
    free(p->partition_points);
    cfg_free(p->device_doc);
    cfg_free(p->doc);
    memset(p, 0, sizeof *p);
}

void sweep_point_label(const sweep_plan *p, size_t i, char *buf, size_t len) {
    const device_ops *ops = p->dev->ops;
    size_t used = 0;
    buf[0] = 0;
    for (int k = 0; k < p->n_knobs && used < len; k++) {
        double v = p->points[i * p->n_knobs + k], dflt;
        /* Knobs at their default are left out: "vdd=1.1,trcd=10", not all seven. */
        if (ops->knob_default && ops->knob_default(p->dev, k, &dflt) && v == dflt) continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%s=%g", used ? "," : "",
                                 ops->knobs[k], v);
    }
    if (!buf[0]) snprintf(buf, len, "nominal");
}

/* ---- keys ---------------------------------------------------------------- */

/* Two 64-bit FNV-1a hashes with different offsets: a 128-bit key printed as
 * 32 hex digits. Keys only need to be stable and collision-free at the scale
 * of a campaign, not cryptographic. */
typedef struct keyhash { uint64_t a, b; } keyhash;

static void kh_init(keyhash *h) {
    h->a = 0xcbf29ce484222325ull;
    h->b = 0x84222325cbf29ce4ull;
}

static void kh_add(keyhash *h, const char *s) {
    for (const unsigned char *c = (const unsigned char *)s;; c++) {
        h->a = (h->a ^ *c) * 0x100000001b3ull;
        h->b = (h->b ^ *c) * 0x100000001b3ull;
        h->b ^= h->b >> 29;
        if (!*c) break; /* the terminator separates fields */
    }
}

static void kh_addf(keyhash *h, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    kh_add(h, buf);
}

/* The device's full config, so two devices of one kind never share keys. */
static void kh_add_node(keyhash *h, const cfg_node *n) {
    if (!n) return;
    switch (n->kind) {
    case CFG_SCALAR: kh_add(h, n->scalar); break;
    case CFG_SEQ:
        kh_add(h, "[");
        for (size_t i = 0; i < n->n; i++) kh_add_node(h, n->items[i]);
        kh_add(h, "]");
        break;
    case CFG_MAP:
        kh_add(h, "{");
        for (size_t i = 0; i < n->n; i++) {
            kh_add(h, n->keys[i]);
            kh_add_node(h, n->items[i]);
        }
        kh_add(h, "}");
        break;
    }
}

static void kh_hex(const keyhash *h, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h->a, (unsigned long long)h->b);
}

/* ---- one job ------------------------------------------------------------- */

int sweep_workload_load(const char *model_path, const char *data_dir, const char *split,
                        uint32_t limit, sweep_workload *w, apx_error *err) {
    memset(w, 0, sizeof *w);
    if (bnn_load(model_path, &w->model, err)) return err->code;
    /* The model says how many classes its data have: Fashion-MNIST's 10, or
     * a constructed workload's (a Boolean function's 2). */
    if (idx_dir_load(data_dir, split, w->model.n_classes, limit, &w->data, err)) {
        bnn_free(&w->model);
        return err->code;
    }
    if (w->data.rows != w->model.in_rows || w->data.cols != w->model.in_cols ||
        w->data.n_classes != w->model.n_classes) {
        int rc = apx_fail(err, APX_EINPUT,
                          "%s expects %ux%u images and %u classes, the data set has %ux%u "
                          "and %u",
                          model_path, w->model.in_rows, w->model.in_cols, w->model.n_classes,
                          w->data.rows, w->data.cols, w->data.n_classes);
        sweep_workload_free(w);
        return rc;
    }
    bnn_hash_hex(&w->model, w->model_hash);
    /* A data set from another directory is named by it: a constructed
     * workload's data are not Fashion-MNIST. */
    char name[480];
    if (data_dir && strcmp(data_dir, fmnist_dir(NULL)) != 0)
        snprintf(name, sizeof name, "idx:%s/%s", data_dir, split);
    else
        snprintf(name, sizeof name, "fashion-mnist/%s", split);
    if (limit)
        snprintf(w->dataset_name, sizeof w->dataset_name, "%s[:%u]", name, w->data.n);
    else
        snprintf(w->dataset_name, sizeof w->dataset_name, "%s", name);
    return APX_OK;
}

int sweep_workload_load_spec(const sweep_workload_spec *s, sweep_workload *w,
                             apx_error *err) {
    if (sweep_workload_load(s->model_path, s->data_dir, s->split, s->limit, w, err))
        return apx_wrap(err, "workload %s: ", s->name);
    return APX_OK;
}

void sweep_workload_free(sweep_workload *w) {
    bnn_free(&w->model);
    dataset_free(&w->data);
}

typedef struct eval_slice {
    const bnn_model *model;
    const uint64_t *image;
    const dataset *data;
    uint32_t begin, end;
    size_t correct;
    int failed;
} eval_slice;

static void *eval_slice_run(void *arg) {
    eval_slice *s = arg;
    bnn_workspace *ws = bnn_workspace_new(s->model);
    if (!ws) {
        s->failed = 1;
        return NULL;
    }
    s->correct = bnn_eval_range(s->model, s->image, s->data, s->begin, s->end, ws, NULL);
    bnn_workspace_free(ws);
    return NULL;
}

/* Tells a device with a prepare hook every region of the model's weights,
 * built exactly as sweep_eval_job hands them to faults() (one per layer), so
 * that it can keep only what lands in them (a replayed map of millions of
 * faults then holds only those on the weights). sweep_run calls it once
 * before the jobs; sweep_eval_job calls it again for `apxsim eval` and other
 * direct callers: a device already prepared for these regions returns at
 * once (the replay device compares them under its lock). The device is the
 * caller's, not const: sweep_eval_job takes it const because faults() only
 * reads it. */
/* The region of layer l's weights: its used bits, rows of whole words. */
static device_region layer_region(const bnn_model *m, uint32_t l, const geometry *geo,
                                  uint64_t base_addr) {
    const bnn_layer *L = &m->layers[l];
    return (device_region){l, L->out, L->in, base_addr + L->offset * 8, (uint64_t)L->words * 8,
                           geo};
}

static device_region *model_regions(const bnn_model *m, const geometry *geo,
                                    uint64_t base_addr) {
    device_region *regions = malloc((m->n_layers ? m->n_layers : 1) * sizeof *regions);
    for (uint32_t l = 0; regions && l < m->n_layers; l++)
        regions[l] = layer_region(m, l, geo, base_addr);
    return regions;
}

static int prepare_device(const device *dev, const sweep_workload *w, size_t n_workloads,
                          const geometry *geo, uint64_t base_addr, apx_error *err) {
    if (!dev || !dev->ops->prepare) return APX_OK;
    size_t n = 0;
    for (size_t i = 0; i < n_workloads; i++) n += w[i].model.n_layers;
    device_region *regions = malloc((n ? n : 1) * sizeof *regions);
    if (!regions) return apx_fail(err, APX_EWORK, "out of memory");
    n = 0;
    for (size_t i = 0; i < n_workloads; i++)
        for (uint32_t l = 0; l < w[i].model.n_layers; l++)
            regions[n++] = layer_region(&w[i].model, l, geo, base_addr);
    int rc = dev->ops->prepare((device *)dev, regions, n, err);
    free(regions);
    return rc ? apx_wrap(err, "preparing the %s device: ", dev->ops->kind) : APX_OK;
}

/* sweep_eval_job; `prepare` is 0 in the pool, which prepared the device
 * once for the regions of every workload. */
static int eval_job(const sweep_workload *w, const device *dev, const double *op,
                    const sweep_layout *layout, const geometry *geo, uint64_t base_addr,
                    uint64_t seed, uint32_t chip, uint32_t threads, uint64_t *scratch,
                    job_result *res, int prepare, apx_error *err) {
    const bnn_model *m = &w->model;
    double t0 = progress_now();
    memset(res, 0, sizeof *res);
    uint64_t image_bytes = m->image_words * 8, memory = geometry_bytes(geo);
    if (base_addr > memory || image_bytes > memory - base_addr)
        return apx_fail(err, APX_EINPUT,
                        "the model's %llu bytes of weights at base %llu do not fit in a memory "
                        "of %llu bytes",
                        (unsigned long long)image_bytes, (unsigned long long)base_addr,
                        (unsigned long long)memory);
    if (m->n_layers > BNN_MAX_LAYERS)
        return apx_fail(err, APX_EINPUT, "the model has %u layers, more than %d",
                        m->n_layers, BNN_MAX_LAYERS);
    memcpy(scratch, m->image, m->image_words * sizeof *scratch);
    if (prepare && prepare_device(dev, w, 1, geo, base_addr, err)) return err->code;
    if (dev) {
        fmap fm;
        fmap_init(&fm, 0);
        for (uint32_t l = 0; l < m->n_layers; l++) {
            const bnn_layer *L = &m->layers[l];
            uint64_t bits = bnn_tensor_bits(m, l);
            if (layout && layout->exact[l]) { /* exact memory: no faults, no exposure */
                res->layers[l] = (store_layer_faults){0, 0, 0};
                continue;
            }
            const double *lop = layout && layout->layer_op[l] ? layout->layer_op[l] : op;
            device_region region = layer_region(m, l, geo, base_addr);
            int rc = dev->ops->faults(dev, lop, seed, chip, &region, &fm, err);
            if (rc) {
                fmap_free(&fm);
                return apx_wrap(err, "layer %u: ", l);
            }
            fmap_layout where = {scratch + L->offset, L->out, L->in, L->words};
            uint64_t changed = fmap_apply(&fm, &where);
            res->layers[l] = (store_layer_faults){bits, fm.n, changed};
            res->bits_exposed += bits;
            res->faults += fm.n;
            res->bits_changed += changed;
        }
        res->n_layers = m->n_layers;
        fmap_free(&fm);
    }
    res->fault_seconds = progress_now() - t0;
    uint32_t n = w->data.n;
    threads = sweep_threads(threads);
    if (threads > n) threads = n ? n : 1;
    eval_slice slices[64];
    pthread_t tid[64];
    if (threads > 64) threads = 64;
    for (uint32_t t = 0; t < threads; t++)
        slices[t] = (eval_slice){m, scratch, &w->data, (uint32_t)((uint64_t)n * t / threads),
                                 (uint32_t)((uint64_t)n * (t + 1) / threads), 0, 0};
    for (uint32_t t = 1; t < threads; t++)
        if (pthread_create(&tid[t], NULL, eval_slice_run, &slices[t])) slices[t].failed = 2;
    eval_slice_run(&slices[0]);
    int failed = slices[0].failed;
    for (uint32_t t = 1; t < threads; t++) {
        if (slices[t].failed != 2) pthread_join(tid[t], NULL);
        failed |= slices[t].failed;
        res->n_correct += (uint32_t)slices[t].correct;
    }
    res->n_correct += (uint32_t)slices[0].correct;
    if (failed) return apx_fail(err, APX_EWORK, "evaluation: out of memory or threads");
    res->n_samples = n;
    res->seconds = progress_now() - t0;
    return APX_OK;
}

int sweep_eval_job(const sweep_workload *w, const device *dev, const double *op,
                   const sweep_layout *layout, const geometry *geo, uint64_t base_addr,
                   uint64_t seed, uint32_t chip, uint32_t threads, uint64_t *scratch,
                   job_result *res, apx_error *err) {
    return eval_job(w, dev, op, layout, geo, base_addr, seed, chip, threads, scratch, res, 1,
                    err);
}

/* Adds w x part to sum: totals and items by name. */
static void cost_add(device_cost *sum, const device_cost *part, double w) {
    sum->energy_pj += w * part->energy_pj;
    sum->latency_ns += w * part->latency_ns;
    for (int i = 0; i < part->n_items; i++) {
        int j = 0;
        while (j < sum->n_items && strcmp(sum->item[j].name, part->item[i].name)) j++;
        if (j < sum->n_items) sum->item[j].value += w * part->item[i].value;
        else device_cost_add(sum, part->item[i].name, w * part->item[i].value);
    }
}

int sweep_job_cost(const sweep_workload *w, const device *dev, const double *op,
                   const sweep_layout *layout, const geometry *geo, uint64_t base_addr,
                   uint32_t batch, device_cost *cost, int *has_cost, apx_error *err) {
    memset(cost, 0, sizeof *cost);
    *has_cost = 0;
    if (!dev || !dev->ops->cost) return APX_OK;
    const bnn_model *m = &w->model;
    device_region *all = model_regions(m, geo, base_addr);
    if (!all) return apx_fail(err, APX_EWORK, "out of memory");
    double dflt[DEVICE_MAX_KNOBS];
    int n_knobs = device_knob_count(dev->ops), have_dflt = dev->ops->knob_default != NULL;
    for (int k = 0; have_dflt && k < n_knobs; k++)
        have_dflt = dev->ops->knob_default(dev, k, &dflt[k]);
    /* The point each layer's weights are read at: the job's, a partition's,
     * or the default for exact memory. */
    const double *at[BNN_MAX_LAYERS];
    uint64_t total_bits = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        at[l] = op;
        if (layout && layout->exact[l]) at[l] = have_dflt ? dflt : op;
        else if (layout && layout->layer_op[l]) at[l] = layout->layer_op[l];
        total_bits += bnn_tensor_bits(m, l);
    }
    /* The weights are one stream. With every layer at one point it is costed
     * as is; with several points, the whole stream is costed at each and
     * each point is charged its layers' share of the bits, so splitting a
     * model into partitions never adds the fixed cost of a second stream. */
    int rc = APX_OK;
    uint8_t done[BNN_MAX_LAYERS] = {0};
    for (uint32_t first = 0; rc == APX_OK && first < m->n_layers; first++) {
        if (done[first]) continue;
        uint64_t bits = 0;
        for (uint32_t l = first; l < m->n_layers; l++)
            if (at[l] == at[first]) {
                done[l] = 1;
                bits += bnn_tensor_bits(m, l);
            }
        device_cost part;
        memset(&part, 0, sizeof part);
        rc = dev->ops->cost(dev, at[first], all, m->n_layers, batch ? batch : 1, &part, err);
        if (rc == APX_OK) cost_add(cost, &part, total_bits ? (double)bits / total_bits : 1.0);
    }
    free(all);
    if (rc) return apx_wrap(err, "the cost of reading the weights: ");
    *has_cost = 1;
    return APX_OK;
}

/* ---- the pool ------------------------------------------------------------ */

typedef struct job {
    size_t point;
    uint32_t chip, wl;
    char eval_key[33], op_key[33];
} job;

typedef struct pool {
    const sweep_plan *plan;
    const sweep_workload *w;    /* plan->n_workloads of them */
    store *db;
    int64_t run_id;
    job *jobs;
    size_t n_jobs, next, done;
    volatile int *stop;
    pthread_mutex_t lock;  /* guards next, done, db and the error */
    int rc;
    apx_error err;
    double inference_s, fault_s, cost_s; /* sums over the jobs stored */
    sweep_progress_fn progress;
    void *ctx;
} pool;

static int store_job(pool *P, const job *j, const job_result *r, const device_cost *c,
                     int has_cost, apx_error *err) {
    const sweep_plan *p = P->plan;
    char label[256];
    sweep_point_label(p, j->point, label, sizeof label);
    const char *names[DEVICE_MAX_COST_ITEMS];
    double values[DEVICE_MAX_COST_ITEMS];
    for (int i = 0; i < c->n_items; i++) {
        names[i] = c->item[i].name;
        values[i] = c->item[i].value;
    }
    store_eval e = {
        .eval_key = j->eval_key,
        .run_id = P->run_id,
        .campaign = p->name,
        .op_key = j->op_key,
        .device = p->dev->ops->kind,
        .op_label = label,
        .knobs = p->dev->ops->knobs,
        .values = &p->points[j->point * p->n_knobs],
        .n_knobs = p->n_knobs,
        .chip = j->chip,
        .workload = p->workloads[j->wl].name,
        .model_path = p->workloads[j->wl].model_path,
        .model_hash = P->w[j->wl].model_hash,
        .dataset = P->w[j->wl].dataset_name,
        .n_samples = r->n_samples,
        .n_correct = r->n_correct,
        .bits_exposed = r->bits_exposed,
        .faults_injected = r->faults,
        .bits_changed = r->bits_changed,
        .seconds = r->seconds,
        .layers = r->layers,
        .n_layers = r->n_layers,
        .has_cost = has_cost,
        .energy_pj = c->energy_pj,
        .latency_ns = c->latency_ns,
        .n_costs = c->n_items,
        .cost_names = names,
        .cost_values = values,
    };
    int inserted;
    return store_put_eval(P->db, &e, &inserted, err);
}

static void *worker(void *arg) {
    pool *P = arg;
    const sweep_plan *p = P->plan;
    size_t words = 1;
    for (size_t i = 0; i < p->n_workloads; i++)
        if (P->w[i].model.image_words > words) words = P->w[i].model.image_words;
    uint64_t *scratch = malloc(words * sizeof *scratch);
    apx_error err = {0};
    int rc = scratch ? APX_OK : apx_fail(&err, APX_EWORK, "out of memory");
    for (;;) {
        pthread_mutex_lock(&P->lock);
        int quit = rc || P->rc || *P->stop || P->next == P->n_jobs;
        job *j = quit ? NULL : &P->jobs[P->next++];
        pthread_mutex_unlock(&P->lock);
        if (!j) break;
        job_result r;
        device_cost cost;
        int has_cost = 0;
        const double *op = &p->points[j->point * p->n_knobs];
        const sweep_workload *w = &P->w[j->wl];
        rc = eval_job(w, p->dev, op, &p->layout, &p->geo, p->base_addr, p->seed, j->chip, 1,
                      scratch, &r, 0, &err);
        double t_cost = progress_now();
        if (rc == APX_OK)
            rc = sweep_job_cost(w, p->dev, op, &p->layout, &p->geo, p->base_addr, p->batch,
                                &cost, &has_cost, &err);
        t_cost = progress_now() - t_cost;
        pthread_mutex_lock(&P->lock);
        if (rc == APX_OK) rc = store_job(P, j, &r, &cost, has_cost, &err);
        if (rc == APX_OK) {
            P->done++;
            P->inference_s += r.seconds - r.fault_seconds;
            P->fault_s += r.fault_seconds;
            P->cost_s += t_cost;
        }
        if (P->progress) P->progress(P->ctx, P->done, P->n_jobs);
        pthread_mutex_unlock(&P->lock);
    }
    pthread_mutex_lock(&P->lock);
    if (rc && !P->rc) {
        P->rc = rc;
        P->err = err;
    }
    pthread_mutex_unlock(&P->lock);
    free(scratch);
    return NULL;
}

static void make_keys(const sweep_plan *p, const sweep_workload *w, size_t point,
                      uint32_t chip, job *j) {
    keyhash op;
    kh_init(&op);
    kh_add(&op, "apxsim-op-v1");
    kh_add(&op, p->dev->ops->kind);
    kh_add_node(&op, p->device_node); /* the content, also when named by path */
    kh_add_node(&op, cfg_find(cfg_root(p->doc), "memory"));
    if (p->dev->ops->content_hash) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx",
                 (unsigned long long)p->dev->ops->content_hash(p->dev));
        kh_add(&op, hex);
    }
    for (int k = 0; k < p->n_knobs; k++) {
        kh_add(&op, p->dev->ops->knobs[k]);
        kh_addf(&op, p->points[point * p->n_knobs + k]);
    }
    kh_hex(&op, j->op_key);
    keyhash ev = op;
    kh_add(&ev, "apxsim-eval-v1");
    kh_add(&ev, w->model_hash);
    kh_add(&ev, w->dataset_name);
    kh_addf(&ev, (double)p->seed);
    kh_addf(&ev, chip);
    kh_hex(&ev, j->eval_key);
    j->point = point;
    j->chip = chip;
}

/* Numeric scalars of a mapping (and of the mappings inside it, one level
 * down) as metrics named prefix.key[.subkey]. */
static size_t sidecar_numbers(const cfg_node *map, const char *prefix, store_metric *m,
                              char (*names)[96], size_t cap, int depth) {
    size_t n = 0;
    for (size_t i = 0; i < map->n && n < cap; i++) {
        const cfg_node *v = map->items[i];
        char name[96];
        snprintf(name, sizeof name, "%s.%s", prefix, map->keys[i]);
        if (v->kind == CFG_MAP && depth == 0) {
            n += sidecar_numbers(v, name, m + n, names + n, cap - n, 1);
        } else if (v->kind == CFG_SCALAR) {
            char *end;
            double x = strtod(v->scalar, &end);
            if (end == v->scalar || *end) continue;
            snprintf(names[n], sizeof names[n], "%s", name);
            m[n] = (store_metric){names[n], -1, x};
            n++;
        }
    }
    return n;
}

/* A constructed model's parameters (MODEL.bnn.yaml, written by `apxsim
 * construct`, keyed by the model hash) into model_metrics as construct.*,
 * data set '' (properties of the model alone). No sidecar: nothing to do. */
static int store_sidecar(store *db, const sweep_workload_spec *spec, const sweep_workload *w,
                         apx_error *err) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s.yaml", spec->model_path) >= sizeof path ||
        access(path, F_OK) != 0)
        return APX_OK;
    cfg_doc *doc = cfg_load_file(path, err);
    if (!doc) return err->code;
    const cfg_node *root = cfg_root(doc), *hash = cfg_find(root, "model_hash");
    int rc = APX_OK;
    if (root->kind != CFG_MAP || !hash || hash->kind != CFG_SCALAR) {
        rc = cfg_fail(root, err, "a model's parameter file needs a model_hash");
    } else if (strcmp(hash->scalar, w->model_hash) != 0) {
        rc = cfg_fail(hash, err, "describes model %s, but %s is model %s: regenerate or remove "
                                 "the parameter file", hash->scalar, spec->model_path,
                      w->model_hash);
    } else {
        store_metric m[128];
        char names[128][96];
        size_t n = sidecar_numbers(root, "construct", m, names, 128, 0);
        rc = store_put_metrics(db, w->model_hash, "", m, n, err);
    }
    cfg_free(doc);
    return rc;
}

/* The bit-error-tolerance metrics of a workload's model on its data
 * (workloads/bet.h) into model_metrics, once per model and data set: a
 * database that has them (bet.samples) is not asked again. */
static int store_bet(store *db, const sweep_workload *w, uint32_t threads, volatile int *stop,
                     apx_error *err) {
    int exists;
    if (store_has_metric(db, w->model_hash, w->dataset_name, "bet.samples", &exists, err))
        return err->code;
    if (exists) return APX_OK;
    bet_metrics b;
    bet_options opt = {0, sweep_threads(threads), stop, NULL, NULL};
    if (bet_compute(&w->model, &w->data, &opt, &b, err))
        return apx_wrap(err, "bit-error-tolerance metrics: ");
    size_t n = bet_rows(&b, NULL, 0);
    bet_row *rows = malloc((n ? n : 1) * sizeof *rows);
    store_metric *m = malloc((n ? n : 1) * sizeof *m);
    int rc = rows && m ? APX_OK : apx_fail(err, APX_EWORK, "out of memory");
    if (rc == APX_OK) {
        bet_rows(&b, rows, n);
        for (size_t i = 0; i < n; i++) m[i] = (store_metric){rows[i].name, rows[i].layer,
                                                             rows[i].value};
        rc = store_put_metrics(db, w->model_hash, w->dataset_name, m, n, err);
    }
    free(rows);
    free(m);
    bet_metrics_free(&b);
    return rc;
}

static void free_workloads(sweep_workload *w, size_t n) {
    for (size_t i = 0; i < n; i++) sweep_workload_free(&w[i]);
    free(w);
}

int sweep_run(const sweep_plan *p, const char *db_path, const char *config_text,
              uint32_t threads, sweep_progress_fn progress, void *ctx, volatile int *stop,
              sweep_stats *stats, apx_error *err) {
    memset(stats, 0, sizeof *stats);
    double t0 = progress_now();
    sweep_workload *w = calloc(p->n_workloads, sizeof *w);
    if (!w) return apx_fail(err, APX_EWORK, "out of memory");
    size_t loaded = 0;
    int rc = APX_OK;
    for (; rc == APX_OK && loaded < p->n_workloads; loaded++)
        if ((rc = sweep_workload_load_spec(&p->workloads[loaded], &w[loaded], err)) ||
            (rc = sweep_check_layout(p, &w[loaded].model, err)))
            break;
    for (size_t i = 0; rc == APX_OK && i < loaded; i++)
        for (size_t k = 0; rc == APX_OK && k < i; k++)
            if (!strcmp(w[i].model_hash, w[k].model_hash) &&
                !strcmp(w[i].dataset_name, w[k].dataset_name))
                rc = apx_fail(err, APX_EINPUT,
                              "workloads %s and %s are the same model on the same data: their "
                              "results would be the same rows",
                              p->workloads[k].name, p->workloads[i].name);
    if (rc == APX_OK) rc = prepare_device(p->dev, w, loaded, &p->geo, p->base_addr, err);
    if (rc) {
        free_workloads(w, loaded + (loaded < p->n_workloads));
        return rc;
    }
    pool P = {.plan = p, .w = w, .stop = stop, .progress = progress, .ctx = ctx};
    rc = store_open(db_path ? db_path : p->output, &P.db, err);
    if (rc) {
        free_workloads(w, loaded);
        return rc;
    }
    for (size_t i = 0; i < loaded; i++)
        if ((rc = store_sidecar(P.db, &p->workloads[i], &w[i], err)) ||
            (p->metrics && (rc = store_bet(P.db, &w[i], threads ? threads : p->threads, stop,
                                           err)))) {
            store_close(P.db);
            free_workloads(w, loaded);
            return rc;
        }
    size_t total = p->n_workloads * p->n_points * p->chips;
    P.jobs = malloc(total * sizeof *P.jobs);
    if (!P.jobs) {
        rc = apx_fail(err, APX_EWORK, "out of memory planning %zu jobs", total);
        goto out;
    }
    uint32_t shards = p->shard_count ? p->shard_count : 1;
    size_t index = 0, in_shard = 0;
    for (uint32_t wl = 0; wl < p->n_workloads; wl++) {
        for (size_t i = 0; i < p->n_points; i++) {
            for (uint32_t c = 0; c < p->chips; c++, index++) {
                if (index % shards != p->shard_index) continue;
                in_shard++;
                job *j = &P.jobs[P.n_jobs];
                make_keys(p, &w[wl], i, c, j);
                j->wl = wl;
                int exists;
                if ((rc = store_has_eval(P.db, j->eval_key, &exists, err))) goto out;
                if (exists)
                    stats->jobs_skipped++;
                else
                    P.n_jobs++;
            }
        }
    }
    stats->jobs_total = in_shard;
    store_run run = {p->name, p->config_path, config_text, APXSIM_VERSION, p->seed,
                     p->device_doc ? cfg_find(cfg_root(p->doc), "device")->scalar : NULL,
                     p->device_doc ? cfg_text(p->device_doc) : NULL};
    if ((rc = store_run_begin(P.db, &run, &P.run_id, err))) goto out;
    stats->run_id = P.run_id;
    pthread_mutex_init(&P.lock, NULL);
    uint32_t n = sweep_threads(threads ? threads : p->threads);
    if (n > P.n_jobs) n = P.n_jobs ? (uint32_t)P.n_jobs : 1;
    pthread_t tid[256];
    if (n > 256) n = 256;
    uint32_t started = 0;
    for (; started < n; started++)
        if (pthread_create(&tid[started], NULL, worker, &P)) break;
    if (started == 0) worker(&P);
    for (uint32_t t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&P.lock);
    stats->jobs_done = P.done;
    stats->threads = started ? started : 1;
    stats->inference_seconds = P.inference_s;
    stats->fault_seconds = P.fault_s;
    stats->cost_seconds = P.cost_s;
    rc = P.rc;
    if (rc) *err = P.err;
    else if (P.done < P.n_jobs) rc = apx_fail(err, APX_EINTR, "sweep interrupted");
    apx_error end_err = {0};
    store_run_end(P.db, P.run_id, rc == APX_OK ? "done" : rc == APX_EINTR ? "interrupted"
                                                                           : "failed",
                  &end_err);
out:
    stats->seconds = progress_now() - t0;
    free(P.jobs);
    store_close(P.db);
    free_workloads(w, loaded);
    return rc;
}
