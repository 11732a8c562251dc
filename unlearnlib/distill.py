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

and one trainer for each training scheme: :func:`distill` (offline: a fixed, trained teacher),
:func:`mutual_distill` (online: peers that teach each other while they train, deep mutual
learning, Zhang et al. 2018) and :func:`self_distill` (teacher and student share the
architecture; born-again networks, Furlanello et al. 2018).

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

import contextlib
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .data import LabelledData
from .training import History, _progress_bar, _unpack, check_schedule, fit, get_device, make_optimizer, predict_logits

__all__ = [
    "REDUCTIONS",
    "kd_loss",
    "attention_map",
    "attention_loss",
    "ActivationRecorder",
    "rkd_distance_loss",
    "rkd_angle_loss",
    "rkd_loss",
    "distill",
    "mutual_distill",
    "self_distill",
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


# ------------------------------------------------------------------ relation-based knowledge


def _embeddings(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if student.ndim < 2 or teacher.ndim < 2:
        raise ValueError("embeddings must have shape (samples, features, ...)")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"batch sizes differ: student {student.shape[0]}, teacher {teacher.shape[0]}")
    if student.shape[0] < 2:
        raise ValueError("relations need at least 2 samples in the batch")
    return student.flatten(1), teacher.flatten(1)


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(e, e)
    n = e.shape[0]
    # divide by the mean distance over distinct pairs: the relation, not the scale, is kept
    mean = d.sum() / (n * (n - 1))
    return d / mean.clamp_min(1e-12)


def rkd_distance_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Distance-wise relational loss (Park et al. 2019): the Huber (smooth L1) difference
    between the student's and the teacher's matrices of pairwise Euclidean distances within
    the batch, each divided by its mean distance over distinct pairs.

    Embeddings have shape (N, ...) and are flattened per sample; their widths may differ,
    since only distances between samples are compared. Introduced in {ref}`chap-distillation`.
    """
    s, t = _embeddings(student_emb, teacher_emb)
    with torch.no_grad():
        target = _normalised_distances(t.detach())
    return F.smooth_l1_loss(_normalised_distances(s), target)


def _angles(e: torch.Tensor) -> torch.Tensor:
    # unit vectors e_ij = (e_i - e_j) / ||e_i - e_j||; cosine of the angle at j between i and k
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2))


def rkd_angle_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Angle-wise relational loss (Park et al. 2019): the Huber difference between the cosines
    of the angles formed by every triplet of samples in the student's and in the teacher's
    embedding. Costs $O(N^3)$ memory in the batch size $N$. Introduced in
    {ref}`chap-distillation`.
    """
    s, t = _embeddings(student_emb, teacher_emb)
    with torch.no_grad():
        target = _angles(t.detach())
    return F.smooth_l1_loss(_angles(s), target)


def rkd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, *,
             distance_weight: float = 25.0, angle_weight: float = 50.0) -> torch.Tensor:
    """Relational knowledge distillation: ``distance_weight`` times :func:`rkd_distance_loss`
    plus ``angle_weight`` times :func:`rkd_angle_loss` (the weights 25 and 50 of Park et al.
    2019). The teacher's relations are targets: no gradient flows into the teacher.
    Introduced in {ref}`chap-distillation`.
    """
    if distance_weight < 0 or angle_weight < 0:
        raise ValueError("distance_weight and angle_weight must be non-negative")
    loss = student_emb.new_zeros(())
    if distance_weight:
        loss = loss + distance_weight * rkd_distance_loss(student_emb, teacher_emb)
    if angle_weight:
        loss = loss + angle_weight * rkd_angle_loss(student_emb, teacher_emb)
    return loss


# ------------------------------------------------------------------------------- trainers


def _check_mix(temperature: float, alpha: float, beta: float = 0.0, gamma: float = 0.0) -> None:
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma}")


def _layer_names(model: nn.Module, names, role: str) -> tuple[str, ...]:
    if names is None:
        names = getattr(model, "feature_layers", ())
        if not names:
            raise ValueError(f"the {role} lists no feature_layers; name the layers for attention transfer")
    if isinstance(names, str):
        names = (names,)
    return tuple(names)


