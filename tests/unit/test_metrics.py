"""unlearnlib.metrics: accuracies, ZRF (textbook and legacy), activation distance, compare."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearnlib import attacks, metrics
from unlearnlib.data import LabelledData, class_forget_split, random_forget_split
from unlearnlib.metrics import (
    EvaluationData,
    accuracy_metrics,
    activation_distance,
    compare,
    js_divergence,
    js_divergence_legacy,
    zrf_score,
    zrf_score_legacy,
)
from unlearnlib.models import build_model
from unlearnlib.training import fit, seed_everything


class FixedOutput(nn.Module):
    """Returns the same logits for every input (one row per input)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) + 0 * self.dummy


def _rand_proba(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, generator=g).double().softmax(1)


# ------------------------------------------------------------------- JS divergences


def test_js_divergence_matches_scipy_and_its_properties():
    from scipy.spatial.distance import jensenshannon

    p, q = _rand_proba(20, 5, 0), _rand_proba(20, 5, 1)
    js = js_divergence(p, q)
    expected = np.array([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    np.testing.assert_allclose(js.numpy(), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(js, js_divergence(q, p))
    assert js_divergence(p, p).abs().max() < 1e-12
    one_hot = torch.eye(4, dtype=torch.float64)
    disjoint = js_divergence(one_hot, one_hot.roll(1, dims=1))
    torch.testing.assert_close(disjoint, torch.full((4,), math.log(2), dtype=torch.float64))


def test_legacy_js_is_the_bad_teacher_formula_not_the_textbook_one():
    p, q = _rand_proba(16, 10, 2), _rand_proba(16, 10, 3)
    m = (p + q) / 2
    # the published code: reversed KL directions and the default 'mean' reduction (over N*C)
    by_hand = 0.5 * (m * (m.log() - p.log())).mean() + 0.5 * (m * (m.log() - q.log())).mean()
    torch.testing.assert_close(js_divergence_legacy(p, q), by_hand)
    kl_mp = (m * (m / p).log()).sum(1)
    kl_mq = (m * (m / q).log()).sum(1)
    torch.testing.assert_close(js_divergence_legacy(p, q), (0.5 * (kl_mp + kl_mq)).mean() / 10)
    assert not torch.isclose(js_divergence_legacy(p, q), js_divergence(p, q).mean())


def test_js_rejects_non_probabilities():
    p = _rand_proba(3, 4, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        js_divergence(p, p * 2)
    with pytest.raises(ValueError, match="shape"):
        js_divergence(p, p[:, :3])
    with pytest.raises(ValueError, match="non-negative"):
        js_divergence_legacy(p - 1, p)


# -------------------------------------------------------------------------------- ZRF


@pytest.fixture(scope="module")
def trained_mlp(digits):
    seed_everything(0)
    model = build_model("mlp", digits.input_shape, 10)
    fit(model, digits.train, epochs=8, lr=1e-2, device="cpu")
    return model


def test_zrf_of_a_model_against_itself_is_one(trained_mlp, digits):
    assert zrf_score(trained_mlp, trained_mlp, digits.test) == pytest.approx(1.0, abs=1e-9)
    assert zrf_score_legacy(trained_mlp, trained_mlp, digits.test) == pytest.approx(1.0, abs=1e-9)


def test_zrf_against_a_random_model_is_low_for_a_trained_model(trained_mlp, digits):
    torch.manual_seed(5)
    random_net = build_model("mlp", digits.input_shape, 10)
    torch.manual_seed(6)
    other_random = build_model("mlp", digits.input_shape, 10)
    trained = zrf_score(trained_mlp, random_net, digits.test)
    untrained = zrf_score(other_random, random_net, digits.test)
    # textbook ZRF lies in [1 - ln 2, 1]; a confident trained model is far from a random one
    assert 1 - math.log(2) - 1e-9 <= trained < 0.7
    assert untrained > 0.95
    legacy = zrf_score_legacy(trained_mlp, random_net, digits.test)
    assert legacy != pytest.approx(trained, abs=1e-3)


def test_zrf_bad_inputs(trained_mlp, digits):
    with pytest.raises(ValueError, match="incompetent"):
        zrf_score(trained_mlp, "not a model", digits.test)
    with pytest.raises(ValueError, match="LabelledData or a tensor"):
        zrf_score(trained_mlp, trained_mlp, [1, 2, 3])


# ---------------------------------------------------------------- activation distance


def test_activation_distance_on_constructed_outputs():
    a = FixedOutput([0.0, 0.0])           # softmax (0.5, 0.5)
    b = FixedOutput([math.log(3.0), 0.0])  # softmax (0.75, 0.25)
    x = torch.zeros(7, 1, 1, 1)
    assert activation_distance(a, a, x) == pytest.approx(0.0, abs=1e-12)
    assert activation_distance(a, b, x) == pytest.approx(math.sqrt(2) * 0.25, rel=1e-6)
    assert activation_distance(a, b, x, p=1) == pytest.approx(0.5, rel=1e-6)
    assert activation_distance(a, b, x) == pytest.approx(activation_distance(b, a, x))
    far = FixedOutput([50.0, -50.0]), FixedOutput([-50.0, 50.0])
    assert activation_distance(*far, x) == pytest.approx(math.sqrt(2), rel=1e-6)


def test_activation_distance_bad_inputs():
    a, c3 = FixedOutput([0.0, 0.0]), FixedOutput([0.0, 0.0, 0.0])
    x = torch.zeros(2, 1, 1, 1)
    with pytest.raises(ValueError, match="number of classes"):
        activation_distance(a, c3, x)
    with pytest.raises(ValueError, match="at least 1"):
        activation_distance(a, a, x, p=0.5)


# ------------------------------------------------------------------------- accuracies


def test_evaluation_data_and_accuracies_for_class_and_random_splits(trained_mlp, digits):
    split = class_forget_split(digits, [3, 5])
    data = EvaluationData.from_split(digits, split)
    assert data.class_wise and data.classes == (3, 5)
    assert not torch.isin(data.test.y, torch.tensor([3, 5])).any()
    assert torch.isin(data.test_forget.y, torch.tensor([3, 5])).all()
    acc = accuracy_metrics(trained_mlp, data)
    assert set(acc) == {"retain_acc", "forget_acc", "test_acc", "forget_test_acc"}
    assert all(0.8 < v <= 1.0 for v in acc.values()), acc
    rsplit = random_forget_split(digits, fraction=0.1, seed=0)
    rdata = EvaluationData.from_split(digits, rsplit)
    assert rdata.test_forget is None and len(rdata.test) == len(digits.test)
    assert "forget_test_acc" not in accuracy_metrics(trained_mlp, rdata)
    with pytest.raises(ValueError, match="ForgetSplit"):
        EvaluationData.from_split(digits, (1, 2))
    with pytest.raises(ValueError, match="empty"):
        EvaluationData(data.retain, LabelledData(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), data.test)


def test_evaluate_unlearning_collects_every_metric(trained_mlp, digits):
    split = class_forget_split(digits, 3)
    data = EvaluationData.from_split(digits, split)
    out = metrics.evaluate_unlearning(trained_mlp, data, retrained=trained_mlp, incompetent=trained_mlp)
    for key in ("retain_acc", "mia_entropy_member_rate", "mia_loss_attack_accuracy",
                "mia_confidence_nonmember_rate", "zrf", "zrf_legacy", "activation_distance"):
        assert key in out
    assert out["activation_distance"] == pytest.approx(0.0, abs=1e-12)
    assert out["zrf"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown MIA variant"):
        metrics.evaluate_unlearning(trained_mlp, data, mia=("shadow",))


# ----------------------------------------------------------------------------- compare


def _results():
    return {
        "Retrain": {"retain_acc": 0.99, "forget_acc": 0.95, "mia_confidence_nonmember_rate": 0.10,
                    "mia_entropy_member_rate": 0.80, "seconds": 10.0},
        "Original": {"retain_acc": 1.00, "forget_acc": 1.00, "mia_confidence_nonmember_rate": 0.01,
                     "mia_entropy_member_rate": 0.99, "seconds": 0.0},
        "Ascent": {"retain_acc": 0.70, "forget_acc": 0.60, "mia_confidence_nonmember_rate": 0.45,
                   "mia_entropy_member_rate": 0.50, "seconds": 0.5},
        "Close": {"retain_acc": 0.985, "forget_acc": 0.94, "mia_confidence_nonmember_rate": 0.11,
                  "mia_entropy_member_rate": 0.79, "seconds": 1.0},
    }


def test_compare_reports_gaps_to_the_retrained_model():
    table = compare(_results())
    assert table.reference == "Retrain"
    assert table.gaps["Original"]["forget_acc"] == pytest.approx(0.05)
    assert table.gaps["Retrain"]["retain_acc"] == pytest.approx(0.0)
    assert table.avg_gap("Retrain") == pytest.approx(0.0)
    assert table.avg_gap("Close") < table.avg_gap("Ascent")
    text = str(table)
    assert "reference: Retrain" in text
    assert "share of D_f judged NON-MEMBER; higher = more forgetting" in text
    assert "share of D_f judged MEMBER; lower = more forgetting" in text
    assert "0.600 (-0.350)" in text
    assert list(table.to_frame().index) == ["Retrain", "Original", "Ascent", "Close"]


def test_compare_warns_on_over_unlearning_and_collapse_only():
    table = compare(_results(), collapse_drop=0.2)
    joined = "\n".join(table.warnings)
    assert "Ascent: over-unlearning on D_f" in joined
    assert "Ascent: over-unlearning on MIA-conf" in joined
    assert "Ascent: over-unlearning on MIA-ent" in joined
    assert "Ascent: D_r collapsed" in joined
    assert "Close" not in joined and "Original" not in joined
    assert "WARNING: Ascent" in str(table)
    quiet = compare(_results(), tolerance=0.5, collapse_drop=0.5)
    assert quiet.warnings == []


def test_compare_bad_inputs():
    with pytest.raises(ValueError, match="retrained model"):
        compare({"A": {"retain_acc": 1.0}})
    with pytest.raises(ValueError, match="no result has the column"):
        compare(_results(), columns=["retain_acc", "zrf"])
    with pytest.raises(ValueError, match="no results"):
        compare({})
    with pytest.raises(ValueError, match="tolerance"):
        compare(_results(), tolerance=2)


def test_compare_shows_missing_values_and_never_relearned():
    res = _results()
    res["Close"]["ain"] = float("inf")
    res["Retrain"]["ain"] = 1.0
    table = compare(res, columns=["retain_acc", "ain"])
    text = str(table)
    assert "never" in text
    assert table.rows["Original"]["ain"] is None


def test_compare_lets_result_objects_format_themselves():
    class Never:
        def __float__(self):
            return float("inf")

        def __format__(self, spec):
            return ">5.00 (never)"

    res = _results()
    res["Retrain"]["ain"] = 1.0
    res["Close"]["ain"] = Never()
    res["Ascent"]["ain"] = float("nan")
    table = compare(res, columns=["ain"])
    text = str(table)
    assert ">5.00 (never)" in text and "n/a" in text
    assert table.rows["Close"]["ain"] == float("inf") and table.gaps["Close"]["ain"] is None


def test_anamnesis_indices_match_one_call_per_model(trained_mlp, digits):
    split = class_forget_split(digits, 3)
    seed_everything(1)
    retrained = build_model("mlp", digits.input_shape, 10)
    fit(retrained, digits.train.subset(split.retain), epochs=4, lr=1e-2, device="cpu")
    relearn, val = digits.train.subset(split.forget), digits.test.subset(split.test_forget)
    models = {"original": trained_mlp, "retrained": retrained, "random": build_model("mlp", digits.input_shape, 10)}
    batch = metrics.anamnesis_indices(models, retrained, trained_mlp, relearn, val, batch_size=32, max_steps=60, lr=1e-2)
    for name, model in models.items():
        single = metrics.anamnesis_index(model, retrained, trained_mlp, relearn, val, batch_size=32, max_steps=60, lr=1e-2)
        assert batch[name].status == single.status
        assert batch[name].unlearned.steps == single.unlearned.steps
        assert batch[name].retrained.steps == single.retrained.steps
    assert batch["retrained"].value == 1.0
    assert batch["original"].value < 1.0 or batch["original"].status != "ok"
    with pytest.raises(ValueError, match="no models"):
        metrics.anamnesis_indices({}, retrained, trained_mlp, relearn, val)


def test_measure_methods_rows_match_the_single_metrics(trained_mlp, digits):
    split = class_forget_split(digits, 3)
    seed_everything(1)
    retrained = build_model("mlp", digits.input_shape, 10)
    fit(retrained, digits.train.subset(split.retain), epochs=4, lr=1e-2, device="cpu")
    data = EvaluationData.from_split(digits, split)
    models = {"Original": trained_mlp, "Other": build_model("mlp", digits.input_shape, 10), "Retrain": retrained}
    rows = metrics.measure_methods(models, data, seconds={"Retrain": 2.5}, ain_max_steps=30, ain_lr=1e-2)
    assert list(rows) == ["Retrain", "Original", "Other"]  # the reference first, whatever the input order
    for name, model in models.items():
        acc = metrics.accuracy_metrics(model, data)
        assert {k: rows[name][k] for k in acc} == acc
        mia = attacks.mia_entropy_member_rate(model, retain=data.retain, test=data.test, forget=data.forget,
                                              max_samples=len(data.test), seed=0)
        assert rows[name]["mia_entropy_member_rate"] == float(mia)
    assert rows["Retrain"]["ain"].value == 1.0 and rows["Retrain"]["seconds"] == 2.5
    assert "seconds" not in rows["Original"]
    assert rows["Original"]["forget_test_acc"] > 0.9 and rows["Retrain"]["forget_test_acc"] == 0.0
    str(compare(rows))  # the rows are what compare() takes


def test_measure_methods_bad_inputs(trained_mlp, digits):
    data = EvaluationData.from_split(digits, class_forget_split(digits, 3))
    with pytest.raises(ValueError, match="no retrained model 'Retrain'"):
        metrics.measure_methods({"Original": trained_mlp}, data)
    with pytest.raises(ValueError, match="no original model 'Original'"):
        metrics.measure_methods({"Retrain": trained_mlp}, data)
    random_data = EvaluationData.from_split(digits, random_forget_split(digits, fraction=0.1, seed=0))
    with pytest.raises(ValueError, match="class-wise request"):
        metrics.measure_methods({"Retrain": trained_mlp, "Original": trained_mlp}, random_data)
