/* plot.c - SVG figures from a results database (see plot.h).
 *
 * The data comes through store_read_columns(); this file knows the names of
 * the views and their columns (docs/schema.md) but no SQL. Layout is fixed:
 * an 800 x 500 canvas, the plot area on the left, the legend on the right. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 800, HEIGHT = 500 };
static const double AREA_LEFT = 78, AREA_TOP = 48, AREA_RIGHT = 580, AREA_BOTTOM = 438;
static const double LEGEND_X = 598;
static const double ZERO_GAP = 40; /* room for x = 0 left of a log axis */
enum { MAX_LEGEND = 20 };

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
#define PALETTE_SIZE (sizeof palette / sizeof palette[0])

/* ------------------------------------------------------------ SVG text */

/* Writes text with XML's special characters escaped; control characters,
 * which XML 1.0 forbids, become '?'. */
static void svg_escaped(FILE *out, const char *text) {
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&apos;", out); break;
        default: fputc(*p < 0x20 && *p != '\t' && *p != '\n' ? '?' : *p, out);
        }
    }
}

static void svg_text(FILE *out, double x, double y, const char *anchor, const char *extra,
                     const char *text) {
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor,
            extra ? " " : "", extra ? extra : "");
    svg_escaped(out, text);
    fputs("</text>\n", out);
}

/* ----------------------------------------------------------------- axes */

double plot_nice_step(double lo, double hi, int target) {
    double span = fabs(hi - lo);
    if (!(span > 0) || !isfinite(span) || target < 1) return 1;
    double raw = span / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

int plot_use_log_axis(const double *x, size_t n) {
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] < 0) return 0;
        if (x[i] > 0) {
            lo = fmin(lo, x[i]);
            hi = fmax(hi, x[i]);
        }
    }
    return lo < INFINITY && hi > 100 * lo;
}

typedef struct axis {
    int log, has_zero;     /* has_zero: log axis with x = 0 at the start */
    double lo, hi, step;   /* data range (log: powers of 10); linear tick step */
    double px0, px1;       /* pixel range */
} axis;

static void axis_fit(axis *a, const double *v, size_t n, int allow_log, double px0, double px1) {
    memset(a, 0, sizeof *a);
    a->px0 = px0;
    a->px1 = px1;
    double lo = INFINITY, hi = -INFINITY, plo = INFINITY, phi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
        if (v[i] > 0) plo = fmin(plo, v[i]), phi = fmax(phi, v[i]);
        if (v[i] == 0) a->has_zero = 1;
    }
    if (allow_log && plot_use_log_axis(v, n)) {
        a->log = 1;
        a->lo = pow(10, floor(log10(plo) + 1e-9));
        a->hi = pow(10, ceil(log10(phi) - 1e-9));
        return;
    }
    a->has_zero = 0;
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (lo == hi) {
        double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= pad;
        hi += pad;
    }
    a->step = plot_nice_step(lo, hi, 6);
    a->lo = floor(lo / a->step + 1e-9) * a->step;
    a->hi = ceil(hi / a->step - 1e-9) * a->step;
}

static void axis_fixed(axis *a, double lo, double hi, double px0, double px1) {
    memset(a, 0, sizeof *a);
    a->lo = lo;
    a->hi = hi;
    a->step = plot_nice_step(lo, hi, 6);
    a->px0 = px0;
    a->px1 = px1;
}

