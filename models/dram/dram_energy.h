/* dram_energy.h - DRAM energy from command counts (DRAMPower-classic IDD
 * formulas, ../shared facts dram.md section 3.1) and the cost of streaming a
 * workload's weights (device.h, device_cost).
 *
 * Per device and voltage domain (VDD; VPP where ipp values are given):
 *   ACT  = VDD (IDD0 - IDD3N) tRAS          per ACT
 *   PRE  = VDD (IDD0 - IDD2N) (tRC - tRAS)  per PRE
 *   RD   = VDD (IDD4R - IDD3N) BL/2 tCK     per RD   (WR with IDD4W)
 *   REF  = VDD (IDD5B - IDD3N) tRFC         per REF
 *   background = VDD IDD3N over active cycles + VDD IDD2N over the others
 * times devices per rank. The command terms use the datasheet (nominal)
 * tRAS, tRC, tRFC and tCK, at which IDD0/IDD5B are defined, not the reduced
 * timings of an operating point; background uses the run's real cycles.
 * VDD scaling: every current scales as (VDD / VDD_nominal)^current_exponent
 * (default 1: currents proportional to VDD, energy to VDD^2; facts 3.5);
 * VPP is not scaled. */
#ifndef APX_DRAM_ENERGY_H
#define APX_DRAM_ENERGY_H

#include "../device.h"
#include "dram_timing.h"

typedef struct dram_power {
    double vdd, vpp;            /* nominal supply voltages (V); vpp 0 = no VPP domain */
    /* currents per device in mA */
    double idd0, idd2n, idd3n, idd4r, idd4w, idd5b;
    double ipp0, ipp3n;         /* VPP currents (0 if not given) */
    unsigned devices;           /* devices per rank (8 for a 64-bit rank of x8) */
    double current_exponent;    /* default 1 */
} dram_power;

/* Reads a `power:` mapping (keys as the fields; ipp0, ipp3n, vpp and
 * current_exponent optional). Unknown keys refused; ranges checked (IDD0 >
 * IDD3N >= IDD2N > 0, IDD4R/W > IDD3N, IDD5B > IDD3N). */
int dram_power_from_yaml(const cfg_node *node, dram_power *p, apx_error *err);

/* Energy in pJ by part, for the whole rank. */
typedef struct dram_energy {
    double act, pre, rd, wr, ref, background, vpp, total;
} dram_energy;

/* Energy of a run at supply voltage vdd. nominal holds the datasheet timing
 * (for the command terms), c the run's counts. */
void dram_energy_of(const dram_power *p, const dram_timing *nominal, const dram_counts *c,
                    double vdd, dram_energy *out);

/* An operating point's timing: nominal with trcd, trp, tras replaced (ns),
 * trc = tras + trp, and trefi = trefw_ms * 1e6 / 8192 (8192 REF commands per
 * refresh window, JEDEC DDR3/DDR4). */
void dram_timing_at(const dram_timing *nominal, double trcd, double trp, double tras,
                    double trefw_ms, dram_timing *out);

/* The device's cost op: builds the burst trace of the regions (device.h:
 * every row's bytes, in 64-byte... bus_bits/8 * bl bytes per burst, rows and
 * regions in order, bursts deduplicated only when consecutive), runs the
 * controller (queue depth 32) at the op's timing, and fills out with energy
 * and latency per inference (totals / batch) and the items act, pre, rd, ref,
 * row_hits, row_misses, row_conflicts, cycles, energy_{act,pre,rd,ref,
 * background,vpp}_pj (per inference). */
int dram_cost_of(const dram_power *p, const dram_timing *nominal, double vdd, double trcd,
                 double trp, double tras, double trefw_ms, const device_region *regions,
                 size_t n, uint32_t batch, device_cost *out, apx_error *err);

#endif
