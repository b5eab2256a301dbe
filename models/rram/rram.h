/* rram.h - the RRAM device: lognormal cell states, 1T1R and 2T2R sensing,
 * relaxation, endurance, read disturb and stuck-at cells, nested per chip.
 *
 * docs/rram-model.md derives and cites everything below; configs/devices/
 * rram-*.yaml hold the parameters with their sources.
 *
 * Operating point (knobs of the `rram` device, in this order):
 *   energy_pj  programming energy per stored bit (pJ); default: the config's
 *              condition `nominal`
 *   pulse_ns   programming pulse width (ns); default program.pulse_ns
 *   time_s     time since programming (s); default 0
 *   cycles     program/erase cycles the cells went through before this
 *              programming (wear); default 0
 *   reads      reads of each cell since programming (read disturb); default 0
 *   v_read     read voltage (V); default read.v_read
 *
 * Programming condition. A bit is programmed by one pulse per device (1T1R:
 * one device; 2T2R: the pair, one SET and one RESET) of width t at v_prog
 * through the compliance current I, so energy_pj = n_dev v_prog I t, and
 *     I = 1000 energy_pj / (n_dev v_prog pulse_ns)   (uA).
 *
 * Cell states (natural log of the resistance, x = ln(I / i_ref), c =
 * log10(1 + cycles), d = ln(1 + time_s / t0)):
 *     mu_L = ln r_lrs - a_L x + e_L c + v_L d
 *     mu_H = ln r_hrs + a_H x - e_H c - v_H d
 *     s0   = (I / i_ref)^(-b) (1 + e_s c)
 *     sigma_L = hypot(sigma_lrs s0, w_L d),  sigma_H = hypot(sigma_hrs s0, w_H d)
 * Weaker programming and more wear narrow the window and widen the spreads;
 * relaxation moves both states toward each other (NeuroSim's fixed-direction
 * drift, a power law t^v in the resistance) and widens them.
 *
 * Sensing (weight bit 1 = LRS; 2T2R: bit 1 = LRS on the true bitline):
 *   1T1R against a reference trimmed when the array is programmed, at the
 *   point where both directions err equally for the as-programmed states
 *   (d = 0): ln R_ref = (sH mu_L + sL mu_H) / (sL + sH), sL, sH at d = 0.
 *       p10 = Phi((mu_L - ln R_ref) / sigma_L)     stored 1 reads 0
 *       p01 = Phi((ln R_ref - mu_H) / sigma_H)     stored 0 reads 1
 *   2T2R, precharge sense amplifier comparing the pair:
 *       p10 = p01 = Phi(-(mu_H - mu_L) / hypot(sigma_L, sigma_H))
 *   At d = 0 the 2T2R rate is below the 1T1R rate for any parameters
 *   (hypot(sL, sH) < sL + sH). A point where a margin is not positive (a
 *   median past the reference, or the pair's medians crossed) is outside
 *   the model and refused.
 *
 * Faults of a chip (rules 1-3 of docs/DESIGN.md). Every cell (1T1R) or pair
 * (2T2R) has a fixed quantile u ~ U(0,1) per mechanism, the same at every
 * operating point (quantile coupling: its rank among the chip's cells), and
 * fails a stored 1 iff u < rate10(op), a stored 0 iff u < rate01(op). Every
 * rate grows with every harsher knob, so harsher points fail supersets. One
 * u serves both directions: a cell holds one value per programming, so only
 * one direction is ever exercised, and the map holds no fault that no data
 * could show. The cells come from models/nested.h, keyed by (seed, chip,
 * mechanism, aligned block of RRAM_BLOCK_BITS address bits): a cell is named
 * by its address, whichever tensor sits there.
 *   - sensing: rates p10, p01; a cell below both is FAULT_FLIP, below p10
 *     only FAULT_DD1 (only a stored 1 fails), below p01 only FAULT_DD0
 *     (2T2R: p10 = p01, so every sensing fault is a flip);
 *   - read disturb: a device in HRS is pulled toward LRS with probability
 *     p_read(v_read) = disturb_per_read exp((v_read - read.v_read) / slope)
 *     per read, so a cell is disturbed after n reads with probability
 *     1 - (1 - p_read)^n (1T1R: only a stored 0, held in HRS; 2T2R: either
 *     value, as one device of the pair is always in HRS);
 *   - stuck-at cells (FAULT_STUCK0 / FAULT_STUCK1, whatever the op) at the
 *     rates sa0 w(cell), sa1 w(cell), with w the clustering weight of weak
 *     bitlines and wordlines (normalised to mean 1); they override the rest.
 *
 * Arrays. The geometry's channel x rank x bank group x bank cells are the
 * subarrays, its rows the wordlines, its columns x bus bits the bitlines of
 * a subarray. A read access is one bus word of one wordline.
 *
 * Cost (device.h): per inference, the stream's bus words times bus bits
 * times devices per bit times rram_read_energy_pj, and the accesses times
 * read.latency_ns / read.parallel_subarrays; programming is once per
 * deployment, so it enters the items (program_energy_pj_per_bit,
 * program_energy_pj_once for every weight bit), not energy_pj. */
