#!/usr/bin/env python3
"""Calibrates the DDR3L vendor A, B and C profiles of the `dram` device.

Fits the error model of models/dram/dram_errors.h (the formulas of its header
comment, nothing else) to the public Voltron and DIVA data excerpts in
tests/data/dram/ and reports every fitted point with its residual. Pure
Python 3 standard library; deterministic; runs in well under a minute.

    scripts/calibrate_dram.py            fit, print, and check that the shipped
                                         profiles and figures are up to date
                                         (exit 1 if not)
    scripts/calibrate_dram.py --write    fit and rewrite configs/devices/
                                         ddr3l-vendor{A,B,C}.yaml, the
                                         docs/figures/dram-*.svg figures and
                                         the generated tables of
                                         docs/dram-model.md
    scripts/calibrate_dram.py --derive DIR
                                         rebuild tests/data/dram/ from the
                                         full data sets in DIR (the layout of
                                         ../shared/data: voltron/, diva/)

docs/dram-model.md explains the data, the procedure and the assumptions.
"""
import argparse
import csv
import glob
import gzip
import io
import math
import os
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "dram")
VENDORS = ("A", "B", "C")

# ---------------------------------------------------------------------------
# Constants of the data and of the test conditions (docs/dram-model.md,
# "Data and caveats", says where each comes from).

VDD_NOMINAL = 1.35            # DDR3L (Voltron abstract)
TCK_DIVA = 2.5                # ns per DIVA controller cycle [unverified]
TRCD_NOMINAL = 13.75          # DDR3L-1600 11 cycles x 1.25 ns
TRP_NOMINAL = 13.75
TRAS_NOMINAL = 35.0           # DDR3L-1600 28 cycles x 1.25 ns
TREFW_NOMINAL = 64.0          # ms
TEMP_TEST = 20.0              # C, Voltron faulty-line and DIVA tests [unverified]
MODULE_BITS = 2 * 2**30 * 8   # 2 GiB modules (Voltron: derived; DIVA [unverified])
LINE_BITS = 512               # one 64-byte line, cells of one row
MODULE_LINES = MODULE_BITS // LINE_BITS
TEST_VULNERABLE = 0.5         # dram_errors.h: observed BER = 0.5 x P(fail)
DIVA_REFW = 256.0             # ms, the refresh interval of every DIVA test
RET_VDD = 1.35                # retention is fitted at nominal VDD
RET_T_HOT, RET_T_COLD = 70.0, 20.0
RET_T_REF_MS = 2048.0         # reference point of the retention power law
RET_BETA_FROM = (1024, 2048)  # per-DIMM exponent from this pair of intervals


# ---------------------------------------------------------------------------
# --derive: the excerpt in tests/data/dram/ from the full public data sets.

def derive(src):
    """Writes the small excerpt the script and the C tests read."""
    os.makedirs(DATA, exist_ok=True)
    shutil.copyfile(os.path.join(src, "voltron", "dimm_faulty_cachelines_out.csv"),
                    os.path.join(DATA, "voltron_faulty_cachelines.csv"))
    derive_retention(os.path.join(src, "voltron", "retention_time_profile.csv"),
                     os.path.join(DATA, "voltron_retention_per_dimm.csv"))
    for v in VENDORS:
        out = os.path.join(DATA, "diva", "vendor" + v)
        os.makedirs(out, exist_ok=True)
        for f in sorted(glob.glob(os.path.join(src, "diva", "vendor" + v, "summary",
                                               "summary_*"))):
            shutil.copyfile(f, os.path.join(out, os.path.basename(f)))
    derive_spatial(os.path.join(src, "diva"), os.path.join(DATA, "diva_spatial.csv"))


def derive_retention(path, out):
    """One row per (DIMM, VDD, temperature, refresh interval): the number of
    runs, how many had errors, and the mean and maximum DIMM total over the
    runs. Rows without a DIMM name or with vendor 'Other' are dropped."""
    runs = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if not r["dimm_name"] or r["vendor"] not in VENDORS:
                continue
            key = (r["vendor"], r["dimm_name"], float(r["vdd"]),
                   float(r["temperature(C)"]), float(r["refresh_interval(ms)"]))
            runs.setdefault(key, []).append(float(r["total_dimm_bit_err_count"]))
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["vendor", "dimm", "vdd", "temperature_c", "refresh_ms", "runs",
                    "nonzero_runs", "mean_count", "max_count"])
        for key in sorted(runs, key=lambda k: (k[0], int(k[1][1:]), k[2], k[3], k[4])):
            xs = runs[key]
            w.writerow([key[0], key[1], "%g" % key[2], "%g" % key[3], "%g" % key[4], len(xs),
                        sum(1 for x in xs if x > 0), "%.6g" % statistics.fmean(xs),
                        "%.6g" % max(xs)])


# The DIVA raw files whose histograms define the spatial factors: per vendor,
# the timing with the most errors among modules 01-04 that has a usable
# number of records (vendor A tRCD 4; vendor B and C tRP 3 / tRP 2).
SPATIAL_FILES = {
    "A": ["rawdata_01_4_15_5", "rawdata_03_4_15_5", "rawdata_04_4_15_5"],
    "B": ["rawdata_03_5_14_2"],
    "C": ["rawdata_02_5_15_3", "rawdata_04_5_15_3"],
}


def derive_spatial(src, out):
    """Bit errors (the records' n) per 64-byte column index (0-127), per row
    modulo 512 and per bank, summed over SPATIAL_FILES."""
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["vendor", "axis", "index", "bit_errors"])
        for v in VENDORS:
            col, row, bank = [0] * 128, [0] * 512, [0] * 8
            for name in SPATIAL_FILES[v]:
                with gzip.open(os.path.join(src, "vendor" + v, "rawdata", name + ".gz"),
                               "rt") as g:
                    for line in g:
                        p = line.split()
                        b, r, c, n = int(p[0]), int(p[1]), int(p[2]), int(p[11])
                        col[c] += n
                        row[r % 512] += n
                        bank[b] += n
            for axis, h in (("column", col), ("row_mod_512", row), ("bank", bank)):
                for i, x in enumerate(h):
                    w.writerow([v, axis, i, x])


# ---------------------------------------------------------------------------
# Reading the excerpt.

def load_lines():
    """Voltron faulty-line fractions: {vendor: {vdd: [fraction per DIMM]}}."""
    out = {v: {} for v in VENDORS}
    with open(os.path.join(DATA, "voltron_faulty_cachelines.csv"), newline="") as f:
        for r in csv.DictReader(f):
            out[r["vendor"]].setdefault(float(r["vdd"]), []).append(
                float(r["error_cacheline_percent"]) / 100.0)
    return out


def load_retention():
    """{(vendor, dimm, vdd, temperature, refresh_ms): mean count over runs}."""
    out = {}
    with open(os.path.join(DATA, "voltron_retention_per_dimm.csv"), newline="") as f:
        for r in csv.DictReader(f):
            out[(r["vendor"], r["dimm"], float(r["vdd"]), float(r["temperature_c"]),
                 float(r["refresh_ms"]))] = float(r["mean_count"])
    return out


def load_diva():
    """{vendor: {(trcd, tras, trp) in cycles: [bit errors per module]}}."""
    out = {v: {} for v in VENDORS}
    for v in VENDORS:
        for path in sorted(glob.glob(os.path.join(DATA, "diva", "vendor" + v, "summary_*"))):
            with open(path) as f:
                for line in f:
                    if not line.startswith("READ"):
                        continue
                    head, tail = line.split(":")
                    trcd, tras, trp = (int(x) for x in head.split()[2:5])
                    words = tail.split()
                    out[v].setdefault((trcd, tras, trp), []).append(
                        int(words[2]) if len(words) > 2 else 0)
    return out


def load_spatial():
    """{vendor: {axis: [bit errors per index]}}."""
    out = {v: {} for v in VENDORS}
    with open(os.path.join(DATA, "diva_spatial.csv"), newline="") as f:
        for r in csv.DictReader(f):
            out[r["vendor"]].setdefault(r["axis"], []).append(int(r["bit_errors"]))
    return out


# ---------------------------------------------------------------------------
# The model: a line-by-line mirror of the formulas in models/dram/dram_errors.h.

