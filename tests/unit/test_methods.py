"""unlearnlib.methods: one signature, data contracts, and what each method does."""

import math

import pytest
import torch
from torch import nn

from unlearnlib import methods
from unlearnlib.data import LabelledData, class_forget_split
from unlearnlib.methods import (
    METHODS,
    QUICK_CONFIGS,
    AmnesiacRecorder,
    DataContractError,
    UnlearningResult,
    UnlearningTask,
    expected_sensitive_batch_share,
    random_other_labels,
    reinitialized_copy,
)
from unlearnlib.methods.fisher import classifier_head, fisher_diagonal, fisher_noise_variance
from unlearnlib.methods.unsir import error_maximizing_noise, retain_subset
from unlearnlib.models import build_model
from unlearnlib.training import evaluate, fit, seed_everything

FORGET_CLASS = 3

# the smallest settings that exercise every code path
FAST = {
    "retrain": {"epochs": 1},
    "fine_tune": {"epochs": 1},
    "gradient_ascent": {"epochs": 1},
    "neggrad_plus": {"epochs": 1},
    "random_labels": {"epochs": 1},
    "bad_teacher": {"epochs": 1},
    "fisher": {"max_samples": 32},  # sampled estimator by default
    "amnesiac": {"repair_epochs": 1},
    "unsir": {"noise_per_class": 8, "noise_steps": 3, "retain_per_class": 10},
    "error_min_max": {"noise_per_class": 4, "noise_steps": 2},
    "gkt": {"pseudo_batches": 2, "batch_size": 16, "student_steps": 2, "beta": 0.0},  # the MLP has no feature maps
}


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def setting(digits):
    """An MLP trained on digits with an Amnesiac recorder, and the class-3 split."""
    seed_everything(0)
    split = class_forget_split(digits, FORGET_CLASS)
    model = build_model("mlp", digits.input_shape, 10)
    recorder = AmnesiacRecorder(split.forget)
    fit(model, digits.train, epochs=8, lr=1e-2, hooks=[recorder], device="cpu")
    task = UnlearningTask.from_split(digits, split, record=recorder.record())
    return model, task, split


def _forget_test_acc(model, digits, split):
    return evaluate(model, digits.test.subset(split.test_forget)).accuracy


def _retain_test_acc(model, digits, split):
    return evaluate(model, digits.test.subset(split.test_retain)).accuracy


# ------------------------------------------------------------------- common contract


@pytest.mark.parametrize("name", sorted(FAST))
def test_every_method_runs_through_the_task_and_leaves_the_input_alone(name, setting):
    model, task, _ = setting
    before = _weights(model).clone()
    result = METHODS[name].run(model, task, config=FAST[name], device="cpu")
    assert isinstance(result, UnlearningResult)
    assert result.method == name and result.seconds > 0
    assert result.model is not model and not result.model.training
    assert torch.equal(_weights(model), before), "the original model must not change"
    assert not torch.equal(_weights(result.model), before)
    expected = {**METHODS[name].defaults, **FAST[name]}
    if "input_shape" in expected:  # filled from the task
        expected["input_shape"] = task.input_shape
    assert result.config == expected


@pytest.mark.parametrize("name", sorted(FAST))
def test_every_data_contract_is_enforced(name, setting):
    model, task, _ = setting
    method = METHODS[name]
    c = method.contract
    full = dict(forget=task.forget, retain=task.retain, classes=task.classes, record=task.record)
    allowed = {
        "forget": task.forget if c.forget == "samples" else None,
        "retain": task.retain if c.retain != "none" else None,
        "classes": task.classes if c.classes != "none" else None,
        "record": task.record if c.record else None,
    }
    for key in full:
        if allowed[key] is None:
            # data the contract forbids is refused, with a message naming the method
            kwargs = {**allowed, key: full[key]}
            with pytest.raises(DataContractError, match=name):
                method(model, kwargs["forget"], kwargs["retain"], classes=kwargs["classes"],
                       record=kwargs["record"], config=FAST[name])
    required = [k for k, v in (("forget", c.forget == "samples"), ("retain", c.retain in ("all", "subset")),
                               ("classes", c.classes == "required"), ("record", c.record)) if v]
    for key in required:
        kwargs = {**allowed, key: None}
        with pytest.raises(DataContractError, match="needs"):
            method(model, kwargs["forget"], kwargs["retain"], classes=kwargs["classes"],
                   record=kwargs["record"], config=FAST[name])


