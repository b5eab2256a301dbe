/* cmd_record.c - `apxsim record` and `apxsim replay`: fault maps kept as
 * .fmap files and applied again.
 *
 * record writes the maps of a sweep's points and chips (sim/record.h).
 * replay builds a sweep in memory whose device is {kind: replay, maps: ...}
 * (models/replay/replay.c), with the maps' geometry as its memory, and runs
 * it like `apxsim sweep`; the config text stored with the run lists every
 * map with its provenance. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../faultmaps/fmap_file.h"
#include "../workloads/dataset.h"
#include "commands.h"
#include "config.h"
#include "progress.h"
#include "record.h"
#include "sweep.h"

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (!*s || *end || s[0] == '-' || errno) return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (parse_u64(s, &v) || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

/* ---- record -------------------------------------------------------------- */

static const char record_help[] =
    "Usage: apxsim record SWEEP.yaml -o DIR [options]\n"
    "\n"
    "Writes the fault maps that a sweep's device produces for the model's\n"
    "weights: one .fmap file per operating point and chip, named\n"
    "DIR/<point>-chip<C>.fmap (e.g. DIR/ber=0.01-chip3.fmap). Each map holds the\n"
    "faulty cells in the sweep's memory geometry (memory.geometry, with the\n"
    "weights at memory.base) and names the device, operating point, seed and\n"
    "chip it came from. Replaying a map (apxsim replay, or a sweep whose device\n"
    "is {kind: replay, maps: [...]}) with the same geometry and base gives the\n"
    "same faulty weights bit for bit. Only the model is read, not the data set.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR    folder for the maps (created if missing; required)\n"
    "      --point I       only operating point I (0-based, grid order: the first\n"
    "                      knob varies slowest, as 'apxsim check' lists them)\n"
    "      --chip C        only chip C (0-based)\n"
    "  -q, --quiet         print nothing but errors\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim record configs/sweeps/quickstart.yaml -o maps --point 3 --chip 0\n"
    "  apxsim fmap inspect maps/ber=0.001-chip0.fmap\n";

int cmd_record(int argc, char **argv) {
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"point", required_argument, 0, 'p'},
                                         {"chip", required_argument, 0, 'c'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL;
    uint64_t point = 0;
    uint32_t chip = 0;
    int one_point = 0, one_chip = 0, quiet = 0, c;
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': dir = optarg; break;
        case 'p':
            if (parse_u64(optarg, &point))
                return cli_usage("record", "--point needs a point index, got '%s'", optarg);
            one_point = 1;
            break;
        case 'c':
            if (parse_u32(optarg, &chip))
                return cli_usage("record", "--chip needs a chip index, got '%s'", optarg);
            one_chip = 1;
            break;
        case 'q': quiet = 1; break;
        case 'h': fputs(record_help, stdout); return 0;
        default: return cli_usage("record", "%s", "unknown option");
        }
    }
    if (optind + 1 != argc) return cli_usage("record", "%s", "expects one SWEEP.yaml");
    if (!dir) return cli_usage("record", "%s", "needs -o DIR, the folder for the maps");
    apx_error err = {0};
    sweep_plan plan;
    if (sweep_plan_load(argv[optind], &plan, &err)) return cli_report("record", &err);
    int rc = APX_OK;
    sweep_workload w;
    memset(&w, 0, sizeof w);
    if (one_point && point >= plan.n_points)
        rc = apx_fail(&err, APX_EINPUT, "--point %llu: %s has %zu operating points (0 to %zu)",
                      (unsigned long long)point, argv[optind], plan.n_points,
                      plan.n_points - 1);
    else if (one_chip && chip >= plan.chips)
        rc = apx_fail(&err, APX_EINPUT, "--chip %u: %s has %u chips (0 to %u)", chip,
                      argv[optind], plan.chips, plan.chips - 1);
    else if (plan.n_workloads != 1)
        rc = apx_fail(&err, APX_EINPUT,
                      "%s has %zu workloads: record writes the maps of one model's placement; "
                      "keep one workload in a copy of the config",
                      argv[optind], plan.n_workloads);
    else if (mkdir(dir, 0777) && errno != EEXIST)
        rc = apx_fail(&err, APX_EWORK, "cannot create %s: %s", dir, strerror(errno));
    else
        rc = bnn_load(plan.workloads[0].model_path, &w.model, &err);
    if (rc) goto out;
    cli_catch_signals();
    size_t p0 = one_point ? point : 0, p1 = one_point ? point + 1 : plan.n_points;
    uint32_t c0 = one_chip ? chip : 0, c1 = one_chip ? chip + 1 : plan.chips;
    size_t written = 0;
    for (size_t p = p0; p < p1 && rc == APX_OK; p++) {
        char label[256], path[4096];
        sweep_point_label(&plan, p, label, sizeof label);
        for (uint32_t ch = c0; ch < c1 && rc == APX_OK; ch++) {
            if (cli_stop) {
                rc = apx_fail(&err, APX_EINTR, "interrupted after %zu maps", written);
                break;
            }
            if ((size_t)snprintf(path, sizeof path, "%s/%s-chip%u.fmap", dir, label, ch) >=
                sizeof path) {
                rc = apx_fail(&err, APX_EINPUT, "output path too long in %s", dir);
                break;
            }
            fmap_totals t;
            if ((rc = record_point(&plan, &w, p, ch, path, &t, &err))) {
                apx_wrap(&err, "%s: ", path);
                break;
            }
            written++;
            if (!quiet)
                printf("%s  %llu faults\n", path, (unsigned long long)t.faults);
        }
    }