def phi(x):
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def phi_inv(p):
    """Standard normal quantile (bisection on phi; deterministic, plenty fast)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if phi(mid) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def survival(d, t):
    """The untruncated mixture P(t_crit > t) of one latency distribution."""
    s = (1.0 - d["weak_fraction"]) * phi((d["bulk_mu"] - t) / d["bulk_sigma"])
    if d["weak_fraction"] > 0:
        s += d["weak_fraction"] * phi((d["weak_mu"] - t) / d["weak_sigma"])
    return s


def s_of_v(d, vdd, vdd_nominal):
    """Sensing slow-down s(V) = ((V_nom - V_t) / (V - V_t))^alpha; inf at V <= V_t."""
    if vdd <= d["v_threshold"]:
        return math.inf
    return ((vdd_nominal - d["v_threshold"]) / (vdd - d["v_threshold"])) ** d["alpha"]


def g_latency(d, latency, vdd, vdd_nominal, c_chip):
    """G of activation or precharge: cells with t_eff < t_crit <= guard / c
    fail (the guard screens cells on their own chip and bank)."""
    t_eff = latency / (s_of_v(d, vdd, vdd_nominal) * c_chip)
    guard = d["guard"] / c_chip
    if not t_eff < guard:
        return 0.0
    return max(0.0, survival(d, t_eff) - survival(d, guard))


def g_retention(p, trefw, temperature):
    """G_r = b_ref (t / t_ref)^beta for t > t_min, t the temperature-scaled window."""
    if p["ret_ber_ref"] <= 0:
        return 0.0
    t = trefw * math.exp(math.log(p["ret_k10"]) * (temperature - p["ret_temp_ref"]) / 10.0)
    if t <= p["ret_t_min_ms"]:
        return 0.0
    return p["ret_ber_ref"] * (t / p["ret_t_ref_ms"]) ** p["ret_beta"]


ROW_CLASSES = 8   # row classes of the fit's fast path (None: every row, as the C code)


def spatial_classes(p, row_classes=ROW_CLASSES):
    """The spatial weights as classes: a list of (probability, line factor)
    for what is constant along a 64-byte line (column half, row position,
    weak wordline), and a list of (probability, cell factor) for what varies
    within it (weak bitlines). Factors are normalised so that the mean of
    line factor x cell factor is 1 (dram_errors.h). Column periods and phases
    are whole 64-byte lines here, so a line is all high or all low."""
    contrast = p["column_contrast"]
    cols = [(0.5, 1.0), (0.5, 1.0 / contrast)] if contrast > 1 else [(1.0, 1.0)]
    n = p["subarray_rows"]
    rows = {}
    for r in range(n):
        f = (1.0 + p["row_ramp"] * r / n) * (p["edge_boost"] if r < p["edge_rows"] else 1.0)
        # exact: one class per row; fast: the edge rows form one class, the
        # others row_classes classes of consecutive rows (with their mean factor)
        if row_classes is None:
            key = r
        elif r < p["edge_rows"]:
            key = -1
        else:
            key = (r - p["edge_rows"]) * row_classes // (n - p["edge_rows"])
        q, sf = rows.get(key, (0.0, 0.0))
        rows[key] = (q + 1.0 / n, sf + f / n)
    merged = {}
    for q, sf in rows.values():
        merged[sf / q] = merged.get(sf / q, 0.0) + q
    rows = merged
    wls = [(1.0 - p["weak_wordline_fraction"], 1.0)]
    if p["weak_wordline_fraction"] > 0:
        wls.append((p["weak_wordline_fraction"], p["weak_wordline_factor"]))
    bls = [(1.0 - p["weak_bitline_fraction"], 1.0)]
    if p["weak_bitline_fraction"] > 0:
        bls.append((p["weak_bitline_fraction"], p["weak_bitline_factor"]))
    line = [(pc * pr * pw, fc * fr * fw) for pc, fc in cols for fr, pr in sorted(rows.items())
            for pw, fw in wls]
    norm = sum(q * f for q, f in line) * sum(q * f for q, f in bls)
    line = [(q, f / norm) for q, f in line]
    return line, bls


def cell_fail(w, g_act, g_pre, g_ret):
    """P(a cell of spatial weight w fails in any mechanism): each mechanism has
    its own critical value, so they are independent. Summed, not as 1 - the
    product of survivals, so small probabilities keep their digits; written
    without min() calls: this is the fit's hot path."""
    a = w * g_act
    a = a if a < 1.0 else 1.0
    b = w * g_pre
    b = b if b < 1.0 else 1.0
    ab = a + b - a * b
    return ab + g_ret - ab * g_ret


def rates(p, op, z):
    """(G_a, G_p, G_r) at op = (vdd, trcd, trp, tras, trefw, temperature) for z_chip = z."""
    vdd, trcd, trp, _tras, trefw, temp = op
    c = math.exp(p["sigma_chip"] * z)
    return (g_latency(p["act"], trcd, vdd, p["vdd_nominal"], c),
            g_latency(p["pre"], trp, vdd, p["vdd_nominal"], c),
            g_retention(p, trefw, temp))


def expected_fail(p, op, z, classes=None):
    """dram_errors_expected_fail: P(cell fails), averaged over the spatial weights."""
    line, bls = classes or spatial_classes(p)
    ga, gp, gr = rates(p, op, z)
    if ga == 0.0 and gp == 0.0 and gr == 0.0:
        return 0.0
    gr = min(1.0, gr)
    return sum(ql * qb * cell_fail(fl * fb, ga, gp, gr) for ql, fl in line for qb, fb in bls)


def expected_line_fraction(p, op, z, classes=None):
    """dram_errors_expected_line_fraction: the fraction of 64-byte lines (512
    cells of one row) with at least one observed error when test_vulnerable
    of the cells hold their vulnerable value."""
    line, bls = classes or spatial_classes(p)
    ga, gp, gr = rates(p, op, z)
    if ga == 0.0 and gp == 0.0 and gr == 0.0:
        return 0.0
    gr = min(1.0, gr)
    tv = p["test_vulnerable"]
    fraction = 0.0
    for ql, fl in line:
        shown = 0.0    # P(a cell of the line shows an error), over its bitline's class
        for qb, fb in bls:
            shown += qb * tv * cell_fail(fl * fb, ga, gp, gr)
        fraction += ql * -math.expm1(LINE_BITS * math.log1p(-shown)) if shown < 1.0 else ql
    return fraction


# ---------------------------------------------------------------------------
# Operating points of the experiments.

def op_voltron(vdd):
    """A Voltron faulty-line test: standard DDR3L-1600 timing at 20 C (assumed)."""
    return (vdd, TRCD_NOMINAL, TRP_NOMINAL, TRAS_NOMINAL, TREFW_NOMINAL, TEMP_TEST)


def op_diva(timing):
    """A DIVA test at nominal VDD; timing = (tRCD, tRAS, tRP) in controller cycles."""
    trcd, tras, trp = timing
    return (VDD_NOMINAL, trcd * TCK_DIVA, trp * TCK_DIVA, tras * TCK_DIVA, DIVA_REFW, TEMP_TEST)


def blom_z(i, n):
    """The expected z of the i-th smallest of n standard normals (Blom)."""
    return phi_inv((i - 0.375) / (n + 0.25))


# ---------------------------------------------------------------------------
# Fit points: what the model must reproduce, with the residual rule.

class Point:
    """One fitted or checked point. kind 'lines' compares faulty-line
    fractions, 'bits' compares bit errors per module. status: 'fit'
    (two-sided log10 residual), 'zero' (data 0: one-sided, the model must
    stay below half a line or half a bit per module),
    'floor' (DIVA data indistinguishable from the baseline: one-sided below
    twice the baseline), 'excluded' (a DIVA median below the median at a
    milder setting of the same knob: a nested model cannot follow it)."""

    def __init__(self, vendor, kind, label, op, z, data, status, n):
        self.vendor, self.kind, self.label, self.op, self.z = vendor, kind, label, op, z
        self.data, self.status, self.n = data, status, n
        # a zero: the model may expect up to half a line (bit) per module,
        # at which seeing none is the more likely outcome (61 %)
        self.limit = 0.5 / MODULE_LINES if kind == "lines" else 0.5

    def model(self, p, classes):
        if self.kind == "lines":
            return expected_line_fraction(p, self.op, self.z, classes)
        return TEST_VULNERABLE * expected_fail(p, self.op, self.z, classes) * MODULE_BITS

    def residual(self, m):
        """log10(model / data) for 'fit'; the excess over the limit otherwise."""
        if self.status == "excluded":
            return 0.0
        if self.status == "fit":
            return math.log10(max(m, 0.1 * self.limit) / self.data)
        return max(0.0, math.log10(max(m, 1e-300) / self.limit))


def voltron_points(lines, vendor):
    """The median DIMM (z = 0) and the worst DIMM (z = Blom z of the maximum)
    at every tested VDD."""
    pts = []
    for vdd in sorted(lines[vendor], reverse=True):
        xs = sorted(lines[vendor][vdd])
        n = len(xs)
        for stat, z, x in (("median", 0.0, statistics.median(xs)), ("max", blom_z(n, n), xs[-1])):
            p = Point(vendor, "lines", "%s %.3f V" % (stat, vdd), op_voltron(vdd), z, x,
                      "fit" if x > 0 else "zero", n)
            p.vdd, p.stat = vdd, stat
            pts.append(p)
    return pts


DIVA_BASELINE = (5, 15, 5)
DIVA_STATS = (("median", 0.5), ("q75", 0.75))   # statistic over modules, its quantile


def quantile(xs, q):
    """The q-quantile of xs, interpolated between order statistics."""
    xs = sorted(xs)
    h = (len(xs) - 1) * q
    i = int(h)
    return xs[i] + (h - i) * (xs[min(i + 1, len(xs) - 1)] - xs[i])


