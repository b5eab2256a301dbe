/* construct.c - the constructive BNNs of the universal-approximation results
 * (facts bnn.md section 7): exact Boolean networks and two-hidden-layer
 * Lipschitz approximators, their data sets, probes and parameters.
 * The contract and the encoding in the .bnn format are in construct.h;
 * the mathematics and the measured numbers in docs/construct.md. */
#include "construct.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../sim/config.h"
#include "../sim/fileio.h"
#include "../sim/rng.h"

/* Philox stream identifiers: (seed, use, split) keys every draw. */
enum { STREAM_TRUTH = 0xC0, STREAM_DATA = 0xC1, STREAM_CHECK = 0xC2 };

#define TRUTH_MAX_FILE (4u << 20)  /* a 2^16-entry table with generous comments */
#define TABLE_MAX_SIDE 1025
#define KEEP_SLACK 1e-9            /* float slack of the kept-cell test (keeps more) */

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }

/* ---- truth tables ------------------------------------------------------------ */

static int check_bool_n(uint32_t n, apx_error *err) {
    if (n == 0) return apx_fail(err, APX_EINPUT, "a Boolean function needs n >= 1 inputs");
    if (n > CONSTRUCT_BOOL_MAX_N)
        return apx_fail(err, APX_EINPUT,
                        "n = %u is too large: at most %u inputs (the detector layer and the "
                        "exhaustive data set grow as 2^n)",
                        n, CONSTRUCT_BOOL_MAX_N);
    return APX_OK;
}

static int truth_alloc(construct_truth *t, uint32_t n, const char *source, apx_error *err) {
    memset(t, 0, sizeof *t);
    t->f = malloc((size_t)1 << n);
    if (!t->f) return apx_fail(err, APX_EWORK, "out of memory for a truth table of 2^%u", n);
    t->n = n;
    snprintf(t->source, sizeof t->source, "%s", source);
    return APX_OK;
}

int construct_truth_builtin(const char *name, uint32_t n, uint64_t seed, construct_truth *t,
                            apx_error *err) {
    memset(t, 0, sizeof *t);
    int kind = !strcmp(name, "parity") ? 0 : !strcmp(name, "majority") ? 1
             : !strcmp(name, "random") ? 2 : -1;
    if (kind < 0)
        return apx_fail(err, APX_EINPUT,
                        "unknown Boolean function '%s' (parity, majority or random)", name);
    if (check_bool_n(n, err) || truth_alloc(t, n, name, err)) return err->code;
    t->seed = seed;
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, STREAM_TRUTH, 0), 0, 0);
    for (uint32_t i = 0; i < (1u << n); i++) {
        int ones = __builtin_popcount(i);
        t->f[i] = kind == 0 ? (uint8_t)(ones & 1)
                : kind == 1 ? (uint8_t)(2 * ones > (int)n)
                            : (uint8_t)(rng_u32(&s) & 1);
    }
    return APX_OK;
}

int construct_truth_parse(const char *text, size_t len, const char *name, construct_truth *t,
                          apx_error *err) {
    memset(t, 0, sizeof *t);
    const uint32_t max = 1u << CONSTRUCT_BOOL_MAX_N;
    uint8_t *bits = malloc(max);
    if (!bits) return apx_fail(err, APX_EWORK, "out of memory reading %s", name);
    uint32_t count = 0, line = 1, col = 1;
    int comment = 0, rc = APX_OK;
    for (size_t i = 0; i < len && rc == APX_OK; i++, col++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            line++, col = 0, comment = 0;
        } else if (comment || ch == ' ' || ch == '\t' || ch == '\r') {
            /* whitespace and comments are skipped */
        } else if (ch == '#') {
            comment = 1;
        } else if (ch == '0' || ch == '1') {
            if (count == max)
                rc = apx_fail(err, APX_EINPUT,
                              "%s:%u:%u: more than %u entries (at most n = %u inputs)", name,
                              line, col, max, CONSTRUCT_BOOL_MAX_N);
            else
                bits[count++] = (uint8_t)(ch - '0');
        } else {
            char shown[8];
            snprintf(shown, sizeof shown, ch >= 0x20 && ch < 0x7f ? "'%c'" : "\\x%02x", ch);
            rc = apx_fail(err, APX_EINPUT,
                          "%s:%u:%u: unexpected character %s (a truth table holds only 0 and 1; "
                          "'#' starts a comment)",
                          name, line, col, shown);
        }
    }
    if (rc == APX_OK && (count < 2 || !is_pow2(count)))
        rc = apx_fail(err, APX_EINPUT,
                      "%s: %u entries; a truth table of n inputs has 2^n entries (2, 4, 8, ..., "
                      "%u)",
                      name, count, max);
    if (rc == APX_OK) rc = truth_alloc(t, (uint32_t)__builtin_ctz(count), "table", err);
    if (rc == APX_OK) memcpy(t->f, bits, count);
    free(bits);
    return rc;
}

/* Reads a whole small file (size checked first) into a NUL-terminated buffer. */
static char *read_small_file(const char *path, size_t max, size_t *len, apx_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        apx_fail(err, errno == ENOENT ? APX_EINPUT : APX_EWORK, "%s: cannot open: %s", path,
                 strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        apx_fail(err, APX_EINPUT, "%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        apx_fail(err, APX_EINPUT, "%s: %llu bytes, more than a table may have (%zu)", path,
                 (unsigned long long)st.st_size, max);
        return NULL;
    }
    *len = (size_t)st.st_size;
    uint8_t *buf = apx_read_exact(fd, *len, path, err);
    close(fd);
    char *text = buf ? realloc(buf, *len + 1) : NULL;
    if (buf && !text) {
        free(buf);
        apx_fail(err, APX_EWORK, "%s: out of memory", path);
    }
    if (text) text[*len] = 0;
    return text;
}

int construct_truth_load(const char *path, construct_truth *t, apx_error *err) {
    memset(t, 0, sizeof *t);
    size_t len;
    char *text = read_small_file(path, TRUTH_MAX_FILE, &len, err);
    if (!text) return err->code;
    int rc = construct_truth_parse(text, len, path, t, err);
    free(text);
    return rc;
}

void construct_truth_free(construct_truth *t) {
    if (!t) return;
    free(t->f);
    memset(t, 0, sizeof *t);
}

/* ---- the exact Boolean network (7.1.1) ---------------------------------------- */

/* Pattern detector for input i on pixels p_j in {0, 255}: weight +1 where bit
 * j of i is 1, else -1. a = 255 (#ones of the input on +1 weights - #ones on
 * -1 weights) is 255 * popcount(i) for input i and at most 255 less for any
 * other, so the midpoint threshold 255 popcount(i) - 128 fires for i alone
 * (the +-1 threshold n - 1 of the facts, mapped to pixels). */
