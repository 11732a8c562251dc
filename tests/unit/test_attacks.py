"""unlearnlib.attacks: the three membership-inference conventions and model inversion."""

import pytest
import torch
from torch import nn

from unlearnlib.attacks import (
    MIAResult,
    mia_confidence_nonmember_rate,
    mia_entropy_member_rate,
    mia_loss_attack_accuracy,
    model_inversion,
    softmax_entropy,
    true_class_confidence,
)
from unlearnlib.data import LabelledData
from unlearnlib.models import build_model
from unlearnlib.training import fit, seed_everything

NUM_CLASSES = 5


class TableModel(nn.Module):
    """A classifier whose confidence depends only on whether it 'trained' on a sample.

    Input ``x`` (N, 1, 1, 2) carries the sample's label in ``x[..., 0]`` and its id in
    ``x[..., 1]``. On ids in ``members`` the true class gets a probability in [0.95, 1),
    on any other id one in [0.45, 0.85) (spread by a hash of the id), so a model that
    memorised a set is confident on it and less confident on unseen data.
    """

    def __init__(self, members):
        super().__init__()
        self.register_buffer("members", torch.as_tensor(members, dtype=torch.long))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        y = x[:, 0, 0, 0].long()
        ids = x[:, 0, 0, 1].long()
        spread = ((ids * 7919) % 101).float() / 101.0
        member = torch.isin(ids, self.members)
        conf = torch.where(member, 0.95 + 0.049 * spread, 0.45 + 0.4 * spread)
        proba = ((1 - conf) / (NUM_CLASSES - 1))[:, None].expand(-1, NUM_CLASSES).clone()
        proba[torch.arange(len(y)), y] = conf
        return proba.log() + 0 * self.dummy


def _samples(ids):
    ids = torch.as_tensor(list(ids))
    y = ids % NUM_CLASSES
    x = torch.stack([y.float(), ids.float()], dim=1).view(-1, 1, 1, 2)
    return LabelledData(x, y)


RETAIN, TEST, FORGET = range(0, 600), range(600, 800), range(800, 1000)


@pytest.fixture(scope="module")
def sets():
    return dict(retain=_samples(RETAIN), test=_samples(TEST), forget=_samples(FORGET))


@pytest.fixture(scope="module")
def memorising():
    """Trained on retain and forget: still remembers D_f."""
    return TableModel(list(RETAIN) + list(FORGET))


@pytest.fixture(scope="module")
def not_memorising():
    """Trained on retain only (like the retrained model): D_f looks like test data."""
    return TableModel(list(RETAIN))