def test_contract_table():
    zero = {n for n, m in METHODS.items() if m.contract.zero_shot}
    assert zero == {"error_min_max", "gkt"}
    assert METHODS["gradient_ascent"].contract.retain == "none"
    assert METHODS["fisher"].contract.forget == "none"
    assert METHODS["unsir"].contract.forget == "none" and METHODS["unsir"].contract.unit == "class"
    assert METHODS["amnesiac"].contract.record
    assert "refused" in METHODS["retrain"].contract.describe()


def test_bad_inputs_give_clear_errors(setting, digits):
    model, task, split = setting
    with pytest.raises(ValueError, match="unknown option"):
        methods.fine_tune(model, retain=task.retain, config={"epochz": 1})
    with pytest.raises(ValueError, match="mapping"):
        methods.fine_tune(model, retain=task.retain, config=[("epochs", 1)])
    with pytest.raises(ValueError, match="torch.nn.Module"):
        methods.fine_tune("model", retain=task.retain)
    with pytest.raises(ValueError, match="unknown class id"):
        methods.unsir(model, retain=task.retain, classes=[12], config=FAST["unsir"])
    with pytest.raises(ValueError, match="retain data contains samples of a forget class"):
        methods.unsir(model, retain=digits.train, classes=[FORGET_CLASS], config=FAST["unsir"])
    with pytest.raises(ValueError, match="repeat"):
        methods.unsir(model, retain=task.retain, classes=[1, 1], config=FAST["unsir"])
    with pytest.raises(ValueError, match="every class"):
        methods.fisher(model, retain=task.retain, classes=list(range(10)))
    with pytest.raises(ValueError, match="empty"):
        methods.fine_tune(model, retain=LabelledData(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="labels must lie"):
        methods.fine_tune(model, retain=LabelledData(task.retain.x[:4], torch.tensor([0, 1, 2, 11])))
    with pytest.raises(ValueError, match="unknown unlearning method"):
        methods.get_method("sisa")
    with pytest.raises(DataContractError, match="whole classes"):
        METHODS["unsir"].run(model, UnlearningTask(forget=task.forget, retain=task.retain))
    with pytest.raises(ValueError, match="UnlearningTask"):
        METHODS["fine_tune"].run(model, {"retain": task.retain})


def test_reinitialized_copy_is_fresh_seeded_and_leaves_global_rng_alone(setting):
    model = setting[0]
    state = torch.random.get_rng_state()
    a, b, c = reinitialized_copy(model, seed=1), reinitialized_copy(model, seed=1), reinitialized_copy(model, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(_weights(a), _weights(b)) and not torch.equal(_weights(a), _weights(c))
    assert not torch.equal(_weights(a), _weights(model))


# --------------------------------------------------------------- what methods achieve


def test_retrain_never_sees_the_class_and_cannot_recognise_it(setting, digits):
    model, task, split = setting
    result = methods.retrain(model, retain=task.retain, config={"epochs": 8, "lr": 1e-2}, device="cpu")
    assert _forget_test_acc(result.model, digits, split) == 0.0
    assert _retain_test_acc(result.model, digits, split) > 0.85
    built = methods.retrain(model, retain=task.retain,
                            config={"epochs": 1, "model_factory": lambda: build_model("mlp", digits.input_shape, 10)})
    assert isinstance(built.model, nn.Module)
    with pytest.raises(ValueError, match="model_factory"):
        methods.retrain(model, retain=task.retain, config={"epochs": 1, "model_factory": lambda: "x"})


def test_gradient_ascent_raises_the_forget_loss(setting):
    model, task, _ = setting
    result = methods.gradient_ascent(model, task.forget, config={"lr": 1e-2, "epochs": 3})
    loss = lambda m: evaluate(m, task.forget).loss
    assert loss(result.model) > loss(model) + 1.0


def test_neggrad_plus_and_random_labels_forget_the_class_and_keep_the_rest(setting, digits):
    model, task, split = setting
    assert _forget_test_acc(model, digits, split) > 0.8
    for method, cfg in ((methods.neggrad_plus, {"alpha": 0.9, "lr": 1e-3, "epochs": 2}),
                        (methods.random_labels, {"lr": 3e-3, "epochs": 3})):
        result = method(model, task.forget, task.retain, config=cfg)
        assert _forget_test_acc(result.model, digits, split) < 0.3, method.name
        assert _retain_test_acc(result.model, digits, split) > 0.8, method.name


def test_random_other_labels():
    y = torch.arange(1000) % 10
    other = random_other_labels(y, 10, seed=0)
    assert (other != y).all() and other.min() >= 0 and other.max() <= 9
    assert torch.bincount(other, minlength=10).min() > 60
    assert torch.equal(other, random_other_labels(y, 10, seed=0))
    any_label = random_other_labels(y, 10, seed=0, exclude_true=False)
    assert (any_label == y).any()
    with pytest.raises(ValueError, match="at least 2"):
        random_other_labels(y, 1)


def test_bad_teacher_moves_forget_outputs_towards_the_random_teacher(setting, digits):
    model, task, split = setting
    result = methods.bad_teacher(model, task.forget, task.retain, config={"lr": 3e-3, "epochs": 3, "batch_size": 64})
    assert _forget_test_acc(result.model, digits, split) < 0.3
    assert _retain_test_acc(result.model, digits, split) > 0.8
    assert result.diagnostics["n_retain_used"] == round(0.3 * len(task.retain))


# ----------------------------------------------------------------------------- Fisher


def test_fisher_diagonal_matches_a_brute_force_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3))
    x = torch.randn(6, 1, 2, 2)
    fisher = fisher_diagonal(model, x, chunk_size=4)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for xi in x:
        proba = model(xi[None]).softmax(1)[0].detach()
        for c in range(3):
            model.zero_grad()
            model(xi[None]).log_softmax(1)[0, c].backward()
            for n, p in model.named_parameters():
                expected[n] += proba[c] * p.grad ** 2 / len(x)
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-5, atol=1e-7)


