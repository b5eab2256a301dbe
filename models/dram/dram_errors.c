/* dram_errors.c - the DRAM error model (see dram_errors.h for the
 * mathematics, docs/dram-errors.md for the keys and the algorithm).
 *
 * One call walks the aligned blocks of DRAM_BLOCK_BITS address bits that the
 * region's rows touch. In each block and for each mechanism with a non-zero
 * rate it bounds the rate over the block (the largest spatial weight of the
 * block's rows and columns times the largest rate of its banks), lists the
 * cells below that bound with nested_draw, and keeps a cell iff its own u is
 * below its own rate (thinning). The block bound only decides how many
 * candidates are listed, never which cells fail: a cell fails iff
 * u < w(cell) G(op, bank), which depends on its address and the op alone, so
 * harsher points give supersets (rule 2) whatever the regions are, and the
 * work is the candidates, a small multiple of the faults (rule 3). */
#include "dram_errors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sim/rng.h"
#include "../nested.h"

#define BLOCK_BYTES (DRAM_BLOCK_BITS / 8)
#define BLOCK_SHIFT __builtin_ctz(BLOCK_BYTES) /* log2(BLOCK_BYTES) */
_Static_assert((BLOCK_BYTES & (BLOCK_BYTES - 1)) == 0, "blocks are a power of two in size");
#define LINE_COLUMNS 8                  /* a 64-byte line of a 64-bit bus word */
#define LINE_BITS 64
#define MAX_SUBARRAY_ROWS (1u << 16)
#define MAX_COLUMN_PERIOD (1u << 20)
#define MAX_LATENCY_NS 1e6
#define MAX_TREFW_MS 1e7
#define MAX_TIME_S 1e12

/* Mechanisms with their own critical values. */
enum { MECH_ACT, MECH_PRE, MECH_RET, MECH_VRT, MECH_COUNT };

/* Key purposes: the stream_a of rng_key_make for each use (any distinct
 * constants; changing one changes every map). */
enum {
    PURPOSE_MECH = 0x6d656368u,   /* + mechanism: nested-draw blocks */
    PURPOSE_Z = 0x7a7a7a7au,      /* chip and bank z */
    PURPOSE_BITLINE = 0x62697431u,
    PURPOSE_WORDLINE = 0x776f7231u,
    PURPOSE_VRT = 0x76727431u,    /* + the time window */
    PURPOSE_READ = 0x72656164u,   /* + the read (time_s) */
};

/* Counter domains of the Philox hashes. */
enum { DOMAIN_CHIP_Z = 1, DOMAIN_BANK_Z = 2, DOMAIN_LINE = 3, DOMAIN_STATE = 4 };

/* ---- keys and hashes ------------------------------------------------------- */

static uint64_t key_bits(rng_key k) { return (uint64_t)k.k[1] << 32 | k.k[0]; }

/* A key for (seed, chip, purpose, 64-bit index). */
static rng_key key_for(uint64_t seed, uint32_t chip, uint32_t purpose, uint64_t index) {
    uint64_t s = key_bits(rng_key_make(seed, purpose, (uint32_t)(index >> 32)));
    return rng_key_make(s, chip, (uint32_t)index);
}

/* A uniform in [0, 1) for a 64-bit id under a key (53 bits). */
static double hash_unit(rng_key key, uint64_t id, uint32_t domain) {
    rng_ctr c = {{(uint32_t)id, (uint32_t)(id >> 32), domain, 0}};
    rng_ctr r = philox4x32(c, key);
    return (double)(((uint64_t)r.c[0] << 21) ^ r.c[1]) * 0x1.0p-53;
}

static double normal_at(rng_key key, uint32_t domain, uint64_t index) {
    rng_stream s;
    rng_stream_at(&s, key, domain, index);
    return rng_normal(&s);
}

double dram_errors_chip_z(uint64_t seed, uint32_t chip) {
    return normal_at(key_for(seed, chip, PURPOSE_Z, 0), DOMAIN_CHIP_Z, 0);
}

/* ---- rates ----------------------------------------------------------------- */

static double phi(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }

/* P(t_crit > t) of the bulk + weak mixture. */
static double survival(const dram_latency_dist *d, double t) {
    double s = (1.0 - d->weak_fraction) * phi((d->bulk_mu - t) / d->bulk_sigma);
    if (d->weak_fraction > 0) s += d->weak_fraction * phi((d->weak_mu - t) / d->weak_sigma);
    return s;
}

/* s(V): how much slower sensing is at vdd than at nominal. */
static double slowdown(const dram_latency_dist *d, double vdd_nominal, double vdd) {
    if (d->alpha == 0) return 1.0;
    return pow((vdd_nominal - d->v_threshold) / (vdd - d->v_threshold), d->alpha);
}

/* G of a latency mechanism at configured latency t, slowdown s and chip x
 * bank factor c (the header's formula 1). */
static double latency_rate(const dram_latency_dist *d, double t, double s, double c) {
    if (!d->enabled) return 0.0;
    double t_eff = t / (s * c), guard = d->guard / c;
    if (!(t_eff < guard)) return 0.0;
    double g = survival(d, t_eff) - survival(d, guard);
    return g > 0 ? g : 0.0;
}

/* G_r / c_bank: the retention rate of a bank with factor 1. */
static double retention_rate(const dram_error_params *p, double trefw, double temp) {
    if (!(p->ret_ber_ref > 0)) return 0.0;
    double t = trefw * exp(log(p->ret_k10) * (temp - p->ret_temp_ref) / 10.0);
    if (!(t > p->ret_t_min_ms)) return 0.0;
    return p->ret_ber_ref * pow(t / p->ret_t_ref_ms, p->ret_beta);
}