out:
    bnn_free(&w.model);
    sweep_plan_free(&plan);
    return rc ? cli_report("record", &err) : 0;
}

/* ---- replay -------------------------------------------------------------- */

static const char replay_help[] =
    "Usage: apxsim replay MAP.fmap... --model MODEL.bnn [options]\n"
    "\n"
    "Evaluates a model with recorded fault maps and stores the results as a\n"
    "sweep does (device 'replay', knob time_s): map i is applied as chip i, to\n"
    "the model's weights placed at --base in the maps' memory geometry (all maps\n"
    "must share one). A fault is active at time t when onset <= t < until. The\n"
    "config stored with the run lists every map with its provenance. Running\n"
    "the same command again skips the evaluations already in the database.\n"
    "\n"
    "Options:\n"
    "  -m, --model FILE    the .bnn model to evaluate (required)\n"
    "  -o, --output DB     results database (default: results/replay.db)\n"
    "      --name NAME     campaign name in the results (default: replay)\n"
    "      --base ADDR     byte address of the weights in the memory (default 0;\n"
    "                      use the recording sweep's memory.base to reproduce it)\n"
    "      --time S,...    times in seconds since the maps' start (default 0)\n"
    "      --split S       test (default) or train\n"
    "      --limit N       evaluate the first N samples only\n"
    "      --data DIR      Fashion-MNIST directory (default: $" FMNIST_ENV " or\n"
    "                      " FMNIST_DEFAULT_DIR ")\n"
    "  -j, --threads N     worker threads (default: one per core)\n"
    "  -q, --quiet         no progress line and no summary\n"
    "  -h, --help          show this help\n"
    "\n"
    "Example:\n"
    "  apxsim record configs/sweeps/quickstart.yaml -o maps --point 3\n"
    "  apxsim replay maps/*.fmap --model workloads/zoo/fmnist-fc.bnn -o results/replay.db\n"
    "  apxsim query results/replay.db --preset accuracy\n";

/* A YAML double-quoted scalar. */
static void put_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\x%02x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* Text on one comment line: control characters become spaces. */
static void put_comment_text(FILE *f, const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        fputc(*c < 0x20 || *c == 0x7f ? ' ' : *c, f);
}

