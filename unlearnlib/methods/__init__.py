"""Post-hoc unlearning methods behind one signature, each with its data contract.

Introduced in the Baselines chapter ({ref}`chap-baselines`).

Every method is called the same way::

    from unlearnlib import methods
    result = methods.fine_tune(model, forget=None, retain=retain_data)
    result = methods.unsir(model, retain=retain_data, classes=[3])
    result = methods.METHODS['fisher'].run(model, task)   # task: UnlearningTask

and returns an :class:`UnlearningResult` (the unlearned copy, the wall time, diagnostics,
the configuration used). Each declares a :class:`DataContract` (``method.contract``) and
refuses data it must not use with a :class:`DataContractError`:

=================  =========================  =====================  ==================  ==========
name               method                     forget samples         retain data         other
=================  =========================  =====================  ==================  ==========
``retrain``        Retrain (gold standard)    refused                all                 training recipe
``fine_tune``      fine-tune on retain        refused                all
``gradient_ascent``  gradient ascent          required               refused
``neggrad_plus``   NegGrad+                   required               all
``random_labels``  random labels              required               all
``bad_teacher``    Bad Teacher                required               a subset (30%)
``fisher``         Fisher forgetting          refused                all                 class ids optional
``amnesiac``       Amnesiac                   refused                optional (repair)   training-time record
``unsir``          UNSIR                      refused                a subset            class ids
``error_min_max``  zero-shot M-M              refused                refused             class ids
``gkt``            zero-shot GKT              refused                refused             class ids
=================  =========================  =====================  ==================  ==========

Defaults live in :mod:`unlearnlib.methods.defaults` (``DEFAULTS``), with how they were chosen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import nn

from ..data import Dataset, ForgetSplit, class_forget_split
from ..models import build_model
from ..training import fit
from .amnesiac import AmnesiacRecord, AmnesiacRecorder, amnesiac_model, expected_sensitive_batch_share
from .bad_teacher import bad_teacher_model
from .base import (
    DataContract,
    DataContractError,
    FreezeBatchNorm,
    UnlearningMethod,
    UnlearningResult,
    UnlearningTask,
    num_outputs,
    reinitialized_copy,
)
from .defaults import DEFAULTS, MODEL, RANDOM_OVERRIDES, TRAINING_RECIPE, defaults_for
from .finetuning import (
    fine_tune_model,
    gradient_ascent_model,
    neggrad_plus_model,
    random_labels_model,
    random_other_labels,
    retrain_model,
)
from .fisher import fisher_forgetting_model
from .unsir import unsir_model
from .zero_shot import error_min_max_model, gkt_model, zero_shot_defaults

__all__ = [
    "DataContract", "DataContractError", "FreezeBatchNorm", "UnlearningMethod", "UnlearningResult", "UnlearningTask",
    "AmnesiacRecorder", "AmnesiacRecord", "expected_sensitive_batch_share", "random_other_labels",
    "reinitialized_copy", "num_outputs", "DEFAULTS", "RANDOM_OVERRIDES", "TRAINING_RECIPE", "MODEL",
    "defaults_for", "METHODS", "get_method", "run_methods", "DECK_METHODS", "QUICK_CONFIGS", "ClassRequest",
    "answer_class_request",
    "retrain", "fine_tune", "gradient_ascent", "neggrad_plus", "random_labels", "bad_teacher", "fisher",
    "amnesiac", "unsir", "error_min_max", "gkt",
]

retrain = UnlearningMethod(
    "retrain", "Retrain", retrain_model,
    DataContract(forget="none", retain="all"), DEFAULTS["retrain"], citation="",
    summary="train the same architecture from scratch on the retain set (the gold standard every method is "
            "compared with)")
fine_tune = UnlearningMethod(
    "fine_tune", "Fine-tune", fine_tune_model,
    DataContract(forget="none", retain="all"), DEFAULTS["fine_tune"], citation="golatkar2020eternal",
    summary="continue training the original model on the retain set only")
gradient_ascent = UnlearningMethod(
    "gradient_ascent", "Gradient ascent", gradient_ascent_model,
    DataContract(forget="samples", retain="none"), DEFAULTS["gradient_ascent"], citation="thudi2022unrolling",
    summary="maximise the loss on the forget set")
neggrad_plus = UnlearningMethod(
    "neggrad_plus", "NegGrad+", neggrad_plus_model,
    DataContract(forget="samples", retain="all"), DEFAULTS["neggrad_plus"], citation="kurmanji2023unbounded",
    summary="descend on the retain loss while ascending on the forget loss")
random_labels = UnlearningMethod(
    "random_labels", "Random labels", random_labels_model,
    DataContract(forget="samples", retain="all"), DEFAULTS["random_labels"], citation="graves2021amnesiac",
    summary="train on the forget set with random wrong labels together with the retain set")
bad_teacher = UnlearningMethod(
    "bad_teacher", "Bad Teacher", bad_teacher_model,
    DataContract(forget="samples", retain="subset"), DEFAULTS["bad_teacher"], citation="chundawat2023badteacher",
    summary="distil from a random network on the forget set and from the original model on part of the retain set")
fisher = UnlearningMethod(
    "fisher", "Fisher forgetting", fisher_forgetting_model,
    DataContract(forget="none", retain="all", classes="optional"), DEFAULTS["fisher"],
    citation="golatkar2020eternal",
    summary="add Gaussian noise scaled by the inverse Fisher information of the retain set")
amnesiac = UnlearningMethod(
    "amnesiac", "Amnesiac", amnesiac_model,
    DataContract(forget="none", retain="optional", record=True), DEFAULTS["amnesiac"],
    citation="graves2021amnesiac",
    summary="subtract the parameter updates of the training batches that held sensitive data, then repair")
unsir = UnlearningMethod(
    "unsir", "UNSIR", unsir_model,
    DataContract(forget="none", retain="subset", classes="required", unit="class"), DEFAULTS["unsir"],
    citation="tarun2023fast",
    summary="impair with error-maximising noise of the forget classes, repair on a small retain subset")

error_min_max = UnlearningMethod(
    "error_min_max", "M-M", error_min_max_model,
    DataContract(forget="none", retain="none", classes="required", unit="class"), zero_shot_defaults("error_min_max"),
    citation="chundawat2023zeroshot",
    summary="zero-shot: impair with error-maximising noise of the forget classes and error-minimising noise of "
            "the others, repair on the latter (unlearnlib.zeroshot.error_min_max)")
gkt = UnlearningMethod(
    "gkt", "GKT", gkt_model,
    DataContract(forget="none", retain="none", classes="required", unit="class"), zero_shot_defaults("gkt"),
    citation="chundawat2023zeroshot",
    summary="zero-shot: distil the original model into a fresh student on generated samples, gated so that "
            "nothing about the forget classes passes (unlearnlib.zeroshot.gated_knowledge_transfer)")

METHODS: dict[str, UnlearningMethod] = {
    m.name: m for m in (retrain, fine_tune, gradient_ascent, neggrad_plus, random_labels, bad_teacher, fisher,
                        amnesiac, unsir, error_min_max, gkt)
}


def get_method(name: str) -> UnlearningMethod:
    """The method registered as ``name`` (see :data:`METHODS`). Introduced in
    {ref}`chap-baselines`."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def run_methods(model, task: UnlearningTask, names, *, configs=None, device=None) -> dict[str, UnlearningResult]:
    """Answer one deletion request with the retrained model and every method in ``names``.

    Runs :data:`retrain` first (the reference every table needs), then each method named
    in ``names`` (keys of :data:`METHODS`; ``'retrain'`` there is not run twice) on
    ``task`` through :meth:`UnlearningMethod.run`, so each sees only what its contract
    allows. ``configs`` maps method names to configuration overrides (for example
    ``{'retrain': {'epochs': 1}}``). Returns the results keyed by the methods' titles, in
    run order. Introduced in {ref}`chap-evaluation`.
    """
    names = list(names)
    configs = dict(configs or {})
    unknown = sorted({n for n in [*names, *configs] if n not in METHODS})
    if unknown:
        raise ValueError(f"unknown unlearning method(s) {unknown}; choose from {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a method is named twice in {names}")
    results = {}
    for name in ["retrain"] + [n for n in names if n != "retrain"]:
        method = METHODS[name]
        results[method.title] = method.run(model, task, config=configs.get(name), device=device)
    return results