/* What an op means for one chip, before banks and cells. */
typedef struct op_rates {
    double c_chip;
    double s_act, s_pre;    /* slowdowns at the op's vdd */
    double g_ret;           /* retention rate for c_bank = 1 */
    double vrt_low;         /* ratio^beta */
    int vrt_on, transient_on;
} op_rates;

static void op_rates_init(const dram_error_params *p, const double *op, double z, op_rates *o) {
    o->c_chip = exp(p->sigma_chip * z);
    o->s_act = p->act.enabled ? slowdown(&p->act, p->vdd_nominal, op[DK_VDD]) : 1.0;
    o->s_pre = p->pre.enabled ? slowdown(&p->pre, p->vdd_nominal, op[DK_VDD]) : 1.0;
    o->g_ret = retention_rate(p, op[DK_TREFW], op[DK_TEMP]);
    o->vrt_low = pow(p->vrt_ratio, p->ret_beta);
    o->vrt_on = p->vrt_fraction > 0 && o->g_ret > 0;
    o->transient_on = p->transient_band > 1 && p->transient_p_read > 0;
}

/* The rates of one bank: activation, precharge, retention (with c_bank). */
typedef struct bank_rates {
    double g[3];
} bank_rates;

static void bank_rates_of(const dram_error_params *p, const double *op, const op_rates *o,
                          double c_bank, bank_rates *b) {
    double c = o->c_chip * c_bank;
    b->g[MECH_ACT] = latency_rate(&p->act, op[DK_TRCD], o->s_act, c);
    b->g[MECH_PRE] = latency_rate(&p->pre, op[DK_TRP], o->s_pre, c);
    b->g[MECH_RET] = o->g_ret * c_bank;
}

/* ---- spatial weights ------------------------------------------------------- */

typedef struct spatial {
    uint32_t period, phase;
    double col_hi, col_lo;         /* normalised: mean 1 over a period */
    uint32_t rows, edge;           /* subarray rows, edge rows */
    double ramp, boost, row_norm;  /* row factor = (1 + ramp r/rows)(edge? boost) row_norm */
    double bl_fraction, bl_weak, bl_strong;  /* normalised factors */
    double wl_fraction, wl_weak, wl_strong;
} spatial;

static void spatial_init(const dram_error_params *p, spatial *s) {
    s->period = p->column_period;
    s->phase = p->column_phase;
    s->col_hi = 2.0 * p->column_contrast / (p->column_contrast + 1.0);
    s->col_lo = 2.0 / (p->column_contrast + 1.0);
    s->rows = p->subarray_rows;
    s->edge = p->edge_rows;
    s->ramp = p->row_ramp;
    s->boost = p->edge_boost;
    double S = s->rows, E = s->edge;
    double sum = S + s->ramp * (S - 1) / 2 + (s->boost - 1) * (E + s->ramp * E * (E - 1) / (2 * S));
    s->row_norm = S / sum;
    double m = 1 + p->weak_bitline_fraction * (p->weak_bitline_factor - 1);
    s->bl_fraction = p->weak_bitline_fraction;
    s->bl_weak = p->weak_bitline_factor / m;
    s->bl_strong = 1 / m;
    m = 1 + p->weak_wordline_fraction * (p->weak_wordline_factor - 1);
    s->wl_fraction = p->weak_wordline_fraction;
    s->wl_weak = p->weak_wordline_factor / m;
    s->wl_strong = 1 / m;
}

static int column_is_high(const spatial *s, uint64_t col) {
    return (col + s->phase) % s->period < s->period / 2;
}

static double column_factor(const spatial *s, uint64_t col) {
    return column_is_high(s, col) ? s->col_hi : s->col_lo;
}

static double row_factor(const spatial *s, uint64_t row) {
    uint32_t r = (uint32_t)(row % s->rows);
    double f = (1.0 + s->ramp * r / s->rows) * s->row_norm;
    return r < s->edge ? f * s->boost : f;
}

/* ---- parameters from YAML ---------------------------------------------------- */

/* A number in [lo, hi], or in (lo, hi] when lo_open. */
static int get_num(const cfg_node *map, const char *key, int required, double dflt, double lo,
                   double hi, int lo_open, double *out, apx_error *err) {
    if (cfg_get_double(map, key, required, dflt, lo, hi, out, err)) return err->code;
    if (lo_open && !(*out > lo) && cfg_find(map, key))
        return cfg_fail(cfg_find(map, key), err, "'%s' must be greater than %g, got %g", key, lo,
                        *out);
    return APX_OK;
}

static int get_u32(const cfg_node *map, const char *key, uint32_t dflt, uint32_t lo, uint32_t hi,
                   uint32_t *out, apx_error *err) {
    long long v;
    if (cfg_get_int(map, key, 0, dflt, lo, hi, &v, err)) return err->code;
    *out = (uint32_t)v;
    return APX_OK;
}

