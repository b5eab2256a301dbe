/* cmd_metrics.c - `apxsim metrics`: the bit-error-tolerance metrics of a
 * model on Fashion-MNIST (workloads/bet.h, docs/bet-metrics.md), as tables
 * or JSON, optionally stored in a results database. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../workloads/bet.h"
#include "commands.h"
#include "progress.h"
#include "store.h"
#include "sweep.h"

static const char metrics_help[] =
    "Usage: apxsim metrics MODEL.bnn [options]\n"
    "\n"
    "Computes the bit-error-tolerance metrics of a model on Fashion-MNIST with\n"
    "error-free weights (definitions: docs/bet-metrics.md):\n"
    "  - per hidden layer, the margins between each output bit's pre-activation\n"
    "    and its folded batch-norm threshold (raw and normalised by fan-in) and\n"
    "    the histogram of k_tol, the weight flips a unit tolerates for sure;\n"
    "  - the importance of every hidden neuron (conv: channel): the accuracy\n"
    "    drop and the rate of changed predictions when its output is flipped,\n"
    "    with their mean, variance and scale-free variance per layer and overall;\n"
    "  - the output-layer margin s_y - max other, in flip units, and the k_tol\n"
    "    of the predicted class.\n"
    "Results do not depend on the thread count.\n"
    "\n"
    "Options:\n"
    "      --split S       test (default) or train\n"
    "      --limit N       the first N samples only (at most the split's size)\n"
    "      --threads N     worker threads (default: one per core)\n"
    "      --data DIR      Fashion-MNIST directory (default: $" FMNIST_ENV " or\n"
    "                      " FMNIST_DEFAULT_DIR ")\n"
    "      --json          print one JSON object instead of tables\n"
    "      --db FILE       also store the metrics in this results database\n"
    "                      (table model_metrics; see 'apxsim query --preset metrics')\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim metrics workloads/zoo/fmnist-fc.bnn --limit 1000\n";

static int parse_count(const char *s, uint32_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

static const char *kind_name(uint32_t kind) {
    switch (kind) {
    case BNN_DENSE_U8: return "dense8";
    case BNN_DENSE_BIN: return "dense";
    case BNN_DENSE_OUT: return "output";
    case BNN_CONV_U8: return "conv8";
    case BNN_CONV_BIN: return "conv";
    }
    return "?";
}

/* Fraction of a k_tol histogram at or below kappa (< 16, an exact bin). */
static double le(const uint64_t *h, uint64_t total, uint32_t kappa) {
    uint64_t c = 0;
    for (uint32_t b = 0; b <= kappa; b++) c += h[b];
    return total ? (double)c / (double)total : 0;
}

static void bin_label(uint32_t b, char *buf, size_t len) {
    uint64_t lo = bet_ktol_bin_low(b);
    if (b < 16)
        snprintf(buf, len, "%llu", (unsigned long long)lo);
    else if (b + 1 == BET_KTOL_BINS)
        snprintf(buf, len, "%llu+", (unsigned long long)lo);
    else
        snprintf(buf, len, "%llu-%llu", (unsigned long long)lo,
                 (unsigned long long)bet_ktol_bin_low(b + 1) - 1);
}

static void print_ktol_cells(const uint64_t *h, uint64_t total) {
    static const uint32_t kappa[] = {0, 1, 2, 5};
    for (int i = 0; i < 4; i++) printf(" %6.2f%%", 100 * le(h, total, kappa[i]));
}