static void set_detector(bnn_model *m, uint32_t row, uint32_t pattern, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) bnn_weight_set(m, 0, row, j, (int)(pattern >> j & 1));
    m->layers[0].threshold[row] = 255 * __builtin_popcount(pattern) - 128;
}

int construct_boolean(const construct_truth *t, const char *name, bnn_model *m,
                      construct_boolean_info *info, apx_error *err) {
    memset(info, 0, sizeof *info);
    const uint32_t n = t->n, total = 1u << n;
    uint32_t positives = 0;
    for (uint32_t i = 0; i < total; i++) positives += t->f[i];
    info->positives = positives;
    info->complement = positives > total - positives;
    const uint8_t match = info->complement ? 0 : 1;
    info->patterns = info->complement ? total - positives : positives;
    info->detectors = info->patterns ? info->patterns : 1;
    const bnn_layer_spec spec[3] = {
        {BNN_DENSE_U8, info->detectors, 1}, {BNN_DENSE_BIN, 1, 1}, {BNN_DENSE_OUT, 2, 1}};
    if (bnn_create_layers(m, name, 1, n, 1, 3, spec, err)) return err->code;
    uint32_t row = 0;
    for (uint32_t i = 0; i < total; i++)
        if (t->f[i] == match) set_detector(m, row++, i, n);
    if (!info->patterns) m->layers[0].threshold[0] = 255 * (int32_t)n; /* a <= 255 n: never */
    /* The output neuron: the sum of the detectors is 2 - k where one fired and
     * -k elsewhere (k = patterns), so a > 1 - k says "a pattern matched"
     * (the facts' sgn(sum - (1 - k))); direction -1 negates it for the
     * complement. With the never-firing detector (k = 0) a = -1 < 1. */
    bnn_layer *out = &m->layers[1];
    for (uint32_t j = 0; j < info->detectors; j++) bnn_weight_set(m, 1, 0, j, 1);
    out->threshold[0] = 1 - (int32_t)info->patterns;
    out->direction[0] = info->complement ? -1 : 1;
    /* OUT: class 0 scores -o, class 1 scores +o (ties cannot happen). */
    bnn_weight_set(m, 2, 1, 0, 1);
    return APX_OK;
}

int construct_boolean_dataset(const construct_truth *t, dataset *d, apx_error *err) {
    memset(d, 0, sizeof *d);
    const uint32_t n = t->n, total = 1u << n;
    d->pixels = malloc((size_t)total * n);
    d->labels = malloc(total);
    if (!d->pixels || !d->labels) {
        dataset_free(d);
        return apx_fail(err, APX_EWORK, "out of memory for 2^%u inputs", n);
    }
    d->n = total, d->rows = 1, d->cols = n, d->n_classes = 2;
    for (uint32_t i = 0; i < total; i++) {
        for (uint32_t j = 0; j < n; j++) d->pixels[(size_t)i * n + j] = (i >> j & 1) ? 255 : 0;
        d->labels[i] = t->f[i];
    }
    return APX_OK;
}

/* ---- Lipschitz functions ------------------------------------------------------ */

static const char *const builtin_names[] = {"square", "sine", "mean", "max", NULL};

int construct_fn_builtin(const char *name, uint32_t n, construct_fn *f, apx_error *err) {
    memset(f, 0, sizeof *f);
    int kind = -1;
    for (int i = 0; builtin_names[i]; i++)
        if (!strcmp(name, builtin_names[i])) kind = i;
    if (kind < 0)
        return apx_fail(err, APX_EINPUT,
                        "unknown function '%s' (square: x1^2, sine: sin(2 pi x1) x2, mean, max)",
                        name);
    if (n == 0 || n > CONSTRUCT_LIP_MAX_N)
        return apx_fail(err, APX_EINPUT, "n = %u: a Lipschitz construction takes 1..%u inputs",
                        n, CONSTRUCT_LIP_MAX_N);
    if (kind == CONSTRUCT_SINE && n < 2)
        return apx_fail(err, APX_EINPUT, "sine is sin(2 pi x1) x2 and needs n >= 2");
    f->kind = kind;
    f->n = n;
    snprintf(f->name, sizeof f->name, "%s", name);
    /* Lipschitz constants for the max norm on x: the largest l1 norm of the
     * gradient. x1^2: |2 x1| <= 2. sine: 2 pi |cos| x2 + |sin| <= sqrt(4 pi^2 + 1)
     * (x2 = 1). mean: n * (1/n). max: 1. */
    static const double lip[] = {2, 0, 1, 1};
    f->lipschitz = kind == CONSTRUCT_SINE ? sqrt(4 * M_PI * M_PI + 1) : lip[kind];
    f->min = kind == CONSTRUCT_SINE ? -1 : 0;
    f->max = 1;
    return APX_OK;
}

static size_t table_index(const construct_fn *f, const uint32_t *idx) {
    size_t at = 0;
    for (uint32_t j = f->n; j-- > 0;) at = at * f->grid[j] + idx[j];
    return at;
}

/* Exact Lipschitz constant of the Kuhn interpolant: on a grid cell each
 * simplex is a monotone path from the base corner to the opposite one, its
 * gradient has components (V(next) - V(prev)) / h along the path, so the
 * largest l1 norm is a longest path over the subsets of axes (dynamic
 * programming, 2^n n per cell). */
static double table_lipschitz(const construct_fn *f) {
    const uint32_t n = f->n, subsets = 1u << n;
    double best[1u << CONSTRUCT_LIP_MAX_N], lip = 0;
    uint32_t base[CONSTRUCT_LIP_MAX_N] = {0}, corner[CONSTRUCT_LIP_MAX_N];
    for (;;) {
        best[0] = 0;
        for (uint32_t s = 1; s < subsets; s++) {
            for (uint32_t j = 0; j < n; j++) corner[j] = base[j] + (s >> j & 1);
            double here = f->values[table_index(f, corner)];
            best[s] = 0;
            for (uint32_t j = 0; j < n; j++) {
                if (!(s >> j & 1)) continue;
                corner[j]--;
                double step = fabs(here - f->values[table_index(f, corner)]) * (f->grid[j] - 1);
                corner[j]++;
                if (best[s ^ (1u << j)] + step > best[s]) best[s] = best[s ^ (1u << j)] + step;
            }
        }
        if (best[subsets - 1] > lip) lip = best[subsets - 1];
        uint32_t j = 0;
        while (j < n && ++base[j] == f->grid[j] - 1) base[j++] = 0;
        if (j == n) return lip;
    }
}

