/* device.h - the one interface every memory device implements.
 *
 * A device turns an operating point (a vector of named knobs, e.g. `ber`
 * for the uniform device; vdd, trcd, ... for DRAM) plus a chip seed into a
 * fault map for each region of memory it holds. sim/ only ever talks to
 * devices through this table, like SQLite's sqlite3_io_methods: new devices
 * are a new folder under models/ and a line in device.c's registry.
 *
 * Contract for `faults` (docs/DESIGN.md, rules 1-3):
 *   - a pure function of (device config, op point, seed, chip, region id,
 *     region size): no dependence on threads, order or earlier calls;
 *   - nested: at a harsher point the same chip fails a superset of bits;
 *   - cost proportional to the faults produced, not to region_bits. */
#ifndef APX_DEVICE_H
#define APX_DEVICE_H

#include <stdint.h>

#include "../faultmaps/fmap.h"
#include "../sim/config.h"
#include "../sim/error.h"

#define DEVICE_OPS_VERSION 1
#define DEVICE_MAX_KNOBS 16

typedef struct device device;

typedef struct device_ops {
    int version;                /* DEVICE_OPS_VERSION */
    const char *kind;           /* the name in YAML: device: {kind: ...} */
    const char *summary;        /* one line for --help */
    const char *const *knobs;   /* operating-point knob names, NULL-terminated */

    /* Builds a device from its YAML node (already known to be a mapping with
     * the right `kind`). Refuses unknown keys. */
    int (*create)(const cfg_node *node, device **out, apx_error *err);
    void (*destroy)(device *d);
    /* Range-checks an operating point (values in knob order). `at` is the
     * config node the point came from, for error positions (may be NULL). */
    int (*check_point)(const device *d, const double *op, const cfg_node *at,
                       apx_error *err);
    /* The faults of one region of one chip at op (see contract above).
     * `out` is reset to region_bits first. */
    int (*faults)(const device *d, const double *op, uint64_t seed, uint32_t chip,
                  uint32_t region, uint64_t region_bits, fmap *out, apx_error *err);
} device_ops;

/* Every implementation's struct starts with this. */
struct device {
    const device_ops *ops;
};

/* The registry: NULL-terminated list, and lookup by kind. */
extern const device_ops *const device_registry[];
const device_ops *device_find(const char *kind);

/* Reads `kind` from node, refuses unknown kinds (listing the known ones), and
 * calls that implementation's create. */
int device_create(const cfg_node *node, device **out, apx_error *err);
void device_destroy(device *d);

/* Number of knobs of a device kind. */
int device_knob_count(const device_ops *ops);

#endif
