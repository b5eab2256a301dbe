#!/usr/bin/env python3
"""Figures of docs/rram-model.md: BER against programming energy and against
time, and (from the end-to-end sweeps) accuracy against programming energy.

Every number comes from apxsim itself: the script writes small sweep configs
over the RRAM device files (the zoo's FC model on the first test image, so a
job costs one fault map of its 5.9 million weight bits), runs `apxsim sweep`
into a temporary database and reads, per point, the device's closed-form BER
(the `ber` cost item) and the measured one (bits_changed / bits_exposed).
Pure standard library: subprocess, sqlite3, tempfile, math.

    python3 scripts/rram_figures.py                    # BER figures
    python3 scripts/rram_figures.py --fc results/rram-fc.db --vgg3 results/rram-vgg3.db
    python3 scripts/rram_figures.py --table            # the conditions' BERs (markdown)
    python3 scripts/rram_figures.py --results results/rram-fc.db   # a sweep's points (markdown)

Run from the repository root after building (build/apxsim).
"""
import argparse
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
from xml.sax.saxutils import escape

DEVICES = {"1T1R": "configs/devices/rram-1t1r.yaml",
           "2T2R": "configs/devices/rram-hfo2-2t2r.yaml"}
YEAR = 31536000
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


# ---- data from apxsim ---------------------------------------------------------

def run_sweep(apxsim, workdir, name, device, energies, times):
    cfg = os.path.join(workdir, name + ".yaml")
    db = os.path.join(workdir, name + ".db")
    with open(cfg, "w") as f:
        f.write(f"""name: {name}
chips: 1
output: {db}
workload: {{model: workloads/zoo/fmnist-fc.bnn, limit: 1}}
memory:
  geometry: {{channels: 1, ranks: 1, bankgroups: 1, banks: 1024, rows: 128, columns: 2,
             bus_bits: 64, mapping: BaRoCo}}
device: {device}
operating_points:
  energy_pj: [{", ".join(repr(e) for e in energies)}]
  time_s: [{", ".join(repr(t) for t in times)}]
""")
    subprocess.run([apxsim, "sweep", cfg, "--quiet"], check=True)
    return read_points(db)


def read_points(db):
    """{(energy_pj, time_s): (closed-form ber, measured ber, accuracy, current uA,
    read energy pJ per inference, latency ns per inference, chips)}: means over
    the chips of each point."""
    con = sqlite3.connect(db)
    rows = con.execute("""
        SELECT (SELECT value FROM op_knobs k WHERE k.op_key = e.op_key AND knob = 'energy_pj'),
               (SELECT value FROM op_knobs k WHERE k.op_key = e.op_key AND knob = 'time_s'),
               avg(c.value), avg(1.0 * e.bits_changed / e.bits_exposed), avg(e.accuracy),
               avg((SELECT value FROM eval_costs i WHERE i.eval_key = e.eval_key
                    AND i.item = 'program_current_ua')),
               avg(e.energy_pj), avg(e.latency_ns), count(*)
        FROM evaluations e JOIN eval_costs c ON c.eval_key = e.eval_key AND c.item = 'ber'
        GROUP BY e.op_key""").fetchall()
    con.close()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def results(db):
    """Markdown: every point of a sweep, strongest programming first."""
    print("| energy_pj | time_s | chips | accuracy | BER measured | BER closed form | "
          "read energy (uJ) | latency (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for (e, t), v in sorted(read_points(db).items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        print("| %g | %g | %d | %.2f %% | %.3g | %.3g | %.4g | %.4g |"
              % (e, t, v[6], 100 * v[2], v[1], v[0], v[4] / 1e6, v[5] / 1e6))


def conditions(path):
    """The `conditions:` block of a device file: [(name, energy_pj)] (the
    simple `  name: value  # comment` lines those files use)."""
    out, inside = [], False
    for line in open(path):
        text = line.split("#")[0].rstrip()
        if not text:
            continue
        if not line.startswith(" "):
            inside = text.startswith("conditions:")
            continue
        if inside:
            name, value = text.strip().split(":")
            out.append((name.strip(), float(value)))
    return out


def log_grid(lo, hi, n):
    return [float("%.4g" % (lo * (hi / lo) ** (i / (n - 1)))) for i in range(n)]


# ---- SVG ---------------------------------------------------------------------------