static int fn_from_yaml(const cfg_node *root, construct_fn *f, apx_error *err) {
    static const char *const keys[] = {"name", "grid", "values", NULL};
    if (cfg_expect_map(root, "table", keys, err)) return err->code;
    const cfg_node *grid = cfg_find(root, "grid");
    if (!grid) return cfg_fail(root, err, "missing 'grid' (points per input axis, e.g. [5, 5])");
    if (grid->kind != CFG_SEQ || grid->n == 0 || grid->n > CONSTRUCT_LIP_MAX_N)
        return cfg_fail(grid, err, "'grid' must be a list of 1..%u point counts, one per input",
                        CONSTRUCT_LIP_MAX_N);
    f->kind = CONSTRUCT_TABLE;
    f->n = (uint32_t)grid->n;
    uint64_t points = 1;
    for (size_t j = 0; j < grid->n; j++) {
        long long g;
        if (cfg_as_int(grid->items[j], 2, TABLE_MAX_SIDE, &g, err)) return err->code;
        f->grid[j] = (uint32_t)g;
        points *= (uint64_t)g;
        if (points > CONSTRUCT_MAX_TABLE)
            return cfg_fail(grid, err, "the grid has more than %u points", CONSTRUCT_MAX_TABLE);
    }
    const char *name;
    double *values = NULL;
    size_t count;
    if (cfg_get_string(root, "name", 0, "table", &name, err) ||
        cfg_get_double_list(root, "values", 1, -1e9, 1e9, CONSTRUCT_MAX_TABLE, &values, &count,
                            err))
        return err->code;
    if (count != points) {
        free(values);
        return cfg_fail(cfg_find(root, "values"), err,
                        "%zu values, but the grid has %llu points (x1 fastest)", count,
                        (unsigned long long)points);
    }
    snprintf(f->name, sizeof f->name, "%s", name);
    f->values = values;
    f->min = f->max = values[0];
    for (size_t i = 1; i < count; i++) {
        if (values[i] < f->min) f->min = values[i];
        if (values[i] > f->max) f->max = values[i];
    }
    f->lipschitz = table_lipschitz(f);
    return APX_OK;
}

int construct_fn_parse(const char *text, size_t len, const char *name, construct_fn *f,
                       apx_error *err) {
    memset(f, 0, sizeof *f);
    cfg_doc *doc = cfg_load_string(text, len, name, err);
    if (!doc) return err->code;
    int rc = fn_from_yaml(cfg_root(doc), f, err);
    cfg_free(doc);
    return rc;
}

int construct_fn_load(const char *path, construct_fn *f, apx_error *err) {
    memset(f, 0, sizeof *f);
    size_t len;
    char *text = read_small_file(path, CFG_MAX_BYTES, &len, err);
    if (!text) return err->code;
    int rc = construct_fn_parse(text, len, path, f, err);
    free(text);
    return rc;
}

void construct_fn_free(construct_fn *f) {
    if (!f) return;
    free(f->values);
    memset(f, 0, sizeof *f);
}

/* Kuhn interpolation: in the grid cell of x, order the local coordinates
 * t decreasingly; walking the corners in that order, each step adds the value
 * difference times its t. */
static double table_eval(const construct_fn *f, const double *x) {
    const uint32_t n = f->n;
    uint32_t corner[CONSTRUCT_LIP_MAX_N], order[CONSTRUCT_LIP_MAX_N];
    double t[CONSTRUCT_LIP_MAX_N];
    for (uint32_t j = 0; j < n; j++) {
        double s = fmin(fmax(x[j], 0), 1) * (f->grid[j] - 1);
        uint32_t b = (uint32_t)s;
        if (b > f->grid[j] - 2) b = f->grid[j] - 2;
        corner[j] = b;
        t[j] = s - b;
        order[j] = j;
    }
    for (uint32_t a = 1; a < n; a++)  /* insertion sort, decreasing t */
        for (uint32_t b = a; b > 0 && t[order[b]] > t[order[b - 1]]; b--) {
            uint32_t tmp = order[b];
            order[b] = order[b - 1];
            order[b - 1] = tmp;
        }
    double prev = f->values[table_index(f, corner)], y = prev;
    for (uint32_t m = 0; m < n; m++) {
        corner[order[m]]++;
        double next = f->values[table_index(f, corner)];
        y += (next - prev) * t[order[m]];
        prev = next;
    }
    return y;
}

double construct_fn_eval(const construct_fn *f, const double *x) {
    switch (f->kind) {
    case CONSTRUCT_SQUARE: return x[0] * x[0];
    case CONSTRUCT_SINE: return sin(2 * M_PI * x[0]) * x[1];
    case CONSTRUCT_MEAN: {
        double s = 0;
        for (uint32_t j = 0; j < f->n; j++) s += x[j];
        return s / f->n;
    }
    case CONSTRUCT_MAX: {
        double m = x[0];
        for (uint32_t j = 1; j < f->n; j++) m = fmax(m, x[j]);
        return m;
    }
    default: return table_eval(f, x);
    }
}

/* ---- the Lipschitz construction (7.3) ------------------------------------------ */

/* n independent +-1 directions: Sylvester's Hadamard matrix when n is a power
 * of two (W^-1 = W^T / n, rho = 1), else all-ones and 1 - 2 e_i (rho =
 * max(1, n - 2)); then W^-1 by Gauss-Jordan and rho = its max row sum. */
static void plan_directions(construct_lip *c) {
    const uint32_t n = c->n;
    double a[CONSTRUCT_LIP_MAX_N][2 * CONSTRUCT_LIP_MAX_N];
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < n; j++) {
            c->w[i][j] = is_pow2(n) ? (__builtin_popcount(i & j) & 1 ? -1 : 1)
                                    : (i > 0 && j == i ? -1 : 1);
            a[i][j] = c->w[i][j];
            a[i][n + j] = i == j;
        }
    for (uint32_t col = 0; col < n; col++) {
        uint32_t piv = col;
        for (uint32_t r = col + 1; r < n; r++)
            if (fabs(a[r][col]) > fabs(a[piv][col])) piv = r;
        for (uint32_t j = 0; j < 2 * n; j++) {
            double tmp = a[col][j];
            a[col][j] = a[piv][j];
            a[piv][j] = tmp;
        }
        double p = a[col][col];
        for (uint32_t j = 0; j < 2 * n; j++) a[col][j] /= p;
        for (uint32_t r = 0; r < n; r++) {
            if (r == col || a[r][col] == 0) continue;
            double q = a[r][col];
            for (uint32_t j = 0; j < 2 * n; j++) a[r][j] -= q * a[col][j];
        }
    }
    c->rho = 0;
    for (uint32_t i = 0; i < n; i++) {
        double row = 0;
        for (uint32_t j = 0; j < n; j++) {
            c->winv[i][j] = a[i][n + j];
            row += fabs(c->winv[i][j]);
        }
        if (row > c->rho) c->rho = row;
        int minus = 0;
        for (uint32_t j = 0; j < n; j++) minus += c->w[i][j] < 0;
        c->lo[i] = -255 * minus;
    }
}

