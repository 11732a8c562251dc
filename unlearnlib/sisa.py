"""SISA: exact unlearning by Sharded, Isolated, Sliced and Aggregated training.

Introduced in the SISA chapter ({ref}`chap-sisa`); the method is Bourtoule et al.'s (IEEE S&P
2021).

The training set is split into $S$ disjoint **shards** and each shard into $R$ disjoint
**slices** (:class:`SISASplit`, :func:`make_split`). One **constituent** model per shard is
trained in isolation and incrementally: stage $l$ trains on slices $1..l$ for the number of
epochs :func:`unlearnlib.sisa_cost.stage_epochs` gives, and a **checkpoint** is written after
every stage. Predictions **aggregate** the constituents through :mod:`unlearnlib.ensemble`
(label vote or posterior average). To unlearn a sample, only its shard is retrained, from the
checkpoint taken before the slice that holds it.

Exactness rests on bookkeeping, which :class:`SISA` does as follows.

* Every random choice of a constituent comes from seeds derived from ``(seed, shard)`` (the
  initialisation) and ``(seed, shard, stage)`` (mini-batch order, dropout), never from the
  global random state or from which samples were deleted. Mini-batches are drawn by a
  permutation of the *surviving* samples of the stage, so a model retrained after a deletion
  sees exactly the batches a model trained without the deleted samples would see.
* A checkpoint stores the model *and* the optimiser state (Adam's moments, SGD's momentum),
  so resuming from it continues the same computation.
* A checkpoint is keyed by a SHA-256 hash of the configuration, the shard, the stage and the
  surviving training indices of the stage's slices $1..l$; slices partition the whole shard
  (sizes differ by at most one), so a deletion anywhere in the prefix changes the key. Stale
  checkpoints, which were trained on deleted samples, are removed once their shard is
  retrained.
* Files are written atomically (temporary file in the same folder, ``fsync``,
  ``os.replace``) and carry a SHA-256 digest of their contents; a truncated, garbled or
  mismatched file is never loaded, its stage is retrained. Loading uses
  ``torch.load(..., weights_only=True)``.
* Deletions are recorded on disk before any retraining starts, so an interrupted
  :meth:`SISA.unlearn` or :meth:`SISA.fit` resumes by calling :meth:`SISA.fit` again; stages
  whose checkpoints are on disk are not trained again.

Shards are trained through any :class:`concurrent.futures.Executor` (default: in the calling
process); :func:`process_pool` returns a process pool that is safe to use with PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import weakref
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .data import LabelledData, check_disjoint
from .sisa_cost import stage_epochs, training_cost
from .training import fit as _fit
from .training import get_device, make_optimizer

__all__ = [
    "SHARDINGS",
    "CorruptCheckpointError",
    "SISASplit",
    "make_split",
    "save_checkpoint",
    "load_checkpoint",
    "StageRecord",
    "FitReport",
    "RequestReport",
    "UnlearnReport",
    "InProcessExecutor",
    "process_pool",
    "SISA",
]

SHARDINGS = ("uniform", "class_balanced")
_FORMAT = 1
_MAGIC = b"UNLEARNLIB-SISA-CHECKPOINT-v1\n"
_DIGEST_BYTES = 32
_MANIFEST = "sisa.json"
_DELETIONS = "deleted.json"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, garbled, or belongs to another stage."""