#: The eight methods of the deck's comparison table, in its order. Introduced in
#: {ref}`chap-evaluation`.
DECK_METHODS = ("fine_tune", "gradient_ascent", "bad_teacher", "fisher", "amnesiac", "unsir", "error_min_max", "gkt")

#: Settings under which each method of :data:`DECK_METHODS` takes a second or two: for smoke
#: runs and tests, never for results. Introduced in {ref}`chap-evaluation`.
QUICK_CONFIGS: dict[str, dict] = {
    "fisher": {"max_samples": 100},
    "unsir": {"noise_per_class": 8, "retain_per_class": 10},
    "error_min_max": {"noise_per_class": 4, "noise_steps": 2},
    "gkt": {"pseudo_batches": 2},
}


@dataclass(frozen=True)
class ClassRequest:
    """A class-wise deletion request answered by several methods: the split, the original
    model and its training time, and the results of :func:`run_methods` keyed by title.
    Introduced in {ref}`chap-evaluation`."""

    split: ForgetSplit
    original: nn.Module
    original_seconds: float
    runs: dict[str, UnlearningResult]

    @property
    def models(self) -> dict[str, nn.Module]:
        """The original model, then every method's model (Retrain first)."""
        return {"Original": self.original, **{name: run.model for name, run in self.runs.items()}}

    @property
    def seconds(self) -> dict[str, float]:
        """Wall times in the order of :attr:`models`: training for the original, unlearning for the rest."""
        return {"Original": self.original_seconds, **{name: run.seconds for name, run in self.runs.items()}}


