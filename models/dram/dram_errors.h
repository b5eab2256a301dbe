/* dram_errors.h - the DRAM error model: per-chip critical parameters, nested
 * over operating points, drawn at a cost proportional to the faults.
 *
 * Operating point (knobs of the `dram` device, in this order):
 *   vdd (V), trcd (ns), trp (ns), tras (ns), trefw (ms, the refresh window:
 *   the longest time a cell goes unrefreshed; 64 nominal), temperature (C),
 *   time_s (s since deployment; selects the VRT state and the read).
 * tras enters the cost only: no mechanism below depends on it.
 *
 * Mechanisms. A cell fails in mechanism m iff its fixed critical value
 * u_m ~ U(0,1) is below w_m(cell) * G_m(op, chip, bank) (rule 2: harsher
 * points raise G, so a chip fails supersets). u comes from models/nested.h,
 * listed per aligned block of DRAM_BLOCK_BITS address bits at the highest rate
 * of the block, then thinned (rule 3). Each mechanism has its own u (its own
 * streams), so a cell fails if any mechanism says so.
 *
 * 1. Activation (reduced tRCD, and reduced VDD through the voltage-latency
 *    coupling). A cell's critical tRCD at nominal VDD is drawn from a mixture
 *    of a bulk and a weak population, each normal in ns:
 *        S(t) = (1-f_w) Phi((mu_b - t)/s_b) + f_w Phi((mu_w - t)/s_w)
 *    At VDD < nominal, sensing is slower: the effective latency is
 *        t_eff = trcd / (s(VDD) * c_chip * c_bank),
 *        s(V) = ((V_nom - V_t) / (V - V_t))^alpha      (V > V_t; s(V_nom) = 1)
 *    where c_chip = exp(sigma_chip z_chip) and c_bank = exp(sigma_bank z_bank)
 *    (z standard normal from the chip seed; a weak chip has c > 1). Cells
 *    that need more than `guard` at nominal VDD on their chip and bank are
 *    screened out at manufacturing test, so a cell fails iff
 *    t_eff < t_crit <= guard / (c_chip c_bank):
 *        G_a = S(t_eff) - S(guard / (c_chip c_bank))   when positive, else 0.
 *    With the guard at or below the nominal tRCD, nominal voltage and timing
 *    give zero faults on every chip.
 * 2. Precharge (reduced tRP): the same with its own parameters and
 *    t_eff = trp / (s_p(VDD) c_chip c_bank).
 * 3. Retention (extended refresh window, temperature): with
 *        t = trefw * exp(ln(k_10) (T - T_ref) / 10)   (k_10: factor per 10 C)
 *        G_r = b_ref (t / t_ref)^beta * c_bank    for t > t_min, 0 otherwise,
 *    a power-law tail (beta ~ 6) with no failures up to t_min (in the
 *    temperature-scaled t: at T > T_ref failures start below t_min). b_ref is
 *    the probability that a cell fails when it holds its charged value.
 *    Retention fails only the charged state: always data-dependent.
 * 4. Variable retention time: a separate population of rate
 *    f_vrt * G_r * (low state ? ratio^beta : 1); a VRT cell is in its low
 *    state during time window floor(time_s / dwell_s) with probability duty
 *    (a hash of cell and window). Nested at a fixed time_s. Data-dependent.
 * 5. Transient per-read failures of marginal cells (activation and
 *    precharge): a cell with w G <= u < band w G fails on a read with
 *    probability p_read, a hash of (cell, read) where the read is named by
 *    time_s (its exact value: two different time_s are two reads). Nested
 *    for a fixed read.
 * A mechanism missing from the config is off: activation / precharge have
 * `enabled` 0, retention has ret_ber_ref 0, VRT vrt_fraction 0, transient
 * transient_band 1 or transient_p_read 0.
 *
 * Spatial weights w(cell) (activation and precharge; retention uses 1):
 * the product of a column factor (period column_period columns of the bus
 * word, high in the first half, low = high / contrast in the second, phase
 * shifted by column_phase: column c is high iff (c + phase) mod period <
 * period / 2; DIVA: period 256 columns = 32 cache lines), a row factor by
 * position in the subarray (1 + row_ramp * (r mod subarray_rows) /
 * subarray_rows, times edge_boost in the first edge_rows rows), and weak
 * bitlines and wordlines (a fraction of bitlines / wordlines, chosen by a
 * hash of their coordinates and the chip, multiplies w by a factor; a
 * bitline is (bank, subarray, column, bit), a wordline (bank, row)); each
 * factor is normalised to mean 1 (over a period, a subarray, and in
 * expectation for the weak lines).
 *
 * Direction: a failing cell reads its discharged value. Whether a cell is a
 * true cell (charged = 1, kind FAULT_DD1) or an anti cell (charged = 0,
 * FAULT_DD0) follows the layout (all true, all anti, or stripes of `stripe`
 * rows or columns, the first stripe true). Activation and precharge failures
 * are data-dependent like retention unless `data_dependent: false` (then
 * FAULT_FLIP). A cell failing in several mechanisms gets FLIP if any says
 * FLIP, else its DD kind; so with data_dependent false a harsher point may
 * turn a DD fault into a FLIP (it fails for more stored values), never the
 * reverse.
 *
 * Keys (rule 1): u of mechanism m at address bit a comes from the stream
 * (seed, chip, m, block a / DRAM_BLOCK_BITS), position a mod DRAM_BLOCK_BITS;
 * z_chip, z_bank, weak lines, VRT states and reads from Philox keyed by
 * (seed, chip) and a purpose. So a cell's fate depends on its address, never
 * on the region that asked, the order of calls or the other regions.
 *
 * Calibration (docs/dram-model.md, scripts/calibrate_dram.py) fits these
 * parameters to the Voltron and DIVA data; the data count bit errors under
 * test patterns in which a fraction `test_vulnerable` (0.5) of the cells hold
 * their vulnerable value, so observed BER = test_vulnerable * P(fail) (when
 * every failure is data-dependent). docs/dram-errors.md lists every key of
 * the `errors:` section, its default and its source. */
