/* dram_fmap.c - how long a device takes to draw the fault map of a model's
 * weights (bench/dram_fmap.sh builds and runs it).
 *
 *   dram_fmap DEVICE.yaml MODEL.bnn KNOB=VALUE [CHIPS]
 *   e.g. dram_fmap configs/devices/ddr4-2400-8gb-x8.yaml workloads/zoo/fmnist-fc.bnn \
 *        trcd=10.1 200
 *
 * The regions are the model's weight tensors as sim/sweep.c hands them to a
 * device (one per layer, the image at byte 0 of the default geometry: one
 * DDR4 8Gb x8 rank, RoBaBgCoCh). The operating point is the device's knob
 * defaults with KNOB set to VALUE (a device without defaults, such as
 * uniform, has one knob). For each chip 0..CHIPS-1 (default 200) it times
 * the maps of all layers together (the thread's CPU time; one fmap reused,
 * as sweep_eval_job does) and prints the median and 90th percentile of
 * those times and the mean time per fault, the median and mean faults per
 * map and their fraction of the weight bits, and for a dram device the
 * nested-draw candidates per fault (dram_errors_faults_stats, chip 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/device.h"
#include "models/dram/dram_errors.h"
#include "workloads/bnn.h"

/* The thread's CPU time: on a shared machine, wall time also counts the
 * time other processes hold the core. */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5 || !strchr(argv[3], '=')) {
        fprintf(stderr, "usage: %s DEVICE.yaml MODEL.bnn KNOB=VALUE [CHIPS]\n", argv[0]);
        return 2;
    }
    const char *dev_path = argv[1], *model_path = argv[2];
    char knob[64];
    snprintf(knob, sizeof knob, "%.*s", (int)(strchr(argv[3], '=') - argv[3]), argv[3]);
    double value = atof(strchr(argv[3], '=') + 1);
    int chips = argc > 4 ? atoi(argv[4]) : 200;
    if (chips < 1) return 2;
    apx_error err = {0};
    bnn_model m;
    cfg_doc *doc = cfg_load_file(dev_path, &err);
    device *dev = NULL;
    if (!doc || device_create(cfg_root(doc), &dev, &err)) goto fail;
    double op[DEVICE_MAX_KNOBS] = {0};
    int n_knobs = device_knob_count(dev->ops), which = -1;
    for (int k = 0; k < n_knobs; k++) {
        if (dev->ops->knob_default) dev->ops->knob_default(dev, k, &op[k]);
        if (strcmp(dev->ops->knobs[k], knob) == 0) which = k;
    }
    if (which < 0) {
        fprintf(stderr, "%s has no knob '%s'\n", dev_path, knob);
        return 2;
    }
    op[which] = value;
    int is_dram = strcmp(dev->ops->kind, "dram") == 0;
    dram_error_params params;
    if (dev->ops->check_point(dev, op, NULL, &err) ||
        (is_dram && dram_error_params_from_yaml(cfg_find(cfg_root(doc), "errors"), op[DK_VDD],
                                                &params, &err)) ||
        bnn_load(model_path, &m, &err))
        goto fail;

    geometry geo;
    geometry_default(&geo);
    device_region regions[BNN_MAX_LAYERS];
    uint64_t bits = 0;
    for (uint32_t l = 0; l < m.n_layers; l++) {
        const bnn_layer *L = &m.layers[l];
        regions[l] = (device_region){l, L->out, L->in, L->offset * 8, (uint64_t)L->words * 8,
                                     &geo};
        bits += bnn_tensor_bits(&m, l);
    }
    double *t = malloc((size_t)chips * sizeof *t), *f = malloc((size_t)chips * sizeof *f);
    fmap fm;
    fmap_init(&fm, 0);
    uint64_t faults = 0, candidates = 0, stat_faults = 0;
    double total = 0;
    for (int c = 0; c < chips; c++) {
        double t0 = now_s();
        uint64_t n = 0;
        for (uint32_t l = 0; l < m.n_layers; l++) {
            if (dev->ops->faults(dev, op, 1, (uint32_t)c, &regions[l], &fm, &err)) goto fail;
            n += fm.n;
        }
        t[c] = now_s() - t0;
        total += t[c];
        f[c] = (double)n;
        faults += n;
    }
    for (uint32_t l = 0; is_dram && l < m.n_layers; l++) {  /* the work, for chip 0 */
        dram_errors_stats st;
        if (dram_errors_faults_stats(&params, op, 1, 0, &regions[l], &fm, &st, &err)) goto fail;
        candidates += st.candidates;
        stat_faults += fm.n;
    }
    qsort(t, (size_t)chips, sizeof *t, by_value);
    qsort(f, (size_t)chips, sizeof *f, by_value);
    printf("model %s: %u layers, %llu weight bits; device %s (%s) at %s = %g\n", model_path,
           m.n_layers, (unsigned long long)bits, dev_path, dev->ops->kind, knob, value);
    printf("faults per map over %d chips: median %.0f (fraction %.3g), mean %.1f (%.3g)\n",
           chips, f[chips / 2], f[chips / 2] / (double)bits, (double)faults / chips,
           (double)faults / chips / (double)bits);
    if (is_dram)
        printf("candidates per fault (chip 0): %.2f\n",
               stat_faults ? (double)candidates / (double)stat_faults : 0.0);
    printf("CPU time per map: median %.3f ms, 90th percentile %.3f ms; %.0f ns per fault\n",
           1e3 * t[chips / 2], 1e3 * t[chips * 9 / 10], faults ? 1e9 * total / faults : 0.0);
    free(f);
    free(t);
    fmap_free(&fm);
    bnn_free(&m);
    device_destroy(dev);
    cfg_free(doc);
    return 0;
fail:
    fprintf(stderr, "dram_fmap: %s\n", err.msg);
    return 1;
}
