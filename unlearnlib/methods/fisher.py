"""Fisher forgetting (Golatkar, Achille and Soatto, CVPR 2020).

Introduced in the Baselines chapter ({ref}`chap-baselines`).

The scrubbing adds Gaussian noise to every weight, scaled by the inverse of the diagonal of
the Fisher information of the retain set: weights that $\\mathcal D_r$ barely uses receive
much noise (whatever they encode about $\\mathcal D_f$ is destroyed), weights it relies on
receive little. The noise follows the authors' released code (variance proportional to
$\\alpha / F$, clamped, averaged per output unit), not the $F^{-1/4}$ form of the paper's
derivation; $\\alpha$ is very sensitive (too large and the model collapses).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data import LabelledData
from .base import num_outputs

__all__ = ["fisher_diagonal", "classifier_head", "fisher_noise_variance", "fisher_forgetting_model"]


def fisher_diagonal(model: nn.Module, data, *, max_samples: int | None = None, chunk_size: int = 256,
                    estimator: str = "exact", seed: int = 0, device=None) -> dict[str, torch.Tensor]:
    r"""Diagonal of the (true) Fisher information of ``model`` on ``data``, per parameter.

    $F_j = \\frac1n\\sum_{i=1}^{n}\\sum_{c=1}^{C} p_\\theta(c\\mid x_i)\\,
    \\big(\\partial \\log p_\\theta(c\\mid x_i)/\\partial\\theta_j\\big)^2$: the expectation is
    over the model's own predictive distribution, not the true labels (that would be the
    *empirical* Fisher), and the squares are of per-sample gradients (the square of a
    mini-batch mean gradient is a different, biased quantity). Per-sample gradients come
    from ``torch.func`` (``vmap`` over ``grad``), ``chunk_size`` samples at a time, with
    the model in evaluation mode. ``max_samples`` limits $n$ to a seeded random subset.

    ``estimator='exact'`` sums over all $C$ classes ($C$ per-sample gradients per input, as
    the authors' code does); ``'sampled'`` draws one class per input from
    $p_\theta(\cdot\mid x_i)$ (seeded) and uses its squared gradient alone: an unbiased
    Monte Carlo estimate of the same $F_j$ at $1/C$ of the cost.
    Returns a dict from parameter name to a tensor of its shape (on ``device``).
    Introduced in {ref}`chap-baselines`.
    """
    x = data.x if isinstance(data, LabelledData) else data
    if not isinstance(x, torch.Tensor) or x.shape[0] == 0:
        raise ValueError("data must be a non-empty LabelledData or tensor of inputs")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        if max_samples < x.shape[0]:
            gen = torch.Generator().manual_seed(seed)
            x = x[torch.randperm(x.shape[0], generator=gen)[:max_samples].sort().values]
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if estimator not in ("exact", "sampled"):
        raise ValueError(f"estimator must be 'exact' or 'sampled', got {estimator!r}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    was_training = model.training
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def log_prob(p, xi, onehot):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return (out.log_softmax(dim=1)[0] * onehot).sum()

    same_class_grad = vmap(grad(log_prob), in_dims=(None, 0, None))
    own_class_grad = vmap(grad(log_prob), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    gen = torch.Generator().manual_seed(seed + 1)
    try:
        for first in range(0, x.shape[0], chunk_size):
            xb = x[first:first + chunk_size].to(dev)
            with torch.no_grad():
                proba = model(xb).softmax(dim=1)
            if estimator == "sampled":
                drawn = torch.multinomial(proba.cpu().double(), 1, generator=gen).squeeze(1)
                onehots = torch.nn.functional.one_hot(drawn, proba.shape[1]).to(device=dev, dtype=proba.dtype)
                for k, g in own_class_grad(params, xb, onehots).items():
                    fisher[k] += g.pow(2).sum(dim=0)
                continue
            for c in range(proba.shape[1]):
                onehot = torch.zeros(proba.shape[1], device=dev, dtype=proba.dtype)
                onehot[c] = 1.0
                weight = proba[:, c]
                for k, g in same_class_grad(params, xb, onehot).items():
                    fisher[k] += torch.einsum("n,n...->...", weight, g.pow(2))
    finally:
        model.train(was_training)
    return {k: v / x.shape[0] for k, v in fisher.items()}


def classifier_head(model: nn.Module, num_classes: int) -> tuple[str, ...]:
    """Names of the parameters of the output layer: the last ``nn.Linear`` with
    ``num_classes`` outputs (weight and bias). Introduced in {ref}`chap-baselines`."""
    head = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            head = name
    if head is None:
        raise ValueError(f"the model has no nn.Linear layer with {num_classes} outputs to treat as its head")
    return tuple(f"{head}.{p}" if head else p for p, _ in model.get_submodule(head).named_parameters())


def fisher_noise_variance(fisher: dict[str, torch.Tensor], model: nn.Module, *, alpha: float,
                          head: tuple[str, ...], classes: tuple[int, ...] | None = None,
                          clamp: float = 1e3, head_clamp: float = 1e2) -> tuple[dict, dict]:
    """Mean and variance of the scrubbed weights, as in the authors' code: per parameter,
    $v = \\min(1/(F + 10^{-8}),\\ \\text{clamp})$ (``head_clamp`` for the output layer),
    times ``alpha``; averaged over the input dimension (dimension 1) of tensors with two or
    more dimensions, so each output unit gets one variance; for class forgetting the rows of
    the forget ``classes`` in the output layer get mean 0 and variance $10^{-4}$; finally the
    output layer and all one-dimensional tensors (biases, normalisation) get ten times the
    variance. The mean is the current weight. Returns ``(means, variances)``.
    Introduced in {ref}`chap-baselines`."""
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    means, variances = {}, {}
    for name, p in model.named_parameters():
        if name not in fisher:
            raise ValueError(f"no Fisher information for parameter {name!r}")
        in_head = name in head
        v = (1.0 / (fisher[name] + 1e-8)).clamp(max=head_clamp if in_head else clamp) * alpha
        if p.ndim >= 2:
            v = v.mean(dim=1, keepdim=True).expand_as(p).clone()
        mu = p.detach().clone()
        if classes and in_head:
            rows = torch.tensor(classes, device=p.device)
            mu[rows] = 0.0
            v[rows] = 1e-4
        if in_head or p.ndim == 1:
            v = v * 10
        means[name], variances[name] = mu, v
    return means, variances


def fisher_forgetting_model(model: nn.Module, *, retain: LabelledData, classes, config, device, **_):
    """Fisher forgetting: estimate the Fisher diagonal on $\\mathcal D_r$, then replace every
    weight by a draw from $\\mathcal N(\\mu, v)$ of :func:`fisher_noise_variance`.
    Introduced in {ref}`chap-baselines`."""
    fisher = fisher_diagonal(model, retain, max_samples=config["max_samples"], chunk_size=config["chunk_size"],
                             estimator=config["estimator"], seed=config["seed"], device=device)
    head = classifier_head(model, num_outputs(model, retain.x[0]))
    means, variances = fisher_noise_variance(fisher, model, alpha=config["alpha"], head=head,
                                             classes=classes if config["zero_forget_rows"] else None,
                                             clamp=config["clamp"], head_clamp=config["head_clamp"])
    gen = torch.Generator().manual_seed(config["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen).to(p.device)
            p.copy_(means[name] + variances[name].sqrt() * noise)
    mean_std = float(torch.cat([v.sqrt().flatten() for v in variances.values()]).mean())
    return model, {"mean_noise_std": mean_std, "fisher_samples": min(len(retain), config["max_samples"] or len(retain))}
