/* dram_energy.c - IDD currents from YAML, the energy of a run's counts, and
 * the cost op that streams a workload's weights through the controller.
 * The formulas are in dram_energy.h and docs/dram-timing-energy.md. */
#include "dram_energy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- power parameters ----------------------------------------------------- */

#define VOLT_MAX 10.0
#define CURRENT_MAX_MA 1e5

/* The first inconsistency of p as a message, and the key to blame; NULL if
 * none. Ranges were checked while reading. */
static const char *power_problem(const dram_power *p, char *msg, size_t size) {
    if (!(p->vdd > 0)) return snprintf(msg, size, "vdd must be positive"), "vdd";
    if (!(p->idd2n > 0)) return snprintf(msg, size, "idd2n must be positive"), "idd2n";
    if (p->idd3n < p->idd2n)
        return snprintf(msg, size,
                        "idd3n = %g mA (active standby) is below idd2n = %g mA (precharged "
                        "standby)",
                        p->idd3n, p->idd2n),
               "idd3n";
    static const struct { const char *key; size_t at; } above_idd3n[] = {
        {"idd0", offsetof(dram_power, idd0)},
        {"idd4r", offsetof(dram_power, idd4r)},
        {"idd4w", offsetof(dram_power, idd4w)},
        {"idd5b", offsetof(dram_power, idd5b)},
    };
    for (size_t i = 0; i < sizeof above_idd3n / sizeof above_idd3n[0]; i++) {
        double v = *(const double *)((const char *)p + above_idd3n[i].at);
        if (!(v > p->idd3n))
            return snprintf(msg, size,
                            "%s = %g mA must exceed idd3n = %g mA (its energy is the current "
                            "above active standby)",
                            above_idd3n[i].key, v, p->idd3n),
                   above_idd3n[i].key;
    }
    if (p->ipp3n > p->ipp0)
        return snprintf(msg, size, "ipp3n = %g mA exceeds ipp0 = %g mA", p->ipp3n, p->ipp0),
               "ipp3n";
    if (p->ipp0 > 0 && !(p->vpp > 0))
        return snprintf(msg, size, "ipp0 is given but vpp is not: the VPP domain needs both"),
               "ipp0";
    if (p->vpp > 0 && !(p->ipp0 > 0))
        return snprintf(msg, size, "vpp is given but ipp0 is not: the VPP domain needs both"),
               "vpp";
    return NULL;
}

int dram_power_from_yaml(const cfg_node *node, dram_power *p, apx_error *err) {
    static const char *const keys[] = {"vdd",   "vpp",   "idd0",    "idd2n",
                                       "idd3n", "idd4r", "idd4w",   "idd5b",
                                       "ipp0",  "ipp3n", "devices", "current_exponent",
                                       NULL};
    if (cfg_expect_map(node, "power", keys, err)) return err->code;
    dram_power v;
    memset(&v, 0, sizeof v);
    struct { const char *key; int required; double *at; } currents[] = {
        {"idd0", 1, &v.idd0},   {"idd2n", 1, &v.idd2n}, {"idd3n", 1, &v.idd3n},
        {"idd4r", 1, &v.idd4r}, {"idd4w", 1, &v.idd4w}, {"idd5b", 1, &v.idd5b},
        {"ipp0", 0, &v.ipp0},   {"ipp3n", 0, &v.ipp3n},
    };
    if (cfg_get_double(node, "vdd", 1, 0, 0, VOLT_MAX, &v.vdd, err) ||
        cfg_get_double(node, "vpp", 0, 0, 0, VOLT_MAX, &v.vpp, err))
        return err->code;
    for (size_t i = 0; i < sizeof currents / sizeof currents[0]; i++)
        if (cfg_get_double(node, currents[i].key, currents[i].required, 0, 0, CURRENT_MAX_MA,
                           currents[i].at, err))
            return err->code;
    long long devices;
    if (cfg_get_int(node, "devices", 1, 0, 1, 1024, &devices, err) ||
        cfg_get_double(node, "current_exponent", 0, 1, 0, 4, &v.current_exponent, err))
        return err->code;
    v.devices = (unsigned)devices;
    char msg[256];
    const char *bad = power_problem(&v, msg, sizeof msg);
    if (bad) {
        const cfg_node *at = cfg_find(node, bad);
        return cfg_fail(at ? at : node, err, "power: %s", msg);
    }
    *p = v;
    return APX_OK;
}

/* ---- energy --------------------------------------------------------------- */

