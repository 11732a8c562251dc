"""Choose the default hyperparameters of the unlearning baselines on validation data.

Reproduces unlearnlib.methods.defaults.DEFAULTS (see that module for the protocol):

    .venv/bin/python scripts/tune_baselines.py                  # all methods, both scenarios
    .venv/bin/python scripts/tune_baselines.py --methods fisher --scenarios class

The test split of mnist5k is never used: a stratified validation split of 800 images is
carved out of the 4,000 training images (unlearnlib.methods.tuning.validation_split), the
original model (AllCNN, width 0.125, the training recipe of DEFAULTS) and the retrained
model are trained on the other 3,200, and every configuration is scored by its mean
absolute accuracy gap to the retrained model. The printed output of a full run is
committed as results/tune_baselines.txt. A full run takes about 30 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time

import unlearnlib as ul
from unlearnlib import methods
from unlearnlib.metrics import EvaluationData, accuracy_metrics
from unlearnlib.methods.tuning import grid_search, validation_split

FORGET_CLASS = 3
RANDOM_FRACTION = 0.1

# Small grids around the published settings (algorithms.md); every other option keeps
# its value in DEFAULTS.
GRIDS = {
    "fine_tune": {"epochs": [1, 2, 3], "lr": [1e-3, 3e-3]},
    "gradient_ascent": {"lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], "epochs": [1, 2], "freeze_batchnorm": [True, False]},
    "neggrad_plus": {"alpha": [0.5, 0.8, 0.9, 0.95], "lr": [1e-4, 3e-4, 1e-3]},
    "random_labels": {"epochs": [1, 2], "lr": [1e-4, 3e-4, 1e-3]},
    "bad_teacher": {"lr": [3e-5, 1e-4, 3e-4, 1e-3], "epochs": [1, 2]},
    "fisher": {"alpha": [1e-9, 1e-8, 1e-7, 1e-6, 1e-5], "estimator": ["exact", "sampled"]},
    "amnesiac": {"repair_epochs": [1, 2, 3, 4], "lr": [1e-3, 3e-3]},
    "unsir": {"impair_lr": [1e-3, 3e-3, 1e-2], "repair_lr": [1e-3, 3e-3], "noise_copies": [1, 5]},
}
CLASS_ONLY = {"unsir"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(GRIDS), help="comma-separated method names")
    parser.add_argument("--scenarios", default="class,random", help="'class', 'random' or both")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: PyTorch's choice; 1 helps on a machine shared "
                             "with other jobs, at the price of last-digit differences)")
    args = parser.parse_args(argv)
    chosen = [m for m in args.methods.split(",") if m]
    unknown = [m for m in chosen if m not in GRIDS]
    if unknown:
        parser.error(f"no grid for {unknown}; choose from {', '.join(GRIDS)}")
    scenarios = [s for s in args.scenarios.split(",") if s]
    if not set(scenarios) <= {"class", "random"}:
        parser.error("scenarios must be 'class' and/or 'random'")

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ul.seed_everything(0)
    full = ul.load_dataset("mnist5k")
    ds = validation_split(full, size=800, seed=0)
    splits = {"class": ul.class_forget_split(ds, FORGET_CLASS),
              "random": ul.random_forget_split(ds, fraction=RANDOM_FRACTION, seed=0)}
    arch, arch_kwargs = methods.MODEL
    recipe = methods.TRAINING_RECIPE
    print(f"tuning on {ds} (validation carved from mnist5k's training split; test split unused)")
    print(f"model {arch} {arch_kwargs}, training recipe {recipe}, threads {args.threads or 'default'}")

    original = ul.build_model(arch, ds.input_shape, ds.num_classes, **arch_kwargs)
    recorders = {s: methods.AmnesiacRecorder(splits[s].forget) for s in scenarios}
    ul.fit(original, ds.train, hooks=list(recorders.values()), seed=0, device=args.device, **recipe)

    winners = {}
    for scenario in scenarios:
        split = splits[scenario]
        task = methods.UnlearningTask.from_split(ds, split, record=recorders[scenario].record())
        data = EvaluationData.from_split(ds, split)
        retrained = methods.retrain.run(original, task, device=args.device).model
        reference = accuracy_metrics(retrained, data)
        print(f"\n== scenario: {scenario} "
              f"({'class ' + str(FORGET_CLASS) if scenario == 'class' else f'{RANDOM_FRACTION:.0%} random'}) ==")
        print("retrained model (validation): " + ", ".join(f"{k} {v:.3f}" for k, v in reference.items()))
        print("original model  (validation): "
              + ", ".join(f"{k} {v:.3f}" for k, v in accuracy_metrics(original, data).items()))
        for name in chosen:
            if scenario == "random" and name in CLASS_ONLY:
                continue
            method = methods.METHODS[name]
            trials = grid_search(method, original, task, data, reference, GRIDS[name], device=args.device)
            print(f"\n{name}: {len(trials)} configurations, best first (gap = mean |acc - retrained acc|)")
            for t in trials:
                accs = " ".join(f"{k}={v:.3f}" for k, v in t.metrics.items())
                print(f"  gap {t.gap:.3f}  {t.seconds:5.1f}s  {t.options}  {accs}")
            winners[(scenario, name)] = trials[0].options
        sys.stdout.flush()

    print("\n== chosen (compare with unlearnlib.methods.defaults) ==")
    for (scenario, name), options in winners.items():
        current = methods.defaults_for(name, scenario)
        agree = all(current.get(k) == v for k, v in options.items())
        print(f"{scenario:6s} {name:16s} {options}  {'= DEFAULTS' if agree else '!= DEFAULTS ' + str({k: current.get(k) for k in options})}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