def test_sampled_fisher_is_an_unbiased_estimate_of_the_exact_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3))
    x = torch.randn(4, 1, 2, 2)
    exact = fisher_diagonal(model, x)
    sampled = fisher_diagonal(model, x.repeat(1000, 1, 1, 1), estimator="sampled", seed=3)
    for n in exact:
        torch.testing.assert_close(sampled[n], exact[n], rtol=0.1, atol=2e-3)
    with pytest.raises(ValueError, match="estimator"):
        fisher_diagonal(model, x, estimator="empirical")


def test_fisher_noise_follows_the_authors_rules():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    head = classifier_head(model, 3)
    assert head == ("3.weight", "3.bias")
    fisher = {n: torch.rand_like(p) + 0.01 for n, p in model.named_parameters()}
    fisher["1.weight"][0] = 100.0  # output unit 0 of the first layer matters a lot to D_r
    means, var = fisher_noise_variance(fisher, model, alpha=1e-6, head=head, classes=(2,))
    assert var["1.weight"][0].max() < var["1.weight"][1].min()
    # per output unit: one variance shared across the input dimension
    assert torch.equal(var["1.weight"], var["1.weight"][:, :1].expand_as(var["1.weight"]))
    assert (means["3.weight"][2] == 0).all() and means["3.bias"][2] == 0
    assert torch.allclose(var["3.weight"][2], torch.full((5,), 1e-3))
    torch.testing.assert_close(means["1.weight"], model[1].weight.detach())
    _, var_big = fisher_noise_variance(fisher, model, alpha=1e-3, head=head)
    torch.testing.assert_close(var_big["1.bias"], var["1.bias"] * 1000)
    with pytest.raises(ValueError, match="alpha"):
        fisher_noise_variance(fisher, model, alpha=0, head=head)
    with pytest.raises(ValueError, match="no nn.Linear"):
        classifier_head(model, 7)


def test_fisher_alpha_is_sensitive(setting, digits):
    model, task, split = setting
    gentle = methods.fisher(model, retain=task.retain, classes=task.classes, config={"alpha": 1e-8, "max_samples": 200})
    harsh = methods.fisher(model, retain=task.retain, config={"alpha": 1e-1, "max_samples": 200})
    assert _retain_test_acc(gentle.model, digits, split) > 0.85
    assert _forget_test_acc(gentle.model, digits, split) == 0.0  # the forget row is zeroed
    assert _retain_test_acc(harsh.model, digits, split) < 0.5