def diva_points(diva, vendor):
    """The median and the upper-quartile module (z = 0 and 0.674) at every
    DIVA timing, each with its status."""
    pts = []
    for stat, q in DIVA_STATS:
        val = {t: quantile(xs, q) for t, xs in diva[vendor].items()}
        base = val[DIVA_BASELINE]
        for t in sorted(val, key=lambda t: (-t[0], -t[2], -t[1])):
            x = val[t]
            milder = [u for u in val if u != t and
                      ((u[0] == t[0] and u[2] > t[2]) or (u[2] == t[2] and u[0] > t[0]))]
            if any(val[u] > x for u in milder):
                status = "excluded"
            elif x <= 2 * base and base > 0:
                status = "floor"
            else:
                status = "fit" if x > 0 else "zero"
            p = Point(vendor, "bits", "%s tRCD %g tRP %g ns" % (stat, t[0] * TCK_DIVA,
                                                                t[2] * TCK_DIVA),
                      op_diva(t), phi_inv(q) if q != 0.5 else 0.0, x, status,
                      len(diva[vendor][t]))
            if status == "floor":
                p.limit = 2 * base
            p.timing, p.stat = t, stat
            pts.append(p)
    return pts


# ---------------------------------------------------------------------------
# Minimiser: Nelder-Mead (deterministic start simplex, restarts from the best).

