"""The anamnesis index (AIN) of zero-shot unlearning, on constructed models whose relearning
speed is known in advance."""

import math

import pytest
import torch
from torch import nn

from unlearnlib.data import LabelledData
from unlearnlib.metrics import (
    AnamnesisIndex,
    anamnesis_index,
    relearn_steps,
    relearn_target,
)


def _blob(n, label, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen) * 0.3 + torch.tensor([2.0, 2.0])
    return LabelledData(x, torch.full((n,), label, dtype=torch.long))


def _linear(bias_class0: float):
    """A 2-class linear model that predicts class 0 everywhere until it has moved its bias
    by about ``bias_class0``: the larger the bias, the more relearning steps class 1 needs."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([bias_class0, 0.0]))
    return model


class _Stuck(nn.Module):
    """Always predicts class 0; its one parameter has no effect, so it can never relearn."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.tensor([5.0, 0.0]).expand(x.shape[0], 2) + 0 * self.unused


class _Knows(nn.Module):
    """Always predicts class 1: the 'original' model, perfect on the forget class."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.tensor([0.0, 5.0]).expand(x.shape[0], 2) + 0 * self.unused


RELEARN = _blob(512, 1, 0)
VAL = _blob(100, 1, 1)


def test_relearn_target_relative_and_absolute():
    assert relearn_target(0.9, 0.05) == pytest.approx(0.855)
    assert relearn_target(0.9, 0.05, mode="relative") == pytest.approx(0.855)
    assert relearn_target(0.9, 0.05, mode="absolute") == pytest.approx(0.85)
    assert relearn_target(1.0, 0.0) == 1.0
    for bad in (dict(alpha=1.0), dict(alpha=-0.1), dict(mode="percent")):
        with pytest.raises(ValueError):
            relearn_target(0.9, **bad)
    with pytest.raises(ValueError, match="fraction"):
        relearn_target(95.0)


def test_relearn_steps_counts_until_the_target_and_leaves_the_model_alone():
    model = _linear(3.0)
    before = [p.detach().clone() for p in model.parameters()]
    result = relearn_steps(model, RELEARN, VAL, 0.95, lr=0.1, batch_size=64, max_steps=200)
    assert result.relearned and result.steps >= 2
    # the trace has one accuracy before the first step and one after every step, and the
    # count stops at the first step that reaches the target
    assert len(result.accuracies) == result.steps + 1
    assert result.accuracies[-1] >= 0.95 and max(result.accuracies[:-1]) < 0.95
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_model_already_at_target_needs_zero_steps():
    result = relearn_steps(_Knows(), RELEARN, VAL, 0.95)
    assert result.steps == 0 and result.accuracies == (1.0,)


def test_relearn_steps_is_deterministic_for_a_seed():
    a = relearn_steps(_linear(3.0), RELEARN, VAL, 0.95, lr=0.1, batch_size=64, seed=3)
    b = relearn_steps(_linear(3.0), RELEARN, VAL, 0.95, lr=0.1, batch_size=64, seed=3)
    assert a == b


def test_ain_is_the_ratio_of_relearning_steps():
    fast, slow = _linear(1.0), _linear(6.0)
    ain = anamnesis_index(fast, slow, _Knows(), RELEARN, VAL, lr=0.1, batch_size=64, max_steps=300)
    r_u = relearn_steps(fast, RELEARN, VAL, 0.95, lr=0.1, batch_size=64, max_steps=300).steps
    r_s = relearn_steps(slow, RELEARN, VAL, 0.95, lr=0.1, batch_size=64, max_steps=300).steps
    assert 0 < r_u < r_s
    assert ain.defined and ain.status == "ok"
    assert ain.value == pytest.approx(r_u / r_s) and float(ain) < 1
    assert ain.original_accuracy == 1.0 and ain.target == pytest.approx(0.95)
    assert format(ain, ".2f") == f"{r_u / r_s:.2f}"
    # swapped roles: the "unlearned" model is harder to teach than the gold model
    assert float(anamnesis_index(slow, fast, _Knows(), RELEARN, VAL, lr=0.1, batch_size=64,
                                 max_steps=300)) == pytest.approx(r_s / r_u)


def test_never_relearning_is_reported_not_disguised_as_a_number():
    ain = anamnesis_index(_Stuck(), _linear(1.0), _Knows(), RELEARN, VAL, lr=0.1, batch_size=64,
                          max_steps=40)
    assert not ain.defined and ain.status == "unlearned never relearned"
    assert math.isinf(ain.value) and ain.unlearned.steps is None
    assert ain.lower_bound == pytest.approx(40 / ain.retrained.steps)
    assert "did not relearn within 40 steps" in str(ain)
    assert format(ain, ".1f").startswith(">") and "never" in format(ain, ".1f")


def test_a_gold_model_that_never_relearns_makes_the_index_undefined():
    ain = anamnesis_index(_linear(1.0), _Stuck(), _Knows(), RELEARN, VAL, lr=0.1, max_steps=10)
    assert math.isnan(ain.value) and ain.status == "retrained never relearned"
    assert "undefined" in str(ain) and format(ain, ".2f") == "n/a"
    ain = anamnesis_index(_linear(1.0), _Knows(), _Knows(), RELEARN, VAL, max_steps=10)
    assert math.isnan(ain.value) and ain.status == "retrained at target without relearning"


def test_absolute_mode_uses_accuracy_points():
    ain = anamnesis_index(_linear(1.0), _linear(6.0), _Knows(), RELEARN, VAL, alpha=0.2,
                          mode="absolute", lr=0.1, batch_size=64)
    assert ain.target == pytest.approx(0.8) and ain.mode == "absolute"


def test_bad_inputs():
    with pytest.raises(ValueError, match="relearn_data"):
        relearn_steps(_linear(1.0), torch.zeros(4, 2), VAL, 0.9)
    with pytest.raises(ValueError, match="max_steps"):
        relearn_steps(_linear(1.0), RELEARN, VAL, 0.9, max_steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        relearn_steps(_linear(1.0), RELEARN, VAL, 0.9, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        relearn_steps(_linear(1.0), RELEARN, LabelledData(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), 0.9)
    with pytest.raises(ValueError, match="retrained"):
        anamnesis_index(_linear(1.0), "gold", _Knows(), RELEARN, VAL)
    with pytest.raises(ValueError, match="alpha"):
        anamnesis_index(_linear(1.0), _linear(2.0), _Knows(), RELEARN, VAL, alpha=1.5)
    with pytest.raises(ValueError, match="mode"):
        anamnesis_index(_linear(1.0), _linear(2.0), _Knows(), RELEARN, VAL, mode="additive")
    assert isinstance(anamnesis_index(_linear(1.0), _linear(2.0), _Knows(), RELEARN, VAL, lr=0.1),
                      AnamnesisIndex)