# --------------------------------------------------------------------------- Amnesiac


def test_amnesiac_record_subtracts_exactly_the_sensitive_updates(digits):
    data = digits.train.subset(range(256))
    sensitive = torch.tensor([3, 100, 200])
    torch.manual_seed(0)
    model = build_model("mlp", digits.input_shape, 10)
    start = _weights(model).clone()

    class Batches:
        def __init__(self):
            self.hits, self.updates = [], []

        def before_step(self, step, batch, model):
            self.w = _weights(model).clone()

        def after_step(self, step, batch, model):
            self.hits.append(bool(torch.isin(batch, sensitive).any()))
            self.updates.append(_weights(model) - self.w)

    rec, keep, log = AmnesiacRecorder(sensitive), AmnesiacRecorder(sensitive, keep_steps=True), Batches()
    fit(model, data, epochs=2, batch_size=32, optimizer="sgd_plain", lr=0.1, hooks=[rec, keep, log], device="cpu")
    record = rec.record()
    assert record.steps_total == 16 and record.steps_sensitive == sum(log.hits)
    assert int(record.sensitive_per_step.sum()) == 2 * len(sensitive)
    expected = sum(u for u, h in zip(log.updates, log.hits) if h)
    total = torch.cat([record.delta_sum[n].flatten() for n in record.param_names])
    torch.testing.assert_close(total, expected, rtol=1e-5, atol=1e-6)
    # every update recorded: subtracting them all returns the initial weights
    everything = AmnesiacRecorder(torch.arange(256))
    seed_everything(1)
    m2 = build_model("mlp", digits.input_shape, 10)
    w0 = _weights(m2).clone()
    fit(m2, data, epochs=1, batch_size=64, lr=1e-2, hooks=[everything], device="cpu")
    undone = methods.amnesiac(m2, record=everything.record(), config={"repair_epochs": 0})
    torch.testing.assert_close(_weights(undone.model), w0, rtol=0, atol=1e-5)
    assert undone.diagnostics["share_subtracted"] == 1.0
    # a subset of the sensitive samples, from the per-step record
    one = keep.record().select([100])
    assert one.steps_sensitive == 2 and int(one.sensitive_per_step.sum()) == 2
    with pytest.raises(ValueError, match="keep_steps"):
        record.select([100])
    with pytest.raises(ValueError, match="not recorded"):
        keep.record().select([5])
    assert start.shape == _weights(model).shape


def test_amnesiac_forgets_and_repairs(setting, digits):
    model, task, split = setting
    result = methods.amnesiac(model, retain=task.retain, record=task.record, config={"repair_epochs": 2, "lr": 1e-2})
    assert _forget_test_acc(result.model, digits, split) < 0.1
    assert _retain_test_acc(result.model, digits, split) > 0.8
    assert result.diagnostics["share_subtracted"] > 0.9  # a whole class is in almost every batch


def test_amnesiac_bad_inputs(setting, digits):
    model, task, _ = setting
    other = build_model("mlp", digits.input_shape, 10, hidden=(32,))
    with pytest.raises(ValueError, match="other parameters"):
        methods.amnesiac(other, retain=task.retain, record=task.record)
    with pytest.raises(ValueError, match="repair_epochs"):
        methods.amnesiac(model, record=task.record, config={"repair_epochs": 1})
    with pytest.raises(ValueError, match="AmnesiacRecord"):
        methods.amnesiac(model, retain=task.retain, record={"delta": 1})
    with pytest.raises(ValueError, match="nothing recorded"):
        AmnesiacRecorder([1]).record()
    with pytest.raises(ValueError, match="no sensitive"):
        AmnesiacRecorder([])


def test_expected_sensitive_batch_share():
    assert expected_sensitive_batch_share(0.1, 64) == pytest.approx(1 - 0.9 ** 64)
    assert expected_sensitive_batch_share(0.0, 64) == 0.0
    assert expected_sensitive_batch_share(0.01, 1) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        expected_sensitive_batch_share(1.5, 8)