/* The largest whole number of pixel steps with L rho delta / 2 <= epsilon,
 * capped so that every direction keeps two cells. */
static int plan_step(construct_lip *c, apx_error *err) {
    const uint32_t cap = (255 * c->n + 1) / 2;
    double per_step = c->L * c->rho / 510;  /* the bound of one pixel step */
    uint64_t s = cap;
    if (per_step > 0 && c->epsilon / per_step < cap) {
        s = (uint64_t)floor(c->epsilon / per_step);
        if (s + 1 <= cap && per_step * (double)(s + 1) <= c->epsilon) s++;
    }
    if (s < 1)
        return apx_fail(err, APX_EINPUT,
                        "epsilon = %g is below L rho / 510 = %g, the bound of a single 8-bit "
                        "input step: cells cannot be finer than the input grid",
                        c->epsilon, per_step);
    c->step = (uint32_t)s;
    c->delta = c->step / 255.0;
    c->K = (255 * c->n + c->step - 1) / c->step;
    c->M = c->n * (c->K - 1);
    return APX_OK;
}

static int plan_cells(construct_lip *c, apx_error *err) {
    const uint32_t n = c->n, K = c->K;
    uint64_t candidates = 1;
    for (uint32_t i = 0; i < n; i++) {
        candidates *= K;
        if (candidates > CONSTRUCT_MAX_CANDIDATES)
            return apx_fail(err, APX_EINPUT,
                            "epsilon = %g needs %u cells per direction in %u dimensions, more "
                            "than %u candidate cells: raise epsilon",
                            c->epsilon, K, n, CONSTRUCT_MAX_CANDIDATES);
    }
    const double reach = c->rho * c->delta / 2 + KEEP_SLACK;
    size_t cap = 1024;
    c->cell_id = malloc(cap * sizeof *c->cell_id);
    c->cell_value = malloc(cap * sizeof *c->cell_value);
    if (!c->cell_id || !c->cell_value) goto oom;
    for (uint64_t id = 0; id < candidates; id++) {
        double u[CONSTRUCT_LIP_MAX_N] = {0}, x[CONSTRUCT_LIP_MAX_N];
        uint64_t rest = id;
        for (uint32_t i = 0; i < n; i++, rest /= K)
            u[i] = (c->lo[i] + ((double)(rest % K) + 0.5) * c->step) / 255;
        int keep = 1;
        for (uint32_t j = 0; j < n && keep; j++) {
            x[j] = 0;
            for (uint32_t i = 0; i < n; i++) x[j] += c->winv[j][i] * u[i];
            keep = x[j] >= -reach && x[j] <= 1 + reach;
            x[j] = fmin(fmax(x[j], 0), 1);
        }
        if (!keep) continue;
        if (c->cells == BNN_MAX_WIDTH)
            return apx_fail(err, APX_EINPUT,
                            "epsilon = %g needs more than %u cell detectors: raise epsilon",
                            c->epsilon, BNN_MAX_WIDTH);
        if (c->cells == cap) {
            cap *= 2;
            uint64_t *ids = realloc(c->cell_id, cap * sizeof *ids);
            if (ids) c->cell_id = ids;
            double *vals = realloc(c->cell_value, cap * sizeof *vals);
            if (vals) c->cell_value = vals;
            if (!ids || !vals) goto oom;
        }
        c->cell_id[c->cells] = id;
        c->cell_value[c->cells++] = construct_fn_eval(c->f, x);
    }
    return APX_OK;
oom:
    return apx_fail(err, APX_EWORK, "out of memory for %u cells", c->cells);
}

/* Cells per class; returns the largest count. */
static uint32_t class_counts(const construct_lip *c, uint32_t *count) {
    memset(count, 0, c->classes * sizeof *count);
    for (uint32_t d = 0; d < c->cells; d++) count[construct_lip_class(c, c->cell_value[d])]++;
    uint32_t largest = 0;
    for (uint32_t k = 0; k < c->classes; k++)
        if (count[k] > largest) largest = count[k];
    return largest;
}

int construct_lip_plan(const construct_fn *f, double L, double epsilon, uint32_t classes,
                       construct_lip *c, apx_error *err) {
    memset(c, 0, sizeof *c);
    if (!(epsilon > 0) || !isfinite(epsilon))
        return apx_fail(err, APX_EINPUT, "epsilon must be a positive number, got %g", epsilon);
    if (!isnan(L) && (!(L > 0) || !isfinite(L)))
        return apx_fail(err, APX_EINPUT, "L must be a positive number, got %g", L);
    if (!isnan(L) && L < f->lipschitz * (1 - 1e-12))
        return apx_fail(err, APX_EINPUT,
                        "L = %g is below the Lipschitz constant of %s (%.17g, max norm): the "
                        "bound would not hold",
                        L, f->name, f->lipschitz);
    if (classes < 2 || classes > CONSTRUCT_MAX_CLASSES)
        return apx_fail(err, APX_EINPUT, "classes = %u: the readout takes 2..%u classes",
                        classes, CONSTRUCT_MAX_CLASSES);
    c->f = f;
    c->n = f->n;
    c->L = isnan(L) ? f->lipschitz : L;
    c->epsilon = epsilon;
    c->classes = classes;
    c->bin = (f->max - f->min) / classes;
    plan_directions(c);
    int rc = plan_step(c, err);
    if (rc == APX_OK) rc = plan_cells(c, err);
    if (rc == APX_OK) {
        /* Balancing neurons give every class row the same bias: as many as
         * the largest class has more cells than the smallest. */
        uint32_t count[CONSTRUCT_MAX_CLASSES], smallest = UINT32_MAX;
        uint32_t largest = class_counts(c, count);
        for (uint32_t k = 0; k < classes; k++)
            if (count[k] < smallest) smallest = count[k];
        c->constants = largest - smallest;
        if ((uint64_t)c->cells + c->constants > BNN_MAX_WIDTH)
            rc = apx_fail(err, APX_EINPUT,
                          "%u detectors and %u balancing neurons exceed %u: raise epsilon",
                          c->cells, c->constants, BNN_MAX_WIDTH);
    }
    if (rc) {
        construct_lip_free(c);
        return rc;
    }
    c->bound = c->L * c->rho * c->delta / 2;
    c->readout_bound = c->bound + c->bin / 2;
    c->real_bound = c->readout_bound + c->L / 510;
    return APX_OK;
}

void construct_lip_free(construct_lip *c) {
    if (!c) return;
    free(c->cell_id);
    free(c->cell_value);
    memset(c, 0, sizeof *c);
}