def nelder_mead(f, x0, step, tol=1e-7):
    n = len(x0)
    iters = 250 * n
    simplex = [list(x0)] + [[x0[j] + (step[j] if j == i else 0.0) for j in range(n)]
                            for i in range(n)]
    vals = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=lambda i: vals[i])
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        if vals[-1] - vals[0] <= tol * (abs(vals[0]) + tol):
            break
        if max(abs(x[j] - simplex[0][j]) for x in simplex[1:] for j in range(n)) < 1e-6:
            break   # the simplex has collapsed (flat, censored directions)
        centroid = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]

        def along(t):
            return [centroid[j] + t * (worst[j] - centroid[j]) for j in range(n)]
        xr = along(-1.0)
        fr = f(xr)
        if fr < vals[0]:
            xe = along(-2.0)
            fe = f(xe)
            simplex[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = xr, fr
        else:
            xc = along(0.5) if fr >= vals[-1] else along(-0.5)
            fc = f(xc)
            if fc < min(fr, vals[-1]):
                simplex[-1], vals[-1] = xc, fc
            else:
                best = simplex[0]
                simplex = [best] + [[best[j] + 0.5 * (x[j] - best[j]) for j in range(n)]
                                    for x in simplex[1:]]
                vals = [vals[0]] + [f(x) for x in simplex[1:]]
    i = min(range(n + 1), key=lambda i: vals[i])
    return simplex[i], vals[i]


def minimise(f, x0, step, rounds=4):
    """Nelder-Mead restarted from its result with a fresh simplex until a
    restart gains less than 1e-6."""
    x, fx = list(x0), f(x0)
    for _ in range(rounds):
        x, fx_new = nelder_mead(f, x, step)
        if fx - fx_new < 1e-6:
            break
        fx = fx_new
    return x, f(x)


# ---------------------------------------------------------------------------
# Spatial factors from the DIVA raw-record histograms (diva_spatial.csv).

ROW_PERIODS = (128, 256, 512)   # candidate subarray heights (rows)
EDGE_ROWS = 8                   # rows next to the sense amplifiers with their own factor
COLUMN_PERIODS = (16, 32, 64, 128)  # candidate periods in 64-byte lines


def fit_columns(hist):
    """The square wave (period in lines, phase, contrast) that puts the most
    bit errors in its high half; contrast = errors in the high half / errors
    in the low half (both halves hold the same number of columns)."""
    total = float(sum(hist))
    best = None
    for period in COLUMN_PERIODS:
        for phase in range(period):
            hi = sum(x for i, x in enumerate(hist) if (i + phase) % period < period // 2)
            if best is None or hi > best[0]:
                best = (hi, period, phase)
    hi, period, phase = best
    return {"period_lines": period, "phase_lines": phase,
            "contrast": hi / max(total - hi, 1.0), "high_share": hi / total}


def fold(hist, period):
    """Mean bit errors per row position modulo period."""
    reps = len(hist) // period
    return [sum(hist[k + period * j] for j in range(reps)) / reps for k in range(period)]


def correlation(a, b):
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb) if saa > 0 and sbb > 0 else 1.0


def row_shape(n, ramp, edge):
    return [(1.0 + ramp * r / n) * (edge if r < EDGE_ROWS else 1.0) for r in range(n)]


def bins(xs, width):
    return [statistics.fmean(xs[i:i + width]) for i in range(0, len(xs), width)]


def fit_rows(hist):
    """Subarray height: the smallest candidate whose folded profile, repeated,
    correlates with the 512-row profile at r >= 0.9 (profiles in bins of
    EDGE_ROWS rows, which averages out single rows with many errors). Ramp
    and edge factor: least squares of the model's row factor (scaled to the
    profile's mean) against the binned folded profile, on a grid (ramp
    0..~1000, edge 1/100..100), the mildest ramp whose error is within 1 % of
    the best; 'explained' is the share of the binned profile's
    variance the fitted shape explains."""
    full = bins(fold(hist, 512), EDGE_ROWS)
    for n in ROW_PERIODS:
        prof = bins(fold(hist, n), EDGE_ROWS)
        k = len(prof)
        if correlation([prof[i % k] for i in range(len(full))], full) >= 0.9:
            break
    mean = statistics.fmean(prof)
    prof = [x / mean for x in prof]
    fits = []
    ramps = [0.0] + [0.05 * 1.08 ** k for k in range(130)]
    edges = [100.0 ** (k / 20.0 - 1.0) for k in range(41)]
    for ramp in ramps:
        for edge in edges:
            shape = bins(row_shape(n, ramp, edge), EDGE_ROWS)
            m = statistics.fmean(shape)
            fits.append((sum((x - s / m) ** 2 for x, s in zip(prof, shape)), ramp, edge))
    best = min(f[0] for f in fits)
    # the shape saturates as the ramp grows: take the mildest ramp within 1 %
    err, ramp, edge = min((f for f in fits if f[0] <= 1.01 * best), key=lambda f: (f[1], f[0]))
    var = sum((x - 1.0) ** 2 for x in prof)
    return {"subarray_rows": n, "row_ramp": ramp, "edge_boost": edge,
            "explained": 1.0 - err / var if var > 0 else 1.0}


def fit_spatial(hists):
    """{vendor: spatial estimates}, see fit_columns and fit_rows."""
    return {v: dict(fit_columns(hists[v]["column"]), **fit_rows(hists[v]["row_mod_512"]),
                    bank=hists[v]["bank"]) for v in VENDORS}


# ---------------------------------------------------------------------------
# Retention: the power law of the Voltron retention data (per-DIMM means).

def temperature_ratios(ret):
    """Per-DIMM count ratios 70 C / 20 C at 2048 ms and nominal VDD, over the
    DIMMs of all vendors with errors at both (per vendor there are 3-9, and
    vendor A's 20 C counts are mostly zero)."""
    out = []
    for (v, d, vdd, t, ms), hot in sorted(ret.items()):
        cold = ret.get((v, d, vdd, RET_T_COLD, ms))
        if vdd == RET_VDD and t == RET_T_HOT and ms == RET_T_REF_MS and hot > 0 and cold:
            out.append(hot / cold)
    return out


def retention_stats(ret, vendor):
    """The data statistics the profile reproduces, at nominal VDD:
    beta: median over DIMMs of ln(c(2048)/c(1024)) / ln 2 at 70 C (DIMMs
          with errors at both);
    temp_factor: median of temperature_ratios (all vendors);
    count_ref: median over DIMMs of the count at 2048 ms, 70 C;
    zero_max_ms: the longest interval with no error in any DIMM and run at
          either temperature;
    medians: {(T, ms): median count over DIMMs}."""
    rows = {k: x for k, x in ret.items() if k[0] == vendor and k[2] == RET_VDD}
    dimms = sorted({k[1] for k in rows})

    def c(d, t, ms):
        return rows.get((vendor, d, RET_VDD, t, ms))
    lo, hi = RET_BETA_FROM
    betas = [math.log(c(d, RET_T_HOT, hi) / c(d, RET_T_HOT, lo)) / math.log(hi / lo)
             for d in dimms if (c(d, RET_T_HOT, lo) or 0) > 0 and (c(d, RET_T_HOT, hi) or 0) > 0]
    ratios = temperature_ratios(ret)
    intervals = sorted({k[4] for k in rows})
    zero_max = max(ms for ms in intervals
                   if all(rows[k] == 0 for k in rows if k[4] <= ms))
    medians = {}
    for t in (RET_T_COLD, RET_T_HOT):
        for ms in intervals:
            xs = [x for k, x in rows.items() if k[3] == t and k[4] == ms]
            if xs:
                medians[(t, ms)] = statistics.median(xs)
    return {"beta": statistics.median(betas), "n_beta": len(betas),
            "temp_factor": statistics.median(ratios), "n_ratio": len(ratios),
            "count_ref": medians[(RET_T_HOT, RET_T_REF_MS)], "zero_max_ms": zero_max,
            "medians": medians, "n_dimms": len(dimms)}


def fit_retention(st):
    """Profile keys from the statistics: beta and k_10 reproduce the exponent
    and the 20 -> 70 C factor exactly (factor = k_10^(5 beta)); b_ref is the
    median count at the reference point as a probability (count = 0.5 x P x
    bits); t_min is the longest error-free interval at the hot temperature,
    which with T_ref = 70 C also keeps 20 C error-free there."""
    beta = st["beta"]
    return {"ret_beta": beta,
            "ret_k10": st["temp_factor"] ** (1.0 / (beta * (RET_T_HOT - RET_T_COLD) / 10.0)),
            "ret_temp_ref": RET_T_HOT, "ret_t_ref_ms": RET_T_REF_MS,
            "ret_ber_ref": st["count_ref"] / (TEST_VULNERABLE * MODULE_BITS),
            "ret_t_min_ms": st["zero_max_ms"]}


# ---------------------------------------------------------------------------
# The profile: every key of dram_error_params, from the three estimates.

def profile(spatial, retention, x):
    """A full parameter set (dram_error_params) from the spatial estimates,
    the retention fit and the latency/voltage vector x (see LATENCY_PARAMS)."""
    d = dict(zip(LATENCY_PARAMS, x))

    def dist(prefix, nominal):
        weak = prefix + "ln_weak_fraction" in d
        return {"bulk_mu": d[prefix + "mu"], "bulk_sigma": math.exp(d[prefix + "ln_sigma"]),
                "weak_fraction": math.exp(d[prefix + "ln_weak_fraction"]) if weak else 0.0,
                "weak_mu": d[prefix + "weak_mu"] if weak else 0.0,
                "weak_sigma": math.exp(d[prefix + "ln_weak_sigma"]) if weak else 1.0,
                "guard": min(d.get(prefix + "guard", nominal), nominal),
                "v_threshold": d["v_threshold"], "alpha": math.exp(d["ln_alpha"])}
    p = {"vdd_nominal": VDD_NOMINAL, "act": dist("act_", TRCD_NOMINAL),
         "pre": dist("pre_", TRP_NOMINAL), "sigma_chip": math.exp(d["ln_sigma_chip"]),
         "sigma_bank": 0.0,
         "column_period": 8 * spatial["period_lines"], "column_phase": 8 * spatial["phase_lines"],
         "column_contrast": spatial["contrast"],
         "subarray_rows": spatial["subarray_rows"], "edge_rows": EDGE_ROWS,
         "row_ramp": spatial["row_ramp"], "edge_boost": spatial["edge_boost"],
         "weak_bitline_fraction": 0.0, "weak_bitline_factor": 1.0,
         "weak_wordline_fraction": 0.0, "weak_wordline_factor": 1.0,
         "test_vulnerable": TEST_VULNERABLE}
    p.update(retention)
    return p


# The fitted latency/voltage parameters. Activation and precharge share the
# voltage law (the Voltron data cannot tell them apart); activation has a
# weak population, precharge (two or three informative points) a bulk only,
# untruncated (its guard stays at the nominal tRP: no point calls for less).
LATENCY_PARAMS = ("act_mu", "act_ln_sigma", "act_guard", "act_ln_weak_fraction", "act_weak_mu",
                  "act_ln_weak_sigma", "pre_mu", "pre_ln_sigma",
                  "v_threshold", "ln_alpha", "ln_sigma_chip")
LATENCY_STEP = (0.5, 0.3, 0.5, 1.0, 0.5, 0.3, 0.5, 0.3, 0.2, 0.5, 0.5)
VOLTAGE_PARAMS = ("v_threshold", "ln_alpha")
# The sensing threshold stays at or below 1.0 V, so that every profile takes
# operating points down to 1.0 V (Voltron's vendor B DIMMs still work at
# 1.025 V; below its lowest tested VDD each profile extrapolates).
VT_MAX = 1.0
# Starts: the guard is the one discontinuous direction, which a simplex does
# not cross well, and the second mode may be needed or not: the fit runs from
# every combination and keeps the best.
LATENCY_STARTS = tuple(
    (8.0, math.log(0.5), guard, ln_wf, 9.5, math.log(0.5), 7.0, math.log(0.5),
     0.5, 0.0, math.log(0.05))
    for guard in (TRCD_NOMINAL, 10.0) for ln_wf in (-30.0, math.log(1e-4)))
VOLTAGE_STARTS = ((0.0, math.log(2.0)), (0.5, 0.0), (0.9, math.log(0.3)))

# Tie-breakers for directions the data leave open (docs/dram-model.md,
# "Calibration"): a weak pull of each guard toward the nominal latency (no
# truncation unless the data need it) and of each normal width toward
# SIGMA_ANCHOR. Their weights are small against the data residuals.
GUARD_WEIGHT = 0.02       # per ns below nominal
SIGMA_WEIGHT = 0.05       # per e-fold away from the anchor
SIGMA_ANCHOR = 0.5        # ns


def tie_breakers(x):
    d = dict(zip(LATENCY_PARAMS, x))
    return [GUARD_WEIGHT * max(0.0, TRCD_NOMINAL - d["act_guard"])] + [
        SIGMA_WEIGHT * (d[k] - math.log(SIGMA_ANCHOR))
        for k in ("act_ln_sigma", "act_ln_weak_sigma", "pre_ln_sigma")]


def fit_latency(points, spatial, retention):
    """Minimises the squared log10 residuals of the points plus the
    tie-breakers over LATENCY_PARAMS, V_t kept in [0, VT_MAX].
    In three stages from each start: the DIVA points (nominal VDD) over all
    but the voltage law; the Voltron points over the voltage law (from each
    of VOLTAGE_STARTS); all points over everything. Returns the best (x,
    objective)."""
    classes = spatial_classes(profile(spatial, retention, LATENCY_STARTS[0]))
    diva = [q for q in points if q.kind == "bits"]
    voltron = [q for q in points if q.kind == "lines"]

    def objective(pts, x):
        d = dict(zip(LATENCY_PARAMS, x))
        if not 0.0 <= d["v_threshold"] <= VT_MAX:
            return 1e6 + abs(d["v_threshold"])
        if (not d["act_weak_mu"] < min(d["act_guard"], TRCD_NOMINAL)
                or d["act_ln_weak_fraction"] > math.log(0.5)):
            return 1e6 + abs(d["act_weak_mu"])   # a weak mode must lie below the guard
        p = profile(spatial, retention, x)
        r = [q.residual(q.model(p, classes)) for q in pts] + tie_breakers(x)
        return sum(v * v for v in r)

    def over(pts, x, names):
        """Minimises over the named coordinates only."""
        idx = [LATENCY_PARAMS.index(n) for n in names]

        def put(y):
            z = list(x)
            for i, v in zip(idx, y):
                z[i] = v
            return z
        y, _ = minimise(lambda y: objective(pts, put(y)), [x[i] for i in idx],
                        [LATENCY_STEP[i] for i in idx])
        return put(y)
    best = None
    latency = [n for n in LATENCY_PARAMS if n not in VOLTAGE_PARAMS]
    iv = LATENCY_PARAMS.index("v_threshold")
    for start in LATENCY_STARTS:
        x = over(diva, list(start), latency)
        law = None
        for v_start in VOLTAGE_STARTS:
            y = over(voltron, x[:iv] + list(v_start) + x[iv + 2:], VOLTAGE_PARAMS)
            fy = objective(voltron, y)
            if law is None or fy < law[1] - 1e-12:
                law = (y, fy)
        x = over(points, law[0], LATENCY_PARAMS)
        fx = objective(points, x)
        if best is None or fx < best[1] - 1e-12:
            best = (x, fx)
    return best


# ---------------------------------------------------------------------------
# Banks: the spread of the DIVA bank histograms as a latency factor.

BANK_TIMING = {"A": (4, 15, 5), "B": (5, 14, 2), "C": (5, 15, 3)}  # of SPATIAL_FILES


def bank_slope(p, timing):
    """d ln P(fail) / d ln c at a DIVA timing for the median chip: how much a
    latency factor c (chip or bank) changes the rate there."""
    q = dict(p, sigma_chip=1.0)   # z then is ln c
    eps = 0.01
    hi = expected_fail(q, op_diva(timing), eps)
    lo = expected_fail(q, op_diva(timing), -eps)
    return (math.log(hi) - math.log(lo)) / (2 * eps) if hi > 0 and lo > 0 else 0.0


def fit_sigma_bank(profiles, spatial):
    """sigma_bank = sd(ln bank share) / (d ln P / d ln c) at the raw files'
    timing, where the model is not saturated there (slope >= 1); a vendor
    whose raw files sit at a saturated point takes the mean of the others."""
    est = {}
    for v in VENDORS:
        banks = spatial[v]["bank"]
        shares = [math.log(b / statistics.fmean(banks)) for b in banks]
        slope = bank_slope(profiles[v], BANK_TIMING[v])
        est[v] = {"sd_ln_share": statistics.pstdev(shares), "slope": slope,
                  "sigma_bank": statistics.pstdev(shares) / slope if slope >= 1 else None}
    known = [e["sigma_bank"] for e in est.values() if e["sigma_bank"] is not None]
    for e in est.values():
        e["borrowed"] = e["sigma_bank"] is None
        if e["borrowed"]:
            e["sigma_bank"] = statistics.fmean(known)
    return est


# ---------------------------------------------------------------------------
# The whole calibration.

def sig(x, digits=4):
    """x rounded to `digits` significant digits (what the YAML files hold)."""
    return float("%.*g" % (digits, x)) if x else 0.0


def round_profile(p):
    """The profile as shipped: every fitted number to 4 significant digits; a
    weak mode whose share would not give 0.001 failing bits per module is
    dropped."""
    q = dict(p)
    for mech in ("act", "pre"):
        d = {k: sig(x) for k, x in p[mech].items()}
        if d["weak_fraction"] * MODULE_BITS < 1e-3:
            d.update(weak_fraction=0.0, weak_mu=0.0, weak_sigma=1.0)
        q[mech] = d
    for k in ("sigma_chip", "sigma_bank", "column_contrast", "row_ramp", "edge_boost",
              "ret_ber_ref", "ret_beta", "ret_k10"):
        q[k] = sig(p[k])
    return q


def fit_vendor(args):
    """Latency and voltage fit of one vendor (a worker of the process pool)."""
    vendor, points, spatial, retention = args
    x, fx = fit_latency(points, spatial, retention)
    return vendor, x, fx


def calibrate():
    """Reads the excerpt and fits every vendor. Returns a dict with the data,
    the estimates, the shipped (rounded) profiles and every point's model
    value under the shipped profile, computed over every row as the C code."""
    lines, diva, ret = load_lines(), load_diva(), load_retention()
    spatial = fit_spatial(load_spatial())
    out = {"lines": lines, "diva": diva, "ret": ret, "spatial": spatial, "vendors": {}}
    jobs = []
    for v in VENDORS:
        st = retention_stats(ret, v)
        points = voltron_points(lines, v) + diva_points(diva, v)
        out["vendors"][v] = {"ret_stats": st, "retention": fit_retention(st), "points": points}
        jobs.append((v, points, spatial[v], out["vendors"][v]["retention"]))
    try:
        import multiprocessing
        with multiprocessing.Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
            results = pool.map(fit_vendor, jobs)
    except (ImportError, OSError):
        results = [fit_vendor(j) for j in jobs]
    raw = {}
    for v, x, fx in results:
        out["vendors"][v].update(x=x, objective=fx)
        raw[v] = profile(spatial[v], out["vendors"][v]["retention"], x)
    banks = fit_sigma_bank(raw, spatial)
    for v in VENDORS:
        raw[v]["sigma_bank"] = banks[v]["sigma_bank"]
        p = round_profile(raw[v])
        classes = spatial_classes(p, None)
        e = out["vendors"][v]
        e.update(bank=banks[v], profile=p, classes=classes)
        e["model"] = [q.model(p, classes) for q in e["points"]]
    return out


# ---------------------------------------------------------------------------
# The device files.

def num(x):
    """A number as the YAML files write it (4 significant digits)."""
    return "%.4g" % x


YAML_HEAD = """\
# DDR3L-1600 SO-DIMMs of vendor {v} (one rank of eight 4 Gb x8 chips, 1.35 V),
# calibrated to the public reduced-voltage and reduced-latency data of vendor
# {v}: Voltron (Chang et al., SIGMETRICS 2017, arXiv 1705.10292; data
# CMU-SAFARI/DRAM-Voltage-Study, characterization_results/) and DIVA (Lee et
# al., SIGMETRICS 2017, arXiv 1610.09604; data CMU-SAFARI/DIVA-DRAM,
# profile_data/vendor{v}/). Both anonymise their vendors as A, B and C; that
# the letters name the same vendors in both is [unverified].
#
# GENERATED by scripts/calibrate_dram.py --write from the excerpt in
# tests/data/dram/; edit the script, not this file. docs/dram-model.md
# explains every number, the fit and its residuals; docs/dram-errors.md the
# error model's algorithm, docs/dram-timing-energy.md timing and energy.
#
#   device: configs/devices/ddr3l-vendor{v}.yaml     # in a sweep
#   operating_points:
#     vdd: [{vdds}]   # V; other knobs at their defaults
#
# ({onset} V is where the data's median DIMM first shows faulty lines.)
#
# Knobs: vdd (V), trcd, trp, tras (ns), trefw (ms), temperature (C), time_s
# (s); each defaults to its nominal value (power.vdd, the timing below, 64 ms,
# nominal_temperature, 0).
kind: dram
name: ddr3l-vendor{v}

# Timing and power: umd-memsys/DRAMsim3, configs/DDR3_4Gb_x8_1600.ini (the
# stored version at commit 0eb6360; a DDR3-1600 4 Gb x8 part at VDD = 1.35 V,
# tCK 1.25 ns, CL-tRCD-tRP 11-11-11); its timings are in cycles, converted
# here to ns (cycles x 1.25). Whether its currents come from a DDR3L (1.35 V)
# datasheet is [unverified]; the vendors' own parts are unknown, so all three
# profiles share them.
timing:                  # ns
  tck: 1.25
  cl: 13.75              # CL 11
  cwl: 10                # CWL 8
  trcd: 13.75            # tRCD 11
  trp: 13.75             # tRP 11
  tras: 35               # tRAS 28
  trc: 48.75             # tRAS + tRP (the file has no tRC; DRAMsim3 derives it so)
  tccd_s: 5              # tCCD 4 (DDR3 has no bank groups: _s = _l)
  tccd_l: 5
  trrd_s: 6.25           # tRRD 5
  trrd_l: 6.25
  tfaw: 30               # tFAW 24
  trtp: 7.5              # tRTP 6
  twr: 15                # tWR 12
  twtr_s: 7.5            # tWTR 6
  twtr_l: 7.5
  trfc: 260              # tRFC 208 (4 Gb)
  trefi: 7800            # REFI 6240 (7.8 us)
  bl: 8

power:                   # the file's [power] section, per device, mA
  vdd: 1.35
  idd0: 55
  idd2n: 32
  idd3n: 38
  idd4r: 157
  idd4w: 125
  idd5b: 235             # the file's IDD5AB
  devices: 8             # x8 devices on a 64-bit rank
  current_exponent: 1    # currents ~ VDD, energy ~ VDD^2 (../shared facts
                         # dram.md 3.5) [unverified]; DDR3 has no VPP domain

# The temperature knob's default: the calibration data's temperature (the
# Voltron locality maps are named temp20; the faulty-line CSV has no
# temperature column) [unverified].
nominal_temperature: 20

"""


def comment(text, indent=2):
    """A wrapped YAML comment block."""
    import textwrap
    pad = " " * indent + "# "
    return "\n".join(textwrap.wrap(text, 79 - len(pad), initial_indent=pad,
                                   subsequent_indent=pad, break_on_hyphens=False)) + "\n"


def kv(key, value, note="", indent=4):
    """One key: value line, with its note aligned in column 26."""
    line = "%s%s: %s" % (" " * indent, key, value)
    return (line.ljust(25) + " # " + note if note else line) + "\n"


def yaml_text(v, out):
    """The whole device file of vendor v."""
    e = out["vendors"][v]
    p, sp, st, bank = e["profile"], out["spatial"][v], e["ret_stats"], e["bank"]
    a, r = p["act"], p["pre"]
    tested = sorted(out["lines"][v], reverse=True)
    onset = onsets(out, v)[0]
    i = tested.index(onset)
    vdds = ", ".join("%g" % x for x in [VDD_NOMINAL] + tested[max(1, i - 1):i + 2])
    t = [YAML_HEAD.format(v=v, vdds=vdds, onset="%g" % onset), comment(
        "Errors: fitted by scripts/calibrate_dram.py (docs/dram-model.md, \"Calibration\"; the "
        "residual of every point in \"Residuals\"). Voltron faulty-line fractions are taken at "
        "DDR3L-1600 timing (13.75 ns) and 20 C, DIVA bit errors at nominal VDD with 2.5 ns "
        "controller cycles, both on 2 GiB modules (docs/dram-model.md, \"Assumptions\": the "
        "test latency, the cycle and the DIVA module size are [unverified]). The median chip "
        "is z_chip = 0.", 0), "errors:\n", comment(
        "Activation: critical tRCD at nominal VDD, fitted to the DIVA tRCD rows (median and "
        "upper-quartile module) and, through the voltage law s(V) = ((1.35 - v_threshold) / "
        "(V - v_threshold))^alpha, to the Voltron faulty-line fractions (median and worst "
        "DIMM at each VDD)."), "  activation:\n",
        kv("bulk_mu", num(a["bulk_mu"]), "ns"), kv("bulk_sigma", num(a["bulk_sigma"]), "ns")]
    if a["weak_fraction"] > 0:
        t += [kv("weak_fraction", num(a["weak_fraction"]), "a second mode"),
              kv("weak_mu", num(a["weak_mu"]), "ns"),
              kv("weak_sigma", num(a["weak_sigma"]), "ns")]
    t += [kv("guard", num(a["guard"]), "ns: no cell needs more (nominal 13.75)"),
          kv("v_threshold", num(a["v_threshold"]), "V"), kv("alpha", num(a["alpha"])),
          comment("Precharge: the DIVA tRP rows, with the voltage law of activation (the "
                  "Voltron data cannot tell the two apart); untruncated (guard = nominal tRP)."),
          "  precharge:\n", kv("bulk_mu", num(r["bulk_mu"]), "ns"),
          kv("bulk_sigma", num(r["bulk_sigma"]), "ns"), kv("guard", num(r["guard"]), "ns"),
          kv("v_threshold", num(r["v_threshold"]), "V"), kv("alpha", num(r["alpha"])),
          comment("Module-to-module spread (a latency factor exp(sigma_chip z) per chip), fitted "
                  "with the rest to the spread between the median and the worst Voltron DIMM "
                  "and between the median and the upper-quartile DIVA module."),
          kv("sigma_chip", num(p["sigma_chip"]), indent=2),
          comment("Bank-to-bank spread (a latency factor per bank) from the DIVA raw records' "
                  "bank histogram: " +
                  ("the mean of the other vendors' estimates, because this vendor's raw files "
                   "sit where the model saturates." if bank["borrowed"] else
                   "sd of ln(bank share) %.3g over the rate's slope d ln P / d ln c = %.3g at "
                   "the raw files' timing." % (bank["sd_ln_share"], bank["slope"]))),
          kv("sigma_bank", num(p["sigma_bank"]), indent=2),
          comment("Retention: the Voltron retention CSV at 1.35 V (per-DIMM means over runs, "
                  "tests/data/dram/voltron_retention_per_dimm.csv). No error in any DIMM or "
                  "run up to %g ms at 70 C (t_min, at temp_ref = 70 C). beta: the median over "
                  "%d DIMMs of the growth exponent from 1024 to 2048 ms at 70 C. k10: gives "
                  "the median 70 / 20 C ratio at 2048 ms, %.3g, over the %d DIMMs of all "
                  "vendors with errors at both. ber_ref: the median DIMM's %.4g bit errors at "
                  "2048 ms and 70 C over 0.5 x 2^34 cells. No VDD dependence (1.35 -> 1.15 V "
                  "moves the data by x0.65-1.32)." % (
                      st["zero_max_ms"], st["n_beta"], st["temp_factor"], st["n_ratio"],
                      st["count_ref"])),
          "  retention:\n", kv("t_min_ms", num(p["ret_t_min_ms"])),
          kv("t_ref_ms", num(p["ret_t_ref_ms"])), kv("ber_ref", num(p["ret_ber_ref"])),
          kv("beta", num(p["ret_beta"])), kv("temp_ref", num(p["ret_temp_ref"]), "C"),
          kv("k10", num(p["ret_k10"]), "factor per 10 C"),
          comment("No variable-retention or per-read transient failures: nothing in the excerpt "
                  "measures them (docs/dram-model.md, \"What is not calibrated\")."),
          comment("Spatial structure from the DIVA raw records (%s): %.2f %% of the bit errors "
                  "lie in the high half of a %d-line column period (contrast %.3g); the rows "
                  "repeat every %d rows, and the ramp and edge factor explain %.0f %% of the "
                  "variance of the binned row profile. Weak bitlines and wordlines: not "
                  "estimated." % (", ".join(SPATIAL_FILES[v]), 100 * sp["high_share"],
                                  sp["period_lines"], sp["contrast"], sp["subarray_rows"],
                                  100 * sp["explained"])),
          "  spatial:\n",
          kv("column_period", p["column_period"], "bus-word columns, 8 per 64-byte line"),
          kv("column_phase", p["column_phase"]),
          kv("column_contrast", num(p["column_contrast"])),
          kv("subarray_rows", p["subarray_rows"]), kv("edge_rows", p["edge_rows"]),
          kv("row_ramp", num(p["row_ramp"])), kv("edge_boost", num(p["edge_boost"])),
          comment("Direction: charged -> discharged like retention (../shared facts dram.md "
                  "2.4: the reasonable default for voltage and latency errors), all true "
                  "cells, so a failing cell reads 0 [unverified: the parts' layout is not in "
                  "the data]. Half the cells of the test patterns hold the vulnerable value "
                  "(dram_errors.h)."),
          kv("layout", "true_cells", indent=2), kv("data_dependent", "true", indent=2),
          kv("test_vulnerable", "0.5", indent=2)]
    return "".join(t)


# ---------------------------------------------------------------------------
# Figures: hand-written SVG.

COLORS = {"A": "#1f77b4", "B": "#d62728", "C": "#2ca02c"}


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Panel:
    """One plot area: linear or log axes, ticks, labels; maps data to pixels."""

    def __init__(self, x0, y0, w, h, xr, yr, xlog=False, ylog=True):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xr, self.yr, self.xlog, self.ylog = xr, yr, xlog, ylog
        self.out = []

    def _t(self, v, r, log):
        if log:
            return (math.log10(v) - math.log10(r[0])) / (math.log10(r[1]) - math.log10(r[0]))
        return (v - r[0]) / (r[1] - r[0])

    def px(self, x, y):
        """Pixel of a data point; y below the axis is clamped to its bottom."""
        ty = self._t(max(y, self.yr[0]), self.yr, self.ylog) if y > 0 or not self.ylog else 0.0
        return (self.x0 + self._t(x, self.xr, self.xlog) * self.w,
                self.y0 + self.h - min(max(ty, 0.0), 1.0) * self.h)

    def frame(self, title, xlabel, ylabel, xticks, yticks):
        o = self.out
        o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" '
                 'stroke="#000"/>' % (self.x0, self.y0, self.w, self.h))
        for v, label in xticks:
            x, _ = self.px(v, self.yr[1])
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>'
                     % (x, self.y0 + self.h, x, self.y0 + self.h + 4))
            o.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>'
                     % (x, self.y0 + self.h + 16, esc(label)))
        for v, label in yticks:
            _, y = self.px(self.xr[0], v)
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>'
                     % (self.x0 - 4, y, self.x0, y))
            o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>'
                     % (self.x0, y, self.x0 + self.w, y))
            o.append('<text x="%.1f" y="%.1f" text-anchor="end">%s</text>'
                     % (self.x0 - 6, y + 4, esc(label)))
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-weight="bold">%s</text>'
                 % (self.x0 + self.w / 2, self.y0 - 8, esc(title)))
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>'
                 % (self.x0 + self.w / 2, self.y0 + self.h + 34, esc(xlabel)))
        if ylabel:
            o.append('<text transform="translate(%.1f,%.1f) rotate(-90)" '
                     'text-anchor="middle">%s</text>'
                     % (self.x0 - 50, self.y0 + self.h / 2, esc(ylabel)))

    def line(self, pts, color, dash=None):
        pts = [self.px(x, y) for x, y in pts]
        o = ' stroke-dasharray="%s"' % dash if dash else ""
        self.out.append('<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>'
                        % (color, o, " ".join("%.1f,%.1f" % p for p in pts)))

    def marker(self, x, y, color, filled=True):
        cx, cy = self.px(x, y)
        self.out.append('<circle cx="%.1f" cy="%.1f" r="3.5" stroke="%s" fill="%s"/>'
                        % (cx, cy, color, color if filled else "#fff"))

    def whisker(self, x, lo, hi, color):
        (cx, y1), (_, y2) = self.px(x, lo), self.px(x, hi)
        self.out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>'
                        % (cx, y1, cx, y2, color))
        for y in (y1, y2):
            self.out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>'
                            % (cx - 3, y, cx + 3, y, color))


