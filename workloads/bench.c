/* bench.c - the inference benchmark (bench.h). It switches the process-wide
 * kernel choice while it runs, so nothing else may evaluate meanwhile. */
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sim/rng.h"
#include "kernels.h"

void bench_defaults(bench_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->min_seconds = 0.25;
    opt->repeats = 3;
    opt->images = 2048;
    opt->threads = 1;
    opt->seed = 1;
}

/* ---- networks ------------------------------------------------------------------ */

static const char *const model_names[] = {"lfc", "sfc", "lfc-u8", "sfc-u8", "fc", "vgg3"};
#define N_MODELS 6

int bench_model(const char *name, uint64_t seed, bnn_model *m, apx_error *err) {
    bnn_layer_spec spec[5];
    uint32_t nl = 0, rows = 28, cols = 28;
    if (strcmp(name, "lfc") == 0 || strcmp(name, "sfc") == 0 || strcmp(name, "lfc-u8") == 0 ||
        strcmp(name, "sfc-u8") == 0) {
        uint32_t w = name[0] == 'l' ? 1024 : 256;
        /* FINN binarizes the pixels (BNN_DENSE_B1); the -u8 variants keep an
         * exact 8-bit first layer */
        uint32_t first = strchr(name, '-') ? BNN_DENSE_U8 : BNN_DENSE_B1;
        spec[nl++] = (bnn_layer_spec){first, w, 1};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, w, 1};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, w, 1};
    } else if (strcmp(name, "fc") == 0) {
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_U8, 2048, 1};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, 2048, 1};
    } else if (strcmp(name, "vgg3") == 0) {
        spec[nl++] = (bnn_layer_spec){BNN_CONV_U8, 64, 2};
        spec[nl++] = (bnn_layer_spec){BNN_CONV_BIN, 64, 2};
        spec[nl++] = (bnn_layer_spec){BNN_DENSE_BIN, 2048, 1};
    } else {
        return apx_fail(err, APX_EINPUT,
                        "unknown benchmark model '%s' (lfc, sfc, lfc-u8, sfc-u8, fc, vgg3)", name);
    }
    spec[nl++] = (bnn_layer_spec){BNN_DENSE_OUT, 10, 1};
    int rc = bnn_create_layers(m, name, rows, cols, 1, nl, spec, err);
    if (rc) return rc;
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, 0xBE4C, 0), 0, 0);
    for (size_t i = 0; i < m->image_words; i++) m->image[i] = rng_u64(&s);
    /* clear the padding bits, as in a clean model */
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        for (uint32_t r = 0; r < L->out; r++)
            m->image[L->offset + (size_t)r * L->words + L->words - 1] &= kern_last_mask(L->in);
        if (!L->threshold) continue;
        /* thresholds near the middle of a's distribution, so that neurons fire
         * about half the time (8-bit layers: a ~ sum of +-pixels, mean 0) */
        int u8 = L->kind == BNN_DENSE_U8 || L->kind == BNN_CONV_U8;
        double spread = sqrt((double)L->in) * (u8 ? 40.0 : 1.0);
        for (uint32_t r = 0; r < L->out; r++) {
            L->threshold[r] = (int32_t)((rng_unit(&s) * 2 - 1) * spread);
            L->direction[r] = rng_u32(&s) & 1 ? 1 : -1;
        }
    }
    return APX_OK;
}

double bench_words(const bnn_model *m, double *u8_words) {
    double total = 0;
    if (u8_words) *u8_words = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        double w = (double)L->out * L->words;
        w *= (double)L->in_h * L->in_w; /* positions of a conv layer; 1 x 1 for dense */
        if (u8_words && (L->kind == BNN_DENSE_U8 || L->kind == BNN_CONV_U8)) *u8_words += w;
        total += w;
    }
    return total;
}

double bench_clock_ghz(double opt_ghz, const char **source) {
    if (opt_ghz > 0) {
        *source = "option";
        return opt_ghz;
    }
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        double mhz = 0;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "cpu MHz", 7) == 0) {
                const char *colon = strchr(line, ':');
                if (colon) mhz = strtod(colon + 1, NULL);
                break;
            }
        fclose(f);
        if (mhz > 100 && mhz < 20000) {
            *source = "/proc/cpuinfo";
            return mhz / 1000;
        }
    }
    *source = "default 3.0 GHz";
    return 3.0;
}

