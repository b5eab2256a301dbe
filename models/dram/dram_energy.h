/* dram_energy.h - DRAM energy from command counts (DRAMPower-classic IDD
 * formulas, ../shared facts dram.md section 3.1) and the cost of streaming a
 * workload's weights (device.h, device_cost).
 *
 * Per device, in the VDD domain (mA x V x ns = pJ):
 *   ACT  = VDD (IDD0 - IDD3N) tRAS          per ACT
 *   PRE  = VDD (IDD0 - IDD2N) (tRC - tRAS)  per PRE
 *   RD   = VDD (IDD4R - IDD3N) BL/2 tCK     per RD   (WR with IDD4W)
 *   REF  = VDD (IDD5B - IDD3N) tRFC         per REF (one all-bank REF of a rank)
 *   background = VDD IDD3N over active rank-cycles + VDD IDD2N over the
 *                others, times tCK
 * and in the VPP domain (only where vpp and ipp0 are given):
 *   VPP  = VPP (IPP0 - IPP3N) tRAS per ACT + VPP IPP3N over all rank-cycles
 * (IPP2N is not read: precharged standby is taken to draw IPP3N too). With
 * IPP3N left out (0) the ACT term is an upper bound (facts 3.4) and the VPP
 * standby is missing. Every term is multiplied by the devices per rank.
 * The command terms use the datasheet (nominal) tRAS, tRC, tRFC and tCK, at
 * which IDD0/IDD5B are defined, not the reduced timings of an operating
 * point; background uses the run's real cycles (the run keeps the nominal
 * tCK). VDD scaling: every VDD-domain current scales as (VDD /
 * VDD_nominal)^current_exponent (default 1: currents proportional to VDD,
 * energy to VDD^2; facts 3.5), so VDD-domain energy scales as
 * (VDD / VDD_nominal)^(1 + current_exponent); VPP is not scaled. Not
 * modelled: I/O and termination energy, power-down and self-refresh.
 * docs/dram-timing-energy.md shows the formulas worked through. */
#ifndef APX_DRAM_ENERGY_H
#define APX_DRAM_ENERGY_H

#include "../device.h"
#include "dram_timing.h"

/* The controller's queue depth for dram_cost_of. */
#define DRAM_COST_QUEUE_DEPTH 32u

typedef struct dram_power {
    double vdd, vpp;            /* nominal supply voltages (V); vpp 0 = no VPP domain */
    /* currents per device in mA */
    double idd0, idd2n, idd3n, idd4r, idd4w, idd5b;
    double ipp0, ipp3n;         /* VPP currents (0 if not given) */
    unsigned devices;           /* devices per rank (8 for a 64-bit rank of x8) */
    double current_exponent;    /* default 1 (set it when filling the struct by hand) */
} dram_power;

/* Reads a `power:` mapping (keys as the fields; ipp0, ipp3n, vpp and
 * current_exponent optional). Unknown keys refused; ranges checked (vdd in
 * (0, 10] V, vpp in [0, 10] V, currents in [0, 1e5] mA, devices in [1, 1024],
 * current_exponent in [0, 4]) and consistency (IDD0 > IDD3N >= IDD2N > 0,
 * IDD4R/W > IDD3N, IDD5B > IDD3N, IPP0 >= IPP3N; ipp0/ipp3n need vpp and vpp
 * needs ipp0). Errors name file:line:col. */
int dram_power_from_yaml(const cfg_node *node, dram_power *p, apx_error *err);

/* Energy in pJ by part, for the whole memory (every rank's devices). */
typedef struct dram_energy {
    double act, pre, rd, wr, ref, background, vpp, total;
} dram_energy;

/* Energy of a run at supply voltage vdd. nominal holds the datasheet timing
 * (for the command terms and tCK), c the run's counts. */
void dram_energy_of(const dram_power *p, const dram_timing *nominal, const dram_counts *c,
                    double vdd, dram_energy *out);

/* An operating point's timing: nominal with trcd, trp, tras replaced (ns),
 * trc = tras + trp, and trefi = trefw_ms * 1e6 / 8192 (8192 REF commands per
 * refresh window, JEDEC DDR3/DDR4). Not checked here: dram_timing_run
 * checks what it runs. */
void dram_timing_at(const dram_timing *nominal, double trcd, double trp, double tras,
                    double trefw_ms, dram_timing *out);

/* The device's cost op: builds the burst trace of the regions, runs the
 * controller (queue depth DRAM_COST_QUEUE_DEPTH) at the op's timing and
 * fills out with energy and latency per inference (totals / batch) and the
 * items act, pre, rd, ref, row_hits, row_misses, row_conflicts, cycles,
 * energy_{act,pre,rd,ref,background,vpp}_pj (all per inference; the
 * energy items sum to energy_pj).
 * The trace: a burst is bus_bits/8 * bl aligned bytes (64 B for a 64-bit
 * bus and BL8). A region's rows are read in order, each row's bytes
 * [base_addr + r * row_stride, + row_stride), so the region reads the span
 * [base_addr, base_addr + rows * row_stride) in address order, one read per
 * burst it touches; regions follow in the order given and a burst equal to
 * the one just before (a region starting in the burst where the previous
 * ended) is read once. Every region must use one geometry whose mapping puts
 * at least log2(bl) column bits right above the bus-word offset (so that an
 * aligned burst is one DRAM burst: e.g. "RoBaBgCoCh" with one channel, or
 * "RoBaBgChCo"); spans must lie in the memory and row_stride * 8 >= cols.
 * At most DRAM_TIMING_MAX_REQUESTS bursts. No regions (or empty ones) cost
 * nothing. On error out is unchanged. */
int dram_cost_of(const dram_power *p, const dram_timing *nominal, double vdd, double trcd,
                 double trp, double tras, double trefw_ms, const device_region *regions,
                 size_t n, uint32_t batch, device_cost *out, apx_error *err);

#endif
