/* rram.c - the RRAM device (rram.h states the model, docs/rram-model.md
 * derives it and cites the parameters).
 *
 * faults() walks the aligned blocks of RRAM_BLOCK_BITS address bits that the
 * region's rows touch. In each block, for each mechanism with a non-zero
 * rate, nested_draw lists the cells whose fixed u is below the mechanism's
 * rate (for stuck-at cells: below the block-independent bound sa * w_max,
 * then kept iff u < sa * w(cell), thinning). A cell's fate depends on its
 * address, the chip and the op alone, never on the region or the order of
 * calls (rule 1); every rate grows with every harsher knob (rule 2); the
 * work is the listed cells plus a constant per block (rule 3). */
#include "rram.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sim/rng.h"
#include "../nested.h"

#define BLOCK_BYTES (RRAM_BLOCK_BITS / 8)
#define MAX_ENERGY_PJ 1e6
#define MAX_PULSE_NS 1e9
#define MAX_TIME_S 1e12         /* ~30,000 years */
#define MAX_CYCLES 1e15
#define MAX_READS 1e18
#define MAX_V 100.0

extern const device_ops rram_device_ops;

/* ---- parameters ----------------------------------------------------------- */

/* One numeric key: its section, name, field, range and default (NAN: no
 * default, it must be given in the node or its base). */
typedef struct param_spec {
    const char *section, *key;
    size_t offset;
    double lo, hi, dflt;
    int integer;
} param_spec;

#define P(s, k, field, lo, hi, dflt) {s, k, offsetof(rram_params, field), lo, hi, dflt, 0}

static const param_spec specs[] = {
    P("program", "v_prog", v_prog, 1e-3, MAX_V, NAN),
    P("program", "pulse_ns", pulse_ns, 1e-6, MAX_PULSE_NS, NAN),
    P("program", "pulse_min_ns", pulse_min_ns, 1e-6, MAX_PULSE_NS, NAN),
    P("states", "i_ref_ua", i_ref_ua, 1e-6, 1e6, NAN),
    P("states", "r_lrs_ohm", r_lrs_ohm, 1e-3, 1e15, NAN),
    P("states", "r_hrs_ohm", r_hrs_ohm, 1e-3, 1e15, NAN),
    P("states", "sigma_lrs", sigma_lrs, 1e-6, 100, NAN),
    P("states", "sigma_hrs", sigma_hrs, 1e-6, 100, NAN),
    P("states", "lrs_current_exponent", lrs_current_exponent, 0, 10, NAN),
    P("states", "hrs_current_exponent", hrs_current_exponent, 0, 10, NAN),
    P("states", "sigma_current_exponent", sigma_current_exponent, 0, 10, NAN),
    P("endurance", "lrs_per_decade", lrs_per_decade, 0, 100, 0),
    P("endurance", "hrs_per_decade", hrs_per_decade, 0, 100, 0),
    P("endurance", "sigma_per_decade", sigma_per_decade, 0, 100, 0),
    P("drift", "t0_s", t0_s, 1e-12, MAX_TIME_S, 1),
    P("drift", "lrs_per_efold", lrs_per_efold, 0, 100, 0),
    P("drift", "hrs_per_efold", hrs_per_efold, 0, 100, 0),
    P("drift", "sigma_lrs_per_efold", sigma_lrs_per_efold, 0, 100, 0),
    P("drift", "sigma_hrs_per_efold", sigma_hrs_per_efold, 0, 100, 0),
    P("read", "v_read", v_read, 1e-3, MAX_V, NAN),
    P("read", "energy_pj", read_energy_pj, 0, 1e6, NAN),
    P("read", "latency_ns", read_latency_ns, 1e-6, 1e9, NAN),
    {"read", "parallel_subarrays", offsetof(rram_params, parallel_subarrays), 1, 1 << 30, 1, 1},
    P("read", "disturb_per_read", disturb_per_read, 0, 1, 0),
    P("read", "disturb_v_slope", disturb_v_slope, 1e-6, MAX_V, 0.1),
    P("stuck", "sa0", sa0, 0, 1, 0),
    P("stuck", "sa1", sa1, 0, 1, 0),
    P("stuck", "bitline_fraction", bitline_fraction, 0, 1, 0),
    P("stuck", "bitline_factor", bitline_factor, 1, 1e6, 1),
    P("stuck", "wordline_fraction", wordline_fraction, 0, 1, 0),
    P("stuck", "wordline_factor", wordline_factor, 1, 1e6, 1),
};
#undef P

#define N_SPECS (sizeof specs / sizeof specs[0])