static int latency_from_yaml(const cfg_node *n, const char *what, double vdd_nominal,
                             dram_latency_dist *d, apx_error *err) {
    static const char *const keys[] = {"bulk_mu", "bulk_sigma", "weak_fraction", "weak_mu",
                                       "weak_sigma", "guard", "v_threshold", "alpha", NULL};
    memset(d, 0, sizeof *d);
    if (!n) return APX_OK;
    if (cfg_expect_map(n, what, keys, err) ||
        get_num(n, "bulk_mu", 1, 0, 0, MAX_LATENCY_NS, 1, &d->bulk_mu, err) ||
        get_num(n, "bulk_sigma", 1, 0, 0, MAX_LATENCY_NS, 1, &d->bulk_sigma, err) ||
        get_num(n, "weak_fraction", 0, 0, 0, 1, 0, &d->weak_fraction, err) ||
        get_num(n, "weak_mu", d->weak_fraction > 0, 0, 0, MAX_LATENCY_NS, 1, &d->weak_mu, err) ||
        get_num(n, "weak_sigma", d->weak_fraction > 0, 1, 0, MAX_LATENCY_NS, 1, &d->weak_sigma,
                err) ||
        get_num(n, "guard", 1, 0, 0, MAX_LATENCY_NS, 1, &d->guard, err) ||
        get_num(n, "v_threshold", 1, 0, 0, vdd_nominal, 0, &d->v_threshold, err) ||
        get_num(n, "alpha", 1, 0, 0, 100, 0, &d->alpha, err))
        return err->code;
    if (!(d->v_threshold < vdd_nominal))
        return cfg_fail(cfg_find(n, "v_threshold"), err,
                        "%s: v_threshold %g V must be below the nominal VDD %g V", what,
                        d->v_threshold, vdd_nominal);
    d->enabled = 1;
    return APX_OK;
}

static int retention_from_yaml(const cfg_node *n, dram_error_params *p, apx_error *err) {
    static const char *const keys[] = {"t_min_ms", "t_ref_ms", "ber_ref", "beta",
                                       "temp_ref", "k10",      NULL};
    if (!n) return APX_OK;
    if (cfg_expect_map(n, "retention", keys, err) ||
        get_num(n, "t_min_ms", 1, 0, 0, MAX_TREFW_MS, 0, &p->ret_t_min_ms, err) ||
        get_num(n, "t_ref_ms", 1, 0, 0, MAX_TREFW_MS, 1, &p->ret_t_ref_ms, err) ||
        get_num(n, "ber_ref", 1, 0, 0, 1, 1, &p->ret_ber_ref, err) ||
        get_num(n, "beta", 1, 0, 0, 100, 1, &p->ret_beta, err) ||
        get_num(n, "temp_ref", 1, 0, -40, 125, 0, &p->ret_temp_ref, err) ||
        get_num(n, "k10", 1, 1, 1, 100, 0, &p->ret_k10, err))
        return err->code;
    return APX_OK;
}

static int vrt_from_yaml(const cfg_node *n, dram_error_params *p, apx_error *err) {
    static const char *const keys[] = {"fraction", "ratio", "dwell_s", "duty", NULL};
    if (!n) return APX_OK;
    if (cfg_expect_map(n, "vrt", keys, err) ||
        get_num(n, "fraction", 1, 0, 0, 1, 1, &p->vrt_fraction, err) ||
        get_num(n, "ratio", 1, 1, 1, 1000, 0, &p->vrt_ratio, err) ||
        get_num(n, "dwell_s", 1, 0, 1e-3, MAX_TIME_S, 0, &p->vrt_dwell_s, err) ||
        get_num(n, "duty", 1, 0, 0, 1, 0, &p->vrt_duty, err))
        return err->code;
    if (!(p->ret_ber_ref > 0))
        return cfg_fail(n, err, "vrt: variable retention needs a 'retention' section");
    return APX_OK;
}

static int transient_from_yaml(const cfg_node *n, dram_error_params *p, apx_error *err) {
    static const char *const keys[] = {"band", "p_read", NULL};
    if (!n) return APX_OK;
    if (cfg_expect_map(n, "transient", keys, err) ||
        get_num(n, "band", 1, 1, 1, 1000, 0, &p->transient_band, err) ||
        get_num(n, "p_read", 1, 0, 0, 1, 0, &p->transient_p_read, err))
        return err->code;
    if (!p->act.enabled && !p->pre.enabled)
        return cfg_fail(n, err,
                        "transient: per-read failures need an 'activation' or 'precharge' "
                        "section");
    return APX_OK;
}

static int spatial_from_yaml(const cfg_node *n, dram_error_params *p, apx_error *err) {
    static const char *const keys[] = {
        "column_period",         "column_phase",        "column_contrast",
        "subarray_rows",         "edge_rows",           "row_ramp",
        "edge_boost",            "weak_bitline_fraction", "weak_bitline_factor",
        "weak_wordline_fraction", "weak_wordline_factor", NULL};
    if (n && cfg_expect_map(n, "spatial", keys, err)) return err->code;
    if (get_u32(n, "column_period", 256, 2, MAX_COLUMN_PERIOD, &p->column_period, err))
        return err->code;
    if (p->column_period % 2)
        return cfg_fail(cfg_find(n, "column_period"), err,
                        "column_period must be even (a high and a low half), got %u",
                        p->column_period);
    if (get_u32(n, "column_phase", 0, 0, p->column_period - 1, &p->column_phase, err) ||
        get_num(n, "column_contrast", 0, 1, 1, 1e6, 0, &p->column_contrast, err) ||
        get_u32(n, "subarray_rows", 512, 1, MAX_SUBARRAY_ROWS, &p->subarray_rows, err) ||
        get_u32(n, "edge_rows", 0, 0, p->subarray_rows, &p->edge_rows, err) ||
        get_num(n, "row_ramp", 0, 0, 0, 1e3, 0, &p->row_ramp, err) ||
        get_num(n, "edge_boost", 0, 1, 0, 1e3, 1, &p->edge_boost, err) ||
        get_num(n, "weak_bitline_fraction", 0, 0, 0, 1, 0, &p->weak_bitline_fraction, err) ||
        get_num(n, "weak_bitline_factor", 0, 1, 1, 1e6, 0, &p->weak_bitline_factor, err) ||
        get_num(n, "weak_wordline_fraction", 0, 0, 0, 1, 0, &p->weak_wordline_fraction, err) ||
        get_num(n, "weak_wordline_factor", 0, 1, 1, 1e6, 0, &p->weak_wordline_factor, err))
        return err->code;
    return APX_OK;
}