int construct_lip_model(const construct_lip *c, const char *name, bnn_model *m,
                        apx_error *err) {
    const uint32_t n = c->n, K = c->K, M = c->M, width = c->cells + c->constants;
    const bnn_layer_spec spec[3] = {
        {BNN_DENSE_U8, M, 1}, {BNN_DENSE_BIN, width, 1}, {BNN_DENSE_OUT, c->classes, 1}};
    if (bnn_create_layers(m, name, 1, n, 1, 3, spec, err)) return err->code;
    /* Thermometer neuron i (K - 1) + k - 1 fires iff w_i . p > lo_i + k step. */
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 1; k < K; k++) {
            uint32_t r = i * (K - 1) + k - 1;
            for (uint32_t j = 0; j < n; j++) bnn_weight_set(m, 0, r, j, c->w[i][j] > 0);
            m->layers[0].threshold[r] = c->lo[i] + (int32_t)(k * c->step);
        }
    /* Detector of cell (k_1..k_n): the code whose first k_i bits of direction
     * i are +1; a = M only for that code, so a > M - 1 fires for it alone.
     * Balancing neurons: threshold M, above any pre-activation. */
    bnn_layer *det = &m->layers[1];
    for (uint32_t d = 0; d < c->cells; d++) {
        uint64_t rest = c->cell_id[d];
        for (uint32_t i = 0; i < n; i++, rest /= K)
            for (uint32_t k = 1; k <= rest % K; k++)
                bnn_weight_set(m, 1, d, i * (K - 1) + k - 1, 1);
        det->threshold[d] = (int32_t)M - 1;
    }
    for (uint32_t z = c->cells; z < width; z++) det->threshold[z] = (int32_t)M;
    /* Readout: row k is +1 on the detectors of class k and on the first
     * (largest - count_k) balancing neurons (which output -1), so every row
     * sums to the same bias and the right class scores 4 above the others. */
    uint32_t count[CONSTRUCT_MAX_CLASSES];
    const uint32_t largest = class_counts(c, count);
    for (uint32_t d = 0; d < c->cells; d++)
        bnn_weight_set(m, 2, construct_lip_class(c, c->cell_value[d]), d, 1);
    for (uint32_t k = 0; k < c->classes; k++)
        for (uint32_t z = 0; z < largest - count[k]; z++) bnn_weight_set(m, 2, k, c->cells + z, 1);
    return APX_OK;
}

int64_t construct_lip_cell(const construct_lip *c, const uint8_t *pixels) {
    uint64_t id = 0, mult = 1;
    for (uint32_t i = 0; i < c->n; i++, mult *= c->K) {
        int32_t u = 0;
        for (uint32_t j = 0; j < c->n; j++) u += c->w[i][j] > 0 ? pixels[j] : -pixels[j];
        int32_t above = u - c->lo[i];  /* >= 0 */
        uint32_t k = above == 0 ? 0 : (uint32_t)(above - 1) / c->step;  /* thresholds below u */
        id += (k < c->K - 1 ? k : c->K - 1) * mult;
    }
    size_t a = 0, b = c->cells;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (c->cell_id[mid] < id) a = mid + 1;
        else b = mid;
    }
    return a < c->cells && c->cell_id[a] == id ? (int64_t)a : -1;
}

uint32_t construct_lip_class(const construct_lip *c, double value) {
    if (!(c->bin > 0)) return 0;
    double k = floor((value - c->f->min) / c->bin);
    return k <= 0 ? 0 : k >= c->classes - 1 ? c->classes - 1 : (uint32_t)k;
}

double construct_lip_class_value(const construct_lip *c, uint32_t cls) {
    return c->f->min + (cls + 0.5) * c->bin;
}

uint8_t construct_pixel(double x) {
    double p = floor(255 * x + 0.5);
    return p <= 0 ? 0 : p >= 255 ? 255 : (uint8_t)p;
}

static int dataset_alloc(dataset *d, uint32_t samples, uint32_t n, uint32_t classes,
                         apx_error *err) {
    memset(d, 0, sizeof *d);
    d->pixels = malloc((size_t)samples * n);
    d->labels = malloc(samples);
    if (!d->pixels || !d->labels) {
        dataset_free(d);
        return apx_fail(err, APX_EWORK, "out of memory for %u samples", samples);
    }
    d->n = samples, d->rows = 1, d->cols = n, d->n_classes = classes;
    return APX_OK;
}

/* The label of an 8-bit input: the class of its cell's value. */
static int label_of(const construct_lip *c, const uint8_t *p, uint8_t *label, apx_error *err) {
    int64_t cell = construct_lip_cell(c, p);
    if (cell < 0)
        return apx_fail(err, APX_EWORK, "internal error: an 8-bit input lies in no kept cell");
    *label = (uint8_t)construct_lip_class(c, c->cell_value[cell]);
    return APX_OK;
}

int construct_lip_dataset(const construct_lip *c, uint32_t samples, uint64_t seed,
                          uint32_t split, dataset *d, apx_error *err) {
    if (samples == 0 || samples > IDX_MAX_ITEMS)
        return apx_fail(err, APX_EINPUT, "samples = %u: a data set holds 1..%u", samples,
                        IDX_MAX_ITEMS);
    if (dataset_alloc(d, samples, c->n, c->classes, err)) return err->code;
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, STREAM_DATA, split), 0, 0);
    for (uint32_t i = 0; i < samples; i++) {
        uint8_t *p = d->pixels + (size_t)i * c->n;
        for (uint32_t j = 0; j < c->n; j++) p[j] = (uint8_t)rng_below(&s, 256);
        if (label_of(c, p, &d->labels[i], err)) {
            dataset_free(d);
            return err->code;
        }
    }
    return APX_OK;
}

/* ---- probes ------------------------------------------------------------------ */

int construct_probe(const bnn_model *m, uint32_t layer, uint32_t keep, bnn_model *probe,
                    apx_error *err) {
    memset(probe, 0, sizeof *probe);
    if (layer + 1 >= m->n_layers)
        return apx_fail(err, APX_EINPUT, "probe: layer %u is not a hidden layer of '%s'", layer,
                        m->name);
    const bnn_layer *last = &m->layers[layer];
    if (keep == 0 || keep > last->out) keep = last->out;
    if (keep < last->out && (last->kind == BNN_CONV_U8 || last->kind == BNN_CONV_BIN))
        return apx_fail(err, APX_EINPUT, "probe: cannot keep part of convolutional layer %u",
                        layer);
    bnn_layer_spec spec[BNN_MAX_LAYERS];
    for (uint32_t l = 0; l <= layer; l++)
        spec[l] = (bnn_layer_spec){m->layers[l].kind, l == layer ? keep : m->layers[l].out,
                                   m->layers[l].pool};
    uint32_t bits = 0;
    while ((1ull << bits) < keep) bits++;
    spec[layer + 1] = (bnn_layer_spec){BNN_DENSE_OUT, 1 + bits, 1};
    if (bnn_create_layers(probe, "probe", m->in_rows, m->in_cols, m->in_channels, layer + 2,
                          spec, err))
        return err->code;
    /* The kept rows come first in m's layer, so the image prefix is the same. */
    memcpy(probe->image, m->image, (last->offset + (size_t)keep * last->words) * 8);
    for (uint32_t l = 0; l <= layer; l++) {
        uint32_t rows = probe->layers[l].out;
        memcpy(probe->layers[l].threshold, m->layers[l].threshold, rows * sizeof(int32_t));
        memcpy(probe->layers[l].direction, m->layers[l].direction, rows);
    }
    for (uint32_t j = 0; j < keep; j++) {
        bnn_weight_set(probe, layer + 1, 0, j, 1);
        for (uint32_t b = 0; b < bits; b++)
            bnn_weight_set(probe, layer + 1, 1 + b, j, (int)(j >> b & 1));
    }
    return APX_OK;
}