static const char *const sections[] = {"program", "states", "endurance", "drift", "read", "stuck",
                                       NULL};
static const char *const top_keys[] = {"kind",  "name",      "cell",  "base", "program",
                                       "states", "endurance", "drift", "read", "stuck",
                                       "conditions", NULL};
static const char *const cell_names[] = {"1t1r", "2t2r", NULL};

static double *field(rram_params *p, const param_spec *s) {
    return (double *)((char *)p + s->offset);
}

static void params_init(rram_params *p) {
    memset(p, 0, sizeof *p);
    p->cell = (rram_cell)-1;
    for (size_t i = 0; i < N_SPECS; i++) *field(p, &specs[i]) = specs[i].dflt;
}

/* Reads one section's keys over the values p already holds. */
static int read_section(const cfg_node *node, const char *section, rram_params *p,
                        apx_error *err) {
    const cfg_node *sec = cfg_find(node, section);
    if (!sec) return APX_OK;
    const char *keys[N_SPECS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_SPECS; i++)
        if (!strcmp(specs[i].section, section)) keys[n++] = specs[i].key;
    keys[n] = NULL;
    if (cfg_expect_map(sec, section, keys, err)) return err->code;
    for (size_t i = 0; i < N_SPECS; i++) {
        const param_spec *s = &specs[i];
        if (strcmp(s->section, section)) continue;
        double *v = field(p, s);
        if (s->integer) {
            long long x;
            if (cfg_get_int(sec, s->key, 0, (long long)*v, (long long)s->lo, (long long)s->hi, &x,
                            err))
                return err->code;
            *v = (double)x;
        } else if (cfg_get_double(sec, s->key, 0, *v, s->lo, s->hi, v, err)) {
            return err->code;
        }
    }
    return APX_OK;
}

/* conditions: {name: energy_pj, ...}; replaces what p held. */
static int read_conditions(const cfg_node *node, rram_params *p, apx_error *err) {
    const cfg_node *c = cfg_find(node, "conditions");
    if (!c) return APX_OK;
    if (c->kind != CFG_MAP || c->n == 0)
        return cfg_fail(c, err, "conditions must be a mapping of names to energies per bit (pJ), "
                                "holding at least 'nominal'");
    if (c->n > RRAM_MAX_CONDITIONS)
        return cfg_fail(c, err, "more than %d conditions", RRAM_MAX_CONDITIONS);
    p->n_conditions = 1;  /* [0] is kept for nominal */
    int have_nominal = 0;
    for (size_t i = 0; i < c->n; i++) {
        const char *name = c->keys[i];
        cfg_node at = {.file = c->file, .line = c->key_line[i], .col = c->key_col[i]};
        if (strlen(name) == 0 || strlen(name) >= RRAM_NAME_LEN)
            return cfg_fail(&at, err, "a condition name must have 1 to %d characters",
                            RRAM_NAME_LEN - 1);
        double e;
        if (cfg_get_double(c, name, 1, 0, 1e-9, MAX_ENERGY_PJ, &e, err)) return err->code;
        size_t slot = strcmp(name, "nominal") ? p->n_conditions++ : 0;
        have_nominal |= slot == 0;
        snprintf(p->condition_name[slot], RRAM_NAME_LEN, "%s", name);
        p->condition_energy_pj[slot] = e;
    }
    if (!have_nominal)
        return cfg_fail(c, err, "conditions must name a 'nominal' condition (the default of "
                                "energy_pj)");
    return APX_OK;
}

/* One node's keys over p (the base first, then the sweep's node). */
static int read_node(const cfg_node *node, rram_params *p, apx_error *err) {
    if (cfg_find(node, "cell")) {
        int cell;
        if (cfg_get_enum(node, "cell", 1, 0, cell_names, &cell, err)) return err->code;
        p->cell = (rram_cell)cell;
    }
    for (const char *const *s = sections; *s; s++)
        if (read_section(node, *s, p, err)) return err->code;
    return read_conditions(node, p, err);
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* The base file's parameters (one level: a base has no base of its own). */
static int read_base(const cfg_node *node, rram_params *p, uint64_t *hash, apx_error *err) {
    const char *path;
    if (cfg_get_string(node, "base", 1, NULL, &path, err)) return err->code;
    cfg_doc *doc = cfg_load_file(path, err);
    if (!doc) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return cfg_fail(cfg_find(node, "base"), err, "base: %s", why);
    }
    const cfg_node *root = cfg_root(doc);
    const char *kind = NULL;
    int rc = cfg_expect_map(root, "device", top_keys, err);
    if (rc == APX_OK) rc = cfg_get_string(root, "kind", 1, NULL, &kind, err);
    if (rc == APX_OK && strcmp(kind, "rram"))
        rc = cfg_fail(cfg_find(root, "kind"), err, "a base of an rram device must be an rram "
                                                   "device file, not kind '%s'", kind);
    if (rc == APX_OK && cfg_find(root, "base"))
        rc = cfg_fail(cfg_find(root, "base"), err, "a base file cannot name a base of its own");
    if (rc == APX_OK) rc = read_node(root, p, err);
    if (rc == APX_OK) *hash = fnv1a(cfg_text(doc), cfg_text_len(doc));
    cfg_free(doc);
    return rc;
}