void dram_energy_of(const dram_power *p, const dram_timing *nominal, const dram_counts *c,
                    double vdd, dram_energy *out) {
    /* pJ per (mA x ns) of one device's current at vdd, times the devices */
    double current_scale = pow(vdd / p->vdd, p->current_exponent);
    double k = vdd * current_scale * p->devices;
    double burst_ns = nominal->bl / 2.0 * nominal->tck;
    uint64_t rank_cycles = c->rank_cycles ? c->rank_cycles : c->cycles;
    uint64_t active = c->cycles_active < rank_cycles ? c->cycles_active : rank_cycles;

    dram_energy e;
    e.act = k * (p->idd0 - p->idd3n) * nominal->tras * (double)c->act;
    e.pre = k * (p->idd0 - p->idd2n) * (nominal->trc - nominal->tras) * (double)c->pre;
    e.rd = k * (p->idd4r - p->idd3n) * burst_ns * (double)c->rd;
    e.wr = k * (p->idd4w - p->idd3n) * burst_ns * (double)c->wr;
    e.ref = k * (p->idd5b - p->idd3n) * nominal->trfc * (double)c->ref;
    e.background = k * nominal->tck *
                   (p->idd3n * (double)active + p->idd2n * (double)(rank_cycles - active));
    e.vpp = p->vpp * p->devices *
            ((p->ipp0 - p->ipp3n) * nominal->tras * (double)c->act +
             p->ipp3n * (double)rank_cycles * nominal->tck);
    e.total = e.act + e.pre + e.rd + e.wr + e.ref + e.background + e.vpp;
    *out = e;
}

void dram_timing_at(const dram_timing *nominal, double trcd, double trp, double tras,
                    double trefw_ms, dram_timing *out) {
    dram_timing t = *nominal;
    t.trcd = trcd;
    t.trp = trp;
    t.tras = tras;
    t.trc = tras + trp;
    t.trefi = trefw_ms * 1e6 / 8192;
    *out = t;
}

/* ---- the cost op ---------------------------------------------------------- */

/* An aligned burst must be one DRAM burst: the column bits sit right above
 * the bus-word offset and cover at least a burst. */
static int check_geometry(const geometry *g, unsigned bl, apx_error *err) {
    if (g->shift[GEO_CO] != g->offset_bits || g->count[GEO_CO] < bl)
        return apx_fail(err, APX_EINPUT,
                        "dram cost: mapping '%s' does not keep a burst of %u bus words in "
                        "one row of one bank: put the column field last, right above the "
                        "byte offset (e.g. 'RoBaBgChCo'), with at least %u columns",
                        g->mapping, bl, bl);
    return APX_OK;
}

/* The burst span [*first, *last] of a region; 0 if it reads nothing. */
static int region_span(const device_region *r, uint64_t burst_bytes, uint64_t *first,
                       uint64_t *last, apx_error *err) {
    if (r->rows == 0 || r->row_stride == 0) return 0;
    uint64_t row_bytes = r->cols / 8 + (r->cols % 8 != 0);
    if (r->row_stride < row_bytes)
        return apx_fail(err, APX_EINPUT,
                        "dram cost: region %u: row stride %llu bytes is shorter than a row of "
                        "%llu bits",
                        r->id, (unsigned long long)r->row_stride, (unsigned long long)r->cols),
               -1;
    uint64_t bytes = geometry_bytes(r->geo);
    if (r->rows > UINT64_MAX / r->row_stride || r->base_addr >= bytes ||
        r->rows * r->row_stride > bytes - r->base_addr)
        return apx_fail(err, APX_EINPUT,
                        "dram cost: region %u: %llu rows of %llu bytes from address 0x%llx do "
                        "not fit in the memory (%llu bytes)",
                        r->id, (unsigned long long)r->rows, (unsigned long long)r->row_stride,
                        (unsigned long long)r->base_addr, (unsigned long long)bytes),
               -1;
    *first = r->base_addr / burst_bytes;
    *last = (r->base_addr + r->rows * r->row_stride - 1) / burst_bytes;
    return 1;
}

/* Builds the burst trace (see the header). With req NULL only counts and
 * checks; *count gets the number of bursts. */
