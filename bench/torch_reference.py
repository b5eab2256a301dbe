#!/usr/bin/python3
"""Side-by-side reference: the same .bnn, the same fault mask, in PyTorch.

Runs `apxsim eval` on a model with uniform bit errors (it writes the faulty
weights and its predictions), then evaluates those faulty weights in PyTorch
with float +/-1 arithmetic (float32 is exact here: every pre-activation is an
integer below 2^24), checks that the predictions are identical, and times
both on the same machine and thread count in one run.

Optional dependency: Debian's python3-torch and python3-numpy
(apt-get install python3-torch python3-numpy). Not run by the test suite.

    bench/torch_reference.py workloads/zoo/fmnist-fc.bnn --ber 0.01 --threads 1
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib


def _threads_from_argv(argv):
    """The --threads value, read before torch is imported (see below)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


# torch.set_num_threads() limits PyTorch's own pool but not the BLAS library
# that Debian's python3-torch calls for matrix products (OpenBLAS, which
# starts one thread per core by default): without these variables a
# "1-thread" reference measured here ran on both cores (CPU time twice the
# wall time). They must be set before the libraries load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv(sys.argv)

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - a usage message, not a test
    sys.exit(f"torch_reference.py needs python3-torch and python3-numpy ({e}); "
             "apt-get install python3-torch python3-numpy")

KIND_U8, KIND_BIN, KIND_OUT, KIND_CONV_U8, KIND_CONV_BIN = 1, 2, 3, 4, 5


def read_bnn(path):
    """Parses a version 2 .bnn file (docs/bnn-format.md) into layer dicts."""
    data = open(path, "rb").read()
    if data[:8] != b"APXSBNN\0":
        raise ValueError(f"{path}: not a .bnn file")
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise ValueError(f"{path}: checksum mismatch")
    version, header_size = struct.unpack_from("<II", data, 8)
    if version != 2:
        raise ValueError(f"{path}: version {version}; re-save it with apxsim to get version 2")
    in_rows, in_cols, n_classes, n_layers, in_channels = struct.unpack_from("<5I", data, 80)
    pos, layers = header_size, []
    for _ in range(n_layers):
        kind, n_in, out, words, scale, in_c, in_h, in_w, pool = struct.unpack_from(
            "<4If4I", data, pos)
        pos += 36
        raw = np.frombuffer(data, dtype="<u8", count=out * words, offset=pos)
        pos += 8 * out * words
        bits = np.unpackbits(raw.view(np.uint8).reshape(out, 8 * words), axis=1,
                             bitorder="little")[:, :n_in]
        layer = dict(kind=kind, n_in=n_in, out=out, in_c=in_c, in_h=in_h, in_w=in_w,
                     pool=pool, scale=scale, w=bits.astype(np.float32) * 2 - 1)
        if kind != KIND_OUT:
            layer["threshold"] = np.frombuffer(data, dtype="<i4", count=out, offset=pos)
            pos += 4 * out
            layer["direction"] = np.frombuffer(data, dtype="i1", count=out, offset=pos)
            pos += out + (-out % 4)
        layers.append(layer)
    return dict(in_rows=in_rows, in_cols=in_cols, in_channels=in_channels,
                n_classes=n_classes, layers=layers)


def to_torch(model):
    """Weights as float tensors in PyTorch layouts (conv: OIHW)."""
    out = []
    for L in model["layers"]:
        t = dict(L)
        if L["kind"] in (KIND_CONV_U8, KIND_CONV_BIN):
            # bit (kh*3+kw)*in_c + c  ->  w[o, c, kh, kw]
            w = L["w"].reshape(L["out"], 3, 3, L["in_c"]).transpose(0, 3, 1, 2)
            t["w"] = torch.from_numpy(np.ascontiguousarray(w))
        else:
            t["w"] = torch.from_numpy(L["w"])
        if "threshold" in L:
            t["threshold"] = torch.from_numpy(L["threshold"].astype(np.float32))
            t["direction"] = torch.from_numpy(L["direction"].astype(np.float32))
        out.append(t)
    return out