int dram_error_params_from_yaml(const cfg_node *node, double vdd_nominal,
                                dram_error_params *out, apx_error *err) {
    static const char *const keys[] = {"activation", "precharge", "sigma_chip",
                                       "sigma_bank", "retention", "vrt",
                                       "transient",  "spatial",   "layout",
                                       "stripe",     "data_dependent", "test_vulnerable",
                                       NULL};
    static const char *const layouts[] = {"true_cells", "anti_cells", "row_stripes",
                                          "column_stripes", NULL};
    dram_error_params p;
    memset(&p, 0, sizeof p);
    p.vdd_nominal = vdd_nominal;
    p.transient_band = 1;
    p.vrt_ratio = 1;
    p.ret_k10 = 1;
    if (!(vdd_nominal > 0))
        return apx_fail(err, APX_EINPUT, "errors: the nominal VDD must be positive, got %g",
                        vdd_nominal);
    if (node && cfg_expect_map(node, "errors", keys, err)) return err->code;
    int layout = DRAM_TRUE_CELLS;
    if (latency_from_yaml(cfg_find(node, "activation"), "activation", vdd_nominal, &p.act,
                          err) ||
        latency_from_yaml(cfg_find(node, "precharge"), "precharge", vdd_nominal, &p.pre, err) ||
        get_num(node, "sigma_chip", 0, 0, 0, 10, 0, &p.sigma_chip, err) ||
        get_num(node, "sigma_bank", 0, 0, 0, 10, 0, &p.sigma_bank, err) ||
        retention_from_yaml(cfg_find(node, "retention"), &p, err) ||
        vrt_from_yaml(cfg_find(node, "vrt"), &p, err) ||
        transient_from_yaml(cfg_find(node, "transient"), &p, err) ||
        spatial_from_yaml(cfg_find(node, "spatial"), &p, err) ||
        cfg_get_enum(node, "layout", 0, DRAM_TRUE_CELLS, layouts, &layout, err) ||
        get_u32(node, "stripe", 1, 1, UINT32_MAX >> 1, &p.stripe, err) ||
        cfg_get_bool(node, "data_dependent", 0, 1, &p.data_dependent, err) ||
        get_num(node, "test_vulnerable", 0, 0.5, 0, 1, 1, &p.test_vulnerable, err))
        return err->code;
    p.layout = layout;
    *out = p;
    return APX_OK;
}

/* ---- operating points ---------------------------------------------------------- */

static int point_fail(const cfg_node *at, apx_error *err, const char *msg, double v) {
    if (at) return cfg_fail(at, err, "%s, got %g", msg, v);
    return apx_fail(err, APX_EINPUT, "%s, got %g", msg, v);
}

int dram_errors_check_point(const dram_error_params *p, const double *op, const cfg_node *at,
                            apx_error *err) {
    double v_min = 0;
    if (p->act.enabled && p->act.v_threshold > v_min) v_min = p->act.v_threshold;
    if (p->pre.enabled && p->pre.v_threshold > v_min) v_min = p->pre.v_threshold;
    double vdd = op[DK_VDD];
    if (!(vdd > v_min) || !(vdd <= 1.5 * p->vdd_nominal)) {
        char msg[160];
        snprintf(msg, sizeof msg, "vdd must be above %g V (the sensing threshold) and at most "
                 "%g V (1.5 x nominal)", v_min, 1.5 * p->vdd_nominal);
        return point_fail(at, err, msg, vdd);
    }
    static const char *const names[] = {"trcd", "trp", "tras"};
    for (int k = DK_TRCD; k <= DK_TRAS; k++)
        if (!(op[k] > 0 && op[k] <= MAX_LATENCY_NS)) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s must be a positive latency of at most %g ns",
                     names[k - DK_TRCD], MAX_LATENCY_NS);
            return point_fail(at, err, msg, op[k]);
        }
    if (!(op[DK_TREFW] > 0 && op[DK_TREFW] <= MAX_TREFW_MS))
        return point_fail(at, err, "trefw must be in (0, 1e7] ms", op[DK_TREFW]);
    if (!(op[DK_TEMP] >= -40 && op[DK_TEMP] <= 125))
        return point_fail(at, err, "temperature must be in [-40, 125] C", op[DK_TEMP]);
    if (!(op[DK_TIME] >= 0 && op[DK_TIME] <= MAX_TIME_S))
        return point_fail(at, err, "time_s must be in [0, 1e12] s", op[DK_TIME]);
    return APX_OK;
}

/* ---- the engine ----------------------------------------------------------------- */

typedef struct survivor {
    uint64_t bit;     /* logical bit of the region */
    uint8_t kind;
} survivor;

/* A small direct-mapped cache of bank rates: a call touches few banks. */
#define BANK_CACHE 64

