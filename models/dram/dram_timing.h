/* dram_timing.h - DRAM timing parameters and a cycle-approximate controller.
 *
 * Timings are held in ns (the datasheet's unit and what an operating point
 * changes: a reduced tRCD, a longer tRAS at low VDD) and converted to clock
 * cycles, rounding up, when a controller runs at an operating point. The
 * controller is an open-page FR-FCFS scheduler over per-bank state (open row
 * or closed), with the constraints of ../shared facts dram.md section 4:
 * tRCD, tRP, tRAS, tRC, CL, CWL, BL/2 data cycles, tCCD_S/L, tRRD_S/L, tFAW
 * (4 ACTs), tRTP, tWR, tWTR_S/L, and an all-bank REF of tRFC every tREFI. The
 * trace is the weight stream of one inference batch (device.h, device_cost).
 * docs/dram-timing-energy.md describes the controller, its rounding and
 * what it leaves out; sources of every default: the YAML files in
 * configs/devices/ and docs/dram-model.md. */
#ifndef APX_DRAM_TIMING_H
#define APX_DRAM_TIMING_H

#include <stddef.h>
#include <stdint.h>

#include "../../sim/config.h"
#include "../../sim/error.h"
#include "../geometry.h"

/* Limits that keep a run's memory and time bounded (hostile inputs): the
 * requests of one run (4 Mi bursts = 256 MiB of weights at 64 B a burst),
 * the queue depth, and the banks of a geometry (channels x ranks x bank
 * groups x banks) the controller keeps state for. */
#define DRAM_TIMING_MAX_REQUESTS (1u << 22)
#define DRAM_TIMING_MAX_QUEUE 4096u
#define DRAM_TIMING_MAX_BANKS 65536u

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
 * required. Unknown keys are refused (with a "did you mean"); every value is
 * range-checked and the set is checked for consistency as dram_timing_check
 * says. Errors name file:line:col of the offending value. */
int dram_timing_from_yaml(const cfg_node *node, dram_timing *t, apx_error *err);

/* Checks a timing set, wherever it came from (a config, an operating point):
 * tck in [0.1, 1000] ns; every time finite, positive and at most 1e9 ns; bl
 * a power of two in [2, 32]; tRC >= tRAS + tRP (short by less than half a
 * clock is accepted, the rounding of printed values); tCCD_L >= tCCD_S,
 * tRRD_L >= tRRD_S, tWTR_L >= tWTR_S; tREFI at least twice tRFC and longer
 * than every other time (a rank that refreshes more than it works is
 * outside the model, and this bounds the refreshes a run issues to a few
 * per request). Returns APX_EINPUT with a message naming the parameter. */
int dram_timing_check(const dram_timing *t, apx_error *err);

/* ns -> clock cycles, rounding up; a value within 1e-6 cycles above an
 * integer counts as that integer, so 17 x 0.833 ns is 17 cycles, not 18. */
uint64_t dram_ns_to_cycles(double ns, double tck);

/* What one run of the controller did. */
typedef struct dram_counts {
    uint64_t act, pre, rd, wr, ref;     /* ref: REF commands, one per rank */
    uint64_t row_hits, row_misses, row_conflicts; /* per column command */
    uint64_t cycles;            /* from the first request to the last data beat */
    uint64_t cycles_active;     /* rank-cycles with at least one bank of the
                                 * rank open (IDD3N); the rest of rank_cycles
                                 * is precharged standby (IDD2N) */
    uint64_t rank_cycles;       /* cycles x ranks (over all channels): the time
                                 * base of the background; 0 is read as
                                 * cycles (one rank) by dram_energy_of */
    double time_ns;             /* cycles * tck */
} dram_counts;

/* One request: a read or write of one burst at a byte address. */
typedef struct dram_request {
    uint64_t addr;
    int is_write;
} dram_request;

/* Runs the requests, which arrive all at time 0 in this order, through an
 * FR-FCFS open-page controller per channel, each with a queue of
 * `queue_depth` entries (a request enters when a slot frees, oldest first;
 * among queued requests a row hit goes first, then the oldest). Timings t
 * are checked (dram_timing_check) and converted to cycles of t->tck
 * (dram_ns_to_cycles). Addresses are decoded with geo (every address must
 * lie in the memory; all ranks of a channel share its command and data bus;
 * channels run independently and the run ends with the last of them).
 * Every rank gets an all-bank REF at each multiple of tREFI up to the end of
 * the run (refresh count = floor(cycles / tREFI) per rank), after PREs of
 * its open banks, which count as PREs. Rows stay open after the last
 * request (open page): no closing PRE is counted. At most
 * DRAM_TIMING_MAX_REQUESTS requests, queue_depth in [1,
 * DRAM_TIMING_MAX_QUEUE], at most DRAM_TIMING_MAX_BANKS banks. On error out
 * is unchanged. Deterministic. Cost O(n * queue_depth) plus O(banks) per
 * refresh. */
int dram_timing_run(const dram_timing *t, const geometry *geo, const dram_request *req,
                    size_t n, unsigned queue_depth, dram_counts *out, apx_error *err);

#endif