def svg(width, height, body, legend):
    """An SVG document; legend = [(kind, color, dash, label)], kind line/dot/hollow."""
    o = ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="11">' % (width, height, width, height),
         '<rect width="100%" height="100%" fill="#fff"/>']
    o += body
    x, y = 70, height - 14
    for kind, color, dash, label in legend:
        if kind == "line":
            o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5"%s/>'
                     % (x, y - 4, x + 24, y - 4, color,
                        ' stroke-dasharray="%s"' % dash if dash else ""))
        else:
            o.append('<circle cx="%d" cy="%d" r="3.5" stroke="%s" fill="%s"/>'
                     % (x + 12, y - 4, color, color if kind == "dot" else "#fff"))
        o.append('<text x="%d" y="%d">%s</text>' % (x + 30, y, esc(label)))
        x += 36 + 6 * len(label)
    o.append("</svg>")
    return "\n".join(o) + "\n"


def decades(lo, hi):
    return [(10.0 ** k, "1e%d" % k if k else "1") for k in range(lo, hi + 1)]


def figure_lines(out):
    """Faulty-line fraction vs VDD: per vendor, data median (dot) with the
    range over DIMMs, the model's median chip and worst tested DIMM."""
    body, w, h = [], 250, 230
    vgrid = [1.0 + 0.0025 * i for i in range(141)]
    for k, v in enumerate(VENDORS):
        e = out["vendors"][v]
        p, cl = e["profile"], e["classes"]
        panel = Panel(80 + k * (w + 40), 30, w, h, (1.0, 1.35), (1e-8, 1.0), ylog=True)
        panel.frame("vendor " + v, "VDD (V)", "faulty 64-byte lines (fraction)" if k == 0 else "",
                    [(x / 100.0, "%.2f" % (x / 100.0)) for x in range(100, 136, 5)],
                    decades(-8, 0))
        n_max = max(len(xs) for xs in out["lines"][v].values())
        for z, dash in ((0.0, None), (blom_z(n_max, n_max), "5,3")):
            panel.line([(x, expected_line_fraction(p, op_voltron(x), z, cl)) for x in vgrid],
                       COLORS[v], dash)
        for vdd, xs in sorted(out["lines"][v].items()):
            panel.whisker(vdd, min(xs), max(xs), "#555")
            med = statistics.median(xs)
            panel.marker(vdd, med, COLORS[v], filled=med > 0)
        body += panel.out
    return svg(80 + 3 * (w + 40), h + 110, body, [
        ("dot", "#555", None, "data: median DIMM (hollow: 0, drawn at the axis), bar: min-max"),
        ("line", "#555", None, "model: median chip"),
        ("line", "#555", "5,3", "model: worst of n chips (Blom z)")])


