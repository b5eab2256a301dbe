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
    """G of activation or precharge: S_a(t_eff), truncated at the guard."""
    t_eff = latency / (s_of_v(d, vdd, vdd_nominal) * c_chip)
    if t_eff >= d["guard"]:
        return 0.0
    return max(0.0, survival(d, t_eff) - survival(d, d["guard"]))


def g_retention(p, trefw, temperature):
    """G_r = b_ref (t / t_ref)^beta for t > t_min, t the temperature-scaled window."""
    if p["ret_ber_ref"] <= 0:
        return 0.0
    t = trefw * math.exp(math.log(p["ret_k10"]) * (temperature - p["ret_temp_ref"]) / 10.0)
    if t <= p["ret_t_min_ms"]:
        return 0.0
    return p["ret_ber_ref"] * (t / p["ret_t_ref_ms"]) ** p["ret_beta"]


ROW_CLASSES = 16


def spatial_classes(p):
    """The spatial weights as classes: a list of (probability, line factor)
    for what is constant along a 64-byte line (column half, row position,
    weak wordline), and a list of (probability, cell factor) for what varies
    within it (weak bitlines). Factors are normalised so that the mean of
    line factor x cell factor is 1 (dram_errors.h)."""
    contrast = p["column_contrast"]
    cols = [(0.5, 1.0), (0.5, 1.0 / contrast)] if contrast > 1 else [(1.0, 1.0)]
    n = p["subarray_rows"]
    rows = {}
    for r in range(n):
        f = (1.0 + p["row_ramp"] * r / n) * (p["edge_boost"] if r < p["edge_rows"] else 1.0)
        # the edge rows form one class, the others ROW_CLASSES classes of
        # consecutive rows (each with its mean factor)
        key = -1 if r < p["edge_rows"] else (r - p["edge_rows"]) * ROW_CLASSES // (n - p["edge_rows"])
        q, sf = rows.get(key, (0.0, 0.0))
        rows[key] = (q + 1.0 / n, sf + f / n)
    rows = {sf / q: q for q, sf in rows.values()}
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
    """P(a cell of spatial weight w fails in any mechanism)."""
    ok = (1.0 - min(1.0, w * g_act)) * (1.0 - min(1.0, w * g_pre)) * (1.0 - min(1.0, g_ret))
    return 1.0 - ok


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
    return sum(ql * qb * cell_fail(fl * fb, ga, gp, gr) for ql, fl in line for qb, fb in bls)