static void print_text(const char *path, const sweep_workload *w, const char *dataset,
                       uint32_t threads, const bet_metrics *b) {
    uint32_t nl = b->n_layers;
    printf("model      %s (%s, %u layers)\n", path, w->model_hash, nl);
    printf("data       %s, %u samples, accuracy %.2f%%\n", dataset, b->n_samples,
           100.0 * b->n_correct / b->n_samples);
    printf("time       %.2f s on %u thread%s (kernel %s)\n\n", b->seconds, threads,
           threads == 1 ? "" : "s", bnn_kernel_name(bnn_kernel_active()));
    printf("margins (raw in pre-activation units; norm = raw / (fan-in x input scale))\n");
    printf("layer kind    units fan-in  pos      mean       min    median      norm"
           "   k_tol<=0     <=1     <=2     <=5\n");
    for (uint32_t l = 0; l + 1 < nl; l++) {
        const bet_layer_metrics *M = &b->layer[l];
        printf("%-5u %-6s %6u %6u %4u %9.2f %9.1f %9.1f %9.4f ", l, kind_name(M->kind), M->units,
               M->fan_in, M->positions, M->margin_mean, M->margin_min, M->margin_median,
               M->margin_norm_mean);
        print_ktol_cells(M->ktol_hist, M->n_margins);
        printf("\n");
    }
    printf("%-52s %9.4f ", "all hidden", b->margin_norm_mean);
    print_ktol_cells(b->ktol_hist, b->n_margins);
    printf("\n%-52s %9.4f\n\n", "mean of the layers", b->margin_norm_mean_layers);

    printf("importance of a neuron (conv: channel) flipped on every sample\n");
    printf("layer kind    units   acc drop: mean        var   var/m^2   flip rate: mean"
           "        var   var/m^2\n");
    for (uint32_t l = 0; l + 1 < nl; l++) {
        const bet_layer_metrics *M = &b->layer[l];
        printf("%-5u %-6s %6u %15.3e %10.3e %9.3f %16.3e %10.3e %9.3f\n", l, kind_name(M->kind),
               M->units, M->importance.mean, M->importance.var, M->importance.scale_free,
               M->flip_rate.mean, M->flip_rate.var, M->flip_rate.scale_free);
    }
    printf("%-19s %15.3e %10.3e %9.3f %16.3e %10.3e %9.3f\n\n", "all hidden", b->importance.mean,
           b->importance.var, b->importance.scale_free, b->flip_rate.mean, b->flip_rate.var,
           b->flip_rate.scale_free);

    const bet_layer_metrics *O = &b->layer[nl - 1];
    printf("output layer %u: %u classes, fan-in %u\n", nl - 1, O->units, O->fan_in);
    printf("  margin (s_y - max other) / 2: mean %.2f, over correct samples %.2f, median %.1f, "
           "min %.1f\n", b->output_margin_mean, b->output_margin_mean_correct,
           b->output_margin_median, b->output_margin_min);
    printf("  k_tol of the prediction  <=0 %.2f%%  <=1 %.2f%%  <=2 %.2f%%  <=5 %.2f%%\n\n",
           100 * le(b->output_ktol_hist, b->n_samples, 0),
           100 * le(b->output_ktol_hist, b->n_samples, 1),
           100 * le(b->output_ktol_hist, b->n_samples, 2),
           100 * le(b->output_ktol_hist, b->n_samples, 5));

    uint32_t top = 0;
    for (uint32_t k = 0; k < BET_KTOL_BINS; k++)
        if (b->ktol_hist[k] || b->output_ktol_hist[k]) top = k;
    printf("k_tol histogram (%% of hidden output bits; output: of samples)\n%-12s", "k_tol");
    for (uint32_t l = 0; l + 1 < nl; l++) printf("  layer %-3u", l);
    printf("  %9s  %9s\n", "all", "output");
    for (uint32_t k = 0; k <= top; k++) {
        char lab[32];
        bin_label(k, lab, sizeof lab);
        printf("%-12s", lab);
        for (uint32_t l = 0; l + 1 < nl; l++)
            printf("  %8.3f%%", 100.0 * b->layer[l].ktol_hist[k] / b->layer[l].n_margins);
        printf("  %8.3f%%  %8.3f%%\n", 100.0 * b->ktol_hist[k] / b->n_margins,
               100.0 * b->output_ktol_hist[k] / b->n_samples);
    }
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(const char *v) {
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

static void json_hist(const uint64_t *h) {
    printf("[");
    for (uint32_t k = 0; k < BET_KTOL_BINS; k++)
        printf("%s%llu", k ? ", " : "", (unsigned long long)h[k]);
    printf("]");
}

static void json_stat(const char *name, const bet_stat *s) {
    printf("\"%s\": {\"mean\": %.9g, \"var\": %.9g, \"scale_free\": %.9g}", name, s->mean, s->var,
           s->scale_free);
}

static void print_json(const char *path, const sweep_workload *w, const char *dataset,
                       uint32_t threads, const bet_metrics *b) {
    uint32_t nl = b->n_layers;
    printf("{\"model\": ");
    json_string(path);
    printf(", \"model_name\": ");
    json_string(w->model.name);
    printf(", \"model_hash\": \"%s\", \"dataset\": \"%s\", \"samples\": %u, \"correct\": %u, "
           "\"accuracy\": %.6f, \"threads\": %u, \"kernel\": \"%s\", \"seconds\": %.6f,\n",
           w->model_hash, dataset, b->n_samples, b->n_correct,
           (double)b->n_correct / b->n_samples, threads, bnn_kernel_name(bnn_kernel_active()),
           b->seconds);
    printf(" \"ktol_bins\": [");
    for (uint32_t k = 0; k < BET_KTOL_BINS; k++)
        printf("%s%llu", k ? ", " : "", (unsigned long long)bet_ktol_bin_low(k));
    printf("],\n \"layers\": [\n");
    for (uint32_t l = 0; l + 1 < nl; l++) {
        const bet_layer_metrics *M = &b->layer[l];
        printf("  {\"layer\": %u, \"kind\": \"%s\", \"units\": %u, \"fan_in\": %u, "
               "\"positions\": %u, \"input_scale\": %g, \"margins\": %llu, "
               "\"margin_mean\": %.9g, \"margin_min\": %.9g, \"margin_median\": %.9g, "
               "\"margin_norm_mean\": %.9g, \"ktol_hist\": ",
               l, kind_name(M->kind), M->units, M->fan_in, M->positions, M->input_scale,
               (unsigned long long)M->n_margins, M->margin_mean, M->margin_min,
               M->margin_median, M->margin_norm_mean);
        json_hist(M->ktol_hist);
        printf(", ");
        json_stat("importance", &M->importance);
        printf(", ");
        json_stat("flip_rate", &M->flip_rate);
        printf("}%s\n", l + 2 < nl ? "," : "");
    }
    printf(" ],\n \"overall\": {\"margins\": %llu, \"margin_norm_mean\": %.9g, "
           "\"margin_norm_mean_layers\": %.9g, \"ktol_hist\": ",
           (unsigned long long)b->n_margins, b->margin_norm_mean, b->margin_norm_mean_layers);
    json_hist(b->ktol_hist);
    printf(", ");
    json_stat("importance", &b->importance);
    printf(", ");
    json_stat("flip_rate", &b->flip_rate);
    const bet_layer_metrics *O = &b->layer[nl - 1];
    printf("},\n \"output\": {\"layer\": %u, \"units\": %u, \"fan_in\": %u, "
           "\"margin_mean\": %.9g, \"margin_mean_correct\": %.9g, \"margin_median\": %.9g, "
           "\"margin_min\": %.9g, \"ktol_hist\": ",
           nl - 1, O->units, O->fan_in, b->output_margin_mean, b->output_margin_mean_correct,
           b->output_margin_median, b->output_margin_min);
    json_hist(b->output_ktol_hist);
    printf("},\n \"steps\": {\"sparse\": %llu, \"dense\": %llu}}\n",
           (unsigned long long)b->steps_sparse, (unsigned long long)b->steps_dense);
}

/* The metrics as model_metrics rows. */
static int store_metrics(const char *db, const sweep_workload *w, const char *dataset,
                         const bet_metrics *b, size_t *stored, apx_error *err) {
    size_t n = bet_rows(b, NULL, 0);
    bet_row *rows = malloc(n * sizeof *rows);
    store_metric *sm = malloc(n * sizeof *sm);
    store *s = NULL;
    int rc = APX_OK;
    if (!rows || !sm) rc = apx_fail(err, APX_EWORK, "out of memory");
    if (rc == APX_OK) {
        bet_rows(b, rows, n);
        for (size_t i = 0; i < n; i++)
            sm[i] = (store_metric){rows[i].name, rows[i].layer, rows[i].value};
        rc = store_open(db, &s, err);
    }
    if (rc == APX_OK) rc = store_put_metrics(s, w->model_hash, dataset, sm, n, err);
    store_close(s);
    free(rows);
    free(sm);
    *stored = rc == APX_OK ? n : 0;
    return rc;
}

static void metrics_progress(void *ctx, size_t done, size_t total) {
    progress_update(ctx, done, total);
}

int cmd_metrics(int argc, char **argv) {
    static const struct option opts[] = {
        {"split", required_argument, 0, 's'}, {"limit", required_argument, 0, 'l'},
        {"threads", required_argument, 0, 't'}, {"data", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},          {"db", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *split = "test", *data = NULL, *db = NULL;
    uint32_t limit = 0, threads = 0;
    int json = 0, c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': split = optarg; break;
        case 'l':
            if (parse_count(optarg, &limit) || !limit)
                return cli_usage("metrics", "--limit needs a positive count, got '%s'", optarg);
            break;
        case 't':
            if (parse_count(optarg, &threads) || !threads || threads > 256)
                return cli_usage("metrics", "--threads needs a count from 1 to 256, got '%s'",
                                 optarg);
            break;
        case 'd': data = optarg; break;
        case 'j': json = 1; break;
        case 'D': db = optarg; break;
        case 'h': fputs(metrics_help, stdout); return 0;
        default: return cli_usage("metrics", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("metrics", "%s", "expects one MODEL.bnn");
    if (strcmp(split, "test") && strcmp(split, "train"))
        return cli_usage("metrics", "--split must be test or train, got '%s'", split);
    apx_error err = {0};
    sweep_workload w;
    if (sweep_workload_load(argv[optind], data, split, 0, &w, &err))
        return cli_report(NULL, &err);
    /* named as a sweep with the same limit names its data set (the whole
     * split was loaded, so that a limit beyond it is an error) */
    char dataset[sizeof w.dataset_name + 16];
    if (limit)
        snprintf(dataset, sizeof dataset, "%s[:%u]", w.dataset_name, limit);
    else
        snprintf(dataset, sizeof dataset, "%s", w.dataset_name);
    threads = sweep_threads(threads);
    progress bar;
    progress_begin(&bar, "metrics", "samples", 0);
    cli_catch_signals();
    bet_options opt = {limit, threads, &cli_stop, metrics_progress, &bar};
    bet_metrics b;
    int rc = bet_compute(&w.model, &w.data, &opt, &b, &err);
    progress_end(&bar);
    size_t stored = 0;
    if (rc == APX_OK && db) rc = store_metrics(db, &w, dataset, &b, &stored, &err);
    if (rc == APX_OK) {
        uint32_t used = threads < b.n_samples ? threads : b.n_samples;
        if (json)
            print_json(argv[optind], &w, dataset, used, &b);
        else
            print_text(argv[optind], &w, dataset, used, &b);
        if (db && !json) printf("\nstored %zu metrics in %s\n", stored, db);
    }
    bet_metrics_free(&b);
    sweep_workload_free(&w);
    return rc ? cli_report(NULL, &err) : 0;
}
