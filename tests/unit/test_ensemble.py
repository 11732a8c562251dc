import pytest
import torch

from unlearnlib import ensemble
from unlearnlib.data import LabelledData
from unlearnlib.ensemble import (
    accuracy,
    aggregate,
    average_posteriors,
    bagging,
    bootstrap_indices,
    fit_members,
    member_probas,
    partition_indices,
    predict,
    vote_shares,
)
from unlearnlib.models import build_model
from unlearnlib.training import evaluate, seed_everything


def _one_hot_probas(labels, num_classes, confidence=0.9):
    """Member probabilities (M, N, C) whose argmax is ``labels`` (M, N)."""
    labels = torch.as_tensor(labels)
    rest = (1 - confidence) / (num_classes - 1)
    p = torch.full((*labels.shape, num_classes), rest)
    p.scatter_(2, labels.unsqueeze(2), confidence)
    return p


def test_vote_shares_counts_votes_and_rows_sum_to_one():
    labels = torch.tensor([[0, 1, 2], [0, 2, 2], [1, 2, 2], [0, 1, 0]])
    shares = vote_shares(labels, 3)
    expected = torch.tensor([[3, 1, 0], [0, 2, 2], [1, 0, 3]], dtype=torch.float32) / 4
    assert torch.allclose(shares, expected)
    assert torch.allclose(shares.sum(1), torch.ones(3))


def test_weighted_vote_follows_the_heavy_member():
    labels = torch.tensor([[0, 0], [1, 1], [1, 2]])
    # member 0 outweighs members 1 and 2 together
    shares = vote_shares(labels, 3, weights=[3, 1, 1])
    assert torch.allclose(shares, torch.tensor([[0.6, 0.4, 0.0], [0.6, 0.2, 0.2]]))
    assert predict(_one_hot_probas(labels, 3), "vote", weights=[3, 1, 1]).tolist() == [0, 0]
    # uniform weights: the majority wins
    assert predict(_one_hot_probas(labels, 3), "vote").tolist() == [1, 0]


def test_weights_only_matter_through_their_ratios():
    labels = torch.randint(0, 4, (5, 50), generator=torch.Generator().manual_seed(0))
    a = vote_shares(labels, 4, weights=[1, 2, 3, 4, 5])
    b = vote_shares(labels, 4, weights=[10, 20, 30, 40, 50])
    assert torch.allclose(a, b)
    # a zero weight removes a member
    c = vote_shares(labels, 4, weights=[0, 1, 1, 1, 1])
    assert torch.allclose(c, vote_shares(labels[1:], 4))


def test_vote_ties_go_to_the_lowest_class_index():
    # two members vote 3, two vote 5; then one each for 4, 1
    labels = torch.tensor([[3, 4], [5, 1], [3, 4], [5, 1]])
    probas = _one_hot_probas(labels, 6)
    assert predict(probas, "vote").tolist() == [3, 1]
    # the same tie with the classes in the other order of members
    assert predict(probas.flip(0), "vote").tolist() == [3, 1]
    # weights that tie only in exact arithmetic: 0.1 + 0.2 versus 0.3
    labels = torch.tensor([[2], [2], [0]])
    assert predict(_one_hot_probas(labels, 3), "vote", weights=[0.1, 0.2, 0.3]).tolist() == [0]


def test_average_ties_go_to_the_lowest_class_index():
    probas = torch.tensor([[[0.0, 0.5, 0.5]], [[0.0, 0.5, 0.5]]])
    assert predict(probas, "average").tolist() == [1]


def test_average_and_vote_can_disagree():
    # two lukewarm members for class 0, one very sure member for class 1
    probas = torch.tensor([[[0.55, 0.45]], [[0.55, 0.45]], [[0.01, 0.99]]])
    assert predict(probas, "vote").item() == 0
    assert predict(probas, "average").item() == 1
    assert torch.allclose(average_posteriors(probas), torch.tensor([[1.11 / 3, 1.89 / 3]]))


def test_weighted_average_matches_hand_computation():
    probas = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]])
    out = average_posteriors(probas, weights=[1, 3])
    assert torch.allclose(out, torch.tensor([[0.25 * 0.2 + 0.75 * 0.6, 0.25 * 0.8 + 0.75 * 0.4]]))
    assert torch.allclose(aggregate(probas, "average", weights=[1, 3]), out)


def test_aggregate_vote_equals_vote_shares_of_argmax():
    g = torch.Generator().manual_seed(1)
    probas = torch.rand(7, 30, 5, generator=g).softmax(2)
    assert torch.allclose(aggregate(probas, "vote"), vote_shares(probas.argmax(2), 5))
    assert torch.equal(predict(probas), aggregate(probas).argmax(1))