/* The stuck-at clustering: a cell's weight is the product of its lines'
 * factors (weak bitline: bitline_factor, else 1; likewise wordlines) over
 * their mean, stuck_norm, so that the mean rate is sa0 + sa1. */
static double stuck_norm(const rram_params *p) {
    return (1 - p->bitline_fraction + p->bitline_fraction * p->bitline_factor) *
           (1 - p->wordline_fraction + p->wordline_fraction * p->wordline_factor);
}

/* The largest weight any cell can have. */
static double stuck_wmax(const rram_params *p) {
    return (p->bitline_fraction > 0 ? p->bitline_factor : 1.0) *
           (p->wordline_fraction > 0 ? p->wordline_factor : 1.0) / stuck_norm(p);
}

/* Cross-checks on the merged parameters; `at` is the node errors point to. */
static int check_params(const cfg_node *at, const rram_params *p, apx_error *err) {
    for (size_t i = 0; i < N_SPECS; i++)
        if (isnan(*field((rram_params *)p, &specs[i])))
            return cfg_fail(at, err, "missing %s.%s (give it here or in the base file)",
                            specs[i].section, specs[i].key);
    if ((int)p->cell < 0) return cfg_fail(at, err, "missing 'cell' (1t1r or 2t2r)");
    if (p->n_conditions == 0)
        return cfg_fail(at, err, "missing 'conditions' (named energies per bit, with 'nominal')");
    if (!(p->r_hrs_ohm > p->r_lrs_ohm))
        return cfg_fail(at, err, "states.r_hrs_ohm (%g) must be above states.r_lrs_ohm (%g)",
                        p->r_hrs_ohm, p->r_lrs_ohm);
    if (p->pulse_ns < p->pulse_min_ns)
        return cfg_fail(at, err, "program.pulse_ns (%g) is below program.pulse_min_ns (%g)",
                        p->pulse_ns, p->pulse_min_ns);
    if (p->sa0 + p->sa1 > 1)
        return cfg_fail(at, err, "stuck.sa0 + stuck.sa1 = %g is above 1", p->sa0 + p->sa1);
    double wmax = stuck_wmax(p);
    if ((p->sa0 + p->sa1) * wmax > 1)
        return cfg_fail(at, err, "stuck: on a weak bitline and wordline the stuck-at rate "
                                 "(sa0 + sa1) x %g = %g would exceed 1",
                        wmax, (p->sa0 + p->sa1) * wmax);
    for (size_t i = 0; i < p->n_conditions; i++) {
        rram_rates r;
        double op[RK_COUNT] = {p->condition_energy_pj[i], p->pulse_ns, 0, 0, 0, p->v_read};
        if (rram_rates_at(p, op, &r))
            return cfg_fail(at, err, "condition '%s' (%g pJ per bit, %g uA) is outside the model: "
                                     "the LRS and HRS states overlap at their medians",
                            p->condition_name[i], p->condition_energy_pj[i], r.current_ua);
    }
    return APX_OK;
}

int rram_params_from_yaml(const cfg_node *node, rram_params *p, uint64_t *base_hash,
                          apx_error *err) {
    params_init(p);
    *base_hash = 0;
    if (cfg_expect_map(node, "device", top_keys, err)) return err->code;
    const char *name;
    if (cfg_get_string(node, "name", 0, NULL, &name, err)) return err->code;
    if (cfg_find(node, "base") && read_base(node, p, base_hash, err)) return err->code;
    if (read_node(node, p, err)) return err->code;
    return check_params(node, p, err);
}

int rram_condition(const rram_params *p, const char *name) {
    for (size_t i = 0; i < p->n_conditions; i++)
        if (!strcmp(p->condition_name[i], name)) return (int)i;
    return -1;
}

/* ---- the cell model ---------------------------------------------------------- */

