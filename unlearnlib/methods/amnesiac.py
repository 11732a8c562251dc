"""Amnesiac unlearning (Graves, Nagisetty and Ganesh, AAAI 2021): record, during training,
the parameter update of every mini-batch that contains sensitive data; to forget, subtract
those updates.

Introduced in the Baselines chapter ({ref}`chap-baselines`).

Training is a sum of updates, $\\theta_M = \\theta_{init} + \\sum_{e,b}\\Delta\\theta_{e,b}$;
removing the updates of the sensitive batches gives
$\\theta_{M'} = \\theta_M - \\sum_{sb\\in SB}\\Delta\\theta_{sb}$. This is *not* the model
trained without those batches: every later update was computed at parameters that the
removed updates had moved, and an optimiser with state (Adam's moment estimates, SGD's
momentum) carries information from a sensitive batch into later steps that are not
removed. Batch-normalisation statistics are buffers, not parameters, and are not restored
either. A short repair (fine-tuning on retain data with a *fresh* optimiser, never the
training optimiser's state) restores the accuracy that the subtraction costs.

How much is subtracted depends on how the sensitive samples are spread over batches: with
a sensitive share $s$ of the training data and batch size $B$, a share
$1-(1-s)^B$ of all batches contains at least one sensitive sample
(:func:`expected_sensitive_batch_share`). For a whole MNIST class ($s = 0.1$, $B = 64$)
that is 99.9% of the batches: the subtraction then returns the model almost to its
initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import LabelledData
from ..training import fit

__all__ = ["AmnesiacRecorder", "AmnesiacRecord", "expected_sensitive_batch_share", "amnesiac_model"]


def expected_sensitive_batch_share(sensitive_share: float, batch_size: int) -> float:
    """Expected share of mini-batches (drawn uniformly at random) that hold at least one
    sensitive sample: $1 - (1 - s)^B$. Introduced in {ref}`chap-baselines`."""
    if not 0.0 <= sensitive_share <= 1.0 or batch_size < 1:
        raise ValueError(f"need 0 <= sensitive_share <= 1 and batch_size >= 1, got {sensitive_share}, {batch_size}")
    return 1.0 - (1.0 - sensitive_share) ** batch_size


@dataclass
class AmnesiacRecord:
    """What :class:`AmnesiacRecorder` stored during one training run.

    ``delta_sum``: per parameter name, the sum of the updates of all sensitive steps (on the
    CPU); ``sensitive``: the recorded sensitive positions; ``steps_total`` and
    ``steps_sensitive``: how many optimiser steps ran and how many had sensitive data;
    ``sensitive_per_step``: the number of sensitive samples in each step's batch;
    ``step_updates``: with ``keep_steps=True``, a list of ``(step, positions, update)`` per
    sensitive step (``update``: the flattened parameter update) so that a subset of the
    sensitive samples can be forgotten later (:meth:`select`). Introduced in
    {ref}`chap-baselines`.
    """

    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]
    delta_sum: dict[str, torch.Tensor]
    sensitive: torch.Tensor
    steps_total: int
    steps_sensitive: int
    sensitive_per_step: torch.Tensor
    step_updates: list | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes of parameter updates stored (what Amnesiac pays in memory)."""
        if self.step_updates is not None:
            return sum(u.numel() * u.element_size() for _, _, u in self.step_updates)
        return sum(t.numel() * t.element_size() for t in self.delta_sum.values())

    def select(self, positions) -> "AmnesiacRecord":
        """The record of the steps whose batch held any of ``positions`` (a subset of the
        recorded sensitive positions): subtracting it forgets those samples only. Needs a
        record made with ``keep_steps=True``."""
        if self.step_updates is None:
            raise ValueError("this record keeps only the sum of the updates; record with keep_steps=True "
                             "to forget a subset of the sensitive samples")
        positions = torch.as_tensor(positions, dtype=torch.long).flatten()
        unknown = positions[~torch.isin(positions, self.sensitive)]
        if unknown.numel():
            raise ValueError(f"positions {unknown[:5].tolist()} were not recorded as sensitive")
        chosen = [(s, pos, u) for s, pos, u in self.step_updates if bool(torch.isin(pos, positions).any())]
        total = torch.zeros_like(self.step_updates[0][2]) if self.step_updates else None
        for _, _, u in chosen:
            total += u
        sums, offset = {}, 0
        for name, shape in zip(self.param_names, self.param_shapes):
            n = int(torch.Size(shape).numel())
            sums[name] = total[offset:offset + n].view(shape).clone() if total is not None else torch.zeros(shape)
            offset += n
        per_step = torch.tensor([int(torch.isin(pos, positions).sum()) for _, pos, _ in chosen])
        return AmnesiacRecord(self.param_names, self.param_shapes, sums, positions.sort().values,
                              self.steps_total, len(chosen), per_step, chosen)


