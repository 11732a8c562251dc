"""SISA: exactness of unlearning, resumability, damaged checkpoints, executors and bad input.

The models are small (a quarter-width SISA CNN with dropout on 8x8 digits) so that every
test trains in seconds on a CPU; dropout and Adam make sure that the random state and the
optimiser state are handled exactly, not just the weights.
"""

import functools
import json
import os
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch

import unlearnlib as ul
from unlearnlib import ensemble
from unlearnlib import sisa_cost as sc
from unlearnlib.data import LabelledData
from unlearnlib.sisa import (SISA, CorruptCheckpointError, SISASplit, load_checkpoint, make_split,
                             process_pool, save_checkpoint)

N_TRAIN = 430  # shards of 143/143/144 samples: not divisible by 4 slices


@pytest.fixture(scope="module")
def data(digits):
    return LabelledData(digits.train.x[:N_TRAIN], digits.train.y[:N_TRAIN])


@pytest.fixture(scope="module")
def test_data(digits):
    return digits.test


def make_model():
    return ul.build_model("sisa_cnn", (1, 8, 8), 10, width=0.25, hidden=32, dropout=0.3)


def make_sisa(folder=None, **kw):
    settings = dict(num_shards=3, num_slices=4, epochs=5, batch_size=32, lr=1e-2, seed=7,
                    checkpoint_dir=folder)
    settings.update(kw)
    return SISA(make_model, **settings)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(models_a, models_b):
    assert len(models_a) == len(models_b)
    for k, (a, b) in enumerate(zip(models_a, models_b)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), f"constituent {k}, {name} differs"


# forget set: a sample from the first slice, from a middle slice, the very last sample of a
# shard (among the |s| mod R "remainder" samples), and two samples in one slice
def forget_set(split):
    picks = [split.slices[0][0][3], split.slices[1][2][0], split.slices[2][3][-1],
             split.slices[2][1][4], split.slices[2][1][5]]
    return torch.stack(picks)


# ----------------------------------------------------------------------------- split


def test_uniform_split_partitions_the_data_and_slices_with_remainders():
    split = make_split(430, 3, 4, seed=0)
    order = split.order()
    assert sorted(order.tolist()) == list(range(430))
    sizes = split.slice_sizes
    assert sizes.sum() == 430
    assert sizes.sum(1).max() - sizes.sum(1).min() <= 1
    assert (sizes.max(1) - sizes.min(1) <= 1).all()
    assert split == make_split(430, 3, 4, seed=0)
    assert split != make_split(430, 3, 4, seed=1)
    shard, slc = split.locate(split.slices[1][3])
    assert (shard == 1).all() and (slc == 3).all()


def test_class_balanced_split_gives_every_shard_its_share_of_every_class(data):
    split = make_split(data.y, 4, 3, sharding="class_balanced", seed=0)
    assert sorted(split.order().tolist()) == list(range(len(data)))
    counts = np.stack([torch.bincount(data.y[s], minlength=10).numpy() for s in split.shards])
    assert (counts.max(0) - counts.min(0) <= 1).all()
    # uniform sharding is not balanced this tightly
    uniform = make_split(len(data), 4, 3, seed=0)
    counts_u = np.stack([torch.bincount(data.y[s], minlength=10).numpy() for s in uniform.shards])
    assert (counts_u.max(0) - counts_u.min(0)).max() > 1


def test_split_bad_input():
    with pytest.raises(ValueError, match="sharding"):
        make_split(100, 2, 2, sharding="random")
    with pytest.raises(ValueError, match="cannot fill"):
        make_split(5, 3, 2)
    with pytest.raises(ValueError, match="labels"):
        make_split(100, 2, 2, sharding="class_balanced")
    with pytest.raises(ValueError, match="overlapping|repeats"):
        SISASplit.from_shards([[0, 1, 2], [2, 3]], 1)
    with pytest.raises(ValueError, match="not in the split"):
        make_split(10, 2, 1).locate([10])


# ----------------------------------------------------------------------------- exactness


@pytest.fixture(scope="module")
def trained(data):
    model = make_sisa()
    report = model.fit(data)
    return model, report


