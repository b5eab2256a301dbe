#include "device.h"

#include <stdio.h>
#include <string.h>

extern const device_ops uniform_device_ops, replay_device_ops, dram_device_ops, rram_device_ops;

const device_ops *const device_registry[] = {
    &uniform_device_ops,
    &replay_device_ops,
    &dram_device_ops,
    &rram_device_ops,
    NULL,
};

const device_ops *device_find(const char *kind) {
    for (const device_ops *const *d = device_registry; *d; d++)
        if (strcmp((*d)->kind, kind) == 0) return *d;
    return NULL;
}

const cfg_node *device_section(const cfg_node *at, cfg_doc **doc, apx_error *err) {
    *doc = NULL;
    if (at->kind != CFG_SCALAR) return at;
    if (!(*doc = cfg_load_file(at->scalar, err))) {
        apx_wrap(err, "%s:%d:%d: device: ", at->file, at->line, at->col);
        err->code = APX_EINPUT; /* a missing or unreadable file the config names */
        return NULL;
    }
    return cfg_root(*doc);
}

int device_create(const cfg_node *node, device **out, apx_error *err) {
    *out = NULL;
    if (!node || node->kind != CFG_MAP)
        return node ? cfg_fail(node, err, "device must be a mapping with a 'kind'")
                    : apx_fail(err, APX_EINPUT, "the config has no 'device' section");
    const char *kind;
    if (cfg_get_string(node, "kind", 1, NULL, &kind, err)) return err->code;
    const device_ops *ops = device_find(kind);
    if (!ops) {
        char known[256] = "";
        for (const device_ops *const *d = device_registry; *d; d++) {
            strncat(known, known[0] ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, (*d)->kind, sizeof known - strlen(known) - 1);
        }
        return cfg_fail(cfg_find(node, "kind"), err, "unknown device kind '%s' (known: %s)",
                        kind, known);
    }
    return ops->create(node, out, err);
}

void device_destroy(device *d) {
    if (d) d->ops->destroy(d);
}

int device_knob_count(const device_ops *ops) {
    int n = 0;
    while (ops->knobs[n]) n++;
    return n;
}

void device_cost_add(device_cost *c, const char *name, double value) {
    if (c->n_items >= DEVICE_MAX_COST_ITEMS) return;
    c->item[c->n_items].name = name;
    c->item[c->n_items].value = value;
    c->n_items++;
}