#ifndef APX_DRAM_ERRORS_H
#define APX_DRAM_ERRORS_H

#include <stdint.h>

#include "../../faultmaps/fmap.h"
#include "../../sim/config.h"
#include "../../sim/error.h"
#include "../device.h"

#define DRAM_BLOCK_BITS 8192u   /* address bits per nested-draw block (1 KiB): half the *
                                 * DIVA column period of the default mapping, so that a *
                                 * block sees one column class */

enum dram_knob { DK_VDD, DK_TRCD, DK_TRP, DK_TRAS, DK_TREFW, DK_TEMP, DK_TIME, DK_COUNT };

typedef struct dram_latency_dist {   /* critical latency at nominal VDD (ns) */
    int enabled;                    /* 0: the mechanism is off */
    double bulk_mu, bulk_sigma;
    double weak_fraction, weak_mu, weak_sigma;
    double guard;                   /* no cell needs more than this */
    double v_threshold, alpha;      /* s(V) */
} dram_latency_dist;

typedef struct dram_error_params {
    double vdd_nominal;
    dram_latency_dist act, pre;
    double sigma_chip, sigma_bank;
    /* retention */
    double ret_t_min_ms, ret_t_ref_ms, ret_ber_ref, ret_beta, ret_temp_ref, ret_k10;
    /* VRT and transient */
    double vrt_fraction, vrt_ratio, vrt_dwell_s, vrt_duty;
    double transient_band, transient_p_read;
    /* spatial */
    uint32_t column_period, column_phase;
    double column_contrast;
    uint32_t subarray_rows, edge_rows;
    double row_ramp, edge_boost;
    double weak_bitline_fraction, weak_bitline_factor;
    double weak_wordline_fraction, weak_wordline_factor;
    /* direction */
    enum { DRAM_TRUE_CELLS, DRAM_ANTI_CELLS, DRAM_ROW_STRIPES, DRAM_COLUMN_STRIPES } layout;
    uint32_t stripe;
    int data_dependent;
    double test_vulnerable;
} dram_error_params;

/* Reads an `errors:` mapping (docs/dram-errors.md lists every key, its
 * default and its source); vdd_nominal comes from the caller. node may be
 * NULL: every mechanism off. Unknown keys refused, ranges checked, errors
 * positioned. Missing mechanisms are off (their rate is 0). */
int dram_error_params_from_yaml(const cfg_node *node, double vdd_nominal,
                                dram_error_params *p, apx_error *err);

/* Range-checks an operating point (DK_COUNT values) against p: positive
 * latencies (at most 1e6 ns), vdd above the v_threshold of every enabled
 * latency mechanism and at most 1.5 * vdd_nominal, trefw in (0, 1e7] ms,
 * temperature in [-40, 125] C, time_s in [0, 1e12]. `at` positions the error
 * (may be NULL). */
int dram_errors_check_point(const dram_error_params *p, const double *op, const cfg_node *at,
                            apx_error *err);

/* The faults of one region of one chip at op (DK_COUNT values), as logical
 * bits of the region (device.h contract). The region must lie inside its
 * geometry (region->geo, required) with rows that do not overlap. */
int dram_errors_faults(const dram_error_params *p, const double *op, uint64_t seed,
                       uint32_t chip, const device_region *region, fmap *out, apx_error *err);

/* What one dram_errors_faults call did, for tests and benchmarks of rule 3:
 * the work is the positions the nested draws listed (candidates) plus a
 * constant per draw. */
typedef struct dram_errors_stats {
    uint64_t blocks;      /* blocks visited */
    uint64_t draws;       /* nested draws: blocks x mechanisms with a non-zero rate */
    uint64_t candidates;  /* positions listed by the draws */
} dram_errors_stats;

/* dram_errors_faults that also fills *stats (if not NULL). */
int dram_errors_faults_stats(const dram_error_params *p, const double *op, uint64_t seed,
                             uint32_t chip, const device_region *region, fmap *out,
                             dram_errors_stats *stats, apx_error *err);

/* The chip's z_chip (standard normal, a pure function of seed and chip). */
double dram_errors_chip_z(uint64_t seed, uint32_t chip);

/* Analytic expectations for calibration and tests, for a chip with
 * z_chip = z and bank factor 1, averaged over the spatial weights (a column
 * period, a subarray, the weak-line fractions):
 *   - the probability that a cell fails (any mechanism, transient reads
 *     excluded, VRT averaged over its states);
 *   - the fraction of 64-byte lines (512 cells of one row: 8 consecutive
 *     columns of a 64-bit bus word) with at least one observed error when
 *     test_vulnerable of the cells hold their vulnerable value (a FLIP
 *     failure is always observed). */
double dram_errors_expected_fail(const dram_error_params *p, const double *op, double z);
double dram_errors_expected_line_fraction(const dram_error_params *p, const double *op,
                                          double z);

#endif