typedef struct engine {
    const dram_error_params *p;
    const double *op;
    const device_region *r;
    const geometry *geo;
    op_rates o;
    spatial sp;
    rng_key key_z, key_bl, key_wl, key_vrt, key_read;
    uint64_t seed;
    uint32_t chip;
    /* the region in bytes */
    uint64_t stride, row_bytes, end;
    /* bank rates */
    uint64_t cache_id[BANK_CACHE];  /* flat bank + 1; 0 = empty */
    bank_rates cache[BANK_CACHE];
    /* the last row and wordline looked up (+ 1; 0 = none) and their answers */
    uint64_t row_last, wl_last;
    double row_last_factor;
    int wl_last_weak;
    /* scratch */
    nested_list hits;
    survivor *sv;
    size_t n_sv, cap_sv;
    dram_errors_stats st;
} engine;

static uint64_t flat_bank(const geometry *g, const cell *c) {
    uint64_t b = c->f[GEO_CH];
    b = b * g->count[GEO_RA] + c->f[GEO_RA];
    b = b * g->count[GEO_BG] + c->f[GEO_BG];
    return b * g->count[GEO_BA] + c->f[GEO_BA];
}

static const bank_rates *rates_of_bank(engine *e, uint64_t bank) {
    size_t slot = bank % BANK_CACHE;
    if (e->cache_id[slot] != bank + 1) {
        double z = e->p->sigma_bank > 0 ? normal_at(e->key_z, DOMAIN_BANK_Z, bank) : 0.0;
        bank_rates_of(e->p, e->op, &e->o, exp(e->p->sigma_bank * z), &e->cache[slot]);
        e->cache_id[slot] = bank + 1;
    }
    return &e->cache[slot];
}

/* The values of field f over the block at byte address a0 (aligned): a
 * contiguous range [lo, lo + n). */
static void field_range(const geometry *g, int f, uint64_t a0, uint64_t *lo, uint64_t *n) {
    unsigned w = g->width[f], sh = g->shift[f];
    unsigned below = sh >= BLOCK_SHIFT ? 0 : BLOCK_SHIFT - sh;
    if (below > w) below = w;
    *lo = w ? (a0 >> sh) & ((1ull << w) - 1) : 0;
    *n = 1ull << below;
}

/* Whether the wordline of cell c, (bank, row), is weak (the last answer is
 * kept, as cell_weight keeps the last row factor). */
static int wordline_is_weak(engine *e, const cell *c) {
    cell line = *c;
    line.f[GEO_CO] = 0;
    line.bit = 0;
    uint64_t id = geometry_cell_index(e->geo, &line);
    if (id + 1 != e->wl_last) {
        e->wl_last = id + 1;
        e->wl_last_weak = hash_unit(e->key_wl, id, DOMAIN_LINE) < e->sp.wl_fraction;
    }
    return e->wl_last_weak;
}

/* Upper bounds over the block at a0: of the spatial weight, and of each
 * mechanism's bank rate. */
static void block_bounds(engine *e, uint64_t a0, double *w_max, double g_max[3]) {
    const geometry *g = e->geo;
    const spatial *s = &e->sp;
    uint64_t lo[GEO_FIELDS], n[GEO_FIELDS];
    for (int f = 0; f < GEO_FIELDS; f++) field_range(g, f, a0, &lo[f], &n[f]);
    /* columns: the high class is present iff some column of the range is high */
    uint64_t x = (lo[GEO_CO] + s->phase) % s->period;
    int high = x < s->period / 2 || x + n[GEO_CO] > s->period;
    double w = high ? s->col_hi : s->col_lo;
    double rmax = 0;
    uint64_t nr = n[GEO_RO] < s->rows ? n[GEO_RO] : s->rows;
    for (uint64_t i = 0; i < nr; i++) {
        double f = row_factor(s, lo[GEO_RO] + i);
        if (f > rmax) rmax = f;
    }
    w *= rmax;
    /* Bitlines: a block holds thousands, so the bound assumes a weak one
     * (the cost of weak bitlines is their max / mean weight). Wordlines: a
     * block holds a few (rows x banks of its range), each looked up. */
    w *= s->bl_fraction > 0 ? s->bl_weak : s->bl_strong;
    int weak_wordline = 0;
    g_max[0] = g_max[1] = g_max[2] = 0;
    cell c = {{0}, 0};
    for (uint64_t ch = 0; ch < n[GEO_CH]; ch++)
        for (uint64_t ra = 0; ra < n[GEO_RA]; ra++)
            for (uint64_t bg = 0; bg < n[GEO_BG]; bg++)
                for (uint64_t ba = 0; ba < n[GEO_BA]; ba++) {
                    c.f[GEO_CH] = (uint32_t)(lo[GEO_CH] + ch);
                    c.f[GEO_RA] = (uint32_t)(lo[GEO_RA] + ra);
                    c.f[GEO_BG] = (uint32_t)(lo[GEO_BG] + bg);
                    c.f[GEO_BA] = (uint32_t)(lo[GEO_BA] + ba);
                    const bank_rates *b = rates_of_bank(e, flat_bank(g, &c));
                    for (int m = 0; m < 3; m++)
                        if (b->g[m] > g_max[m]) g_max[m] = b->g[m];
                    for (uint64_t r = 0; s->wl_fraction > 0 && !weak_wordline && r < n[GEO_RO];
                         r++) {
                        c.f[GEO_RO] = (uint32_t)(lo[GEO_RO] + r);
                        weak_wordline = wordline_is_weak(e, &c);
                    }
                }
    *w_max = w * (weak_wordline ? s->wl_weak : s->wl_strong);
}

