/* main.c - the apxsim command line: git-style subcommands.
 *
 * Exit status (docs/DESIGN.md): 0 ok, 1 failure during work, 2 bad input or
 * usage, 130 interrupted. Every subcommand has --help. Library code returns
 * errors; only this file prints them and exits. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/device.h"
#include "../workloads/bnn.h"
#include "../workloads/dataset.h"
#include "../workloads/train.h"
#include "apxsim_version.h"
#include "commands.h"
#include "config.h"
#include "progress.h"
#include "store.h"
#include "sweep.h"

/* Strict number parsing for options. */
static int parse_u32(const char *s, uint32_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return (!*s || *end) ? -1 : 0;
}

/* ---- train --------------------------------------------------------------- */

static const char train_help[] =
    "Usage: apxsim train RECIPE.yaml [options]\n"
    "\n"
    "Trains a BNN on Fashion-MNIST in C, fully connected or convolutional (latent\n"
    "float weights, straight-through estimator, batch norm, Adam, step learning\n"
    "rate) and writes the folded, packed model as a .bnn file. The recipe (see\n"
    "configs/workloads/fmnist-fc.yaml and fmnist-vgg3.yaml) fixes the\n"
    "architecture, the seed and every hyper-parameter, so the same recipe\n"
    "reproduces the same model (on the same machine and BLAS thread count).\n"
    "Flip training (weight sign flips per batch or persistent, mask or straight-\n"
    "through gradients, device-aware, curriculum), the modified hinge loss, a\n"
    "margin regularizer and BN re-estimation at a BER are recipe keys: see\n"
    "docs/training.md; scripts/train_zoo trains every zoo model still missing.\n"
    "\n"
    "After every epoch it prints the loss, the training accuracy, the test\n"
    "accuracy of the exported (folded, packed) model and samples per second.\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE   write the model here instead of the recipe's 'output'\n"
    "      --epochs N      override the recipe's epoch count\n"
    "      --limit N       train on the first N training samples only\n"
    "      --data DIR      Fashion-MNIST directory (default: $" FMNIST_ENV " or\n"
    "                      " FMNIST_DEFAULT_DIR ")\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim train configs/workloads/fmnist-fc.yaml -o /tmp/fc.bnn\n";

