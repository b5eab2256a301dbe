/* cmd_search.c - `apxsim search`: the EDEN-style search of sim/search.h. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "progress.h"
#include "search.h"

static const char search_help[] =
    "Usage: apxsim search SWEEP.yaml [--budget B] [--threads N] [--json] [-q]\n"
    "\n"
    "Finds, for each workload of a sweep config, the lowest-energy operating\n"
    "point within an accuracy-loss budget of nominal, and a per-layer partition\n"
    "assignment (EDEN, MICRO 2019): each layer's tolerance alone, then layers\n"
    "from the most tolerant moved to their cheapest tolerated point while the\n"
    "whole network stays within budget. The candidates are the config's\n"
    "operating points; accuracy is the mean over its chips; the device must\n"
    "model energy (dram, rram). The reference is the device's nominal point.\n"
    "\n"
    "Options:\n"
    "  -b, --budget B    accuracy loss allowed, as a fraction (default 0.01)\n"
    "  -j, --threads N   threads per evaluation (default: one per core)\n"
    "      --json        print the result as JSON\n"
    "  -q, --quiet       no progress line\n"
    "  -h, --help        show this help\n"
    "\n"
    "Example:\n"
    "  apxsim search configs/sweeps/dram-fc.yaml --budget 0.01\n";

static void on_progress(void *ctx, const char *what) {
    progress *bar = ctx;
    if (bar->enabled) fprintf(stderr, "\rsearch: %-60s", what);
}

static void label_of(const sweep_plan *p, long point, char *buf, size_t len) {
    if (point < 0) snprintf(buf, len, "nominal");
    else sweep_point_label(p, (size_t)point, buf, len);
}

static void print_text(const sweep_plan *p, const search_result *r) {
    char label[256];
    printf("workload %s: nominal accuracy %.2f %%, %.4g uJ per inference\n", r->workload,
           100 * r->ref_accuracy, r->ref_energy_pj / 1e6);
    if (r->coarse_point < 0) {
        printf("  one point for all layers: none of the %zu points is within budget\n",
               p->n_points);
    } else {
        label_of(p, r->coarse_point, label, sizeof label);
        printf("  one point for all layers: %s, accuracy %.2f %%, %.4g uJ, saving %.1f %%\n",
               label, 100 * r->coarse_accuracy, r->coarse_energy_pj / 1e6,
               100 * (1 - r->coarse_energy_pj / r->ref_energy_pj));
    }
    printf("  per-layer partitions:     accuracy %.2f %%, %.4g uJ, saving %.1f %%\n",
           100 * r->partition_accuracy, r->partition_energy_pj / 1e6,
           100 * (1 - r->partition_energy_pj / r->ref_energy_pj));
    for (uint32_t l = 0; l < r->n_layers; l++) {
        char alone[256];
        label_of(p, r->assigned[l], label, sizeof label);
        label_of(p, r->tolerance[l], alone, sizeof alone);
        printf("    layer %u: %s%s (alone: %s)\n", l, label,
               p->layout.exact[l] ? " [exact memory]" : "", alone);
    }
    printf("  %u placements evaluated, each over %u chips\n", r->evaluations, p->chips);
}

static void print_json(const sweep_plan *p, const search_result *r, size_t n) {
    char label[256];
    printf("[");
    for (size_t i = 0; i < n; i++, r++) {
        printf("%s{\"workload\": \"%s\", \"reference\": {\"accuracy\": %.17g, \"energy_pj\": %.17g}",
               i ? ", " : "", r->workload, r->ref_accuracy, r->ref_energy_pj);
        label_of(p, r->coarse_point, label, sizeof label);
        if (r->coarse_point >= 0)
            printf(", \"coarse\": {\"point\": \"%s\", \"accuracy\": %.17g, \"energy_pj\": %.17g}",
                   label, r->coarse_accuracy, r->coarse_energy_pj);
        else
            printf(", \"coarse\": null");
        printf(", \"partitions\": {\"accuracy\": %.17g, \"energy_pj\": %.17g, \"layers\": [",
               r->partition_accuracy, r->partition_energy_pj);
        for (uint32_t l = 0; l < r->n_layers; l++) {
            label_of(p, r->assigned[l], label, sizeof label);
            printf("%s{\"layer\": %u, \"point\": \"%s\"", l ? ", " : "", l, label);
            label_of(p, r->tolerance[l], label, sizeof label);
            printf(", \"alone\": \"%s\"}", label);
        }
        printf("]}, \"evaluations\": %u}", r->evaluations);
    }
    printf("]\n");
}

int cmd_search(int argc, char **argv) {
    static const struct option opts[] = {{"budget", required_argument, 0, 'b'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"json", no_argument, 0, 'J'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    double budget = 0.01;
    long threads = 0;
    int json = 0, quiet = 0, c;
    char *end;
    while ((c = getopt_long(argc, argv, "b:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            budget = strtod(optarg, &end);
            if (*end || !(budget >= 0 && budget <= 1))
                return cli_usage("search", "--budget needs an accuracy loss in [0, 1], got '%s'",
                                 optarg);
            break;
        case 'j':
            threads = strtol(optarg, &end, 10);
            if (*end || threads < 0 || threads > 256)
                return cli_usage("search", "--threads needs a count up to 256, got '%s'", optarg);
            break;
        case 'J': json = 1; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(search_help, stdout); return 0;
        default: return cli_usage("search", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("search", "%s", "expects one SWEEP.yaml");
    apx_error err = {0};
    sweep_plan plan;
    if (sweep_plan_load(argv[optind], &plan, &err)) return cli_report("search", &err);
    search_result *res = calloc(plan.n_workloads, sizeof *res);
    int rc = res ? APX_OK : apx_fail(&err, APX_EWORK, "out of memory");
    progress bar;
    progress_begin(&bar, "search", "steps", quiet);
    cli_catch_signals();
    if (rc == APX_OK)
        rc = search_run(&plan, budget, (uint32_t)threads, on_progress, &bar, &cli_stop, res, &err);
    if (bar.enabled) fprintf(stderr, "\r%-70s\r", "");
    if (rc == APX_OK) {
        if (json) print_json(&plan, res, plan.n_workloads);
        else
            for (size_t i = 0; i < plan.n_workloads; i++) print_text(&plan, &res[i]);
    }
    free(res);
    sweep_plan_free(&plan);
    return rc ? cli_report("search", &err) : 0;
}
