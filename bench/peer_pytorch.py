#!/usr/bin/python3
"""peer_pytorch.py: the PyTorch peer for lowbit's side-by-side benchmarks.

It builds the same LeNet-5 variant as lowbit (seed 004, ALGORITHMS.md) in PyTorch and measures
training speed, FP32 inference speed, int8 (torch.ao.quantization, eager PTQ) inference speed and,
on request, the full Fashion-MNIST training recipe's accuracy. Every subcommand prints exactly ONE
JSON object on stdout (progress and chatter go to stderr), so bench/compare.sh can read it with jq.

It is not part of lowbit: no lowbit code is used or tested here, and nothing here is a reference
for lowbit's numerics (PyTorch's default weight init and data order differ from lowbit's Rng).

Run it with Debian's system python (python3-torch 1.13): /usr/bin/python3 bench/peer_pytorch.py.
For PyTorch at its best on the development machine, put OpenBLAS-openmp first for this process only:
    LD_LIBRARY_PATH="$(bench/openblas_openmp.sh)" /usr/bin/python3 bench/peer_pytorch.py infer-speed
See bench/README.md for what each figure means.
"""

import argparse
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time

DATA_DIR_DEFAULT = "/usr/share/datasets/fashion-mnist"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data: gzipped IDX files, 28x28 uint8 -> 1x32x32 float in [-1, 1], padding = background = -1.
# ---------------------------------------------------------------------------------------------

def read_idx(path):
    """Reads a (gzipped) IDX file into a numpy array; checks the magic and the size."""
    import numpy as np
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise SystemExit(f"{path}: file too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    count = 1
    for d in dims:
        count *= d
    body = raw[4 + 4 * ndim:]
    if len(body) != count:
        raise SystemExit(f"{path}: expected {count} bytes of data for shape {dims}, got {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_split(data_dir, split):
    """Returns (images float32 [N,1,32,32] in [-1,1], labels int64 [N]) as torch tensors."""
    import torch
    prefix = "train" if split == "train" else "t10k"
    images = None
    labels = None
    for ext in (".gz", ""):
        ip = os.path.join(data_dir, f"{prefix}-images-idx3-ubyte{ext}")
        lp = os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte{ext}")
        if os.path.exists(ip) and os.path.exists(lp):
            images = read_idx(ip)
            labels = read_idx(lp)
            break
    if images is None:
        raise SystemExit(f"--data-dir {data_dir}: no {prefix}-images-idx3-ubyte[.gz] / "
                         f"{prefix}-labels-idx1-ubyte[.gz] there")
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape[0] != images.shape[0]:
        raise SystemExit(f"{data_dir}: unexpected shapes images {images.shape} labels {labels.shape}")
    x = torch.from_numpy(images.copy()).to(torch.float32).mul_(2.0 / 255.0).sub_(1.0)
    # Pad 28x28 -> 32x32 with the background value after scaling (0 -> -1), as the course's
    # Pad(2) on the raw image followed by Normalize(0.5, 0.5) does.
    x = torch.nn.functional.pad(x.unsqueeze(1), (2, 2, 2, 2), value=-1.0)
    y = torch.from_numpy(labels.astype("int64"))
    return x.contiguous(), y


def speed_data(args, n):
    """n input images (and labels) for the speed tests: real test images, or random ones."""
    import torch
    if args.data == "real":
        try:
            x, y = load_split(args.data_dir, "test")
            reps = (n + x.shape[0] - 1) // x.shape[0]
            return x.repeat(reps, 1, 1, 1)[:n].contiguous(), y.repeat(reps)[:n].contiguous()
        except SystemExit as e:
            log(f"real data unavailable ({e}); using random data")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 32, 32, generator=g) * 2 - 1
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


# ---------------------------------------------------------------------------------------------
# Model: LeNet-5 variant of seed 004, no biases, 61,470 parameters.
# ---------------------------------------------------------------------------------------------

def build_model():
    import torch
    from torch import nn
    from torch.ao.quantization import DeQuantStub, QuantStub

    class LeNet5(nn.Module):
        # Shapes for one image: 1x32x32 -> conv1 6x28x28 -> pool 6x14x14 -> conv2 16x10x10 ->
        # pool 16x5x5 -> conv3 120x1x1 -> 120 -> fc1 84 -> fc2 10. The stubs are identities until
        # the model is prepared/converted for int8.
        def __init__(self):
            super().__init__()
            self.quant = QuantStub()
            self.conv1 = nn.Conv2d(1, 6, 5, bias=False)
            self.relu1 = nn.ReLU()
            self.pool1 = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
            self.relu2 = nn.ReLU()
            self.pool2 = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(16, 120, 5, bias=False)
            self.relu3 = nn.ReLU()
            self.fc1 = nn.Linear(120, 84, bias=False)
            self.relu4 = nn.ReLU()
            self.fc2 = nn.Linear(84, 10, bias=False)
            self.dequant = DeQuantStub()

        def forward(self, x):
            x = self.quant(x)
            x = self.pool1(self.relu1(self.conv1(x)))
            x = self.pool2(self.relu2(self.conv2(x)))
            x = self.relu3(self.conv3(x))
            x = torch.flatten(x, 1)
            x = self.relu4(self.fc1(x))
            x = self.fc2(x)
            return self.dequant(x)

    model = LeNet5()
    nparams = sum(p.numel() for p in model.parameters())
    if nparams != 61470:
        raise SystemExit(f"model has {nparams} parameters, expected 61,470")
    return model


FUSE_LIST = [["conv1", "relu1"], ["conv2", "relu2"], ["conv3", "relu3"], ["fc1", "relu4"]]


def make_qconfig(engine, observer, weights):
    """The engine's default qconfig, or a chosen activation observer / weight granularity."""
    import torch
    from torch.ao import quantization as tq
    if observer == "default":
        return tq.get_default_qconfig(engine)
    act_cls = {"minmax": tq.MinMaxObserver, "histogram": tq.HistogramObserver}[observer]
    act = act_cls.with_args(dtype=torch.quint8, reduce_range=False)
    if weights == "per-channel":
        w = tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                   qscheme=torch.per_channel_symmetric)
    else:
        w = tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return tq.QConfig(activation=act, weight=w)


