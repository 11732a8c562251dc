"""Training and evaluation loops, device choice and seeding.

Introduced in the Background chapter ({ref}`chap-background`).

Datasets in this course are small, so :func:`fit` keeps the whole training set on the
device as two tensors and draws mini-batches by indexing with a permutation: no
``DataLoader``, no worker processes and no per-sample Python work.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import LabelledData

__all__ = [
    "PROGRESS_ENV",
    "DEVICE_ENV",
    "get_device",
    "check_schedule",
    "seed_everything",
    "progress_enabled",
    "TrainingHook",
    "History",
    "Evaluation",
    "make_optimizer",
    "fit",
    "evaluate",
    "predict_logits",
    "predict_proba",
    "per_sample_loss",
]

PROGRESS_ENV = "UNLEARNLIB_PROGRESS"
DEVICE_ENV = "UNLEARNLIB_DEVICE"


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    An explicit ``device`` wins, then the environment variable ``UNLEARNLIB_DEVICE``,
    then CUDA, then Apple's MPS, then the CPU. Introduced in {ref}`chap-background`.
    """
    if device is None:
        device = os.environ.get(DEVICE_ENV) or None
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device {str(device)!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and ask for deterministic kernels.

    With ``deterministic=True``, ``torch.use_deterministic_algorithms`` is switched on:
    strictly on a machine without CUDA, and in warn-only mode where CUDA is present (a few
    CUDA backward kernels have no deterministic version). Two runs that start with the
    same call produce identical weights on the same machine and software.
    Introduced in {ref}`chap-background`.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it initialises; it must be set before the first CUDA matmul
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def progress_enabled(progress: bool | None = None) -> bool:
    """Whether to show progress bars: ``progress`` if given, else the environment variable
    ``UNLEARNLIB_PROGRESS`` (``0``, ``false``, ``off`` or ``no`` turn bars off)."""
    if progress is not None:
        return bool(progress)
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in {"0", "false", "off", "no"}


class TrainingHook(Protocol):
    """Called around every optimiser step of :func:`fit`.

    ``batch`` holds the positions (in the data given to :func:`fit`) of the samples in the
    mini-batch. Hooks let methods record what a step changed, e.g. Amnesiac unlearning
    stores the parameter update of every batch that contains sensitive data.
    """

    def before_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None: ...

    def after_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None: ...


@dataclass
class History:
    """What :func:`fit` did: mean training loss per epoch, optimiser steps, wall time."""

    epoch_loss: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (fraction in [0, 1]) and mean cross-entropy loss on ``n`` samples."""

    accuracy: float
    loss: float
    n: int


def _unpack(data) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, LabelledData):
        x, y = data.x, data.y
    else:
        x, y = data
    if len(y) == 0:
        raise ValueError("no data: the dataset is empty")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    return x, y


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def make_optimizer(model: nn.Module, name: str = "adam", *, lr: float = 1e-3,
                   weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adam`` (Adam), ``sgd`` (SGD with ``momentum``) or ``sgd_plain`` (no momentum).
    Introduced in {ref}`chap-background`."""
    params = model.parameters()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd_plain":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam', 'sgd' or 'sgd_plain'")



def check_schedule(epochs: int, batch_size: int) -> None:
    """Raise a ValueError naming the problem if ``epochs`` < 0 or ``batch_size`` < 1; shared by
    every trainer. Introduced in {ref}`chap-background`."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

def fit(
    model: nn.Module,
    data,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    hooks: Iterable[TrainingHook] = (),
    desc: str = "train",
) -> History:
    """Train ``model`` in place with mini-batch gradient descent on ``data``.

    ``data`` is a :class:`~unlearnlib.data.LabelledData` or an ``(x, y)`` pair. The whole
    set is moved to ``device`` (see :func:`get_device`) once; each epoch draws a fresh
    permutation from a generator seeded with ``seed`` (or, when ``seed`` is None, from
    PyTorch's global generator, which :func:`seed_everything` fixes). The loss defaults to
    cross-entropy. Returns a :class:`History`. Introduced in {ref}`chap-background`.
    """
    check_schedule(epochs, batch_size)
    x, y = _unpack(data)
    dev = get_device(device)
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    n = y.shape[0]
    loss_fn = loss_fn or F.cross_entropy
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
        model, optimizer, lr=lr, weight_decay=weight_decay)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator().manual_seed(seed)
    hooks = tuple(hooks)
    history = History()
    start = time.perf_counter()
    bar = _progress_bar(epochs, desc, progress)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), device=dev)
        for first in range(0, n, batch_size):
            batch = order[first:first + batch_size]
            for hook in hooks:
                hook.before_step(history.steps, batch, model)
            loss = loss_fn(model(x[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for hook in hooks:
                hook.after_step(history.steps, batch, model)
            # accumulate on the device: a .item() per step would synchronise with the GPU
            total += loss.detach() * batch.shape[0]
            history.steps += 1
        history.epoch_loss.append(total.item() / n)
        if bar is not None:
            bar.set_postfix(loss=f"{history.epoch_loss[-1]:.4f}")
            bar.update()
    if bar is not None:
        bar.close()
    history.seconds = time.perf_counter() - start
    return history


def _progress_bar(total: int, desc: str, progress: bool | None):
    if not progress_enabled(progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


@torch.no_grad()
def predict_logits(model: nn.Module, x, *, batch_size: int = 1024,
                   device: str | torch.device | None = None) -> torch.Tensor:
    """Logits for inputs ``x`` (a tensor or :class:`~unlearnlib.data.LabelledData`), in
    evaluation mode, returned on the CPU. ``device`` defaults to the model's own device.
    Introduced in {ref}`chap-background`."""
    if isinstance(x, LabelledData):
        x = x.x
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(dev)).cpu() for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no data: the input is empty")
    return torch.cat(out)


def predict_proba(model: nn.Module, x, *, batch_size: int = 1024,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Softmax probabilities (N, classes) on the CPU. Introduced in {ref}`chap-background`."""
    return predict_logits(model, x, batch_size=batch_size, device=device).softmax(dim=1)


def per_sample_loss(model: nn.Module, data, *, batch_size: int = 1024,
                    device: str | torch.device | None = None) -> torch.Tensor:
    """Cross-entropy loss of every sample (N,) on the CPU.

    Members of the training set tend to have lower loss than unseen samples: the signal
    membership-inference attacks exploit. Introduced in {ref}`chap-background`.
    """
    x, y = _unpack(data)
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    return F.cross_entropy(logits, y.cpu(), reduction="none")


def evaluate(model: nn.Module, data, *, batch_size: int = 1024,
             device: str | torch.device | None = None) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` on ``data``.
    Introduced in {ref}`chap-background`."""
    x, y = _unpack(data)
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    y = y.cpu()
    return Evaluation(
        accuracy=(logits.argmax(dim=1) == y).float().mean().item(),
        loss=F.cross_entropy(logits, y).item(),
        n=int(y.shape[0]),
    )