static double axis_map(const axis *a, double v) {
    if (!a->log) return a->px0 + (v - a->lo) / (a->hi - a->lo) * (a->px1 - a->px0);
    if (v <= 0) return a->px0;
    double start = a->px0 + (a->has_zero ? (a->px1 > a->px0 ? ZERO_GAP : -ZERO_GAP) : 0);
    double t = (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return start + t * (a->px1 - start);
}

/* A tick value as short text: "%g" after rounding to the tick step. */
static void tick_label(double v, double step, char *buf, size_t size) {
    if (step > 0) {
        v = round(v / step) * step;
        if (fabs(v) < step * 1e-6) v = 0;
    }
    snprintf(buf, size, "%.10g", v);
}

/* Draws grid lines, ticks and tick labels of one axis (vertical = y axis). */
static void axis_draw(FILE *out, const axis *a, int vertical) {
    double ticks[64];
    int n = 0;
    if (a->log) {
        int d0 = (int)lround(log10(a->lo)), d1 = (int)lround(log10(a->hi));
        int every = (d1 - d0 + 7) / 8;
        if (every < 1) every = 1;
        for (int d = d0; d <= d1 && n < 63; d += every) ticks[n++] = pow(10, d);
    } else {
        for (double v = a->lo; v <= a->hi + a->step * 1e-6 && n < 64; v += a->step)
            ticks[n++] = v;
    }
    fputs("<g class=\"ticks\" font-size=\"12\" fill=\"#333\">\n", out);
    char label[64];
    for (int i = -1; i < n; i++) {
        double v;
        if (i < 0) { /* the x = 0 tick left of a log axis */
            if (!a->has_zero) continue;
            v = 0;
            snprintf(label, sizeof label, "0");
        } else {
            v = ticks[i];
            tick_label(v, a->log ? 0 : a->step, label, sizeof label);
        }
        double p = axis_map(a, v);
        if (vertical) {
            fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                    AREA_LEFT, p, AREA_RIGHT, p);
            fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                    AREA_LEFT - 5, p, AREA_LEFT, p);
            svg_text(out, AREA_LEFT - 8, p + 4, "end", "class=\"tick\"", label);
        } else {
            fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                    p, AREA_TOP, p, AREA_BOTTOM);
            fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                    p, AREA_BOTTOM, p, AREA_BOTTOM + 5);
            svg_text(out, p, AREA_BOTTOM + 19, "middle", "class=\"tick\"", label);
        }
    }
    if (a->has_zero && !vertical) { /* a break mark between 0 and the log decades */
        double b = a->px0 + ZERO_GAP / 2;
        fprintf(out, "<path d=\"M%.1f %.1fl4 -8M%.1f %.1fl4 -8\" stroke=\"#333\" fill=\"none\"/>\n",
                b - 4, AREA_BOTTOM + 4, b, AREA_BOTTOM + 4);
    }
    fputs("</g>\n", out);
}

/* The unit of a knob or column for axis labels (NULL if unknown), and the
 * factor from stored values to that unit (accuracy shown in %, energy in
 * uJ, latency in us). */
static const struct unit {
    const char *name, *unit;
    double scale;
} units[] = {
    {"ber", "probability per bit", 1},   {"vdd", "V", 1},
    {"trcd", "ns", 1},                   {"trp", "ns", 1},
    {"tras", "ns", 1},                   {"trefw", "ms", 1},
    {"temperature", "°C", 1},            {"time_s", "s", 1},
    {"accuracy", "%", 100},              {"mean_accuracy", "%", 100},
    {"seconds", "s", 1},                 {"faults_injected", "cells", 1},
    {"bits_exposed", "bits", 1},         {"bits_changed", "bits", 1},
    {"n_samples", "images", 1},          {"n_correct", "images", 1},
    {"energy_pj", "µJ per inference", 1e-6}, {"latency_ns", "µs per inference", 1e-3},
};

static const struct unit *unit_entry(const char *name) {
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(units[i].name, name) == 0) return &units[i];
    return NULL;
}

static const char *unit_of(const char *name) {
    const struct unit *u = unit_entry(name);
    return u ? u->unit : NULL;
}

static void axis_title(const char *name, char *buf, size_t size) {
    const char *unit = unit_of(name);
    if (unit) snprintf(buf, size, "%s (%s)", name, unit);
    else snprintf(buf, size, "%s", name);
}