def figure_latency(out):
    """DIVA bit-error rate vs tRCD and vs tRP: data median with quartiles,
    model median chip."""
    body, w, h = [], 330, 240
    grid = [4.5 + 0.05 * i for i in range(186)]
    for k, (knob, index) in enumerate((("tRCD", 0), ("tRP", 2))):
        panel = Panel(90 + k * (w + 50), 30, w, h, (4.5, 13.75), (1e-12, 1.0))
        panel.frame("bit errors vs " + knob + " (other latencies at 12.5 ns)", knob + " (ns)",
                    "observed BER (bit errors / 2^34)" if k == 0 else "",
                    [(x, "%g" % x) for x in (5, 7.5, 10, 12.5)],
                    [(10.0 ** e, "1e%d" % e if e else "1") for e in range(-12, 1, 2)])
        for v in VENDORS:
            e = out["vendors"][v]
            p, cl = e["profile"], e["classes"]

            def op(t):
                return (VDD_NOMINAL, t if index == 0 else 12.5, t if index == 2 else 12.5,
                        37.5, DIVA_REFW, TEMP_TEST)
            panel.line([(t, TEST_VULNERABLE * expected_fail(p, op(t), 0.0, cl)) for t in grid],
                       COLORS[v])
            for timing, xs in sorted(out["diva"][v].items()):
                if timing[2 - index] != 5:   # the other latency at its baseline
                    continue
                t = timing[index] * TCK_DIVA + 0.12 * (VENDORS.index(v) - 1)  # side by side
                lo, med, hi = (quantile(xs, q) / MODULE_BITS for q in (0.25, 0.5, 0.75))
                panel.whisker(t, lo, hi, COLORS[v])
                panel.marker(t, med, COLORS[v], filled=med > 0)
        body += panel.out
    return svg(90 + 2 * (w + 50), h + 110, body, [
        ("line", COLORS["A"], None, "vendor A"), ("line", COLORS["B"], None, "vendor B"),
        ("line", COLORS["C"], None, "vendor C"),
        ("dot", "#555", None, "data: median module (hollow: 0), bar: quartiles"),
        ("line", "#555", None, "model: median chip")])