uint32_t construct_probe_read(const bnn_model *probe, const int32_t *scores, uint32_t *index) {
    const bnn_layer *P = &probe->layers[probe->n_layers - 1];
    const int32_t width = (int32_t)P->in;
    uint32_t fired = (uint32_t)((scores[0] + width) / 2);  /* score 0 = 2 fired - width */
    *index = 0;
    if (fired != 1) return fired;
    for (uint32_t b = 0; b + 1 < P->out; b++) {
        /* row sum S; with one neuron j firing, score = -S + 2 w_j */
        const uint64_t *row = probe->image + P->offset + (size_t)(1 + b) * P->words;
        int32_t ones = 0;
        for (uint32_t k = 0; k < P->words; k++) ones += __builtin_popcountll(row[k]);
        if (scores[1 + b] + (2 * ones - width) > 0) *index |= 1u << b;
    }
    return fired;
}

/* ---- the check ----------------------------------------------------------------- */

/* The points to check, in order: every 8-bit input (n <= 2), the other 8-bit
 * inputs (cube corners, random, thresholds, cell corners), the real inputs
 * rounded (their x kept for f). */
typedef struct point_set {
    uint32_t n, count, cap, exhaustive, lattice, boundary;
    uint8_t *pixels;
    double *x;  /* real points: n per point, in order after the lattice points */
} point_set;

static int point_add(point_set *s, const uint8_t *p) {
    if (s->count == s->cap) {
        uint32_t cap = s->cap ? 2 * s->cap : 4096;
        uint8_t *px = realloc(s->pixels, (size_t)cap * s->n);
        if (!px) return -1;
        s->pixels = px;
        s->cap = cap;
    }
    memcpy(s->pixels + (size_t)s->count++ * s->n, p, s->n);
    return 0;
}

/* Inputs with w_i . p equal to each threshold and to it + 1 (the last input
 * of one cell and the first of the next): random other pixels, one pixel
 * solved for (w_ij = +-1). */
static int add_boundary_points(const construct_lip *c, rng_stream *s, point_set *ps) {
    const uint32_t n = c->n;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 1; k < c->K; k++)
            for (int32_t side = 0; side < 2; side++)
                for (int want = 2, tries = 0; want > 0 && tries < 32; tries++) {
                    int32_t target = c->lo[i] + (int32_t)(k * c->step) + side;
                    uint8_t p[CONSTRUCT_LIP_MAX_N];
                    for (uint32_t j = 0; j < n; j++) p[j] = (uint8_t)rng_below(s, 256);
                    uint32_t j = (uint32_t)rng_below(s, n);
                    int32_t rest = 0;
                    for (uint32_t l = 0; l < n; l++)
                        if (l != j) rest += c->w[i][l] * p[l];
                    int32_t pj = c->w[i][j] * (target - rest);
                    if (pj < 0 || pj > 255) continue;
                    p[j] = (uint8_t)pj;
                    if (point_add(ps, p)) return -1;
                    ps->boundary++;
                    want--;
                }
    return 0;
}

/* Cell corners: every direction at a threshold (or one step above) at once,
 * where that is an 8-bit input (W p = u solved and checked in integers). */
static int add_corner_points(const construct_lip *c, rng_stream *s, point_set *ps) {
    const uint32_t n = c->n;
    for (uint32_t attempt = 0; attempt < 16 * c->M; attempt++) {
        int32_t u[CONSTRUCT_LIP_MAX_N];
        uint8_t p[CONSTRUCT_LIP_MAX_N];
        for (uint32_t i = 0; i < n; i++)
            u[i] = c->lo[i] + (int32_t)((1 + rng_below(s, c->K - 1)) * c->step) +
                   (int32_t)rng_below(s, 2);
        int ok = 1;
        for (uint32_t j = 0; j < n && ok; j++) {
            double x = 0;
            for (uint32_t i = 0; i < n; i++) x += c->winv[j][i] * u[i];
            double r = floor(x + 0.5);
            ok = r >= 0 && r <= 255 && fabs(x - r) < 1e-6;
            p[j] = ok ? (uint8_t)r : 0;
        }
        for (uint32_t i = 0; i < n && ok; i++) {
            int32_t v = 0;
            for (uint32_t j = 0; j < n; j++) v += c->w[i][j] * p[j];
            ok = v == u[i];
        }
        if (ok) {
            if (point_add(ps, p)) return -1;
            ps->boundary++;
        }
    }
    return 0;
}

static int build_points(const construct_lip *c, uint32_t points, uint64_t seed, point_set *ps,
                        int *exhaustive) {
    const uint32_t n = c->n;
    rng_stream s;
    rng_stream_at(&s, rng_key_make(seed, STREAM_CHECK, 0), 0, 0);
    uint8_t p[CONSTRUCT_LIP_MAX_N];
    *exhaustive = n <= 2;
    if (*exhaustive)
        for (uint32_t v = 0; v < (1u << (8 * n)); v++) {
            for (uint32_t j = 0; j < n; j++) p[j] = (uint8_t)(v >> (8 * j));
            if (point_add(ps, p)) return -1;
        }
    ps->exhaustive = ps->count;
    for (uint32_t v = 0; v < (1u << n); v++) {  /* corners of the cube */
        for (uint32_t j = 0; j < n; j++) p[j] = (v >> j & 1) ? 255 : 0;
        if (point_add(ps, p)) return -1;
    }
    for (uint32_t i = 0; i < points; i++) {
        for (uint32_t j = 0; j < n; j++) p[j] = (uint8_t)rng_below(&s, 256);
        if (point_add(ps, p)) return -1;
    }
    if (add_boundary_points(c, &s, ps) || add_corner_points(c, &s, ps)) return -1;
    ps->lattice = ps->count;
    ps->x = malloc((size_t)(points ? points : 1) * n * sizeof *ps->x);
    if (!ps->x) return -1;
    for (uint32_t i = 0; i < points; i++) {
        for (uint32_t j = 0; j < n; j++) {
            ps->x[(size_t)i * n + j] = rng_unit(&s);
            p[j] = construct_pixel(ps->x[(size_t)i * n + j]);
        }
        if (point_add(ps, p)) return -1;
    }
    return 0;
}