static void svg_begin(FILE *out, const char *title) {
    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\" "
            "font-size=\"12\">\n<title>",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    svg_escaped(out, title);
    fprintf(out, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", WIDTH, HEIGHT);
    svg_text(out, (AREA_LEFT + AREA_RIGHT) / 2, 28, "middle",
             "class=\"title\" font-size=\"15\" font-weight=\"bold\"", title);
}

static void svg_frame(FILE *out, const axis *x, const axis *y, const char *xlabel,
                      const char *ylabel) {
    axis_draw(out, y, 1);
    axis_draw(out, x, 0);
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                 "stroke=\"#333\"/>\n",
            AREA_LEFT, AREA_TOP, AREA_RIGHT - AREA_LEFT, AREA_BOTTOM - AREA_TOP);
    svg_text(out, (AREA_LEFT + AREA_RIGHT) / 2, AREA_BOTTOM + 44, "middle", "class=\"xlabel\"",
             xlabel);
    char rotate[96];
    double cy = (AREA_TOP + AREA_BOTTOM) / 2;
    snprintf(rotate, sizeof rotate, "class=\"ylabel\" transform=\"rotate(-90 %.1f %.1f)\"", 22.0,
             cy);
    svg_text(out, 22, cy, "middle", rotate, ylabel);
}

static void svg_end(FILE *out) {
    fputs("</svg>\n", out);
}

/* ---------------------------------------------------- accuracy figure */

typedef struct knob_row {
    char *op_key, *knob;
    double value;
} knob_row;

typedef struct acc_point {
    double x, mean, std, min, max, chips;
    char *label;
} acc_point;

typedef struct acc_series {
    char *campaign, *workload, *dataset, *device;
    acc_point *pts;
    size_t n, cap;
} acc_series;

typedef struct acc_data {
    knob_row *knobs;
    size_t n_knobs, cap_knobs;
    acc_series *series;
    size_t n_series, cap_series;
    size_t rows;             /* rows of accuracy_by_point, with or without a sort_key */
    char xname[256];         /* the knob names behind sort_key, ", "-joined */
} acc_data;

static int grow(void **items, size_t *cap, size_t n, size_t size, apx_error *err) {
    if (n < *cap) return APX_OK;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, ncap * size);
    if (!p) return apx_fail(err, APX_EWORK, "plot: out of memory");
    *items = p;
    *cap = ncap;
    return APX_OK;
}

static char *dup_text(const char *s) {
    return strdup(s ? s : "");
}

static int read_knob(void *ctx, int ncol, const char *const *names, const double *values,
                     const char *const *texts, apx_error *err) {
    (void)ncol, (void)names;
    acc_data *d = ctx;
    if (grow((void **)&d->knobs, &d->cap_knobs, d->n_knobs, sizeof *d->knobs, err)) return err->code;
    knob_row *k = &d->knobs[d->n_knobs];
    k->op_key = dup_text(texts[0]);
    k->knob = dup_text(texts[1]);
    k->value = values[2];
    if (!k->op_key || !k->knob) {
        free(k->op_key);
        free(k->knob);
        return apx_fail(err, APX_EWORK, "plot: out of memory");
    }
    d->n_knobs++;
    return APX_OK;
}

