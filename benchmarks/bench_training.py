"""Throughput of unlearnlib.training.fit against a minimal hand-written PyTorch loop.

Both train the same model (the SISA paper's MNIST CNN) on the same data (mnist5k, 4,000
images) on the same device with Adam and batch 64. The two are interleaved (ABBA) and each
is timed several times; the best epoch time of each is compared, which suppresses noise from
other processes. Prints the ratio fit / hand-written (1.0 = as fast; target >= 0.9).

    python benchmarks/bench_training.py [--epochs 2] [--repeats 3] [--device cpu]
"""

import argparse
import os
import time

import torch
from torch.nn import functional as F

os.environ.setdefault("UNLEARNLIB_PROGRESS", "0")

import unlearnlib as ul  # noqa: E402


def hand_written_loop(model, x, y, epochs, batch_size, lr, device):
    model.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n).to(device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
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
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = ul.get_device(args.device)
    ul.seed_everything(0)
    ds = ul.load_dataset("mnist5k")
    x, y = ds.train.x, ds.train.y
    n_images = args.epochs * len(y)

    def run_fit():
        model = ul.build_model("sisa_cnn", ds.input_shape, ds.num_classes)
        ul.fit(model, ds.train, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3,
               device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run_hand():
        model = ul.build_model("sisa_cnn", ds.input_shape, ds.num_classes)
        hand_written_loop(model, x, y, args.epochs, args.batch_size, 1e-3, device)

    run_fit(), run_hand()  # warm-up: allocator, kernels, lazy imports
    fit_times, hand_times = [], []
    for i in range(args.repeats):
        # alternate the order (ABBA) so that drifts in machine load hit both loops alike
        if i % 2 == 0:
            fit_times.append(timed(run_fit))
            hand_times.append(timed(run_hand))
        else:
            hand_times.append(timed(run_hand))
            fit_times.append(timed(run_fit))
    fit_best, hand_best = min(fit_times), min(hand_times)
    ratio = (n_images / fit_best) / (n_images / hand_best)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'loop':<22}{'best s':>8}{'images/s':>11}")
    print(f"{'unlearnlib fit':<22}{fit_best:8.2f}{n_images / fit_best:11.0f}")
    print(f"{'hand-written loop':<22}{hand_best:8.2f}{n_images / hand_best:11.0f}")
    print(f"throughput ratio fit / hand-written: {ratio:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