def figure_retention(out):
    """Retention bit errors per module vs refresh interval at 20 and 70 C:
    data median DIMM (1.35 V) and the model."""
    body, w, h = [], 420, 260
    panel = Panel(90, 30, w, h, (64, 4096), (0.1, 1e5), xlog=True)
    panel.frame("retention errors at 1.35 V", "refresh interval (ms)",
                "bit errors per module (median DIMM)",
                [(2.0 ** k, "%d" % 2 ** k) for k in range(6, 13)], decades(-1, 5))
    grid = [64 * 2 ** (i / 20.0) for i in range(121)]
    for v in VENDORS:
        e = out["vendors"][v]
        p, cl = e["profile"], e["classes"]
        for t, dash in ((RET_T_HOT, None), (RET_T_COLD, "5,3")):
            panel.line([(ms, TEST_VULNERABLE * MODULE_BITS *
                         expected_fail(p, (VDD_NOMINAL, TRCD_NOMINAL, TRP_NOMINAL, TRAS_NOMINAL,
                                           ms, t), 0.0, cl)) for ms in grid], COLORS[v], dash)
            for (tt, ms), med in sorted(e["ret_stats"]["medians"].items()):
                if tt == t:
                    panel.marker(ms, med, COLORS[v], filled=t == RET_T_HOT)
    return svg(90 + w + 60, h + 110, panel.out, [
        ("line", COLORS["A"], None, "A"), ("line", COLORS["B"], None, "B"),
        ("line", COLORS["C"], None, "C"), ("dot", "#555", None, "70 C (model solid)"),
        ("hollow", "#555", None, "20 C (model dashed); zeros at the axis")])


FIGURES = (("docs/figures/dram-voltron-lines.svg", figure_lines),
           ("docs/figures/dram-diva-latency.svg", figure_latency),
           ("docs/figures/dram-retention.svg", figure_retention))


# ---------------------------------------------------------------------------
# The properties the C suite dram_calib checks, computed the same way here.

MEDIAN_FACTOR = 3.0        # model median-DIMM line fraction within this factor
DIVA_FACTOR = 3.0          # model DIVA median at tRCD 7.5 ns and tRP points
RET_FACTOR_HOT = 1.5       # retention median counts at 70 C, 1024-2048 ms
RET_FACTOR_COLD = 3.0      # retention median counts at 20 C, 2048 ms, where non-zero


def onsets(out, v):
    """(data, model) onset: the highest tested VDD at which the median DIMM
    has a faulty line / the median chip expects more than one faulty line
    per module."""
    e = out["vendors"][v]
    tested = sorted(out["lines"][v], reverse=True)
    data = next(x for x in tested if statistics.median(out["lines"][v][x]) > 0)
    model = next(x for x in tested if expected_line_fraction(
        e["profile"], op_voltron(x), 0.0, e["classes"]) * MODULE_LINES > 1.0)
    return data, model


def checks(out):
    """[(vendor, property, data, model, ok)]."""
    rows = []
    for v in VENDORS:
        e = out["vendors"][v]
        p, cl = e["profile"], e["classes"]
        nominal = (VDD_NOMINAL, TRCD_NOMINAL, TRP_NOMINAL, TRAS_NOMINAL, TREFW_NOMINAL, TEMP_TEST)
        worst = max(expected_fail(p, nominal[:5] + (t,), z, cl) for z in (0.0, 3.0)
                    for t in (RET_T_COLD, RET_T_HOT))
        rows.append((v, "P(fail) at nominal VDD and timing (z = 0 and 3; 20, 70 C)", "0",
                     "%g" % worst, worst == 0.0))
        d, m = onsets(out, v)
        rows.append((v, "onset VDD (V)", "%.3f" % d, "%.3f" % m, abs(d - m) <= 0.025 + 1e-9))
        for q, mv in zip(e["points"], e["model"]):
            if q.kind == "lines" and q.stat == "median" and q.data > 0:
                rows.append((v, "median faulty lines at %.3f V" % q.vdd, "%.3g" % q.data,
                             "%.3g" % mv, 1.0 / MEDIAN_FACTOR <= mv / q.data <= MEDIAN_FACTOR))
        med = {q.timing: (q, mv) for q, mv in zip(e["points"], e["model"])
               if q.kind == "bits" and q.stat == "median"}
        d10, m10 = med[(4, 15, 5)][0].data, med[(4, 15, 5)][1]
        d75, m75 = med[(3, 15, 5)][0].data, med[(3, 15, 5)][1]
        cliff_d = math.log10(d75 / max(d10, 0.5))
        cliff_m = math.log10(m75 / m10) if m10 > 0 else math.inf
        rows.append((v, "tRCD 10 -> 7.5 ns cliff (decades)", "%.2f" % cliff_d, "%.2f" % cliff_m,
                     cliff_d >= 3 and cliff_m >= 3))
        for t in ((3, 15, 5), (5, 14, 4), (5, 15, 3), (5, 14, 2)):
            q, mv = med[t]
            label = "DIVA median bits, %s (%s)" % (q.label.split(" ", 1)[1], q.status)
            if q.status == "fit":
                ok = 1.0 / DIVA_FACTOR <= mv / q.data <= DIVA_FACTOR
            elif q.status in ("zero", "floor"):
                ok = mv <= q.limit
            else:
                ok = True
            rows.append((v, label, "%.3g" % q.data, "%.3g" % mv, ok))
        st = e["ret_stats"]
        for t in (RET_T_COLD, RET_T_HOT):
            f = expected_fail(p, nominal[:4] + (256.0, t), 0.0, cl)
            rows.append((v, "retention P(fail) at 256 ms, %g C" % t, "0", "%g" % f, f == 0.0))

        def ret_count(ms, t):
            return TEST_VULNERABLE * MODULE_BITS * expected_fail(p, nominal[:4] + (ms, t), 0.0, cl)
        beta = math.log(ret_count(2048, RET_T_HOT) / ret_count(1024, RET_T_HOT)) / math.log(2)
        rows.append((v, "retention exponent 1024 -> 2048 ms, 70 C", "%.3g" % st["beta"],
                     "%.3g" % beta, abs(beta / st["beta"] - 1) <= 0.01))
        factor = ret_count(2048, RET_T_HOT) / ret_count(2048, RET_T_COLD)
        rows.append((v, "retention 70 C / 20 C at 2048 ms", "%.3g" % st["temp_factor"],
                     "%.3g" % factor, abs(factor / st["temp_factor"] - 1) <= 0.01))
        for (t, ms), dm in sorted(st["medians"].items()):
            # 70 C: every interval from 1024 ms; 20 C: the 2048 ms reference of
            # the temperature factor (the 20 C counts are a few bits, noisy)
            if ms < 1024 or dm == 0 or (t == RET_T_COLD and ms != RET_T_REF_MS):
                continue
            mm = ret_count(ms, t)
            tol = RET_FACTOR_HOT if t == RET_T_HOT else RET_FACTOR_COLD
            rows.append((v, "retention median bits, %g ms, %g C" % (ms, t), "%.3g" % dm,
                         "%.3g" % mm, 1.0 / tol <= mm / dm <= tol))
    return rows


