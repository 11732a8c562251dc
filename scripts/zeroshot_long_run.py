"""The longer zero-shot unlearning run of the chapter chapters/zero_shot.ipynb.

Runs the chapter's experiments (error-min-max noise M-M and gated knowledge transfer GKT on
mnist5k, LeNet-5 at full width, ResNet-9 at 1/16 and AllCNN at 1/8 width, forgetting one and two
classes) with larger budgets than the chapter's three-minute default, and writes one row per
(model, forget classes, method) to results/zeroshot_long.csv. For LeNet-5 forgetting one class
and two classes it also runs the published GKT (the teacher's full outputs as targets) with the
data-free 'probe' student selection, and records the test accuracies of both GKT students
every 25 pseudo-batches (for plots only) in results/zeroshot_long_curves.csv. The chapter
reads both.

    make zeroshot-long                      # or:
    .venv/bin/python scripts/zeroshot_long_run.py [--smoke] [--out results/zeroshot_long.csv]

At most 30 minutes on a 2-core CPU (about 25 CPU-minutes; the script prints the wall time of
every setting and the total wall and CPU time); on a GPU a few minutes. --smoke runs tiny
budgets in a minute or two, to check that everything works; it writes to results/tmp/ unless
--out is given.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import sys
import time
from pathlib import Path

import torch

import unlearnlib as ul
from unlearnlib.zeroshot import run_zero_shot_experiment

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
DATASET = "mnist5k"
FORGET_SETS = ((0,), (0, 1))
AIN = {"max_steps": 100}
# Extra GKT run for LeNet-5 (one and two forgotten classes): the published method (the teacher's
# full outputs as targets, where the student re-learns the class late in training) with the
# data-free probe selection. Its fixed-budget student is the last row of its curve.
VARIANTS = {
    "GKT (published targets, probe selection)": {"forget_targets": "keep", "selection": "probe",
                                                 "checkpoint_every": 25},
}
MONITOR_EVERY = 25  # test accuracies of the LeNet-5 GKT students, for plots only
# (model, width, epochs of the original and retrained models, GKT settings), cheapest first,
# so that an interrupted run has written the most informative rows
SETTINGS = (
    ("lenet5", 1.0, 20, {"pseudo_batches": 250, "batch_size": 256}),
    ("resnet9", 0.0625, 10, {"pseudo_batches": 100, "batch_size": 128}),
    ("allcnn", 0.125, 8, {"pseudo_batches": 60, "batch_size": 128}),
)
CURVE_FIELDS = ("model", "forget", "method", "pseudo_batch", "retain_acc", "forget_acc")
FIELDS = ("model", "width", "forget", "method", "retain_acc", "forget_acc", "ain", "ain_status",
          "seconds", "epochs", "pseudo_batches", "gkt_batch_size", "selected_pseudo_batch")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets, a quick check")
    parser.add_argument("--out", type=Path, default=None, help="CSV file to write")
    args = parser.parse_args(argv)
    out = args.out or ROOT / ("results/tmp/zeroshot_long_smoke.csv" if args.smoke else "results/zeroshot_long.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    curves_out = out.with_name(out.stem + "_curves.csv")
    ul.seed_everything(SEED)
    dataset = ul.load_dataset(DATASET)
    start, cpu_start = time.perf_counter(), time.process_time()
    rows, curves = [], []
    print(f"zero-shot long run on {DATASET}, torch {torch.__version__}, {platform.machine()}, "
          f"device {ul.get_device()}", flush=True)
    for model_name, width, epochs, gkt in SETTINGS:
        gkt = dict(gkt)
        ain = dict(AIN)
        if args.smoke:
            epochs, gkt["pseudo_batches"], ain["max_steps"] = 1, 2, 4
        original = None
        for forget in FORGET_SETS:
            tic = time.perf_counter()
            lenet = model_name == "lenet5"
            variants = dict(VARIANTS) if lenet else None
            if variants and args.smoke:
                variants = {k: {**v, "checkpoint_every": 1} for k, v in variants.items()}
            monitor_every = (1 if args.smoke else MONITOR_EVERY) if lenet else 0
            exp = run_zero_shot_experiment(dataset, model_name, forget, width=width, epochs=epochs,
                                           gkt=gkt, ain=ain, gkt_variants=variants,
                                           monitor_every=monitor_every, original=original, seed=SEED)
            original = exp.original  # the same original model for one and two classes
            for method, res in exp.results.items():
                status = exp.ain[method].status if method in exp.ain else ""
                run = exp.gkt if method == "GKT" else exp.variants.get(method)
                rows.append({
                    "model": model_name, "width": width, "forget": "+".join(map(str, forget)),
                    "method": method, "retain_acc": f"{res['retain_acc']:.4f}",
                    "forget_acc": f"{res['forget_acc']:.4f}",
                    "ain": "" if math.isnan(res["ain"]) else f"{res['ain']:.4f}",
                    "ain_status": status, "seconds": f"{res['seconds']:.1f}", "epochs": epochs,
                    "pseudo_batches": gkt["pseudo_batches"], "gkt_batch_size": gkt["batch_size"],
                    "selected_pseudo_batch": run.selected if run is not None else "",
                })
            for method, run in {"GKT": exp.gkt, **exp.variants}.items():
                for h in run.history:
                    if monitor_every and "retain_acc" in h:
                        curves.append({"model": model_name, "forget": "+".join(map(str, forget)),
                                       "method": method, "pseudo_batch": h["pseudo_batch"],
                                       "retain_acc": f"{h['retain_acc']:.4f}",
                                       "forget_acc": f"{h['forget_acc']:.4f}"})
            # write after every setting, so an interrupted run keeps what it finished
            for path, fields, table in ((out, FIELDS, rows), (curves_out, CURVE_FIELDS, curves)):
                with path.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=fields)
                    writer.writeheader()
                    writer.writerows(table)
            summary = ", ".join(f"{m} D_r {r['retain_acc']:.3f} D_f {r['forget_acc']:.3f}"
                                for m, r in exp.results.items())
            print(f"{model_name} w{width} forget {forget}: {summary} "
                  f"({time.perf_counter() - tic:.0f} s)", flush=True)
    print(f"wrote {out} and {curves_out.name} in {time.perf_counter() - start:.0f} s wall, "
          f"{time.process_time() - cpu_start:.0f} s CPU", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