def distill(teacher: nn.Module, student: nn.Module, data, *, epochs: int = 5, lr: float = 1e-3,
            batch_size: int = 64, optimizer: str | torch.optim.Optimizer = "adam",
            weight_decay: float = 0.0, temperature: float = 4.0, alpha: float = 0.9,
            beta: float = 0.0, student_layers: Sequence[str] | None = None,
            teacher_layers: Sequence[str] | None = None, p: float = 2.0, gamma: float = 0.0,
            seed: int | None = None, device: str | torch.device | None = None,
            progress: bool | None = None, desc: str = "distill") -> History:
    r"""Offline knowledge distillation: train ``student`` in place to imitate a fixed ``teacher``.

    Per mini-batch with inputs $x$, labels $y$, student logits $z_s$ and teacher logits $z_t$
    the loss is

    $(1-\alpha)\,\mathrm{CE}(z_s, y) + \alpha\,$ :func:`kd_loss` $(z_s, z_t; T)
    + \beta\,$ :func:`attention_loss` $+ \gamma\,$ :func:`rkd_loss` $(z_s, z_t)$

    with ``alpha`` $\alpha\in[0,1]$ (0: labels only, 1: teacher only, labels unused),
    ``temperature`` $T$, ``beta`` $\beta\ge0$ the weight of attention transfer between
    ``student_layers`` and ``teacher_layers`` (paired in order; each defaults to the model's
    ``feature_layers``; their spatial sizes must agree) and ``gamma`` $\gamma\ge0$ the weight
    of the relational loss on the logits. The teacher stays in evaluation mode and is never
    updated. Without attention transfer its logits are computed once for the whole data set
    (the teacher is fixed, so this equals a forward pass per batch, at a fraction of the
    cost). Mini-batches are drawn as in :func:`~unlearnlib.training.fit` (same ``seed``
    semantics). Returns a :class:`~unlearnlib.training.History` of the mean total loss.
    Introduced in {ref}`chap-distillation`.
    """
    _check_mix(temperature, alpha, beta, gamma)
    check_schedule(epochs, batch_size)
    x, y = _unpack(data)
    dev = get_device(device)
    teacher.to(dev)
    student.to(dev)
    x, y = x.to(dev), y.to(dev)
    n = y.shape[0]
    use_attention = beta > 0
    if use_attention:
        s_layers = _layer_names(student, student_layers, "student")
        t_layers = _layer_names(teacher, teacher_layers, "teacher")
        if len(s_layers) != len(t_layers):
            raise ValueError(f"{len(s_layers)} student layers but {len(t_layers)} teacher layers")
        teacher_logits = None
    else:
        teacher_logits = predict_logits(teacher, x, device=dev).to(dev)
    # in evaluation mode: a training-mode probe would move BatchNorm statistics
    classes_t = predict_logits(teacher, x[:1], device=dev).shape[1]
    classes_s = predict_logits(student, x[:1], device=dev).shape[1]
    if classes_t != classes_s:
        raise ValueError(f"teacher has {classes_t} classes but student has {classes_s}")
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
        student, optimizer, lr=lr, weight_decay=weight_decay)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator().manual_seed(seed)
    history = History()
    start = time.perf_counter()
    bar = _progress_bar(epochs, desc, progress)
    was_training = teacher.training
    teacher.eval()
    student.train()
    with contextlib.ExitStack() as stack:
        # the teacher's mode and the hooks are restored even if training fails
        stack.callback(teacher.train, was_training)
        if bar is not None:
            stack.callback(bar.close)
        if use_attention:
            rec_s = stack.enter_context(ActivationRecorder(student, s_layers))
            rec_t = stack.enter_context(ActivationRecorder(teacher, t_layers))
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(dev)
            total = torch.zeros((), device=dev)
            for first in range(0, n, batch_size):
                batch = order[first:first + batch_size]
                xb = x[batch]
                z_s = student(xb)
                if use_attention:
                    with torch.no_grad():
                        z_t = teacher(xb)
                        t_acts = rec_t.outputs
                else:
                    z_t = teacher_logits[batch]
                loss = alpha * kd_loss(z_s, z_t, temperature=temperature)
                if alpha < 1:
                    loss = loss + (1 - alpha) * F.cross_entropy(z_s, y[batch])
                if use_attention:
                    loss = loss + beta * attention_loss(rec_s.outputs, t_acts, p)
                if gamma > 0:
                    loss = loss + gamma * rkd_loss(z_s, z_t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                # accumulated on the device: no .item() (GPU synchronisation) per step
                total += loss.detach() * batch.shape[0]
                history.steps += 1
            history.epoch_loss.append(total.item() / n)
            if bar is not None:
                bar.set_postfix(loss=f"{history.epoch_loss[-1]:.4f}")
                bar.update()
    history.seconds = time.perf_counter() - start
    return history


def mutual_distill(models: Sequence[nn.Module], data, *, epochs: int = 5, lr: float = 1e-3,
                   batch_size: int = 64, temperature: float = 1.0, alpha: float = 0.5,
                   weight_decay: float = 0.0, seed: int | None = None,
                   device: str | torch.device | None = None, progress: bool | None = None,
                   desc: str = "mutual") -> list[History]:
    r"""Online distillation by deep mutual learning (Zhang et al. 2018): ``models`` (at least
    two peers, none of them trained beforehand) train at the same time on the same
    mini-batches, each imitating the others.

    Model $k$ minimises $(1-\alpha)\,\mathrm{CE}(z_k, y) + \alpha\,\frac{1}{K-1}\sum_{j\ne k}$
    :func:`kd_loss` $(z_k, z_j; T)$, where the peers' logits $z_j$ are taken from the same
    forward pass and treated as constants. ``alpha=0.5``, ``temperature=1`` is the original
    method (CE plus the mean KL, up to a factor 2). Each model has its own Adam optimiser;
    all are updated once per mini-batch. Returns one
    :class:`~unlearnlib.training.History` per model (its mean total loss per epoch).
    Introduced in {ref}`chap-distillation`.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"mutual distillation needs at least 2 models, got {len(models)}")
    _check_mix(temperature, alpha)
    check_schedule(epochs, batch_size)
    x, y = _unpack(data)
    dev = get_device(device)
    x, y = x.to(dev), y.to(dev)
    n, k_models = y.shape[0], len(models)
    opts = []
    for model in models:
        model.to(dev).train()
        opts.append(make_optimizer(model, "adam", lr=lr, weight_decay=weight_decay))
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator().manual_seed(seed)
    histories = [History() for _ in models]
    start = time.perf_counter()
    bar = _progress_bar(epochs, desc, progress)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        totals = torch.zeros(k_models, device=dev)
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            logits = [model(x[batch]) for model in models]
            targets = [z.detach() for z in logits]
            for k, (z, opt) in enumerate(zip(logits, opts)):
                peers = [kd_loss(z, targets[j], temperature=temperature) for j in range(k_models) if j != k]
                loss = (1 - alpha) * F.cross_entropy(z, y[batch]) + alpha * torch.stack(peers).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                totals[k] += loss.detach() * batch.shape[0]
            for h in histories:
                h.steps += 1
        for h, total in zip(histories, (totals / n).tolist()):
            h.epoch_loss.append(total)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    for h in histories:
        h.seconds = seconds
    return histories


def self_distill(make_model: Callable[[], nn.Module], data, *, generations: int = 2,
                 epochs: int = 5, lr: float = 1e-3, batch_size: int = 64,
                 temperature: float = 4.0, alpha: float = 0.9, seed: int | None = None,
                 device: str | torch.device | None = None,
                 progress: bool | None = None) -> list[nn.Module]:
    r"""Self-distillation by born-again networks (Furlanello et al. 2018): teacher and student
    have the **same** architecture. Generation 0 is trained on the labels with
    :func:`~unlearnlib.training.fit`; generation $g \ge 1$ is a fresh ``make_model()``
    distilled from generation $g-1$ with :func:`distill` (``temperature``, ``alpha``). Every
    generation gets the same ``epochs``; generation $g$ is initialised and shuffled with
    ``seed + g``. Returns the ``generations + 1`` models, oldest first.
    Introduced in {ref}`chap-distillation`.
    """
    if generations < 0:
        raise ValueError(f"generations must be >= 0, got {generations}")
    _check_mix(temperature, alpha)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    dev = get_device(device)
    models: list[nn.Module] = []
    for g in range(generations + 1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + g)
            model = make_model()
        if g == 0:
            fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                device=dev, progress=progress, desc="generation 0")
        else:
            distill(models[-1], model, data, epochs=epochs, lr=lr, batch_size=batch_size,
                    temperature=temperature, alpha=alpha, seed=seed + g, device=dev,
                    progress=progress, desc=f"generation {g}")
        models.append(model)
    return models