/* ---- timing ---------------------------------------------------------------------- */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct slice {
    const bnn_model *m;
    const dataset *d;
    bnn_workspace *ws;
    uint32_t begin, end;
    size_t correct;
    double cpu; /* CPU seconds of the thread that ran it, accumulated */
} slice;

static void *slice_run(void *arg) {
    slice *s = arg;
    double c0 = thread_cpu();
    s->correct = bnn_eval_range(s->m, s->m->image, s->d, s->begin, s->end, s->ws, NULL);
    s->cpu += thread_cpu() - c0;
    return NULL;
}

/* One timed run: enough passes over the images to last min_seconds;
 * returns wall seconds per pass (or < 0 if a thread could not start) and,
 * in *cpu, the CPU seconds per pass of the busiest thread. */
static double timed(slice *sl, int threads, double min_seconds, double *cpu) {
    for (int i = 0; i < threads; i++) sl[i].cpu = 0;
    double t0 = now(), t;
    uint32_t passes = 0;
    do {
        if (threads == 1) {
            slice_run(&sl[0]);
        } else {
            pthread_t tid;
            if (pthread_create(&tid, NULL, slice_run, &sl[1])) return -1;
            slice_run(&sl[0]);
            pthread_join(tid, NULL);
        }
        passes++;
        t = now() - t0;
    } while (t < min_seconds);
    *cpu = sl[0].cpu;
    if (threads > 1 && sl[1].cpu > *cpu) *cpu = sl[1].cpu;
    *cpu /= passes;
    return t / passes;
}

static int in_list(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Every name of a comma list must be one of names[0..count). */
static int check_list(const char *list, const char *const *names, int count, const char *what,
                      apx_error *err) {
    if (!list) return APX_OK;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < count; i++) ok |= strlen(names[i]) == len && !strncmp(p, names[i], len);
        if (!ok) {
            char names_list[128] = "";
            for (int i = 0; i < count; i++)
                snprintf(names_list + strlen(names_list), sizeof names_list - strlen(names_list),
                         "%s%s", i ? ", " : "", names[i]);
            return apx_fail(err, APX_EINPUT, "unknown %s '%.*s' (%s)", what, (int)len, p,
                            names_list);
        }
        if (!e) break;
        p = e + 1;
    }
    return APX_OK;
}

