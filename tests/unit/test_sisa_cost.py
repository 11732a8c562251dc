"""SISA's cost model: the slice schedule, the closed forms of the expected retraining cost,
and the request simulator checked against them."""

import numpy as np
import pytest

from unlearnlib import sisa_cost as sc


@pytest.mark.parametrize("epochs, slices, expected, work", [
    (20, 1, [20], 20.0),
    (20, 5, [6, 7, 7, 6, 7], 20.0),
    (20, 10, [3, 4, 3, 4, 4, 3, 4, 4, 3, 4], 20.1),
])
def test_stage_epochs_match_the_reference_schedule(epochs, slices, expected, work):
    e = sc.stage_epochs(epochs, slices)
    assert e == expected
    # work in shard-epochs: stage l (1-based) sees l/R of the shard
    assert sum(el * (l + 1) for l, el in enumerate(e)) / slices == pytest.approx(work)


def test_stage_epochs_keep_the_total_work_near_e_epochs():
    e = sc.stage_epochs(100, 20)
    assert set(e) == {9, 10}
    for epochs in range(0, 40):
        for slices in range(1, 12):
            e = sc.stage_epochs(epochs, slices)
            assert len(e) == slices and min(e) >= 0
            # integer floors: cumulative epochs never drift more than one from l * 2e/(R+1)
            cumulative = np.cumsum(e)
            ideal = np.arange(1, slices + 1) * sc.average_stage_epochs(epochs, slices)
            assert np.all(ideal - cumulative >= -1e-9) and np.all(ideal - cumulative < 1)
            assert sc.training_cost(np.full(slices, 6), epochs) == pytest.approx(
                6 * slices * epochs, abs=6 * slices)


def test_single_request_closed_form():
    n, e = 12000, 10
    for s in (1, 3, 20):
        for r in (1, 2, 5, 10):
            cost = sc.expected_cost(n, s, r, e, 1)
            assert cost == pytest.approx(e * n * (2 * r + 1) / (3 * r * s))
            assert sc.expected_speedup(s, r) == pytest.approx(3 * r * s / (2 * r + 1))
    # slicing alone buys at most 1.5x
    assert sc.expected_speedup(1, 5) == pytest.approx(15 / 11)


@pytest.mark.parametrize("s, r, k, ratio", [
    (20, 10, 1, 0.035), (20, 10, 10, 0.29), (20, 10, 100, 0.93), (5, 5, 5, 0.53),
])
def test_batched_cost_matches_the_reference_numbers(s, r, k, ratio):
    n, e = 10000, 20
    assert sc.expected_cost(n, s, r, e, k) / (e * n) == pytest.approx(ratio, abs=0.005)


def test_sharding_only_batched_cost_is_the_share_of_shards_hit():
    n, e, s = 5000, 4, 20
    for k, share in [(1, 0.05), (5, 0.23), (10, 0.40), (20, 0.64), (50, 0.92), (100, 0.99)]:
        cost = sc.expected_cost(n, s, 1, e, k)
        assert cost == pytest.approx(e * n * (1 - (1 - 1 / s) ** k))
        assert cost / (e * n) == pytest.approx(share, abs=0.006)


def test_sequential_cost_is_k_single_requests():
    assert sc.expected_cost(1000, 4, 3, 6, 7, mode="sequential") == pytest.approx(
        7 * sc.expected_cost(1000, 4, 3, 6, 1))
    # the batched cost can never exceed the sequential one
    for k in (1, 2, 10, 50):
        assert sc.expected_cost(1000, 4, 3, 6, k) <= sc.expected_cost(1000, 4, 3, 6, k, mode="sequential") + 1e-9


def test_exact_formula_equals_closed_form_when_the_schedule_is_integral():
    # e = 3, R = 5: 2e/(R+1) = 1 epoch per stage exactly
    sizes = np.full((4, 5), 50)
    assert sc.stage_epochs(3, 5) == [1, 1, 1, 1, 1]
    for k in (1, 3, 17):
        assert sc.expected_cost_for_split(sizes, 3, k) == pytest.approx(sc.expected_cost(1000, 4, 5, 3, k))


def test_batch_cost_counts_remaining_samples_from_the_first_hit_slice():
    sizes = np.array([[3, 3, 3], [2, 2, 2]])
    # e = 4, R = 3: schedule [2, 2, 2]
    assert sc.stage_epochs(4, 3) == [2, 2, 2]
    # one deletion in slice 1 of shard 0: stages 1 and 2 on 5 and 8 remaining samples
    assert sc.batch_cost(sizes, 4, [0], [1]) == 2 * 5 + 2 * 8
    # a second deletion in slice 2 of the same shard costs nothing more to restart
    assert sc.batch_cost(sizes, 4, [0, 0], [1, 2]) == 2 * 5 + 2 * 7
    # a deletion in shard 1, slice 0: all three stages of shard 1
    assert sc.batch_cost(sizes, 4, [0, 1], [1, 0]) == 2 * 5 + 2 * 8 + 2 * (1 + 3 + 5)
    assert sc.retraining_cost([3, 2, 3], 4, 1) == 2 * 5 + 2 * 8
    with pytest.raises(ValueError, match="more deletions"):
        sc.batch_cost(sizes, 4, [1, 1, 1], [0, 0, 0])