static void print_epoch(void *ctx, const train_epoch_stats *s) {
    (void)ctx;
    printf("epoch %3u/%u  loss %.4f  train %.2f%%  test %.2f%%  %.0f samples/s  %.1f s  "
           "lr %.2g",
           s->epoch, s->epochs, s->loss, 100 * s->train_accuracy, 100 * s->test_accuracy,
           s->samples_per_s, s->seconds, s->lr);
    if (s->flip_rate > 0) printf("  flips %.4f", s->flip_rate);
    printf("\n");
    fflush(stdout);
}

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"limit", required_argument, 0, 'l'},
                                         {"data", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *output = NULL, *data = NULL;
    uint32_t epochs = 0, limit = 0;
    int have_limit = 0, c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'e':
            if (parse_u32(optarg, &epochs) || !epochs)
                return cli_usage("train", "--epochs needs a positive integer, got '%s'", optarg);
            break;
        case 'l':
            if (parse_u32(optarg, &limit))
                return cli_usage("train", "--limit needs a count, got '%s'", optarg);
            have_limit = 1;
            break;
        case 'd': data = optarg; break;
        case 'h': fputs(train_help, stdout); return 0;
        default: return cli_usage("train", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("train", "%s", "expects one RECIPE.yaml");
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(argv[optind], &err);
    if (!doc) return cli_report(NULL, &err);
    train_recipe r;
    int rc = train_recipe_from_yaml(cfg_root(doc), &r, &err);
    dataset train = {0}, test = {0};
    bnn_model model = {0};
    if (rc) goto out;
    if (epochs) r.epochs = epochs;
    if (have_limit) r.train_limit = limit;
    if (data) r.data_dir = data;
    if (output) r.output = output;
    if (!r.output) {
        rc = apx_fail(&err, APX_EINPUT, "%s has no 'output' and no --output was given",
                      argv[optind]);
        goto out;
    }
    if ((rc = fmnist_load(r.data_dir, "train", r.train_limit, &train, &err)) ||
        (rc = fmnist_load(r.data_dir, "test", 0, &test, &err)))
        goto out;
    printf("training %s: %u epochs on %u samples, batch %u, seed %llu\n", r.name, r.epochs,
           train.n, r.batch, (unsigned long long)r.seed);
    cli_catch_signals();
    rc = train_run(&r, &train, &test, print_epoch, NULL, &cli_stop, &model, &err);
    if (rc) goto out;
    if ((rc = bnn_save(&model, r.output, &err))) goto out;
    printf("wrote %s\n", r.output);
out:
    bnn_free(&model);
    dataset_free(&train);
    dataset_free(&test);
    train_recipe_free(&r);
    cfg_free(doc);
    return rc ? cli_report(NULL, &err) : 0;
}

/* ---- eval ---------------------------------------------------------------- */

static const char eval_help[] =
    "Usage: apxsim eval MODEL.bnn [options]\n"
    "\n"
    "Evaluates a model on Fashion-MNIST and reports its accuracy and speed in\n"
    "inferences per second. With --ber, the weights first get the uniform\n"
    "device's bit errors for that chip (the same faults a sweep would inject).\n"
    "\n"
    "Options:\n"
    "      --split S       test (default) or train\n"
    "      --limit N       evaluate the first N samples only\n"
    "      --threads N     worker threads (default: one per core)\n"
    "      --ber P         inject uniform bit errors at rate P into the weights\n"
    "      --seed S        run seed for the faults (default 1)\n"
    "      --chip C        chip index for the faults (default 0)\n"
    "      --data DIR      Fashion-MNIST directory (default: $" FMNIST_ENV " or\n"
    "                      " FMNIST_DEFAULT_DIR ")\n"
    "      --json          print one JSON object instead of text\n"
    "      --write-model F save the evaluated weights (faults applied) as a .bnn,\n"
    "                      e.g. for bench/torch_reference.py\n"
    "      --predictions F write the predicted class of each sample, one per line\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim eval workloads/zoo/fmnist-fc.bnn --ber 0.01\n";

/* The extra outputs of eval: the faulty weights as a model file and the
 * predictions, so another tool can check them (bench/torch_reference.py). */
static int eval_outputs(const sweep_workload *w, uint64_t *image, const char *model_path,
                        const char *pred_path, apx_error *err) {
    if (model_path) {
        bnn_model faulty = w->model;
        faulty.image = image;
        if (bnn_save(&faulty, model_path, err)) return err->code;
    }
    if (!pred_path) return APX_OK;
    uint8_t *pred = malloc(w->data.n ? w->data.n : 1);
    bnn_workspace *ws = bnn_workspace_new(&w->model);
    int rc = APX_OK;
    if (!pred || !ws) rc = apx_fail(err, APX_EWORK, "out of memory");
    if (rc == APX_OK) bnn_eval_range(&w->model, image, &w->data, 0, w->data.n, ws, pred);
    FILE *f = rc ? NULL : fopen(pred_path, "w");
    if (rc == APX_OK && !f) rc = apx_fail(err, APX_EWORK, "%s: cannot write", pred_path);
    for (uint32_t i = 0; f && i < w->data.n; i++) fprintf(f, "%u\n", pred[i]);
    if (f && fclose(f)) rc = apx_fail(err, APX_EWORK, "%s: write failed", pred_path);
    bnn_workspace_free(ws);
    free(pred);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"split", required_argument, 0, 's'}, {"limit", required_argument, 0, 'l'},
        {"threads", required_argument, 0, 't'}, {"ber", required_argument, 0, 'b'},
        {"seed", required_argument, 0, 'S'}, {"chip", required_argument, 0, 'c'},
        {"data", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'},
        {"write-model", required_argument, 0, 'W'},
        {"predictions", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *split = "test", *data = NULL, *write_model = NULL, *predictions = NULL;
    uint32_t limit = 0, threads = 0, chip = 0;
    uint64_t seed = 1;
    double ber = -1;
    int json = 0, c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': split = optarg; break;
        case 'l':
            if (parse_u32(optarg, &limit))
                return cli_usage("eval", "--limit needs a count, got '%s'", optarg);
            break;
        case 't':
            if (parse_u32(optarg, &threads) || threads > 1024)
                return cli_usage("eval", "--threads needs a count up to 1024, got '%s'", optarg);
            break;
        case 'b':
            if (parse_double(optarg, &ber) || !(ber >= 0 && ber <= 1))
                return cli_usage("eval", "--ber needs a rate between 0 and 1, got '%s'", optarg);
            break;
        case 'S':
            if (parse_u64(optarg, &seed))
                return cli_usage("eval", "--seed needs a non-negative integer, got '%s'", optarg);
            break;
        case 'c':
            if (parse_u32(optarg, &chip))
                return cli_usage("eval", "--chip needs a chip index, got '%s'", optarg);
            break;
        case 'd': data = optarg; break;
        case 'j': json = 1; break;
        case 'W': write_model = optarg; break;
        case 'P': predictions = optarg; break;
        case 'h': fputs(eval_help, stdout); return 0;
        default: return cli_usage("eval", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("eval", "%s", "expects one MODEL.bnn");
    if (strcmp(split, "test") && strcmp(split, "train"))
        return cli_usage("eval", "--split must be test or train, got '%s'", split);
    apx_error err = {0};
    sweep_workload w;
    if (sweep_workload_load(argv[optind], data, split, limit, &w, &err)) return cli_report(NULL, &err);
    device *dev = NULL;
    cfg_doc *devdoc = NULL;
    int rc = APX_OK;
    if (ber >= 0) {
        static const char uniform_yaml[] = "kind: uniform\n";
        devdoc = cfg_load_string(uniform_yaml, sizeof uniform_yaml - 1, "--ber", &err);
        if (!devdoc || device_create(cfg_root(devdoc), &dev, &err)) rc = err.code;
    }
    uint64_t *scratch = malloc(w.model.image_words * sizeof *scratch);
    job_result r;
    geometry geo;
    geometry_default(&geo);
    if (rc == APX_OK && !scratch) rc = apx_fail(&err, APX_EWORK, "out of memory");
    if (rc == APX_OK)
        rc = sweep_eval_job(&w, dev, &ber, NULL, &geo, 0, seed, chip, threads, scratch, &r, &err);
    if (rc == APX_OK) {
        double acc = r.n_samples ? (double)r.n_correct / r.n_samples : 0;
        double ips = r.seconds > 0 ? r.n_samples / r.seconds : 0;
        uint32_t nt = sweep_threads(threads);
        if (json)
            printf("{\"model\": \"%s\", \"model_hash\": \"%s\", \"dataset\": \"%s\", "
                   "\"samples\": %u, \"correct\": %u, \"accuracy\": %.6f, \"ber\": %g, "
                   "\"faults\": %llu, \"threads\": %u, \"seconds\": %.6f, "
                   "\"inferences_per_s\": %.1f}\n",
                   w.model.name, w.model_hash, w.dataset_name, r.n_samples, r.n_correct, acc,
                   ber < 0 ? 0 : ber, (unsigned long long)r.faults, nt, r.seconds, ips);
        else {
            printf("model      %s (%s, %u layers)\n", argv[optind], w.model_hash,
                   w.model.n_layers);
            printf("data       %s, %u samples\n", w.dataset_name, r.n_samples);
            if (dev)
                printf("faults     %llu of %llu weight bits (ber %g, seed %llu, chip %u)\n",
                       (unsigned long long)r.faults, (unsigned long long)r.bits_exposed, ber,
                       (unsigned long long)seed, chip);
            printf("accuracy   %.2f%% (%u/%u)\n", 100 * acc, r.n_correct, r.n_samples);
            printf("speed      %.0f inferences/s on %u thread%s (%.0f per thread), %.3f s\n",
                   ips, nt, nt == 1 ? "" : "s", ips / nt, r.seconds);
        }
    }
    if (rc == APX_OK && (write_model || predictions))
        rc = eval_outputs(&w, scratch, write_model, predictions, &err);
    free(scratch);
    device_destroy(dev);
    cfg_free(devdoc);
    sweep_workload_free(&w);
    return rc ? cli_report(NULL, &err) : 0;
}

/* ---- sweep --------------------------------------------------------------- */

static const char sweep_help[] =
    "Usage: apxsim sweep CONFIG.yaml [options]\n"
    "\n"
    "Runs a sweep: every operating point of the device x every chip, each a job\n"
    "that injects that chip's faults into the model's weights and evaluates the\n"
    "data set. Each finished job is committed to the results database at once;\n"
    "jobs already in the database are skipped, so running the same command\n"
    "again after an interruption (Ctrl-C, kill) finishes the sweep. Results do\n"
    "not depend on the thread count.\n"
    "\n"
    "Options:\n"
    "  -o, --output DB     results database (default: the config's 'output')\n"
    "  -j, --threads N     worker threads (default: the config's, else one per core)\n"
    "      --shard K/N     run only the K-th of N interleaved parts of the jobs (K\n"
    "                      from 1), e.g. one per cluster node or Slurm array task;\n"
    "                      combine the shard databases with 'apxsim merge'\n"
    "  -q, --quiet         no progress line and no summary table\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim sweep configs/sweeps/quickstart.yaml\n"
    "  apxsim query results/quickstart.db --preset accuracy\n";

static int cmd_query_print(const char *db, const char *preset, enum store_format fmt);

static void sweep_progress(void *ctx, size_t done, size_t total) {
    progress_update(ctx, done, total);
}

static int cmd_sweep(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"shard", required_argument, 0, 's'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *output = NULL;
    uint32_t threads = 0, shard_k = 0, shard_n = 0;
    int quiet = 0, c;
    while ((c = getopt_long(argc, argv, "o:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 's': {
            char k[16], n[16], extra;
            if (sscanf(optarg, "%15[0-9]/%15[0-9]%c", k, n, &extra) != 2 || parse_u32(k, &shard_k) ||
                parse_u32(n, &shard_n) || shard_n == 0 || shard_k == 0 || shard_k > shard_n)
                return cli_usage("sweep", "--shard needs K/N with 1 <= K <= N, got '%s'", optarg);
            break;
        }
        case 'j':
            if (parse_u32(optarg, &threads) || threads > 256)
                return cli_usage("sweep", "--threads needs a count up to 256, got '%s'", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h': fputs(sweep_help, stdout); return 0;
        default: return cli_usage("sweep", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("sweep", "%s", "expects one CONFIG.yaml");
    apx_error err = {0};
    sweep_plan plan;
    if (sweep_plan_load(argv[optind], &plan, &err)) return cli_report(NULL, &err);
    /* A copy: the plan (which owns the config's strings) is freed before the
     * summary that names the database. */
    char *db = strdup(output ? output : plan.output);
    if (!db) {
        sweep_plan_free(&plan);
        return cli_report(NULL, &(apx_error){APX_EWORK, "out of memory"});
    }
    if (shard_n) {
        plan.shard_index = shard_k - 1;
        plan.shard_count = shard_n;
    }
    char what[160];
    snprintf(what, sizeof what, "sweep %s", plan.name);
    progress bar;
    progress_begin(&bar, what, "jobs", quiet);
    cli_catch_signals();
    sweep_stats st;
    int rc = sweep_run(&plan, db, cfg_text(plan.doc), threads, sweep_progress, &bar, &cli_stop,
                       &st, &err);
    progress_end(&bar);
    sweep_plan_free(&plan);
    if (rc == APX_EINTR) {
        fprintf(stderr,
                "apxsim: sweep interrupted after %zu of %zu jobs; the finished ones are in "
                "%s.\nRun the same command again to finish it.\n",
                st.jobs_done + st.jobs_skipped, st.jobs_total, db);
        free(db);
        return 130;
    }
    if (rc) {
        free(db);
        return cli_report(NULL, &err);
    }
    if (!quiet) {
        printf("%zu jobs run, %zu already in the database, %.1f s\n", st.jobs_done,
               st.jobs_skipped, st.seconds);
        double busy = st.seconds * st.threads;
        if (st.jobs_done && busy > 0)
            printf("time on %u thread%s: inference %.1f %%, fault maps %.1f %%, cost model "
                   "%.1f %%, other (planning, store, scheduling) %.1f %%\n",
                   st.threads, st.threads == 1 ? "" : "s", 100 * st.inference_seconds / busy,
                   100 * st.fault_seconds / busy, 100 * st.cost_seconds / busy,
                   100 * (1 - (st.inference_seconds + st.fault_seconds + st.cost_seconds) / busy));
        printf("\n");
        rc = cmd_query_print(db, "accuracy", STORE_TABLE);
        if (rc == 0) printf("\nresults: %s\n", db);
    }
    free(db);
    return rc;
}

/* ---- merge --------------------------------------------------------------- */

static const char merge_help[] =
    "Usage: apxsim merge OUT.db SHARD.db...\n"
    "\n"
    "Adds the rows of each SHARD database (from 'apxsim sweep --shard K/N', or\n"
    "any apxsim results database of the same schema version) to OUT, creating\n"
    "it if needed. Each shard goes in one transaction; rows whose keys OUT\n"
    "already has are skipped, so merging again adds nothing and a merged sweep\n"
    "has exactly the rows of one run on one machine.\n"
    "\n"
    "Example:\n"
    "  apxsim sweep configs/sweeps/quickstart.yaml --shard 1/2 -o /tmp/s1.db\n"
    "  apxsim sweep configs/sweeps/quickstart.yaml --shard 2/2 -o /tmp/s2.db\n"
    "  apxsim merge results/quickstart.db /tmp/s1.db /tmp/s2.db\n";

static int cmd_merge(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(merge_help, stdout);
        return 0;
    }
    if (argc < 3) return cli_usage("merge", "%s", "expects OUT.db and at least one SHARD.db");
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') return cli_usage("merge", "unknown option '%s'", argv[i]);
    apx_error err = {0};
    store *out;
    if (store_open(argv[1], &out, &err)) return cli_report("merge", &err);
    int rc = APX_OK;
    int64_t total = 0;
    for (int i = 2; i < argc && rc == APX_OK; i++) {
        int64_t added;
        rc = store_merge(out, argv[i], &added, &err);
        if (rc == APX_OK) {
            printf("%s: %lld evaluations added\n", argv[i], (long long)added);
            total += added;
        }
    }
    int64_t rows = 0;
    if (rc == APX_OK) rc = store_count_evals(out, &rows, &err);
    store_close(out);
    if (rc) return cli_report("merge", &err);
    printf("%s: %lld evaluations added, %lld in all\n", argv[1], (long long)total,
           (long long)rows);
    return 0;
}

/* ---- query --------------------------------------------------------------- */

static const char query_help[] =
    "Usage: apxsim query DB [--preset NAME | --sql SQL] [--format table|csv|json]\n"
    "\n"
    "Prints results from a database written by 'apxsim sweep'. A preset is a\n"
    "named query; --sql runs one SELECT of your own (the database is opened\n"
    "read-only). CSV and JSON open directly in pandas, R or a spreadsheet;\n"
    "the database itself opens in sqlite3 (docs/schema.md has the tables).\n"
    "\n"
    "Options:\n"
    "  -p, --preset NAME   a named query (default: accuracy); --list shows them\n"
    "      --sql SQL       one SQL statement instead of a preset\n"
    "  -f, --format F      table (default), csv or json\n"
    "      --list          list the presets\n"
    "      --budget B      accuracy loss the 'best' preset allows (default 0.01)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Presets:\n"
    "  accuracy   mean, std and min accuracy over chips per operating point\n"
    "  faults     faults, changed bits and BER per layer and operating point\n"
    "  pareto     the energy-accuracy Pareto front per model (devices with energy)\n"
    "  best       each model's lowest-energy point within --budget of nominal accuracy,\n"
    "             and the energy it saves\n"
    "  metrics    bit-error-tolerance metrics per model and layer\n"
    "\n"
    "Example:\n"
    "  apxsim query results/quickstart.db --preset accuracy --format csv\n";

/* The accuracy-loss budget of the `best` preset; NaN = the preset's default. */
static double query_budget = NAN;

static int run_query(const char *db, const char *sql, enum store_format fmt) {
    apx_error err = {0};
    store *s;
    if (store_open_readonly(db, &s, &err)) return cli_report(NULL, &err);
    if (store_schema_version(s) < STORE_SCHEMA_VERSION) {
        /* An older database lacks the newer views the presets use: migrate it
         * forward once (opening it for writing does), then query read-only. */
        store_close(s);
        if (store_open(db, &s, &err)) return cli_report(NULL, &err);
        store_close(s);
        if (store_open_readonly(db, &s, &err)) return cli_report(NULL, &err);
    }
    if (query_budget == query_budget) store_set_param(s, "budget", query_budget);
    int rc = store_print_query(s, sql, fmt, stdout, &err);
    store_close(s);
    return rc ? cli_report(NULL, &err) : 0;
}

static int cmd_query_print(const char *db, const char *preset, enum store_format fmt) {
    const char *sql = store_preset_sql(preset);
    if (!sql) {
        fprintf(stderr, "apxsim query: unknown preset '%s'; known presets:", preset);
        for (const char *const *p = store_preset_names; *p; p++) fprintf(stderr, " %s", *p);
        fprintf(stderr, "\n");
        return 2;
    }
    return run_query(db, sql, fmt);
}

static int cmd_query(int argc, char **argv) {
    static const struct option opts[] = {{"preset", required_argument, 0, 'p'},
                                         {"sql", required_argument, 0, 's'},
                                         {"format", required_argument, 0, 'f'},
                                         {"list", no_argument, 0, 'l'},
                                         {"budget", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *preset = NULL, *sql = NULL;
    enum store_format fmt = STORE_TABLE;
    int c;
    while ((c = getopt_long(argc, argv, "p:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': preset = optarg; break;
        case 's': sql = optarg; break;
        case 'f':
            if (!strcmp(optarg, "table")) fmt = STORE_TABLE;
            else if (!strcmp(optarg, "csv")) fmt = STORE_CSV;
            else if (!strcmp(optarg, "json")) fmt = STORE_JSON;
            else return cli_usage("query", "--format must be table, csv or json, got '%s'", optarg);
            break;
        case 'l':
            for (const char *const *p = store_preset_names; *p; p++) printf("%s\n", *p);
            return 0;
        case 'b': {
            char *end;
            query_budget = strtod(optarg, &end);
            if (*end || !(query_budget >= 0 && query_budget <= 1))
                return cli_usage("query", "--budget must be an accuracy loss in [0, 1], got '%s'",
                                 optarg);
            break;
        }
        case 'h': fputs(query_help, stdout); return 0;
        default: return cli_usage("query", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("query", "%s", "expects one DB");
    if (preset && sql) return cli_usage("query", "%s", "give --preset or --sql, not both");
    if (sql) return run_query(argv[optind], sql, fmt);
    return cmd_query_print(argv[optind], preset ? preset : "accuracy", fmt);
}

/* ---- check --------------------------------------------------------------- */

static const char check_help[] =
    "Usage: apxsim check CONFIG.yaml\n"
    "\n"
    "Validates a sweep config or a training recipe without running it: every\n"
    "key, type and range, the device and its operating points, and that the\n"
    "model file and the data set can be read (an unreadable one is an error,\n"
    "as the sweep would fail). Prints the plan (operating points x chips =\n"
    "jobs) and an estimate of the run time from a timed sample of inferences\n"
    "(fault maps and commits are not in it). Errors name file, line, column.\n"
    "\n"
    "Example:\n"
    "  apxsim check configs/sweeps/quickstart.yaml\n";

/* Inferences per second of one thread on a sample of w's data (clean
 * weights: faults do not change the work of inference), repeated until
 * ~50 ms have passed so that a tiny sample is not lost in the timer's
 * resolution. 0 if it cannot be measured. */
static double measure_rate(const sweep_workload *w, uint32_t *sample_out) {
    const bnn_model *m = &w->model;
    uint32_t sample = w->data.n < 200 ? w->data.n : 200;
    *sample_out = sample;
    bnn_workspace *ws = sample ? bnn_workspace_new(m) : NULL;
    if (!ws) return 0;
    bnn_eval_range(m, m->image, &w->data, 0, sample, ws, NULL); /* warm-up */
    double t0 = progress_now(), elapsed = 0;
    uint64_t images = 0;
    do {
        bnn_eval_range(m, m->image, &w->data, 0, sample, ws, NULL);
        images += sample;
        elapsed = progress_now() - t0;
    } while (elapsed < 0.05 && images < 100u * sample);
    bnn_workspace_free(ws);
    return elapsed > 0 ? (double)images / elapsed : 1e12;
}

static int check_sweep(const char *path, apx_error *err) {
    sweep_plan plan;
    if (sweep_plan_load(path, &plan, err)) return err->code;
    size_t per_workload = plan.n_points * plan.chips, jobs = plan.n_workloads * per_workload;
    printf("%s: sweep '%s'\n", path, plan.name);
    printf("  device     %s (%s)\n", plan.dev->ops->kind, plan.dev->ops->summary);
    printf("  plan       %zu workload%s x %zu operating points x %u chips = %zu jobs\n",
           plan.n_workloads, plan.n_workloads == 1 ? "" : "s", plan.n_points, plan.chips, jobs);
    printf("  output     %s\n", plan.output);
    /* Run-time estimate: the sweep runs one job per thread, each over the
     * whole data set; fault drawing and the commit per job are left out,
     * small next to inference for real models. The data sets are loaded
     * too: a sweep that cannot read them would fail, so check fails (exit 2)
     * rather than print a plan without an estimate. */
    uint32_t threads = sweep_threads(plan.threads);
    uint32_t busy = jobs < threads ? (uint32_t)(jobs ? jobs : 1) : threads;
    double seconds = 0;
    int rc = APX_OK, measured = 1;
    for (size_t i = 0; rc == APX_OK && i < plan.n_workloads; i++) {
        const sweep_workload_spec *spec = &plan.workloads[i];
        sweep_workload w;
        if ((rc = sweep_workload_load_spec(spec, &w, err))) break;
        if ((rc = sweep_check_layout(&plan, &w.model, err)) == APX_OK) {
            uint32_t sample;
            double rate = measure_rate(&w, &sample);
            printf("  workload   %s: %s (%u layers, %zu weight words), %s in %s (%u images)",
                   spec->name, spec->model_path, w.model.n_layers, w.model.image_words,
                   w.dataset_name, fmnist_dir(spec->data_dir), w.data.n);
            if (rate > 0) {
                printf(", measured %.0f inferences/s per thread (%s kernel, %u-image sample)\n", rate,
                       bnn_kernel_name(bnn_kernel_active()), sample);
                seconds += (double)per_workload * w.data.n / rate / busy;
            } else {
                printf("\n");
                measured = 0;
            }
        }
        sweep_workload_free(&w);
    }
    if (rc == APX_OK && measured)
        printf("  estimate   ~%.*f s on %u thread%s%s\n", seconds < 10 ? 2 : 0, seconds, busy,
               busy == 1 ? "" : "s", plan.threads ? "" : ", one per core");
    else if (rc == APX_OK)
        printf("  estimate   none (an empty data set or no memory for a workspace)\n");
    sweep_plan_free(&plan);
    return rc;
}

static int cmd_check(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(check_help, stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') return cli_usage("check", "%s", "expects one CONFIG.yaml");
    apx_error err = {0};
    cfg_doc *doc = cfg_load_file(argv[1], &err);
    if (!doc) return cli_report(NULL, &err);
    const cfg_node *root = cfg_root(doc);
    int is_sweep = root->kind == CFG_MAP && cfg_find(root, "operating_points");
    int is_recipe = root->kind == CFG_MAP && cfg_find(root, "layers");
    int rc;
    if (is_sweep) {
        rc = check_sweep(argv[1], &err);
    } else if (is_recipe) {
        train_recipe r;
        rc = train_recipe_from_yaml(root, &r, &err);
        if (rc == APX_OK)
            printf("%s: training recipe '%s', %u layers, %u epochs, seed %llu -> %s\n", argv[1],
                   r.name, r.n_widths - 1, r.epochs, (unsigned long long)r.seed,
                   r.output ? r.output : "(no output)");
        train_recipe_free(&r);
    } else {
        rc = cfg_fail(root, &err,
                      "not a sweep (no 'operating_points') or a training recipe (no 'layers')");
    }
    cfg_free(doc);
    return rc ? cli_report(NULL, &err) : 0;
}

/* ---- main ---------------------------------------------------------------- */

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"sweep", cmd_sweep, "run a sweep of operating points x chips into a results database"},
    {"eval", cmd_eval, "evaluate a model's accuracy and speed, optionally with bit errors"},
    {"train", cmd_train, "train a BNN from a YAML recipe and write a .bnn model"},
    {"query", cmd_query, "print results from a database (presets, SQL; table, CSV, JSON)"},
    {"check", cmd_check, "validate a sweep config or training recipe and show the plan"},
    {"merge", cmd_merge, "combine shard databases of a sweep into one"},
    {"search", cmd_search, "lowest-energy operating point and per-layer partitions in a budget"},
    {"plot", cmd_plot, "draw SVG figures from a results database (accuracy, Pareto)"},
    {"record", cmd_record, "write the fault maps of a sweep's points and chips as .fmap files"},
    {"replay", cmd_replay, "evaluate a model with recorded .fmap fault maps"},
    {"bench", cmd_bench, "measure inference speed per kernel against the popcount limit"},
    {"import", cmd_import, "build a .bnn model from a NumPy .npz export (PyTorch, Larq)"},
    {"fmap", cmd_fmap, "inspect, export and import fault maps (.fmap, CSV, DIVA records)"},
    {"metrics", cmd_metrics, "bit-error-tolerance metrics of a model (margins, importance)"},
    {"construct", cmd_construct, "build exact Boolean or Lipschitz-approximating BNNs"},
};

static void main_help(FILE *out) {
    fprintf(out,
            "apxsim %s - approximate-memory simulator for binarized neural networks\n"
            "\n"
            "Usage: apxsim COMMAND [options]   (apxsim COMMAND --help for details)\n"
            "\n"
            "Commands:\n",
            APXSIM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Start here:\n"
            "  apxsim sweep configs/sweeps/quickstart.yaml\n"
            "  apxsim query results/quickstart.db --preset accuracy --format csv\n"
            "\n"
            "Exit status: 0 ok, 1 failure during work, 2 bad input or usage, 130 "
            "interrupted.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        main_help(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        main_help(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("apxsim %s\n", APXSIM_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "apxsim: unknown command '%s'\n\n", argv[1]);
    main_help(stderr);
    return 2;
}