def quantize_ptq(float_model, engine, calib_x, calib_batch, observer="default",
                 weights="per-channel"):
    """Eager post-training static quantization: fuse conv+relu and linear+relu, observe, convert."""
    import copy
    import torch
    from torch.ao import quantization as tq
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(float_model).eval()
    m = tq.fuse_modules(m, FUSE_LIST)
    m.qconfig = make_qconfig(engine, observer, weights)
    tq.prepare(m, inplace=True)
    with torch.no_grad():
        for i in range(0, calib_x.shape[0], calib_batch):
            m(calib_x[i:i + calib_batch])
    tq.convert(m, inplace=True)
    return m


# ---------------------------------------------------------------------------------------------
# Environment facts recorded in every JSON object.
# ---------------------------------------------------------------------------------------------

def blas_in_use():
    """Which BLAS this process loaded, from /proc/self/maps (torch links libblas.so.3)."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    p = parts[5]
                    base = os.path.basename(p)
                    if any(k in base for k in ("blas", "lapack", "mkl_", "blis", "atlas")):
                        paths.add(os.path.realpath(p))
    except OSError:
        return "unknown", []
    paths = sorted(paths)
    joined = " ".join(paths)
    if "mkl" in joined:
        name = "mkl"
    elif "openblas" in joined:
        if "openmp" in joined:
            name = "openblas-openmp"
        elif "pthread" in joined:
            name = "openblas-pthread"
        elif "serial" in joined:
            name = "openblas-serial"
        else:
            name = "openblas"
    elif "blis" in joined:
        name = "blis"
    elif "atlas" in joined:
        name = "atlas"
    elif any(os.path.basename(p).startswith("libblas.so") for p in paths):
        name = "reference"  # netlib libblas3: /usr/lib/<triplet>/blas/libblas.so.3
    else:
        name = "unknown"
    return name, paths


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def aten_capability():
    """The ISA ATen's own kernels dispatch to, e.g. "AVX2" (from torch.__config__.show())."""
    import torch
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return None


def base_record(args, bench):
    import torch
    blas, blas_paths = blas_in_use()
    return {
        "peer": "pytorch",
        "bench": bench,
        "torch": torch.__version__,
        "blas": blas,
        "blas_libs": blas_paths,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "isa": aten_capability(),
        "loadavg_start": list(os.getloadavg()),
    }


def emit(rec):
    rec["loadavg_end"] = list(os.getloadavg())
    print(json.dumps(rec), flush=True)


# ---------------------------------------------------------------------------------------------
# Timing helpers.
# ---------------------------------------------------------------------------------------------

def throughput(fn, images_per_call, min_window_s, windows):
    """Median images/s over `windows` timed windows of at least min_window_s seconds each."""
    rates = []
    for _ in range(windows):
        calls = 0
        t0 = time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_window_s:
                break
        rates.append(calls * images_per_call / dt)
    return statistics.median(rates), rates


