"""Default hyperparameters of every unlearning method, in one place.

Introduced in the Baselines chapter ({ref}`chap-baselines`).

How they were chosen: ``scripts/tune_baselines.py`` (run it to reproduce the choice; its
printed output is committed as ``results/tune_baselines.txt``). On ``mnist5k`` it carves a
stratified validation split of 800 images out of the 4,000 *training* images (the test
images are never used), trains the original model (:data:`TRAINING_RECIPE`, AllCNN at
width 0.125) on the remaining 3,200 and the retrained model on them without the forget
class, and for each method runs a small grid around the published settings
(algorithms.md) for forgetting one class (class 3) and for forgetting a random 10% of the
training images. Each configuration is scored by its mean absolute gap to the retrained
model over four accuracies: on $\\mathcal D_r$, on $\\mathcal D_f$, and on the validation
images of the kept and of the forgotten classes (for random forgetting: on the
validation images). The configuration with the smallest gap wins; a tie goes to the
cheaper one. The values below are the class-wise winners; where the random-forgetting winner
differs, :data:`RANDOM_OVERRIDES` holds it. Options not in a method's grid keep the
published settings (algorithms.md): Bad Teacher's 30% of the retain data, batch 256 and
temperature 1; UNSIR's noise (40 Adam steps at 0.1, L2 weight 0.1) and one epoch each of
impair and repair; Fisher's clamps.
"""

from __future__ import annotations

__all__ = ["TRAINING_RECIPE", "MODEL", "DEFAULTS", "RANDOM_OVERRIDES", "defaults_for"]

#: The recipe of the original model the defaults were tuned for (also Retrain's default).
TRAINING_RECIPE = {"epochs": 8, "lr": 1e-3, "batch_size": 64, "optimizer": "adam"}

#: The architecture the defaults were tuned for: ``build_model(*MODEL[0], **MODEL[1])``.
MODEL = ("allcnn", {"width": 0.125})

DEFAULTS: dict[str, dict] = {
    "retrain": {**TRAINING_RECIPE, "weight_decay": 0.0, "seed": 0, "model_factory": None},
    "fine_tune": {"epochs": 2, "lr": 3e-3, "batch_size": 64, "optimizer": "adam", "seed": 0},
    "gradient_ascent": {"epochs": 1, "lr": 1e-4, "batch_size": 64, "optimizer": "adam", "freeze_batchnorm": True,
                        "seed": 0},
    "neggrad_plus": {"alpha": 0.95, "epochs": 1, "lr": 1e-3, "batch_size": 64, "forget_batch_size": 64,
                     "optimizer": "adam", "seed": 0},
    "random_labels": {"epochs": 2, "lr": 1e-3, "batch_size": 64, "optimizer": "adam", "exclude_true": True,
                      "seed": 0},
    "bad_teacher": {"retain_fraction": 0.3, "epochs": 1, "lr": 1e-3, "batch_size": 256, "temperature": 1.0,
                    "reduction": "batchmean", "optimizer": "adam", "seed": 0},
    "fisher": {"alpha": 1e-6, "estimator": "sampled", "max_samples": 1000, "chunk_size": 256, "clamp": 1e3,
               "head_clamp": 1e2, "zero_forget_rows": True, "seed": 0},
    "amnesiac": {"scale": 1.0, "repair_epochs": 3, "lr": 3e-3, "batch_size": 64, "optimizer": "adam", "seed": 0},
    "unsir": {"noise_per_class": 64, "noise_steps": 40, "noise_lr": 0.1, "l2_weight": 0.1, "noise_copies": 1,
              "retain_per_class": 100, "impair_lr": 1e-2, "impair_epochs": 1, "repair_lr": 1e-3, "repair_epochs": 1,
              "batch_size": 64, "optimizer": "adam", "seed": 0},
}

#: Entries that differ for random (sample-wise) forgetting. The target there is close to
#: the original model, so the winners take small or few steps; gradient ascent's batches are
#: random samples, representative of the data, so its batch-norm statistics may move.
RANDOM_OVERRIDES: dict[str, dict] = {
    "fine_tune": {"epochs": 1, "lr": 1e-3},
    "gradient_ascent": {"lr": 1e-5, "epochs": 2, "freeze_batchnorm": False},
    "random_labels": {"lr": 3e-4},
    "bad_teacher": {"lr": 3e-5, "epochs": 2},
    "fisher": {"alpha": 1e-7},
    "amnesiac": {"repair_epochs": 4},
}


def defaults_for(method: str, scenario: str = "class") -> dict:
    """The default configuration of ``method`` for ``scenario`` ``'class'`` (class-wise
    forgetting) or ``'random'`` (sample-wise). Introduced in {ref}`chap-baselines`."""
    if method not in DEFAULTS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(DEFAULTS)}")
    if scenario not in ("class", "random"):
        raise ValueError(f"scenario must be 'class' or 'random', got {scenario!r}")
    config = dict(DEFAULTS[method])
    if scenario == "random":
        config.update(RANDOM_OVERRIDES.get(method, {}))
    return config