def _derive_seed(*parts) -> int:
    """A 63-bit seed from a tuple of ints and strings; stable across processes and runs
    (Python's ``hash`` is salted per process, SHA-256 is not)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# ---------------------------------------------------------------------------------- split


def _as_index_tensor(values, name: str) -> torch.Tensor:
    t = torch.as_tensor(values)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of indices, got shape {tuple(t.shape)}")
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise ValueError(f"{name} must hold integers, got {t.dtype}")
    t = t.to(torch.long)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} holds negative indices, e.g. {int(t.min())}")
    return t


@dataclass(frozen=True)
class SISASplit:
    """Which training samples each shard and slice holds.

    ``slices[k][r]`` is a 1-D int64 tensor of training indices: slice ``r`` of shard ``k``,
    in training order. All slices are disjoint; every shard has the same number of slices.
    Introduced in {ref}`chap-sisa`.
    """

    slices: tuple[tuple[torch.Tensor, ...], ...]

    def __post_init__(self):
        slices = tuple(tuple(_as_index_tensor(s, f"slice {r} of shard {k}") for r, s in enumerate(shard))
                       for k, shard in enumerate(self.slices))
        if not slices:
            raise ValueError("a split needs at least one shard")
        counts = {len(shard) for shard in slices}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"every shard needs the same, positive number of slices; got {sorted(counts)}")
        object.__setattr__(self, "slices", slices)
        check_disjoint(split=self.order())

    @classmethod
    def from_shards(cls, shards, num_slices: int) -> "SISASplit":
        """Cut each shard (a sequence of indices, in training order) into ``num_slices``
        contiguous slices whose sizes differ by at most one; the first ``len % R`` slices get
        the extra samples, so no sample is left out of every slice.
        Introduced in {ref}`chap-sisa`."""
        if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)) or num_slices < 1:
            raise ValueError(f"num_slices must be a positive integer, got {num_slices!r}")
        out = []
        for k, shard in enumerate(shards):
            idx = _as_index_tensor(shard, f"shard {k}")
            out.append(tuple(torch.tensor_split(idx, int(num_slices))))
        return cls(tuple(out))

    @property
    def num_shards(self) -> int:
        return len(self.slices)

    @property
    def num_slices(self) -> int:
        return len(self.slices[0])

    def shard(self, k: int) -> torch.Tensor:
        """The indices of shard ``k`` in training order (its slices, concatenated).
        Introduced in {ref}`chap-sisa`."""
        return torch.cat(self.slices[k])

    @property
    def shards(self) -> list[torch.Tensor]:
        return [self.shard(k) for k in range(self.num_shards)]

    @property
    def slice_sizes(self) -> np.ndarray:
        """Number of samples per slice, shape (S, R). Introduced in {ref}`chap-sisa`."""
        return np.array([[len(s) for s in shard] for shard in self.slices], dtype=np.int64)

    def order(self) -> torch.Tensor:
        """Every index of the split, shard by shard and slice by slice: the numbering
        :func:`unlearnlib.sisa_cost.simulate_requests` uses. Introduced in {ref}`chap-sisa`."""
        return torch.cat([s for shard in self.slices for s in shard])

    def __len__(self) -> int:
        return int(self.slice_sizes.sum())

    def locate(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Shard and slice of each index; ``ValueError`` for an index not in the split.
        Introduced in {ref}`chap-sisa`."""
        idx = _as_index_tensor(indices, "indices").numpy()
        order = self.order().numpy()
        sizes = self.slice_sizes.ravel()
        slot = np.repeat(np.arange(sizes.size), sizes)
        lookup = dict(zip(order.tolist(), slot.tolist()))
        missing = [int(i) for i in idx if int(i) not in lookup]
        if missing:
            raise ValueError(f"indices not in the split: {missing[:5]}")
        slots = np.array([lookup[int(i)] for i in idx], dtype=np.int64)
        return slots // self.num_slices, slots % self.num_slices

    def without(self, indices) -> "SISASplit":
        """The same split with ``indices`` removed from their slices, nothing else moved: the
        split a model trained from scratch without those samples would use.
        Introduced in {ref}`chap-sisa`."""
        drop = _as_index_tensor(indices, "indices")
        self.locate(drop)  # every index must be in the split
        return SISASplit(tuple(tuple(s[~torch.isin(s, drop)] for s in shard) for shard in self.slices))

    def to_lists(self) -> list[list[list[int]]]:
        """The split as nested lists of ints (JSON-ready). Introduced in {ref}`chap-sisa`."""
        return [[s.tolist() for s in shard] for shard in self.slices]

    def __eq__(self, other) -> bool:
        if not isinstance(other, SISASplit):
            return NotImplemented
        return self.to_lists() == other.to_lists()

    def __repr__(self) -> str:
        return (f"SISASplit(shards={self.num_shards}, slices={self.num_slices}, "
                f"samples={len(self)})")