class Plot:
    """A line plot with log or linear axes, written as standalone SVG 1.1."""

    W, H, L, R, T, B = 640, 420, 70, 170, 40, 50

    def __init__(self, title, xlabel, ylabel, xr, yr, xlog=True, ylog=True):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xr, self.yr, self.xlog, self.ylog = xr, yr, xlog, ylog
        self.items, self.legend = [], []

    def _map(self, v, r, log, a, b):
        f = (lambda x: math.log10(x)) if log else (lambda x: x)
        return a + (f(v) - f(r[0])) / (f(r[1]) - f(r[0])) * (b - a)

    def px(self, x):
        return self._map(x, self.xr, self.xlog, self.L, self.W - self.R)

    def py(self, y):
        return self._map(y, self.yr, self.ylog, self.H - self.B, self.T)

    def line(self, pts, color, label=None, dash=None, marker=False):
        pts = [(x, y) for x, y in pts if y > 0 or not self.ylog]
        if not pts:
            return
        d = " ".join("%s%.1f,%.1f" % ("M" if i == 0 else "L", self.px(x), self.py(y))
                     for i, (x, y) in enumerate(pts))
        style = ' stroke-dasharray="%s"' % dash if dash else ""
        if not marker:
            self.items.append('<path d="%s" fill="none" stroke="%s" stroke-width="1.6"%s/>'
                              % (d, color, style))
        else:
            for x, y in pts:
                self.items.append('<circle cx="%.1f" cy="%.1f" r="2.8" fill="none" stroke="%s"/>'
                                  % (self.px(x), self.py(y), color))
        if label:
            self.legend.append((label, color, dash, marker))

    def hline(self, y, text, below=False):
        yy = self.py(y)
        self.items.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#999" '
                          'stroke-dasharray="2,3"/>' % (self.L, yy, self.W - self.R, yy))
        self.items.append('<text x="%d" y="%.1f" font-size="10" fill="#666" text-anchor="end">'
                          '%s</text>' % (self.W - self.R - 3, yy + (11 if below else -3),
                                         escape(text)))

    def ticks(self, r, log):
        if log:
            lo, hi = math.floor(math.log10(r[0]) + 1e-9), math.ceil(math.log10(r[1]) - 1e-9)
            return [10.0 ** k for k in range(lo, hi + 1) if r[0] <= 10.0 ** k <= r[1] * 1.0001]
        raw = (r[1] - r[0]) / 5
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
        first = math.ceil(r[0] / step - 1e-9) * step
        return [first + i * step for i in range(int((r[1] - first) / step + 1e-9) + 1)]

    @staticmethod
    def fmt(v, log):
        if log:
            k = round(math.log10(v))
            return "1" if k == 0 else "10" if k == 1 else "1e%d" % k
        return "%g" % round(v, 6)

    def svg(self):
        out = ['<?xml version="1.0" encoding="UTF-8"?>',
               '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" '
               'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">'
               % (self.W, self.H, self.W, self.H),
               '<rect width="100%" height="100%" fill="white"/>',
               '<text x="10" y="22" font-size="14">%s</text>' % escape(self.title)]
        x0, x1, y0, y1 = self.L, self.W - self.R, self.H - self.B, self.T
        for t in self.ticks(self.xr, self.xlog):
            x = self.px(t)
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, y0, x, y1))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                       % (x, y0 + 16, self.fmt(t, self.xlog)))
        for t in self.ticks(self.yr, self.ylog):
            y = self.py(t)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>' % (x0, y, x1, y))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                       % (x0 - 5, y + 4, self.fmt(t, self.ylog)))
        out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
                   % (x0, y1, x1 - x0, y0 - y1))
        out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>'
                   % ((x0 + x1) // 2, self.H - 12, escape(self.xlabel)))
        out.append('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s'
                   '</text>' % ((y0 + y1) // 2, (y0 + y1) // 2, escape(self.ylabel)))
        out.append('<defs><clipPath id="plot"><rect x="%d" y="%d" width="%d" height="%d"/>'
                   '</clipPath></defs>' % (x0, y1, x1 - x0, y0 - y1))
        out.append('<g clip-path="url(#plot)">')
        out.extend(self.items)
        out.append('</g>')
        for i, (label, color, dash, marker) in enumerate(self.legend):
            y = self.T + 12 + 18 * i
            x = self.W - self.R + 12
            if marker:
                out.append('<circle cx="%d" cy="%d" r="2.8" fill="none" stroke="%s"/>'
                           % (x + 10, y - 4, color))
            else:
                style = ' stroke-dasharray="%s"' % dash if dash else ""
                out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.6"%s/>'
                           % (x, y - 4, x + 20, y - 4, color, style))
            out.append('<text x="%d" y="%d" font-size="11">%s</text>' % (x + 26, y, escape(label)))
        out.append('</svg>')
        return "\n".join(out) + "\n"


def write(path, plot):
    with open(path, "w") as f:
        f.write(plot.svg())
    print("wrote", path)


# ---- figures -------------------------------------------------------------------------

def ber_energy(apxsim, work, outdir):
    energies = log_grid(0.05, 20, 25)
    p = Plot("BER against programming energy per bit: closed form (lines), measured (circles)",
             "programming energy per bit (pJ)", "bit error rate", (0.05, 20), (1e-8, 0.5))
    for i, (cell, dev) in enumerate(DEVICES.items()):
        pts = run_sweep(apxsim, work, "ber-energy-" + cell, dev, energies, [0, YEAR])
        for t, dash, tl in ((0, None, "0"), (YEAR, "5,3", "1 year")):
            curve = [(e, pts[(e, t)][0]) for e in energies if (e, t) in pts]
            p.line(curve, COLORS[i], "%s, t = %s" % (cell, tl), dash)
        meas = [(e, pts[(e, 0)][1]) for e in energies if (e, 0) in pts]
        p.line(meas, COLORS[i], "%s measured, t = 0" % cell, marker=True)
    for b, label, below in ((1e-4, "1e-4: standard BNN", False),
                            (4e-2, "4e-2: error-aware BNN", False),
                            (0.033, "3.3 %: ultra-low power", True)):
        p.hline(b, label, below)
    write(os.path.join(outdir, "rram-ber-energy.svg"), p)


def ber_time(apxsim, work, outdir):
    times = [0] + log_grid(1, 10 * YEAR, 18)
    p = Plot("BER against time since programming (relaxation)",
             "time since programming (s); t = 0 at the left edge", "bit error rate",
             (0.3, 10 * YEAR), (1e-7, 0.5))
    conds = {"1T1R": [14.8, 2.47, 0.6, 0.0959], "2T2R": [3.65, 0.962, 0.16, 0.0854]}
    for ci, (cell, dev) in enumerate(DEVICES.items()):
        pts = run_sweep(apxsim, work, "ber-time-" + cell, dev, conds[cell], times)
        for k, e in enumerate(conds[cell]):
            curve = [(max(t, 0.3), pts[(e, t)][0]) for t in times if (e, t) in pts]
            p.line(curve, COLORS[k], "%s %g pJ" % (cell, e), None if ci else "5,3")
    write(os.path.join(outdir, "rram-ber-time.svg"), p)


def accuracy(dbs, outdir):
    data = [(name, read_points(db)) for name, db in dbs]
    low = min(100 * v[2] for _, pts in data for v in pts.values())
    p = Plot("Accuracy against programming energy (2T2R, Fashion-MNIST)",
             "programming energy per bit (pJ)", "test accuracy (%)", (0.07, 4),
             (5 * math.floor(low / 5), 95), ylog=False)
    for wi, (name, pts) in enumerate(data):
        for ti, (t, tl) in enumerate(((0, "0"), (86400, "1 day"), (YEAR, "1 year"))):
            curve = sorted((e, 100 * v[2]) for (e, tt), v in pts.items() if tt == t)
            p.line(curve, COLORS[wi], "%s, t = %s" % (name, tl), [None, "5,3", "2,2"][ti])
    write(os.path.join(outdir, "rram-accuracy.svg"), p)


def table(apxsim, work):
    """Markdown: each condition's current and closed-form BER over time."""
    times = [(0, "t = 0"), (86400, "1 day"), (YEAR, "1 year")]
    print("| device | condition | energy_pj | current (uA) | " +
          " | ".join("BER %s" % t for _, t in times) + " |")
    print("|---|---|---|---|" + "---|" * len(times))
    for cell, dev in DEVICES.items():
        conds = conditions(dev)
        pts = run_sweep(apxsim, work, "table-" + cell, dev, [e for _, e in conds],
                        [t for t, _ in times])
        for name, e in conds:
            print("| %s | %s | %g | %.3g | %s |" % (
                cell, name, e, pts[(e, 0)][3],
                " | ".join("%.3g" % pts[(e, t)][0] for t, _ in times)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apxsim", default="build/apxsim")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--fc", help="results of configs/sweeps/rram-fc.yaml")
    ap.add_argument("--vgg3", help="results of configs/sweeps/rram-vgg3.yaml")
    ap.add_argument("--table", action="store_true", help="print the conditions' BERs only")
    ap.add_argument("--results", metavar="DB", help="print the points of a sweep's results only")
    a = ap.parse_args()
    if a.results:
        results(a.results)
        return 0
    if a.table:
        with tempfile.TemporaryDirectory() as work:
            table(a.apxsim, work)
        return 0
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        ber_energy(a.apxsim, work, a.out)
        ber_time(a.apxsim, work, a.out)
    dbs = [(n, d) for n, d in (("FC", a.fc), ("VGG3", a.vgg3)) if d]
    if dbs:
        accuracy(dbs, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