int bench_run(const bench_options *opt_in, bench_result **out, size_t *n_out, apx_error *err) {
    bench_options opt = *opt_in;
    *out = NULL;
    *n_out = 0;
    if (opt.min_seconds <= 0) opt.min_seconds = 0.25;
    if (opt.repeats == 0) opt.repeats = 1;
    if (opt.images == 0) opt.images = 2048;
    static const char *const kernel_list[] = {"portable", "avx2", "avx512"};
    int rc = check_list(opt.models, model_names, N_MODELS, "benchmark model", err);
    if (!rc) rc = check_list(opt.kernels, kernel_list, 3, "kernel", err);
    if (rc) return rc;
    if (opt.kernels)
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512; k++)
            if (in_list(opt.kernels, bnn_kernel_name((enum bnn_kernel)k)) &&
                !bnn_kernel_supported((enum bnn_kernel)k))
                return apx_fail(err, APX_EINPUT, "this CPU cannot run the %s kernel",
                                bnn_kernel_name((enum bnn_kernel)k));
    const char *clock_source;
    double ghz = bench_clock_ghz(opt.clock_ghz, &clock_source);

    bench_result *res = calloc((size_t)N_MODELS * 3 * 2, sizeof *res);
    if (!res) return apx_fail(err, APX_EWORK, "out of memory");
    size_t nres = 0;
    int prior = kern_forced();
    for (int mi = 0; mi < N_MODELS && !rc; mi++) {
        const char *name = model_names[mi];
        if (!in_list(opt.models, name)) continue;
        bnn_model m;
        if ((rc = bench_model(name, opt.seed, &m, err))) break;
        double u8w = 0, words = bench_words(&m, &u8w);
        uint32_t n = strcmp(name, "vgg3") == 0 ? (opt.images + 3) / 4 : opt.images;
        if (n < 2) n = 2;
        dataset d = {.n = n, .rows = m.in_rows, .cols = m.in_cols * m.in_channels,
                     .n_classes = m.n_classes};
        size_t npx = (size_t)m.in_rows * m.in_cols * m.in_channels;
        d.pixels = malloc((size_t)n * npx);
        d.labels = calloc(n, 1);
        bnn_workspace *ws[2] = {bnn_workspace_new(&m), bnn_workspace_new(&m)};
        if (!d.pixels || !d.labels || !ws[0] || !ws[1]) {
            rc = apx_fail(err, APX_EWORK, "out of memory for benchmark '%s'", name);
        } else {
            rng_stream s;
            rng_stream_at(&s, rng_key_make(opt.seed, 0xBE4C, 1), 0, 0);
            for (size_t i = 0; i < (size_t)n * npx; i++) d.pixels[i] = (uint8_t)rng_u32(&s);
        }
        for (int k = BNN_KERNEL_PORTABLE; k <= BNN_KERNEL_AVX512 && !rc; k++) {
            const char *kname = bnn_kernel_name((enum bnn_kernel)k);
            if (!bnn_kernel_supported((enum bnn_kernel)k) || !in_list(opt.kernels, kname))
                continue;
            if ((rc = bnn_set_kernel((enum bnn_kernel)k, err))) break;
            slice one[1] = {{&m, &d, ws[0], 0, n, 0, 0}};
            slice two[2] = {{&m, &d, ws[0], 0, n / 2, 0, 0}, {&m, &d, ws[1], n / 2, n, 0, 0}};
            double best1 = INFINITY, best2 = INFINITY, cpu1 = INFINITY, cpu2 = INFINITY, c;
            slice_run(&one[0]); /* warm up: page in buffers and tables */
            for (uint32_t r = 0; r < opt.repeats; r++) {
                double t1 = timed(one, 1, opt.min_seconds, &c);
                if (t1 < best1) best1 = t1;
                if (c < cpu1) cpu1 = c;
                if (!opt.threads) continue;
                double t2 = timed(two, 2, opt.min_seconds, &c);
                if (t2 < 0) {
                    rc = apx_fail(err, APX_EWORK, "cannot start a benchmark thread");
                    break;
                }
                if (t2 < best2) best2 = t2;
                if (c < cpu2) cpu2 = c;
            }
            for (int th = 1; th <= (opt.threads ? 2 : 1) && !rc; th++) {
                bench_result *b = &res[nres++];
                double t = th == 1 ? best1 : best2;
                snprintf(b->model, sizeof b->model, "%s", name);
                snprintf(b->kernel, sizeof b->kernel, "%s", kname);
                b->threads = (uint32_t)th;
                b->images = n;
                b->seconds = t;
                b->inferences_per_s = n / t;
                b->us_per_inference = t / n * 1e6;
                b->words_per_inference = words;
                b->u8_words_per_inference = u8w;
                b->words_per_ns = words * b->inferences_per_s / 1e9;
                b->clock_ghz = ghz;
                b->clock_source = clock_source;
                b->ceiling_words_per_ns = 8 * ghz;
                b->ceiling_fraction = b->words_per_ns / b->ceiling_words_per_ns;
                b->speedup = th == 1 ? 1.0 : best1 / best2;
                b->cpu_seconds = th == 1 ? cpu1 : cpu2;
                b->cpu_speedup = th == 1 ? 1.0 : cpu1 / cpu2;
            }
        }
        bnn_workspace_free(ws[0]);
        bnn_workspace_free(ws[1]);
        free(d.pixels);
        free(d.labels);
        bnn_free(&m);
    }
    bnn_set_kernel((enum bnn_kernel)prior, NULL);
    if (rc) {
        free(res);
        return rc;
    }
    *out = res;
    *n_out = nres;
    return APX_OK;
}