static double phi(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

unsigned rram_devices_per_bit(const rram_params *p) { return p->cell == RRAM_2T2R ? 2 : 1; }

double rram_current_ua(const rram_params *p, double energy_pj, double pulse_ns) {
    return 1000.0 * energy_pj / (rram_devices_per_bit(p) * p->v_prog * pulse_ns);
}

double rram_energy_pj(const rram_params *p, double current_ua, double pulse_ns) {
    return rram_devices_per_bit(p) * p->v_prog * current_ua * pulse_ns / 1000.0;
}

void rram_states_at(const rram_params *p, double current_ua, double time_s, double cycles,
                    rram_states *s) {
    double x = log(current_ua / p->i_ref_ua), c = log10(1.0 + cycles);
    double spread = exp(-p->sigma_current_exponent * x) * (1.0 + p->sigma_per_decade * c);
    s->mu_lrs = log(p->r_lrs_ohm) - p->lrs_current_exponent * x + p->lrs_per_decade * c;
    s->mu_hrs = log(p->r_hrs_ohm) + p->hrs_current_exponent * x - p->hrs_per_decade * c;
    double sl = p->sigma_lrs * spread, sh = p->sigma_hrs * spread;
    /* The 1T1R reference: equal error in both directions, as programmed. */
    s->ln_ref = (sh * s->mu_lrs + sl * s->mu_hrs) / (sl + sh);
    double d = log1p(time_s / p->t0_s);
    s->mu_lrs += p->lrs_per_efold * d;
    s->mu_hrs -= p->hrs_per_efold * d;
    s->sigma_lrs = hypot(sl, p->sigma_lrs_per_efold * d);
    s->sigma_hrs = hypot(sh, p->sigma_hrs_per_efold * d);
}

/* 1 - (1 - p)^n without cancellation. */
static double after_reads(double p, double n) {
    if (!(p > 0) || !(n > 0)) return 0.0;
    if (p >= 1) return 1.0;
    return -expm1(n * log1p(-p));
}

int rram_rates_at_current(const rram_params *p, double current_ua, double time_s,
                          double cycles, double reads, double v_read, rram_rates *r) {
    rram_states s;
    rram_states_at(p, current_ua, time_s, cycles, &s);
    memset(r, 0, sizeof *r);
    r->current_ua = current_ua;
    double gap10, gap01, width10, width01;
    if (p->cell == RRAM_2T2R) {
        gap10 = gap01 = s.mu_hrs - s.mu_lrs;
        width10 = width01 = hypot(s.sigma_lrs, s.sigma_hrs);
    } else {
        gap10 = s.ln_ref - s.mu_lrs;
        gap01 = s.mu_hrs - s.ln_ref;
        width10 = s.sigma_lrs;
        width01 = s.sigma_hrs;
    }
    r->margin10 = gap10 / width10;
    r->margin01 = gap01 / width01;
    r->p10 = phi(-r->margin10);
    r->p01 = phi(-r->margin01);
    double per_read = p->disturb_per_read * exp((v_read - p->v_read) / p->disturb_v_slope);
    double disturbed = after_reads(per_read > 1 ? 1 : per_read, reads);
    r->disturb01 = disturbed;
    r->disturb10 = p->cell == RRAM_2T2R ? disturbed : 0.0;
    /* A stored 1 reads 0 if stuck at 0, or (not stuck) sensed or disturbed
     * wrong; likewise a stored 0. */
    double live = 1.0 - p->sa0 - p->sa1;
    r->ber10 = p->sa0 + live * (1.0 - (1.0 - r->p10) * (1.0 - r->disturb10));
    r->ber01 = p->sa1 + live * (1.0 - (1.0 - r->p01) * (1.0 - r->disturb01));
    r->ber = 0.5 * (r->ber10 + r->ber01);
    return gap10 > 0 && gap01 > 0 ? 0 : -1;
}

/* The mean conductance of a lognormal state: E[1/R] = exp(-mu + sigma^2 / 2). */
static double mean_conductance(double mu, double sigma) { return exp(-mu + 0.5 * sigma * sigma); }

double rram_read_energy_pj(const rram_params *p, const double *op) {
    rram_states ref, at;
    rram_states_at(p, p->i_ref_ua, 0, 0, &ref);
    rram_states_at(p, rram_current_ua(p, op[RK_ENERGY], op[RK_PULSE]), op[RK_TIME],
                   op[RK_CYCLES], &at);
    double g = mean_conductance(at.mu_lrs, at.sigma_lrs) + mean_conductance(at.mu_hrs, at.sigma_hrs);
    double g_ref =
        mean_conductance(ref.mu_lrs, ref.sigma_lrs) + mean_conductance(ref.mu_hrs, ref.sigma_hrs);
    double v = op[RK_VREAD] / p->v_read;
    return p->read_energy_pj * v * v * g / g_ref;
}

int rram_rates_at(const rram_params *p, const double *op, rram_rates *out) {
    return rram_rates_at_current(p, rram_current_ua(p, op[RK_ENERGY], op[RK_PULSE]), op[RK_TIME],
                                 op[RK_CYCLES], op[RK_READS], op[RK_VREAD], out);
}

/* ---- the device ------------------------------------------------------------------ */

typedef struct rram_device {
    device base;
    rram_params p;
    uint64_t base_hash;
} rram_device;


static const char *const rram_knobs[] = {"energy_pj", "pulse_ns", "time_s", "cycles",
                                         "reads",     "v_read",   NULL};

static int rram_create(const cfg_node *node, device **out, apx_error *err) {
    rram_device *d = calloc(1, sizeof *d);
    if (!d) return apx_fail(err, APX_EWORK, "out of memory");
    if (rram_params_from_yaml(node, &d->p, &d->base_hash, err)) {
        free(d);
        return err->code;
    }
    d->base.ops = &rram_device_ops;
    *out = &d->base;
    return APX_OK;
}

static void rram_destroy(device *d) { free(d); }

static uint64_t rram_content_hash(const device *d) {
    return ((const rram_device *)d)->base_hash;
}

static int rram_knob_default(const device *dv, int knob, double *value) {
    const rram_params *p = &((const rram_device *)dv)->p;
    switch (knob) {
    case RK_ENERGY: *value = p->condition_energy_pj[0]; return 1;
    case RK_PULSE: *value = p->pulse_ns; return 1;
    case RK_TIME:
    case RK_CYCLES:
    case RK_READS: *value = 0; return 1;
    case RK_VREAD: *value = p->v_read; return 1;
    default: return 0;
    }
}

/* An error about an operating point, positioned at `at` when there is one. */
__attribute__((format(printf, 3, 4))) static int point_fail(const cfg_node *at, apx_error *err,
                                                            const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return at ? cfg_fail(at, err, "%s", msg) : apx_fail(err, APX_EINPUT, "%s", msg);
}

static int rram_check_point(const device *dv, const double *op, const cfg_node *at,
                            apx_error *err) {
    const rram_params *p = &((const rram_device *)dv)->p;
    static const struct { double lo, hi; int lo_open; } range[RK_COUNT] = {
        [RK_ENERGY] = {0, MAX_ENERGY_PJ, 1}, [RK_PULSE] = {0, MAX_PULSE_NS, 1},
        [RK_TIME] = {0, MAX_TIME_S, 0},       [RK_CYCLES] = {0, MAX_CYCLES, 0},
        [RK_READS] = {0, MAX_READS, 0},       [RK_VREAD] = {0, MAX_V, 1},
    };
    for (int k = 0; k < RK_COUNT; k++) {
        double v = op[k];
        if (!(v >= range[k].lo && v <= range[k].hi) || (range[k].lo_open && v == range[k].lo))
            return point_fail(at, err, "rram: %s = %g is outside %s%g, %g]", rram_knobs[k], v,
                              range[k].lo_open ? "(" : "[", range[k].lo, range[k].hi);
    }
    if (op[RK_PULSE] < p->pulse_min_ns)
        return point_fail(at, err,
                          "rram: pulse_ns = %g is shorter than the switching time "
                          "program.pulse_min_ns = %g",
                          op[RK_PULSE], p->pulse_min_ns);
    rram_rates r;
    if (rram_rates_at(p, op, &r))
        return point_fail(at, err,
                          "rram: at energy_pj = %g (%g uA), time_s = %g, cycles = %g the %s "
                          "read margin is not positive (the states overlap at their medians): "
                          "outside the model; use more energy, less time or fewer cycles",
                          op[RK_ENERGY], r.current_ua, op[RK_TIME], op[RK_CYCLES],
                          p->cell == RRAM_2T2R ? "2T2R" : "1T1R");
    return APX_OK;
}

/* ---- placement: a region's used bits as addresses ---------------------------------- */

typedef struct placement {
    const geometry *geo;
    uint64_t base, rows, cols, stride, row_bytes;
} placement;

static int placement_of(const device_region *r, placement *pl, apx_error *err) {
    if (!r->geo) return apx_fail(err, APX_EINPUT, "rram: region %u has no geometry", r->id);
    uint64_t row_bytes = (r->cols + 7) / 8;
    *pl = (placement){r->geo, r->base_addr, r->rows, r->cols,
                      r->rows > 1 ? r->row_stride : row_bytes, row_bytes};
    if (r->rows > 1 && r->row_stride < row_bytes)
        return apx_fail(err, APX_EINPUT, "rram: region %u: row stride %llu is below the %llu "
                                         "bytes of a row",
                        r->id, (unsigned long long)r->row_stride, (unsigned long long)row_bytes);
    uint64_t last, end;
    if (__builtin_mul_overflow(r->rows - 1, pl->stride, &last) ||
        __builtin_add_overflow(last, row_bytes, &end) ||
        __builtin_add_overflow(end, r->base_addr, &end) || end > geometry_bytes(r->geo))
        return apx_fail(err, APX_EINPUT,
                        "rram: region %u (%llu x %llu bits at byte %llu) does not fit in the "
                        "memory of %llu bytes",
                        r->id, (unsigned long long)r->rows, (unsigned long long)r->cols,
                        (unsigned long long)r->base_addr,
                        (unsigned long long)geometry_bytes(r->geo));
    return APX_OK;
}

/* The region's logical bit at (byte, bit), or UINT64_MAX for a bit it does
 * not use (another tensor, padding). */
static uint64_t logical_bit(const placement *pl, uint64_t byte, unsigned bit) {
    if (byte < pl->base) return UINT64_MAX;
    uint64_t off = byte - pl->base, row = off / pl->stride;
    uint64_t col = (off - row * pl->stride) * 8 + bit;
    return row < pl->rows && col < pl->cols ? row * pl->cols + col : UINT64_MAX;
}

/* ---- faults ---------------------------------------------------------------------- */

/* Mechanisms with their own critical values. A cell holds one value per
 * programming, so only one direction of a mechanism is ever exercised: one
 * u serves both (the cell fails a stored 1 iff u < rate10, a stored 0 iff
 * u < rate01), which keeps the map as small as the errors it can cause. */
enum { MECH_SENSE, MECH_DISTURB, MECH_STUCK, MECH_COUNT };

/* Key purposes (stream_a of rng_key_make); changing one changes every map. */
enum {
    PURPOSE_MECH = 0x72724d30u,      /* + mechanism: nested-draw blocks */
    PURPOSE_BITLINE = 0x7272426cu,   /* weak bitlines of a subarray */
    PURPOSE_WORDLINE = 0x7272576cu,  /* weak wordlines of a subarray */
};

/* What a listed cell does wrong. */
enum { FAILS_1 = 1, FAILS_0 = 2, STUCK_0 = 4, STUCK_1 = 8 };

static uint64_t key_bits(rng_key k) { return (uint64_t)k.k[1] << 32 | k.k[0]; }

/* A key for (seed, chip, purpose, 64-bit index). */
static rng_key key_for(uint64_t seed, uint32_t chip, uint32_t purpose, uint64_t index) {
    uint64_t s = key_bits(rng_key_make(seed, purpose, (uint32_t)(index >> 32)));
    return rng_key_make(s, chip, (uint32_t)index);
}

/* A uniform in [0, 1) for a 64-bit id under a key. */
static double hash_unit(rng_key key, uint64_t id) {
    rng_ctr c = {{(uint32_t)id, (uint32_t)(id >> 32), 1, 0}};
    rng_ctr r = philox4x32(c, key);
    return (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
}

typedef struct fault_job {
    const rram_params *p;
    const placement *pl;
    uint64_t seed;
    uint32_t chip;
    double rate10[MECH_COUNT], rate01[MECH_COUNT];  /* sensing and disturb */
    double q[MECH_COUNT];       /* listing rate per mechanism */
    double stuck_norm;          /* mean of the unnormalised clustering weight */
    nested_list list;
    struct hit { uint64_t bit; uint8_t flags; } *hits;
    size_t n_hits, cap_hits;
} fault_job;

/* The stuck-at clustering weight of a cell (mean 1 over the memory). */
static double stuck_weight(const fault_job *j, uint64_t byte, unsigned bit) {
    const rram_params *p = j->p;
    const geometry *g = j->pl->geo;
    cell c;
    apx_error ignored;
    geometry_addr_to_cell(g, byte, bit, &c, &ignored);  /* inside: placement_of checked */
    uint64_t sub = (((uint64_t)c.f[GEO_CH] * g->count[GEO_RA] + c.f[GEO_RA]) * g->count[GEO_BG] +
                    c.f[GEO_BG]) * g->count[GEO_BA] + c.f[GEO_BA];
    double w = 1.0;
    if (p->bitline_fraction > 0 &&
        hash_unit(key_for(j->seed, j->chip, PURPOSE_BITLINE, sub),
                  (uint64_t)c.f[GEO_CO] * g->bus_bits + c.bit) < p->bitline_fraction)
        w *= p->bitline_factor;
    if (p->wordline_fraction > 0 &&
        hash_unit(key_for(j->seed, j->chip, PURPOSE_WORDLINE, sub), c.f[GEO_RO]) <
            p->wordline_fraction)
        w *= p->wordline_factor;
    return w / j->stuck_norm;
}

static int push_hit(fault_job *j, uint64_t bit, uint8_t flags) {
    if (j->n_hits == j->cap_hits) {
        size_t cap = j->cap_hits ? 2 * j->cap_hits : 1024;
        void *v = realloc(j->hits, cap * sizeof *j->hits);
        if (!v) return -1;
        j->hits = v;
        j->cap_hits = cap;
    }
    j->hits[j->n_hits].bit = bit;
    j->hits[j->n_hits].flags = flags;
    j->n_hits++;
    return 0;
}

/* Lists the failing cells of one address block that the region uses. */
static int draw_block(fault_job *j, uint64_t block) {
    const rram_params *p = j->p;
    for (int m = 0; m < MECH_COUNT; m++) {
        if (!(j->q[m] > 0)) continue;
        if (nested_draw(key_for(j->seed, j->chip, PURPOSE_MECH + (uint32_t)m, block),
                        RRAM_BLOCK_BITS, j->q[m], &j->list))
            return -1;
        for (size_t i = 0; i < j->list.n; i++) {
            uint64_t a = block * RRAM_BLOCK_BITS + j->list.v[i].pos;
            uint64_t bit = logical_bit(j->pl, a >> 3, (unsigned)(a & 7));
            if (bit == UINT64_MAX) continue;
            double u = j->list.v[i].u;
            uint8_t flags;
            if (m == MECH_STUCK) {
                double w = stuck_weight(j, a >> 3, (unsigned)(a & 7));
                if (u >= (p->sa0 + p->sa1) * w) continue;  /* thinning */
                flags = u < p->sa0 * w ? STUCK_0 : STUCK_1;
            } else {
                flags = (uint8_t)((u < j->rate10[m] ? FAILS_1 : 0) |
                                  (u < j->rate01[m] ? FAILS_0 : 0));
            }
            if (push_hit(j, bit, flags)) return -1;
        }
    }
    return 0;
}

static int by_bit(const void *a, const void *b) {
    uint64_t x = ((const struct hit *)a)->bit, y = ((const struct hit *)b)->bit;
    return (x > y) - (x < y);
}

static uint8_t kind_of(uint8_t flags) {
    if (flags & STUCK_0) return FAULT_STUCK0;
    if (flags & STUCK_1) return FAULT_STUCK1;
    if ((flags & (FAILS_0 | FAILS_1)) == (FAILS_0 | FAILS_1)) return FAULT_FLIP;
    return flags & FAILS_1 ? FAULT_DD1 : FAULT_DD0;
}

/* The hits, sorted and merged per bit, into out. */
static int emit(fault_job *j, fmap *out, apx_error *err) {
    if (j->n_hits > 1) qsort(j->hits, j->n_hits, sizeof *j->hits, by_bit);
    for (size_t i = 0; i < j->n_hits;) {
        uint64_t bit = j->hits[i].bit;
        uint8_t flags = 0;
        for (; i < j->n_hits && j->hits[i].bit == bit; i++) flags |= j->hits[i].flags;
        if (fmap_push(out, bit, kind_of(flags), err)) return err->code;
    }
    return APX_OK;
}

static int rram_faults(const device *dv, const double *op, uint64_t seed, uint32_t chip,
                       const device_region *region, fmap *out, apx_error *err) {
    const rram_params *p = &((const rram_device *)dv)->p;
    fmap_reset(out, device_region_bits(region));
    if (device_region_bits(region) == 0) return APX_OK;
    placement pl;
    if (placement_of(region, &pl, err)) return err->code;
    rram_rates r;
    if (rram_rates_at(p, op, &r))
        return apx_fail(err, APX_EINPUT, "rram: the operating point is outside the model (a "
                                         "read margin is not positive)");
    fault_job j = {.p = p, .pl = &pl, .seed = seed, .chip = chip};
    j.rate10[MECH_SENSE] = r.p10;
    j.rate01[MECH_SENSE] = r.p01;
    j.rate10[MECH_DISTURB] = r.disturb10;
    j.rate01[MECH_DISTURB] = r.disturb01;
    for (int m = MECH_SENSE; m <= MECH_DISTURB; m++)
        j.q[m] = j.rate10[m] > j.rate01[m] ? j.rate10[m] : j.rate01[m];
    j.stuck_norm = stuck_norm(p);
    j.q[MECH_STUCK] = (p->sa0 + p->sa1) * stuck_wmax(p);  /* then thinned per cell */
    int rc = APX_OK;
    uint64_t next = 0;  /* the first block not yet drawn */
    for (uint64_t row = 0; row < pl.rows && rc == APX_OK; row++) {
        uint64_t lo = pl.base + row * pl.stride, hi = lo + pl.row_bytes;
        uint64_t b = lo / BLOCK_BYTES > next ? lo / BLOCK_BYTES : next;
        for (; b <= (hi - 1) / BLOCK_BYTES && rc == APX_OK; b++)
            if (draw_block(&j, b))
                rc = apx_fail(err, APX_EWORK, "rram: out of memory drawing faults");
        next = b > next ? b : next;
    }
    if (rc == APX_OK) rc = emit(&j, out, err);
    nested_list_free(&j.list);
    free(j.hits);
    return rc;
}

/* ---- cost ------------------------------------------------------------------------- */

/* Bus words read by the stream (device.h: every row's row_stride bytes, rows
 * and regions in order; a word shared by consecutive rows is read once). */
static int count_accesses(const device_region *regions, size_t n, uint64_t *accesses,
                          uint64_t *bits, apx_error *err) {
    uint64_t last = UINT64_MAX;
    *accesses = *bits = 0;
    for (size_t i = 0; i < n; i++) {
        placement pl;
        if (device_region_bits(&regions[i]) == 0) continue;
        if (placement_of(&regions[i], &pl, err)) return err->code;
        uint64_t word = pl.geo->bus_bits / 8, last_end;
        uint64_t span = regions[i].row_stride > pl.row_bytes ? regions[i].row_stride
                                                              : pl.row_bytes;
        if (__builtin_add_overflow(pl.base + (pl.rows - 1) * pl.stride, span, &last_end))
            return apx_fail(err, APX_EINPUT, "rram: region %u: a row stride of %llu bytes runs "
                                             "past the address space",
                            regions[i].id, (unsigned long long)regions[i].row_stride);
        for (uint64_t row = 0; row < pl.rows; row++) {
            uint64_t first = (pl.base + row * pl.stride) / word;
            uint64_t end = (pl.base + row * pl.stride + span - 1) / word;
            uint64_t words = end - first + 1 - (first == last);
            *accesses += words;
            *bits += words * pl.geo->bus_bits;
            last = end;
        }
    }
    return APX_OK;
}

static int rram_cost(const device *dv, const double *op, const device_region *regions, size_t n,
                     uint32_t batch, device_cost *out, apx_error *err) {
    const rram_params *p = &((const rram_device *)dv)->p;
    memset(out, 0, sizeof *out);
    double weights = 0;  /* the bits programmed: the regions' used bits */
    for (size_t i = 0; i < n; i++) weights += (double)device_region_bits(&regions[i]);
    uint64_t accesses, bits;
    if (count_accesses(regions, n, &accesses, &bits, err)) return err->code;
    rram_rates r;
    rram_rates_at(p, op, &r);  /* outside the model: check_point refused it already */
    double read_pj_per_bit = rram_devices_per_bit(p) * rram_read_energy_pj(p, op);
    double b = batch ? batch : 1;
    out->energy_pj = (double)bits * read_pj_per_bit / b;
    out->latency_ns = (double)accesses * p->read_latency_ns / p->parallel_subarrays / b;
    device_cost_add(out, "accesses", (double)accesses / b);
    device_cost_add(out, "bits_read", (double)bits / b);
    device_cost_add(out, "read_energy_pj_per_bit", read_pj_per_bit);
    device_cost_add(out, "program_energy_pj_per_bit", op[RK_ENERGY]);
    device_cost_add(out, "program_energy_pj_once", weights * op[RK_ENERGY]);
    device_cost_add(out, "program_current_ua", r.current_ua);
    device_cost_add(out, "ber", r.ber);
    device_cost_add(out, "ber_1to0", r.ber10);
    device_cost_add(out, "ber_0to1", r.ber01);
    return APX_OK;
}

const device_ops rram_device_ops = {
    .version = DEVICE_OPS_VERSION,
    .kind = "rram",
    .summary = "RRAM array, 1T1R or 2T2R (knobs: energy_pj, pulse_ns, time_s, cycles, reads, "
               "v_read)",
    .knobs = rram_knobs,
    .create = rram_create,
    .destroy = rram_destroy,
    .check_point = rram_check_point,
    .faults = rram_faults,
    .content_hash = rram_content_hash,
    .knob_default = rram_knob_default,
    .cost = rram_cost,
};