static int build_trace(const device_region *regions, size_t n, uint64_t burst_bytes,
                       dram_request *req, size_t *count, apx_error *err) {
    size_t total = 0;
    uint64_t previous = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t first, last;
        int has = region_span(&regions[i], burst_bytes, &first, &last, err);
        if (has < 0) return err->code;
        if (!has) continue;
        if (first == previous) first++;  /* read once: it was the last burst */
        previous = last;
        if (first > last) continue;
        if (last - first >= (uint64_t)DRAM_TIMING_MAX_REQUESTS - total)
            return apx_fail(err, APX_EINPUT,
                            "dram cost: the regions span more than %u bursts of %llu bytes; "
                            "the timing model takes at most that many",
                            DRAM_TIMING_MAX_REQUESTS, (unsigned long long)burst_bytes);
        if (req)
            for (uint64_t b = first; b <= last; b++)
                req[total + (b - first)] = (dram_request){.addr = b * burst_bytes};
        total += (size_t)(last - first + 1);
    }
    *count = total;
    return APX_OK;
}

static int check_regions(const device_region *regions, size_t n, unsigned bl, apx_error *err) {
    for (size_t i = 0; i < n; i++) {
        if (!regions[i].geo)
            return apx_fail(err, APX_EINPUT, "dram cost: region %u has no geometry",
                            regions[i].id);
        if (!geometry_equal(regions[i].geo, regions[0].geo))
            return apx_fail(err, APX_EINPUT,
                            "dram cost: region %u lies in another geometry than region %u",
                            regions[i].id, regions[0].id);
    }
    return n ? check_geometry(regions[0].geo, bl, err) : APX_OK;
}

/* The per-inference cost of a run's counts and energy. */
static void fill_cost(const dram_counts *c, const dram_energy *e, uint32_t batch,
                      device_cost *out) {
    double per = 1.0 / batch;
    memset(out, 0, sizeof *out);
    out->energy_pj = e->total * per;
    out->latency_ns = c->time_ns * per;
    device_cost_add(out, "act", (double)c->act * per);
    device_cost_add(out, "pre", (double)c->pre * per);
    device_cost_add(out, "rd", (double)c->rd * per);
    device_cost_add(out, "ref", (double)c->ref * per);
    device_cost_add(out, "row_hits", (double)c->row_hits * per);
    device_cost_add(out, "row_misses", (double)c->row_misses * per);
    device_cost_add(out, "row_conflicts", (double)c->row_conflicts * per);
    device_cost_add(out, "cycles", (double)c->cycles * per);
    device_cost_add(out, "energy_act_pj", e->act * per);
    device_cost_add(out, "energy_pre_pj", e->pre * per);
    device_cost_add(out, "energy_rd_pj", e->rd * per);
    device_cost_add(out, "energy_ref_pj", e->ref * per);
    device_cost_add(out, "energy_background_pj", e->background * per);
    device_cost_add(out, "energy_vpp_pj", e->vpp * per);
}

int dram_cost_of(const dram_power *p, const dram_timing *nominal, double vdd, double trcd,
                 double trp, double tras, double trefw_ms, const device_region *regions,
                 size_t n, uint32_t batch, device_cost *out, apx_error *err) {
    if (!(isfinite(vdd) && vdd > 0 && vdd <= VOLT_MAX))
        return apx_fail(err, APX_EINPUT, "dram cost: vdd = %g V must be in (0, %g]", vdd,
                        VOLT_MAX);
    if (batch == 0) return apx_fail(err, APX_EINPUT, "dram cost: batch must be at least 1");
    if (n && !regions) return apx_fail(err, APX_EINPUT, "dram cost: no region list");
    dram_timing at;
    dram_timing_at(nominal, trcd, trp, tras, trefw_ms, &at);
    if (dram_timing_check(&at, err))
        return apx_wrap(err, "dram cost at trcd %g ns, trp %g ns, tras %g ns, trefw %g ms: ",
                        trcd, trp, tras, trefw_ms);
    if (check_regions(regions, n, at.bl, err)) return err->code;
    uint64_t burst_bytes = n ? (uint64_t)regions[0].geo->bus_bits / 8 * at.bl : 1;
    size_t count = 0;
    if (build_trace(regions, n, burst_bytes, NULL, &count, err)) return err->code;

    dram_counts counts;
    memset(&counts, 0, sizeof counts);
    if (count > 0) {
        dram_request *req = malloc(count * sizeof *req);
        if (!req) return apx_fail(err, APX_EWORK, "dram cost: out of memory for %zu bursts", count);
        int rc = build_trace(regions, n, burst_bytes, req, &count, err);
        if (!rc)
            rc = dram_timing_run(&at, regions[0].geo, req, count, DRAM_COST_QUEUE_DEPTH,
                                 &counts, err);
        free(req);
        if (rc) return rc;
    }
    dram_energy e;
    dram_energy_of(p, nominal, &counts, vdd, &e);
    fill_cost(&counts, &e, batch, out);
    return APX_OK;
}