static int same(const char *a, const char *b) {
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Adds the knob names of op_key whose value is the point's sort_key to xname. */
static void note_knob(acc_data *d, const char *op_key, double x) {
    for (size_t i = 0; i < d->n_knobs; i++) {
        const knob_row *k = &d->knobs[i];
        if (k->value != x || !same(k->op_key, op_key)) continue;
        size_t len = strlen(k->knob);
        for (const char *p = d->xname; (p = strstr(p, k->knob)); p += len)
            if ((p == d->xname || p[-1] == ' ') && (p[len] == ',' || !p[len])) return;
        size_t used = strlen(d->xname);
        snprintf(d->xname + used, sizeof d->xname - used, "%s%s", used ? ", " : "", k->knob);
        return;
    }
}

enum { A_CAMPAIGN, A_WORKLOAD, A_DATASET, A_DEVICE, A_OP_KEY, A_LABEL, A_SORT_KEY, A_CHIPS,
       A_MEAN, A_STD, A_MIN, A_MAX, A_NCOL };
static const char *const acc_columns[A_NCOL] = {
    "campaign", "workload", "dataset", "device", "op_key", "label", "sort_key", "chips",
    "mean_accuracy", "std_accuracy", "min_accuracy", "max_accuracy"};

static int read_accuracy(void *ctx, int ncol, const char *const *names, const double *v,
                         const char *const *t, apx_error *err) {
    (void)ncol, (void)names;
    acc_data *d = ctx;
    d->rows++;
    if (isnan(v[A_SORT_KEY]) || isnan(v[A_MEAN])) return APX_OK; /* a point without knobs */
    acc_series *s = NULL;
    for (size_t i = 0; i < d->n_series && !s; i++) {
        acc_series *c = &d->series[i];
        if (same(c->campaign, t[A_CAMPAIGN]) && same(c->workload, t[A_WORKLOAD]) &&
            same(c->dataset, t[A_DATASET]) && same(c->device, t[A_DEVICE]))
            s = c;
    }
    if (!s) {
        if (grow((void **)&d->series, &d->cap_series, d->n_series, sizeof *d->series, err))
            return err->code;
        s = &d->series[d->n_series++];
        memset(s, 0, sizeof *s);
        s->campaign = dup_text(t[A_CAMPAIGN]);
        s->workload = dup_text(t[A_WORKLOAD]);
        s->dataset = dup_text(t[A_DATASET]);
        s->device = dup_text(t[A_DEVICE]);
        if (!s->campaign || !s->workload || !s->dataset || !s->device)
            return apx_fail(err, APX_EWORK, "plot: out of memory");
    }
    if (grow((void **)&s->pts, &s->cap, s->n, sizeof *s->pts, err)) return err->code;
    acc_point *p = &s->pts[s->n];
    *p = (acc_point){.x = v[A_SORT_KEY], .mean = v[A_MEAN] * 100,
                     .std = isnan(v[A_STD]) ? 0 : v[A_STD] * 100, .min = v[A_MIN] * 100,
                     .max = v[A_MAX] * 100, .chips = v[A_CHIPS], .label = dup_text(t[A_LABEL])};
    if (!p->label) return apx_fail(err, APX_EWORK, "plot: out of memory");
    s->n++;
    note_knob(d, t[A_OP_KEY], v[A_SORT_KEY]);
    return APX_OK;
}

static void acc_free(acc_data *d) {
    for (size_t i = 0; i < d->n_knobs; i++) {
        free(d->knobs[i].op_key);
        free(d->knobs[i].knob);
    }
    for (size_t i = 0; i < d->n_series; i++) {
        acc_series *s = &d->series[i];
        for (size_t j = 0; j < s->n; j++) free(s->pts[j].label);
        free(s->pts);
        free(s->campaign);
        free(s->workload);
        free(s->dataset);
        free(s->device);
    }
    free(d->knobs);
    free(d->series);
}

static int cmp_point(const void *a, const void *b) {
    double x = ((const acc_point *)a)->x, y = ((const acc_point *)b)->x;
    return (x > y) - (x < y);
}

static int cmp_series(const void *a, const void *b) {
    const acc_series *s = a, *t = b;
    int c = strcmp(s->campaign, t->campaign);
    if (!c) c = strcmp(s->workload, t->workload);
    if (!c) c = strcmp(s->dataset, t->dataset);
    if (!c) c = strcmp(s->device, t->device);
    return c;
}

/* "workload / device", with the campaign and data set when they differ
 * between series. */
static void series_name(const acc_data *d, const acc_series *s, char *buf, size_t size) {
    int campaigns = 0, datasets = 0;
    for (size_t i = 0; i < d->n_series; i++) {
        campaigns |= strcmp(d->series[i].campaign, s->campaign) != 0;
        datasets |= strcmp(d->series[i].dataset, s->dataset) != 0;
    }
    snprintf(buf, size, "%s%s%s / %s%s%s%s", campaigns ? s->campaign : "", campaigns ? ": " : "",
             s->workload, s->device, datasets ? " (" : "", datasets ? s->dataset : "",
             datasets ? ")" : "");
}

static void polyline(FILE *out, const axis *x, const axis *y, const acc_point *p, size_t n,
                     size_t offset, const char *style) {
    fputs("<polyline points=\"", out);
    for (size_t i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&p[i] + offset);
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", axis_map(x, p[i].x), axis_map(y, v));
    }
    fprintf(out, "\" fill=\"none\" %s/>\n", style);
}