def test_sequence_input_and_accuracy():
    members = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[0.6, 0.4], [0.7, 0.3]])]
    assert torch.allclose(average_posteriors(members), torch.tensor([[0.75, 0.25], [0.45, 0.55]]))
    assert accuracy(members, torch.tensor([0, 1]), "average") == 1.0
    # vote: sample 1 is a 1-1 tie, which goes to class 0
    assert accuracy(members, torch.tensor([0, 1]), "vote") == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda: vote_shares(torch.zeros(0, 3, dtype=torch.long), 2), "empty"),
    (lambda: average_posteriors([]), "empty"),
    (lambda: aggregate(torch.zeros(0, 4, 3)), "empty"),
    (lambda: member_probas([], torch.zeros(2, 1, 4, 4)), "empty"),
    (lambda: average_posteriors([torch.rand(4, 3), torch.rand(4, 5)]), "number of classes"),
    (lambda: average_posteriors([torch.rand(4, 3), torch.rand(5, 3)]), "samples"),
    (lambda: vote_shares(torch.zeros(3, 4, dtype=torch.long), 2, weights=[1, 1]), "3 members"),
    (lambda: vote_shares(torch.zeros(2, 4, dtype=torch.long), 2, weights=[1, -1]), "non-negative"),
    (lambda: vote_shares(torch.zeros(2, 4, dtype=torch.long), 2, weights=[0, 0]), "all zero"),
    (lambda: vote_shares(torch.zeros(2, 4, dtype=torch.long), 2, weights=[1, float('nan')]), "finite"),
    (lambda: vote_shares(torch.full((2, 4), 3), 3), r"\[0, 3\)"),
    (lambda: vote_shares(torch.zeros(2, 4), 3), "integers"),
    (lambda: aggregate(torch.rand(2, 4, 3), method="median"), "median"),
    (lambda: predict(torch.rand(2, 4, 3), method="max"), "max"),
    (lambda: aggregate(torch.rand(4, 3)), "members, samples, classes"),
    (lambda: partition_indices(3, 5), "non-empty"),
    (lambda: bootstrap_indices(10, 0), "num_samples"),
])
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_member_probas_rejects_members_with_different_class_counts():
    x = torch.rand(3, 1, 8, 8)
    models = [build_model("mlp", (1, 8, 8), 10), build_model("mlp", (1, 8, 8), 4)]
    with pytest.raises(ValueError, match="number of classes"):
        member_probas(models, x, device="cpu")


def test_partition_is_disjoint_balanced_and_reproducible():
    parts = partition_indices(103, 5, seed=3)
    sizes = sorted(len(p) for p in parts)
    assert sizes == [20, 20, 21, 21, 21]
    assert sorted(torch.cat(parts).tolist()) == list(range(103))
    assert all(torch.equal(a, b) for a, b in zip(parts, partition_indices(103, 5, seed=3)))
    assert not all(torch.equal(a, b) for a, b in zip(parts, partition_indices(103, 5, seed=4)))


def test_bootstrap_draws_with_replacement():
    samples = bootstrap_indices(1000, 3, seed=0)
    assert [len(s) for s in samples] == [1000] * 3
    for s in samples:
        unique_share = s.unique().numel() / 1000
        # 1 - 1/e = 0.632 of the indices appear in a bootstrap sample of full size
        assert 0.60 < unique_share < 0.66
        assert 0 <= s.min() and s.max() < 1000
    assert [len(s) for s in bootstrap_indices(1000, 2, sample_size=250)] == [250, 250]


def test_members_train_on_their_own_data_and_do_not_depend_on_later_members(digits):
    seed_everything(0)
    make = lambda: build_model("mlp", digits.input_shape, digits.num_classes)  # noqa: E731
    shards = partition_indices(len(digits.train), 3, seed=0)
    three = fit_members(make, digits.train, shards, seed=5, epochs=3, lr=1e-2, device="cpu")
    one = fit_members(make, digits.train, shards[:1], seed=5, epochs=3, lr=1e-2, device="cpu")
    for a, b in zip(three[0].parameters(), one[0].parameters()):
        assert torch.equal(a, b)
    # each member fits its own shard more closely than the samples it never saw
    own = evaluate(three[0], digits.train.subset(shards[0])).loss
    other = evaluate(three[0], digits.train.subset(shards[1])).loss
    assert own < other
    probas = member_probas(three, digits.test, device="cpu")
    assert probas.shape == (3, len(digits.test), 10)
    assert torch.allclose(probas.sum(2), torch.ones(3, len(digits.test)))
    # the ensemble is no worse than its weakest member
    member_acc = [evaluate(m, digits.test).accuracy for m in three]
    assert accuracy(probas, digits.test.y, "average") >= min(member_acc)
    assert accuracy(probas, digits.test.y, "average") > 0.85


def test_bagging_is_reproducible(digits):
    make = lambda: build_model("mlp", digits.input_shape, digits.num_classes)  # noqa: E731
    small = LabelledData(digits.train.x[:300], digits.train.y[:300])
    runs = [bagging(make, small, 2, seed=1, epochs=1, device="cpu") for _ in range(2)]
    for a, b in zip(runs[0], runs[1]):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(runs[0][0].parameters()), next(runs[0][1].parameters()))


def test_public_api_names():
    for name in ("vote_shares", "average_posteriors", "aggregate", "predict", "member_probas"):
        assert name in ensemble.__all__
