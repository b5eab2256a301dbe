/* record.h - keeping the fault maps of a sweep point as .fmap files.
 *
 * record_point asks the plan's device for the faults of every weight tensor
 * of the workload's model at one operating point and chip, exactly as
 * sweep_eval_job does (same regions, seed and chip), turns each region's
 * logical bits into byte addresses (base_addr + row * row_stride + col / 8,
 * bit col % 8) and then into cells of the plan's geometry, and writes them
 * sorted to one .fmap file (faultmaps/fmap_file.h) with the provenance
 * "generated": device kind, knob names and values, seed and chip, source
 * "apxsim record". Replaying that file with the replay device on the same
 * geometry and base address gives the same faulty weights bit for bit. */
#ifndef APX_RECORD_H
#define APX_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../faultmaps/fmap_file.h"
#include "error.h"
#include "sweep.h"

/* Writes the map of (point, chip) of plan to path (through path.tmp and a
 * rename). Only w->model is used (the data set may be empty). totals may be
 * NULL. */
int record_point(const sweep_plan *plan, const sweep_workload *w, size_t point, uint32_t chip,
                 const char *path, fmap_totals *totals, apx_error *err);

#endif