def latency_us(fn, n):
    """p50 and p90 of n single calls, microseconds."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    samples.sort()
    return samples[len(samples) // 2], samples[(len(samples) * 9) // 10]


def maybe_load(model, args):
    import torch
    if getattr(args, "load", None):
        state = torch.load(args.load, map_location="cpu")
        model.load_state_dict(state)
        log(f"loaded weights from {args.load}")


# ---------------------------------------------------------------------------------------------
# Subcommands.
# ---------------------------------------------------------------------------------------------

def cmd_train_speed(args):
    import torch
    from torch import nn
    torch.manual_seed(args.seed)
    model = build_model().train()
    maybe_load(model, args)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    nbatches = 64
    x, y = speed_data(args, args.batch * nbatches)
    xs = [x[i * args.batch:(i + 1) * args.batch].contiguous() for i in range(nbatches)]
    ys = [y[i * args.batch:(i + 1) * args.batch].contiguous() for i in range(nbatches)]
    state = {"i": 0}

    def step():
        i = state["i"] % nbatches
        state["i"] += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(args.steps * args.batch / (time.perf_counter() - t0))
    rec = base_record(args, "train-speed")
    rec.update({
        "task": "train", "precision": "fp32", "engine": None, "data": args.data,
        "batch": args.batch, "images_per_second": statistics.median(rates),
        "windows_images_per_second": rates, "steps_per_window": args.steps,
        "warmup_steps": args.warmup, "latency_us_p50": None, "latency_us_p90": None,
        "optimizer": f"SGD lr {args.lr} momentum 0.9", "loss": "cross-entropy",
    })
    emit(rec)


def run_infer(args, model, bench, precision, engine):
    import torch
    x, _ = speed_data(args, max(args.batch, 256) * 4)
    batches = [x[i * args.batch:(i + 1) * args.batch].contiguous() for i in range(4)]
    one = x[:1].contiguous()
    state = {"i": 0}
    with torch.no_grad():
        def fwd_batch():
            model(batches[state["i"] & 3])
            state["i"] += 1

        for _ in range(args.warmup):
            fwd_batch()
        ips, rates = throughput(fwd_batch, args.batch, args.window_s, args.windows)
        for _ in range(args.warmup):
            model(one)
        p50, p90 = latency_us(lambda: model(one), args.latency_calls)
    rec = base_record(args, bench)
    rec.update({
        "task": "infer", "precision": precision, "engine": engine, "data": args.data,
        "batch": args.batch, "images_per_second": ips, "windows_images_per_second": rates,
        "latency_batch": 1, "latency_us_p50": p50, "latency_us_p90": p90,
        "latency_calls": args.latency_calls,
    })
    return rec


def cmd_infer_speed(args):
    import torch
    torch.manual_seed(args.seed)
    model = build_model().eval()
    maybe_load(model, args)
    rec = run_infer(args, model, "infer-speed", "fp32", None)
    emit(rec)


def pick_engine(requested):
    import torch
    supported = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if requested == "auto":
        for e in ("onednn", "x86", "fbgemm", "qnnpack"):
            if e in supported:
                return e, supported
        raise SystemExit("no quantized engine in torch.backends.quantized.supported_engines")
    if requested not in supported:
        raise SystemExit(f"--engine {requested}: not supported by this torch build "
                         f"(supported: {', '.join(supported)})")
    return requested, supported


def cmd_int8_speed(args):
    import torch
    engine, supported = pick_engine(args.engine)
    torch.manual_seed(args.seed)
    model = build_model().eval()
    maybe_load(model, args)
    calib, _ = speed_data(args, args.calib_batches * args.batch)
    t0 = time.perf_counter()
    qmodel = quantize_ptq(model, engine, calib, args.batch, args.observer, args.weights)
    prep_s = time.perf_counter() - t0
    rec = run_infer(args, qmodel, "int8-speed", "int8", engine)
    rec.update({
        "supported_engines": supported, "observer": args.observer, "weights": args.weights
        if args.observer != "default" else "engine default",
        "calibration_images": int(calib.shape[0]), "quantize_seconds": prep_s,
    })
    emit(rec)


def evaluate(model, x, y, batch=1000):
    import torch
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def cmd_accuracy(args):
    import torch
    from torch import nn
    t_start = time.perf_counter()
    xtr, ytr = load_split(args.data_dir, "train")
    xte, yte = load_split(args.data_dir, "test")
    torch.manual_seed(args.seed)
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed)
    accs, losses, epoch_s = [], [], []
    n = xtr.shape[0]
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for i in range(0, n, args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += float(loss) * idx.shape[0]
            count += idx.shape[0]
        epoch_s.append(time.perf_counter() - t0)
        model.eval()
        acc = evaluate(model, xte, yte)
        accs.append(acc)
        losses.append(total / count)
        log(f"epoch {epoch + 1}/{args.epochs}: train loss {total / count:.4f}, "
            f"test accuracy {100 * acc:.2f}%, {epoch_s[-1]:.1f} s")
    if args.save:
        torch.save(model.state_dict(), args.save)
        log(f"saved weights to {args.save}")
    rec = base_record(args, "accuracy")
    rec.update({
        "task": "accuracy", "precision": "fp32", "dataset": "fashion-mnist",
        "epochs": args.epochs, "seed": args.seed, "batch": args.batch,
        "optimizer": f"SGD lr {args.lr} momentum 0.9", "init": "pytorch default",
        "test_accuracy_per_epoch": accs, "train_loss_per_epoch": losses,
        "epoch_seconds": epoch_s, "test_accuracy": accs[-1] if accs else None,
        "images_per_second": None, "latency_us_p50": None,
    })
    if args.ptq:
        engine, supported = pick_engine(args.engine)
        calib = xtr[:args.calib_images]
        ptq = {}
        for observer in ("minmax", "histogram"):
            for weights in ("per-tensor", "per-channel"):
                q = quantize_ptq(model, engine, calib, 256, observer, weights)
                a = evaluate(q, xte, yte)
                ptq[f"{observer}_{weights}"] = a
                log(f"int8 PTQ ({engine}, {observer} activations, {weights} symmetric weights, "
                    f"{calib.shape[0]} calibration images): test accuracy {100 * a:.2f}%")
        rec.update({"ptq_engine": engine, "ptq_calibration_images": int(calib.shape[0]),
                    "ptq_test_accuracy": ptq})
    rec["seconds"] = time.perf_counter() - t_start
    emit(rec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, batch):
        sp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
        sp.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
        sp.add_argument("--seed", type=int, default=1, help="torch.manual_seed (default 1)")
        sp.add_argument("--data-dir", default=DATA_DIR_DEFAULT,
                        help=f"Fashion-MNIST IDX folder (default {DATA_DIR_DEFAULT})")

    def speed(sp, batch):
        common(sp, batch)
        sp.add_argument("--data", choices=["real", "random"], default="real",
                        help="inputs: Fashion-MNIST test images (default) or random in [-1,1]")
        sp.add_argument("--load", help="float state_dict saved by `accuracy --save` (default: "
                                       "freshly initialized weights)")
        sp.add_argument("--windows", type=int, default=5, help="timed windows, median reported")

    sp = sub.add_parser("train-speed", help="SGD training steps per second, as images/s")
    speed(sp, 64)
    sp.add_argument("--steps", type=int, default=200, help="steps per timed window")
    sp.add_argument("--warmup", type=int, default=30, help="untimed steps first")
    sp.add_argument("--lr", type=float, default=0.01)
    sp.set_defaults(fn=cmd_train_speed)

    for name, fn, help_ in (("infer-speed", cmd_infer_speed, "FP32 eager inference"),
                            ("int8-speed", cmd_int8_speed, "int8 PTQ eager inference")):
        sp = sub.add_parser(name, help=help_ + ": images/s at --batch and batch-1 latency")
        speed(sp, 256)
        sp.add_argument("--window-s", type=float, default=0.5, help="seconds per timed window")
        sp.add_argument("--warmup", type=int, default=10, help="untimed calls first")
        sp.add_argument("--latency-calls", type=int, default=1000, help="batch-1 calls timed")
        if name == "int8-speed":
            sp.add_argument("--engine", default="auto",
                            help="onednn | x86 | fbgemm | qnnpack | auto (first supported of "
                                 "onednn, x86, fbgemm, qnnpack)")
            sp.add_argument("--observer", choices=["default", "minmax", "histogram"],
                            default="default", help="activation observer (default: the engine's "
                                                    "get_default_qconfig)")
            sp.add_argument("--weights", choices=["per-tensor", "per-channel"],
                            default="per-channel", help="weight scales when --observer is set")
            sp.add_argument("--calib-batches", type=int, default=4,
                            help="calibration batches of --batch images")
        sp.set_defaults(fn=fn)

    sp = sub.add_parser("accuracy", help="full recipe on Fashion-MNIST, test accuracy per epoch")
    common(sp, 64)
    sp.add_argument("--epochs", type=int, default=10)
    sp.add_argument("--lr", type=float, default=0.01)
    sp.add_argument("--ptq", action="store_true",
                    help="also int8 PTQ accuracy with minmax and histogram observers")
    sp.add_argument("--engine", default="auto", help="quantized engine for --ptq")
    sp.add_argument("--calib-images", type=int, default=2048,
                    help="training images used for --ptq calibration")
    sp.add_argument("--save", help="save the trained float state_dict here")
    sp.set_defaults(fn=cmd_accuracy)

    args = p.parse_args()
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.batch < 1:
        p.error("--batch must be >= 1")
    # Before torch (and its OpenMP runtime / OpenBLAS) loads, so every pool starts at this size.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    args.fn(args)


if __name__ == "__main__":
    main()
