/* cmd_construct.c - `apxsim construct`: BNNs from the universal-approximation
 * constructions (workloads/construct.h, docs/construct.md) as workloads: the
 * model, its parameters beside it (MODEL.bnn.yaml) and, with --data, its
 * synthetic data set. Everything is checked before anything is written. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../workloads/bnn.h"
#include "../workloads/construct.h"
#include "commands.h"

static const char construct_help[] =
    "Usage: apxsim construct boolean   (-f NAME -n N | --table FILE) -o MODEL.bnn [options]\n"
    "       apxsim construct lipschitz (-f NAME -n N | --table FILE) -e EPSILON -o MODEL.bnn\n"
    "                                  [options]\n"
    "\n"
    "Builds a BNN from the constructive universal-approximation proofs\n"
    "(docs/construct.md) and writes it with its parameters (MODEL.bnn.yaml beside\n"
    "it) and, with --data, a synthetic data set, so that a sweep measures its\n"
    "tolerance to memory faults like any other workload's.\n"
    "\n"
    "boolean    a function of n binary inputs, exactly: one hidden layer of pattern\n"
    "           detectors (for the inputs where f = 1, or f = 0 when fewer) and an\n"
    "           output neuron. NAME: parity, majority, random (a fair coin per\n"
    "           input, --seed). A --table file holds 2^n characters 0/1 (entry i is\n"
    "           f at x_j = bit j-1 of i; whitespace and # comments ignored).\n"
    "           Input bit j is pixel j of a 1 x n image: 255 for 1, 0 for 0. The\n"
    "           data set is all 2^n inputs, labelled f (class 0 or 1).\n"
    "lipschitz  a function on [0,1]^n within a proven bound: two hidden layers\n"
    "           (thermometer codes of n +-1 directions, one detector per grid cell)\n"
    "           and a readout into --classes equal bins of f's range. The cell\n"
    "           side delta (a whole number of 8-bit steps) makes L rho delta / 2\n"
    "           <= epsilon; the class value (bin centre) adds half a bin, and a\n"
    "           real input rounded to 8 bits adds L / 510. NAME: square (x1^2),\n"
    "           sine (sin(2 pi x1) x2), mean, max. A --table file is YAML:\n"
    "           grid: [G1, ..., Gn] and values: [...] (x1 fastest), the\n"
    "           piecewise-linear interpolant on the grid's simplices. The data set\n"
    "           is random 8-bit inputs labelled with the exact network's class.\n"
    "\n"
    "Options:\n"
    "  -f, --function NAME  a built-in function (above)\n"
    "      --table FILE     the function from a file instead (n from the file)\n"
    "  -n, --inputs N       number of inputs of a built-in (boolean 1..16,\n"
    "                       lipschitz 1..8)\n"
    "  -o, --output FILE    the model to write (required); parameters go to FILE.yaml\n"
    "      --data DIR       also write the data set to DIR as gzip IDX files named\n"
    "                       like Fashion-MNIST's (t10k-* test, train-* train), the\n"
    "                       data_dir of a sweep or of apxsim eval --data\n"
    "      --seed S         seed of random, of the data set and of the check (default 1)\n"
    "  -L, --lipschitz L    Lipschitz constant for the max norm (default: the\n"
    "                       function's own; a smaller one is refused)\n"
    "  -e, --epsilon E      lipschitz: the target for L rho delta / 2 (required)\n"
    "      --classes C      lipschitz: readout bins, 2..256 (default 10)\n"
    "      --samples N      lipschitz: data set inputs per split (default 10000)\n"
    "      --check N        random inputs of the self-check before writing (default\n"
    "                       10000; 0 skips it). boolean checks all 2^n inputs unless 0\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 written, 1 failure during work, 2 bad input or usage (then\n"
    "nothing is written).\n"
    "\n"
    "Examples:\n"
    "  apxsim construct boolean -f parity -n 10 -o /tmp/parity10.bnn --data /tmp/parity10\n"
    "  apxsim construct lipschitz -f square -n 2 -e 0.04 -o /tmp/sq.bnn --data /tmp/sq\n"
    "  apxsim eval /tmp/sq.bnn --data /tmp/sq --ber 0.001\n";

typedef struct options {
    int lipschitz;
    const char *function, *table, *output, *data;
    uint32_t n, classes, samples, check;
    int have_n;
    uint64_t seed;
    double L, epsilon;
} options;

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (parse_u64(s, &v) || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return (!*s || *end || !isfinite(*out)) ? -1 : 0;
}

/* Options of one subcommand; returns 0 or the exit status of a usage error. */
static int parse_options(int argc, char **argv, options *o) {
    static const struct option opts[] = {
        {"function", required_argument, 0, 'f'}, {"table", required_argument, 0, 't'},
        {"inputs", required_argument, 0, 'n'},   {"output", required_argument, 0, 'o'},
        {"data", required_argument, 0, 'd'},     {"seed", required_argument, 0, 's'},
        {"lipschitz", required_argument, 0, 'L'}, {"epsilon", required_argument, 0, 'e'},
        {"classes", required_argument, 0, 'c'},  {"samples", required_argument, 0, 'S'},
        {"check", required_argument, 0, 'k'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c, lip_only = 0;
    while ((c = getopt_long(argc, argv, "f:n:o:L:e:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': o->function = optarg; break;
        case 't': o->table = optarg; break;
        case 'o': o->output = optarg; break;
        case 'd': o->data = optarg; break;
        case 'n':
            if (parse_u32(optarg, &o->n))
                return cli_usage("construct", "--inputs needs a count, got '%s'", optarg);
            o->have_n = 1;
            break;
        case 's':
            if (parse_u64(optarg, &o->seed))
                return cli_usage("construct", "--seed needs a non-negative integer, got '%s'",
                                 optarg);
            break;
        case 'L':
            if (parse_double(optarg, &o->L))
                return cli_usage("construct", "-L needs a number, got '%s'", optarg);
            break;
        case 'e':
            if (parse_double(optarg, &o->epsilon))
                return cli_usage("construct", "--epsilon needs a number, got '%s'", optarg);
            lip_only = 1;
            break;
        case 'c':
            if (parse_u32(optarg, &o->classes))
                return cli_usage("construct", "--classes needs a count, got '%s'", optarg);
            lip_only = 1;
            break;
        case 'S':
            if (parse_u32(optarg, &o->samples))
                return cli_usage("construct", "--samples needs a count, got '%s'", optarg);
            lip_only = 1;
            break;
        case 'k':
            if (parse_u32(optarg, &o->check))
                return cli_usage("construct", "--check needs a count, got '%s'", optarg);
            break;
        case 'h': fputs(construct_help, stdout); return -1;
        default: return cli_usage("construct", "%s", "unknown option");
        }
    }
    if (optind != argc) return cli_usage("construct", "unexpected argument '%s'", argv[optind]);
    if (!o->function == !o->table)
        return cli_usage("construct", "%s", "give a built-in (-f NAME) or --table FILE");
    if (o->function && !o->have_n)
        return cli_usage("construct", "-f %s needs the number of inputs (-n N)", o->function);
    if (o->table && o->have_n)
        return cli_usage("construct", "%s", "-n is taken from the --table file");
    if (!o->output) return cli_usage("construct", "%s", "needs -o MODEL.bnn");
    if (!o->lipschitz && lip_only)
        return cli_usage("construct", "%s",
                         "--epsilon, --classes and --samples belong to 'construct lipschitz'");
    if (o->lipschitz && isnan(o->epsilon))
        return cli_usage("construct", "%s", "lipschitz needs the target error (-e EPSILON)");
    return 0;
}

/* Writes the data set splits (if any), the model and its sidecar. */
static int write_outputs(const options *o, const bnn_model *m, const dataset *test,
                         const dataset *train, const char *yaml, apx_error *err) {
    if (!yaml) return apx_fail(err, APX_EWORK, "out of memory for the parameters");
    if (o->data && (construct_dataset_save(test, o->data, "test", err) ||
                    construct_dataset_save(train, o->data, "train", err)))
        return err->code;
    if (bnn_save(m, o->output, err)) return err->code;
    char sidecar[4096];
    int len = snprintf(sidecar, sizeof sidecar, "%s.yaml", o->output);
    if (len < 0 || (size_t)len >= sizeof sidecar)
        return apx_fail(err, APX_EINPUT, "output name too long: %s", o->output);
    return construct_write_file(sidecar, yaml, strlen(yaml), err);
}

static void print_written(const options *o, const bnn_model *m, uint32_t per_split) {
    char hash[17];
    bnn_hash_hex(m, hash);
    printf("wrote %s (model hash %s) and %s.yaml\n", o->output, hash, o->output);
    if (o->data)
        printf("wrote the data set to %s: %u test (t10k-*) and %u train inputs\n", o->data,
               per_split, per_split);
}

static int run_boolean(const options *o, apx_error *err) {
    construct_truth t;
    if (o->table ? construct_truth_load(o->table, &t, err)
                 : construct_truth_builtin(o->function, o->n, o->seed, &t, err))
        return err->code;
    char name[64];
    snprintf(name, sizeof name, "boolean-%s-n%u", t.source, t.n);
    bnn_model m = {0};
    dataset d = {0};
    construct_boolean_info info;
    char *yaml = NULL;
    int rc = construct_boolean(&t, name, &m, &info, err);
    if (rc == APX_OK) rc = construct_boolean_dataset(&t, &d, err);
    if (rc == APX_OK && o->check) {
        bnn_workspace *ws = bnn_workspace_new(&m);
        size_t right = ws ? bnn_eval_range(&m, m.image, &d, 0, d.n, ws, NULL) : 0;
        bnn_workspace_free(ws);
        if (!ws) rc = apx_fail(err, APX_EWORK, "out of memory checking the network");
        else if (right != d.n)
            rc = apx_fail(err, APX_EWORK,
                          "internal error: the network is wrong on %zu of %u inputs",
                          d.n - right, d.n);
    }
    if (rc == APX_OK) {
        yaml = construct_boolean_yaml(&t, &info, &m, o->table, o->data);
        rc = write_outputs(o, &m, &d, &d, yaml, err);
    }
    if (rc == APX_OK) {
        printf("boolean %s of %u inputs: %u of %u inputs give 1\n", t.source, t.n,
               info.positives, 1u << t.n);
        printf("  layers   %u -> %u %s detectors (u8) -> 1 output neuron (bin) -> 2 classes\n",
               t.n, info.detectors, info.complement ? "zero-pattern" : "one-pattern");
        if (info.complement) printf("           (the zeros are fewer: the output is negated)\n");
        if (o->check) printf("  check    exact on all %u inputs (bnn_eval_range)\n", d.n);
        print_written(o, &m, d.n);
    }
    free(yaml);
    dataset_free(&d);
    bnn_free(&m);
    construct_truth_free(&t);
    return rc;
}

/* The self-check must find the network exactly as the plan says. */
static int check_passed(const construct_lip *c, const construct_lip_report *r, apx_error *err) {
    if (r->not_one_hot || r->wrong_cell || r->wrong_class || r->cell_error > c->bound + 1e-12 ||
        r->readout_error > c->readout_bound + 1e-12 || r->real_error > c->real_bound + 1e-12)
        return apx_fail(err, APX_EWORK,
                        "internal error: the self-check failed (%llu inputs not one-hot, %llu "
                        "wrong cells, %llu wrong classes, errors %g / %g / %g)",
                        (unsigned long long)r->not_one_hot, (unsigned long long)r->wrong_cell,
                        (unsigned long long)r->wrong_class, r->cell_error, r->readout_error,
                        r->real_error);
    return APX_OK;
}

static void print_lipschitz(const options *o, const construct_lip *c, const bnn_model *m,
                            const construct_lip_report *r) {
    printf("lipschitz %s on [0,1]^%u: L %g (the function's own %g), epsilon %g\n", c->f->name,
           c->n, c->L, c->f->lipschitz, c->epsilon);
    printf("  grid     %u directions (rho %g), delta %u/255 = %.6g, %u cells per direction\n",
           c->n, c->rho, c->step, c->delta, c->K);
    printf("  layers   %u -> %u thermometer (u8) -> %u detectors + %u balancing (bin) -> %u "
           "classes\n",
           c->n, c->M, c->cells, c->constants, c->classes);
    uint64_t bits = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) bits += bnn_tensor_bits(m, l);
    printf("  size     %llu weight bits\n", (unsigned long long)bits);
    printf("  bound    L rho delta / 2 = %.6g on 8-bit inputs; class value (bin %.6g) %.6g; "
           "real inputs %.6g\n",
           c->bound, c->bin, c->readout_bound, c->real_bound);
    if (o->check)
        printf("  check    right class on %llu 8-bit inputs%s (%llu at thresholds) and %llu real; "
               "exactly one detector on the %llu probed; max errors %.6g (cell), %.6g (class), "
               "%.6g (real)\n",
               (unsigned long long)r->lattice_points, r->exhaustive ? " (all of them)" : "",
               (unsigned long long)r->boundary_points, (unsigned long long)r->real_points,
               (unsigned long long)r->probed_points, r->cell_error, r->readout_error,
               r->real_error);
}

static int run_lipschitz(const options *o, apx_error *err) {
    construct_fn f;
    if (o->table ? construct_fn_load(o->table, &f, err)
                 : construct_fn_builtin(o->function, o->n, &f, err))
        return err->code;
    construct_lip c;
    bnn_model m = {0};
    dataset test = {0}, train = {0};
    construct_lip_report report = {0}, *checked = NULL;
    char *yaml = NULL, name[64];
    int rc = construct_lip_plan(&f, o->L, o->epsilon, o->classes, &c, err);
    if (rc) goto out_fn;
    snprintf(name, sizeof name, "lipschitz-%.24s-n%u-e%g", f.name, f.n, o->epsilon);
    rc = construct_lip_model(&c, name, &m, err);
    if (rc == APX_OK && o->check) {
        rc = construct_lip_check(&c, &m, o->check, o->seed, &report, err);
        if (rc == APX_OK) rc = check_passed(&c, &report, err);
        checked = &report;
    }
    if (rc == APX_OK && o->data &&
        ((rc = construct_lip_dataset(&c, o->samples, o->seed, 0, &test, err)) ||
         (rc = construct_lip_dataset(&c, o->samples, o->seed, 1, &train, err))))
        goto out;
    if (rc == APX_OK) {
        yaml = construct_lip_yaml(&c, &m, o->table, o->data, o->samples, o->seed, checked);
        rc = write_outputs(o, &m, &test, &train, yaml, err);
    }
    if (rc == APX_OK) {
        print_lipschitz(o, &c, &m, &report);
        print_written(o, &m, o->samples);
    }
out:
    free(yaml);
    dataset_free(&test);
    dataset_free(&train);
    bnn_free(&m);
    construct_lip_free(&c);
out_fn:
    construct_fn_free(&f);
    return rc;
}

int cmd_construct(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(construct_help, stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        return cli_usage("construct", "%s", "expects a kind: boolean or lipschitz");
    options o = {.seed = 1, .L = NAN, .epsilon = NAN, .classes = 10, .samples = 10000,
                 .check = 10000};
    if (!strcmp(argv[1], "lipschitz")) o.lipschitz = 1;
    else if (strcmp(argv[1], "boolean"))
        return cli_usage("construct", "unknown kind '%s' (boolean or lipschitz)", argv[1]);
    int rc = parse_options(argc - 1, argv + 1, &o);
    if (rc) return rc < 0 ? 0 : rc;
    apx_error err = {0};
    rc = o.lipschitz ? run_lipschitz(&o, &err) : run_boolean(&o, &err);
    return rc ? cli_report("construct", &err) : 0;
}
