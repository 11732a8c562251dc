"""What SISA costs: the slice schedule, the expected retraining cost of unlearning requests,
and a simulator of request streams.

Introduced in the SISA chapter ({ref}`chap-sisa`).

Costs are counted in **sample-passes**: one forward and backward pass of one training sample.
Training a model for $e$ epochs on $N$ samples costs $eN$ sample-passes, which is the cost of
the naive answer to a deletion request: retrain from scratch. SISA splits the data into $S$
shards of $R$ slices each; stage $l$ of a shard trains on its slices $1..l$ for $e_l$ epochs
(:func:`stage_epochs`), and a request in slice $r$ of shard $k$ retrains stages $r..R$ of that
shard only.

The closed forms (:func:`expected_cost`) assume equal shards and slices, requests drawn
uniformly at random, and the continuous average $\\bar e = 2e/(R+1)$ epochs per stage.
:func:`expected_cost_for_split` is exact for any slice sizes, the integer schedule and any
request distribution; :func:`simulate_requests` draws request streams and counts exactly what
:meth:`unlearnlib.sisa.SISA.unlearn` would recompute, deleted samples included.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp, lgamma

import numpy as np

__all__ = [
    "MODES",
    "stage_epochs",
    "average_stage_epochs",
    "training_cost",
    "retraining_cost",
    "expected_cost",
    "expected_speedup",
    "expected_cost_for_split",
    "batch_cost",
    "request_distribution",
    "SimulationResult",
    "simulate_requests",
]

MODES = ("batched", "sequential")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def _check_epochs(epochs) -> int:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)):
        raise ValueError(f"epochs must be an integer, got {epochs!r}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    return int(epochs)


def stage_epochs(epochs: int, num_slices: int) -> list[int]:
    """Epochs of each of the ``num_slices`` training stages of a shard.

    Stage $l$ (1-based) trains on slices $1..l$ for
    $e_l = \\lfloor l\\bar e\\rfloor - \\lfloor (l-1)\\bar e\\rfloor$ epochs with
    $\\bar e = 2e/(R+1)$, so that the total work, $\\sum_l e_l\\, l\\,|s|/R$ sample-passes on a
    shard of $|s|$ samples, is about $e|s|$: what ``epochs`` epochs on the whole shard cost.
    Computed in integer arithmetic, so no stage loses an epoch to rounding. With
    ``epochs=20``: ``[20]`` for one slice, ``[6, 7, 7, 6, 7]`` for five.
    Introduced in {ref}`chap-sisa`.
    """
    e = _check_epochs(epochs)
    r = _check_positive_int("num_slices", num_slices)
    # floor((l+1) * 2e / (R+1)) exactly, as integers
    cumulative = [((l + 1) * 2 * e) // (r + 1) for l in range(r)]
    return [cumulative[0]] + [b - a for a, b in zip(cumulative[:-1], cumulative[1:])]


def average_stage_epochs(epochs: int, num_slices: int) -> float:
    """$\\bar e = 2e/(R+1)$: the average number of epochs per stage that keeps the total work
    of sliced training equal to ``epochs`` epochs over the shard. Introduced in
    {ref}`chap-sisa`."""
    return 2.0 * _check_epochs(epochs) / (_check_positive_int("num_slices", num_slices) + 1)


def _slice_sizes(slice_sizes) -> np.ndarray:
    sizes = np.asarray(slice_sizes)
    if sizes.ndim == 1:
        sizes = sizes[None, :]
    if sizes.ndim != 2 or sizes.shape[1] == 0 or sizes.shape[0] == 0:
        raise ValueError(f"slice_sizes must have shape (shards, slices), got {sizes.shape}")
    if not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"slice_sizes must be integers, got {sizes.dtype}")
    if (sizes < 0).any():
        raise ValueError("slice_sizes must be non-negative")
    return sizes.astype(np.int64)


def training_cost(slice_sizes, epochs: int) -> int:
    """Sample-passes of training every stage of every shard once.

    ``slice_sizes`` has shape (S, R) (or (R,) for one shard): the number of samples in each
    slice. Stage $l$ costs $e_l$ times the size of slices $1..l$. Introduced in
    {ref}`chap-sisa`.
    """
    sizes = _slice_sizes(slice_sizes)
    e = np.asarray(stage_epochs(epochs, sizes.shape[1]), dtype=np.int64)
    return int((np.cumsum(sizes, axis=1) * e).sum())


def retraining_cost(slice_sizes, epochs: int, first_stage: int) -> int:
    """Sample-passes of retraining one shard from stage ``first_stage`` (0-based) to the end.

    ``slice_sizes`` (R,) are the shard's slice sizes *after* the deletions, i.e. the samples
    those stages actually train on. ``first_stage=0`` is training the shard from scratch.
    Introduced in {ref}`chap-sisa`.
    """
    sizes = _slice_sizes(slice_sizes)
    if sizes.shape[0] != 1:
        raise ValueError("retraining_cost takes the slice sizes of one shard, shape (R,)")
    r = sizes.shape[1]
    if not 0 <= int(first_stage) < r:
        raise ValueError(f"first_stage must lie in [0, {r}), got {first_stage}")
    e = np.asarray(stage_epochs(epochs, r), dtype=np.int64)
    return int((np.cumsum(sizes[0]) * e)[int(first_stage):].sum())


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'batched' or 'sequential'")


def expected_cost(num_samples: int, num_shards: int, num_slices: int, epochs: int,
                  num_requests: int = 1, *, mode: str = "batched") -> float:
    """Expected sample-passes to serve ``num_requests`` uniformly random deletion requests.

    With $N$ samples, $S$ equal shards, $R$ equal slices, $e$ epochs and $K$ requests:

    * ``mode='batched'`` (all $K$ served together; a shard restarts from its earliest
      affected slice): $\\frac{2eN}{R(R+1)} \\sum_{i=1}^{R} i\\,[1-(1-\\frac{i}{SR})^K]$;
    * ``mode='sequential'`` (one retraining per request): $K\\,eN\\frac{2R+1}{3RS}$.

    Both use the continuous $\\bar e = 2e/(R+1)$ and requests drawn with replacement; the
    single-request cost $eN(2R+1)/(3RS)$ is their common value at $K=1$. Retraining from
    scratch costs $eN$. Introduced in {ref}`chap-sisa`.
    """
    _check_mode(mode)
    n = _check_positive_int("num_samples", num_samples)
    s = _check_positive_int("num_shards", num_shards)
    r = _check_positive_int("num_slices", num_slices)
    e = _check_epochs(epochs)
    k = _check_positive_int("num_requests", num_requests)
    if mode == "sequential":
        return k * e * n * (2 * r + 1) / (3 * r * s)
    i = np.arange(1, r + 1)
    hit = 1.0 - (1.0 - i / (s * r)) ** k
    return float(2.0 * e * n / (r * (r + 1)) * (i * hit).sum())


def expected_speedup(num_shards: int, num_slices: int, num_requests: int = 1, *,
                     mode: str = "batched") -> float:
    """Retraining from scratch ($eN$ sample-passes) divided by :func:`expected_cost`.

    Independent of $N$ and $e$: $3RS/(2R+1)$ for one request; with sharding alone ($R=1$) and
    $K$ batched requests $1/[1-(1-1/S)^K]$, which falls to 1 once $K \\gg S$. In sequential
    mode the cost of $K$ requests is compared with a single retraining from scratch, the
    "Batch K" baseline. Introduced in {ref}`chap-sisa`.
    """
    # N and e cancel; any positive values give the same ratio
    n, e = 1_000_000, 12
    return n * e / expected_cost(n, num_shards, num_slices, e, num_requests, mode=mode)


def _no_hit_probability(mass, num_requests: int, total: int | None) -> np.ndarray:
    """P(none of K requests lands in a part of the data holding ``mass`` of the request
    probability). ``total=None``: draws with replacement, $(1-p)^K$. ``total=N`` with
    uniform requests: K distinct samples, hypergeometric $\\binom{N-m}{K}/\\binom{N}{K}$,
    where ``mass`` is then the count m."""
    mass = np.asarray(mass, dtype=np.float64)
    if total is None:
        return np.clip(1.0 - mass, 0.0, 1.0) ** num_requests

    def log_ratio(m: int) -> float:
        # log C(N-m, K) - log C(N, K) through lgamma, stable for large N
        if total - m < num_requests:
            return float("-inf")
        return (lgamma(total - m + 1) - lgamma(total - m - num_requests + 1)
                - lgamma(total + 1) + lgamma(total - num_requests + 1))

    flat = [exp(log_ratio(int(m))) for m in mass.ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(mass.shape)


def expected_cost_for_split(slice_sizes, epochs: int, num_requests: int = 1, *,
                            request_probs=None, replacement: bool = True) -> float:
    """Expected sample-passes of serving ``num_requests`` requests together (batched), exactly,
    for the given slice sizes and the integer schedule of :func:`stage_epochs`.

    Stage $l$ of shard $k$ is retrained when at least one request falls into its slices
    $1..l$; with $p_{k,l}$ the request probability of those slices that happens with
    probability $1-(1-p_{k,l})^K$. ``request_probs`` (S, R) gives each slice's probability
    (default: proportional to its size, i.e. uniform over samples); ``replacement=False``
    draws $K$ *distinct* uniform samples instead (hypergeometric; only for uniform requests).
    Stage costs use the sizes before deletion, so the result is an upper bound on the exact
    cost by at most $K$ samples per retrained stage. Introduced in {ref}`chap-sisa`.
    """
    sizes = _slice_sizes(slice_sizes)
    k = _check_positive_int("num_requests", num_requests)
    e = np.asarray(stage_epochs(epochs, sizes.shape[1]), dtype=np.float64)
    total = int(sizes.sum())
    if total == 0:
        raise ValueError("the split holds no samples")
    prefix = np.cumsum(sizes, axis=1)
    if request_probs is None:
        if replacement:
            no_hit = _no_hit_probability(prefix / total, k, None)
        else:
            if k > total:
                raise ValueError(f"cannot draw {k} distinct requests from {total} samples")
            no_hit = _no_hit_probability(prefix, k, total)
    else:
        if not replacement:
            raise ValueError("replacement=False is only defined for uniform requests")
        probs = np.asarray(request_probs, dtype=np.float64)
        if probs.shape != sizes.shape:
            raise ValueError(f"request_probs must have shape {sizes.shape}, got {probs.shape}")
        if (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
            raise ValueError("request_probs must be non-negative and sum to 1")
        no_hit = _no_hit_probability(np.cumsum(probs, axis=1), k, None)
    return float((e * prefix * (1.0 - no_hit)).sum())


def request_distribution(kind: str, num_samples: int, *, rate: float | None = None,
                         shape: float = 1.16) -> np.ndarray:
    """Probability (N,) that a deletion request names each of ``num_samples`` samples.

    ``'uniform'``: $1/N$ each. ``'exponential'``: sample $i$ gets
    $e^{-\\lambda i}-e^{-\\lambda (i+1)}$ (normalised), with ``rate`` $\\lambda$ defaulting to
    $-\\ln(0.05)/N$, so the first samples are about 20 times likelier than the last.
    ``'pareto'``: $a/(i+1)^{a+1}$ (normalised) with ``shape`` $a$: a few samples attract most
    requests. These are the skewed distributions of SISA's reference code; sample $i$ is the
    $i$-th in whatever order the caller assigns. Introduced in {ref}`chap-sisa`.
    """
    n = _check_positive_int("num_samples", num_samples)
    i = np.arange(n, dtype=np.float64)
    if kind == "uniform":
        p = np.ones(n)
    elif kind == "exponential":
        lam = -np.log(0.05) / n if rate is None else float(rate)
        if lam <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        p = np.exp(-lam * i) - np.exp(-lam * (i + 1))
    elif kind == "pareto":
        if shape <= 0:
            raise ValueError(f"shape must be positive, got {shape}")
        p = shape / (i + 1) ** (shape + 1)
    else:
        raise ValueError(f"unknown request distribution {kind!r}; choose 'uniform', "
                         f"'exponential' or 'pareto'")
    return p / p.sum()


@dataclass(frozen=True)
class SimulationResult:
    """Sample-passes of each simulated request stream (``costs``, one per trial), their mean
    and standard error, and the cost of retraining every constituent from scratch
    (``full_cost``, :func:`training_cost` of the split, about $eN$); ``speedup`` is
    ``full_cost / mean``. Introduced in {ref}`chap-sisa`."""

    costs: np.ndarray
    full_cost: int

    @property
    def mean(self) -> float:
        return float(self.costs.mean())

    @property
    def stderr(self) -> float:
        return float(self.costs.std(ddof=1) / np.sqrt(len(self.costs))) if len(self.costs) > 1 else 0.0

    @property
    def speedup(self) -> float:
        return self.full_cost / self.mean if self.mean > 0 else float("inf")


def _locate(sizes: np.ndarray):
    """Shard and slice of every sample, numbered shard by shard, slice by slice."""
    s, r = sizes.shape
    flat = sizes.ravel()
    slot = np.repeat(np.arange(s * r), flat)
    return slot // r, slot % r


def batch_cost(slice_sizes, epochs: int, shards, slices) -> int:
    """Sample-passes SISA spends to serve one batch of deletions, given the shard and slice
    of each deleted sample (0-based, distinct samples).

    Every shard that holds a deletion is retrained from its earliest affected slice to its
    last stage, each stage on the samples of its slices that remain; ``slice_sizes`` (S, R)
    are the sizes before the batch. This is what :meth:`unlearnlib.sisa.SISA.unlearn`
    computes, and what :func:`simulate_requests` adds up. Introduced in {ref}`chap-sisa`.
    """
    sizes = _slice_sizes(slice_sizes)
    shards, slices = np.asarray(shards, dtype=np.int64), np.asarray(slices, dtype=np.int64)
    if shards.shape != slices.shape or shards.ndim != 1:
        raise ValueError("shards and slices must be 1-D and of equal length")
    if shards.size and (shards.min() < 0 or shards.max() >= sizes.shape[0]
                        or slices.min() < 0 or slices.max() >= sizes.shape[1]):
        raise ValueError(f"shard or slice out of range for a split of shape {sizes.shape}")
    e = np.asarray(stage_epochs(epochs, sizes.shape[1]), dtype=np.int64)
    remaining = sizes.copy()
    np.subtract.at(remaining, (shards, slices), 1)
    if (remaining < 0).any():
        raise ValueError("more deletions in a slice than it holds samples")
    prefix = np.cumsum(remaining, axis=1)
    first = np.full(sizes.shape[0], sizes.shape[1])
    np.minimum.at(first, shards, slices)
    redo = np.arange(sizes.shape[1])[None, :] >= first[:, None]
    return int((prefix * e * redo).sum())


def simulate_requests(slice_sizes, epochs: int, num_requests: int, *, request_probs=None,
                      mode: str = "batched", trials: int = 1000, replacement: bool = False,
                      seed: int = 0) -> SimulationResult:
    """Draw ``trials`` streams of ``num_requests`` deletion requests and count the
    sample-passes SISA spends on each.

    ``slice_sizes`` (S, R) describes the split; samples are numbered shard by shard and, in a
    shard, slice by slice (for a :class:`~unlearnlib.sisa.SISASplit` that numbering is
    ``split.order()``). ``request_probs`` (N,) is the request distribution over those samples
    (default uniform; see :func:`request_distribution`). ``mode='batched'`` serves each stream
    at once (a shard restarts from its earliest affected slice); ``'sequential'`` retrains
    after every request. Deleted samples are removed before retraining, exactly as
    :meth:`unlearnlib.sisa.SISA.unlearn` does. ``replacement=False`` (default) draws distinct
    samples, as real requests are; ``True`` matches the closed forms of
    :func:`expected_cost`. Introduced in {ref}`chap-sisa`.
    """
    _check_mode(mode)
    sizes = _slice_sizes(slice_sizes)
    k = _check_positive_int("num_requests", num_requests)
    trials = _check_positive_int("trials", trials)
    e = np.asarray(stage_epochs(epochs, sizes.shape[1]), dtype=np.int64)
    n = int(sizes.sum())
    if not replacement and k > n:
        raise ValueError(f"cannot draw {k} distinct requests from {n} samples")
    if request_probs is not None:
        request_probs = np.asarray(request_probs, dtype=np.float64)
        if request_probs.shape != (n,):
            raise ValueError(f"request_probs must have shape ({n},), got {request_probs.shape}")
        if (request_probs < 0).any() or not np.isclose(request_probs.sum(), 1.0):
            raise ValueError("request_probs must be non-negative and sum to 1")
        if not replacement and np.count_nonzero(request_probs) < k:
            raise ValueError(f"fewer than {k} samples have a positive request probability")
    shard_of, slice_of = _locate(sizes)
    rng = np.random.default_rng(seed)
    costs = np.empty(trials, dtype=np.int64)
    for t in range(trials):
        picks = rng.choice(n, size=k, replace=replacement, p=request_probs)
        if mode == "batched":
            # with replacement, a sample drawn twice is still deleted once
            picks = np.unique(picks)
            costs[t] = batch_cost(sizes, epochs, shard_of[picks], slice_of[picks])
        else:
            remaining = sizes.copy()
            total = 0
            seen = set()
            for p in picks:
                if p in seen:  # already deleted: nothing left to retrain
                    continue
                seen.add(p)
                k_shard, k_slice = shard_of[p], slice_of[p]
                remaining[k_shard, k_slice] -= 1
                total += int((np.cumsum(remaining[k_shard]) * e)[k_slice:].sum())
            costs[t] = total
    return SimulationResult(costs=costs, full_cost=training_cost(sizes, epochs))