#ifndef APX_RRAM_H
#define APX_RRAM_H

#include <stddef.h>
#include <stdint.h>

#include "../../sim/config.h"
#include "../../sim/error.h"
#include "../device.h"

#define RRAM_BLOCK_BITS 32768u      /* address bits per nested-draw block (4 KiB) */
#define RRAM_MAX_CONDITIONS 16
#define RRAM_NAME_LEN 32

typedef enum rram_cell { RRAM_1T1R, RRAM_2T2R } rram_cell;

enum rram_knob { RK_ENERGY, RK_PULSE, RK_TIME, RK_CYCLES, RK_READS, RK_VREAD, RK_COUNT };

typedef struct rram_params {
    rram_cell cell;
    /* program: */
    double v_prog;              /* V */
    double pulse_ns;            /* nominal pulse width (default of the knob) */
    double pulse_min_ns;        /* shortest pulse that completes a switch */
    /* states: at the reference compliance current */
    double i_ref_ua, r_lrs_ohm, r_hrs_ohm, sigma_lrs, sigma_hrs;
    double lrs_current_exponent, hrs_current_exponent, sigma_current_exponent;
    /* endurance: per decade of cycles */
    double lrs_per_decade, hrs_per_decade, sigma_per_decade;
    /* drift: per e-fold of (1 + t / t0) */
    double t0_s, lrs_per_efold, hrs_per_efold, sigma_lrs_per_efold, sigma_hrs_per_efold;
    /* read: */
    double v_read, read_energy_pj, read_latency_ns, parallel_subarrays;
    double disturb_per_read, disturb_v_slope;
    /* stuck: */
    double sa0, sa1, bitline_fraction, bitline_factor, wordline_fraction, wordline_factor;
    /* conditions: named programming energies per bit; [0] is `nominal` */
    size_t n_conditions;
    char condition_name[RRAM_MAX_CONDITIONS][RRAM_NAME_LEN];
    double condition_energy_pj[RRAM_MAX_CONDITIONS];
} rram_params;

/* The states at a programming condition and time (see above). ln_ref is the
 * 1T1R reference (it depends on the as-programmed states only). */
typedef struct rram_states {
    double mu_lrs, sigma_lrs, mu_hrs, sigma_hrs, ln_ref;
} rram_states;

/* Fault rates at an operating point. p10, p01: sensing, per direction;
 * disturb10, disturb01: read disturb, per direction; margin10/01: the
 * sensing margins (p = Phi(-margin)), positive wherever the model holds.
 * ber10, ber01: the probability that a stored 1 reads 0 (a stored 0 reads 1)
 * from every mechanism, the mean stuck-at fractions included; ber: their
 * mean, the bit error rate of data with equally many 0s and 1s. */
typedef struct rram_rates {
    double current_ua;
    double p10, p01, disturb10, disturb01;
    double margin10, margin01;
    double ber10, ber01, ber;
} rram_rates;

/* Reads a device node (`kind: rram`; docs/rram-model.md lists the keys).
 * With `base: FILE`, the parameters of that device file come first and the
 * node's keys override them key by key (sections merge; `conditions`
 * replaces). Every key without a default must be given in one of the two;
 * ranges and cross-checks are done on the result. *base_hash receives a
 * hash of the base file's text (0 without one). */
int rram_params_from_yaml(const cfg_node *node, rram_params *p, uint64_t *base_hash,
                          apx_error *err);

/* Devices programmed per stored bit: 1 (1T1R) or 2 (2T2R). */
unsigned rram_devices_per_bit(const rram_params *p);

/* The compliance current (uA) of a programming energy per bit at a pulse. */
double rram_current_ua(const rram_params *p, double energy_pj, double pulse_ns);
/* The programming energy per bit (pJ) of a current at a pulse. */
double rram_energy_pj(const rram_params *p, double current_ua, double pulse_ns);

void rram_states_at(const rram_params *p, double current_ua, double time_s, double cycles,
                    rram_states *s);

/* Rates at a condition given by its current (p->cell decides the sensing),
 * or at an operating point (RK_COUNT knob values). Return 0, or -1 when a
 * margin is not positive (the point is outside the model; out is filled
 * all the same). */
int rram_rates_at_current(const rram_params *p, double current_ua, double time_s,
                          double cycles, double reads, double v_read, rram_rates *out);
int rram_rates_at(const rram_params *p, const double *op, rram_rates *out);

/* The energy of reading one device at an operating point (pJ): read.energy_pj
 * (NVSim's, at read.v_read) for the states at the reference current, scaled
 * by (v_read / read.v_read)^2 and by the mean conductance of the LRS and HRS
 * at the op over that at the reference (a resistive read dissipates
 * V^2 G t): weaker programming leaves a more resistive LRS that reads with
 * less energy. */
double rram_read_energy_pj(const rram_params *p, const double *op);

/* The index of a named condition, or -1. */
int rram_condition(const rram_params *p, const char *name);

#endif