# ------------------------------------------------------------------------------ UNSIR


def test_error_maximizing_noise_raises_the_loss(setting, digits):
    model = setting[0]
    mode = model.training
    x, y, before, after = error_maximizing_noise(model, [FORGET_CLASS, 5], digits.input_shape, per_class=16,
                                                 steps=20, seed=0)
    assert x.shape == (32, *digits.input_shape) and (y[:16] == FORGET_CLASS).all() and (y[16:] == 5).all()
    assert after > before + 1.0
    assert model.training == mode  # the model's mode is restored


def test_retain_subset_and_unsir_forget_the_class(setting, digits):
    model, task, split = setting
    sub = retain_subset(task.retain, 20, seed=0)
    assert torch.bincount(sub.y, minlength=10).tolist() == [20] * 3 + [0] + [20] * 6
    result = methods.unsir(model, retain=task.retain, classes=[FORGET_CLASS],
                           config={"impair_lr": 1e-2, "repair_lr": 1e-3})
    assert result.diagnostics["noise_loss_after"] > result.diagnostics["noise_loss_before"]
    assert _forget_test_acc(result.model, digits, split) < 0.3
    assert _retain_test_acc(result.model, digits, split) > 0.75
    assert math.isfinite(result.seconds)


# ----------------------------------------------------------------------------- tuning


def test_validation_split_holds_out_training_data_only(digits):
    from unlearnlib.methods.tuning import validation_split

    tuned = validation_split(digits, size=200, seed=0)
    assert len(tuned.train) == len(digits.train) - 200 and len(tuned.test) == 200
    # the held-out images are training images, never test images
    train_rows = {tuple(r.tolist()) for r in digits.train.x.flatten(1)}
    assert all(tuple(r.tolist()) in train_rows for r in tuned.test.x.flatten(1)[:50])
    counts = torch.bincount(tuned.test.y, minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21  # stratified
    with pytest.raises(ValueError, match="size"):
        validation_split(digits, size=0)


def test_grid_search_ranks_by_gap_to_the_retrained_model(setting, digits):
    from unlearnlib.methods.tuning import gap_to_reference, grid_search
    from unlearnlib.metrics import EvaluationData, accuracy_metrics

    model, task, split = setting
    data = EvaluationData.from_split(digits, split)
    assert gap_to_reference({"a": 0.5, "b": 1.0}, {"a": 0.7, "b": 1.0, "c": 3}) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="in common"):
        gap_to_reference({"a": 1.0}, {"b": 1.0})
    retrained = methods.retrain.run(model, task, config={"epochs": 4, "lr": 1e-2})
    reference = accuracy_metrics(retrained.model, data)
    trials = grid_search(METHODS["random_labels"], model, task, data, reference, {"lr": [1e-6, 3e-3]})
    assert [t.options["lr"] for t in trials] == [3e-3, 1e-6]
    assert trials[0].gap < trials[1].gap
    assert trials[1].gap == pytest.approx(gap_to_reference(trials[1].metrics, reference))
    with pytest.raises(ValueError, match="empty"):
        grid_search(METHODS["fine_tune"], model, task, data, reference, {})


def test_freeze_batchnorm_keeps_running_statistics(digits):
    seed_everything(0)
    model = build_model("allcnn", digits.input_shape, 10, width=0.0625)
    fit(model, digits.train, epochs=1, device="cpu")
    forget = digits.train.subset(torch.nonzero(digits.train.y == FORGET_CLASS).flatten())
    stats = lambda m: torch.cat([b.flatten() for n, b in m.named_buffers() if "running" in n])
    frozen = methods.gradient_ascent(model, forget, config={"lr": 1e-12, "freeze_batchnorm": True})
    drifting = methods.gradient_ascent(model, forget, config={"lr": 1e-12, "freeze_batchnorm": False})
    assert torch.equal(stats(frozen.model), stats(model))
    assert not torch.allclose(stats(drifting.model), stats(model))


# ------------------------------------------------------------------------- zero-shot


