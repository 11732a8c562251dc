"""Ensembles: combine the outputs of several models, and train members on parts of the data.

Introduced in the Ensemble learning chapter ({ref}`chap-ensemble`).

The members' outputs are handled as one stacked tensor of probabilities ``(M, N, C)``: ``M``
members, ``N`` inputs, ``C`` classes (see :func:`member_probas`). Two aggregation rules:

* **label vote** (``method='vote'``): each member votes for its most probable class; the
  scores are the (weighted) shares of the votes, :func:`vote_shares`;
* **posterior averaging** (``method='average'``): the (weighted) mean of the members'
  probability vectors, :func:`average_posteriors`.

``weights`` is ``None`` (every member counts the same) or one non-negative number per member;
weights are normalised to sum to 1, so only their ratios matter. :func:`predict` takes the
argmax of the aggregated scores and breaks exact ties towards the **lowest class index**, as
SISA's reference code does with a plain ``argmax``.

Members for an ensemble are trained by :func:`fit_members` on index sets from
:func:`partition_indices` (disjoint shards, as in SISA) or :func:`bootstrap_indices` (samples
with replacement, as in bagging); :func:`bagging` combines the two steps.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .data import LabelledData
from .training import fit, get_device, predict_proba

__all__ = [
    "METHODS",
    "TIE_TOLERANCE",
    "vote_shares",
    "average_posteriors",
    "aggregate",
    "predict",
    "accuracy",
    "member_probas",
    "partition_indices",
    "bootstrap_indices",
    "fit_members",
    "bagging",
]

METHODS = ("vote", "average")
# aggregated scores this close to the maximum count as tied with it (see predict)
TIE_TOLERANCE = 1e-9


def _normalised_weights(weights, num_members: int, device, dtype) -> torch.Tensor:
    """Weights as a tensor (M,) that sums to 1; uniform when ``weights`` is None."""
    if weights is None:
        return torch.full((num_members,), 1.0 / num_members, device=device, dtype=dtype)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != num_members:
        raise ValueError(f"got {w.numel()} weights for an ensemble of {num_members} members")
    if not torch.isfinite(w).all():
        raise ValueError(f"weights must be finite, got {w.tolist()}")
    if (w < 0).any():
        raise ValueError(f"weights must be non-negative, got {w.tolist()}")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights are all zero: at least one member must count")
    return (w / total).to(device=device, dtype=dtype)


def _stack_probas(probas) -> torch.Tensor:
    """Accept a tensor (M, N, C) or a sequence of M tensors (N, C); check the shapes."""
    if isinstance(probas, torch.Tensor):
        if probas.ndim != 3:
            raise ValueError(
                f"probas must have shape (members, samples, classes), got {tuple(probas.shape)}"
            )
        if probas.shape[0] == 0:
            raise ValueError("the ensemble is empty: probas has no members")
        stacked = probas
    else:
        members = list(probas)
        if not members:
            raise ValueError("the ensemble is empty: no member outputs were given")
        shapes = [tuple(torch.as_tensor(p).shape) for p in members]
        if any(len(s) != 2 for s in shapes):
            raise ValueError(f"each member's output must have shape (samples, classes), got {shapes}")
        classes = sorted({s[1] for s in shapes})
        if len(classes) > 1:
            raise ValueError(f"members disagree on the number of classes: {classes}")
        samples = sorted({s[0] for s in shapes})
        if len(samples) > 1:
            raise ValueError(f"members were evaluated on different numbers of samples: {samples}")
        stacked = torch.stack([torch.as_tensor(p) for p in members])
    if not stacked.is_floating_point():
        raise ValueError(f"probas must be floating point, got {stacked.dtype}")
    if stacked.shape[2] < 1:
        raise ValueError("probas has no classes")
    return stacked


def _vote(labels: torch.Tensor, num_classes: int, weights, dtype) -> torch.Tensor:
    w = _normalised_weights(weights, labels.shape[0], labels.device, dtype)
    one_hot = torch.nn.functional.one_hot(labels.long(), int(num_classes)).to(dtype)  # (M, N, C)
    # a weighted sum over the member axis: no Python loop over members or samples
    return torch.tensordot(w, one_hot, dims=([0], [0]))


def _average(p: torch.Tensor, weights, dtype) -> torch.Tensor:
    w = _normalised_weights(weights, p.shape[0], p.device, dtype)
    return torch.tensordot(w, p.to(dtype), dims=([0], [0]))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown aggregation method {method!r}; choose 'vote' or 'average'")


def vote_shares(labels, num_classes: int, weights=None) -> torch.Tensor:
    """The (weighted) share of the members' votes that each class receives.

    ``labels`` is an integer tensor (M, N): the label each of ``M`` members predicts for each
    of ``N`` inputs. Returns a float tensor (N, ``num_classes``) whose rows sum to 1; with
    uniform weights, entry ``[i, c]`` is the fraction of members that voted ``c`` on input
    ``i``. Introduced in {ref}`chap-ensemble`.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (members, samples), got {tuple(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError("the ensemble is empty: labels has no members")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return _vote(labels, num_classes, weights, torch.get_default_dtype())


def average_posteriors(probas, weights=None) -> torch.Tensor:
    """The (weighted) mean of the members' probability vectors.

    ``probas`` is a tensor (M, N, C) or a sequence of M tensors (N, C). Returns (N, C) in
    the dtype of ``probas``. Introduced in {ref}`chap-ensemble`.
    """
    p = _stack_probas(probas)
    return _average(p, weights, p.dtype)


def aggregate(probas, method: str = "vote", weights=None) -> torch.Tensor:
    """Aggregated class scores (N, C) of an ensemble.

    ``method='vote'``: each member votes for its argmax class, scores are the vote shares
    (:func:`vote_shares`); ``method='average'``: scores are the mean posteriors
    (:func:`average_posteriors`). Rows sum to 1 in both cases. Introduced in
    {ref}`chap-ensemble`.
    """
    _check_method(method)
    p = _stack_probas(probas)
    if method == "vote":
        return vote_shares(p.argmax(dim=2), p.shape[2], weights)
    return average_posteriors(p, weights)


def predict(probas, method: str = "vote", weights=None) -> torch.Tensor:
    """The ensemble's predicted labels (N,): the argmax of :func:`aggregate`.

    **Ties go to the lowest class index.** With uniform weights a tie is, for example, two of
    four members voting 3 and two voting 5: the prediction is 3. A member's own vote is the
    argmax of its probabilities, with the same rule. Scores are summed in double precision
    and count as tied when they lie within :data:`TIE_TOLERANCE` (``1e-9``) of the row's
    maximum, so that weights which tie in exact arithmetic (``0.1 + 0.2`` against ``0.3``)
    are not split by rounding. Introduced in {ref}`chap-ensemble`.
    """
    _check_method(method)
    p = _stack_probas(probas)
    if method == "vote":
        scores = _vote(p.argmax(dim=2), p.shape[2], weights, torch.float64)
    else:
        scores = _average(p, weights, torch.float64)
    tied = scores >= scores.max(dim=1, keepdim=True).values - TIE_TOLERANCE
    # argmax of a 0/1 tensor returns the first 1: the lowest tied class
    return tied.to(torch.uint8).argmax(dim=1)


def accuracy(probas, labels, method: str = "vote", weights=None) -> float:
    """Share of inputs on which the ensemble's prediction (:func:`predict`) equals ``labels``.
    Introduced in {ref}`chap-ensemble`."""
    labels = torch.as_tensor(labels)
    pred = predict(probas, method, weights)
    if labels.shape != pred.shape:
        raise ValueError(f"{pred.shape[0]} predictions but labels have shape {tuple(labels.shape)}")
    return (pred == labels.to(pred.device)).double().mean().item()


def member_probas(models: Sequence[nn.Module], x, *, batch_size: int = 1024,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """The members' softmax probabilities on inputs ``x``, stacked: a tensor (M, N, C) on the
    CPU. ``x`` is a tensor or a :class:`~unlearnlib.data.LabelledData`. Introduced in
    {ref}`chap-ensemble`."""
    models = list(models)
    if not models:
        raise ValueError("the ensemble is empty: no models were given")
    outputs = [predict_proba(m, x, batch_size=batch_size, device=device) for m in models]
    return _stack_probas(outputs)


# ------------------------------------------------------------------ training the members


def partition_indices(n: int, num_parts: int, *, seed: int = 0) -> list[torch.Tensor]:
    """Split ``range(n)`` at random into ``num_parts`` disjoint parts whose sizes differ by at
    most one (SISA's shards). Each part is sorted; the same ``seed`` gives the same parts.
    Introduced in {ref}`chap-ensemble`."""
    if num_parts < 1:
        raise ValueError(f"num_parts must be at least 1, got {num_parts}")
    if n < num_parts:
        raise ValueError(f"cannot split {n} samples into {num_parts} non-empty parts")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [part.sort().values for part in torch.tensor_split(perm, num_parts)]


def bootstrap_indices(n: int, num_samples: int, *, sample_size: int | None = None,
                      seed: int = 0) -> list[torch.Tensor]:
    """``num_samples`` bootstrap samples of ``range(n)``: each draws ``sample_size`` indices
    (default ``n``) uniformly *with replacement*, as bagging does. About
    $1 - 1/e \\approx 63\\%$ of the indices appear in a full-size sample. Introduced in
    {ref}`chap-ensemble`."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    size = n if sample_size is None else int(sample_size)
    if size < 1:
        raise ValueError(f"sample_size must be positive, got {sample_size}")
    gen = torch.Generator().manual_seed(seed)
    return list(torch.randint(0, n, (num_samples, size), generator=gen).unbind(0))


def fit_members(make_model: Callable[[], nn.Module], data: LabelledData, index_sets, *,
                seed: int | None = None, device: str | torch.device | None = None,
                **fit_kwargs) -> list[nn.Module]:
    """Train one fresh model per index set, each only on its own samples of ``data``.

    ``make_model()`` builds an untrained model. Member ``k`` is initialised and shuffled with
    the seed ``seed + k`` (``seed`` defaults to a draw from PyTorch's global generator, which
    :func:`~unlearnlib.training.seed_everything` fixes), so a member does not depend on how
    many members come before it: the first ``m`` members of a larger ensemble are the same
    models as an ensemble of ``m``. Further keyword arguments (``epochs``, ``lr``,
    ``batch_size``, ...) go to :func:`~unlearnlib.training.fit`. Introduced in
    {ref}`chap-ensemble`.
    """
    index_sets = list(index_sets)
    if not index_sets:
        raise ValueError("the ensemble is empty: no index sets were given")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    dev = get_device(device)
    x, y = data.x.to(dev), data.y.to(dev)
    members = []
    for k, idx in enumerate(index_sets):
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.numel() == 0:
            raise ValueError(f"index set {k} is empty")
        if idx.min() < 0 or idx.max() >= len(data):
            raise ValueError(f"index set {k} has indices outside [0, {len(data)})")
        member_seed = seed + k
        # the member's initialisation comes from its own seed, not from the global stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            model = make_model()
        idx = idx.to(dev)
        fit(model, (x[idx], y[idx]), seed=member_seed, device=dev, **fit_kwargs)
        members.append(model)
    return members


def bagging(make_model: Callable[[], nn.Module], data: LabelledData, num_members: int, *,
            sample_size: int | None = None, seed: int = 0,
            device: str | torch.device | None = None, **fit_kwargs) -> list[nn.Module]:
    """Bootstrap aggregating (bagging, Breiman 1996): train ``num_members`` models, each
    on its own bootstrap sample (:func:`bootstrap_indices`) of ``data``. Aggregate their
    outputs with :func:`member_probas` and :func:`predict`. Introduced in
    {ref}`chap-ensemble`."""
    samples = bootstrap_indices(len(data), num_members, sample_size=sample_size, seed=seed)
    return fit_members(make_model, data, samples, seed=seed, device=device, **fit_kwargs)