def forward(layers, x):
    """x: N x H x W x C float pixels (0..255). Returns class scores."""
    x = x.permute(0, 3, 1, 2)  # NCHW for the conv layers
    flat = False
    for L in layers:
        if L["kind"] in (KIND_CONV_U8, KIND_CONV_BIN):
            a = F.conv2d(x, L["w"], padding=1)  # zero padding = taps left out
            if L["pool"] == 2:
                a = F.max_pool2d(a, 2)
        else:
            if not flat:  # apxsim flattens HWC
                x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
                flat = True
            a = x @ L["w"].T
        if L["kind"] == KIND_OUT:
            return a
        shape = (1, -1, 1, 1) if a.dim() == 4 else (1, -1)
        thr, dirn = L["threshold"].view(shape), L["direction"].view(shape)
        fires = torch.where(dirn > 0, a > thr, a < thr)
        x = fires.float() * 2 - 1
    raise ValueError("model has no output layer")


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">4I", f.read(16))
        assert magic == 0x803, f"{path}: not an IDX image file"
        return np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows, cols, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--ber", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chip", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings for each side")
    ap.add_argument("--data", default=os.environ.get("APXSIM_FASHION_MNIST",
                                                     "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--apxsim", default=os.path.join(os.path.dirname(__file__), "..", "build",
                                                     "apxsim"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        faulty, preds = os.path.join(tmp, "faulty.bnn"), os.path.join(tmp, "pred.txt")
        cmd = [args.apxsim, "eval", args.model, "--ber", str(args.ber), "--seed", str(args.seed),
               "--chip", str(args.chip), "--threads", str(args.threads), "--data", args.data,
               "--json"]
        apx_runs = []
        for i in range(args.repeat):
            extra = ["--write-model", faulty, "--predictions", preds] if i == 0 else []
            out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True).stdout
            apx_runs.append(json.loads(out))
        apx_pred = np.loadtxt(preds, dtype=np.int64)
        model = read_bnn(faulty)

    images = read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    layers = to_torch(model)
    x_all = torch.from_numpy(images.astype(np.float32))
    torch_best, torch_pred = None, None
    with torch.no_grad():
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            scores = [forward(layers, x_all[i:i + args.batch])
                      for i in range(0, len(x_all), args.batch)]
            pred = torch.cat(scores).argmax(dim=1).numpy()  # first maximum = lowest class
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            if torch_best is None or dt < torch_best:
                torch_best, torch_cpu = dt, cpu
            torch_pred = pred
    apx_best = min(r["seconds"] for r in apx_runs)
    identical = bool(np.array_equal(apx_pred, torch_pred))
    result = {
        "model": args.model, "ber": args.ber, "seed": args.seed, "chip": args.chip,
        "threads": args.threads, "samples": int(len(images)),
        "apxsim_seconds": apx_best, "torch_seconds": torch_best,
        "torch_cpu_seconds": torch_cpu,
        "speedup": torch_best / apx_best if apx_best > 0 else None,
        "identical_predictions": identical,
        "differing_predictions": int((apx_pred != torch_pred).sum()),
        "accuracy": apx_runs[0]["accuracy"], "torch_version": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model        {args.model}, ber {args.ber}, seed {args.seed}, chip {args.chip}")
        print(f"threads      {args.threads} (apxsim and torch {torch.__version__})")
        print(f"apxsim       {apx_best:.4f} s for {len(images)} images (faults included)")
        print(f"torch        {torch_best:.4f} s (inference only, batch {args.batch}; "
              f"CPU time {torch_cpu:.4f} s = {torch_cpu / torch_best:.2f} cores busy)")
        print(f"speedup      {result['speedup']:.1f}x")
        print(f"predictions  {'identical' if identical else 'DIFFERENT'} "
              f"({result['differing_predictions']} differ), accuracy {result['accuracy']:.4f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
