"""Knowledge distillation: losses that make a student imitate a teacher, and trainers.

Introduced in the Knowledge distillation chapter ({ref}`chap-distillation`).

The deck sorts distillation by *what* is imitated and by *how* teacher and student are
trained; this module has one piece for each:

* response-based knowledge: :func:`kd_loss`, the temperature-scaled KL divergence between
  the teacher's and the student's softened predictions (Hinton et al. 2015);
* feature-based knowledge: :func:`attention_map` and :func:`attention_loss`, attention
  transfer between named layers (Zagoruyko and Komodakis 2017), whose activations
  :class:`ActivationRecorder` captures with forward hooks;
* relation-based knowledge: :func:`rkd_loss`, relational knowledge distillation
  (distance-wise and angle-wise) (Park et al. 2019).

Reductions matter. ``torch.nn.functional.kl_div`` with its default ``reduction='mean'``
divides the summed KL by batch size **times the number of classes** ``C``; the true per-sample
KL divergence is ``reduction='batchmean'`` (divide by the batch size only). Published
unlearning code (gated knowledge transfer, Bad Teacher) uses the default, so its KL term is
``C`` times smaller, relative to the other terms of its loss (e.g. ``beta`` times an attention
loss), than the formula in the paper suggests. :func:`kd_loss` defaults to ``'batchmean'``
and offers ``'mean'`` to reproduce those weightings: ``kd_loss(..., reduction='mean')`` equals
``kd_loss(..., reduction='batchmean') / C``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "REDUCTIONS",
    "kd_loss",
    "attention_map",
    "attention_loss",
    "ActivationRecorder",
]

REDUCTIONS = ("batchmean", "mean", "sum", "none")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
            temperature: float = 1.0, reduction: str = "batchmean") -> torch.Tensor:
    """Response-based distillation loss: $T^2\\,\\mathrm{KL}(\\sigma(z_t/T)\\,\\|\\,\\sigma(z_s/T))$.

    ``student_logits`` $z_s$ and ``teacher_logits`` $z_t$ have shape (N, C); $\\sigma$ is the
    softmax over classes and $T$ = ``temperature`` > 0 softens both distributions. Both are
    taken in log space (``kl_div`` with ``log_target=True`` on two ``log_softmax``), so a
    teacher probability that underflows to 0 contributes 0 and never a NaN.

    The factor $T^2$ keeps the size of the gradient with respect to the student's logits
    roughly independent of $T$ (without it, the gradient shrinks like $1/T^2$), so a mix with a
    cross-entropy term keeps its balance when $T$ changes. Two consequences are tested: scaling
    both logits by $T$ and dividing by $T$ cancel, i.e.
    ``kd_loss(a * T, b * T, temperature=T) == T**2 * kd_loss(a, b)``; and for large $T$ the loss
    tends to $\\frac{1}{2C}\\sum_c (\\Delta_c - \\bar\\Delta)^2$ with $\\Delta = z_s - z_t$, the
    logit matching of Hinton et al. (2015).

    ``reduction``: ``'batchmean'`` (sum over classes, mean over the batch: the per-sample KL
    divergence; the default), ``'mean'`` (divide the sum by N times C, as the default of
    ``F.kl_div`` and the zero-shot unlearning code do: ``C`` times smaller than
    ``'batchmean'``), ``'sum'`` (over batch and classes), ``'none'`` (per-sample vector (N,)).
    The teacher's logits are not detached here; detach them when the teacher must not learn.
    Introduced in {ref}`chap-distillation`.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if student_logits.ndim != 2:
        raise ValueError(f"logits must have shape (samples, classes), got {tuple(student_logits.shape)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    per_sample = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=1)
    # reduced by hand: F.kl_div warns about 'mean' and announces a change of its meaning
    if reduction == "batchmean":
        kl = per_sample.mean()
    elif reduction == "mean":
        kl = per_sample.sum() / student_logits.numel()
    elif reduction == "sum":
        kl = per_sample.sum()
    else:
        kl = per_sample
    return kl * float(temperature) ** 2


def attention_map(activation: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention map of a feature map: $f(A)/\\lVert f(A)\\rVert_2$ with
    $f(A) = \\frac{1}{C}\\sum_{c=1}^{C} |A_c|^p$.

    ``activation`` $A$ has shape (N, C, H, W) (or (N, C, L)); the result has shape (N, H*W):
    for every sample, the mean over the ``C`` channels of the absolute activation to the power
    ``p``, flattened and divided by its Euclidean norm, so each row has norm 1 (a row that is
    all zero stays zero). Where the network "looks" is kept, its scale is not, so networks
    with different channel counts can be compared (Zagoruyko and Komodakis 2017).
    Introduced in {ref}`chap-distillation`.
    """
    if activation.ndim < 3:
        raise ValueError(
            f"activation must have shape (samples, channels, height, width), got {tuple(activation.shape)}"
        )
    if not float(p) > 0:
        raise ValueError(f"p must be positive, got {p}")
    energy = activation.abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(energy, p=2.0, dim=1)


def attention_loss(student_activations: Sequence[torch.Tensor],
                   teacher_activations: Sequence[torch.Tensor], p: float = 2.0) -> torch.Tensor:
    """Attention-transfer loss: the sum over layer pairs of the mean, over the batch and the
    positions, of the squared difference between the two :func:`attention_map`.

    The $l$-th student activation is compared with the $l$-th teacher activation; channel
    counts may differ, spatial sizes and batch sizes may not (``ValueError``). This is the
    form used by the zero-shot unlearning authors' code; the mean over positions makes the
    loss small (a weight such as $\\beta = 250$ compensates). Introduced in
    {ref}`chap-distillation`.
    """
    student_activations, teacher_activations = list(student_activations), list(teacher_activations)
    if not student_activations:
        raise ValueError("no activations given: name at least one layer")
    if len(student_activations) != len(teacher_activations):
        raise ValueError(
            f"{len(student_activations)} student layers but {len(teacher_activations)} teacher layers"
        )
    total = None
    for layer, (a_s, a_t) in enumerate(zip(student_activations, teacher_activations)):
        if a_s.shape[0] != a_t.shape[0]:
            raise ValueError(f"layer pair {layer}: batch sizes differ ({a_s.shape[0]} vs {a_t.shape[0]})")
        if a_s.shape[2:] != a_t.shape[2:]:
            raise ValueError(
                f"layer pair {layer}: spatial sizes differ (student {tuple(a_s.shape[2:])}, "
                f"teacher {tuple(a_t.shape[2:])})"
            )
        term = (attention_map(a_s, p) - attention_map(a_t, p)).pow(2).mean()
        total = term if total is None else total + term
    return total


class ActivationRecorder:
    """Capture the outputs of named submodules during a forward pass.

    ``with ActivationRecorder(model, ['conv1', 'conv2']) as rec: model(x)`` leaves the two
    activations of that forward pass in ``rec.outputs``, in the order of ``layer_names``.
    Each name is looked up with ``model.get_submodule``; the course's models list the names
    of their spatial feature maps in ``model.feature_layers``. Activations are kept with their
    autograd graph (an attention loss must backpropagate through them). Hooks are registered
    on entering the ``with`` block and removed on leaving it, also after an exception.
    Introduced in {ref}`chap-distillation`.
    """

    def __init__(self, model: nn.Module, layer_names: Sequence[str]):
        if isinstance(layer_names, str):
            layer_names = [layer_names]
        layer_names = list(layer_names)
        if not layer_names:
            raise ValueError("no layer names given; choose from the model's feature_layers "
                             f"{list(getattr(model, 'feature_layers', ()))}")
        modules = []
        for name in layer_names:
            try:
                modules.append(model.get_submodule(name))
            except AttributeError:
                raise ValueError(
                    f"model {type(model).__name__} has no layer {name!r}; its feature_layers are "
                    f"{list(getattr(model, 'feature_layers', ()))}"
                ) from None
        self.model = model
        self.layer_names = tuple(layer_names)
        self._modules = modules
        self._handles: list = []
        self._captured: list[torch.Tensor | None] = [None] * len(modules)

    def __enter__(self) -> "ActivationRecorder":
        if self._handles:
            raise RuntimeError("this ActivationRecorder is already active")
        # a pre-hook on the whole model clears the slots, so outputs never mix two passes
        self._handles.append(self.model.register_forward_pre_hook(self._clear))
        for slot, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._make_hook(slot)))
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hooks (also done on leaving the ``with`` block)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    @property
    def outputs(self) -> list[torch.Tensor]:
        """The activations of the last forward pass, one per layer name, in order."""
        missing = [n for n, a in zip(self.layer_names, self._captured) if a is None]
        if missing:
            raise RuntimeError(f"no activation captured for layer(s) {missing}: run a forward "
                               "pass inside the with block first")
        return list(self._captured)

    def _clear(self, module, args) -> None:
        self._captured = [None] * len(self._modules)

    def _make_hook(self, slot: int):
        def hook(module, args, output):
            self._captured[slot] = output

        return hook
