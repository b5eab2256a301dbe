/* dram.c - the `dram` device: timing and energy (dram_timing.h,
 * dram_energy.h) and the error model (dram_errors.h) behind the device
 * interface.
 *
 *   device:
 *     kind: dram
 *     name: ...                 # optional label
 *     timing: {...}             # dram_timing_from_yaml (ns)
 *     power: {...}              # dram_power_from_yaml (V, mA); power.vdd is the nominal VDD
 *     errors: {...}             # dram_error_params_from_yaml (absent: no errors)
 *     nominal_temperature: 45   # optional, C: the temperature knob's default
 *
 * Knobs (enum dram_knob): vdd, trcd, trp, tras, trefw, temperature, time_s.
 * Every knob has a default (knob_default), so a sweep names only the ones it
 * varies: the nominal VDD and timings, a 64 ms refresh window, the nominal
 * temperature and time 0. The config holds everything the device uses, so
 * it needs no content_hash. */
#include <stdlib.h>

#include "../device.h"
#include "dram_energy.h"
#include "dram_errors.h"
#include "dram_timing.h"

/* JEDEC DDR3/DDR4 refresh window (../shared facts dram.md section 2.3). */
#define DRAM_NOMINAL_TREFW_MS 64.0

typedef struct dram_device {
    device base;
    dram_timing timing;
    dram_power power;
    dram_error_params errors;
    double nominal_temperature;
} dram_device;

extern const device_ops dram_device_ops;

static const char *const dram_knobs[] = {"vdd", "trcd", "trp", "tras", "trefw",
                                         "temperature", "time_s", NULL};

static int dram_create(const cfg_node *node, device **out, apx_error *err) {
    static const char *const keys[] = {"kind",   "name",   "timing", "power",
                                       "errors", "nominal_temperature", NULL};
    if (cfg_expect_map(node, "device", keys, err)) return err->code;
    const char *name;
    double temperature;
    const cfg_node *timing = cfg_find(node, "timing"), *power = cfg_find(node, "power");
    if (cfg_get_string(node, "name", 0, NULL, &name, err) ||
        cfg_get_double(node, "nominal_temperature", 0, 45, -40, 125, &temperature, err))
        return err->code;
    if (!timing) return cfg_fail(node, err, "dram device: missing 'timing' section");
    if (!power) return cfg_fail(node, err, "dram device: missing 'power' section");
    dram_device *d = calloc(1, sizeof *d);
    if (!d) return apx_fail(err, APX_EWORK, "out of memory");
    d->nominal_temperature = temperature;
    if (dram_timing_from_yaml(timing, &d->timing, err) ||
        dram_power_from_yaml(power, &d->power, err) ||
        dram_error_params_from_yaml(cfg_find(node, "errors"), d->power.vdd, &d->errors, err)) {
        free(d);
        return err->code;
    }
    d->base.ops = &dram_device_ops;
    *out = &d->base;
    return APX_OK;
}

static void dram_destroy(device *d) { free(d); }

/* The error model's ranges, then the timing the cost op will run (tREFI
 * from the refresh window must stay above 2 tRFC, ...), so that a sweep
 * refuses a point before any job rather than in the middle. */
static int dram_check_point(const device *dev, const double *op, const cfg_node *at,
                            apx_error *err) {
    const dram_device *d = (const dram_device *)dev;
    if (dram_errors_check_point(&d->errors, op, at, err)) return err->code;
    dram_timing t;
    apx_error inner;
    dram_timing_at(&d->timing, op[DK_TRCD], op[DK_TRP], op[DK_TRAS], op[DK_TREFW], &t);
    if (dram_timing_check(&t, &inner) == APX_OK) return APX_OK;
    if (at) return cfg_fail(at, err, "the point's timing: %s", inner.msg);
    return apx_fail(err, APX_EINPUT, "the point's timing: %s", inner.msg);
}

static int dram_faults(const device *d, const double *op, uint64_t seed, uint32_t chip,
                       const device_region *region, fmap *out, apx_error *err) {
    return dram_errors_faults(&((const dram_device *)d)->errors, op, seed, chip, region, out,
                              err);
}

static int dram_knob_default(const device *dev, int knob, double *value) {
    const dram_device *d = (const dram_device *)dev;
    switch (knob) {
    case DK_VDD: *value = d->power.vdd; return 1;
    case DK_TRCD: *value = d->timing.trcd; return 1;
    case DK_TRP: *value = d->timing.trp; return 1;
    case DK_TRAS: *value = d->timing.tras; return 1;
    case DK_TREFW: *value = DRAM_NOMINAL_TREFW_MS; return 1;
    case DK_TEMP: *value = d->nominal_temperature; return 1;
    case DK_TIME: *value = 0; return 1;
    default: return 0;
    }
}

static int dram_cost(const device *dev, const double *op, const device_region *regions,
                     size_t n, uint32_t batch, device_cost *out, apx_error *err) {
    const dram_device *d = (const dram_device *)dev;
    return dram_cost_of(&d->power, &d->timing, op[DK_VDD], op[DK_TRCD], op[DK_TRP],
                        op[DK_TRAS], op[DK_TREFW], regions, n, batch, out, err);
}

const device_ops dram_device_ops = {
    .version = DEVICE_OPS_VERSION,
    .kind = "dram",
    .summary = "DRAM at reduced voltage, latency and refresh: timing, energy and nested, "
               "spatially correlated faults (knobs: vdd, trcd, trp, tras, trefw, temperature, "
               "time_s)",
    .knobs = dram_knobs,
    .create = dram_create,
    .destroy = dram_destroy,
    .check_point = dram_check_point,
    .faults = dram_faults,
    .knob_default = dram_knob_default,
    .cost = dram_cost,
};
