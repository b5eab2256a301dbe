/* dram_timing.h - DRAM timing parameters and a cycle-approximate controller.
 *
 * Timings are held in ns (the datasheet's unit and what an operating point
 * changes: a reduced tRCD, a longer tRAS at low VDD) and converted to clock
 * cycles, rounding up, when a controller runs at an operating point. The
 * controller is an open-page FR-FCFS scheduler over per-bank state (open row
 * or closed), with the constraints of ../shared facts dram.md section 4:
 * tRCD, tRP, tRAS, tRC, CL, CWL, BL/2 data cycles, tCCD_S/L, tRRD_S/L, tFAW
 * (4 ACTs), tRTP, tWR, and an all-bank REF of tRFC every tREFI. The trace is
 * the weight stream of one inference batch (device.h, device_cost). Sources
 * of every default: configs/devices/*.yaml and docs/dram-model.md. */
#ifndef APX_DRAM_TIMING_H
#define APX_DRAM_TIMING_H

#include <stddef.h>
#include <stdint.h>

#include "../../sim/config.h"
#include "../../sim/error.h"
#include "../geometry.h"

/* All times in ns except bl (beats per burst). */
typedef struct dram_timing {
    double tck;                 /* clock period */
    double cl, cwl;             /* read / write latency */
    double trcd, trp, tras, trc;
    double tccd_s, tccd_l;      /* column to column, other / same bank group */
    double trrd_s, trrd_l;      /* ACT to ACT, other / same bank group */
    double tfaw;                /* window of four ACTs per rank */
    double trtp, twr, twtr_s, twtr_l;
    double trfc, trefi;         /* refresh: blackout, interval */
    unsigned bl;                /* burst length in beats (8 for DDR3/DDR4) */
} dram_timing;

/* Reads a `timing:` mapping: every key above (ns; `bl` an integer), all
 * required, each checked for range (positive, tRC >= tRAS + tRP within
 * rounding, tREFI > tRFC). Unknown keys are refused. */
int dram_timing_from_yaml(const cfg_node *node, dram_timing *t, apx_error *err);

/* What one run of the controller did. */
typedef struct dram_counts {
    uint64_t act, pre, rd, wr, ref;
    uint64_t row_hits, row_misses, row_conflicts; /* per column command */
    uint64_t cycles;            /* from the first request to the last data beat */
    uint64_t cycles_active;     /* cycles with at least one bank open (IDD3N) */
    double time_ns;             /* cycles * tck */
} dram_counts;

/* One request: a read or write of one burst at a byte address. */
typedef struct dram_request {
    uint64_t addr;
    int is_write;
} dram_request;

/* Runs the requests, which arrive all at time 0 in this order, through an
 * FR-FCFS open-page controller with a queue of `queue_depth` entries (a
 * request enters when a slot frees, oldest first; among queued requests a
 * row hit goes first, then the oldest). Timings t are converted to cycles of
 * t->tck (rounded up). Addresses are decoded with geo (all channels and
 * ranks share one command bus per channel; channels run independently and
 * the run ends with the last of them). Rows stay open after the last
 * request (open page): no closing PRE is counted. Deterministic. Cost
 * O(n * queue_depth). */
int dram_timing_run(const dram_timing *t, const geometry *geo, const dram_request *req,
                    size_t n, unsigned queue_depth, dram_counts *out, apx_error *err);

#endif
