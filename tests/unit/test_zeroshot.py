"""Zero-shot unlearning: the band-pass filter, the error-maximising/minimising noise, the
generator, the data contract and the two methods end to end on small models."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import unlearnlib as ul
from unlearnlib import zeroshot as zs
from unlearnlib.zeroshot import (
    Generator,
    TrainingDataNotAllowedError,
    band_pass_mask,
    check_zero_shot_task,
    class_noise,
    error_min_max,
    gated_knowledge_transfer,
    reinitialised_copy,
    suppress_forget_logits,
)

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return ul.load_dataset("digits")


@pytest.fixture(scope="module")
def teacher(digits):
    """A small CNN trained on the 8x8 digits (about 95 % test accuracy)."""
    ul.seed_everything(0)
    model = ul.build_model("lenet5", digits.input_shape, 10)
    ul.fit(model, digits.train, epochs=15, lr=3e-3, batch_size=64, seed=0, progress=False)
    model.eval()
    return model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------- filter


def test_band_pass_keeps_only_samples_with_every_forget_probability_at_most_the_threshold():
    probs = torch.tensor([
        [0.005, 0.005, 0.990],   # both forget classes below 0.01: kept
        [0.010, 0.000, 0.990],   # exactly at the threshold: kept (the authors' <=)
        [0.020, 0.000, 0.980],   # class 0 above: dropped
        [0.000, 0.500, 0.500],   # class 1 above: dropped
        [0.300, 0.300, 0.400],   # both above: dropped
    ])
    assert band_pass_mask(probs, [0, 1], 0.01).tolist() == [True, True, False, False, False]
    # with only class 0 forgotten, class 1's probability no longer matters
    assert band_pass_mask(probs, [0], 0.01).tolist() == [True, True, False, True, False]
    assert band_pass_mask(probs, 1, 0.6).tolist() == [True] * 5
    assert band_pass_mask(probs, [2], 0.01).tolist() == [False] * 5


def test_band_pass_rejects_bad_input():
    probs = torch.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="outside"):
        band_pass_mask(probs, [3])
    with pytest.raises(ValueError, match="threshold"):
        band_pass_mask(probs, [0], 1.5)
    with pytest.raises(ValueError, match="no forget class"):
        band_pass_mask(probs, [])
    with pytest.raises(ValueError, match="shape"):
        band_pass_mask(probs[0], [0])


def test_suppressed_targets_carry_no_forget_mass_and_keep_retain_ratios():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0], [0.0, 3.0, -2.0, 1.0]])
    out = suppress_forget_logits(logits, [1, 3])
    p, q = logits.softmax(1), out.softmax(1)
    assert q[:, [1, 3]].max() < 1e-11
    # each forget probability shrinks by a factor of at least exp(-30) / (retain share)
    assert (q[:, [1, 3]] / p[:, [1, 3]] < 2e-12).all()
    retain = [0, 2]
    assert torch.allclose(q[:, retain] / q[:, retain].sum(1, keepdim=True),
                          p[:, retain] / p[:, retain].sum(1, keepdim=True), atol=1e-6)
    assert torch.equal(logits, torch.tensor([[2.0, -1.0, 0.5, 1.0], [0.0, 3.0, -2.0, 1.0]]))


# -------------------------------------------------------------------------- noise


def test_error_maximising_noise_raises_and_minimising_noise_lowers_the_class_loss(teacher):
    before = _state(teacher)
    classes = [3, 7]
    start, labels = class_noise(teacher, classes, input_shape=SHAPE, maximise=True, steps=0, seed=1)
    up, _ = class_noise(teacher, classes, input_shape=SHAPE, maximise=True, steps=30, seed=1)
    down, _ = class_noise(teacher, classes, input_shape=SHAPE, maximise=False, steps=30, seed=1)
    assert labels.tolist() == [3] * 32 + [7] * 32 and up.shape == (64, *SHAPE)

    def loss(x):
        with torch.no_grad():
            ce = F.cross_entropy(teacher(x), labels, reduction="none").view(2, 32).mean(1)
        return ce

    # per class, from the same starting noise
    assert (loss(up) > loss(start) + 1.0).all()
    assert (loss(down) < loss(start) - 1.0).all()
    assert (loss(down) < 0.1).all()
    assert _same(before, _state(teacher)) and not teacher.training


def test_noise_leaves_batchnorm_statistics_alone():
    ul.seed_everything(0)
    model = ul.build_model("allcnn", SHAPE, 10, width=0.125)
    model.train()
    before = _state(model)
    class_noise(model, [0], input_shape=SHAPE, maximise=True, steps=3, per_class=4, seed=0)
    assert _same(before, _state(model)) and model.training


# ---------------------------------------------------------------------- generator


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (1, 28, 20), (2, 9, 13)])
def test_generator_output_shape(shape):
    gen = Generator(shape, z_dim=16, width=0.125)
    assert gen(torch.randn(5, 16)).shape == (5, *shape)
    assert gen.sample(3, seed=0).shape == (3, *shape)
    assert torch.equal(gen.sample(3, seed=0), gen.sample(3, seed=0))


def test_generator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="output_shape"):
        Generator((28, 28))
    with pytest.raises(ValueError, match="width"):
        Generator(SHAPE, width=0)


def test_reinitialised_copy_is_fresh_and_reproducible(teacher):
    before = _state(teacher)
    a, b = reinitialised_copy(teacher, seed=5), reinitialised_copy(teacher, seed=5)
    assert _same(_state(a), _state(b))
    assert not torch.equal(a.conv1[0].weight, teacher.conv1[0].weight)
    assert _same(before, _state(teacher))
    assert type(a) is type(teacher)


# ------------------------------------------------------------------ data contract


def test_methods_refuse_training_data(digits, teacher):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(digits.train.x, digits.train.y))
    bad_calls = [
        lambda: error_min_max(teacher, digits, input_shape=SHAPE),
        lambda: error_min_max(teacher, digits.train, input_shape=SHAPE),
        lambda: error_min_max(digits.train, [3], input_shape=SHAPE),
        lambda: gated_knowledge_transfer(teacher, digits.train.x, input_shape=SHAPE),
        lambda: gated_knowledge_transfer(teacher, loader, input_shape=SHAPE),
        lambda: gated_knowledge_transfer(teacher, (digits.train.x, digits.train.y), input_shape=SHAPE),
        lambda: gated_knowledge_transfer(teacher, [3], input_shape=SHAPE, student=digits.train),
        lambda: check_zero_shot_task("f", teacher, [3], SHAPE, extra=digits.test.x.numpy()),
    ]
    for call in bad_calls:
        with pytest.raises(TrainingDataNotAllowedError, match="must not be given training data"):
            call()
    assert issubclass(TrainingDataNotAllowedError, ValueError)


@pytest.mark.parametrize("fn", [error_min_max, gated_knowledge_transfer])
def test_bad_class_ids_and_model_mismatch(fn, teacher):
    cases = [
        (dict(forget_classes=[10]), "unknown class id"),
        (dict(forget_classes=[-1]), "unknown class id"),
        (dict(forget_classes=list(range(10))), "every class"),
        (dict(forget_classes=[]), "no class"),
        (dict(forget_classes=[2, 2]), "repeat"),
        (dict(forget_classes=["a"]), "class ids"),
        (dict(forget_classes=[3], num_classes=5), "outputs 10 scores"),
        (dict(forget_classes=[3], input_shape=(8, 8)), "input_shape"),
        (dict(forget_classes=[3], input_shape=(3, 8, 8)), "does not accept inputs"),
    ]
    for kwargs, message in cases:
        kwargs = {"input_shape": SHAPE, **kwargs}
        with pytest.raises(ValueError, match=message):
            fn(teacher, **kwargs)
    with pytest.raises(ValueError, match="Module"):
        fn("teacher", [3], input_shape=SHAPE)


def test_check_zero_shot_task_describes_the_task(teacher):
    task = check_zero_shot_task("f", teacher, torch.tensor([7, 2]), SHAPE, 10)
    assert task.forget == (2, 7) and task.retain == (0, 1, 3, 4, 5, 6, 8, 9)
    assert task.num_classes == 10 and task.input_shape == SHAPE
    assert check_zero_shot_task("f", teacher, 4, SHAPE).forget == (4,)


def test_bad_hyperparameters(teacher):
    for kwargs, message in [(dict(forget_targets="drop"), "forget_targets"),
                            (dict(selection="best"), "selection"),
                            (dict(student_batchnorm="frozen"), "student_batchnorm"),
                            (dict(threshold=0.0), "threshold"),
                            (dict(lr=-1.0), "lr"),
                            (dict(pseudo_batches=0), "pseudo_batches"),
                            (dict(kl_reduction="none"), "kl_reduction"),
                            (dict(monitor=3), "monitor")]:
        with pytest.raises(ValueError, match=message):
            gated_knowledge_transfer(teacher, [3], input_shape=SHAPE, **kwargs)
    for kwargs, message in [(dict(impair_epochs=-1), "impair_epochs"), (dict(lr=0), "lr"),
                            (dict(noise_per_class=0), "per_class"), (dict(batch_size=0), "batch_size")]:
        with pytest.raises(ValueError, match=message):
            error_min_max(teacher, [3], input_shape=SHAPE, **kwargs)


# ----------------------------------------------------------------------- methods


def _accuracy_on(model, data, classes):
    mask = torch.isin(data.y, torch.tensor(classes))
    return ul.evaluate(model, data.subset(torch.nonzero(mask).flatten())).accuracy


def test_error_min_max_forgets_the_class_and_leaves_the_model_unchanged(digits, teacher):
    before = _state(teacher)
    assert _accuracy_on(teacher, digits.test, [3]) > 0.8
    result = error_min_max(teacher, [3], input_shape=SHAPE, seed=0)
    assert result.model is not teacher and _same(before, _state(teacher))
    assert _accuracy_on(result.model, digits.test, [3]) < 0.1
    assert result.forget_noise[0].shape == (32, *SHAPE) and result.forget_noise[1].eq(3).all()
    assert result.retain_noise[0].shape == (9 * 32, *SHAPE) and not result.retain_noise[1].eq(3).any()
    assert set(result.phase_seconds) == {"noise", "impair", "repair"}
    again = error_min_max(teacher, [3], input_shape=SHAPE, seed=0)
    assert _same(_state(result.model), _state(again.model))


def test_error_min_max_with_frozen_batchnorm_keeps_running_statistics():
    ul.seed_everything(0)
    model = ul.build_model("allcnn", SHAPE, 10, width=0.125)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    out = error_min_max(model, [1], input_shape=SHAPE, noise_steps=2, noise_per_class=4,
                        freeze_batchnorm=True, seed=0).model
    assert all(torch.equal(stats[k], out.state_dict()[k]) for k in stats)
    out = error_min_max(model, [1], input_shape=SHAPE, noise_steps=2, noise_per_class=4, seed=0).model
    assert not all(torch.equal(stats[k], out.state_dict()[k]) for k in stats)


def test_gkt_trains_a_fresh_student_and_never_touches_the_teacher(digits, teacher):
    before = _state(teacher)
    calls = []

    def monitor(student):
        calls.append(student.training)
        return {"forget_acc": _accuracy_on(student, digits.test, [3])}

    kwargs = dict(input_shape=SHAPE, pseudo_batches=6, batch_size=32, student_steps=3,
                  generator_width=0.125, seed=0)
    result = gated_knowledge_transfer(teacher, [3], monitor=monitor, monitor_every=3, **kwargs)
    assert _same(before, _state(teacher)) and not teacher.training
    assert result.student is not teacher and not result.student.training
    assert [row["pseudo_batch"] for row in result.history] == list(range(1, 7))
    assert all(0.0 <= row["kept"] <= 1.0 for row in result.history)
    assert [("forget_acc" in row) for row in result.history] == [False, False, True, False, False, True]
    assert calls == [False, False]  # the monitor sees the student in evaluation mode
    assert result.selected == 6 and result.selection == "last"
    # the monitor's values are recorded only: the same seed without it gives the same student
    plain = gated_knowledge_transfer(teacher, [3], **kwargs)
    assert _same(_state(plain.student), _state(result.student))


def test_gkt_probe_selection_picks_a_checkpoint(teacher):
    result = gated_knowledge_transfer(teacher, [3], input_shape=SHAPE, pseudo_batches=4, batch_size=32,
                                      student_steps=2, generator_width=0.125, selection="probe",
                                      checkpoint_every=2, probe_size=16, seed=0)
    assert [c["pseudo_batch"] for c in result.checkpoints] == [2, 4]
    assert result.selected in (2, 4)
    for c in result.checkpoints:
        assert 0.0 <= c["fidelity"] <= 1.0 and 0.0 <= c["leakage"] <= 1.0


def test_gkt_filter_off_lets_forget_knowledge_through(digits, teacher):
    """Without the filter (threshold 1) and with the teacher's full targets the student
    learns the forget class too; with the filter and suppressed targets it does not."""
    kwargs = dict(input_shape=SHAPE, pseudo_batches=30, batch_size=64, generator_width=0.25, seed=0)
    gated = gated_knowledge_transfer(teacher, [3], **kwargs)
    open_ = gated_knowledge_transfer(teacher, [3], threshold=1.0, forget_targets="keep", **kwargs)
    assert _accuracy_on(gated.student, digits.test, [3]) == 0.0
    assert _accuracy_on(open_.student, digits.test, [3]) > 0.3
    retain = [c for c in range(10) if c != 3]
    assert _accuracy_on(gated.student, digits.test, retain) > 0.3
