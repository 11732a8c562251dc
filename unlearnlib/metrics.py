"""Metrics of unlearning, always read against the retrained model.

Introduced in the Evaluation and attacks chapter ({ref}`chap-evaluation`).

Every number an unlearning method produces means something only next to the same number
for the model retrained from scratch without the forget set: a forget accuracy of 0 is
perfect for a forgotten class and a failure (over-unlearning) for randomly chosen samples,
whose retrained forget accuracy is close to the test accuracy. This module therefore
computes each metric for any model and :func:`compare` lays methods side by side with the
retrained model as the reference, prints the gap to it and the orientation of every
column, and warns when a method goes *beyond* the retrained model (over-unlearning).

Contents: accuracies on $\\mathcal D_r$, $\\mathcal D_f$, the test set and the forget-class
test set (:func:`accuracy_metrics`); the Zero Retrain Forgetting score with the textbook
Jensen-Shannon divergence (:func:`zrf_score`) and the legacy variant of the Bad Teacher
code (:func:`zrf_score_legacy`); the activation distance (:func:`activation_distance`);
:func:`evaluate_unlearning`, which collects them with the membership-inference attacks of
:mod:`unlearnlib.attacks`; and :func:`compare`. The anamnesis index (AIN) lives here too
(added by the zero-shot chapter).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .data import Dataset, ForgetSplit, LabelledData
from .training import evaluate, predict_logits

__all__ = [
    "EvaluationData",
    "accuracy_metrics",
    "js_divergence",
    "js_divergence_legacy",
    "zrf_score",
    "zrf_score_legacy",
    "activation_distance",
    "evaluate_unlearning",
    "measure_methods",
    "MetricSpec",
    "METRICS",
    "Comparison",
    "compare",
    "AIN_TOLERANCE_MODES",
    "relearn_target",
    "RelearnResult",
    "relearn_steps",
    "AnamnesisIndex",
    "anamnesis_index",
    "anamnesis_indices",
]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class EvaluationData:
    """The sets an unlearned model is evaluated on.

    ``retain`` is $\\mathcal D_r$ and ``forget`` is $\\mathcal D_f$ (both training data);
    ``test`` is held-out data of the classes the model should still know (for class-wise
    forgetting: the test images of the retain classes, as in the SalUn protocol); and
    ``test_forget`` the test images of the forgotten classes (class-wise forgetting only,
    else None). Build it with :meth:`from_split`. Introduced in {ref}`chap-evaluation`.
    """

    retain: LabelledData
    forget: LabelledData
    test: LabelledData
    test_forget: LabelledData | None = None
    classes: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("retain", "forget", "test"):
            value = getattr(self, name)
            if not isinstance(value, LabelledData):
                raise ValueError(f"{name} must be a LabelledData, got {type(value).__name__}")
            if len(value) == 0:
                raise ValueError(f"the {name} set is empty")
        if self.test_forget is not None and not isinstance(self.test_forget, LabelledData):
            raise ValueError(f"test_forget must be a LabelledData or None, got {type(self.test_forget).__name__}")

    @property
    def class_wise(self) -> bool:
        """True for class-wise forgetting (the forget classes are known)."""
        return bool(self.classes)

    @classmethod
    def from_split(cls, dataset: Dataset, split: ForgetSplit) -> "EvaluationData":
        """Evaluation sets of ``split`` on ``dataset``: class-wise splits (from
        :func:`~unlearnlib.data.class_forget_split`) get the retain-class test images as
        ``test`` and the forget-class test images as ``test_forget``; random splits the
        whole test set. Introduced in {ref}`chap-evaluation`."""
        if not isinstance(split, ForgetSplit):
            raise ValueError(f"split must be a ForgetSplit, got {type(split).__name__}")
        retain = dataset.train.subset(split.retain)
        forget = dataset.train.subset(split.forget)
        if split.classes:
            return cls(retain, forget, dataset.test.subset(split.test_retain),
                       dataset.test.subset(split.test_forget), tuple(split.classes))
        return cls(retain, forget, dataset.test)


def _check_model(model, name="model"):
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def accuracy_metrics(model: nn.Module, data: EvaluationData, *, device=None) -> dict[str, float]:
    """Accuracies (fractions in [0, 1]) of ``model`` on every set of ``data``.

    Keys: ``retain_acc`` ($\\mathcal D_r$; higher is better, target the retrained model's),
    ``forget_acc`` ($\\mathcal D_f$; lower means more forgetting, target the retrained
    model's: about 0 for a forgotten class, about the test accuracy for random samples),
    ``test_acc`` (held-out data of the kept classes) and, for class-wise forgetting,
    ``forget_test_acc`` (test images of the forgotten classes). Introduced in
    {ref}`chap-evaluation`.
    """
    _check_model(model)
    out = {
        "retain_acc": evaluate(model, data.retain, device=device).accuracy,
        "forget_acc": evaluate(model, data.forget, device=device).accuracy,
        "test_acc": evaluate(model, data.test, device=device).accuracy,
    }
    if data.test_forget is not None:
        out["forget_test_acc"] = evaluate(model, data.test_forget, device=device).accuracy
    return out


# ------------------------------------------------------------------------ divergences


def _check_probabilities(p: torch.Tensor, q: torch.Tensor):
    if p.shape != q.shape or p.ndim != 2:
        raise ValueError(f"p and q must both have shape (samples, classes); got {tuple(p.shape)} and {tuple(q.shape)}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("probabilities must be non-negative")
    for name, t in (("p", p), ("q", q)):
        if not torch.allclose(t.sum(dim=1), torch.ones(t.shape[0], dtype=t.dtype), atol=1e-4):
            raise ValueError(f"the rows of {name} must sum to 1 (probability vectors)")


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Textbook Jensen-Shannon divergence of every row pair, in nats: a tensor (N,).

    $\\mathrm{JS}(P\\,\\|\\,Q) = \\tfrac12\\mathrm{KL}(P\\,\\|\\,M) + \\tfrac12\\mathrm{KL}(Q\\,\\|\\,M)$
    with $M = (P+Q)/2$, natural logarithms and $0 \\log 0 = 0$. It is symmetric, 0 for
    identical rows and at most $\\ln 2$. ``p`` and ``q`` are (N, C) probability vectors.
    Introduced in {ref}`chap-evaluation`.
    """
    p, q = p.double(), q.double()
    _check_probabilities(p, q)
    m = 0.5 * (p + q)
    # xlogy gives 0 * log 0 = 0, so a zero probability never produces a NaN
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(dim=1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(dim=1)
    return (0.5 * kl_pm + 0.5 * kl_qm).clamp_min(0.0)


def js_divergence_legacy(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The "JS divergence" as the Bad Teacher code computes it (and SSD and SUPREME copy):
    a scalar.

    ``0.5 * kl_div(log p, m) + 0.5 * kl_div(log q, m)`` with PyTorch's default
    ``reduction='mean'``. Because ``kl_div(input, target)`` is $\\mathrm{KL}(\\text{target}
    \\,\\|\\,\\exp(\\text{input}))$, this is
    $\\frac{1}{N C}\\sum_n \\tfrac12[\\mathrm{KL}(M_n\\|P_n) + \\mathrm{KL}(M_n\\|Q_n)]$: the KL
    directions are reversed and the mean runs over samples *and* classes, so the value is
    about $C$ times smaller than a per-sample divergence. Kept only to compare with numbers
    published from that code. Introduced in {ref}`chap-evaluation`.
    """
    p, q = p.double(), q.double()
    _check_probabilities(p, q)
    m = 0.5 * (p + q)
    # log of a probability that underflowed to 0 would be -inf; the clamp keeps it finite
    log_p, log_q = p.clamp_min(1e-300).log(), q.clamp_min(1e-300).log()
    kl_mp = (torch.xlogy(m, m) - m * log_p)
    kl_mq = (torch.xlogy(m, m) - m * log_q)
    return 0.5 * kl_mp.mean() + 0.5 * kl_mq.mean()


def _as_inputs(data) -> torch.Tensor:
    if isinstance(data, LabelledData):
        return data.x
    if isinstance(data, torch.Tensor):
        return data
    raise ValueError(f"data must be a LabelledData or a tensor of inputs, got {type(data).__name__}")


def _probas(model, x, device, batch_size=1024):
    return predict_logits(model, x, batch_size=batch_size, device=device).double().softmax(dim=1)


def zrf_score(model: nn.Module, incompetent: nn.Module, data, *, device=None) -> float:
    """Zero Retrain Forgetting score with the textbook Jensen-Shannon divergence.

    $\\mathrm{ZRF} = 1 - \\frac{1}{n_f}\\sum_{i=1}^{n_f}\\mathrm{JS}(M(x_i)\\,\\|\\,T_d(x_i))$
    over the $n_f$ inputs of ``data`` (usually $\\mathcal D_f$), where $M$ is ``model`` and
    $T_d$ is ``incompetent``, a *randomly initialised* network of the same architecture
    (Chundawat et al. 2023). Higher means ``model`` answers on these inputs more like a
    network that learned nothing; with natural logarithms the score lies in
    $[1 - \\ln 2, 1] \\approx [0.31, 1]$. No retrained model is needed, but read the score
    next to the retrained model's. Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model)
    _check_model(incompetent, "incompetent")
    x = _as_inputs(data)
    js = js_divergence(_probas(model, x, device), _probas(incompetent, x, device))
    return float(1.0 - js.mean())


def zrf_score_legacy(model: nn.Module, incompetent: nn.Module, data, *, device=None) -> float:
    """ZRF as the Bad Teacher code computes it: ``1 - js_divergence_legacy`` over all of
    ``data`` at once (see :func:`js_divergence_legacy`). Its values sit much closer to 1
    than :func:`zrf_score`'s and are comparable only with numbers from that code lineage.
    Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model)
    _check_model(incompetent, "incompetent")
    x = _as_inputs(data)
    return float(1.0 - js_divergence_legacy(_probas(model, x, device), _probas(incompetent, x, device)))


def activation_distance(model_a: nn.Module, model_b: nn.Module, data, *, p: float = 2.0,
                        device=None) -> float:
    """Mean over the inputs of ``data`` of the $L_p$ distance between the two models'
    softmax outputs: $\\frac1n\\sum_i \\lVert \\sigma(f_a(x_i)) - \\sigma(f_b(x_i))\\rVert_p$.

    ``p=2`` is the Bad Teacher paper's activation distance, ``p=1`` Golatkar et al.'s.
    0 for identical outputs; at most $2^{1/p}$. Computed between an unlearned and the
    retrained model on $\\mathcal D_f$: lower is closer to the retrained model.
    Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model_a, "model_a")
    _check_model(model_b, "model_b")
    if not float(p) >= 1:
        raise ValueError(f"p must be at least 1 (a norm), got {p}")
    x = _as_inputs(data)
    pa, pb = _probas(model_a, x, device), _probas(model_b, x, device)
    if pa.shape != pb.shape:
        raise ValueError(f"the models disagree on the number of classes ({pa.shape[1]} vs {pb.shape[1]})")
    return float((pa - pb).norm(p=p, dim=1).mean())


# ------------------------------------------------------------------ one-call evaluation


MIA_VARIANTS = ("entropy", "loss", "confidence")


def evaluate_unlearning(model: nn.Module, data: EvaluationData, *, mia: Sequence[str] = MIA_VARIANTS,
                        retrained: nn.Module | None = None, incompetent: nn.Module | None = None,
                        seed: int = 0, device=None) -> dict[str, float]:
    """All metrics of one model in one dictionary, ready for :func:`compare`.

    Accuracies from :func:`accuracy_metrics`; the membership-inference attacks named in
    ``mia`` (``'entropy'``: :func:`~unlearnlib.attacks.mia_entropy_member_rate`,
    ``'loss'``: :func:`~unlearnlib.attacks.mia_loss_attack_accuracy`, ``'confidence'``:
    :func:`~unlearnlib.attacks.mia_confidence_nonmember_rate`); with ``incompetent`` (a
    randomly initialised network) the two ZRF scores on $\\mathcal D_f$; with ``retrained``
    the activation distance to it on $\\mathcal D_f$. For class-wise forgetting the
    loss attack compares $\\mathcal D_f$ with the forget-class test images (as SCRUB does),
    otherwise with the test set. Introduced in {ref}`chap-evaluation`.
    """
    from . import attacks

    unknown = [m for m in mia if m not in MIA_VARIANTS]
    if unknown:
        raise ValueError(f"unknown MIA variant(s) {unknown}; choose from {', '.join(MIA_VARIANTS)}")
    out = accuracy_metrics(model, data, device=device)
    if "entropy" in mia:
        out["mia_entropy_member_rate"] = float(attacks.mia_entropy_member_rate(
            model, retain=data.retain, test=data.test, forget=data.forget, device=device))
    if "loss" in mia:
        nonmembers = data.test_forget if data.test_forget is not None else data.test
        out["mia_loss_attack_accuracy"] = float(attacks.mia_loss_attack_accuracy(
            model, forget=data.forget, test=nonmembers, seed=seed, device=device))
    if "confidence" in mia:
        out["mia_confidence_nonmember_rate"] = float(attacks.mia_confidence_nonmember_rate(
            model, retain=data.retain, test=data.test, forget=data.forget, device=device))
    if incompetent is not None:
        out["zrf"] = zrf_score(model, incompetent, data.forget, device=device)
        out["zrf_legacy"] = zrf_score_legacy(model, incompetent, data.forget, device=device)
    if retrained is not None:
        out["activation_distance"] = activation_distance(model, retrained, data.forget, device=device)
    return out


def measure_methods(models: Mapping[str, nn.Module], data: EvaluationData, *, retrained: str = "Retrain",
                    original: str = "Original", seconds: Mapping[str, float] | None = None,
                    ain_max_steps: int = 100, ain_lr: float = 1e-3, seed: int = 0,
                    device=None) -> dict[str, dict]:
    """The rows of the deck's comparison table for a class-wise request, ready for
    :func:`compare`.

    ``models`` maps names to models and must contain the retrained model (key
    ``retrained``) and the original one (key ``original``). For every model: the four
    accuracies of :func:`accuracy_metrics`; the entropy attack
    (:func:`~unlearnlib.attacks.mia_entropy_member_rate`, share of $\\mathcal D_f$ judged
    member, lower = more forgetting) with an attack model trained on as many retain as test
    samples, so that it cannot score by always answering "member"; the anamnesis index
    (:func:`anamnesis_indices`: relearning on ``data.forget``, validated on
    ``data.test_forget``, budget ``ain_max_steps`` steps of Adam at ``ain_lr``); and, where
    ``seconds`` has the model's name, its wall time. Rows come in the order retrained,
    original, then the others as given. Introduced in {ref}`chap-evaluation`.
    """
    from . import attacks

    for key, role in ((retrained, "retrained"), (original, "original")):
        if key not in models:
            raise ValueError(f"models has no {role} model {key!r}; got {', '.join(models) or 'none'}")
    if data.test_forget is None:
        raise ValueError("measure_methods needs a class-wise request (data.test_forget is None): the anamnesis "
                         "index relearns the forgotten classes")
    ain = anamnesis_indices(models, retrained=models[retrained], original=models[original],
                            relearn_data=data.forget, forget_val=data.test_forget, max_steps=ain_max_steps,
                            lr=ain_lr, seed=seed, device=device)
    seconds = seconds or {}
    rows = {}
    for name in [retrained, original] + [n for n in models if n not in (retrained, original)]:
        model = models[name]
        rows[name] = {**accuracy_metrics(model, data, device=device),
                      "mia_entropy_member_rate": float(attacks.mia_entropy_member_rate(
                          model, retain=data.retain, test=data.test, forget=data.forget,
                          max_samples=len(data.test), seed=seed, device=device)),
                      "ain": ain[name]}
        if name in seconds:
            rows[name]["seconds"] = float(seconds[name])
    return rows


# --------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class MetricSpec:
    """How :func:`compare` shows and judges one metric.

    ``forgetting`` is the direction in which the metric moves when a model forgets more:
    ``'lower'`` or ``'higher'``, or ``'none'`` for metrics with a target rather than a
    direction (utility, AIN, times). ``utility`` marks accuracies whose collapse is a
    warning. Introduced in {ref}`chap-evaluation`.
    """

    label: str
    meaning: str
    forgetting: str = "none"
    utility: bool = False
    fmt: str = ".3f"


METRICS: dict[str, MetricSpec] = {
    "retain_acc": MetricSpec("D_r", "accuracy on the retain set; higher is better, target: Retrain's",
                             utility=True),
    "forget_acc": MetricSpec("D_f", "accuracy on the forget set; lower = more forgetting, target: Retrain's",
                             forgetting="lower"),
    "test_acc": MetricSpec("test", "test accuracy on the kept classes; higher is better, target: Retrain's",
                           utility=True),
    "forget_test_acc": MetricSpec("D_f test", "test accuracy on the forgotten classes; lower = more "
                                  "forgetting, target: Retrain's", forgetting="lower"),
    "mia_entropy_member_rate": MetricSpec(
        "MIA-ent", "entropy-SVM attack (retain vs test): share of D_f judged MEMBER; lower = more "
        "forgetting, target: Retrain's", forgetting="lower"),
    "mia_loss_attack_accuracy": MetricSpec(
        "MIA-loss", "loss-LogReg attack (D_f vs unseen), cross-validated ACCURACY; 0.5 = "
        "indistinguishable, target: Retrain's"),
    "mia_confidence_nonmember_rate": MetricSpec(
        "MIA-conf", "confidence-SVM attack (retain vs test): share of D_f judged NON-MEMBER; higher "
        "= more forgetting, target: Retrain's", forgetting="higher"),
    "zrf": MetricSpec("ZRF", "ZRF (textbook JS) on D_f vs a random network; higher = more random-like, "
                      "target: Retrain's", forgetting="higher"),
    "zrf_legacy": MetricSpec("ZRF-leg", "ZRF as the Bad Teacher code computes it (legacy); higher = more "
                             "random-like", forgetting="higher", fmt=".4f"),
    "activation_distance": MetricSpec("act-dist", "L2 distance of softmax outputs to Retrain on D_f; "
                                      "lower = closer, target 0"),
    "ain": MetricSpec("AIN", "anamnesis index; about 1 is ideal, << 1 = information left, > 1 = damaged",
                      fmt=".2f"),
    "seconds": MetricSpec("time s", "wall time of the unlearning run in seconds", fmt=".1f"),
}


@dataclass
class Comparison:
    """Result of :func:`compare`: ``columns`` (metric keys), ``rows`` (method name to
    metric values, ``None`` where missing), ``reference`` (the retrained model's row name),
    ``gaps`` (method minus reference, per metric), ``warnings`` (over-unlearning and
    collapse) and ``labels`` (how values that are result objects print themselves, e.g. an
    anamnesis index that never relearned). ``str()`` gives the printed table. Introduced in {ref}`chap-evaluation`."""

    reference: str
    columns: list[str]
    rows: dict[str, dict[str, float | None]]
    gaps: dict[str, dict[str, float | None]]
    warnings: list[str] = field(default_factory=list)
    show_gaps: bool = True
    labels: dict[tuple[str, str], str] = field(default_factory=dict)

    def avg_gap(self, method: str, keys: Sequence[str] | None = None) -> float:
        """Mean absolute gap to the reference over ``keys`` (default: every accuracy and
        MIA column present): SalUn's "Avg. Gap", 0 for the reference itself."""
        keys = keys or [k for k in self.columns if k.endswith("_acc") or k.startswith("mia_")]
        gaps = [abs(self.gaps[method][k]) for k in keys if self.gaps[method].get(k) is not None]
        return float(sum(gaps) / len(gaps)) if gaps else float("nan")

    def to_frame(self):
        """The values as a pandas DataFrame (methods as rows)."""
        import pandas as pd

        return pd.DataFrame.from_dict(self.rows, orient="index")[self.columns]

    def _cell(self, method: str, key: str) -> str:
        spec = METRICS.get(key, MetricSpec(key, key))
        value = self.rows[method].get(key)
        if value is None:
            return "-"
        if (method, key) in self.labels:
            return self.labels[(method, key)]
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        text = format(value, spec.fmt)
        gap = self.gaps[method].get(key)
        if self.show_gaps and key != "seconds" and method != self.reference and gap is not None \
                and math.isfinite(gap):
            text += f" ({gap:+{spec.fmt}})"
        return text

    def __str__(self) -> str:
        names = list(self.rows)
        headers = ["method"] + [METRICS.get(k, MetricSpec(k, k)).label for k in self.columns]
        cells = [[n] + [self._cell(n, k) for k in self.columns] for n in names]
        widths = [max(len(r[i]) for r in [headers] + cells) for i in range(len(headers))]
        line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        out = [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
        gap_note = " in brackets" if self.show_gaps else ""
        out.append(f"reference: {self.reference}; gap to it{gap_note}")
        for key in self.columns:
            spec = METRICS.get(key, MetricSpec(key, key))
            out.append(f"  {spec.label}: {spec.meaning}")
        out += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.__str__()


def compare(results: Mapping[str, Mapping[str, float]], *, reference: str = "Retrain",
            columns: Sequence[str] | None = None, tolerance: float = 0.03,
            collapse_drop: float = 0.2, show_gaps: bool = True) -> Comparison:
    """Side-by-side table of methods with the retrained model as the reference.

    ``results`` maps a method name to its metrics (e.g. from :func:`evaluate_unlearning`,
    plus ``'seconds'`` and ``'ain'`` where known; a value may be an object with ``float()``
    and a format of its own, such as :class:`AnamnesisIndex`), in the order to print; ``reference``
    names the retrained model's entry, which must be present. ``columns`` picks and orders
    metric keys (default: those of :data:`METRICS` that any row has). Every other row gets
    its gap to the reference (method minus reference).

    Warnings (in ``.warnings`` and printed under the table):

    * *collapse*: an accuracy marked as utility (``retain_acc``, ``test_acc``) more than
      ``collapse_drop`` below the reference's;
    * *over-unlearning*: a metric with a forgetting direction (``forget_acc``,
      ``forget_test_acc``, the MIA rates, ZRF) beyond the reference's value, in that
      direction, by more than ``tolerance``. For random forgetting this catches a forget
      accuracy pushed below the retrained model's; a model that was never trained on
      $\\mathcal D_f$ is the target, not a model that fails on it.

    Introduced in {ref}`chap-evaluation`.
    """
    if not results:
        raise ValueError("no results to compare")
    if reference not in results:
        raise ValueError(f"the reference {reference!r} is not among the results {list(results)}; "
                         "every comparison needs the retrained model")
    if not 0 <= tolerance < 1 or not 0 < collapse_drop <= 1:
        raise ValueError(f"tolerance must lie in [0, 1) and collapse_drop in (0, 1], got {tolerance}, {collapse_drop}")
    present = {k for r in results.values() for k in r}
    if columns is None:
        columns = [k for k in METRICS if k in present] + sorted(present - set(METRICS))
    else:
        columns = list(columns)
        missing = [k for k in columns if k not in present]
        if missing:
            raise ValueError(f"no result has the column(s) {missing}; available: {sorted(present)}")
    rows, gaps, warnings = {}, {}, []
    ref = results[reference]
    labels = {}
    for name, metrics in results.items():
        rows[name] = {}
        for k in columns:
            value = metrics.get(k)
            if value is not None and not isinstance(value, (int, float)):
                # a result object that formats itself (e.g. an AnamnesisIndex that never relearned)
                labels[(name, k)] = format(value, METRICS.get(k, MetricSpec(k, k)).fmt)
            rows[name][k] = None if value is None else float(value)
        gaps[name] = {}
        for k in columns:
            v, r = rows[name][k], ref.get(k)
            gaps[name][k] = None if v is None or r is None or not math.isfinite(v) or not math.isfinite(r) \
                else v - float(r)
        if name == reference:
            continue
        for k in columns:
            spec, gap = METRICS.get(k), gaps[name][k]
            if spec is None or gap is None:
                continue
            if spec.utility and gap < -collapse_drop:
                warnings.append(f"{name}: {spec.label} collapsed to {rows[name][k]:.3f} "
                                f"({gap:+.3f} vs {reference}); the model is damaged")
            if (spec.forgetting == "lower" and gap < -tolerance) or (spec.forgetting == "higher" and gap > tolerance):
                warnings.append(f"{name}: over-unlearning on {spec.label}: {rows[name][k]:{spec.fmt}} is beyond "
                                f"{reference}'s {float(ref[k]):{spec.fmt}} (gap {gap:+{spec.fmt}})")
    return Comparison(reference=reference, columns=columns, rows=rows, gaps=gaps, warnings=warnings,
                      show_gaps=show_gaps, labels=labels)


# ------------------------------------------------------------------- anamnesis index


AIN_TOLERANCE_MODES = ("relative", "absolute")


def relearn_target(original_accuracy: float, alpha: float = 0.05, mode: str = "relative") -> float:
    """The forget-class accuracy a relearning model must reach to count as "relearned".

    ``mode='relative'`` (the zero-shot authors' code, the default): within a *fraction*
    ``alpha`` of the original model's accuracy, target $= (1-\\alpha)\\,a_o$.
    ``mode='absolute'``: within ``alpha`` *accuracy points* (as a fraction),
    target $= a_o - \\alpha$. For $a_o$ near 1 the two nearly coincide (0.95 vs 0.95 at
    $a_o = 1$; 0.9025 vs 0.90 at $a_o = 0.95$). Introduced in {ref}`chap-zero-shot`.
    """
    if mode not in AIN_TOLERANCE_MODES:
        raise ValueError(f"mode must be 'relative' ((1 - alpha) * acc) or 'absolute' (acc - alpha), got {mode!r}")
    if not 0.0 <= float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    if not 0.0 <= float(original_accuracy) <= 1.0:
        raise ValueError(f"original_accuracy must be a fraction in [0, 1], got {original_accuracy}")
    if mode == "relative":
        return (1.0 - float(alpha)) * float(original_accuracy)
    return float(original_accuracy) - float(alpha)


@dataclass(frozen=True)
class RelearnResult:
    """How fast a model relearned: ``steps`` until the target was reached (0 if it already
    met it before any step; ``None`` if it did not within ``max_steps``), the ``target``, and
    ``accuracies``, the validation accuracy before the first step and after every step
    taken. Introduced in {ref}`chap-zero-shot`."""

    steps: int | None
    target: float
    max_steps: int
    accuracies: tuple[float, ...]

    @property
    def relearned(self) -> bool:
        return self.steps is not None

    def __str__(self) -> str:
        if self.steps is None:
            return f"not within {self.max_steps} steps"
        return f"{self.steps} step{'s' if self.steps != 1 else ''}"


def _labelled(data, name):
    if isinstance(data, LabelledData):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    else:
        raise ValueError(f"{name} must be a LabelledData or an (x, y) pair of tensors, got {type(data).__name__}")
    if len(y) == 0:
        raise ValueError(f"{name} is empty")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    return x, y


def relearn_steps(model: nn.Module, relearn_data, val_data, target: float, *, lr: float = 1e-3,
                  batch_size: int = 256, max_steps: int = 100, seed: int = 0, device=None) -> RelearnResult:
    """Count the mini-batch steps a copy of ``model`` needs to relearn a class.

    A copy of ``model`` (the model itself is not changed) is fine-tuned with cross-entropy
    and Adam (``lr``) on ``relearn_data``, reshuffled every epoch with a generator seeded by
    ``seed`` (so two models given the same seed see the same batches), in mini-batches of
    ``batch_size``. Before the first step and after every step its accuracy on
    ``val_data`` is measured in evaluation mode; counting stops as soon as it is at least
    ``target``. Returns a :class:`RelearnResult` (``steps=None`` when ``max_steps`` were not
    enough). Introduced in {ref}`chap-zero-shot`.
    """
    _check_model(model)
    x, y = _labelled(relearn_data, "relearn_data")
    xv, yv = _labelled(val_data, "val_data")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not float(lr) > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    from .training import get_device

    dev = get_device(device) if device is not None else _device_of(model)
    work = copy.deepcopy(model).to(dev)
    x, y, xv, yv = x.to(dev), y.to(dev), xv.to(dev), yv.to(dev)
    opt = torch.optim.Adam(work.parameters(), lr=float(lr))
    gen = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def accuracy() -> float:
        work.eval()
        correct = sum(int((work(xv[i:i + 1024]).argmax(dim=1) == yv[i:i + 1024]).sum())
                      for i in range(0, len(yv), 1024))
        return correct / len(yv)

    accuracies = [accuracy()]
    if accuracies[0] >= target:
        return RelearnResult(0, float(target), max_steps, tuple(accuracies))
    step, n = 0, len(y)
    while step < max_steps:
        order = torch.randperm(n, generator=gen).to(dev)
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            work.train()
            loss = F.cross_entropy(work(x[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            # the protocol stops at the first step that reaches the target, so the
            # accuracy has to be read (a device sync) after every step
            accuracies.append(accuracy())
            if accuracies[-1] >= target:
                return RelearnResult(step, float(target), max_steps, tuple(accuracies))
            if step >= max_steps:
                break
    return RelearnResult(None, float(target), max_steps, tuple(accuracies))


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclass(frozen=True)
class AnamnesisIndex:
    """The anamnesis index of one unlearned model and how it was obtained.

    ``value`` is $r_u / r_s$ when both models relearned within the budget and the retrained
    model needed at least one step. Otherwise it is not a normal number, and ``status`` says
    why: ``'unlearned never relearned'`` (``value = inf``; the true index is at least
    ``lower_bound`` = max_steps / $r_s$), ``'retrained never relearned'`` (``nan``: the
    budget is too small to measure anything), ``'retrained at target without relearning'``
    (``nan``: the gold model already reaches the target, so the ratio is undefined).
    ``str()`` prints the value or, in those cases, the reason instead of a number.
    Introduced in {ref}`chap-zero-shot`.
    """

    value: float
    status: str
    unlearned: RelearnResult
    retrained: RelearnResult
    original_accuracy: float
    target: float
    alpha: float
    mode: str

    @property
    def defined(self) -> bool:
        """True when ``value`` is an ordinary finite ratio."""
        return self.status == "ok"

    @property
    def lower_bound(self) -> float | None:
        """For a model that never relearned: the index is at least this (budget / $r_s$)."""
        if self.status == "unlearned never relearned" and self.retrained.steps:
            return self.unlearned.max_steps / self.retrained.steps
        return None

    def __float__(self) -> float:
        return float(self.value)

    def __format__(self, spec: str) -> str:
        if self.defined:
            return format(self.value, spec or ".2f")
        if self.lower_bound is not None:
            return f">{self.lower_bound:{spec or '.2f'}} (never)"
        return "n/a"

    def __str__(self) -> str:
        detail = f"unlearned: {self.unlearned}, retrained: {self.retrained}; target {self.target:.3f}"
        if self.defined:
            return f"AIN = {self.value:.2f} ({detail})"
        if self.lower_bound is not None:
            return (f"AIN > {self.lower_bound:.2f}: the unlearned model did not relearn within "
                    f"{self.unlearned.max_steps} steps ({detail})")
        return f"AIN undefined: {self.status} ({detail})"


def anamnesis_index(unlearned: nn.Module, retrained: nn.Module, original: nn.Module, relearn_data,
                    forget_val, *, alpha: float = 0.05, mode: str = "relative", lr: float = 1e-3,
                    batch_size: int = 256, max_steps: int = 100, seed: int = 0,
                    device=None) -> AnamnesisIndex:
    """Anamnesis index (AIN) of Chundawat et al. (2023): how fast an unlearned model
    relearns the forgotten classes, relative to a model that never saw them.

    $$\\mathrm{AIN} = \\frac{r_t(M_u, M_o, \\alpha)}{r_t(M_s, M_o, \\alpha)}$$

    $r_t(M, M_o, \\alpha)$ is the number of fine-tuning steps (:func:`relearn_steps`: Adam,
    ``lr`` = 1e-3, batches of ``batch_size`` = 256 from ``relearn_data``, at most
    ``max_steps``) after which model $M$'s accuracy on ``forget_val`` reaches
    :func:`relearn_target` of the ``original`` model's accuracy $a_o$ there: by default
    ``mode='relative'``, $(1-\\alpha)\\,a_o$ with ``alpha`` = 0.05, as in the authors' code
    (``mode='absolute'``: $a_o - \\alpha$). $M_u$ is ``unlearned``, $M_s$ ``retrained`` (the
    gold model trained without the forget classes); both relearn from the same batches
    (same ``seed``). The course's protocol: ``relearn_data`` = the forget classes'
    training samples, ``forget_val`` = their test samples.

    Reading it: about 1 is ideal (relearns like a model that never saw the class); well
    below 1 means information was left behind (relearns too fast); above 1 means the model
    is harder to teach than the gold model (over-damaged). When the unlearned model does
    not relearn within ``max_steps`` the result says so (``value = inf``, ``str()`` prints
    "AIN > ...") instead of a normal-looking number. Returns an :class:`AnamnesisIndex`.
    Introduced in {ref}`chap-zero-shot`.
    """
    return anamnesis_indices({"unlearned": unlearned}, retrained, original, relearn_data, forget_val,
                             alpha=alpha, mode=mode, lr=lr, batch_size=batch_size, max_steps=max_steps,
                             seed=seed, device=device)["unlearned"]


def _anamnesis_from(r_u: RelearnResult, r_s: RelearnResult, original_accuracy, target, alpha, mode) -> AnamnesisIndex:
    if r_s.steps is None:
        value, status = float("nan"), "retrained never relearned"
    elif r_s.steps == 0:
        value, status = float("nan"), "retrained at target without relearning"
    elif r_u.steps is None:
        value, status = float("inf"), "unlearned never relearned"
    else:
        value, status = r_u.steps / r_s.steps, "ok"
    return AnamnesisIndex(value, status, r_u, r_s, float(original_accuracy), float(target), float(alpha), mode)


def anamnesis_indices(models: Mapping[str, nn.Module], retrained: nn.Module, original: nn.Module, relearn_data,
                      forget_val, *, alpha: float = 0.05, mode: str = "relative", lr: float = 1e-3,
                      batch_size: int = 256, max_steps: int = 100, seed: int = 0,
                      device=None) -> dict[str, AnamnesisIndex]:
    """:func:`anamnesis_index` of several models against the same retrained model, with the
    retrained model's relearning run (the common denominator) done once instead of once per
    model. ``models`` maps names to models (the retrained model itself may be among them:
    its index is 1 by construction). Same arguments and protocol as :func:`anamnesis_index`;
    returns a dict from name to :class:`AnamnesisIndex`. Introduced in {ref}`chap-evaluation`.
    """
    if not models:
        raise ValueError("no models given")
    for name, m in {**models, "retrained": retrained, "original": original}.items():
        _check_model(m, name)
    _labelled(relearn_data, "relearn_data")
    xv, yv = _labelled(forget_val, "forget_val")
    original_accuracy = evaluate(original, LabelledData(xv, yv), device=device).accuracy
    target = relearn_target(original_accuracy, alpha, mode)
    kwargs = dict(lr=lr, batch_size=batch_size, max_steps=max_steps, seed=seed, device=device)
    r_s = relearn_steps(retrained, relearn_data, (xv, yv), target, **kwargs)
    out = {}
    for name, model in models.items():
        r_u = r_s if model is retrained else relearn_steps(model, relearn_data, (xv, yv), target, **kwargs)
        out[name] = _anamnesis_from(r_u, r_s, original_accuracy, target, alpha, mode)
    return out
