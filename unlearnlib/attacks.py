"""Attacks used to evaluate unlearning: membership inference and model inversion.

Introduced in the Evaluation and attacks chapter ({ref}`chap-evaluation`).

Three membership-inference attacks (MIA) are in use in the unlearning literature, and each
reports a different number with a different "good" direction. Each function here is named
after what it reports, and its docstring states the orientation:

==================================  ===============================  =======================  =========================
function                            feature, attack model            trained on               reports
==================================  ===============================  =======================  =========================
:func:`mia_entropy_member_rate`     softmax entropy, RBF SVM         retain (1) vs test (0)   share of D_f judged MEMBER
:func:`mia_loss_attack_accuracy`    per-sample loss, logistic reg.   D_f (1) vs unseen (0)    cross-validated ACCURACY
:func:`mia_confidence_nonmember_rate`  true-class probability, RBF SVM  retain (1) vs test (0)   share of D_f judged NON-MEMBER
==================================  ===============================  =======================  =========================

The first is the convention of Golatkar et al., Bad Teacher and zero-shot unlearning (lower
means more forgetting); the second that of SCRUB and the NeurIPS 2023 challenge's starting
kit (0.5 means indistinguishable); the third the "MIA-efficacy" of SalUn (higher means more
forgetting). For all three the target is the retrained model's value, not an extreme.
The attack models come from scikit-learn.

:func:`model_inversion` reconstructs one input per class by gradient descent on the input
(after Fredrikson et al. 2015), the attack the zero-shot paper uses to show what an
unlearned model still reveals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import LabelledData
from .training import _model_device, get_device, predict_logits

__all__ = [
    "MIAResult",
    "softmax_entropy",
    "true_class_confidence",
    "mia_entropy_member_rate",
    "mia_loss_attack_accuracy",
    "mia_confidence_nonmember_rate",
    "InversionResult",
    "model_inversion",
]


@dataclass(frozen=True)
class MIAResult:
    """One membership-inference score with what it means.

    ``value`` is the reported number, ``name`` the function that made it, ``orientation``
    a sentence saying which direction means more forgetting, ``attack_accuracy`` how well
    the attack model separates its own training data (a weak attack says little either
    way) and ``n_forget`` the number of $\\mathcal D_f$ samples scored. ``float(result)``
    is the value. Introduced in {ref}`chap-evaluation`.
    """

    value: float
    name: str
    orientation: str
    attack_accuracy: float
    n_forget: int

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        return f"{self.name} = {self.value:.3f} ({self.orientation})"


def _check_data(**sets):
    for name, data in sets.items():
        if not isinstance(data, LabelledData):
            raise ValueError(f"{name} must be a LabelledData, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError(f"the {name} set is empty")


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def softmax_entropy(proba: torch.Tensor) -> torch.Tensor:
    """Entropy $H(p) = -\\sum_c p_c \\log p_c$ (nats) of every row of ``proba`` (N, C),
    with $0 \\log 0 = 0$. Introduced in {ref}`chap-evaluation`."""
    if proba.ndim != 2:
        raise ValueError(f"proba must have shape (samples, classes), got {tuple(proba.shape)}")
    return -torch.xlogy(proba, proba).sum(dim=1)


def true_class_confidence(proba: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The probability $p_y$ each row of ``proba`` (N, C) gives to its true label.
    Introduced in {ref}`chap-evaluation`."""
    if proba.ndim != 2 or labels.shape != proba.shape[:1]:
        raise ValueError(f"proba (N, C) and labels (N,) do not match: {tuple(proba.shape)}, {tuple(labels.shape)}")
    return proba.gather(1, labels.long().view(-1, 1)).squeeze(1)


def _proba(model, data, device):
    return predict_logits(model, data.x, device=device).double().softmax(dim=1)


def _subsample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _svm_member_predictions(members: np.ndarray, nonmembers: np.ndarray, queries: np.ndarray):
    from sklearn.svm import SVC

    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    # the hyperparameters of the published attacks (Golatkar et al.; SalUn's SVC_MIA)
    svm = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return svm.predict(queries.reshape(-1, 1)), float(svm.score(x, y))


