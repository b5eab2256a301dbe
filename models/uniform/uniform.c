/* uniform.c - the simplest device: every stored bit fails independently
 * with probability `ber`, as a bit flip.
 *
 * Nesting (rule 2) without knowing the sweep: every bit i of a chip has a
 * fixed critical error rate u_i ~ U(0,1) and fails at operating point ber iff
 * u_i < ber. models/nested.h lists those bits without a draw per bit
 * (rule 3), from a stream keyed by (seed, chip, region), at about twice the
 * cost of the faults. */
#include <stdlib.h>
#include <string.h>

#include "../../sim/rng.h"
#include "../device.h"
#include "../nested.h"

typedef struct uniform_device {
    device base;
} uniform_device;

static const char *const uniform_knobs[] = {"ber", NULL};

static int uniform_create(const cfg_node *node, device **out, apx_error *err) {
    static const char *const keys[] = {"kind", "name", NULL};
    if (cfg_expect_map(node, "device", keys, err)) return err->code;
    uniform_device *d = calloc(1, sizeof *d);
    if (!d) return apx_fail(err, APX_EWORK, "out of memory");
    extern const device_ops uniform_device_ops;
    d->base.ops = &uniform_device_ops;
    *out = &d->base;
    return APX_OK;
}

static void uniform_destroy(device *d) { free(d); }

static int uniform_check_point(const device *d, const double *op, const cfg_node *at,
                               apx_error *err) {
    (void)d;
    if (!(op[0] >= 0.0 && op[0] <= 1.0)) {
        if (at) return cfg_fail(at, err, "ber must be between 0 and 1, got %g", op[0]);
        return apx_fail(err, APX_EINPUT, "ber must be between 0 and 1, got %g", op[0]);
    }
    return APX_OK;
}

static int uniform_faults(const device *d, const double *op, uint64_t seed, uint32_t chip,
                          const device_region *where, fmap *out, apx_error *err) {
    (void)d;
    double ber = op[0];
    uint32_t region = where->id;
    uint64_t region_bits = device_region_bits(where);
    fmap_reset(out, region_bits);
    if (ber <= 0.0 || region_bits == 0) return APX_OK;
    nested_list hits = {0};
    if (nested_draw(rng_key_make(seed, chip, region), region_bits, ber, &hits))
        return apx_fail(err, APX_EWORK, "uniform device: out of memory drawing faults");
    int rc = APX_OK;
    for (size_t i = 0; i < hits.n && rc == APX_OK; i++)
        rc = fmap_push(out, hits.v[i].pos, FAULT_FLIP, err);
    nested_list_free(&hits);
    return rc;
}

const device_ops uniform_device_ops = {
    .version = DEVICE_OPS_VERSION,
    .kind = "uniform",
    .summary = "independent bit flips at a given bit error rate (knob: ber)",
    .knobs = uniform_knobs,
    .create = uniform_create,
    .destroy = uniform_destroy,
    .check_point = uniform_check_point,
    .faults = uniform_faults,
};