static void legend_entry(FILE *out, int row, const char *color, int dashed, int band,
                         const char *text) {
    double y = AREA_TOP + 8 + row * 20;
    if (band)
        fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"24\" height=\"10\" fill=\"%s\" "
                     "fill-opacity=\"0.18\"/>\n",
                LEGEND_X, y - 5, color);
    else
        fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                     "stroke-width=\"%s\"%s/>\n",
                LEGEND_X, y, LEGEND_X + 24, y, color, dashed ? "1" : "2",
                dashed ? " stroke-dasharray=\"4 3\"" : "");
    if (!band && !dashed)
        fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" stroke=\"#fff\"/>\n",
                LEGEND_X + 12, y, color);
    svg_text(out, LEGEND_X + 30, y + 4, "start", "class=\"legend\"", text);
}

static void render_accuracy(const acc_data *d, const char *title_opt, FILE *out) {
    size_t npts = 0;
    for (size_t i = 0; i < d->n_series; i++) npts += d->series[i].n;
    double *xs = malloc((npts ? npts : 1) * sizeof *xs);
    size_t k = 0;
    for (size_t i = 0; i < d->n_series && xs; i++)
        for (size_t j = 0; j < d->series[i].n; j++) xs[k++] = d->series[i].pts[j].x;
    axis x, y;
    axis_fit(&x, xs ? xs : (double[]){0}, xs ? npts : 1, 1, AREA_LEFT + 10, AREA_RIGHT - 10);
    free(xs);
    /* y fits the data (means, bands and envelopes) within 0..100 %. */
    double ylo = 100, yhi = 0;
    for (size_t i = 0; i < d->n_series; i++)
        for (size_t j = 0; j < d->series[i].n; j++) {
            const acc_point *p = &d->series[i].pts[j];
            ylo = fmin(ylo, fmin(p->min, p->mean - p->std));
            yhi = fmax(yhi, fmax(p->max, p->mean + p->std));
        }
    double ystep = plot_nice_step(ylo, yhi, 6);
    ylo = fmax(0, floor(ylo / ystep) * ystep);
    yhi = fmin(100, ceil(yhi / ystep) * ystep);
    if (!(yhi > ylo)) ylo = 0, yhi = 100;
    axis_fixed(&y, ylo, yhi, AREA_BOTTOM, AREA_TOP);

    const char *knob = d->xname[0] ? d->xname : "operating point";
    char title[512], xlabel[300];
    int one_campaign = 1;
    for (size_t i = 1; i < d->n_series; i++)
        one_campaign &= strcmp(d->series[i].campaign, d->series[0].campaign) == 0;
    if (title_opt) snprintf(title, sizeof title, "%s", title_opt);
    else snprintf(title, sizeof title, "Accuracy over chips vs %s%s%s", knob,
                  one_campaign ? ": " : "", one_campaign ? d->series[0].campaign : "");
    axis_title(knob, xlabel, sizeof xlabel);
    svg_begin(out, title);
    svg_frame(out, &x, &y, xlabel, "mean accuracy (%)");

    char name[512], tip[512];
    for (size_t i = 0; i < d->n_series; i++) {
        const acc_series *s = &d->series[i];
        const char *color = palette[i % PALETTE_SIZE];
        series_name(d, s, name, sizeof name);
        fputs("<g class=\"series\">\n<title>", out);
        svg_escaped(out, name);
        fputs("</title>\n<polygon class=\"band\" points=\"", out);
        for (size_t j = 0; j < s->n; j++)
            fprintf(out, "%.1f,%.1f ", axis_map(&x, s->pts[j].x),
                    axis_map(&y, fmin(100, s->pts[j].mean + s->pts[j].std)));
        for (size_t j = s->n; j-- > 0;)
            fprintf(out, "%.1f,%.1f%s", axis_map(&x, s->pts[j].x),
                    axis_map(&y, fmax(0, s->pts[j].mean - s->pts[j].std)), j ? " " : "");
        fprintf(out, "\" fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", color);
        char style[128];
        snprintf(style, sizeof style,
                 "class=\"envelope\" stroke=\"%s\" stroke-width=\"1\" stroke-dasharray=\"4 3\"",
                 color);
        polyline(out, &x, &y, s->pts, s->n, offsetof(acc_point, min), style);
        polyline(out, &x, &y, s->pts, s->n, offsetof(acc_point, max), style);
        snprintf(style, sizeof style, "class=\"mean\" stroke=\"%s\" stroke-width=\"2\"", color);
        polyline(out, &x, &y, s->pts, s->n, offsetof(acc_point, mean), style);
        for (size_t j = 0; j < s->n; j++) {
            const acc_point *p = &s->pts[j];
            fprintf(out, "<circle class=\"marker\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" "
                         "stroke=\"#fff\"><title>",
                    axis_map(&x, p->x), axis_map(&y, p->mean), color);
            snprintf(tip, sizeof tip, "%s: %.2f %% ± %.2f (min %.2f, max %.2f, %.0f chips)",
                     p->label, p->mean, p->std, p->min, p->max, p->chips);
            svg_escaped(out, tip);
            fputs("</title></circle>\n", out);
        }
        fputs("</g>\n", out);
    }

    fputs("<g class=\"legend\">\n", out);
    int row = 0;
    for (size_t i = 0; i < d->n_series && row < MAX_LEGEND; i++, row++) {
        series_name(d, &d->series[i], name, sizeof name);
        legend_entry(out, row, palette[i % PALETTE_SIZE], 0, 0, name);
    }
    if (d->n_series > MAX_LEGEND) {
        snprintf(name, sizeof name, "... and %zu more", d->n_series - MAX_LEGEND);
        legend_entry(out, row++, "#fff", 1, 0, name);
    }
    row++;
    legend_entry(out, row++, "#555", 0, 1, "±1 std over chips");
    legend_entry(out, row++, "#555", 1, 0, "min / max over chips");
    fputs("</g>\n", out);
    svg_end(out);
}