/* The spatial weight of a cell (activation and precharge). */
static double cell_weight(engine *e, const cell *c) {
    const spatial *s = &e->sp;
    if (c->f[GEO_RO] + 1ull != e->row_last) { /* a block's cells share a row or a few */
        e->row_last = c->f[GEO_RO] + 1ull;
        e->row_last_factor = row_factor(s, c->f[GEO_RO]);
    }
    double w = column_factor(s, c->f[GEO_CO]) * e->row_last_factor;
    if (s->bl_fraction > 0) {
        cell line = *c;  /* the bitline: (bank, subarray, column, bit) */
        line.f[GEO_RO] = c->f[GEO_RO] - c->f[GEO_RO] % s->rows;
        uint64_t id = geometry_cell_index(e->geo, &line);
        w *= hash_unit(e->key_bl, id, DOMAIN_LINE) < s->bl_fraction ? s->bl_weak : s->bl_strong;
    } else {
        w *= s->bl_strong;
    }
    if (s->wl_fraction > 0)
        w *= wordline_is_weak(e, c) ? s->wl_weak : s->wl_strong;
    else
        w *= s->wl_strong;
    return w;
}

/* The discharged-state kind of a cell (DD1 for a true cell, DD0 for anti). */
static uint8_t dd_kind(const dram_error_params *p, const cell *c) {
    int anti;
    switch (p->layout) {
    case DRAM_ANTI_CELLS: anti = 1; break;
    case DRAM_ROW_STRIPES: anti = (c->f[GEO_RO] / p->stripe) & 1; break;
    case DRAM_COLUMN_STRIPES: anti = (c->f[GEO_CO] / p->stripe) & 1; break;
    default: anti = 0; break;
    }
    return anti ? FAULT_DD0 : FAULT_DD1;
}

/* The region's logical bit at address bit `at`, or UINT64_MAX if `at` is
 * not one of its used bits. */
static uint64_t logical_bit(const engine *e, uint64_t at) {
    uint64_t byte = at >> 3;
    if (byte < e->r->base_addr || byte >= e->end) return UINT64_MAX;
    uint64_t off = byte - e->r->base_addr, row = off / e->stride;
    uint64_t col = (off - row * e->stride) * 8 + (at & 7);
    if (row >= e->r->rows || col >= e->r->cols) return UINT64_MAX;
    return row * e->r->cols + col;
}

static int push_survivor(engine *e, uint64_t bit, uint8_t kind) {
    if (e->n_sv == e->cap_sv) {
        size_t cap = e->cap_sv ? 2 * e->cap_sv : 256;
        survivor *v = realloc(e->sv, cap * sizeof *v);
        if (!v) return -1;
        e->sv = v;
        e->cap_sv = cap;
    }
    e->sv[e->n_sv++] = (survivor){bit, kind};
    return 0;
}

/* Whether candidate (cell c at address bit `at` in a bank with rates b,
 * critical value u) fails in mechanism m. */
static int candidate_fails(engine *e, int m, uint64_t at, const cell *c,
                           const bank_rates *b, double u) {
    const dram_error_params *p = e->p;
    if (m == MECH_RET) return u < b->g[MECH_RET];
    if (m == MECH_VRT) {
        int low = hash_unit(e->key_vrt, at, DOMAIN_STATE) < p->vrt_duty;
        return u < p->vrt_fraction * b->g[MECH_RET] * (low ? e->o.vrt_low : 1.0);
    }
    double rate = cell_weight(e, c) * b->g[m];
    if (u < rate) return 1;
    return e->o.transient_on && u < p->transient_band * rate &&
           hash_unit(e->key_read, at, DOMAIN_STATE + (uint32_t)m) < p->transient_p_read;
}

static int by_bit(const void *a, const void *b) {
    uint64_t x = ((const survivor *)a)->bit, y = ((const survivor *)b)->bit;
    return (x > y) - (x < y);
}

/* One block: draws every mechanism, thins, merges per cell, appends to out. */
static int do_block(engine *e, uint64_t block, fmap *out, apx_error *err) {
    const dram_error_params *p = e->p;
    uint64_t a0 = block * BLOCK_BYTES;
    /* Always the whole block: a draw depends on its length (nested.h), and
     * a cell's fate must not depend on where the region asking ends. */
    uint64_t n = DRAM_BLOCK_BITS;
    double w_max, g_max[3];
    block_bounds(e, a0, &w_max, g_max);
    double band = e->o.transient_on ? p->transient_band : 1.0;
    double q[MECH_COUNT] = {w_max * g_max[MECH_ACT] * band, w_max * g_max[MECH_PRE] * band,
                            g_max[MECH_RET],
                            e->o.vrt_on ? p->vrt_fraction * g_max[MECH_RET] * e->o.vrt_low : 0};
    e->st.blocks++;
    e->n_sv = 0;
    int mechanisms = 0;
    for (int m = 0; m < MECH_COUNT; m++) {
        if (!(q[m] > 0)) continue;
        e->st.draws++;
        if (nested_draw(key_for(e->seed, e->chip, PURPOSE_MECH + (uint32_t)m, block), n, q[m],
                        &e->hits))
            return apx_fail(err, APX_EWORK, "dram errors: out of memory drawing faults");
        e->st.candidates += e->hits.n;
        size_t before = e->n_sv;
        for (size_t i = 0; i < e->hits.n; i++) {
            uint64_t at = a0 * 8 + e->hits.v[i].pos, bit = logical_bit(e, at);
            if (bit == UINT64_MAX) continue;
            cell c;
            geometry_decode(e->geo, at >> 3, (unsigned)(at & 7), &c);
            const bank_rates *b = rates_of_bank(e, flat_bank(e->geo, &c));
            if (!candidate_fails(e, m, at, &c, b, e->hits.v[i].u)) continue;
            uint8_t kind = (m <= MECH_PRE && !p->data_dependent) ? FAULT_FLIP : dd_kind(p, &c);
            if (push_survivor(e, bit, kind))
                return apx_fail(err, APX_EWORK, "dram errors: out of memory");
        }
        mechanisms += e->n_sv > before;
    }
    if (mechanisms > 1) qsort(e->sv, e->n_sv, sizeof *e->sv, by_bit);
    for (size_t i = 0; i < e->n_sv;) {
        size_t j = i;
        uint8_t kind = e->sv[i].kind;
        for (; j < e->n_sv && e->sv[j].bit == e->sv[i].bit; j++)
            if (e->sv[j].kind == FAULT_FLIP) kind = FAULT_FLIP;
        if (fmap_push(out, e->sv[i].bit, kind, err)) return err->code;
        i = j;
    }
    return APX_OK;
}

