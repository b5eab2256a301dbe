/* dram_errors.h - the DRAM error model: per-chip critical parameters, nested
 * over operating points, drawn at a cost proportional to the faults.
 *
 * Operating point (knobs of the `dram` device, in this order):
 *   vdd (V), trcd (ns), trp (ns), tras (ns), trefw (ms, the refresh window:
 *   the longest time a cell goes unrefreshed; 64 nominal), temperature (C),
 *   time_s (s since deployment; selects the VRT state and the read).
 *
 * Mechanisms. A cell fails in mechanism m iff its fixed critical value
 * u_m ~ U(0,1) is below w_m(cell) * G_m(op, chip, bank) (rule 2: harsher
 * points raise G, so a chip fails supersets). u comes from models/nested.h,
 * listed per aligned block of DRAM_BLOCK_BITS address bits at the highest rate
 * of the block, then thinned (rule 3).
 *
 * 1. Activation (reduced tRCD, and reduced VDD through the voltage-latency
 *    coupling). A cell's critical tRCD at nominal VDD is drawn from a mixture
 *    of a bulk and a weak population, each normal in ns, truncated at the
 *    guard (cells needing more are screened out at manufacturing test):
 *        S_a(t) = P(t_crit > t)
 *               = [(1-f_w) Phi((mu_b - t)/s_b) + f_w Phi((mu_w - t)/s_w)]
 *                 - [same at guard]         for t < guard, 0 otherwise
 *    At VDD < nominal, sensing is slower: the effective latency is
 *        t_eff = trcd / (s(VDD) * c_chip * c_bank),
 *        s(V) = ((V_nom - V_t) / (V - V_t))^alpha      (V > V_t; s(V_nom) = 1)
 *    where c_chip = exp(sigma_chip z_chip) and c_bank = exp(sigma_bank z_bank)
 *    (z standard normal from the chip seed; a weak chip has c > 1), and
 *    G_a = S_a(t_eff). With the guard at or below the nominal tRCD, nominal
 *    voltage and timing give zero faults.
 * 2. Precharge (reduced tRP): the same with its own parameters and
 *    t_eff = trp / (s_p(VDD) c_chip c_bank).
 * 3. Retention (extended refresh window, temperature): with
 *        t = trefw * exp(ln(k_10) (T - T_ref) / 10)   (k_10: factor per 10 C)
 *        G_r = b_ref (t / t_ref)^beta    for t > t_min, 0 otherwise,
 *    a power-law tail (beta ~ 6) with no failures up to t_min; times c_bank.
 *    Retention fails only the charged state: always data-dependent.
 * 4. Variable retention time: a separate population of rate
 *    f_vrt * G_r * (low state ? ratio^beta : 1); a VRT cell is in its low
 *    state during time window floor(time_s / dwell_s) with probability duty
 *    (a hash of cell and window).
 * 5. Transient per-read failures of marginal cells (activation and
 *    precharge): a cell with w G <= u < band w G fails on a read with
 *    probability p_read, a hash of (cell, read) where the read is named by
 *    time_s. Nested for a fixed read.
 *
 * Spatial weights w_m(cell) (activation and precharge; retention uses 1):
 * the product of a column factor (period column_period columns of the bus
 * word, high in the first half, low = 1/contrast in the second, phase
 * shifted by column_phase; DIVA: period 256 columns = 32 cache lines), a row
 * factor by position in the subarray (1 + row_ramp * (r mod subarray_rows) /
 * subarray_rows, times edge_boost in the first edge_rows rows), and weak
 * bitlines and wordlines (a fraction of bitlines / wordlines, chosen by a
 * hash of their coordinates and the chip, multiplies w by a factor);
 * normalised to mean 1 over a period. w_max is the product of the factors'
 * maxima.
 *
 * Direction: a failing cell reads its discharged value. Whether a cell is a
 * true cell (charged = 1, kind FAULT_DD1) or an anti cell (charged = 0,
 * FAULT_DD0) follows the layout (all true, all anti, or stripes of `stripe`
 * rows or columns). Activation and precharge failures are data-dependent
 * like retention unless `data_dependent: false` (then FAULT_FLIP). A cell
 * failing in several mechanisms gets FLIP if any says FLIP, else its DD kind.
 *
 * Calibration (docs/dram-model.md, scripts/calibrate_dram.py) fits these
 * parameters to the Voltron and DIVA data; the data count bit errors under
 * test patterns in which a fraction `test_vulnerable` (0.5) of the cells hold
 * their vulnerable value, so observed BER = test_vulnerable * P(fail). */
#ifndef APX_DRAM_ERRORS_H
#define APX_DRAM_ERRORS_H

#include <stdint.h>

#include "../../faultmaps/fmap.h"
#include "../../sim/config.h"
#include "../../sim/error.h"
#include "../device.h"

#define DRAM_BLOCK_BITS 32768u  /* address bits per nested-draw block (4 KiB) */

enum dram_knob { DK_VDD, DK_TRCD, DK_TRP, DK_TRAS, DK_TREFW, DK_TEMP, DK_TIME, DK_COUNT };

typedef struct dram_latency_dist {   /* critical latency at nominal VDD (ns) */
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

/* Reads an `errors:` mapping (docs/dram-model.md lists every key, its
 * default and its source); vdd_nominal comes from the caller. Unknown keys
 * refused, ranges checked. Missing mechanisms are off (their rate is 0). */
int dram_error_params_from_yaml(const cfg_node *node, double vdd_nominal,
                                dram_error_params *p, apx_error *err);

/* The faults of one region of one chip at op (DK_COUNT values), as logical
 * bits of the region (device.h contract). */
int dram_errors_faults(const dram_error_params *p, const double *op, uint64_t seed,
                       uint32_t chip, const device_region *region, fmap *out, apx_error *err);

/* Analytic expectations for calibration and tests, for a chip with
 * z_chip = z and bank factor 1, averaged over the spatial weights:
 *   - the probability that a cell fails (any mechanism, transient reads
 *     excluded);
 *   - the fraction of 64-byte lines (512 cells of one row) with at least one
 *     observed error when test_vulnerable of the cells hold their
 *     vulnerable value. */
double dram_errors_expected_fail(const dram_error_params *p, const double *op, double z);
double dram_errors_expected_line_fraction(const dram_error_params *p, const double *op,
                                          double z);

#endif