def expected_line_fraction(p, op, z, classes=None):
    """dram_errors_expected_line_fraction: the fraction of 64-byte lines (512
    cells of one row) with at least one observed error when test_vulnerable
    of the cells hold their vulnerable value."""
    line, bls = classes or spatial_classes(p)
    ga, gp, gr = rates(p, op, z)
    if ga == 0.0 and gp == 0.0 and gr == 0.0:
        return 0.0
    tv = p["test_vulnerable"]
    ok = 0.0
    for ql, fl in line:
        cell_ok = 0.0
        for qb, fb in bls:
            cell_ok += qb * (1.0 - tv * cell_fail(fl * fb, ga, gp, gr))
        ok += ql * cell_ok ** LINE_BITS
    return 1.0 - ok


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
    stay below the detection limit of one line or one bit per module),
    'floor' (DIVA data indistinguishable from the baseline: one-sided below
    twice the baseline), 'excluded' (a DIVA median below the median at a
    milder setting of the same knob: a nested model cannot follow it)."""

    def __init__(self, vendor, kind, label, op, z, data, status, n):
        self.vendor, self.kind, self.label, self.op, self.z = vendor, kind, label, op, z
        self.data, self.status, self.n = data, status, n
        self.limit = 1.0 / MODULE_LINES if kind == "lines" else 1.0

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


def diva_points(diva, vendor):
    """The median module at every DIVA timing, with its status."""
    med = {t: statistics.median(xs) for t, xs in diva[vendor].items()}
    base = med[DIVA_BASELINE]
    pts = []
    for t in sorted(med, key=lambda t: (-t[0], -t[2], -t[1])):
        x = med[t]
        milder = [u for u in med if u != t and
                  ((u[0] == t[0] and u[2] > t[2]) or (u[2] == t[2] and u[0] > t[0]))]
        if any(med[u] > x for u in milder):
            status = "excluded"
        elif x <= 2 * base and base > 0:
            status = "floor"
        else:
            status = "fit" if x > 0 else "zero"
        p = Point(vendor, "bits", "tRCD %g tRP %g ns" % (t[0] * TCK_DIVA, t[2] * TCK_DIVA),
                  op_diva(t), 0.0, x, status, len(diva[vendor][t]))
        if status == "floor":
            p.limit = 2 * base
        p.timing = t
        pts.append(p)
    return pts


# ---------------------------------------------------------------------------
# Minimiser: Nelder-Mead (deterministic start simplex, restarts from the best).

def nelder_mead(f, x0, step, iters=3000, tol=1e-8):
    n = len(x0)
    simplex = [list(x0)] + [[x0[j] + (step[j] if j == i else 0.0) for j in range(n)]
                            for i in range(n)]
    vals = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=lambda i: vals[i])
        simplex = [simplex[i] for i in order]
        vals = [vals[i] for i in order]
        if vals[-1] - vals[0] <= tol * (abs(vals[0]) + tol):
            break
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
    x, fx = list(x0), f(x0)
    for _ in range(rounds):
        x, fx_new = nelder_mead(f, x, step)
        if fx - fx_new < 1e-9:
            break
        fx = fx_new
        step = [s * 0.5 for s in step]
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

def retention_stats(ret, vendor):
    """The data statistics the profile reproduces, at nominal VDD:
    beta: median over DIMMs of ln(c(2048)/c(1024)) / ln 2 at 70 C (DIMMs
          with errors at both);
    temp_factor: median over DIMMs of c(70 C)/c(20 C) at 2048 ms (DIMMs with
          errors at both);
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
    ratios = [c(d, RET_T_HOT, RET_T_REF_MS) / c(d, RET_T_COLD, RET_T_REF_MS) for d in dimms
              if (c(d, RET_T_HOT, RET_T_REF_MS) or 0) > 0
              and (c(d, RET_T_COLD, RET_T_REF_MS) or 0) > 0]
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

    def dist(prefix):
        return {"bulk_mu": d[prefix + "mu"], "bulk_sigma": math.exp(d[prefix + "ln_sigma"]),
                "weak_fraction": 0.0, "weak_mu": 0.0, "weak_sigma": 1.0,
                "guard": min(d[prefix + "guard"], TRCD_NOMINAL if prefix == "act_" else
                             TRP_NOMINAL),
                "v_threshold": d["v_threshold"], "alpha": math.exp(d["ln_alpha"])}
    p = {"vdd_nominal": VDD_NOMINAL, "act": dist("act_"), "pre": dist("pre_"),
         "sigma_chip": math.exp(d["ln_sigma_chip"]), "sigma_bank": 0.0,
         "vrt_fraction": 0.0, "vrt_ratio": 1.0, "vrt_dwell_s": 1.0, "vrt_duty": 0.0,
         "transient_band": 1.0, "transient_p_read": 0.0,
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
# voltage law (the Voltron data cannot tell them apart); the weak population
# is not used (no data point calls for a second mode).
LATENCY_PARAMS = ("act_mu", "act_ln_sigma", "act_guard", "pre_mu", "pre_ln_sigma", "pre_guard",
                  "v_threshold", "ln_alpha", "ln_sigma_chip")
LATENCY_START = (8.0, math.log(0.5), TRCD_NOMINAL, 7.0, math.log(0.5), TRP_NOMINAL,
                 0.5, 0.0, math.log(0.05))
# Starts: untruncated, and truncated at the 10 ns DIVA step (the guard is
# the one discontinuous direction, which a simplex does not cross well).
LATENCY_STARTS = (LATENCY_START,
                  LATENCY_START[:2] + (10.0,) + LATENCY_START[3:5] + (10.0,) + LATENCY_START[6:])
LATENCY_STEP = (0.5, 0.3, 0.5, 0.5, 0.3, 0.5, 0.2, 0.5, 0.5)

# Tie-breakers for directions the data leave open (docs/dram-model.md,
# "Calibration"): a weak pull of each guard toward the nominal latency (no
# truncation unless the data need it) and of each bulk width toward
# SIGMA_ANCHOR. Their weights are small against the data residuals.
GUARD_WEIGHT = 0.02       # per ns below nominal
SIGMA_WEIGHT = 0.05       # per e-fold away from the anchor
SIGMA_ANCHOR = 0.5        # ns


def tie_breakers(x):
    d = dict(zip(LATENCY_PARAMS, x))
    return [GUARD_WEIGHT * max(0.0, TRCD_NOMINAL - d["act_guard"]),
            GUARD_WEIGHT * max(0.0, TRP_NOMINAL - d["pre_guard"]),
            SIGMA_WEIGHT * (d["act_ln_sigma"] - math.log(SIGMA_ANCHOR)),
            SIGMA_WEIGHT * (d["pre_ln_sigma"] - math.log(SIGMA_ANCHOR))]


def fit_latency(points, spatial, retention):
    """Minimises the squared log10 residuals of the points plus the
    tie-breakers over LATENCY_PARAMS. V_t is kept in [0, lowest tested VDD)."""
    vmin = min(p.op[0] for p in points)
    classes = spatial_classes(profile(spatial, retention, LATENCY_START))

    def objective(x):
        d = dict(zip(LATENCY_PARAMS, x))
        if not 0.0 <= d["v_threshold"] < vmin - 0.01:
            return 1e6 + abs(d["v_threshold"])
        p = profile(spatial, retention, x)
        r = [q.residual(q.model(p, classes)) for q in points] + tie_breakers(x)
        return sum(v * v for v in r)
    best = None
    for start in LATENCY_STARTS:
        x, fx = minimise(objective, start, LATENCY_STEP)
        if best is None or fx < best[1] - 1e-12:
            best = (x, fx)
    return best
