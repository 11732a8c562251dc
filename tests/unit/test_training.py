import pytest
import torch

from unlearnlib import training
from unlearnlib.data import LabelledData
from unlearnlib.models import build_model
from unlearnlib.training import (
    evaluate,
    fit,
    get_device,
    per_sample_loss,
    predict_proba,
    progress_enabled,
    seed_everything,
)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_loss_decreases_and_model_learns(digits):
    seed_everything(0)
    model = build_model("mlp", digits.input_shape, 10)
    history = fit(model, digits.train, epochs=4, lr=1e-2, batch_size=64, device="cpu")
    assert len(history.epoch_loss) == 4
    assert history.epoch_loss[-1] < 0.5 * history.epoch_loss[0]
    assert history.steps == 4 * -(-len(digits.train) // 64)
    assert evaluate(model, digits.test).accuracy > 0.85


def test_one_seed_gives_identical_weights(mnist5k):
    data = mnist5k.train.subset(range(512))
    runs = []
    for _ in range(2):
        seed_everything(123)
        model = build_model("sisa_cnn", mnist5k.input_shape, 10, width=0.5)
        fit(model, data, epochs=2, batch_size=64, device="cpu")
        runs.append(_weights(model))
    assert torch.equal(runs[0], runs[1])
    seed_everything(124)
    other = build_model("sisa_cnn", mnist5k.input_shape, 10, width=0.5)
    fit(other, data, epochs=2, batch_size=64, device="cpu")
    assert not torch.equal(runs[0], _weights(other))


def test_fit_seed_makes_batches_independent_of_global_state(digits):
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = build_model("mlp", digits.input_shape, 10)
        torch.manual_seed(global_seed)
        fit(model, digits.train, epochs=1, seed=7, device="cpu")
        weights.append(_weights(model))
    assert torch.equal(*weights)


def test_hooks_see_every_sample_once_per_epoch():
    class Recorder:
        def __init__(self):
            self.before, self.after = [], []

        def before_step(self, step, batch, model):
            self.before.append((step, batch.clone()))

        def after_step(self, step, batch, model):
            self.after.append(step)

    data = LabelledData(torch.rand(10, 1, 4, 4), torch.arange(10) % 2)
    rec = Recorder()
    model = build_model("mlp", (1, 4, 4), 2)
    history = fit(model, data, epochs=2, batch_size=4, hooks=[rec], device="cpu")
    assert history.steps == 6 and rec.after == list(range(6))
    first_epoch = torch.cat([b for _, b in rec.before[:3]])
    assert sorted(first_epoch.tolist()) == list(range(10))


def test_evaluation_helpers_agree(digits):
    seed_everything(0)
    model = build_model("mlp", digits.input_shape, 10)
    fit(model, digits.train, epochs=1, lr=1e-2, device="cpu")
    proba = predict_proba(model, digits.test)
    assert proba.shape == (len(digits.test), 10)
    assert torch.allclose(proba.sum(1), torch.ones(len(digits.test)))
    ev = evaluate(model, digits.test)
    assert ev.n == len(digits.test)
    assert ev.accuracy == pytest.approx((proba.argmax(1) == digits.test.y).float().mean().item())
    assert ev.loss == pytest.approx(per_sample_loss(model, digits.test).mean().item(), rel=1e-5)
    assert model.training  # evaluation restores the previous mode


def test_bad_training_arguments(digits):
    model = build_model("mlp", digits.input_shape, 10)
    empty = LabelledData(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        fit(model, empty, epochs=1)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, empty)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, digits.train, batch_size=0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        fit(model, digits.train, epochs=1, optimizer="rmsprop")


def test_device_choice(monkeypatch):
    monkeypatch.delenv("UNLEARNLIB_DEVICE", raising=False)
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training, "_mps_available", lambda: False)
    assert get_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device("cuda")
    monkeypatch.setattr(training, "_mps_available", lambda: True)
    assert get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")
    monkeypatch.setenv("UNLEARNLIB_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_PROGRESS", "0")
    assert not progress_enabled()
    assert progress_enabled(True)
    monkeypatch.setenv("UNLEARNLIB_PROGRESS", "1")
    assert progress_enabled()
    assert not progress_enabled(False)