def test_fit_trains_every_stage_with_the_paper_schedule(trained, data, test_data):
    model, report = trained
    assert [r.status for r in report.stages] == ["trained"] * 12
    assert model.stage_epochs == sc.stage_epochs(5, 4) == [2, 2, 2, 2]
    assert report.sample_passes == sc.training_cost(model.split.slice_sizes, 5)
    assert report.gradient_steps == sum(
        e * -(-n // 32) for e, n in ((r.epochs, r.samples) for r in report.stages))
    # aggregated through unlearnlib.ensemble, with uniform weights
    probas = ensemble.member_probas(model.constituents, test_data.x)
    assert torch.equal(model.predict(test_data.x), ensemble.predict(probas, "vote"))
    assert torch.allclose(model.predict_proba(test_data.x, method="average"),
                          ensemble.average_posteriors(probas))
    # about 20 steps per constituent: far from converged, but well above chance (0.1)
    assert model.accuracy(test_data) > 0.2


def test_unlearn_is_exact(data):
    """The core claim: after unlearn(D_f) every constituent is bit-identical to a SISA model
    trained from scratch, with the same split, on D without D_f."""
    model = make_sisa()
    model.fit(data)
    d_f = forget_set(model.split)
    before = [params(m) for m in model.constituents]
    model.unlearn(d_f)

    scratch = make_sisa()
    scratch.fit(data, split=model.split.without(d_f))
    assert_identical(model.constituents, scratch.constituents)
    # and the samples are really gone: every constituent changed (each shard held one)
    for b, m in zip(before, model.constituents):
        assert any(not torch.equal(b[k], v) for k, v in m.state_dict().items())

    # the same holds when the retrained model never even receives D_f: train on the retain
    # set alone, with the split's indices renumbered
    retain = torch.from_numpy(np.setdiff1d(np.arange(len(data)), d_f.numpy()))
    renumber = {int(old): new for new, old in enumerate(retain.tolist())}
    lists = [[[renumber[i] for i in s.tolist()] for s in shard] for shard in model.split.without(d_f).slices]
    alone = make_sisa()
    alone.fit(data.subset(retain), split=SISASplit(tuple(tuple(torch.tensor(s, dtype=torch.long)
                                                                  for s in sh) for sh in lists)))
    assert_identical(model.constituents, alone.constituents)


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_plain"])
def test_sequential_requests_are_exact_with_other_optimisers(data, optimizer):
    model = make_sisa(optimizer=optimizer, lr=0.05, num_shards=2, num_slices=3, epochs=3)
    model.fit(data)
    first, second = [int(model.split.slices[0][1][0])], [int(model.split.slices[0][0][2]), 11]
    model.unlearn(first)
    model.unlearn(second)
    scratch = make_sisa(optimizer=optimizer, lr=0.05, num_shards=2, num_slices=3, epochs=3)
    scratch.fit(data, split=model.split.without(first + second))
    assert_identical(model.constituents, scratch.constituents)


def test_a_deletion_among_the_remainder_samples_is_unlearned(data):
    """The reference code hashes only the first R*floor(|s|/R) samples of a shard, so a
    deletion among the last |s| mod R samples reused a stale checkpoint (algorithms.md 1.10)."""
    model = make_sisa(num_shards=1, num_slices=4)
    model.fit(data)
    assert len(data) % 4 != 0
    last = int(model.split.slices[0][3][-1])
    before = params(model.constituents[0])
    report = model.unlearn(last)
    assert [r.stage for r in report.stages if r.status == "trained"] == [3]
    assert any(not torch.equal(before[k], v) for k, v in model.constituents[0].state_dict().items())


def test_only_affected_shards_retrain_from_the_earliest_affected_slice(data):
    model = make_sisa(num_shards=4)
    model.fit(data)
    before = [params(m) for m in model.constituents]
    split = model.split
    request = [int(split.slices[1][2][0]), int(split.slices[1][3][1]), int(split.slices[3][1][0])]
    sizes_before = model.retained_sizes()
    report = model.unlearn(request)
    trained = [(r.shard, r.stage) for r in report.stages if r.status == "trained"]
    assert trained == [(1, 2), (1, 3), (3, 1), (3, 2), (3, 3)]
    for k in (0, 2):  # untouched
        assert all(torch.equal(before[k][n], v) for n, v in model.constituents[k].state_dict().items())
    # per-request report
    assert [(r.index, r.shard, r.slice, r.first_stage) for r in report] == [
        (request[0], 1, 2, 2), (request[1], 1, 3, 2), (request[2], 3, 1, 1)]
    sizes_after = model.retained_sizes()
    shard1 = sc.retraining_cost(sizes_after[1], 5, 2)
    shard3 = sc.retraining_cost(sizes_after[3], 5, 1)
    assert report[0].samples_reprocessed == report[1].samples_reprocessed == shard1
    assert report[2].samples_reprocessed == shard3
    assert report.samples_reprocessed == shard1 + shard3 == sc.batch_cost(
        sizes_before, 5, [1, 1, 3], [2, 3, 1])
    assert report.full_retrain_samples == sc.training_cost(sizes_after, 5)
    assert report[0].speedup == pytest.approx(report.full_retrain_samples / (shard1 + shard3))
    assert report[0].gradient_steps > 0 and report[0].seconds > 0
    assert report.shards_retrained == [1, 3]
    # deletions are on disk, and stale checkpoints (trained on deleted samples) are gone
    recorded = json.loads((model.checkpoint_dir / "deleted.json").read_text())["deleted"]
    assert recorded == sorted(request)
    assert len(list(model.checkpoint_dir.glob("shard*/*.ckpt"))) == 4 * 4


def test_a_shard_with_every_sample_deleted_gets_no_vote(data, test_data):
    model = make_sisa(num_shards=3, num_slices=1, epochs=2)
    model.fit(data)
    model.unlearn(model.split.shard(0))
    assert model._weights() == [0.0, 1.0, 1.0]
    probas = ensemble.member_probas(model.constituents, test_data.x)
    assert torch.equal(model.predict(test_data.x), ensemble.predict(probas, "vote", weights=[0, 1, 1]))


# ----------------------------------------------------------------------------- bad input


def test_bad_unlearning_requests_raise_and_change_nothing(data):
    model = make_sisa(num_shards=2, num_slices=2, epochs=1)
    # a split that leaves samples 0..9 out of training
    model.fit(data, split=SISASplit.from_shards([list(range(10, 220)), list(range(220, len(data)))], 2))
    model.unlearn([12])
    state = [params(m) for m in model.constituents]
    deletions = (model.checkpoint_dir / "deleted.json").read_text()
    cases = [
        ([len(data)], "never in the training set"),
        ([-1], "negative"),
        ([3], "never in the training set"),
        ([12], "already deleted"),
        ([20, 20], "repeats"),
        ([], "empty"),
        ([1.5], "integers"),
    ]
    for request, message in cases:
        with pytest.raises(ValueError, match=message):
            model.unlearn(request)
    assert (model.checkpoint_dir / "deleted.json").read_text() == deletions
    for s, m in zip(state, model.constituents):
        assert all(torch.equal(s[k], v) for k, v in m.state_dict().items())


def test_bad_configuration():
    with pytest.raises(ValueError, match="num_shards"):
        SISA(make_model, num_shards=0)
    with pytest.raises(ValueError, match="aggregation"):
        SISA(make_model, num_shards=2, aggregation="median")
    with pytest.raises(ValueError, match="optimizer"):
        SISA(make_model, num_shards=2, optimizer="rmsprop")
    with pytest.raises(ValueError, match="model_fn"):
        SISA(None, num_shards=2)
    with pytest.raises(RuntimeError, match="fit"):
        SISA(make_model, num_shards=2).unlearn([0])


def test_a_folder_holding_another_model_is_refused(data, tmp_path):
    make_sisa(tmp_path, num_shards=2, num_slices=1, epochs=1).fit(data)
    with pytest.raises(ValueError, match="other data or with other settings"):
        make_sisa(tmp_path, num_shards=2, num_slices=1, epochs=2).fit(data)
    with pytest.raises(ValueError, match="other data or with other settings"):
        make_sisa(tmp_path, num_shards=2, num_slices=1, epochs=1).fit(data.subset(range(100)))
    with pytest.raises(ValueError, match="another split"):
        make_sisa(tmp_path, num_shards=2, num_slices=1, epochs=1).fit(
            data, split=make_split(len(data), 2, 1, seed=99))


# ----------------------------------------------------------------------------- resuming


class Interrupt(Exception):
    pass


class StopAfter:
    """A stage hook that raises after ``n`` trained stages (picklable)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def __call__(self, record):
        self.seen += 1
        if self.seen >= self.n:
            raise Interrupt(f"interrupted after shard {record.shard}, stage {record.stage}")


def test_an_interrupted_fit_resumes_without_redoing_finished_stages(data, trained, tmp_path):
    reference, _ = trained
    with pytest.raises(Interrupt):
        make_sisa(tmp_path).fit(data, stage_hook=StopAfter(6))
    # in process, the hook object is shared: it raises from the 6th trained stage on (shard 1,
    # stage 1) and again at every later stage, and the executor moves on to the next shard
    on_disk = {p.parent.name + "/" + p.name.split("-")[0] for p in tmp_path.glob("shard*/*.ckpt")}
    assert on_disk == {"shard0000/stage0000", "shard0000/stage0001", "shard0000/stage0002",
                       "shard0000/stage0003", "shard0001/stage0000", "shard0001/stage0001",
                       "shard0002/stage0000"}
    resumed = make_sisa(tmp_path)
    report = resumed.fit(data)
    reused = {f"shard{r.shard:04d}/stage{r.stage:04d}" for r in report.reused}
    trained_now = {f"shard{r.shard:04d}/stage{r.stage:04d}" for r in report.trained}
    assert reused == on_disk
    assert not reused & trained_now and len(reused | trained_now) == 12
    assert len(trained_now) == 12 - len(on_disk) > 0
    assert_identical(resumed.constituents, reference.constituents)
    # a third fit trains nothing
    assert make_sisa(tmp_path).fit(data).trained == []


def test_an_interrupted_unlearn_blocks_predictions_and_resumes_from_the_recorded_deletions(data, tmp_path):
    model = make_sisa(tmp_path)
    model.fit(data)
    d_f = forget_set(model.split)
    with pytest.raises(Interrupt):
        model.unlearn(d_f, stage_hook=StopAfter(2))
    with pytest.raises(RuntimeError, match="interrupted"):
        model.predict(data.x[:5])
    # a new process (here: a new object) finds the deletions on disk and finishes the job
    resumed = make_sisa(tmp_path)
    report = resumed.fit(data)
    assert resumed.deleted.tolist() == sorted(d_f.tolist())
    assert 0 < len(report.trained) < 12
    scratch = make_sisa()
    scratch.fit(data, split=model.split.without(d_f))
    assert_identical(resumed.constituents, scratch.constituents)
    # a second unlearn of the same samples is refused
    with pytest.raises(ValueError, match="already deleted"):
        resumed.unlearn(d_f[:1])


def _exit_worker(record):
    if record.shard == 1 and record.stage == 1:
        os._exit(3)  # the worker process dies, as if killed


def test_a_killed_worker_loses_only_unfinished_stages(data, trained, tmp_path):
    reference, _ = trained
    with process_pool(2) as pool:
        with pytest.raises(BrokenProcessPool):
            make_sisa(tmp_path, executor=pool).fit(data, stage_hook=_exit_worker)
    on_disk = {(int(p.parent.name[5:]), int(p.name[5:9])) for p in tmp_path.glob("shard*/*.ckpt")}
    assert (1, 0) in on_disk and (1, 1) in on_disk and (1, 2) not in on_disk
    resumed = make_sisa(tmp_path)
    report = resumed.fit(data)
    assert {(r.shard, r.stage) for r in report.reused} == on_disk
    assert_identical(resumed.constituents, reference.constituents)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    save_checkpoint(path, {"w": torch.arange(3.0), "key": "a"})

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(3), "key": "b"})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert torch.equal(load_checkpoint(path, expected={"key": "a"})["w"], torch.arange(3.0))
    with pytest.raises(CorruptCheckpointError, match="expected"):
        load_checkpoint(path, expected={"key": "b"})


def test_damaged_checkpoints_are_detected_never_loaded_and_retrained(data, trained, tmp_path, monkeypatch):
    reference, _ = trained
    make_sisa(tmp_path).fit(data)
    files = {(int(p.parent.name[5:]), int(p.name[5:9])): p for p in tmp_path.glob("shard*/*.ckpt")}
    truncated, garbage, swapped = files[(0, 2)], files[(1, 0)], files[(2, 3)]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    garbage.write_bytes(b"\x00garbage" * 50)
    swapped.write_bytes(files[(2, 2)].read_bytes())  # a valid file, but of another stage
    (tmp_path / "shard0000" / ".stage0003-partial.ckpt.tmp").write_bytes(b"half a file")
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(truncated)
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint(garbage)

    head = 62  # magic line and SHA-256 digest
    damaged = {truncated.read_bytes()[head:], garbage.read_bytes()[head:]}
    loaded = []
    real_load = torch.load

    def spy(f, *args, **kwargs):
        assert kwargs.get("weights_only") is True
        loaded.append(bytes(f.getbuffer()))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    resumed = make_sisa(tmp_path)
    report = resumed.fit(data)
    monkeypatch.undo()
    assert loaded and not damaged & set(loaded)  # damaged bytes never reach torch.load
    corrupt = {(r.shard, r.stage) for r in report.trained if r.corrupt}
    assert corrupt == {(0, 2), (1, 0), (2, 3)}
    assert {(r.shard, r.stage) for r in report.trained} == {(0, 2), (0, 3), (1, 0), (1, 1), (1, 2),
                                                           (1, 3), (2, 3)}
    assert_identical(resumed.constituents, reference.constituents)
    assert not list(tmp_path.glob("shard*/*.tmp"))
    for p in tmp_path.glob("shard*/*.ckpt"):
        load_checkpoint(p)  # every file on disk is valid again


# ----------------------------------------------------------------------------- executors


def test_a_process_pool_gives_the_same_parameters_as_in_process(data, trained):
    reference, _ = trained
    with process_pool(2) as pool:
        model = make_sisa(executor=pool)
        model.fit(data)
        assert_identical(model.constituents, reference.constituents)
        d_f = forget_set(model.split)
        model.unlearn(d_f)
    local = make_sisa()
    local.fit(data)
    local.unlearn(d_f)
    assert_identical(model.constituents, local.constituents)


# ----------------------------------------------------------------------------- data


def test_purchase_like_data_is_binary_600_features_two_kmeans_classes_and_reproducible():
    ds = ul.data.make_purchase_like(900, 300, seed=1)
    assert ds.input_shape == (1, 1, 600) and ds.num_classes == 2
    assert len(ds.train) == 900 and len(ds.test) == 300
    assert set(torch.unique(ds.train.x).tolist()) == {0.0, 1.0}
    counts = torch.bincount(torch.cat([ds.train.y, ds.test.y]), minlength=2)
    assert counts[0] >= counts[1] > 0  # class 0 is the larger cluster
    again = ul.data.make_purchase_like(900, 300, seed=1)
    assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.test.y, ds.test.y)
    assert not torch.equal(ul.data.make_purchase_like(900, 300, seed=2).train.x, ds.train.x)
    # the labels are k-means clusters: each record is nearer its own cluster's centre
    x = torch.cat([ds.train.x, ds.test.x]).flatten(1).double()
    y = torch.cat([ds.train.y, ds.test.y])
    centres = torch.stack([x[y == c].mean(0) for c in range(2)])
    assert (torch.cdist(x, centres).argmin(1) == y).double().mean() > 0.99
    model = ul.build_model("mlp", ds.input_shape, ds.num_classes, hidden=(16,))
    assert model(ds.test.x[:4]).shape == (4, 2)
    with pytest.raises(ValueError, match="num_classes"):
        ul.data.make_purchase_like(100, 10, num_classes=1)
    with pytest.raises(ValueError, match="n_train"):
        ul.data.make_purchase_like(0, 10)