static int plot_accuracy(store *s, const plot_options *opt, FILE *out, apx_error *err) {
    acc_data d = {0};
    static const char *const knob_columns[] = {"op_key", "knob", "value"};
    int rc = store_read_columns(s, "op_knobs", knob_columns, 3, read_knob, &d, err);
    if (rc == APX_OK)
        rc = store_read_columns(s, "accuracy_by_point", acc_columns, A_NCOL, read_accuracy, &d,
                                err);
    if (rc == APX_OK && d.rows == 0)
        rc = apx_fail(err, APX_EINPUT, "the database has no evaluations to plot");
    else if (rc == APX_OK && d.n_series == 0)
        rc = apx_fail(err, APX_EINPUT,
                      "no operating point has a knob value (sort_key) to plot against");
    if (rc == APX_OK) {
        qsort(d.series, d.n_series, sizeof *d.series, cmp_series);
        for (size_t i = 0; i < d.n_series; i++)
            qsort(d.series[i].pts, d.series[i].n, sizeof *d.series[i].pts, cmp_point);
        render_accuracy(&d, opt->title, out);
    }
    acc_free(&d);
    return rc;
}

/* ------------------------------------------------------ Pareto figure */

typedef struct xy {
    double x, y;
    size_t series;  /* index into pareto_data.names: the point's workload */
} xy;

#define PARETO_MAX_SERIES 16

typedef struct pareto_data {
    xy *pts;
    size_t n, cap, rows;
    double xscale, yscale;  /* stored value -> axis unit (unit_entry) */
    char names[PARETO_MAX_SERIES][64];
    size_t n_names;
} pareto_data;