/* Checks the region against its geometry and fills e's region fields. */
static int region_init(engine *e, const device_region *r, apx_error *err) {
    if (!r->geo)
        return apx_fail(err, APX_EINPUT, "dram errors: region %u has no memory geometry", r->id);
    uint64_t bits;
    if (__builtin_mul_overflow(r->rows, r->cols, &bits))
        return apx_fail(err, APX_EINPUT, "dram errors: region %u is too large", r->id);
    if (bits == 0) return APX_OK;  /* nothing to fail */
    e->row_bytes = (r->cols + 7) / 8;
    e->stride = r->rows > 1 ? r->row_stride : e->row_bytes;
    if (r->rows > 1 && r->row_stride < e->row_bytes)
        return apx_fail(err, APX_EINPUT,
                        "dram errors: region %u: row stride %llu bytes is below the %llu bytes "
                        "of a row",
                        r->id, (unsigned long long)r->row_stride,
                        (unsigned long long)e->row_bytes);
    uint64_t last, end;
    if (__builtin_mul_overflow(r->rows - 1, e->stride, &last) ||
        __builtin_add_overflow(last, e->row_bytes, &end) ||
        __builtin_add_overflow(end, r->base_addr, &e->end) || e->end > geometry_bytes(r->geo))
        return apx_fail(err, APX_EINPUT,
                        "dram errors: region %u (%llu x %llu bits at byte %llu, stride %llu) "
                        "does not fit in the memory of %llu bytes",
                        r->id, (unsigned long long)r->rows, (unsigned long long)r->cols,
                        (unsigned long long)r->base_addr, (unsigned long long)r->row_stride,
                        (unsigned long long)geometry_bytes(r->geo));
    return APX_OK;
}

/* The blocks that hold used bytes of the region, in address order: from a
 * block, the next one is the next block if it still meets a row, else the
 * block of the next row's start (jumping over gaps between rows). */
static int walk_blocks(engine *e, fmap *out, apx_error *err) {
    const device_region *r = e->r;
    uint64_t b = r->base_addr / BLOCK_BYTES, last = (e->end - 1) / BLOCK_BYTES;
    while (b <= last) {
        uint64_t bs = b * BLOCK_BYTES, row = 0;
        if (bs > r->base_addr && bs - r->base_addr >= e->row_bytes)
            row = (bs - r->base_addr - e->row_bytes) / e->stride + 1;
        if (row >= r->rows) break;
        uint64_t start = r->base_addr + row * e->stride;
        if (start >= bs + BLOCK_BYTES) {
            b = start / BLOCK_BYTES;
            continue;
        }
        if (do_block(e, b, out, err)) return err->code;
        b++;
    }
    return APX_OK;
}

int dram_errors_faults_stats(const dram_error_params *p, const double *op, uint64_t seed,
                             uint32_t chip, const device_region *region, fmap *out,
                             dram_errors_stats *stats, apx_error *err) {
    if (stats) memset(stats, 0, sizeof *stats);
    fmap_reset(out, 0);
    if (dram_errors_check_point(p, op, NULL, err)) return err->code;
    engine *e = calloc(1, sizeof *e);
    if (!e) return apx_fail(err, APX_EWORK, "dram errors: out of memory");
    e->p = p;
    e->op = op;
    e->r = region;
    e->geo = region->geo;
    e->seed = seed;
    e->chip = chip;
    int rc = region_init(e, region, err);
    if (rc == APX_OK) {
        fmap_reset(out, region->rows * region->cols);
        e->key_z = key_for(seed, chip, PURPOSE_Z, 0);
        e->key_bl = key_for(seed, chip, PURPOSE_BITLINE, 0);
        e->key_wl = key_for(seed, chip, PURPOSE_WORDLINE, 0);
        double t = op[DK_TIME];
        uint64_t window = p->vrt_fraction > 0 ? (uint64_t)floor(t / p->vrt_dwell_s) : 0, read;
        double t0 = t + 0.0;  /* -0 and 0 are one read */
        memcpy(&read, &t0, sizeof read);
        e->key_vrt = key_for(seed, chip, PURPOSE_VRT, window);
        e->key_read = key_for(seed, chip, PURPOSE_READ, read);
        op_rates_init(p, op, dram_errors_chip_z(seed, chip), &e->o);
        spatial_init(p, &e->sp);
        if (region->rows && region->cols) rc = walk_blocks(e, out, err);
    }
    if (stats) *stats = e->st;
    nested_list_free(&e->hits);
    free(e->sv);
    free(e);
    if (rc) fmap_reset(out, out->region_bits);
    return rc;
}