def answer_class_request(dataset: Dataset, forget_classes, names=DECK_METHODS, *, model=MODEL,
                         epochs: int = TRAINING_RECIPE["epochs"], configs=None, quick: bool = False,
                         seed: int = 0, device=None) -> ClassRequest:
    """Train an original model on all of ``dataset`` and answer the request to forget
    ``forget_classes`` with the retrained model and every method in ``names``.

    The original model is ``build_model(model[0], ..., **model[1])`` trained with
    :data:`TRAINING_RECIPE` for ``epochs`` epochs while an :class:`AmnesiacRecorder` keeps
    the updates Amnesiac unlearning needs; its initial weights come from torch's global
    generator, so call :func:`~unlearnlib.training.seed_everything` first. Retrain trains for
    the same ``epochs``. ``configs`` overrides method settings (as in :func:`run_methods`);
    ``quick`` lays :data:`QUICK_CONFIGS` over them. Introduced in {ref}`chap-evaluation`.
    """
    split = class_forget_split(dataset, forget_classes)
    recorder = AmnesiacRecorder(split.forget)
    model_name, model_options = model
    original = build_model(model_name, dataset.input_shape, dataset.num_classes, **model_options)
    tic = time.perf_counter()
    fit(original, dataset.train, hooks=[recorder], seed=seed, device=device, **{**TRAINING_RECIPE, "epochs": epochs})
    original_seconds = time.perf_counter() - tic
    configs = dict(configs or {})
    configs["retrain"] = {"epochs": epochs, **configs.get("retrain", {})}
    if quick:
        configs = {n: {**configs.get(n, {}), **QUICK_CONFIGS.get(n, {})} for n in {*configs, *QUICK_CONFIGS}}
    task = UnlearningTask.from_split(dataset, split, record=recorder.record())
    runs = run_methods(original, task, names, configs=configs, device=device)
    return ClassRequest(split, original, original_seconds, runs)