# ---------------------------------------------------------------------------
# The generated tables of docs/dram-model.md (between BEGIN/END markers).

DOC = "docs/dram-model.md"


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fmt(x):
    return "0" if x == 0 else "%.3g" % x


def doc_params(out):
    keys = [("activation bulk_mu (ns)", "act", "bulk_mu"),
            ("activation bulk_sigma (ns)", "act", "bulk_sigma"),
            ("activation weak_fraction", "act", "weak_fraction"),
            ("activation weak_mu (ns)", "act", "weak_mu"),
            ("activation weak_sigma (ns)", "act", "weak_sigma"),
            ("activation guard (ns)", "act", "guard"),
            ("precharge bulk_mu (ns)", "pre", "bulk_mu"),
            ("precharge bulk_sigma (ns)", "pre", "bulk_sigma"),
            ("v_threshold (V)", "act", "v_threshold"), ("alpha", "act", "alpha"),
            ("sigma_chip", None, "sigma_chip"), ("sigma_bank", None, "sigma_bank"),
            ("retention beta", None, "ret_beta"), ("retention k10", None, "ret_k10"),
            ("retention ber_ref (2048 ms, 70 C)", None, "ret_ber_ref"),
            ("retention t_min_ms (70 C)", None, "ret_t_min_ms"),
            ("column_period (columns)", None, "column_period"),
            ("column_phase (columns)", None, "column_phase"),
            ("column_contrast", None, "column_contrast"),
            ("subarray_rows", None, "subarray_rows"), ("edge_rows", None, "edge_rows"),
            ("row_ramp", None, "row_ramp"), ("edge_boost", None, "edge_boost")]
    rows = []
    for label, mech, k in keys:
        vals = []
        for v in VENDORS:
            p = out["vendors"][v]["profile"]
            x = p[mech][k] if mech else p[k]
            if mech == "act" and k.startswith("weak_") and p["act"]["weak_fraction"] == 0:
                vals.append("-")
            else:
                vals.append(num(x))
        rows.append([label] + vals)
    rows.append(["objective (sum of squares)"] +
                ["%.3f" % out["vendors"][v]["objective"] for v in VENDORS])
    return table(["parameter"] + ["vendor " + v for v in VENDORS], rows)


def doc_residuals(out):
    rows = []
    for v in VENDORS:
        e = out["vendors"][v]
        for q, m in zip(e["points"], e["model"]):
            if q.kind == "lines":
                what = "Voltron %s DIMM, %.3f V" % (q.stat, q.vdd)
                d, mm = fmt(q.data), fmt(m)
            else:
                what = "DIVA %s module, %s" % (q.stat, q.label.split(" ", 1)[1])
                d, mm = fmt(q.data), fmt(m)
            if q.status == "fit":
                r = "%+.2f" % q.residual(m)
            elif q.status == "excluded":
                r = "(excluded)"
            else:
                r = "%s <= %s: %s" % (fmt(m), fmt(q.limit), "ok" if m <= q.limit else
                                      "%+.2f" % q.residual(m))
            rows.append([v, what, q.status, "%.2f" % q.z, q.n, d, mm, r])
    return table(["vendor", "point", "status", "z", "n", "data", "model", "log10(model/data)"],
                 rows)


def doc_checks(out):
    return table(["vendor", "property", "data", "model", "ok"],
                 [[v, what, d, m, "yes" if ok else "**NO**"] for v, what, d, m, ok in checks(out)])


def doc_spatial(out):
    rows = []
    for v in VENDORS:
        sp, b = out["spatial"][v], out["vendors"][v]["bank"]
        rows.append([v, ", ".join(SPATIAL_FILES[v]), "%d lines, phase %d" % (
            sp["period_lines"], sp["phase_lines"]), "%.2f %%" % (100 * sp["high_share"]),
            num(sp["contrast"]), sp["subarray_rows"], num(sp["row_ramp"]),
            num(sp["edge_boost"]), "%.0f %%" % (100 * sp["explained"]),
            "%.3f / %.3g%s" % (b["sd_ln_share"], b["slope"], " (borrowed)" if b["borrowed"]
                               else "")])
    return table(["vendor", "raw files", "column period", "errors in high half", "contrast",
                  "subarray rows", "row_ramp", "edge_boost (8 rows)", "row variance explained",
                  "bank sd(ln share) / slope"], rows)


def doc_retention(out):
    rows = []
    for v in VENDORS:
        st = out["vendors"][v]["ret_stats"]
        p = out["vendors"][v]["profile"]
        rows.append([v, st["n_dimms"], "%.3g (%d DIMMs)" % (st["beta"], st["n_beta"]),
                     "%.3g (%d DIMMs, all vendors)" % (st["temp_factor"], st["n_ratio"]),
                     num(p["ret_k10"]), "%.4g" % st["count_ref"], num(p["ret_ber_ref"]),
                     "%g" % st["zero_max_ms"]])
    return table(["vendor", "DIMMs", "beta (median)", "70/20 C at 2048 ms (median)", "k10",
                  "median bits, 2048 ms, 70 C", "ber_ref", "longest error-free interval (ms)"],
                 rows)


DOC_BLOCKS = (("parameters", doc_params), ("residuals", doc_residuals), ("checks", doc_checks),
              ("spatial", doc_spatial), ("retention", doc_retention))


def doc_text(out, text):
    """text with every generated block replaced."""
    for name, fn in DOC_BLOCKS:
        begin = "<!-- BEGIN calibrate_dram.py: %s -->" % name
        end = "<!-- END calibrate_dram.py: %s -->" % name
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            raise SystemExit("%s: missing the markers of block '%s'" % (DOC, name))
        text = text[:i + len(begin)] + "\n" + fn(out) + "\n" + text[j:]
    return text


# ---------------------------------------------------------------------------
# Main.

def model_points(out):
    """The Python model's values at every fitted point and a few retention
    points, for the C suite to compare with the C functions: the script
    must mirror them (tests/data/dram/README.md)."""
    rows = ["vendor,function,vdd,trcd,trp,tras,trefw,temperature,z,value"]
    for v in VENDORS:
        e = out["vendors"][v]
        p, cl = e["profile"], e["classes"]
        pts = [("line_fraction" if q.kind == "lines" else "fail", q.op, q.z)
               for q in e["points"]]
        pts += [("fail", (VDD_NOMINAL, TRCD_NOMINAL, TRP_NOMINAL, TRAS_NOMINAL, ms, t), 0.0)
                for t in (RET_T_COLD, RET_T_HOT) for ms in (512.0, 1024.0, 1536.0, 2048.0)]
        for fn, op, z in pts:
            f = expected_line_fraction if fn == "line_fraction" else expected_fail
            rows.append("%s,%s,%s,%.10g" % (v, fn, ",".join("%g" % x for x in op) + ",%.6f" % z,
                                            f(p, op, z, cl)))
    return "\n".join(rows) + "\n"


def outputs(out):
    """{path: text} of every generated file."""
    files = {"configs/devices/ddr3l-vendor%s.yaml" % v: yaml_text(v, out) for v in VENDORS}
    files["tests/data/dram/model_points.csv"] = model_points(out)
    for path, fn in FIGURES:
        files[path] = fn(out)
    with open(os.path.join(ROOT, DOC)) as f:
        files[DOC] = doc_text(out, f.read())
    return files


def tokens(text):
    """Numbers and the text between them, for a comparison that tolerates
    last-digit differences of another libm."""
    import re
    return re.split(r"(-?\d+\.?\d*(?:[eE][-+]?\d+)?)", text)


def same(a, b):
    ta, tb = tokens(a), tokens(b)
    if len(ta) != len(tb):
        return False
    for i, (x, y) in enumerate(zip(ta, tb)):
        if i % 2 == 0:
            if x != y:
                return False
        elif x != y:
            fx, fy = float(x), float(y)
            if abs(fx - fy) > 2e-3 * max(abs(fx), abs(fy)) + 0.15:
                return False
    return True


def report(out):
    for v in VENDORS:
        e = out["vendors"][v]
        print("vendor %s: objective %.4f" % (v, e["objective"]))
    print()
    print(doc_params(out))
    print()
    print(doc_residuals(out))
    print()
    print(doc_spatial(out))
    print()
    print(doc_retention(out))
    print()
    print(doc_checks(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true",
                    help="rewrite the device files, the figures and the doc tables")
    ap.add_argument("--derive", metavar="DIR",
                    help="rebuild tests/data/dram/ from the full data sets in DIR")
    args = ap.parse_args()
    if args.derive:
        derive(args.derive)
        print("wrote", os.path.relpath(DATA, ROOT))
        return 0
    out = calibrate()
    report(out)
    failed = [c for c in checks(out) if not c[4]]
    files = outputs(out)
    if args.write:
        for path, text in files.items():
            full = os.path.join(ROOT, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
            print("wrote", path)
        return 1 if failed else 0
    stale = []
    for path, text in files.items():
        try:
            with open(os.path.join(ROOT, path)) as f:
                if not same(f.read(), text):
                    stale.append(path)
        except FileNotFoundError:
            stale.append(path)
    for path in stale:
        print("stale:", path, "(run scripts/calibrate_dram.py --write)")
    for c in failed:
        print("check failed:", c)
    return 1 if stale or failed else 0


if __name__ == "__main__":
    sys.exit(main())