int dram_errors_faults(const dram_error_params *p, const double *op, uint64_t seed,
                       uint32_t chip, const device_region *region, fmap *out, apx_error *err) {
    return dram_errors_faults_stats(p, op, seed, chip, region, out, NULL, err);
}

/* ---- analytic expectations -------------------------------------------------------- */

/* Per-cell probabilities at a spatial weight w: log(1 - P(observed)) and
 * log(1 - P(fail)). */
typedef struct cell_odds {
    double log_ok_observed, log_ok;
} cell_odds;

static cell_odds odds_at(const dram_error_params *p, const op_rates *o, const bank_rates *b,
                         double w) {
    double pa = fmin(1, w * b->g[MECH_ACT]), pp = fmin(1, w * b->g[MECH_PRE]);
    double pr = fmin(1, b->g[MECH_RET]), pv = 0;
    if (o->vrt_on) {
        double f = p->vrt_fraction * b->g[MECH_RET];
        pv = p->vrt_duty * fmin(1, f * o->vrt_low) + (1 - p->vrt_duty) * fmin(1, f);
    }
    double log_ok_latency = log1p(-pa) + log1p(-pp);
    double log_ok_retention = log1p(-pr) + log1p(-pv);
    double tv = p->test_vulnerable;
    cell_odds c;
    c.log_ok = log_ok_latency + log_ok_retention;
    if (p->data_dependent) {
        c.log_ok_observed = log1p(tv * expm1(c.log_ok));  /* 1 - tv P(fail) */
    } else {  /* FLIP failures always show; DD ones on vulnerable cells only */
        c.log_ok_observed = log_ok_latency + log1p(tv * expm1(log_ok_retention));
    }
    return c;
}

static void rates_for_chip(const dram_error_params *p, const double *op, double z, op_rates *o,
                           bank_rates *b, spatial *s) {
    op_rates_init(p, op, z, o);
    bank_rates_of(p, op, o, 1.0, b);
    spatial_init(p, s);
}

double dram_errors_expected_fail(const dram_error_params *p, const double *op, double z) {
    op_rates o;
    bank_rates b;
    spatial s;
    rates_for_chip(p, op, z, &o, &b, &s);
    double bl_w[2] = {s.bl_strong, s.bl_weak}, bl_p[2] = {1 - s.bl_fraction, s.bl_fraction};
    double wl_w[2] = {s.wl_strong, s.wl_weak}, wl_p[2] = {1 - s.wl_fraction, s.wl_fraction};
    double col_w[2] = {s.col_hi, s.col_lo}, sum = 0;
    for (uint32_t r = 0; r < s.rows; r++) {
        double rf = row_factor(&s, r);
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) {
                    double pr = 0.5 * bl_p[i] * wl_p[j];
                    if (pr == 0) continue;
                    cell_odds k = odds_at(p, &o, &b, col_w[c] * rf * bl_w[i] * wl_w[j]);
                    sum += pr * -expm1(k.log_ok);
                }
    }
    return sum / s.rows;
}

double dram_errors_expected_line_fraction(const dram_error_params *p, const double *op,
                                          double z) {
    op_rates o;
    bank_rates b;
    spatial s;
    rates_for_chip(p, op, z, &o, &b, &s);
    /* How many of a line's 8 columns are high, over the line positions of
     * lcm(period, 8) columns. */
    uint64_t span = s.period % LINE_COLUMNS == 0 ? s.period
                    : s.period % 4 == 0          ? 2 * (uint64_t)s.period
                                                 : 4 * (uint64_t)s.period;
    double lines_with[LINE_COLUMNS + 1] = {0};
    for (uint64_t l = 0; l < span; l += LINE_COLUMNS) {
        int high = 0;
        for (int c = 0; c < LINE_COLUMNS; c++) high += column_is_high(&s, l + c);
        lines_with[high] += LINE_COLUMNS / (double)span;
    }
    double bl_w[2] = {s.bl_strong, s.bl_weak}, bl_p[2] = {1 - s.bl_fraction, s.bl_fraction};
    double wl_w[2] = {s.wl_strong, s.wl_weak}, wl_p[2] = {1 - s.wl_fraction, s.wl_fraction};
    double sum = 0;
    for (uint32_t r = 0; r < s.rows; r++) {
        double rf = row_factor(&s, r);
        for (int j = 0; j < 2; j++) {
            if (wl_p[j] == 0) continue;
            /* log P(a cell shows no error), averaged over its bitline's class */
            double log_ok[2];
            for (int c = 0; c < 2; c++) {
                double w = (c ? s.col_lo : s.col_hi) * rf * wl_w[j], shown = 0;
                for (int i = 0; i < 2; i++)
                    if (bl_p[i] > 0)
                        shown -= bl_p[i] * expm1(odds_at(p, &o, &b, w * bl_w[i]).log_ok_observed);
                log_ok[c] = log1p(-shown);
            }
            for (int h = 0; h <= LINE_COLUMNS; h++) {
                if (lines_with[h] == 0) continue;
                double log_clean = LINE_BITS * (h * log_ok[0] + (LINE_COLUMNS - h) * log_ok[1]);
                sum += wl_p[j] * lines_with[h] * -expm1(log_clean);
            }
        }
    }
    return sum / s.rows;
}
