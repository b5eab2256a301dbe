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
#include "geometry.h"
#include "../sim/config.h"
#include "../sim/error.h"

#define DEVICE_OPS_VERSION 1
#define DEVICE_MAX_KNOBS 16
#define DEVICE_MAX_COST_ITEMS 24

typedef struct device device;

/* Where a region (one weight tensor) lives. Its used bits are rows x cols,
 * logical bit b = row * cols + col, stored at bit (col % 8) of byte
 * base_addr + row * row_stride + col / 8 of the memory `geo` (a little-endian
 * image of 64-bit words, as workloads/bnn.h lays out its weights). Devices
 * that model no geometry (uniform) use only id and the bit count; devices
 * with spatial structure (DRAM, replayed maps) use the addresses. */
typedef struct device_region {
    uint32_t id;            /* tensor index: part of the random key */
    uint64_t rows, cols;
    uint64_t base_addr;     /* byte address of row 0 */
    uint64_t row_stride;    /* bytes from one row to the next (>= cols / 8) */
    const geometry *geo;
} device_region;

static inline uint64_t device_region_bits(const device_region *r) { return r->rows * r->cols; }

/* What reading the weights costs at an operating point (device_ops.cost).
 * The access trace is the weight stream of one inference batch: every region
 * in the order given, each region's rows in order, each row's bytes
 * [base_addr + r * row_stride, + row_stride) read once, in the device's
 * access unit (a 64-byte burst for a DDR rank). The batch shares that one
 * stream, so per-inference numbers are the stream's totals / batch. */
typedef struct device_cost {
    double energy_pj;        /* per inference, every domain the device models */
    double latency_ns;       /* per inference: the stream's time / batch */
    /* Device-specific details stored with the evaluation (docs/schema.md):
     * counts and energy parts, named in lower case with a unit suffix where
     * one applies ("act", "row_hits", "energy_act_pj", "cycles"). */
    int n_items;
    struct { const char *name; double value; } item[DEVICE_MAX_COST_ITEMS];
} device_cost;

/* Appends a detail item (ignored past DEVICE_MAX_COST_ITEMS). name must be a
 * string literal or otherwise outlive the cost. */
void device_cost_add(device_cost *c, const char *name, double value);

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
    /* The faults of one region of one chip at op (see contract above), as
     * logical bits of the region. `out` is reset to the region's bit count
     * first. */
    int (*faults)(const device *d, const double *op, uint64_t seed, uint32_t chip,
                  const device_region *region, fmap *out, apx_error *err);
    /* Optional (may be NULL): told once, before any faults() call, every
     * region the sweep will ask about (the placement is fixed for a plan), so
     * a device can keep only what lands in them: a replayed map of millions
     * of faults then costs memory for the faults that hit the weights, not
     * for the whole map. Called again before each job with the same regions
     * (it must return at once then) and with new ones if the regions change. */
    int (*prepare)(device *d, const device_region *regions, size_t n, apx_error *err);
    /* Optional (may be NULL): a hash of content that the config only names,
     * such as the fault-map files a replay device reads, so that the result
     * keys of a sweep change when that content changes. */
    uint64_t (*content_hash)(const device *d);
    /* Optional (may be NULL): the default of knob k (its nominal value, e.g.
     * a DRAM's nominal VDD from its config) for sweeps that leave it out.
     * Returns 1 and sets *value if the knob has a default, 0 if a sweep must
     * give it. */
    int (*knob_default)(const device *d, int knob, double *value);
    /* Optional (may be NULL): the energy and latency of streaming the regions
     * once for a batch of `batch` inferences at op (see device_cost). A pure
     * function of (device config, op, regions, batch); no chip dependence. */
    int (*cost)(const device *d, const double *op, const device_region *regions, size_t n,
                uint32_t batch, device_cost *out, apx_error *err);
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

/* The device section a config gives at `at` (a sweep's `device:`, a
 * training recipe's `flip.device`): the mapping itself, or, when `at` is a
 * scalar, the root of the YAML file it names (configs/devices/; read from
 * the current directory into *doc, which the caller frees). NULL when that
 * file cannot be read: an APX_EINPUT error that names at's position. */
const cfg_node *device_section(const cfg_node *at, cfg_doc **doc, apx_error *err);

/* Number of knobs of a device kind. */
int device_knob_count(const device_ops *ops);

#endif
