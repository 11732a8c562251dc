"""Choosing hyperparameters of unlearning methods on validation data only.

Introduced in the Baselines chapter ({ref}`chap-baselines`).

The recipe (what ``scripts/tune_baselines.py`` runs to produce
:data:`~unlearnlib.methods.defaults.DEFAULTS`): carve a validation split out of the
*training* data (:func:`validation_split`; test data and forget-class test data are never
looked at), train the original and the retrained model on the rest, run every
configuration of a small grid (:func:`grid_search`) and keep the one whose metrics are
closest to the retrained model's (:func:`gap_to_reference`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..data import Dataset
from ..metrics import EvaluationData, accuracy_metrics
from .base import UnlearningMethod, UnlearningTask

__all__ = ["validation_split", "gap_to_reference", "Trial", "grid_search"]


def validation_split(dataset: Dataset, *, size: int = 800, seed: int = 0) -> Dataset:
    """A dataset whose ``train`` is ``dataset.train`` minus a stratified random
    ``size`` samples and whose ``test`` is those held-out *training* samples.

    Use it in place of the real dataset when tuning: forget splits built on it
    (:func:`~unlearnlib.data.class_forget_split`, :func:`~unlearnlib.data.random_forget_split`)
    then evaluate on the validation samples, and the real test set stays untouched.
    Introduced in {ref}`chap-baselines`.
    """
    from sklearn.model_selection import train_test_split

    n = len(dataset.train)
    if not 0 < size < n:
        raise ValueError(f"size must lie in (0, {n}), got {size}")
    idx = torch.arange(n).numpy()
    fit_idx, val_idx = train_test_split(idx, test_size=size, stratify=dataset.train.y.numpy(), random_state=seed)
    return Dataset(f"{dataset.name}-validation", dataset.train.subset(sorted(fit_idx)),
                   dataset.train.subset(sorted(val_idx)), dataset.num_classes, dataset.class_names)


def gap_to_reference(metrics: Mapping[str, float], reference: Mapping[str, float],
                     keys: Sequence[str] | None = None) -> float:
    """Mean absolute difference between ``metrics`` and the retrained model's
    ``reference`` over ``keys`` (default: every key they share). 0 means "behaves like the
    retrained model". Introduced in {ref}`chap-baselines`."""
    keys = [k for k in (keys or reference) if k in metrics and k in reference]
    if not keys:
        raise ValueError("no metric in common with the reference")
    return float(sum(abs(float(metrics[k]) - float(reference[k])) for k in keys) / len(keys))


@dataclass(frozen=True)
class Trial:
    """One configuration of :func:`grid_search`: the options varied, the validation
    metrics, the gap to the retrained model and the wall time. Introduced in {ref}`chap-baselines`."""

    options: dict[str, Any]
    metrics: dict[str, float]
    gap: float
    seconds: float


def grid_search(method: UnlearningMethod, model: nn.Module, task: UnlearningTask, data: EvaluationData,
                reference: Mapping[str, float], grid: Mapping[str, Sequence[Any]], *,
                base_config: Mapping[str, Any] | None = None, device=None) -> list[Trial]:
    """Run ``method`` on ``task`` for every combination of the values in ``grid`` (option
    name to candidate values, on top of ``base_config``), score each on ``data`` with
    :func:`~unlearnlib.metrics.accuracy_metrics` and :func:`gap_to_reference` to the
    retrained model's ``reference`` metrics, and return the trials best first (smallest
    gap; a tie, to three decimals, goes to the faster run). ``data`` must hold validation
    data, not test data (see :func:`validation_split`). Introduced in {ref}`chap-baselines`.
    """
    if not grid:
        raise ValueError("the grid is empty")
    names = list(grid)
    trials = []
    for values in itertools.product(*(grid[n] for n in names)):
        options = dict(zip(names, values))
        config = {**(base_config or {}), **options}
        result = method.run(model, task, config=config, device=device)
        metrics = accuracy_metrics(result.model, data, device=device)
        trials.append(Trial(options, metrics, gap_to_reference(metrics, reference), result.seconds))
    return sorted(trials, key=lambda t: (round(t.gap, 3), t.seconds))