int construct_lip_check(const construct_lip *c, const bnn_model *m, uint32_t points,
                        uint64_t seed, construct_lip_report *r, apx_error *err) {
    memset(r, 0, sizeof *r);
    const uint32_t n = c->n;
    point_set ps = {.n = n};
    dataset d = {0};
    bnn_model probe = {0};
    bnn_workspace *ws = NULL, *pws = NULL;
    uint8_t *pred = NULL;
    int rc = APX_OK;
    if (build_points(c, points, seed, &ps, &r->exhaustive)) {
        rc = apx_fail(err, APX_EWORK, "out of memory for %u check points", ps.count);
        goto out;
    }
    if ((rc = dataset_alloc(&d, ps.count, n, c->classes, err))) goto out;
    memcpy(d.pixels, ps.pixels, (size_t)ps.count * n);
    for (uint32_t i = 0; i < ps.count && rc == APX_OK; i++)
        rc = label_of(c, d.pixels + (size_t)i * n, &d.labels[i], err);
    /* the balancing neurons are left out of the probe: they cannot fire */
    if (rc || (rc = construct_probe(m, 1, c->cells, &probe, err))) goto out;
    ws = bnn_workspace_new(m);
    pws = bnn_workspace_new(&probe);
    pred = malloc(ps.count);
    if (!ws || !pws || !pred) {
        rc = apx_fail(err, APX_EWORK, "out of memory checking '%s'", m->name);
        goto out;
    }
    bnn_eval_range(m, m->image, &d, 0, d.n, ws, pred);
    int32_t scores[33];
    for (uint32_t i = 0; i < ps.count; i++) {
        const uint8_t *p = d.pixels + (size_t)i * n;
        double x[CONSTRUCT_LIP_MAX_N];
        int real = i >= ps.lattice;
        for (uint32_t j = 0; j < n; j++)
            x[j] = real ? ps.x[(size_t)(i - ps.lattice) * n + j] : p[j] / 255.0;
        double y = construct_fn_eval(c->f, x);
        double out = fabs(y - construct_lip_class_value(c, pred[i]));
        r->wrong_class += pred[i] != d.labels[i];
        if (real) r->real_error = fmax(r->real_error, out);
        else r->readout_error = fmax(r->readout_error, out);
        if (i < ps.exhaustive || real) continue;
        /* The probe reads scores one input at a time (the portable kernel),
         * so it runs on the 8-bit inputs but those of the exhaustive sweep
         * (n <= 2); the real inputs are rounded to 8-bit ones like them. */
        uint32_t cell;
        bnn_classify(&probe, probe.image, p, pws, scores);
        uint32_t fired = construct_probe_read(&probe, scores, &cell);
        int one = fired == 1 && cell < c->cells;
        r->probed_points++;
        r->not_one_hot += !one;
        r->wrong_cell += one && (int64_t)cell != construct_lip_cell(c, p);
        r->cell_error = fmax(r->cell_error, one ? fabs(y - c->cell_value[cell]) : INFINITY);
    }
    r->lattice_points = ps.lattice;
    r->boundary_points = ps.boundary;
    r->real_points = ps.count - ps.lattice;
out:
    free(pred);
    bnn_workspace_free(ws);
    bnn_workspace_free(pws);
    bnn_free(&probe);
    dataset_free(&d);
    free(ps.pixels);
    free(ps.x);
    return rc;
}

/* ---- files ----------------------------------------------------------------------- */

int construct_write_file(const char *path, const char *text, size_t len, apx_error *err) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return apx_fail(err, APX_EWORK, "writing %s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = apx_fail(err, APX_EWORK, "writing %s: cannot create %s: %s", path, tmp,
                          strerror(errno));
        free(tmp);
        return rc;
    }
    const char *step = NULL;
    if (fchmod(fd, 0644) != 0) step = "chmod";
    for (size_t done = 0; !step && done < len;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) step = "write";
        else done += (size_t)w;
    }
    if (!step && fsync(fd) != 0) step = "fsync";
    int e = errno;
    if (close(fd) != 0 && !step) step = "close", e = errno;
    if (!step && rename(tmp, path) != 0) step = "rename", e = errno;
    int rc = APX_OK;
    if (step) {
        unlink(tmp);
        rc = apx_fail(err, APX_EWORK, "writing %s: %s failed: %s", path, step, strerror(e));
    }
    free(tmp);
    return rc;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One IDX file (header + payload) gzip-compressed in memory (zlib writes a
 * fixed header with mtime 0, so the bytes depend only on the data), then
 * written through construct_write_file. */
static int write_idx_gz(const char *path, const uint8_t *head, size_t head_len,
                        const uint8_t *body, size_t body_len, apx_error *err) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return apx_fail(err, APX_EWORK, "writing %s: zlib init failed", path);
    uLong cap = deflateBound(&z, (uLong)(head_len + body_len));
    uint8_t *out = malloc(cap);
    int rc = out ? APX_OK : apx_fail(err, APX_EWORK, "writing %s: out of memory", path);
    if (rc == APX_OK) {
        z.next_out = out;
        z.avail_out = (uInt)cap;
        z.next_in = (Bytef *)head;
        z.avail_in = (uInt)head_len;
        int zr = deflate(&z, Z_NO_FLUSH);
        z.next_in = (Bytef *)body;
        z.avail_in = (uInt)body_len;
        if (zr == Z_OK) zr = deflate(&z, Z_FINISH);
        if (zr != Z_STREAM_END)
            rc = apx_fail(err, APX_EWORK, "writing %s: zlib deflate failed (%d)", path, zr);
    }
    if (rc == APX_OK) rc = construct_write_file(path, (const char *)out, z.total_out, err);
    deflateEnd(&z);
    free(out);
    return rc;
}