def make_split(labels_or_n, num_shards: int, num_slices: int = 1, *, sharding: str = "uniform",
               seed: int = 0) -> SISASplit:
    """Split ``n`` training samples into ``num_shards`` shards of ``num_slices`` slices.

    ``labels_or_n`` is the number of samples or their labels (needed for
    ``sharding='class_balanced'``). ``'uniform'``: a seeded random permutation cut into
    shards whose sizes differ by at most one. ``'class_balanced'``: every class is permuted
    and dealt round-robin over the shards, so each shard holds about ``1/S`` of every class;
    the shard is then shuffled so that slices mix classes. Slices are contiguous parts of the
    shard's order (:meth:`SISASplit.from_shards`). Introduced in {ref}`chap-sisa`.
    """
    if sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {sharding!r}; choose 'uniform' or 'class_balanced'")
    if isinstance(labels_or_n, (int, np.integer)) and not isinstance(labels_or_n, bool):
        n, labels = int(labels_or_n), None
    else:
        labels = torch.as_tensor(labels_or_n).flatten()
        n = labels.numel()
    for name, value in (("num_shards", num_shards), ("num_slices", num_slices)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n < num_shards * num_slices:
        raise ValueError(f"{n} samples cannot fill {num_shards} shards x {num_slices} slices "
                         f"with at least one sample each")
    gen = torch.Generator().manual_seed(int(seed))
    if sharding == "uniform":
        shards = list(torch.tensor_split(torch.randperm(n, generator=gen), int(num_shards)))
    else:
        if labels is None:
            raise ValueError("class_balanced sharding needs the labels, not just their number")
        dealt = []
        for c in torch.unique(labels).tolist():
            members = torch.nonzero(labels == c).flatten()
            dealt.append(members[torch.randperm(members.numel(), generator=gen)])
        dealt = torch.cat(dealt)
        # round-robin over the class-sorted list: each shard gets every S-th sample of each class
        shards = [dealt[k::num_shards] for k in range(int(num_shards))]
        shards = [s[torch.randperm(s.numel(), generator=gen)] for s in shards]
    return SISASplit.from_shards(shards, int(num_slices))


# ----------------------------------------------------------------------------- checkpoints


def _fsync_folder(folder: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on every platform
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one,
    never a partial one: temporary file in the same folder, fsync, ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def save_checkpoint(path, payload: dict) -> int:
    """Write ``payload`` (tensors, numbers, strings, lists and dicts of them) atomically to
    ``path``, behind a header with a SHA-256 digest of the serialised bytes. Returns the
    file size. Introduced in {ref}`chap-sisa`."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    data = _MAGIC + hashlib.sha256(body).digest() + body
    _atomic_write(Path(path), data)
    return len(data)


def load_checkpoint(path, *, expected: dict | None = None) -> dict:
    """Read a file written by :func:`save_checkpoint`, with ``weights_only=True``.

    Raises ``FileNotFoundError`` if it does not exist and :class:`CorruptCheckpointError` if
    the header or digest does not match (a truncated or modified file), if it cannot be
    unpickled, or if an entry of ``expected`` (e.g. ``{'key': ...}``) differs from the stored
    one. Tensors are loaded on the CPU. Introduced in {ref}`chap-sisa`.
    """
    path = Path(path)
    data = path.read_bytes()
    head = len(_MAGIC) + _DIGEST_BYTES
    if len(data) < head or not data.startswith(_MAGIC):
        raise CorruptCheckpointError(f"{path} is not a complete SISA checkpoint (bad header)")
    body = data[head:]
    if hashlib.sha256(body).digest() != data[len(_MAGIC):head]:
        raise CorruptCheckpointError(f"{path} is truncated or modified (digest mismatch)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the file cannot be trusted
        raise CorruptCheckpointError(f"{path} cannot be read: {err}") from err
    if not isinstance(payload, dict):
        raise CorruptCheckpointError(f"{path} does not hold a checkpoint dictionary")
    for name, value in (expected or {}).items():
        if payload.get(name) != value:
            raise CorruptCheckpointError(
                f"{path} holds {name}={payload.get(name)!r}, expected {value!r}")
    return payload


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, json.dumps(obj, separators=(",", ":")).encode())


# ----------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class StageRecord:
    """One stage of one shard in a :meth:`SISA.fit` or :meth:`SISA.unlearn` call.

    ``status`` is ``'trained'`` or ``'reused'`` (its checkpoint was valid and loaded).
    ``samples`` is the number of samples the stage trains on (surviving samples of slices
    ``1..stage``), ``sample_passes = epochs * samples`` the forward and backward passes it
    costs, ``seconds`` the training time and ``io_seconds`` the time spent reading and
    writing its checkpoint. ``corrupt`` is true when a damaged checkpoint file of this stage
    was found and the stage was trained again. Introduced in {ref}`chap-sisa`.
    """

    shard: int
    stage: int
    status: str
    epochs: int
    samples: int
    sample_passes: int
    steps: int
    seconds: float
    io_seconds: float
    corrupt: bool = False


def _sum(records, attr, status="trained"):
    return sum(getattr(r, attr) for r in records if r.status == status)


@dataclass(frozen=True)
class FitReport:
    """What :meth:`SISA.fit` did: a :class:`StageRecord` per stage and the wall time of the
    whole call (``seconds``, checkpoint I/O and model set-up included).
    Introduced in {ref}`chap-sisa`."""

    stages: tuple[StageRecord, ...]
    seconds: float

    @property
    def trained(self) -> list[StageRecord]:
        return [r for r in self.stages if r.status == "trained"]

    @property
    def reused(self) -> list[StageRecord]:
        return [r for r in self.stages if r.status == "reused"]

    @property
    def sample_passes(self) -> int:
        return _sum(self.stages, "sample_passes")

    @property
    def gradient_steps(self) -> int:
        return _sum(self.stages, "steps")

    @property
    def compute_seconds(self) -> float:
        """Training time of the trained stages, checkpoint I/O excluded."""
        return _sum(self.stages, "seconds")


@dataclass(frozen=True)
class RequestReport:
    """One deleted index in a :meth:`SISA.unlearn` call.

    ``shard`` and ``slice`` locate it; ``first_stage`` is the stage its shard restarted from
    (the earliest affected slice of that shard in this call). ``samples_reprocessed``
    (sample-passes), ``gradient_steps`` and ``seconds`` (training plus checkpoint I/O) are
    those of its shard's retraining, which it shares with the call's other requests in the
    same shard. ``speedup`` is the whole call's: sample-passes of retraining every constituent
    from scratch on the remaining data, divided by the sample-passes the call spent.
    Introduced in {ref}`chap-sisa`.
    """

    index: int
    shard: int
    slice: int
    first_stage: int
    samples_reprocessed: int
    gradient_steps: int
    seconds: float
    speedup: float


@dataclass(frozen=True)
class UnlearnReport:
    """What :meth:`SISA.unlearn` did: one :class:`RequestReport` per deleted index (iterate
    over the report, or index it), the stage records of the retrained shards, the wall time
    of the whole call (``seconds``), and the sample-passes that retraining every constituent
    from scratch would cost (``full_retrain_samples``). Introduced in {ref}`chap-sisa`."""

    requests: tuple[RequestReport, ...]
    stages: tuple[StageRecord, ...]
    seconds: float
    full_retrain_samples: int

    def __iter__(self):
        return iter(self.requests)

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, i):
        return self.requests[i]

    @property
    def shards_retrained(self) -> list[int]:
        return sorted({r.shard for r in self.stages if r.status == "trained"})

    @property
    def samples_reprocessed(self) -> int:
        return _sum(self.stages, "sample_passes")

    @property
    def gradient_steps(self) -> int:
        return _sum(self.stages, "steps")

    @property
    def compute_seconds(self) -> float:
        """Training time of the retrained stages, checkpoint I/O excluded."""
        return _sum(self.stages, "seconds")

    @property
    def io_seconds(self) -> float:
        return sum(r.io_seconds for r in self.stages)

    @property
    def speedup(self) -> float:
        done = self.samples_reprocessed
        return self.full_retrain_samples / done if done else float("inf")


# ----------------------------------------------------------------------------- executors


class InProcessExecutor(Executor):
    """An :class:`~concurrent.futures.Executor` that runs each task at once, in the calling
    process; the default of :class:`SISA`. An ``Exception`` raised by a task is stored in its
    future (the other tasks still run); ``KeyboardInterrupt`` and other ``BaseException``\\ s
    propagate at once. Introduced in {ref}`chap-sisa`."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:
            future.set_exception(err)
        return future


def process_pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool for training shards in parallel, started with ``spawn``: forking a
    process whose PyTorch thread pool is running can deadlock. The model factory and any
    stage hook given to :class:`SISA` must then be picklable (module-level functions or
    ``functools.partial`` objects, not lambdas). Introduced in {ref}`chap-sisa`."""
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"))


# ------------------------------------------------------------------------ shard training


@dataclass
class _ShardJob:
    """Everything a worker needs to (re)train one shard; picklable."""

    shard: int
    x: torch.Tensor  # the shard's samples in training order (deleted ones included)
    y: torch.Tensor
    alive: torch.Tensor  # bool, same order: False for deleted samples
    bounds: list[int]  # slice r holds positions bounds[r]:bounds[r+1]
    keys: list[str]  # checkpoint key of every stage
    start: int  # first stage whose checkpoint may be missing
    epochs: list[int]
    model_fn: Callable[[], nn.Module]
    hyper: dict
    folder: str
    device: str | None
    deterministic: bool
    num_threads: int
    parent_pid: int
    stage_hook: Callable[[StageRecord], None] | None


@dataclass
class _ShardResult:
    shard: int
    state: dict
    records: list[StageRecord] = field(default_factory=list)


def _build_model(model_fn, seed: int, shard: int) -> nn.Module:
    # the initialisation depends on (seed, shard) only, not on the global random stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derive_seed(seed, "init", shard))
        model = model_fn()
    if not isinstance(model, nn.Module):
        raise ValueError(f"model_fn must return a torch.nn.Module, got {type(model).__name__}")
    return model


def _checkpoint_name(stage: int, key: str) -> str:
    return f"stage{stage:04d}-{key[:40]}.ckpt"


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def _run_shard(job: _ShardJob) -> _ShardResult:
    """Train the stages of one shard whose checkpoints are missing; runs in a worker."""
    if os.getpid() != job.parent_pid:
        # a worker process: use the parent's thread count (reductions then split the same
        # way, so results match in-process training) and its determinism setting
        if torch.get_num_threads() != job.num_threads:
            torch.set_num_threads(job.num_threads)
        if job.deterministic and not torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    folder = Path(job.folder) / f"shard{job.shard:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    hyper = job.hyper
    num_stages = len(job.keys)
    paths = [folder / _checkpoint_name(l, job.keys[l]) for l in range(num_stages)]
    records: list[StageRecord] = []
    corrupt: set[int] = set()

    def prefix_positions(stage):
        return torch.nonzero(job.alive[:job.bounds[stage + 1]]).flatten()

    def expected(stage):
        return {"key": job.keys[stage], "shard": job.shard, "stage": stage}

    def try_load(stage):
        tic = time.perf_counter()
        try:
            payload = load_checkpoint(paths[stage], expected=expected(stage))
        except FileNotFoundError:
            return None, time.perf_counter() - tic
        except CorruptCheckpointError:
            corrupt.add(stage)
            return None, time.perf_counter() - tic
        return payload, time.perf_counter() - tic

    # 1. reuse every valid checkpoint from the start stage on
    state, stage = None, job.start
    while stage < num_stages:
        payload, io_s = try_load(stage)
        if payload is None:
            break
        n = int(prefix_positions(stage).numel())
        records.append(StageRecord(job.shard, stage, "reused", job.epochs[stage], n,
                                   job.epochs[stage] * n, 0, 0.0, io_s))
        state, stage = payload, stage + 1
    first = stage
    restart_io = 0.0
    # 2. the state to continue from: the checkpoint just before the first missing stage
    if first < num_stages and state is None and first > 0:
        prev = first - 1
        while prev >= 0:
            state, io_s = try_load(prev)
            restart_io += io_s
            if state is not None:
                break
            prev -= 1  # missing or damaged: that stage must be trained again too
        first = prev + 1
    if first == num_stages:
        final_state = state["model"]
    else:
        device = get_device(job.device)
        model = _build_model(job.model_fn, hyper["seed"], job.shard)
        opt_state = None
        if state is not None:
            model.load_state_dict(state["model"])
            opt_state = state["optimizer"]
        model.to(device)
        x, y = job.x.to(device), job.y.to(device)
        for stage in range(first, num_stages):
            positions = prefix_positions(stage).to(device)
            n = int(positions.numel())
            optimizer = make_optimizer(model, hyper["optimizer"], lr=hyper["lr"],
                                       weight_decay=hyper["weight_decay"])
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)
            steps, seconds = 0, 0.0
            if job.epochs[stage] > 0 and n > 0:
                stage_seed = _derive_seed(hyper["seed"], "stage", job.shard, stage)
                # dropout draws from the global generator: fix it for this stage only
                with torch.random.fork_rng(devices=_rng_devices(device)):
                    torch.manual_seed(stage_seed)
                    history = _fit(model, (x[positions], y[positions]), epochs=job.epochs[stage],
                                   batch_size=hyper["batch_size"], optimizer=optimizer,
                                   seed=stage_seed, device=device, progress=False)
                steps, seconds = history.steps, history.seconds
            opt_state = optimizer.state_dict()
            tic = time.perf_counter()
            save_checkpoint(paths[stage], {
                "model": model.state_dict(), "optimizer": opt_state, "key": job.keys[stage],
                "shard": job.shard, "stage": stage, "samples": n, "steps": steps,
            })
            io_s = time.perf_counter() - tic + (restart_io if stage == first else 0.0)
            record = StageRecord(job.shard, stage, "trained", job.epochs[stage], n,
                                 job.epochs[stage] * n, steps, seconds, io_s, stage in corrupt)
            records.append(record)
            if job.stage_hook is not None:
                job.stage_hook(record)
        final_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    # 3. checkpoints of other keys were trained on samples deleted since: remove them
    current = {p.name for p in paths}
    for leftover in folder.iterdir():
        if leftover.name not in current:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return _ShardResult(job.shard, final_state, records)


# ----------------------------------------------------------------------------------- SISA


def _fingerprint_data(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (x, y):
        t = t.detach().to("cpu").contiguous()
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class SISA:
    """An ensemble trained with SISA, which can unlearn training samples exactly.

    ``model_fn()`` builds one untrained constituent (e.g.
    ``functools.partial(unlearnlib.build_model, 'mlp', shape, classes)``; it must be picklable
    to train in a process pool). ``num_shards`` $S$ and ``num_slices`` $R$ shape the split;
    ``epochs`` $e$ is the nominal number of epochs over a shard, spread over the stages by
    :func:`unlearnlib.sisa_cost.stage_epochs`. ``optimizer`` (``'adam'``, ``'sgd'`` with
    momentum or ``'sgd_plain'``), ``lr``, ``batch_size`` and ``weight_decay`` configure
    training as in :func:`unlearnlib.training.fit`; the optimiser state is carried from stage
    to stage and stored in every checkpoint. ``sharding`` is ``'uniform'`` or
    ``'class_balanced'`` (:func:`make_split`). ``aggregation`` (``'vote'`` or ``'average'``)
    and ``weights`` (``'uniform'`` or ``'proportional'`` to the shards' remaining sizes; a
    shard whose samples were all deleted always gets weight 0) set how
    :mod:`unlearnlib.ensemble` combines the constituents.

    ``checkpoint_dir`` holds the split, the deletions and the checkpoints; by default a
    private temporary folder removed with the object. Point a new ``SISA`` with the same
    settings at an existing folder and call :meth:`fit` with the same data to resume.
    ``executor`` runs the shards (default :class:`InProcessExecutor`); workers use the
    caller's number of PyTorch threads unless ``worker_threads`` says otherwise.
    Introduced in {ref}`chap-sisa`.
    """

    def __init__(self, model_fn: Callable[[], nn.Module], *, num_shards: int, num_slices: int = 1,
                 epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, optimizer: str = "adam",
                 weight_decay: float = 0.0, sharding: str = "uniform", aggregation: str = "vote",
                 weights: str = "uniform", seed: int = 0, checkpoint_dir=None, device=None,
                 executor: Executor | None = None, worker_threads: int | None = None):
        if not callable(model_fn):
            raise ValueError("model_fn must be a callable that returns a new, untrained model")
        for name, value in (("num_shards", num_shards), ("num_slices", num_slices),
                            ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if optimizer not in ("adam", "sgd", "sgd_plain"):
            raise ValueError(f"unknown optimizer {optimizer!r}; choose 'adam', 'sgd' or 'sgd_plain'")
        if sharding not in SHARDINGS:
            raise ValueError(f"unknown sharding {sharding!r}; choose 'uniform' or 'class_balanced'")
        if aggregation not in ("vote", "average"):
            raise ValueError(f"unknown aggregation {aggregation!r}; choose 'vote' or 'average'")
        if weights not in ("uniform", "proportional"):
            raise ValueError(f"unknown weights {weights!r}; choose 'uniform' or 'proportional'")
        if worker_threads is not None and (not isinstance(worker_threads, int) or worker_threads < 1):
            raise ValueError(f"worker_threads must be a positive integer or None, got {worker_threads!r}")
        self.model_fn = model_fn
        self.num_shards, self.num_slices = int(num_shards), int(num_slices)
        self.epochs = int(epochs)
        self.hyper = {"batch_size": int(batch_size), "lr": float(lr), "optimizer": optimizer,
                      "weight_decay": float(weight_decay), "seed": int(seed)}
        self.sharding, self.aggregation, self.weights = sharding, aggregation, weights
        self.seed = int(seed)
        self.device = device
        self.executor = executor
        self.worker_threads = worker_threads
        if checkpoint_dir is None:
            self.checkpoint_dir = Path(tempfile.mkdtemp(prefix="sisa-"))
            self._owns_folder = True
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.checkpoint_dir), True)
        else:
            self.checkpoint_dir = Path(checkpoint_dir)
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self._owns_folder = False
        self._config_hash: str | None = None
        self._data: LabelledData | None = None
        self._split: SISASplit | None = None
        self._deleted: np.ndarray | None = None  # bool (N,)
        self._shard_of: np.ndarray | None = None  # (N,), -1 outside the split
        self._slice_of: np.ndarray | None = None
        self._states: list[dict | None] = []
        self._models: list[nn.Module | None] = []
        self._stale: set[int] = set()

    # ------------------------------------------------------------------ properties

    @property
    def stage_epochs(self) -> list[int]:
        """Epochs of each stage (:func:`unlearnlib.sisa_cost.stage_epochs`).
        Introduced in {ref}`chap-sisa`."""
        return stage_epochs(self.epochs, self.num_slices)

    @property
    def split(self) -> SISASplit:
        """The shards and slices (:class:`SISASplit`). Introduced in {ref}`chap-sisa`."""
        self._require_fitted()
        return self._split

    @property
    def deleted(self) -> torch.Tensor:
        """Sorted indices deleted so far. Introduced in {ref}`chap-sisa`."""
        self._require_fitted()
        return torch.from_numpy(np.flatnonzero(self._deleted))

    @property
    def constituents(self) -> list[nn.Module]:
        """The $S$ constituent models, in shard order, in evaluation mode.
        Introduced in {ref}`chap-sisa`."""
        self._require_ready()
        for k in range(self.num_shards):
            if self._models[k] is None:
                model = _build_model(self.model_fn, self.seed, k)
                model.load_state_dict(self._states[k])
                self._models[k] = model.to(get_device(self.device)).eval()
        return list(self._models)

    def retained_sizes(self) -> np.ndarray:
        """Number of surviving samples per shard and slice, shape (S, R).
        Introduced in {ref}`chap-sisa`."""
        self._require_fitted()
        return np.array([[int((~self._deleted[s.numpy()]).sum()) for s in shard]
                         for shard in self._split.slices], dtype=np.int64)

    def storage_bytes(self) -> int:
        """Bytes SISA keeps on disk: checkpoints, split and deletions.
        Introduced in {ref}`chap-sisa`."""
        return sum(p.stat().st_size for p in self.checkpoint_dir.rglob("*") if p.is_file())

    def locate(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Shard and slice of each training index. Introduced in {ref}`chap-sisa`."""
        self._require_fitted()
        idx = self._check_request(indices, allow_deleted=True)
        return self._shard_of[idx], self._slice_of[idx]

    def __repr__(self) -> str:
        return (f"SISA(S={self.num_shards}, R={self.num_slices}, epochs={self.epochs}, "
                f"stage_epochs={self.stage_epochs}, aggregation={self.aggregation!r}, "
                f"checkpoint_dir={str(self.checkpoint_dir)!r})")

    # ------------------------------------------------------------------ bookkeeping

    def _require_fitted(self):
        if self._split is None:
            raise RuntimeError("call fit(data) first")

    def _require_ready(self):
        self._require_fitted()
        if self._stale:
            raise RuntimeError(
                f"shards {sorted(self._stale)} still hold deleted samples because their "
                f"retraining was interrupted; call fit(data) to finish it")

    def _config(self) -> dict:
        model = _build_model(self.model_fn, self.seed, 0)
        h = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return {"num_shards": self.num_shards, "num_slices": self.num_slices,
                "epochs": self.epochs, "sharding": self.sharding, **self.hyper, "model": type(model).__name__,
                "model_init": h.hexdigest()}

    def _stage_keys(self, k: int) -> list[str]:
        h = hashlib.sha256(f"{self._config_hash}|shard={k}".encode())
        keys = []
        for stage, slc in enumerate(self._split.slices[k]):
            survivors = slc.numpy()[~self._deleted[slc.numpy()]]
            h.update(np.ascontiguousarray(survivors, dtype="<i8").tobytes())
            h.update(b"|")
            final = h.copy()
            final.update(f"stage={stage}".encode())
            keys.append(final.hexdigest())
        return keys

    def _job(self, k: int, start: int, stage_hook) -> _ShardJob:
        shard = self._split.shard(k)
        sizes = [len(s) for s in self._split.slices[k]]
        return _ShardJob(
            shard=k, x=self._data.x[shard], y=self._data.y[shard],
            alive=torch.from_numpy(~self._deleted[shard.numpy()]),
            bounds=[0] + np.cumsum(sizes).tolist(), keys=self._stage_keys(k), start=start,
            epochs=self.stage_epochs, model_fn=self.model_fn, hyper=self.hyper,
            folder=str(self.checkpoint_dir),
            device=None if self.device is None else str(self.device),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            num_threads=self.worker_threads or torch.get_num_threads(), parent_pid=os.getpid(),
            stage_hook=stage_hook)

    def _run(self, starts: dict[int, int], executor, stage_hook) -> list[StageRecord]:
        executor = executor or self.executor or InProcessExecutor()
        futures = [(k, executor.submit(_run_shard, self._job(k, start, stage_hook)))
                   for k, start in sorted(starts.items())]
        records, errors = [], []
        # wait for every shard, so that all finished stages are on disk before an error surfaces
        for k, future in futures:
            try:
                result = future.result()
            except Exception as err:
                errors.append(err)
                continue
            self._states[k] = result.state
            self._models[k] = None
            self._stale.discard(k)
            records.extend(result.records)
        if errors:
            raise errors[0]
        return records

    def _save_deletions(self) -> None:
        _write_json(self.checkpoint_dir / _DELETIONS,
                    {"deleted": np.flatnonzero(self._deleted).tolist()})

    # ------------------------------------------------------------------ training

    def fit(self, data: LabelledData, *, split: SISASplit | None = None,
            executor: Executor | None = None,
            stage_hook: Callable[[StageRecord], None] | None = None) -> FitReport:
        """Train every constituent, or resume: stages whose checkpoints are on disk are reused.

        ``data`` is the training set (a :class:`~unlearnlib.data.LabelledData` or ``(x, y)``);
        indices in :meth:`unlearn` refer to its rows. ``split`` fixes the shards and slices
        (default :func:`make_split` with this object's sharding and seed). If
        ``checkpoint_dir`` already holds a SISA model trained on the same data with the same
        settings, its split and recorded deletions are used and training resumes.
        ``stage_hook(record)`` is called after each trained stage's checkpoint is written.
        Returns a :class:`FitReport`. Introduced in {ref}`chap-sisa`.
        """
        tic = time.perf_counter()
        if not isinstance(data, LabelledData):
            x, y = data
            data = LabelledData(torch.as_tensor(x), torch.as_tensor(y))
        if len(data) == 0:
            raise ValueError("no data: the training set is empty")
        n = len(data)
        config = self._config()
        config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        data_hash = _fingerprint_data(data.x, data.y)
        manifest_path = self.checkpoint_dir / _MANIFEST
        manifest = None
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("config_hash") != config_hash or manifest.get("data_hash") != data_hash:
                if not self._owns_folder:
                    raise ValueError(
                        f"{self.checkpoint_dir} holds a SISA model trained on other data or with "
                        f"other settings; use an empty folder")
                for entry in self.checkpoint_dir.iterdir():
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                manifest = None
        if manifest is not None:
            stored = SISASplit(tuple(tuple(torch.tensor(s, dtype=torch.long) for s in shard)
                                     for shard in manifest["split"]))
            if split is not None and split != stored:
                raise ValueError(f"{self.checkpoint_dir} holds a model trained with another split")
            split = stored
        elif split is None:
            split = make_split(data.y if self.sharding == "class_balanced" else n,
                               self.num_shards, self.num_slices, sharding=self.sharding,
                               seed=self.seed)
        if (split.num_shards, split.num_slices) != (self.num_shards, self.num_slices):
            raise ValueError(f"the split has {split.num_shards} shards x {split.num_slices} slices, "
                             f"but this SISA has {self.num_shards} x {self.num_slices}")
        order = split.order().numpy()
        if order.size and order.max() >= n:
            raise ValueError(f"the split names index {int(order.max())}, but the data has {n} samples")
        self._config_hash, self._data, self._split = config_hash, data, split
        sizes = split.slice_sizes.ravel()
        slot = np.repeat(np.arange(sizes.size), sizes)
        self._shard_of = np.full(n, -1, dtype=np.int64)
        self._slice_of = np.full(n, -1, dtype=np.int64)
        self._shard_of[order] = slot // self.num_slices
        self._slice_of[order] = slot % self.num_slices
        self._deleted = np.zeros(n, dtype=bool)
        if manifest is not None:
            deletions_path = self.checkpoint_dir / _DELETIONS
            if deletions_path.exists():
                self._deleted[json.loads(deletions_path.read_text())["deleted"]] = True
        else:
            _write_json(manifest_path, {"format": _FORMAT, "config": config,
                                        "config_hash": config_hash, "data_hash": data_hash,
                                        "num_samples": n, "split": split.to_lists()})
            self._save_deletions()
        self._states = [None] * self.num_shards
        self._models = [None] * self.num_shards
        self._stale = set(range(self.num_shards))
        records = self._run({k: 0 for k in range(self.num_shards)}, executor, stage_hook)
        return FitReport(tuple(records), time.perf_counter() - tic)

    # ------------------------------------------------------------------ unlearning

    def _check_request(self, indices, *, allow_deleted: bool = False) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu()
        idx = _as_index_tensor(indices, "indices").numpy()
        if idx.size == 0:
            raise ValueError("no indices to unlearn: the request is empty")
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"the request repeats indices, e.g. {uniq[counts > 1][:5].tolist()}")
        n = self._shard_of.size
        outside = idx[(idx >= n)]
        if outside.size:
            raise ValueError(f"indices {outside[:5].tolist()} were never in the training set: "
                             f"it has {n} samples")
        unseen = idx[self._shard_of[idx] < 0]
        if unseen.size:
            raise ValueError(f"indices {unseen[:5].tolist()} were never in the training set: "
                             f"they are in no shard of the split")
        if not allow_deleted:
            gone = idx[self._deleted[idx]]
            if gone.size:
                raise ValueError(f"indices {gone[:5].tolist()} are already deleted")
        return idx

    def unlearn(self, indices, *, executor: Executor | None = None,
                stage_hook: Callable[[StageRecord], None] | None = None) -> UnlearnReport:
        """Delete training samples exactly: one index or a batch, served together.

        Each index is located in its shard and slice; the deletions are written to disk; each
        affected shard is retrained from the checkpoint before its earliest affected slice,
        on its remaining samples; every other shard is left alone. The result is the model
        :meth:`fit` would have produced without those samples (same split, same seeds).
        An index outside the training set, already deleted, or repeated raises
        ``ValueError`` and nothing changes. Returns an :class:`UnlearnReport`.
        Introduced in {ref}`chap-sisa`.
        """
        tic = time.perf_counter()
        self._require_fitted()
        idx = self._check_request(indices)
        shards, slices = self._shard_of[idx], self._slice_of[idx]
        starts: dict[int, int] = {}
        for k, r in zip(shards.tolist(), slices.tolist()):
            starts[k] = min(r, starts.get(k, r))
        # record first: if retraining is interrupted, fit() knows what must be retrained
        self._deleted[idx] = True
        self._save_deletions()
        self._stale.update(starts)
        records = self._run(starts, executor, stage_hook)
        full = training_cost(self.retained_sizes(), self.epochs)
        by_shard = {k: [r for r in records if r.shard == k and r.status == "trained"] for k in starts}
        spent = sum(r.sample_passes for r in records if r.status == "trained")
        speedup = full / spent if spent else float("inf")
        requests = tuple(RequestReport(
            index=int(i), shard=int(k), slice=int(r), first_stage=starts[int(k)],
            samples_reprocessed=sum(s.sample_passes for s in by_shard[int(k)]),
            gradient_steps=sum(s.steps for s in by_shard[int(k)]),
            seconds=sum(s.seconds + s.io_seconds for s in by_shard[int(k)]),
            speedup=speedup) for i, k, r in zip(idx, shards, slices))
        return UnlearnReport(requests, tuple(records), time.perf_counter() - tic, full)

    # ------------------------------------------------------------------ prediction

    def _weights(self) -> list[float]:
        remaining = self.retained_sizes().sum(axis=1).astype(float)
        if self.weights == "proportional":
            return remaining.tolist()
        return (remaining > 0).astype(float).tolist()

    def member_probas(self, x, *, batch_size: int = 1024) -> torch.Tensor:
        """Every constituent's probabilities on ``x``, stacked: (S, N, C) on the CPU.
        Introduced in {ref}`chap-sisa`."""
        from . import ensemble

        return ensemble.member_probas(self.constituents, x, batch_size=batch_size,
                                      device=get_device(self.device))

    def predict_proba(self, x, *, method: str | None = None, batch_size: int = 1024) -> torch.Tensor:
        """Aggregated class scores (N, C): vote shares (``method='vote'``) or mean posteriors
        (``'average'``); default the object's ``aggregation``. Introduced in {ref}`chap-sisa`."""
        from . import ensemble

        return ensemble.aggregate(self.member_probas(x, batch_size=batch_size),
                                  method or self.aggregation, weights=self._weights())

    def predict(self, x, *, method: str | None = None, batch_size: int = 1024) -> torch.Tensor:
        """Predicted labels (N,); ties go to the lowest class (:func:`unlearnlib.ensemble.predict`).
        Introduced in {ref}`chap-sisa`."""
        from . import ensemble

        return ensemble.predict(self.member_probas(x, batch_size=batch_size),
                                method or self.aggregation, weights=self._weights())

    def accuracy(self, data, *, method: str | None = None) -> float:
        """Share of ``data`` (a :class:`~unlearnlib.data.LabelledData` or ``(x, y)``) that the
        aggregated ensemble classifies correctly. Introduced in {ref}`chap-sisa`."""
        x, y = (data.x, data.y) if isinstance(data, LabelledData) else data
        return (self.predict(x, method=method) == torch.as_tensor(y).cpu()).double().mean().item()