/* "=0.05" rather than "=0.050000000000000003": the shortest form that reads
 * back as the same double. */
static void put_number(FILE *f, double v) {
    char buf[40];
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    fprintf(f, "=%s", buf);
}

static void put_provenance(FILE *f, size_t i, const char *path, const fmap_provenance *p) {
    fprintf(f, "# chip %zu: ", i);
    put_comment_text(f, path);
    if (p->origin == FMAP_GENERATED) {
        fputs(": generated by ", f);
        put_comment_text(f, p->device);
        fputs(" at ", f);
        for (uint32_t k = 0; k < p->n_knobs && k < FMAP_MAX_KNOBS; k++) {
            fputs(k ? "," : "", f);
            put_comment_text(f, p->knob_name[k]);
            put_number(f, p->knob_value[k]);
        }
        fprintf(f, ", seed %llu, chip %llu", (unsigned long long)p->seed,
                (unsigned long long)p->chip);
        if (p->source[0]) fputs("; ", f);
    } else {
        fputs(": recorded: ", f);
    }
    put_comment_text(f, p->source);
    fputc('\n', f);
}

typedef struct replay_args {
    const char *model, *output, *name, *split, *data;
    uint64_t base;
    uint32_t limit;
    const char *times;
} replay_args;

/* Writes the sweep config of a replay run to *text (caller frees). */
static int replay_config(const replay_args *a, char **maps, size_t n_maps, char **text,
                         size_t *len, apx_error *err) {
    FILE *f = open_memstream(text, len);
    if (!f) return apx_fail(err, APX_EWORK, "out of memory");
    int rc = APX_OK;
    geometry geo;
    fputs("# apxsim replay: chip i replays map i\n", f);
    for (size_t i = 0; i < n_maps && rc == APX_OK; i++) {
        fmap_reader *r;
        if ((rc = fmap_reader_open(&r, maps[i], err))) break;
        if (i == 0) geo = *fmap_reader_geometry(r);
        put_provenance(f, i, maps[i], fmap_reader_provenance(r));
        fmap_reader_close(r);
    }
    if (rc == APX_OK) {
        fputs("name: ", f);
        put_quoted(f, a->name);
        fprintf(f, "\nseed: 0\nchips: %zu\noutput: ", n_maps);
        put_quoted(f, a->output);
        fputs("\nworkload:\n  model: ", f);
        put_quoted(f, a->model);
        fprintf(f, "\n  split: %s\n  limit: %u\n", a->split, a->limit);
        if (a->data) {
            fputs("  data_dir: ", f);
            put_quoted(f, a->data);
            fputc('\n', f);
        }
        fprintf(f,
                "memory:\n  base: %llu\n  geometry:\n    channels: %u\n    ranks: %u\n"
                "    bankgroups: %u\n    banks: %u\n    rows: %u\n    columns: %u\n"
                "    bus_bits: %u\n    mapping: ",
                (unsigned long long)a->base, geo.count[GEO_CH], geo.count[GEO_RA],
                geo.count[GEO_BG], geo.count[GEO_BA], geo.count[GEO_RO], geo.count[GEO_CO],
                geo.bus_bits);
        put_quoted(f, geo.mapping);
        fputs("\ndevice:\n  kind: replay\n  maps:\n", f);
        for (size_t i = 0; i < n_maps; i++) {
            fputs("    - ", f);
            put_quoted(f, maps[i]);
            fputc('\n', f);
        }
        fprintf(f, "operating_points:\n  time_s: [%s]\n", a->times);
    }
    if (fclose(f) && rc == APX_OK) rc = apx_fail(err, APX_EWORK, "out of memory");
    if (rc) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

/* "0,3600,1e4" -> checked list text "0, 3600, 10000" (one value at least). */
static int parse_times(const char *s, char *out, size_t len) {
    size_t used = 0;
    out[0] = 0;
    const char *p = s;
    do {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(v >= 0)) return -1;
        int n = snprintf(out + used, len - used, "%s%.17g", used ? ", " : "", v);
        if (n < 0 || (size_t)n >= len - used) return -1;
        used += (size_t)n;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) return -1;
    } while (*p);
    return 0;
}