int construct_dataset_save(const dataset *d, const char *dir, const char *split,
                           apx_error *err) {
    const char *prefix = !strcmp(split, "test") ? "t10k" : !strcmp(split, "train") ? "train"
                                                                                     : NULL;
    if (!prefix)
        return apx_fail(err, APX_EINPUT, "unknown split '%s' (test or train)", split);
    struct stat st;
    if (mkdir(dir, 0755) != 0 && !(errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
        return apx_fail(err, errno == EEXIST ? APX_EINPUT : APX_EWORK,
                        "%s: cannot create the data set directory: %s", dir,
                        errno == EEXIST ? "a file of that name exists" : strerror(errno));
    char path[4096];
    uint8_t head[16];
    put_be32(head, 0x00000803u);
    put_be32(head + 4, d->n);
    put_be32(head + 8, d->rows);
    put_be32(head + 12, d->cols);
    int len = snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    if (len < 0 || (size_t)len >= sizeof path)
        return apx_fail(err, APX_EINPUT, "data set directory name too long: %s", dir);
    if (write_idx_gz(path, head, 16, d->pixels, (size_t)d->n * d->rows * d->cols, err))
        return err->code;
    put_be32(head, 0x00000801u);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    return write_idx_gz(path, head, 8, d->labels, d->n, err);
}

/* ---- parameters (the sidecar) ------------------------------------------------------ */

/* key: "value" with the double-quoted style's escapes. */
static void yaml_str(FILE *y, const char *key, const char *value) {
    fprintf(y, "%s: \"", key);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(y, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(y, "\\x%02x", *p);
        else fputc(*p, y);
    }
    fprintf(y, "\"\n");
}

static void yaml_model(FILE *y, const bnn_model *m) {
    char hash[17];
    bnn_hash_hex(m, hash);
    yaml_str(y, "model", m->name);
    yaml_str(y, "model_hash", hash);
    fprintf(y, "layers:    # kind, fan-in -> neurons\n");
    static const char *const kinds[] = {"", "u8", "bin", "out"};
    uint64_t bits = 0;
    for (uint32_t l = 0; l < m->n_layers; l++) {
        const bnn_layer *L = &m->layers[l];
        fprintf(y, "  - [%s, %u, %u]\n", L->kind <= 3 ? kinds[L->kind] : "?", L->in, L->out);
        bits += bnn_tensor_bits(m, l);
    }
    fprintf(y, "weight_bits: %llu\n", (unsigned long long)bits);
}

static void yaml_data(FILE *y, const char *data_dir, uint32_t samples, uint64_t seed,
                      const char *labels) {
    if (!data_dir) {
        fprintf(y, "data: null\n");
        return;
    }
    fprintf(y, "data:\n");
    yaml_str(y, "  dir", data_dir);
    fprintf(y, "  samples: %u    # per split (test = t10k-*, train = train-*)\n", samples);
    if (seed != UINT64_MAX) fprintf(y, "  seed: %llu\n", (unsigned long long)seed);
    fprintf(y, "  labels: %s\n", labels);
}

char *construct_boolean_yaml(const construct_truth *t, const construct_boolean_info *info,
                             const bnn_model *m, const char *table_path, const char *data_dir) {
    char *buf = NULL;
    size_t len = 0;
    FILE *y = open_memstream(&buf, &len);
    if (!y) return NULL;
    fprintf(y, "# apxsim construct boolean: the parameters of this model (docs/construct.md)\n");
    fprintf(y, "construction: boolean\n");
    yaml_model(y, m);
    fprintf(y, "function: %s\n", t->source);
    if (table_path) yaml_str(y, "table", table_path);
    if (!strcmp(t->source, "random")) fprintf(y, "seed: %llu\n", (unsigned long long)t->seed);
    fprintf(y, "n: %u\npositives: %u\ncomplement: %s\npatterns: %u\ndetectors: %u\n", t->n,
            info->positives, info->complement ? "true" : "false", info->patterns,
            info->detectors);
    fprintf(y, "input: \"pixel j of a 1 x n image is 255 for x_(j+1) = 1, 0 for 0\"\n");
    fprintf(y, "classes: 2    # class = f(x)\n");
    yaml_data(y, data_dir, 1u << t->n, UINT64_MAX, "f(x), every input once");
    if (fclose(y) == 0) return buf;  /* buf is set by fclose */
    free(buf);
    return NULL;
}

char *construct_lip_yaml(const construct_lip *c, const bnn_model *m, const char *table_path,
                         const char *data_dir, uint32_t samples, uint64_t seed,
                         const construct_lip_report *check) {
    char *buf = NULL;
    size_t len = 0;
    FILE *y = open_memstream(&buf, &len);
    if (!y) return NULL;
    fprintf(y, "# apxsim construct lipschitz: the parameters of this model (docs/construct.md)\n");
    fprintf(y, "construction: lipschitz\n");
    yaml_model(y, m);
    fprintf(y, "function: %s\n", c->f->name);
    if (table_path) yaml_str(y, "table", table_path);
    fprintf(y, "n: %u\nL: %.17g\nL_function: %.17g\nepsilon: %.17g\n", c->n, c->L,
            c->f->lipschitz, c->epsilon);
    fprintf(y, "delta: %.17g    # = %u / 255\nrho: %.17g\n", c->delta, c->step, c->rho);
    fprintf(y, "directions:\n");
    for (uint32_t i = 0; i < c->n; i++) {
        fprintf(y, "  - [");
        for (uint32_t j = 0; j < c->n; j++) fprintf(y, "%s%d", j ? ", " : "", c->w[i][j]);
        fprintf(y, "]\n");
    }
    fprintf(y, "cells_per_direction: %u\nthermometer_neurons: %u\ncells: %u\n"
               "balancing_neurons: %u\n",
            c->K, c->M, c->cells, c->constants);
    fprintf(y, "readout:\n  classes: %u\n  min: %.17g\n  bin: %.17g\n"
               "  value: \"min + (class + 0.5) * bin\"\n",
            c->classes, c->f->min, c->bin);
    fprintf(y, "bound: %.17g           # L rho delta / 2, 8-bit inputs, cell value\n", c->bound);
    fprintf(y, "readout_bound: %.17g   # + bin / 2, 8-bit inputs, class value\n",
            c->readout_bound);
    fprintf(y, "real_bound: %.17g      # + L / 510, real inputs rounded to 8 bits\n",
            c->real_bound);
    if (check)
        fprintf(y, "check:\n  lattice_points: %llu\n  real_points: %llu\n  exhaustive: %s\n"
                   "  probed_points: %llu\n  not_one_hot: %llu\n  wrong_cell: %llu\n"
                   "  wrong_class: %llu\n  cell_error: %.17g\n  readout_error: %.17g\n"
                   "  real_error: %.17g\n",
                (unsigned long long)check->lattice_points,
                (unsigned long long)check->real_points, check->exhaustive ? "true" : "false",
                (unsigned long long)check->probed_points,
                (unsigned long long)check->not_one_hot, (unsigned long long)check->wrong_cell,
                (unsigned long long)check->wrong_class, check->cell_error,
                check->readout_error, check->real_error);
    yaml_data(y, data_dir, samples, seed, "class of the input's cell value (the exact network)");
    if (fclose(y) == 0) return buf;  /* buf is set by fclose */
    free(buf);
    return NULL;
}