def mia_entropy_member_rate(model: nn.Module, *, retain: LabelledData, test: LabelledData,
                            forget: LabelledData, max_samples: int | None = None, seed: int = 0,
                            device=None) -> MIAResult:
    """Membership inference, Golatkar / Bad Teacher / zero-shot convention: the **share of
    $\\mathcal D_f$ judged MEMBER**. Lower means more forgetting; the target is the
    retrained model's value.

    Feature: the entropy of the model's softmax output. Attack model: an RBF support-vector
    machine (``SVC(C=3, gamma='auto')``) trained to tell ``retain`` (members, label 1) from
    ``test`` (non-members, 0), then applied to ``forget``; the result is the mean predicted
    label on $\\mathcal D_f$. As published, all of both sets are used, so the attack sees
    more members than non-members; ``max_samples`` caps each side (seeded sub-sample) for
    large sets. Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model)
    _check_data(retain=retain, test=test, forget=forget)
    rng = np.random.default_rng(seed)
    ent = lambda d: softmax_entropy(_proba(model, d, device)).numpy()
    members = ent(retain)[_subsample(len(retain), max_samples, rng)]
    nonmembers = ent(test)[_subsample(len(test), max_samples, rng)]
    pred, train_acc = _svm_member_predictions(members, nonmembers, ent(forget))
    return MIAResult(float(pred.mean()), "mia_entropy_member_rate",
                     "share of D_f judged member; lower = more forgetting, target: Retrain's",
                     train_acc, len(forget))


def mia_confidence_nonmember_rate(model: nn.Module, *, retain: LabelledData, test: LabelledData,
                                  forget: LabelledData, seed: int = 0, device=None) -> MIAResult:
    """Membership inference, SalUn "MIA-efficacy" convention: the **share of
    $\\mathcal D_f$ judged NON-MEMBER**. Higher means more forgetting; the target is the
    retrained model's value (about 1 for a forgotten class, small for random samples).

    Feature: the true-class probability $p_y$. Attack model: ``SVC(C=3, gamma='auto')``
    trained on $|\\mathcal D_t|$ samples of ``retain`` (members, 1; SalUn takes the first
    ones of its loader, here a seeded random choice) against ``test`` (non-members, 0),
    then applied to ``forget``; the result is one minus the mean predicted label.
    Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model)
    _check_data(retain=retain, test=test, forget=forget)
    rng = np.random.default_rng(seed)
    conf = lambda d: true_class_confidence(_proba(model, d, device), d.y.cpu()).numpy()
    members = conf(retain)[_subsample(len(retain), len(test), rng)]
    pred, train_acc = _svm_member_predictions(members, conf(test), conf(forget))
    return MIAResult(float(1.0 - pred.mean()), "mia_confidence_nonmember_rate",
                     "share of D_f judged non-member; higher = more forgetting, target: Retrain's",
                     train_acc, len(forget))


