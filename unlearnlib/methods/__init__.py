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
    "defaults_for", "METHODS", "get_method", "run_methods",
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