static void replay_progress(void *ctx, size_t done, size_t total) {
    progress_update(ctx, done, total);
}

int cmd_replay(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"output", required_argument, 0, 'o'},
        {"name", required_argument, 0, 'n'},  {"base", required_argument, 0, 'b'},
        {"time", required_argument, 0, 't'},  {"split", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'l'}, {"data", required_argument, 0, 'd'},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    replay_args a = {.output = "results/replay.db", .name = "replay", .split = "test"};
    char times[1024] = "0";
    uint32_t threads = 0;
    int quiet = 0, c;
    while ((c = getopt_long(argc, argv, "m:o:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a.model = optarg; break;
        case 'o': a.output = optarg; break;
        case 'n': a.name = optarg; break;
        case 'b':
            if (parse_u64(optarg, &a.base) || a.base > INT64_MAX)
                return cli_usage("replay", "--base needs a byte address, got '%s'", optarg);
            break;
        case 't':
            if (parse_times(optarg, times, sizeof times))
                return cli_usage("replay",
                             "--time needs seconds >= 0, separated by commas, got '%s'", optarg);
            break;
        case 's': a.split = optarg; break;
        case 'l':
            if (parse_u32(optarg, &a.limit))
                return cli_usage("replay", "--limit needs a count, got '%s'", optarg);
            break;
        case 'd': a.data = optarg; break;
        case 'j':
            if (parse_u32(optarg, &threads) || threads > 256)
                return cli_usage("replay", "--threads needs a count up to 256, got '%s'", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h': fputs(replay_help, stdout); return 0;
        default: return cli_usage("replay", "%s", "unknown option");
        }
    }
    if (optind >= argc) return cli_usage("replay", "%s", "expects one or more MAP.fmap files");
    if (!a.model) return cli_usage("replay", "%s", "needs --model MODEL.bnn");
    if (strcmp(a.split, "test") && strcmp(a.split, "train"))
        return cli_usage("replay", "--split must be test or train, got '%s'", a.split);
    size_t n_maps = (size_t)(argc - optind);
    if (n_maps > SWEEP_MAX_CHIPS)
        return cli_usage("replay", "%s", "too many maps (at most 100000)");
    a.times = times;

    apx_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (replay_config(&a, argv + optind, n_maps, &text, &len, &err))
        return cli_report("replay", &err);
    cfg_doc *doc = cfg_load_string(text, len, "(apxsim replay)", &err);
    free(text);
    if (!doc) return cli_report("replay", &err);
    sweep_plan plan;
    if (sweep_plan_from_doc(doc, "(apxsim replay)", &plan, &err)) return cli_report("replay", &err);
    char what[160];
    snprintf(what, sizeof what, "replay %zu map%s", n_maps, n_maps == 1 ? "" : "s");
    progress bar;
    progress_begin(&bar, what, "jobs", quiet);
    cli_catch_signals();
    sweep_stats st;
    int rc = sweep_run(&plan, a.output, cfg_text(plan.doc), threads, replay_progress, &bar,
                       &cli_stop, &st, &err);
    progress_end(&bar);
    sweep_plan_free(&plan);
    if (rc == APX_EINTR) {
        fprintf(stderr,
                "apxsim replay: interrupted after %zu of %zu jobs; the finished ones are in "
                "%s.\nRun the same command again to finish it.\n",
                st.jobs_done + st.jobs_skipped, st.jobs_total, a.output);
        return 130;
    }
    if (rc) return cli_report("replay", &err);
    if (!quiet)
        printf("%zu jobs run, %zu already in the database, %.1f s\nresults: %s "
               "(apxsim query %s --preset accuracy)\n",
               st.jobs_done, st.jobs_skipped, st.seconds, a.output, a.output);
    return 0;
}