def _z(sim, expected, slack=0.0):
    return abs(sim.mean - expected) - slack, sim.stderr


def test_simulator_agrees_with_the_formulas_uniform():
    sizes = np.full((5, 4), 2000)  # N = 40,000: deletions shrink stages negligibly
    e = 7
    for k in (1, 4, 20):
        formula = sc.expected_cost_for_split(sizes, e, k)
        sim = sc.simulate_requests(sizes, e, k, trials=3000, replacement=True, seed=k)
        slack = k * e * 4  # at most k samples fewer per retrained stage
        diff, se = _z(sim, formula, slack)
        assert diff <= 4 * se, (k, sim.mean, formula, se)
        # the closed form uses 2e/(R+1) = 2.8 instead of the integer schedule [2, 3, 3, 3]
        closed = sc.expected_cost(40000, 5, 4, e, k)
        assert formula == pytest.approx(closed, rel=0.06)
    assert sim.full_cost == sc.training_cost(sizes, e)
    assert sim.speedup == pytest.approx(sim.full_cost / sim.mean)


def test_simulator_without_replacement_agrees_with_the_hypergeometric_formula():
    sizes = np.full((3, 3), 20)  # small N: replacement matters
    e = 4
    k = 30
    with_rep = sc.expected_cost_for_split(sizes, e, k, replacement=True)
    without = sc.expected_cost_for_split(sizes, e, k, replacement=False)
    assert without > with_rep  # distinct requests spread over more shards
    sim = sc.simulate_requests(sizes, e, k, trials=4000, replacement=False, seed=1)
    # each of the k deletions shrinks at most the stages after it by e_l samples
    diff, se = _z(sim, without, slack=k * max(sc.stage_epochs(e, 3)) * 3)
    assert diff <= 4 * se


def test_simulator_agrees_with_the_formula_for_skewed_requests():
    sizes = np.array([[400, 400, 400], [100, 700, 400], [300, 300, 600]])
    n = sizes.sum()
    probs = sc.request_distribution("pareto", n)
    assert probs[0] > 100 * probs[-1]
    slice_probs = np.add.reduceat(probs, np.r_[0, np.cumsum(sizes.ravel())[:-1]]).reshape(sizes.shape)
    for k in (1, 5):
        formula = sc.expected_cost_for_split(sizes, 9, k, request_probs=slice_probs)
        sim = sc.simulate_requests(sizes, 9, k, request_probs=probs, trials=3000, replacement=True, seed=3)
        diff, se = _z(sim, formula, slack=k * 9 * 3)
        assert diff <= 4 * se
    # skew towards the first samples (shard 0, slice 0) makes requests costlier than uniform
    uniform = sc.expected_cost_for_split(sizes, 9, 1)
    assert sc.expected_cost_for_split(sizes, 9, 1, request_probs=slice_probs) > uniform


def test_sequential_simulation_agrees_with_k_single_requests():
    sizes = np.full((4, 5), 1000)
    k, e = 6, 10
    sim = sc.simulate_requests(sizes, e, k, mode="sequential", trials=2000, seed=2)
    single = sc.expected_cost_for_split(sizes, e, 1)
    diff, se = _z(sim, k * single, slack=k * k * e * 5)
    assert diff <= 4 * se
    batched = sc.simulate_requests(sizes, e, k, mode="batched", trials=2000, seed=2)
    assert batched.mean < sim.mean


def test_request_distributions():
    for kind in ("uniform", "exponential", "pareto"):
        p = sc.request_distribution(kind, 1000)
        assert p.shape == (1000,) and p.min() >= 0 and p.sum() == pytest.approx(1.0)
    exp = sc.request_distribution("exponential", 1000)
    assert exp[0] / exp[-1] == pytest.approx(20, rel=0.05)  # rate -ln(0.05)/N
    with pytest.raises(ValueError, match="unknown request distribution"):
        sc.request_distribution("zipf", 10)


def test_bad_input():
    with pytest.raises(ValueError, match="num_slices"):
        sc.stage_epochs(10, 0)
    with pytest.raises(ValueError, match="epochs"):
        sc.stage_epochs(-1, 3)
    with pytest.raises(ValueError, match="mode"):
        sc.expected_cost(100, 2, 2, 3, 1, mode="parallel")
    with pytest.raises(ValueError, match="num_requests"):
        sc.expected_cost(100, 2, 2, 3, 0)
    with pytest.raises(ValueError, match="shape"):
        sc.simulate_requests(np.full((2, 2), 5), 3, 1, request_probs=np.ones(7) / 7)
    with pytest.raises(ValueError, match="distinct"):
        sc.simulate_requests(np.full((2, 2), 2), 3, 9)
    with pytest.raises(ValueError, match="sum to 1"):
        sc.expected_cost_for_split(np.full((2, 2), 5), 3, 1, request_probs=np.ones((2, 2)))
    with pytest.raises(ValueError, match="first_stage"):
        sc.retraining_cost([1, 2], 3, 2)
    with pytest.raises(ValueError, match="integers"):
        sc.training_cost(np.full((2, 2), 1.5), 3)
