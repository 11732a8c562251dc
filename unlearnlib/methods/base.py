"""The common API of every unlearning method: data contracts, results, configuration.

Introduced in the Baselines chapter ({ref}`chap-baselines`).

Every method is an :class:`UnlearningMethod` with the signature ::

    method(model, forget, retain, *, classes=None, record=None, config=None, device=None)
        -> UnlearningResult(model, seconds, diagnostics, method, config)

``forget`` and ``retain`` are :class:`~unlearnlib.data.LabelledData` (or None),
``classes`` the class ids to forget (class-wise methods), ``record`` the
:class:`~unlearnlib.methods.amnesiac.AmnesiacRecord` stored at training time. Each method
declares a :class:`DataContract` saying which of these it needs and which it must not see;
a call that passes data the contract forbids, or omits data it requires, fails with a
:class:`DataContractError` naming the problem. The input model is never modified: the
method works on a copy.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..data import Dataset, ForgetSplit, LabelledData
from ..training import get_device

__all__ = [
    "DataContractError",
    "DataContract",
    "UnlearningResult",
    "UnlearningTask",
    "UnlearningMethod",
    "reinitialized_copy",
    "num_outputs",
    "FreezeBatchNorm",
]


class DataContractError(ValueError):
    """A method was given data its contract forbids, or lacks data it requires.
    Introduced in {ref}`chap-baselines`."""


_FORGET = ("samples", "none")
_RETAIN = ("all", "subset", "optional", "none")
_CLASSES = ("required", "optional", "none")


@dataclass(frozen=True)
class DataContract:
    """What a method may see when a deletion request arrives.

    ``forget``: ``'samples'`` (needs the forget samples $\\mathcal D_f$) or ``'none'``
    (must not see them; class-wise methods get the class ids instead).
    ``retain``: ``'all'`` (needs $\\mathcal D_r$), ``'subset'`` (needs retain data but uses
    only a part of it; its configuration says how much), ``'optional'`` (uses it if given)
    or ``'none'`` (must not see it).
    ``classes``: whether the ids of the forget classes are ``'required'``,
    ``'optional'`` or not used (``'none'``).
    ``record``: True if the method needs state stored while the original model was trained.
    ``unit``: what it can forget, ``'any'`` (samples or classes) or ``'class'``.
    Introduced in {ref}`chap-baselines`.
    """

    forget: str
    retain: str
    classes: str = "none"
    record: bool = False
    unit: str = "any"

    def __post_init__(self):
        if self.forget not in _FORGET or self.retain not in _RETAIN or self.classes not in _CLASSES:
            raise ValueError(f"invalid data contract {self}")
        if self.unit not in ("any", "class"):
            raise ValueError(f"unit must be 'any' or 'class', got {self.unit!r}")

    @property
    def zero_shot(self) -> bool:
        """True if the method sees no training data at all."""
        return self.forget == "none" and self.retain == "none"

    def describe(self) -> str:
        """One line: what the method needs and refuses."""
        parts = [
            "forget samples: " + ("required" if self.forget == "samples" else "refused"),
            "retain data: " + {"all": "required", "subset": "required (uses a subset)",
                               "optional": "optional", "none": "refused"}[self.retain],
            "forget class ids: " + {"required": "required", "optional": "optional",
                                    "none": "not used"}[self.classes],
        ]
        if self.record:
            parts.append("training-time record: required")
        return "; ".join(parts)


@dataclass
class UnlearningResult:
    """What a method returns: the unlearned ``model`` (a new module, in evaluation mode),
    the wall time ``seconds`` of the unlearning itself, method-specific ``diagnostics``,
    the ``method`` name and the full ``config`` used. Introduced in {ref}`chap-baselines`."""

    model: nn.Module
    seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnlearningTask:
    """Everything known about a deletion request; :meth:`UnlearningMethod.run` hands each
    method only what its contract allows.

    ``forget``/``retain``: the training samples to forget and to keep; ``classes``: the
    forget classes (class-wise requests); ``record``: an Amnesiac training record;
    ``input_shape``: the shape (C, H, W) of one input, which methods that generate their
    own inputs (the zero-shot methods) receive as their ``input_shape`` option: it describes
    the data but is not data. Introduced in {ref}`chap-baselines`.
    """

    forget: LabelledData | None = None
    retain: LabelledData | None = None
    classes: tuple[int, ...] | None = None
    record: Any = None
    input_shape: tuple[int, ...] | None = None

    @classmethod
    def from_split(cls, dataset: Dataset, split: ForgetSplit, *, record=None) -> "UnlearningTask":
        """The task of ``split`` on ``dataset`` (with the split's classes, if any)."""
        if not isinstance(split, ForgetSplit):
            raise ValueError(f"split must be a ForgetSplit, got {type(split).__name__}")
        return cls(dataset.train.subset(split.forget), dataset.train.subset(split.retain),
                   tuple(split.classes) or None, record, tuple(dataset.input_shape))


def reinitialized_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with freshly initialised parameters (and reset batch-norm
    statistics): the same architecture, as if just built, drawn from a generator seeded with
    ``seed`` so that the global random state is neither used nor changed. Used for the
    retrained model, Bad Teacher's incompetent teacher and the ZRF reference.
    Introduced in {ref}`chap-baselines`.
    """
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        resettable = [m for m in fresh.modules() if callable(getattr(m, "reset_parameters", None))]
        if not resettable:
            raise ValueError("the model has no module with reset_parameters(); pass a model_factory instead")
        for module in resettable:
            module.reset_parameters()
    return fresh


class FreezeBatchNorm:
    """Training hook for :func:`~unlearnlib.training.fit` that keeps every batch-norm layer in
    evaluation mode: it normalises with, and does not update, its running statistics (its
    scale and shift still train).

    Needed when a method trains on batches that are not representative of the data, such as
    gradient ascent on the forget set alone: in training mode, every such batch would pull
    the running means and variances towards one class and damage the model on all the
    others, even at a learning rate of zero. Introduced in {ref}`chap-baselines`.
    """

    def before_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def after_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None:
        pass


@torch.no_grad()
def num_outputs(model: nn.Module, example: torch.Tensor) -> int:
    """Number of classes the model predicts, from one forward pass on ``example`` (one
    input without batch dimension). Introduced in {ref}`chap-baselines`."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
        return int(model(example.unsqueeze(0).to(dev)).shape[1])
    finally:
        model.train(was_training)


def _check_labelled(name: str, data) -> LabelledData:
    if isinstance(data, tuple) and len(data) == 2:
        data = LabelledData(*data)
    if not isinstance(data, LabelledData):
        raise ValueError(f"{name} must be a LabelledData (or an (x, y) pair), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"the {name} set is empty")
    return data


Implementation = Callable[..., "tuple[nn.Module, dict[str, Any]]"]


class UnlearningMethod:
    """A named unlearning method with its data contract and default configuration.

    Call it as ``method(model, forget, retain, *, classes=None, record=None, config=None,
    device=None)``; ``config`` overrides entries of the method's defaults (unknown keys are
    an error). Or call :meth:`run` with an :class:`UnlearningTask`, which passes only what
    the contract allows. Introduced in {ref}`chap-baselines`.
    """

    def __init__(self, name: str, title: str, implementation: Implementation, contract: DataContract,
                 defaults: Mapping[str, Any], *, citation: str = "", summary: str = ""):
        self.name = name
        self.title = title
        self.contract = contract
        self._implementation = implementation
        self._defaults = dict(defaults)
        self.citation = citation
        self.summary = summary
        self.__doc__ = f"{title}: {summary}\n\nData contract: {contract.describe()}."

    def __repr__(self) -> str:
        return f"<unlearning method {self.name!r} ({self.title}); {self.contract.describe()}>"

    @property
    def defaults(self) -> dict[str, Any]:
        """A copy of the default configuration."""
        return copy.deepcopy(self._defaults)

    def resolve_config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``config``; unknown keys raise ``ValueError``."""
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping of option names to values, got {type(config).__name__}")
        unknown = sorted(set(config) - set(self._defaults))
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {unknown}; options are {sorted(self._defaults)}")
        resolved = self.defaults
        resolved.update(config)
        return resolved

    def check_inputs(self, model, forget, retain, classes, record):
        """Enforce the data contract; returns the validated inputs."""
        c = self.contract
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if c.forget == "none" and forget is not None:
            raise DataContractError(
                f"{self.name} must not see the forget samples ({c.describe()})"
                + ("; pass the forget class ids as classes=" if c.classes != "none" else ""))
        if c.forget == "samples" and forget is None:
            raise DataContractError(f"{self.name} needs the forget samples ({c.describe()})")
        if c.retain == "none" and retain is not None:
            raise DataContractError(f"{self.name} must not see retain data ({c.describe()})")
        if c.retain in ("all", "subset") and retain is None:
            raise DataContractError(f"{self.name} needs retain data ({c.describe()})")
        if c.classes == "none" and classes is not None:
            raise DataContractError(f"{self.name} does not use forget class ids ({c.describe()})")
        if c.classes == "required" and classes is None:
            raise DataContractError(f"{self.name} forgets whole classes and needs their ids as classes= "
                                    f"({c.describe()})")
        if not c.record and record is not None:
            raise DataContractError(f"{self.name} uses no training-time record ({c.describe()})")
        if c.record and record is None:
            raise DataContractError(f"{self.name} needs the record stored while the original model was trained "
                                    f"(an AmnesiacRecord; {c.describe()})")
        forget = None if forget is None else _check_labelled("forget", forget)
        retain = None if retain is None else _check_labelled("retain", retain)
        if classes is not None:
            if isinstance(classes, (int, torch.Tensor)) and not isinstance(classes, bool):
                classes = torch.as_tensor(classes).flatten().tolist()
            classes = tuple(int(k) for k in classes)
            if not classes:
                raise ValueError("classes is empty: name at least one class to forget")
            if len(set(classes)) != len(classes):
                raise ValueError(f"class ids repeat: {list(classes)}")
        example = next((d.x[0] for d in (forget, retain) if d is not None), None)
        if example is not None:
            n_out = num_outputs(model, example)
            if classes is not None:
                bad = [k for k in classes if not 0 <= k < n_out]
                if bad:
                    raise ValueError(f"unknown class id(s) {bad}: the model predicts classes 0..{n_out - 1}")
                if len(classes) >= n_out:
                    raise ValueError("cannot forget every class")
            for name, d in (("forget", forget), ("retain", retain)):
                if d is not None and (int(d.y.min()) < 0 or int(d.y.max()) >= n_out):
                    raise ValueError(f"{name} labels must lie in 0..{n_out - 1} (the model's classes)")
            if retain is not None and classes is not None and bool(torch.isin(retain.y, torch.tensor(classes)).any()):
                raise ValueError("the retain data contains samples of a forget class")
        return forget, retain, classes, record

    def __call__(self, model: nn.Module, forget: LabelledData | None = None, retain: LabelledData | None = None,
                 *, classes=None, record=None, config: Mapping[str, Any] | None = None,
                 device=None) -> UnlearningResult:
        forget, retain, classes, record = self.check_inputs(model, forget, retain, classes, record)
        cfg = self.resolve_config(config)
        dev = get_device(device)
        work = copy.deepcopy(model).to(dev)
        start = time.perf_counter()
        out, diagnostics = self._implementation(work, forget=forget, retain=retain, classes=classes,
                                                record=record, config=cfg, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
        out.eval()
        return UnlearningResult(out, seconds, diagnostics, self.name, cfg)

    def run(self, model: nn.Module, task: UnlearningTask, *, config: Mapping[str, Any] | None = None,
            device=None) -> UnlearningResult:
        """Run on ``task``, passing only the data this method's contract allows.
        Introduced in {ref}`chap-baselines`."""
        if not isinstance(task, UnlearningTask):
            raise ValueError(f"task must be an UnlearningTask, got {type(task).__name__}")
        c = self.contract
        if c.unit == "class" and task.classes is None:
            raise DataContractError(f"{self.name} forgets whole classes only; this task names no forget classes")
        if "input_shape" in self._defaults and task.input_shape is not None and \
                (config is None or "input_shape" not in config):
            config = {**(config or {}), "input_shape": task.input_shape}
        return self(
            model,
            task.forget if c.forget == "samples" else None,
            task.retain if c.retain != "none" else None,
            classes=task.classes if c.classes != "none" else None,
            record=task.record if c.record else None,
            config=config, device=device,
        )