class AmnesiacRecorder:
    """Training hook for :func:`~unlearnlib.training.fit` that records the parameter
    updates of the steps whose mini-batch contains any of the ``sensitive`` positions
    (indices into the data given to ``fit``).

    Use it as ``rec = AmnesiacRecorder(split.forget); fit(model, data, hooks=[rec])`` and
    then ``rec.record()``. The recorded update of a step is the change of the parameters
    made by the optimiser's step (so it includes Adam's scaling, momentum and weight decay),
    not the gradient. Without ``keep_steps`` only the running sum is kept (memory: one
    model); with it every sensitive step's update is kept on the CPU (memory: one model per
    sensitive step), which allows forgetting a subset later. The membership test runs on the
    device without synchronising (the update of a step without sensitive data is added with
    weight 0), except with ``keep_steps``. Introduced in {ref}`chap-baselines`.
    """

    def __init__(self, sensitive, *, keep_steps: bool = False):
        sensitive = torch.as_tensor(sensitive, dtype=torch.long).flatten()
        if sensitive.numel() == 0:
            raise ValueError("no sensitive positions given")
        if int(sensitive.min()) < 0:
            raise ValueError("sensitive positions must be non-negative indices into the training data")
        self.sensitive = sensitive.unique()
        self.keep_steps = keep_steps
        self._names = None
        self._before = None
        self._flags: list[torch.Tensor] = []
        self._counts: list[torch.Tensor] = []
        self._steps: list = []

    def _params(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names = tuple(n for n, _ in named)
        if self._names is None:
            self._names = names
            self._shapes = tuple(tuple(p.shape) for _, p in named)
            self._sum = [torch.zeros_like(p, memory_format=torch.contiguous_format) for _, p in named]
            self._sensitive_dev = self.sensitive.to(named[0][1].device)
        elif names != self._names:
            raise ValueError("the recorder saw a different model than in earlier steps")
        return [p for _, p in named]

    def before_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None:
        params = self._params(model)
        hits = torch.isin(batch, self._sensitive_dev)
        self._count = hits.sum()
        self._before = [p.detach().clone() for p in params]

    def after_step(self, step: int, batch: torch.Tensor, model: nn.Module) -> None:
        params = self._params(model)
        flag = self._count > 0
        weight = flag.to(params[0].dtype)
        deltas = [p.detach() - b for p, b in zip(params, self._before)]
        for total, delta in zip(self._sum, deltas):
            total.add_(delta * weight)
        self._flags.append(flag)
        self._counts.append(self._count)
        if self.keep_steps and bool(flag):
            positions = batch[torch.isin(batch, self._sensitive_dev)].cpu()
            self._steps.append((step, positions, torch.cat([d.flatten() for d in deltas]).cpu()))
        self._before = None

    def record(self) -> AmnesiacRecord:
        """The record of everything seen so far (one or several ``fit`` calls)."""
        if self._names is None:
            raise ValueError("nothing recorded yet: pass the recorder to fit(..., hooks=[recorder])")
        flags = torch.stack(self._flags).cpu()
        counts = torch.stack(self._counts).cpu()
        return AmnesiacRecord(
            param_names=self._names,
            param_shapes=self._shapes,
            delta_sum={n: s.detach().cpu().clone() for n, s in zip(self._names, self._sum)},
            sensitive=self.sensitive.clone(),
            steps_total=len(self._flags),
            steps_sensitive=int(flags.sum()),
            sensitive_per_step=counts[flags],
            step_updates=list(self._steps) if self.keep_steps else None,
        )


def amnesiac_model(model: nn.Module, *, retain: LabelledData | None, record: AmnesiacRecord, config, device, **_):
    """Subtract the recorded updates (times ``scale``), then repair on $\\mathcal D_r$ for
    ``repair_epochs`` epochs with a fresh optimiser. Introduced in {ref}`chap-baselines`."""
    if not isinstance(record, AmnesiacRecord):
        raise ValueError(f"record must be an AmnesiacRecord (from AmnesiacRecorder.record()), got {type(record).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if tuple(n for n, _ in named) != record.param_names or \
            tuple(tuple(p.shape) for _, p in named) != record.param_shapes:
        raise ValueError("the record was made for a model with other parameters than this one")
    with torch.no_grad():
        for name, p in named:
            p.sub_(config["scale"] * record.delta_sum[name].to(p.device))
    steps = 0
    if config["repair_epochs"] > 0:
        if retain is None:
            raise ValueError("repair_epochs > 0 needs retain data; pass retain or set repair_epochs=0")
        history = fit(model, retain, epochs=config["repair_epochs"], lr=config["lr"],
                      batch_size=config["batch_size"], optimizer=config["optimizer"], seed=config["seed"],
                      device=device, desc="amnesiac repair")
        steps = history.steps
    return model, {"steps_subtracted": record.steps_sensitive, "steps_total": record.steps_total,
                   "share_subtracted": record.steps_sensitive / max(1, record.steps_total),
                   "stored_megabytes": record.nbytes / 2**20, "repair_steps": steps}