def test_features():
    proba = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(softmax_entropy(proba), torch.tensor([0.0, 0.6931471805599453], dtype=torch.float64))
    torch.testing.assert_close(true_class_confidence(proba, torch.tensor([1, 0])),
                               torch.tensor([0.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="do not match"):
        true_class_confidence(proba, torch.tensor([0, 1, 1]))


def test_entropy_member_rate_separates_and_is_oriented(sets, memorising, not_memorising):
    remembered = mia_entropy_member_rate(memorising, **sets)
    forgotten = mia_entropy_member_rate(not_memorising, **sets)
    assert isinstance(remembered, MIAResult) and remembered.name == "mia_entropy_member_rate"
    assert "judged member; lower = more forgetting" in remembered.orientation
    # orientation: share of D_f judged MEMBER, so remembering gives a high value
    assert float(remembered) > 0.9
    assert float(forgotten) < 0.1
    assert remembered.n_forget == len(FORGET)


def test_confidence_nonmember_rate_separates_and_is_oriented(sets, memorising, not_memorising):
    remembered = mia_confidence_nonmember_rate(memorising, **sets)
    forgotten = mia_confidence_nonmember_rate(not_memorising, **sets)
    assert "judged non-member; higher = more forgetting" in remembered.orientation
    # orientation: share of D_f judged NON-member, so forgetting gives a high value
    assert float(remembered) < 0.1
    assert float(forgotten) > 0.9


def test_loss_attack_accuracy_separates_and_is_oriented(sets, memorising, not_memorising):
    remembered = mia_loss_attack_accuracy(memorising, forget=sets["forget"], test=sets["test"])
    forgotten = mia_loss_attack_accuracy(not_memorising, forget=sets["forget"], test=sets["test"])
    assert "0.5 = indistinguishable" in remembered.orientation
    # orientation: attack accuracy, about 0.5 when D_f cannot be told from unseen data
    assert float(remembered) > 0.95
    assert 0.3 < float(forgotten) < 0.7
    again = mia_loss_attack_accuracy(not_memorising, forget=sets["forget"], test=sets["test"])
    assert float(again) == float(forgotten)


def test_mia_bad_inputs(sets, memorising):
    with pytest.raises(ValueError, match="LabelledData"):
        mia_entropy_member_rate(memorising, retain=sets["retain"].x, test=sets["test"], forget=sets["forget"])
    empty = LabelledData(torch.zeros(0, 1, 1, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        mia_confidence_nonmember_rate(memorising, retain=sets["retain"], test=empty, forget=sets["forget"])
    with pytest.raises(ValueError, match="at least 10"):
        mia_loss_attack_accuracy(memorising, forget=_samples(range(900, 905)), test=sets["test"])
    with pytest.raises(ValueError, match="folds"):
        mia_loss_attack_accuracy(memorising, forget=sets["forget"], test=sets["test"], folds=1)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        mia_entropy_member_rate(lambda x: x, **sets)


# --------------------------------------------------------------------- model inversion


@pytest.fixture(scope="module")
def digits_model(digits):
    seed_everything(0)
    model = build_model("mlp", digits.input_shape, 10)
    fit(model, digits.train, epochs=6, lr=1e-2, device="cpu")
    return model


def test_model_inversion_raises_the_target_class_score(digits_model, digits):
    before = [p.clone() for p in digits_model.parameters()]
    result = model_inversion(digits_model, digits.input_shape, steps=60, lr=0.1)
    assert result.images.shape == (10, *digits.input_shape)
    assert result.classes == tuple(range(10))
    assert (result.final_proba > result.start_proba).all()
    assert result.final_proba.min() > 0.9
    assert result.images.min() >= 0 and result.images.max() <= 1
    # the attacked model is left as it was, parameters still trainable
    assert all(torch.equal(a, b) for a, b in zip(before, digits_model.parameters()))
    assert all(p.requires_grad for p in digits_model.parameters()) and digits_model.training


def test_model_inversion_variants_and_subsets(digits_model, digits):
    one = model_inversion(digits_model, digits.input_shape, classes=[3], steps=40, cost="one_minus_p",
                          init="noise", seed=1)
    assert one.classes == (3,) and one.images.shape[0] == 1
    assert one.final_proba[0] > one.start_proba[0]
    again = model_inversion(digits_model, digits.input_shape, classes=[3], steps=40, cost="one_minus_p",
                            init="noise", seed=1)
    assert torch.equal(one.images, again.images)


def test_model_inversion_bad_inputs(digits_model, digits):
    shape = digits.input_shape
    with pytest.raises(ValueError, match="classes"):
        model_inversion(digits_model, shape, classes=[10])
    with pytest.raises(ValueError, match="cost"):
        model_inversion(digits_model, shape, cost="mse")
    with pytest.raises(ValueError, match="init"):
        model_inversion(digits_model, shape, init="ones")
    with pytest.raises(ValueError, match="bounds"):
        model_inversion(digits_model, shape, bounds=(1, 0))
    with pytest.raises(ValueError, match="input_shape"):
        model_inversion(digits_model, (64,))
    with pytest.raises(ValueError, match="steps"):
        model_inversion(digits_model, shape, steps=0)
