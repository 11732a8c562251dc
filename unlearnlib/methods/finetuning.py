"""Retraining and the gradient-based baselines: fine-tune, gradient ascent, NegGrad+ and
random labels.

Introduced in the Baselines chapter ({ref}`chap-baselines`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data import LabelledData
from ..training import fit, make_optimizer
from .base import FreezeBatchNorm, num_outputs, reinitialized_copy

__all__ = ["retrain_model", "fine_tune_model", "gradient_ascent_model", "neggrad_plus_model",
           "random_labels_model", "random_other_labels"]


def _fit_kwargs(config, *, prefix=""):
    return dict(epochs=config[prefix + "epochs"], lr=config[prefix + "lr"], batch_size=config["batch_size"],
                optimizer=config["optimizer"], seed=config["seed"])


def retrain_model(model: nn.Module, *, retain: LabelledData, config, device, **_):
    """Train a fresh copy of the architecture from scratch on $\\mathcal D_r$ with the
    training recipe in ``config`` (``model_factory``, if given, builds the fresh model;
    otherwise every layer of ``model`` is re-initialised with seed ``seed``).
    Introduced in {ref}`chap-baselines`."""
    factory = config["model_factory"]
    fresh = factory() if factory is not None else reinitialized_copy(model, seed=config["seed"])
    if not isinstance(fresh, nn.Module):
        raise ValueError(f"model_factory must return a torch.nn.Module, got {type(fresh).__name__}")
    history = fit(fresh, retain, weight_decay=config["weight_decay"], device=device, desc="retrain",
                  **_fit_kwargs(config))
    return fresh, {"steps": history.steps, "final_loss": history.epoch_loss[-1] if history.epoch_loss else None}


def fine_tune_model(model: nn.Module, *, retain: LabelledData, config, device, **_):
    """Keep training the original model on $\\mathcal D_r$ only (catastrophic forgetting of
    $\\mathcal D_f$ is hoped for). Introduced in {ref}`chap-baselines`."""
    history = fit(model, retain, device=device, desc="fine-tune", **_fit_kwargs(config))
    return model, {"steps": history.steps}


def _negative_cross_entropy(logits, y):
    return -F.cross_entropy(logits, y)


def gradient_ascent_model(model: nn.Module, *, forget: LabelledData, config, device, **_):
    """Maximise the cross-entropy on $\\mathcal D_f$ (gradient descent on its negative).
    With ``freeze_batchnorm`` the batch-norm statistics are kept as they are
    (:class:`~unlearnlib.methods.base.FreezeBatchNorm`): batches of forget samples only
    would otherwise drag them towards the forget data. Introduced in {ref}`chap-baselines`."""
    hooks = [FreezeBatchNorm()] if config["freeze_batchnorm"] else []
    history = fit(model, forget, loss_fn=_negative_cross_entropy, device=device, desc="gradient ascent",
                  hooks=hooks, **_fit_kwargs(config))
    return model, {"steps": history.steps, "final_forget_loss": -history.epoch_loss[-1]}


def neggrad_plus_model(model: nn.Module, *, forget: LabelledData, retain: LabelledData, config, device, **_):
    """NegGrad+: minimise $\\alpha\\,\\mathcal L(\\mathcal D_r) - (1-\\alpha)\\,\\mathcal L(\\mathcal D_f)$
    on pairs of mini-batches, one from each set, passed through the model together. An epoch
    is one pass over $\\mathcal D_r$; forget batches are drawn from fresh permutations of
    $\\mathcal D_f$ as needed. Introduced in {ref}`chap-baselines`."""
    alpha = float(config["alpha"])
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    xr, yr = retain.x.to(device), retain.y.to(device)
    xf, yf = forget.x.to(device), forget.y.to(device)
    nr, nf, bs = len(retain), len(forget), int(config["batch_size"])
    fb = min(int(config["forget_batch_size"]), nf)
    opt = make_optimizer(model, config["optimizer"], lr=config["lr"])
    gen = torch.Generator().manual_seed(config["seed"])
    model.train()
    steps = 0
    order_f, pos_f = torch.randperm(nf, generator=gen).to(device), 0
    for _ in range(config["epochs"]):
        order_r = torch.randperm(nr, generator=gen).to(device)
        for first in range(0, nr, bs):
            br = order_r[first:first + bs]
            if pos_f + fb > nf:
                order_f, pos_f = torch.randperm(nf, generator=gen).to(device), 0
            bf = order_f[pos_f:pos_f + fb]
            pos_f += fb
            # one forward pass over both batches: batch-norm layers then normalise with, and
            # track, statistics of a mixed batch rather than of a batch of forget samples only
            logits = model(torch.cat([xr[br], xf[bf]]))
            loss = alpha * F.cross_entropy(logits[:len(br)], yr[br]) \
                - (1.0 - alpha) * F.cross_entropy(logits[len(br):], yf[bf])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    return model, {"steps": steps}


def random_other_labels(labels: torch.Tensor, num_classes: int, *, seed: int = 0,
                        exclude_true: bool = True) -> torch.Tensor:
    """Random labels for ``labels``: uniform over the ``num_classes - 1`` *other* classes
    (``exclude_true=True``, Amnesiac's and Bad Teacher's relabelling baseline) or over all
    classes (``False``, SalUn's, which may draw the true label). Introduced in
    {ref}`chap-baselines`."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    gen = torch.Generator().manual_seed(seed)
    if exclude_true:
        shift = torch.randint(1, num_classes, labels.shape, generator=gen)
        return (labels.cpu() + shift) % num_classes
    return torch.randint(0, num_classes, labels.shape, generator=gen)


def random_labels_model(model: nn.Module, *, forget: LabelledData, retain: LabelledData, config, device, **_):
    """Train on the modified training set: $\\mathcal D_f$ with random labels together with
    $\\mathcal D_r$ with its true labels (Graves et al.'s relabelling "unlearning").
    Introduced in {ref}`chap-baselines`."""
    num_classes = num_outputs(model, forget.x[0])
    noisy = random_other_labels(forget.y, num_classes, seed=config["seed"], exclude_true=config["exclude_true"])
    data = LabelledData(torch.cat([forget.x, retain.x]), torch.cat([noisy, retain.y.cpu()]))
    history = fit(model, data, device=device, desc="random labels", **_fit_kwargs(config))
    changed = float((noisy != forget.y.cpu()).float().mean())
    return model, {"steps": history.steps, "share_relabelled": changed}
