/* test_plot.c - SVG figures from a results database (sim/plot.h).
 *
 * Databases are written through the store API, as a sweep writes them; the
 * figures are checked for well-formed XML (in C, and with xmllint where it
 * is installed), their series, ticks, escaping and axis scale. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/plot.h"
#include "sim/store.h"
#include "tests.h"

/* ------------------------------------------------------------ helpers */

static const char *const ber_knob[] = {"ber"};

/* Stores one evaluation of workload at ber: n_correct of 1000 correct. */
static void put_ber(store *s, int64_t run, const char *workload, const double *ber, uint32_t chip,
                    uint32_t n_correct, uint64_t faults) {
    char key[128], op_key[64], label[64];
    snprintf(op_key, sizeof op_key, "op-%g", *ber);
    snprintf(label, sizeof label, "ber=%g", *ber);
    snprintf(key, sizeof key, "%s-%s-%u-%llu", workload, op_key, chip, (unsigned long long)faults);
    store_eval e = {.eval_key = key, .run_id = run, .campaign = "plots", .op_key = op_key,
                    .device = "uniform", .op_label = label, .knobs = ber_knob, .values = ber,
                    .n_knobs = 1, .chip = chip, .workload = workload, .dataset = "fmnist/test",
                    .n_samples = 1000, .n_correct = n_correct, .bits_exposed = 1 << 20,
                    .faults_injected = faults, .bits_changed = faults / 2, .seconds = 0.1};
    int inserted = 0;
    apx_error err = {0};
    int rc = store_put_eval(s, &e, &inserted, &err);
    if (rc) fprintf(stderr, "\nstore_put_eval: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == APX_OK && inserted);
}

static store *new_db(const char *name, int64_t *run) {
    store *s = NULL;
    apx_error err = {0};
    CU_ASSERT_FATAL(store_open(test_db_path(name), &s, &err) == APX_OK);
    store_run r = {.campaign = "plots", .config_text = "name: plots\n", .tool_version = "test",
                   .seed = 1};
    CU_ASSERT_FATAL(store_run_begin(s, &r, run, &err) == APX_OK);
    return s;
}

/* A BER sweep: workloads over the given BERs, 3 chips each, accuracy
 * falling with the BER. */
static store *ber_db(const char *name, const char *const *workloads, int n_workloads,
                     const double *bers, int n_bers) {
    int64_t run;
    store *s = new_db(name, &run);
    for (int w = 0; w < n_workloads; w++)
        for (int b = 0; b < n_bers; b++)
            for (uint32_t chip = 0; chip < 3; chip++)
                put_ber(s, run, workloads[w], &bers[b], chip,
                        (uint32_t)(900 - 60 * b - 10 * w - 5 * chip), (uint64_t)b * 100 + chip);
    return s;
}

static char *slurp(const char *path) {
    size_t len = 0;
    return test_slurp(path, &len);
}

/* Renders into a string (caller frees); NULL with err set on failure. */
static char *render(store *s, const plot_options *opt, apx_error *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CU_ASSERT_FATAL(out != NULL);
    int rc = plot_render(s, opt, out, err);
    fclose(out);
    if (rc != APX_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Whether the document is well-formed as far as a figure needs: every tag
 * closed in order, quoted attributes, one root <svg>, only the five XML
 * entities (or numeric ones), no raw '<' or '&' in text. */
static int xml_balanced(const char *doc) {
    const char *stack[64];
    size_t lens[64];
    int depth = 0, roots = 0;
    for (const char *p = doc; *p; p++) {
        if (*p == '&') {
            static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"};
            int ok = 0;
            for (size_t i = 0; i < 6; i++) ok |= strncmp(p, ents[i], strlen(ents[i])) == 0;
            if (!ok) return 0;
            continue;
        }
        if (*p == '>') return 0; /* we escape every '>' in text */
        if (*p != '<') continue;
        if (p[1] == '?') {
            if (!(p = strstr(p, "?>"))) return 0;
            p++;
            continue;
        }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t len = strcspn(name, " \t\n/>");
        if (len == 0) return 0;
        const char *q = name + len;
        char quote = 0;
        for (; *q && (quote || *q != '>'); q++) {
            if (quote && *q == '<') return 0;
            if (*q == '"' || *q == '\'') quote = quote == *q ? 0 : quote ? quote : *q;
        }
        if (!*q) return 0;
        int self = q[-1] == '/';
        if (closing) {
            if (depth == 0 || lens[depth - 1] != len || strncmp(stack[depth - 1], name, len))
                return 0;
            depth--;
        } else if (!self) {
            if (depth == 0) roots++;
            if (depth == 64) return 0;
            stack[depth] = name;
            lens[depth++] = len;
        }
        p = q;
    }
    return depth == 0 && roots == 1 && strstr(doc, "<svg ") != NULL;
}

static int xmllint_ok(const char *path) {
    char out[2048];
    if (test_run(out, sizeof out, "command -v xmllint >/dev/null") != 0) {
        fprintf(stderr, "(xmllint not installed: C check only) ");
        return 1;
    }
    int rc = test_run(out, sizeof out, "xmllint --noout '%s'", path);
    if (rc) fprintf(stderr, "\nxmllint %s:\n%s\n", path, out);
    return rc == 0;
}

/* The cx of every <circle class="cls" ...> in order; returns how many. */
static int circles(const char *svg, const char *cls, double *cx, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "<circle class=\"%s\" cx=\"", cls);
    int n = 0;
    for (const char *p = svg; (p = strstr(p, pat)); p += strlen(pat))
        if (n < max) cx[n++] = atof(p + strlen(pat));
        else n++;
    return n;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* ------------------------------------------------------------- tests */

static const double quick_bers[] = {0, 1e-4, 1e-3, 1e-2, 0.1};

static void test_accuracy_figure(void) {
    const char *const workloads[] = {"mlp", "cnn"};
    store *s = ber_db("acc.db", workloads, 2, quick_bers, 5);
    const char *svg_path = test_path("acc.svg");
    plot_options opt = {.figure = PLOT_ACCURACY};
    apx_error err = {0};
    CU_ASSERT_FATAL(plot_write(s, &opt, svg_path, &err) == APX_OK);
    char *svg = slurp(svg_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);

    CU_ASSERT(xml_balanced(svg));
    CU_ASSERT(xmllint_ok(svg_path));
    CU_ASSERT(strstr(svg, "width=\"800\" height=\"500\" viewBox=\"0 0 800 500\"") != NULL);
    CU_ASSERT(strstr(svg, "fill=\"#ffffff\"") != NULL);
    /* One series per workload, in the legend and as a group. */
    CU_ASSERT(strstr(svg, ">mlp / uniform</text>") != NULL);
    CU_ASSERT(strstr(svg, ">cnn / uniform</text>") != NULL);
    CU_ASSERT_EQUAL(count(svg, "<g class=\"series\">"), 2);
    CU_ASSERT_EQUAL(count(svg, "<polygon class=\"band\""), 2);
    CU_ASSERT_EQUAL(count(svg, "class=\"envelope\""), 4);
    double cx[16];
    CU_ASSERT_EQUAL(circles(svg, "marker", cx, 16), 10);
    /* Axis titles with units, and the knob name from op_knobs. */
    CU_ASSERT(strstr(svg, ">ber (probability per bit)</text>") != NULL);
    CU_ASSERT(strstr(svg, ">mean accuracy (%)</text>") != NULL);
    CU_ASSERT(strstr(svg, ">Accuracy over chips vs ber: plots</text>") != NULL);
    /* Log x ticks at the decades, x = 0 labelled at the left edge. */
    const char *ticks[] = {">0<", ">0.0001<", ">0.001<", ">0.01<", ">0.1<"};
    for (size_t i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "class=\"tick\"%s/text>", ticks[i]);
        CU_ASSERT(strstr(svg, want) != NULL);
    }
    /* On a log axis the decades are equally spaced, and 0 sits left of them. */
    double d1 = cx[2] - cx[1], d2 = cx[3] - cx[2], d3 = cx[4] - cx[3];
    CU_ASSERT(d1 > 10 && fabs(d1 - d2) < 0.2 && fabs(d2 - d3) < 0.2);
    CU_ASSERT(cx[0] < cx[1] - 20);
    /* y ticks are nice numbers: the data span 80..90 %. */
    CU_ASSERT(strstr(svg, "class=\"tick\">90</text>") != NULL);
    free(svg);
    store_close(s);
}

static void test_linear_axis(void) {
    const char *const workloads[] = {"mlp"};
    const double bers[] = {0.01, 0.02, 0.05};
    store *s = ber_db("lin.db", workloads, 1, bers, 3);
    apx_error err = {0};
    plot_options opt = {.figure = PLOT_ACCURACY};
    char *svg = render(s, &opt, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    double cx[4];
    CU_ASSERT_EQUAL_FATAL(circles(svg, "marker", cx, 4), 3);
    /* Linear: 0.02 -> 0.05 is three times as far as 0.01 -> 0.02. */
    CU_ASSERT(fabs((cx[2] - cx[1]) - 3 * (cx[1] - cx[0])) < 0.5);
    CU_ASSERT(strstr(svg, "class=\"tick\">0.01</text>") != NULL);
    CU_ASSERT(strstr(svg, "class=\"tick\">0.05</text>") != NULL);
    free(svg);
    store_close(s);
}

static void test_log_axis_choice(void) {
    CU_ASSERT(plot_use_log_axis(quick_bers, 5));                 /* BER sweep with 0 */
    CU_ASSERT(plot_use_log_axis((double[]){1e-3, 0.5}, 2));      /* factor 500 */
    CU_ASSERT(!plot_use_log_axis((double[]){0, 0.01, 0.02, 0.05}, 4)); /* factor 5 */
    CU_ASSERT(!plot_use_log_axis((double[]){1, 100}, 2));        /* exactly 100: linear */
    CU_ASSERT(!plot_use_log_axis((double[]){-1, 1, 1000}, 3));   /* negative values */
    CU_ASSERT(!plot_use_log_axis((double[]){0, 0}, 2));
}

static void test_nice_steps(void) {
    CU_ASSERT_DOUBLE_EQUAL(plot_nice_step(0, 100, 6), 20, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(plot_nice_step(0, 1, 5), 0.2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(plot_nice_step(80.5, 89, 6), 1, 1e-12);
    for (double span = 1e-6; span < 1e9; span *= 1.37) {
        double step = plot_nice_step(3, 3 + span, 6);
        double m = step / pow(10, floor(log10(step) + 1e-9));
        CU_ASSERT(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9);
        CU_ASSERT(span / step >= 2 && span / step <= 15); /* a readable number of ticks */
    }
}

static void test_escaping(void) {
    const char *const workloads[] = {"a<&\"b'"};
    store *s = ber_db("esc.db", workloads, 1, quick_bers, 3);
    const char *svg_path = test_path("esc.svg");
    plot_options opt = {.figure = PLOT_ACCURACY, .title = "x < y & \"z\""};
    apx_error err = {0};
    CU_ASSERT_FATAL(plot_write(s, &opt, svg_path, &err) == APX_OK);
    char *svg = slurp(svg_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT(xml_balanced(svg));
    CU_ASSERT(xmllint_ok(svg_path));
    CU_ASSERT(strstr(svg, "a&lt;&amp;&quot;b&apos; / uniform") != NULL);
    CU_ASSERT(strstr(svg, "x &lt; y &amp; &quot;z&quot;") != NULL);
    CU_ASSERT(strstr(svg, "a<&") == NULL && strstr(svg, "x < y") == NULL);
    free(svg);
    store_close(s);
}

static void test_empty_database(void) {
    int64_t run;
    store *s = new_db("empty.db", &run);
    const char *svg_path = test_path("empty.svg");
    remove(svg_path);
    apx_error err = {0};
    plot_options opt = {.figure = PLOT_ACCURACY};
    CU_ASSERT_EQUAL(plot_write(s, &opt, svg_path, &err), APX_EINPUT);
    CU_ASSERT(strstr(err.msg, "no evaluations") != NULL);
    CU_ASSERT(access(svg_path, F_OK) != 0);
    opt = (plot_options){.figure = PLOT_PARETO, .x_column = "faults_injected", .y_column = "accuracy"};
    err = (apx_error){0};
    CU_ASSERT_EQUAL(plot_write(s, &opt, svg_path, &err), APX_EINPUT);
    CU_ASSERT(strstr(err.msg, "no evaluations") != NULL);
    CU_ASSERT(access(svg_path, F_OK) != 0);
    store_close(s);
}

static void test_pareto(void) {
    int64_t run;
    store *s = new_db("pareto.db", &run);
    /* (faults, correct of 1000): the front (min faults, max accuracy) is
     * (10, 500), (20, 700), (40, 900); the others are dominated. */
    static const struct { uint64_t faults; uint32_t correct; } pts[] = {
        {10, 500}, {20, 700}, {30, 600}, {40, 900}, {20, 400}, {50, 900}, {60, 100}};
    const double ber = 1e-3;
    for (uint32_t i = 0; i < sizeof pts / sizeof pts[0]; i++)
        put_ber(s, run, "mlp", &ber, i, pts[i].correct, pts[i].faults);
    /* A second workload that dominates the first: each keeps its own front
     * (comparing different networks on one front would hide the weaker). */
    put_ber(s, run, "cnn", &ber, 0, 950, 15);
    put_ber(s, run, "cnn", &ber, 1, 990, 25);
    put_ber(s, run, "cnn", &ber, 2, 980, 45);
    const char *svg_path = test_path("pareto.svg");
    plot_options opt = {.figure = PLOT_PARETO, .x_column = "faults_injected",
                        .y_column = "accuracy"};
    apx_error err = {0};
    CU_ASSERT_FATAL(plot_write(s, &opt, svg_path, &err) == APX_OK);
    char *svg = slurp(svg_path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(svg);
    CU_ASSERT(xml_balanced(svg));
    CU_ASSERT(xmllint_ok(svg_path));
    double cx[16];
    CU_ASSERT_EQUAL(circles(svg, "point", cx, 16), 10);
    CU_ASSERT_EQUAL(circles(svg, "front", cx, 16), 5);
    CU_ASSERT(cx[0] < cx[1] && cx[1] < cx[2]);
    CU_ASSERT(strstr(svg, "mlp: faults_injected = 40, accuracy = 90<") != NULL);
    CU_ASSERT(strstr(svg, "cnn: faults_injected = 25, accuracy = 99<") != NULL);
    CU_ASSERT(strstr(svg, "cnn: faults_injected = 45") == NULL);
    CU_ASSERT(strstr(svg, ">faults_injected (cells)</text>") != NULL);
    CU_ASSERT(strstr(svg, ">accuracy (%)</text>") != NULL);
    CU_ASSERT(strstr(svg, ">mlp: front of 3</text>") != NULL);
    CU_ASSERT(strstr(svg, ">cnn: front of 2</text>") != NULL);
    free(svg);

    /* Unknown and non-numeric columns are input errors. */
    opt.x_column = "no_such_column";
    CU_ASSERT(render(s, &opt, &err) == NULL && err.code == APX_EINPUT);
    CU_ASSERT(strstr(err.msg, "no_such_column") != NULL);
    opt.x_column = "label";
    err = (apx_error){0};
    CU_ASSERT(render(s, &opt, &err) == NULL && err.code == APX_EINPUT);
    CU_ASSERT(strstr(err.msg, "not numeric") != NULL);
    store_close(s);
}

/* The shipped quickstart results, when a sweep has made them. */
static void test_quickstart_db(void) {
    const char *db = APXSIM_SOURCE_ROOT "/results/quickstart.db";
    if (access(db, R_OK) != 0) {
        fprintf(stderr, "(no results/quickstart.db: skipped) ");
        return;
    }
    store *s = NULL;
    apx_error err = {0};
    CU_ASSERT_FATAL(store_open_readonly(db, &s, &err) == APX_OK);
    const char *svg_path = test_path("quickstart.svg");
    plot_options opt = {.figure = PLOT_PARETO, .x_column = "energy_pj", .y_column = "accuracy"};
    CU_ASSERT(plot_write(s, &opt, svg_path, &err) == APX_OK);
    char *svg = slurp(svg_path);
    CU_ASSERT(svg && xml_balanced(svg) && strstr(svg, ">energy_pj (µJ per inference)</text>"));
    CU_ASSERT(xmllint_ok(svg_path));
    free(svg);
    store_close(s);
}

void add_plot_suite(void) {
    TEST_SUITE("plot", {"accuracy figure", test_accuracy_figure},
               {"linear x axis", test_linear_axis}, {"log axis choice", test_log_axis_choice},
               {"nice tick steps", test_nice_steps}, {"text is escaped", test_escaping},
               {"empty database", test_empty_database}, {"pareto figure", test_pareto},
               {"quickstart database", test_quickstart_db});
}