def mia_loss_attack_accuracy(model: nn.Module, *, forget: LabelledData, test: LabelledData,
                             folds: int = 10, seed: int = 0, device=None) -> MIAResult:
    """Membership inference, SCRUB / NeurIPS 2023 starting-kit convention: the
    **cross-validated ACCURACY** of an attack telling $\\mathcal D_f$ from unseen data.
    0.5 means the two are indistinguishable; the target is the retrained model's value
    (about 0.5), and a value below 0.5 is not "better".

    Feature: the per-sample cross-entropy loss (clipped at 100). Attack model: scikit-learn's
    ``LogisticRegression``, on ``forget`` (label 1) against ``test`` (label 0; for a
    forgotten class, pass the test images of that class, as SCRUB does); the larger side is
    sub-sampled to the size of the smaller (seeded), and the accuracy is the mean over
    ``folds`` stratified shuffle splits holding out 10%. Introduced in {ref}`chap-evaluation`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    _check_model(model)
    _check_data(forget=forget, test=test)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    n = min(len(forget), len(test))
    if n < 10:
        raise ValueError(f"the loss attack needs at least 10 samples on each side, got {len(forget)} and {len(test)}")
    rng = np.random.default_rng(seed)

    def losses(d):
        logits = predict_logits(model, d.x, device=device).double()
        return F.cross_entropy(logits, d.y.cpu(), reduction="none").clamp(max=100).numpy()

    lf = losses(forget)[_subsample(len(forget), n, rng)]
    lt = losses(test)[_subsample(len(test), n, rng)]
    x = np.concatenate([lf, lt]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=folds, test_size=0.1, random_state=seed)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    train_acc = float(LogisticRegression().fit(x, y).score(x, y))
    return MIAResult(float(scores.mean()), "mia_loss_attack_accuracy",
                     "cross-validated attack accuracy; 0.5 = indistinguishable, target: Retrain's",
                     train_acc, len(forget))


# ------------------------------------------------------------------------ model inversion


@dataclass(frozen=True)
class InversionResult:
    """Reconstructions of :func:`model_inversion`: ``images`` (K, C, H, W) on the CPU, one
    per entry of ``classes``, and the attacked model's probability of each target class
    before (``start_proba``) and after (``final_proba``) the optimisation.
    Introduced in {ref}`chap-evaluation`."""

    images: torch.Tensor
    classes: tuple[int, ...]
    start_proba: torch.Tensor
    final_proba: torch.Tensor


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel_1d = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel_1d = kernel_1d / kernel_1d.sum()
    channels = x.shape[1]
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).expand(channels, 1, -1, -1)
    padded = F.pad(x, (radius,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=channels)


def model_inversion(model: nn.Module, input_shape, classes=None, *, steps: int = 300, lr: float = 0.1,
                    cost: str = "nll", init: str = "zeros", blur_every: int = 50, blur_sigma: float = 0.5,
                    bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, device=None) -> InversionResult:
    """Gradient-based class inversion after Fredrikson, Jha and Ristenpart (2015).

    For every target class $t$ in ``classes`` (default: all), start from an input $x_0$
    (``init='zeros'``, as MI-FACE does, or ``'noise'``: uniform noise in the lower 1/128 of
    ``bounds``, as the Amnesiac code does) and repeat ``steps`` times
    $x \\leftarrow \\Pi\\big(x - \\eta\\,\\nabla_x c_t(x)\\big)$ with step size $\\eta$ = ``lr``,
    where $\\Pi$ clips to ``bounds`` (the valid input range) and the cost is
    $c_t(x) = -\\log p(t\\mid x)$ (``cost='nll'``, the Amnesiac variant) or
    $c_t(x) = 1 - p(t\\mid x)$ (``'one_minus_p'``, MI-FACE's). Every ``blur_every`` steps a
    Gaussian blur of width ``blur_sigma`` pixels smooths $x$ (MI-FACE's ``PROCESS`` step,
    which keeps high-frequency adversarial patterns out; 0 switches it off). All classes are
    inverted at once as one batch, with the model in evaluation mode, so they do not
    interact. ``input_shape`` is (C, H, W). Returns an :class:`InversionResult`.
    Introduced in {ref}`chap-evaluation`.
    """
    _check_model(model)
    if cost not in ("nll", "one_minus_p"):
        raise ValueError(f"unknown cost {cost!r}; choose 'nll' or 'one_minus_p'")
    if init not in ("zeros", "noise"):
        raise ValueError(f"unknown init {init!r}; choose 'zeros' or 'noise'")
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got {steps} and {lr}")
    if blur_every < 0 or blur_sigma < 0:
        raise ValueError("blur_every and blur_sigma must be non-negative")
    lo, hi = map(float, bounds)
    if not lo < hi:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    dev = get_device(device) if device is not None else _model_device(model)
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            num_classes = model(torch.zeros(1, *input_shape, device=dev)).shape[1]
        classes = tuple(range(num_classes)) if classes is None else tuple(int(c) for c in classes)
        if not classes or any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"classes must be non-empty ids in 0..{num_classes - 1}, got {classes}")
        target = torch.tensor(classes, device=dev)
        if init == "zeros":
            x = torch.full((len(classes), *input_shape), lo, device=dev)
        else:
            gen = torch.Generator().manual_seed(seed)
            x = (lo + (hi - lo) * torch.rand((len(classes), *input_shape), generator=gen) / 128).to(dev)
        # the attacked model's parameters must not collect gradients
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            start = None
            for step in range(steps):
                x.requires_grad_(True)
                log_p = model(x).log_softmax(dim=1).gather(1, target[:, None]).squeeze(1)
                if start is None:
                    start = log_p.detach().exp()
                loss = -log_p if cost == "nll" else 1 - log_p.exp()
                (grad,) = torch.autograd.grad(loss.sum(), x)
                with torch.no_grad():
                    x = (x - lr * grad).clamp(lo, hi)
                    if blur_every and blur_sigma > 0 and (step + 1) % blur_every == 0 and step + 1 < steps:
                        x = _gaussian_blur(x, blur_sigma).clamp(lo, hi)
            with torch.no_grad():
                final = model(x).softmax(dim=1).gather(1, target[:, None]).squeeze(1)
        finally:
            for p in params:
                p.requires_grad_(True)
    finally:
        model.train(was_training)
    return InversionResult(x.detach().cpu(), classes, start.cpu(), final.cpu())
