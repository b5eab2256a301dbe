/* record.c - the fault map of one sweep point and chip, written as .fmap.
 *
 * The regions are built exactly as sweep_eval_job builds them, so the device
 * draws the very faults a sweep job injects. The logical bits come back in
 * region order, but cell order depends on the address mapping, so they go
 * through an fmap_sorter (bounded memory: it spills long runs next to the
 * output) before the writer. A device with a prepare hook (recording from a
 * replay sweep) is prepared with the same regions first. */
#include "record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int record_point(const sweep_plan *p, const sweep_workload *w, size_t point, uint32_t chip,
                 const char *path, fmap_totals *totals, apx_error *err) {
    if (point >= p->n_points)
        return apx_fail(err, APX_EINPUT, "point %zu does not exist (the plan has %zu)", point,
                        p->n_points);
    if (chip >= p->chips)
        return apx_fail(err, APX_EINPUT, "chip %u does not exist (the plan has %u)", chip,
                        p->chips);
    const bnn_model *m = &w->model;
    const geometry *geo = &p->geo;
    uint64_t image_bytes = m->image_words * 8, memory = geometry_bytes(geo);
    if (p->base_addr > memory || image_bytes > memory - p->base_addr)
        return apx_fail(err, APX_EINPUT,
                        "the model's %llu bytes of weights at base %llu do not fit in a memory "
                        "of %llu bytes",
                        (unsigned long long)image_bytes, (unsigned long long)p->base_addr,
                        (unsigned long long)memory);
    if (p->n_knobs > FMAP_MAX_KNOBS)
        return apx_fail(err, APX_EINPUT, "a .fmap provenance holds at most %d knobs, not %d",
                        FMAP_MAX_KNOBS, p->n_knobs);

    fmap_provenance prov;
    memset(&prov, 0, sizeof prov);
    prov.origin = FMAP_GENERATED;
    snprintf(prov.device, sizeof prov.device, "%s", p->dev->ops->kind);
    prov.n_knobs = (uint32_t)p->n_knobs;
    for (int k = 0; k < p->n_knobs; k++) {
        snprintf(prov.knob_name[k], sizeof prov.knob_name[k], "%s", p->dev->ops->knobs[k]);
        prov.knob_value[k] = p->points[point * p->n_knobs + k];
    }
    prov.seed = p->seed;
    prov.chip = chip;
    snprintf(prov.source, sizeof prov.source, "apxsim record");

    const double *op = &p->points[point * p->n_knobs];
    char spill[4096];
    if ((size_t)snprintf(spill, sizeof spill, "%s.spill", path) >= sizeof spill)
        return apx_fail(err, APX_EINPUT, "output path too long: %s", path);
    fmap_sorter *sorter = NULL;
    fmap_writer *writer = NULL;
    fmap fm;
    fmap_init(&fm, 0);
    int rc = fmap_sorter_create(&sorter, geo, spill, 0, err);
    if (rc == APX_OK && p->dev->ops->prepare) {
        /* a device with a prepare hook (a replay device) is told every region
         * first, as sweep_run does; preparing again for the same regions
         * costs nothing */
        device_region *regions = malloc((m->n_layers ? m->n_layers : 1) * sizeof *regions);
        if (!regions) rc = apx_fail(err, APX_EWORK, "out of memory");
        for (uint32_t l = 0; l < m->n_layers && rc == APX_OK; l++) {
            const bnn_layer *L = &m->layers[l];
            regions[l] = (device_region){l, L->out, L->in, p->base_addr + L->offset * 8,
                                         (uint64_t)L->words * 8, geo};
        }
        if (rc == APX_OK && p->dev->ops->prepare(p->dev, regions, m->n_layers, err))
            rc = apx_wrap(err, "preparing the %s device: ", p->dev->ops->kind);
        free(regions);
    }
    for (uint32_t l = 0; l < m->n_layers && rc == APX_OK; l++) {
        const bnn_layer *L = &m->layers[l];
        device_region where = {l, L->out, L->in, p->base_addr + L->offset * 8,
                               (uint64_t)L->words * 8, geo};
        if ((rc = p->dev->ops->faults(p->dev, op, p->seed, chip, &where, &fm, err))) {
            apx_wrap(err, "layer %u: ", l);
            break;
        }
        for (size_t i = 0; i < fm.n && rc == APX_OK; i++) {
            uint64_t row = fm.bit[i] / where.cols, col = fm.bit[i] % where.cols;
            uint64_t addr = where.base_addr + row * where.row_stride + col / 8;
            cell c;
            if ((rc = geometry_addr_to_cell(geo, addr, (unsigned)(col % 8), &c, err))) break;
            fmap_fault f = {geometry_cell_index(geo, &c), 0, FMAP_FOREVER, fm.kind[i]};
            rc = fmap_sorter_add(sorter, &f, err);
        }
        if (rc) apx_wrap(err, "layer %u: ", l);
    }
    fmap_free(&fm);
    if (rc == APX_OK) rc = fmap_writer_create(&writer, path, geo, &prov, err);
    if (rc == APX_OK) rc = fmap_sorter_drain(sorter, writer, err);
    fmap_sorter_free(sorter);
    if (rc == APX_OK) {
        rc = fmap_writer_commit(writer, totals, err);  /* frees the writer */
        writer = NULL;
    }
    fmap_writer_abort(writer);
    return rc;
}