static int read_xy(void *ctx, int ncol, const char *const *names, const double *v,
                   const char *const *t, apx_error *err) {
    (void)ncol;
    pareto_data *d = ctx;
    d->rows++;
    for (int i = 0; i < 2; i++)
        if (isnan(v[i]) && t[i])
            return apx_fail(err, APX_EINPUT, "column %s is not numeric (value \"%.40s\")",
                            names[i], t[i]);
    if (isnan(v[0]) || isnan(v[1])) return APX_OK; /* NULL */
    const char *w = t[2] ? t[2] : "";
    size_t k = 0;
    while (k < d->n_names && strncmp(d->names[k], w, sizeof d->names[k] - 1) != 0) k++;
    if (k == d->n_names) {
        if (k == PARETO_MAX_SERIES)
            return apx_fail(err, APX_EINPUT, "more than %d workloads to plot; select some with "
                            "a database of fewer", PARETO_MAX_SERIES);
        snprintf(d->names[k], sizeof d->names[k], "%s", w);
        d->n_names++;
    }
    if (grow((void **)&d->pts, &d->cap, d->n, sizeof *d->pts, err)) return err->code;
    d->pts[d->n++] = (xy){v[0] * d->xscale, v[1] * d->yscale, k};
    return APX_OK;
}

static int cmp_xy(const void *a, const void *b) {
    const xy *p = a, *q = b;
    if (p->x != q->x) return (p->x > q->x) - (p->x < q->x);
    return (p->y < q->y) - (p->y > q->y); /* higher y first */
}

static double scale_of(const char *column) {
    const struct unit *u = unit_entry(column);
    return u ? u->scale : 1;
}