def test_zero_shot_wrappers_need_only_class_ids_and_the_input_shape(setting, digits):
    model, task, split = setting
    with pytest.raises(ValueError, match="input_shape"):
        methods.error_min_max(model, classes=[FORGET_CLASS], config=FAST["error_min_max"])
    direct = methods.error_min_max(model, classes=[FORGET_CLASS],
                                   config={**FAST["error_min_max"], "input_shape": digits.input_shape})
    via_task = METHODS["error_min_max"].run(model, task, config=FAST["error_min_max"])
    assert torch.equal(_weights(direct.model), _weights(via_task.model))
    assert set(direct.diagnostics["phase_seconds"]) == {"noise", "impair", "repair"}
    # the wrapper's options are the wrapped function's keywords, with their defaults
    import inspect

    from unlearnlib import zeroshot
    signature = inspect.signature(zeroshot.gated_knowledge_transfer).parameters
    assert METHODS["gkt"].defaults["pseudo_batches"] == signature["pseudo_batches"].default
    assert METHODS["gkt"].defaults["seed"] == 0
    with pytest.raises(DataContractError, match="must not see retain data"):
        methods.gkt(model, retain=task.retain, classes=[FORGET_CLASS])


def test_run_methods_runs_retrain_first_with_each_config(setting):
    model, task, _ = setting
    results = methods.run_methods(model, task, ["fine_tune", "retrain", "fisher"],
                                  configs={n: FAST[n] for n in ("retrain", "fine_tune", "fisher")}, device="cpu")
    assert list(results) == ["Retrain", "Fine-tune", "Fisher forgetting"]  # retrain once, first
    assert all(isinstance(r, UnlearningResult) for r in results.values())
    assert results["Retrain"].config["epochs"] == 1 and results["Fine-tune"].config["epochs"] == 1
    assert results["Fisher forgetting"].config["max_samples"] == 32
    # the same call with the same seed gives the same models
    again = methods.run_methods(model, task, ["fine_tune"], configs={n: FAST[n] for n in ("retrain", "fine_tune")},
                                device="cpu")
    assert torch.equal(_weights(again["Fine-tune"].model), _weights(results["Fine-tune"].model))


def test_run_methods_bad_inputs(setting):
    model, task, _ = setting
    with pytest.raises(ValueError, match="unknown unlearning method.*'finetune'"):
        methods.run_methods(model, task, ["finetune"])
    with pytest.raises(ValueError, match="unknown unlearning method.*'fisherr'"):
        methods.run_methods(model, task, ["fisher"], configs={"fisherr": {}})
    with pytest.raises(ValueError, match="named twice"):
        methods.run_methods(model, task, ["fisher", "fisher"])


def test_answer_class_request_trains_records_and_runs_every_method(digits):
    names = ["fine_tune", "amnesiac", "gkt"]
    seed_everything(0)
    request = methods.answer_class_request(digits, [FORGET_CLASS], names, model=("mlp", {}), epochs=3,
                                           configs={"gkt": {"beta": 0.0, "batch_size": 16}}, quick=True,
                                           device="cpu")
    assert list(request.runs) == ["Retrain", "Fine-tune", "Amnesiac", "GKT"]
    assert list(request.models) == ["Original", "Retrain", "Fine-tune", "Amnesiac", "GKT"]
    assert list(request.seconds) == list(request.models) and request.seconds["Original"] == request.original_seconds
    assert request.runs["Retrain"].config["epochs"] == 3                      # retrain gets the original's epochs
    gkt = request.runs["GKT"].config
    assert gkt["pseudo_batches"] == QUICK_CONFIGS["gkt"]["pseudo_batches"] and gkt["beta"] == 0.0  # both applied
    assert request.split.forget.numel() == int((digits.train.y == FORGET_CLASS).sum())
    test_forget = digits.test.subset(request.split.test_forget)
    assert evaluate(request.original, test_forget, device="cpu").accuracy > 0.8   # the original knows the class
    assert evaluate(request.runs["Amnesiac"].model, test_forget, device="cpu").accuracy < 0.2  # the record was used
    seed_everything(0)
    again = methods.answer_class_request(digits, [FORGET_CLASS], ["fine_tune"], model=("mlp", {}), epochs=3,
                                         device="cpu")
    assert torch.equal(_weights(again.original), _weights(request.original))   # one seed call fixes the result
    with pytest.raises(ValueError, match="11"):
        methods.answer_class_request(digits, [11], names, model=("mlp", {}), epochs=1, device="cpu")
