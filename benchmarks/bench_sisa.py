"""Speed-up of one SISA unlearning request over retraining every constituent from scratch,
measured, next to what the cost model expects.

For each setting (S shards, R slices) the script trains a SISA ensemble of small MLPs on the
generated Purchase-like data, then serves single deletion requests one at a time, **one in
each slice position** (slice 1 of some shard, slice 2 of another, ...; shards drawn at random
with a fixed seed), so that their mean estimates the expectation over uniformly random
requests with little sampling noise (with R = 1 it serves ``--requests`` requests). Retraining
every constituent from scratch on the remaining data is timed too (a fresh SISA on the same
split without the deleted samples), several times.

Printed per setting:

* ``expected``: the closed form 3RS/(2R+1) (sisa_cost.expected_speedup) and the exact value
  for this split and the integer epoch schedule (sisa_cost.expected_cost_for_split);
* ``passes``: measured speed-up in sample-passes (what the cost model counts);
* ``compute``: training time only (forward, backward, optimiser steps);
* ``wall``: the whole calls, checkpoint I/O (digest, write, fsync, rename, reading the
  restart checkpoint) and model set-up included, for both unlearning and full retraining;
* ``wall / expected``: the target is >= 0.8.

Speed-ups are ratios of medians (full retraining) to means (requests). Run on an idle machine
for stable timings; on a shared machine report them as measured under load.

    python benchmarks/bench_sisa.py [--n-train 20000] [--epochs 10] [--repeats 3] [--device cpu]
"""

import argparse
import functools
import os
import statistics
import tempfile
import time

import numpy as np

os.environ.setdefault("UNLEARNLIB_PROGRESS", "0")

import unlearnlib as ul  # noqa: E402
from unlearnlib import sisa_cost  # noqa: E402
from unlearnlib.sisa import SISA  # noqa: E402

SETTINGS = [(5, 5), (10, 1), (2, 10)]


def stratified_requests(model: SISA, count: int, rng: np.random.Generator) -> list[int]:
    """One index per slice position (or ``count`` for R = 1), each from a random shard."""
    split = model.split
    positions = range(split.num_slices) if split.num_slices > 1 else [0] * count
    picks = []
    for r in positions:
        shard = int(rng.integers(split.num_shards))
        members = split.slices[shard][r]
        picks.append(int(members[int(rng.integers(len(members)))]))
    return picks


def run_setting(data, make_model, num_shards, num_slices, args):
    settings = dict(num_shards=num_shards, num_slices=num_slices, epochs=args.epochs,
                    batch_size=args.batch_size, lr=1e-3, seed=0, device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench-sisa-") as folder:
        model = SISA(make_model, checkpoint_dir=os.path.join(folder, "main"), **settings)
        first_fit = model.fit(data)
        rng = np.random.default_rng(num_shards * 100 + num_slices)
        requests = stratified_requests(model, args.requests, rng)
        reports = [model.unlearn(i) for i in requests]
        # retraining every constituent from scratch without the deleted samples
        full_wall, full_compute, full_passes = [first_fit.seconds], [first_fit.compute_seconds], None
        for repeat in range(args.repeats - 1):
            fresh = SISA(make_model, checkpoint_dir=os.path.join(folder, f"full{repeat}"), **settings)
            report = fresh.fit(data, split=model.split.without(requests))
            full_wall.append(report.seconds)
            full_compute.append(report.compute_seconds)
            full_passes = report.sample_passes
    unlearn_wall = statistics.mean(r.seconds for r in reports)
    unlearn_compute = statistics.mean(r.compute_seconds for r in reports)
    unlearn_passes = statistics.mean(r.samples_reprocessed for r in reports)
    full_passes = full_passes or first_fit.sample_passes
    sizes = model.split.slice_sizes
    return {
        "setting": f"S={num_shards}, R={num_slices}",
        "requests": len(requests),
        "closed form": sisa_cost.expected_speedup(num_shards, num_slices),
        "exact": sisa_cost.training_cost(sizes, args.epochs)
        / sisa_cost.expected_cost_for_split(sizes, args.epochs, 1),
        "passes": full_passes / unlearn_passes,
        "compute": statistics.median(full_compute) / unlearn_compute,
        "wall": statistics.median(full_wall) / unlearn_wall,
        "full s": statistics.median(full_wall),
        "unlearn s": unlearn_wall,
        "io share": statistics.mean(r.io_seconds / r.seconds for r in reports),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timings of full retraining")
    parser.add_argument("--requests", type=int, default=5, help="requests when R = 1")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    ul.seed_everything(0)
    ds = ul.data.make_purchase_like(args.n_train, 1000)
    make_model = functools.partial(ul.build_model, "mlp", ds.input_shape, ds.num_classes, hidden=(128,))
    device = ul.get_device(args.device)
    print(f"SISA unlearning speed-up, one request at a time: Purchase-like data, {args.n_train} "
          f"samples, MLP 600-128-2, e={args.epochs}, batch {args.batch_size}, Adam, {device}")
    rows = []
    for num_shards, num_slices in SETTINGS:
        tic = time.perf_counter()
        rows.append(run_setting(ds.train, make_model, num_shards, num_slices, args))
        print(f"  {rows[-1]['setting']} done in {time.perf_counter() - tic:.0f} s", flush=True)
    header = (f"{'setting':<14}{'requests':>9}{'expected':>10}{'exact':>8}{'passes':>8}"
              f"{'compute':>9}{'wall':>7}{'wall/exp':>10}{'full s':>8}{'unlearn s':>11}{'I/O':>6}")
    print(header)
    for row in rows:
        print(f"{row['setting']:<14}{row['requests']:>9}{row['closed form']:>9.2f}x{row['exact']:>7.2f}x"
              f"{row['passes']:>7.2f}x{row['compute']:>8.2f}x{row['wall']:>6.2f}x"
              f"{row['wall'] / row['exact']:>10.2f}{row['full s']:>8.2f}{row['unlearn s']:>11.3f}"
              f"{row['io share']:>6.0%}")
    print("expected: closed form 3RS/(2R+1); exact: cost model for this split and the integer "
          "epoch schedule.\npasses, compute, wall: measured (full retraining / unlearning); wall "
          "includes checkpoint I/O and set-up,\ncompute is training only. wall/exp = wall / exact, "
          "target >= 0.8. I/O: share of checkpoint I/O in the unlearning time.")


if __name__ == "__main__":
    main()