/* One workload's front (max y, min x) as a staircase with its points. */
static size_t draw_front(const pareto_data *d, size_t series, const axis *x, const axis *y,
                         const plot_options *opt, xy *front, FILE *out) {
    /* Points are sorted by x, then y descending: a point is on the front
     * when its y beats every point before it. */
    size_t nfront = 0;
    double best = -INFINITY;
    for (size_t i = 0; i < d->n; i++)
        if (d->pts[i].series == series && d->pts[i].y > best)
            best = d->pts[i].y, front[nfront++] = d->pts[i];
    const char *color = palette[series % PALETTE_SIZE];
    fprintf(out, "<g class=\"front\">\n<polyline points=\"");
    for (size_t i = 0; i < nfront; i++) /* y holds until the next front point */
        fprintf(out, "%s%.1f,%.1f %.1f,%.1f", i ? " " : "", axis_map(x, front[i].x),
                axis_map(y, i ? front[i - 1].y : front[i].y), axis_map(x, front[i].x),
                axis_map(y, front[i].y));
    fprintf(out, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", color);
    char text[200];
    for (size_t i = 0; i < nfront; i++) {
        fprintf(out, "<circle class=\"front\" cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\" "
                     "stroke=\"#fff\"><title>",
                axis_map(x, front[i].x), axis_map(y, front[i].y), color);
        snprintf(text, sizeof text, "%.40s: %.40s = %.6g, %.40s = %.6g", d->names[series],
                 opt->x_column, front[i].x, opt->y_column, front[i].y);
        svg_escaped(out, text);
        fputs("</title></circle>\n", out);
    }
    fputs("</g>\n", out);
    return nfront;
}

static void render_pareto(const pareto_data *d, const plot_options *opt, FILE *out) {
    double *v = malloc(d->n * sizeof *v);
    axis x, y;
    for (size_t i = 0; i < d->n && v; i++) v[i] = d->pts[i].x;
    axis_fit(&x, v ? v : (double[]){0}, v ? d->n : 1, 1, AREA_LEFT + 10, AREA_RIGHT - 10);
    for (size_t i = 0; i < d->n && v; i++) v[i] = d->pts[i].y;
    axis_fit(&y, v ? v : (double[]){0}, v ? d->n : 1, 0, AREA_BOTTOM - 10, AREA_TOP + 10);
    free(v);

    char title[512], xlabel[300], ylabel[300], text[160];
    if (opt->title) snprintf(title, sizeof title, "%s", opt->title);
    else snprintf(title, sizeof title, "%s vs %s", opt->y_column, opt->x_column);
    axis_title(opt->x_column, xlabel, sizeof xlabel);
    axis_title(opt->y_column, ylabel, sizeof ylabel);
    svg_begin(out, title);
    svg_frame(out, &x, &y, xlabel, ylabel);

    fputs("<g class=\"points\" fill-opacity=\"0.35\">\n", out);
    for (size_t i = 0; i < d->n; i++)
        fprintf(out, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                axis_map(&x, d->pts[i].x), axis_map(&y, d->pts[i].y),
                palette[d->pts[i].series % PALETTE_SIZE]);
    fputs("</g>\n", out);
    xy *front = malloc((d->n ? d->n : 1) * sizeof *front);
    size_t counts[PARETO_MAX_SERIES] = {0};
    for (size_t k = 0; k < d->n_names && front; k++)
        counts[k] = draw_front(d, k, &x, &y, opt, front, out);
    free(front);
    fputs("<g class=\"legend\">\n", out);
    for (size_t k = 0; k < d->n_names; k++) {
        snprintf(text, sizeof text, "%.48s: front of %zu", d->names[k][0] ? d->names[k] : "(no name)",
                 counts[k]);
        legend_entry(out, (int)k, palette[k % PALETTE_SIZE], 0, 0, text);
    }
    snprintf(text, sizeof text, "%zu evaluations; fronts: max y, min x", d->n);
    svg_text(out, LEGEND_X, AREA_TOP + 8 + (double)d->n_names * 20 + 4, "start",
             "class=\"legend\" fill=\"#555\"", text);
    fputs("</g>\n", out);
    svg_end(out);
}

static int plot_pareto(store *s, const plot_options *opt, FILE *out, apx_error *err) {
    if (!opt->x_column || !opt->y_column)
        return apx_fail(err, APX_EINPUT, "the pareto figure needs an x and a y column");
    pareto_data d = {.xscale = scale_of(opt->x_column), .yscale = scale_of(opt->y_column)};
    const char *const columns[] = {opt->x_column, opt->y_column, "workload"};
    int rc = store_read_columns(s, "evaluations_flat", columns, 3, read_xy, &d, err);
    if (rc == APX_OK && d.rows == 0)
        rc = apx_fail(err, APX_EINPUT, "the database has no evaluations to plot");
    else if (rc == APX_OK && d.n == 0)
        rc = apx_fail(err, APX_EINPUT, "no evaluation has both %s and %s", opt->x_column,
                      opt->y_column);
    if (rc == APX_OK) {
        qsort(d.pts, d.n, sizeof *d.pts, cmp_xy);
        render_pareto(&d, opt, out);
    }
    free(d.pts);
    return rc;
}

/* -------------------------------------------------------------- output */

int plot_render(store *s, const plot_options *opt, FILE *out, apx_error *err) {
    if (!s || !opt || !out) return apx_fail(err, APX_EINPUT, "plot_render: missing argument");
    switch (opt->figure) {
    case PLOT_ACCURACY: return plot_accuracy(s, opt, out, err);
    case PLOT_PARETO: return plot_pareto(s, opt, out, err);
    }
    return apx_fail(err, APX_EINPUT, "plot: unknown figure %d", (int)opt->figure);
}

int plot_write(store *s, const plot_options *opt, const char *path, apx_error *err) {
    if (!path) return apx_fail(err, APX_EINPUT, "plot_write: missing path");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return apx_fail(err, APX_EWORK, "plot: out of memory");
    int rc = plot_render(s, opt, mem, err);
    if (fclose(mem) != 0 && rc == APX_OK) rc = apx_fail(err, APX_EWORK, "plot: out of memory");
    if (rc == APX_OK) {
        FILE *f = fopen(path, "wb");
        if (!f) {
            rc = apx_fail(err, APX_EWORK, "cannot write %s: %s", path, strerror(errno));
        } else {
            size_t put = fwrite(buf, 1, len, f);
            if ((fclose(f) != 0) | (put != len)) {
                rc = apx_fail(err, APX_EWORK, "writing %s failed", path);
                remove(path);
            }
        }
    }
    free(buf);
    return rc;
}
