"""Throughput of unlearnlib.distill.distill against two hand-written distillation loops.

All three distil the same student (the SISA paper's MNIST CNN at 1/8 width, 32 hidden units)
from the same teacher (the same CNN at full width, untrained: speed does not depend on the
weights) on mnist5k (4,000 images) with Adam, batch 64, T = 4, alpha = 0.9:

* ``naive``: the textbook loop, a teacher forward pass on every mini-batch;
* ``cached``: a hand-written loop over teacher logits computed once (what ``distill`` does
  when no attention transfer is asked for);
* ``distill``: the library trainer.

The loops are interleaved (ABBA order) and each is timed several times; the best time of
each is compared, which suppresses noise from other processes. Prints the ratios
distill / cached (overhead of the library; target >= 0.9) and distill / naive (the gain from
caching the fixed teacher's logits; > 1 expected).

    python benchmarks/bench_distill.py [--epochs 2] [--repeats 4] [--device cpu]
"""

import argparse
import os
import time

import torch
from torch.nn import functional as F

os.environ.setdefault("UNLEARNLIB_PROGRESS", "0")

import unlearnlib as ul  # noqa: E402
from unlearnlib.distill import distill, kd_loss  # noqa: E402

T, ALPHA = 4.0, 0.9


def hand_written(teacher, student, x, y, epochs, batch_size, device, cache):
    teacher.to(device).eval()
    student.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    if cache:
        with torch.no_grad():
            cached = torch.cat([teacher(x[i:i + 1024]) for i in range(0, len(y), 1024)])
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n).to(device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            if cache:
                z_t = cached[idx]
            else:
                with torch.no_grad():
                    z_t = teacher(x[idx])
            z_s = student(x[idx])
            loss = ALPHA * kd_loss(z_s, z_t, temperature=T) + (1 - ALPHA) * F.cross_entropy(z_s, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = ul.get_device(args.device)
    ul.seed_everything(0)
    ds = ul.load_dataset("mnist5k")
    x, y = ds.train.x, ds.train.y
    teacher = ul.build_model("sisa_cnn", ds.input_shape, ds.num_classes)
    make_student = lambda: ul.build_model("sisa_cnn", ds.input_shape, ds.num_classes,  # noqa: E731
                                          width=0.125, hidden=32)
    n_images = args.epochs * len(y)

    def run_distill():
        distill(teacher, make_student(), ds.train, epochs=args.epochs, batch_size=args.batch_size,
                temperature=T, alpha=ALPHA, device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()

    runs = {
        "distill": run_distill,
        "cached": lambda: hand_written(teacher, make_student(), x, y, args.epochs, args.batch_size, device, True),
        "naive": lambda: hand_written(teacher, make_student(), x, y, args.epochs, args.batch_size, device, False),
    }
    for fn in runs.values():  # warm-up: allocator, kernels, lazy imports
        fn()
    times = {name: [] for name in runs}
    order = list(runs)
    for i in range(args.repeats):
        # alternate the order so that drifts in machine load hit every loop alike
        for name in (order if i % 2 == 0 else order[::-1]):
            times[name].append(timed(runs[name]))
    best = {name: min(t) for name, t in times.items()}
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'loop':<34}{'best s':>8}{'images/s':>11}")
    labels = {"distill": "unlearnlib distill", "cached": "hand-written, cached teacher",
              "naive": "hand-written, teacher per batch"}
    for name in runs:
        print(f"{labels[name]:<34}{best[name]:8.2f}{n_images / best[name]:11.0f}")
    print(f"throughput ratio distill / cached: {best['cached'] / best['distill']:.3f} (target >= 0.9)")
    print(f"throughput ratio distill / naive:  {best['naive'] / best['distill']:.3f} (> 1: caching pays)")


if __name__ == "__main__":
    main()
