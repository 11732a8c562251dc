import math

import pytest
import torch
from torch import nn

from unlearnlib.distill import ActivationRecorder, attention_loss, attention_map, kd_loss
from unlearnlib.models import build_model


def _hand_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def test_kd_loss_equals_hand_computation():
    # logits chosen so that the softmax is easy to write down: log of the probabilities
    p_teacher = [0.7, 0.2, 0.1]
    p_student = [0.5, 0.25, 0.25]
    t = torch.tensor([p_teacher]).log()
    s = torch.tensor([p_student]).log()
    expected = _hand_kl(p_teacher, p_student)  # 0.0851...
    assert kd_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    # temperature 2: soften by hand, then KL, then multiply by T^2 = 4
    soft = lambda p: [x ** 0.5 / sum(y ** 0.5 for y in p) for x in p]  # noqa: E731
    expected_t2 = 4 * _hand_kl(soft(p_teacher), soft(p_student))
    assert kd_loss(s, t, temperature=2.0).item() == pytest.approx(expected_t2, rel=1e-5)


def test_kd_loss_reductions():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    per_sample = kd_loss(s, t, temperature=3.0, reduction="none")
    assert per_sample.shape == (6,)
    for i in range(6):
        p = torch.softmax(t[i] / 3, 0).tolist()
        q = torch.softmax(s[i] / 3, 0).tolist()
        assert per_sample[i].item() == pytest.approx(9 * _hand_kl(p, q), rel=1e-4)
    batchmean = kd_loss(s, t, temperature=3.0)
    assert batchmean.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert kd_loss(s, t, temperature=3.0, reduction="sum").item() == pytest.approx(
        per_sample.sum().item(), rel=1e-5)
    # 'mean' (F.kl_div's default) divides by the number of classes as well
    assert kd_loss(s, t, temperature=3.0, reduction="mean").item() == pytest.approx(
        batchmean.item() / 5, rel=1e-5)


def test_kd_loss_is_zero_when_teacher_equals_student_and_positive_otherwise():
    z = torch.randn(8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for temperature in (0.5, 1.0, 4.0, 20.0):
        assert kd_loss(z, z.clone(), temperature=temperature).abs().item() < 1e-6
        # softmax ignores a shift of all logits: still zero
        assert kd_loss(z + 3.0, z, temperature=temperature).abs().item() < 1e-5
        assert kd_loss(z.flip(1), z, temperature=temperature).item() > 1e-3


def test_kd_loss_temperature_scaling():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    base = kd_loss(s, t).item()
    # scaling the logits by T and dividing by T cancel: only the T^2 factor remains
    for temperature in (2.0, 5.0):
        scaled = kd_loss(s * temperature, t * temperature, temperature=temperature).item()
        assert scaled == pytest.approx(temperature ** 2 * base, rel=1e-4)
    # a higher temperature softens the teacher: its entropy grows
    entropy = lambda T: -(torch.softmax(t / T, 1) * torch.log_softmax(t / T, 1)).sum(1).mean()  # noqa: E731
    assert entropy(1.0) < entropy(4.0) < entropy(20.0)
    # large T: T^2 KL tends to logit matching, (1/2C) sum_c (d_c - mean d)^2 with d = s - t
    d = s - t
    d = d - d.mean(1, keepdim=True)
    limit = (d.pow(2).sum(1) / (2 * 10)).mean().item()
    assert kd_loss(s.double(), t.double(), temperature=1000.0).item() == pytest.approx(limit, rel=1e-2)
    # ... and approaches it steadily from a low temperature on
    gaps = [abs(kd_loss(s, t, temperature=T).item() - limit) for T in (0.5, 1.0, 2.0, 4.0, 10.0)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.2 * limit


def test_kd_loss_has_no_nan_when_teacher_probabilities_underflow():
    t = torch.tensor([[200.0, 0.0, -200.0]])  # softmax gives exact zeros in float32
    assert torch.softmax(t, 1)[0, 2] == 0
    s = torch.zeros(1, 3, requires_grad=True)
    loss = kd_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    # the gradient with respect to the student's logits is (softmax(s/T) - softmax(t/T)) * T / N
    expected = (torch.softmax(s.detach(), 1) - torch.softmax(t, 1))
    assert torch.allclose(s.grad, expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(reduction="average"), "reduction"),
])
def test_kd_loss_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), **kwargs)


def test_kd_loss_shape_validation():
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="samples, classes"):
        kd_loss(torch.zeros(3), torch.zeros(3))


def test_attention_map_shape_norm_and_definition():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 8, 7, 5, generator=g)
    am = attention_map(a)
    assert am.shape == (4, 35)
    assert torch.allclose(am.norm(dim=1), torch.ones(4))
    assert (am >= 0).all()
    by_hand = (a ** 2).mean(1).flatten(1)
    assert torch.allclose(am, by_hand / by_hand.norm(dim=1, keepdim=True))
    # p = 1 uses absolute values
    by_hand_1 = a.abs().mean(1).flatten(1)
    assert torch.allclose(attention_map(a, p=1), by_hand_1 / by_hand_1.norm(dim=1, keepdim=True))
    # the scale of the activations does not matter, their layout does
    assert torch.allclose(attention_map(10 * a), am, atol=1e-6)
    # a map that is zero everywhere stays zero (no NaN)
    assert torch.equal(attention_map(torch.zeros(2, 3, 4, 4)), torch.zeros(2, 16))


def test_attention_map_validation():
    with pytest.raises(ValueError, match="channels"):
        attention_map(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="p must be positive"):
        attention_map(torch.zeros(2, 3, 4, 4), p=0)


def test_attention_loss_matches_hand_computation_and_ignores_channel_count():
    g = torch.Generator().manual_seed(3)
    s1, t1 = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 16, 6, 6, generator=g)
    s2, t2 = torch.randn(2, 8, 3, 3, generator=g), torch.randn(2, 32, 3, 3, generator=g)
    loss = attention_loss([s1, s2], [t1, t2])
    expected = sum(((attention_map(s) - attention_map(t)) ** 2).mean() for s, t in [(s1, t1), (s2, t2)])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert attention_loss([t1], [t1]).item() == 0.0
    # two unit vectors are at most 2 apart: per position the mean squared difference is bounded
    assert 0 < loss.item() <= 2 * 4 / 9


def test_attention_loss_validation():
    a, b = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="spatial sizes differ"):
        attention_loss([a], [b])
    with pytest.raises(ValueError, match="batch sizes differ"):
        attention_loss([a], [torch.zeros(3, 3, 4, 4)])
    with pytest.raises(ValueError, match="1 student layers but 2 teacher layers"):
        attention_loss([a], [a, a])
    with pytest.raises(ValueError, match="at least one layer"):
        attention_loss([], [])


def test_activation_recorder_captures_named_layers_in_order_and_removes_hooks():
    model = build_model("sisa_cnn", (1, 28, 28), 10, width=0.25)
    x = torch.rand(3, 1, 28, 28)
    with ActivationRecorder(model, ["conv2", "conv1"]) as rec:
        logits = model(x)
        conv2, conv1 = rec.outputs
    assert conv1.shape == (3, 8, 28, 28) and conv2.shape == (3, 16, 14, 14)
    assert torch.allclose(conv1, model.conv1(x))
    # activations keep their graph, so an attention loss can train the model
    attention_map(conv2).sum().backward()
    assert model.conv2[0].weight.grad is not None
    assert logits.shape == (3, 10)
    for name in ("conv1", "conv2"):
        module = model.get_submodule(name)
        assert not module._forward_hooks
    assert not model._forward_pre_hooks
    # after the block, later passes are not recorded
    model(torch.rand(5, 1, 28, 28))
    assert rec.outputs[0].shape[0] == 3


def test_activation_recorder_keeps_only_the_last_pass_and_cleans_up_after_errors():
    model = build_model("lenet5", (1, 28, 28), 10)
    with ActivationRecorder(model, model.feature_layers) as rec:
        model(torch.rand(2, 1, 28, 28))
        model(torch.rand(7, 1, 28, 28))
        assert [a.shape[0] for a in rec.outputs] == [7, 7]
    with pytest.raises(RuntimeError, match="boom"):
        with ActivationRecorder(model, ["conv1"]):
            raise RuntimeError("boom")
    assert not model.conv1._forward_hooks


def test_activation_recorder_rejects_unknown_layers_and_names_the_feature_layers():
    model = build_model("sisa_cnn", (1, 28, 28), 10, width=0.25)
    with pytest.raises(ValueError, match=r"no layer 'conv3'.*\['conv1', 'conv2'\]"):
        ActivationRecorder(model, ["conv1", "conv3"])
    with pytest.raises(ValueError, match="no layer names"):
        ActivationRecorder(model, [])
    with pytest.raises(RuntimeError, match="forward pass"):
        with ActivationRecorder(model, ["conv1"]) as rec:
            rec.outputs


def test_attention_transfer_reduces_the_loss_between_real_networks():
    torch.manual_seed(0)
    teacher = build_model("sisa_cnn", (1, 28, 28), 10, width=0.5)
    student = build_model("lenet5", (1, 28, 28), 10)
    # lenet5's conv2 is 10x10 without padding; compare conv1 maps (28x28 in both)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad(), ActivationRecorder(teacher, ["conv1"]) as rec_t:
        teacher(x)
        target = rec_t.outputs
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    with ActivationRecorder(student, ["conv1"]) as rec_s:
        for _ in range(30):
            student(x)
            loss = attention_loss(rec_s.outputs, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert isinstance(student, nn.Module)


# --------------------------------------------------------------- relation-based knowledge

from unlearnlib.distill import distill, mutual_distill, rkd_angle_loss, rkd_distance_loss, rkd_loss, self_distill  # noqa: E402
from unlearnlib.training import evaluate, fit, predict_proba, seed_everything  # noqa: E402


def test_rkd_losses_vanish_for_a_rotated_scaled_shifted_wider_copy():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(12, 5, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    # a wider student embedding with the same geometry up to rotation, scale and shift
    student = 3.0 * torch.cat([teacher, torch.zeros(12, 3)], 1) @ q + 1.5
    assert rkd_distance_loss(student, teacher).item() < 1e-6
    assert rkd_angle_loss(student, teacher).item() < 1e-6
    assert rkd_loss(student, teacher).item() < 1e-4
    other = torch.randn(12, 8, generator=g)
    assert rkd_distance_loss(other, teacher).item() > 1e-2
    assert rkd_angle_loss(other, teacher).item() > 1e-2


def test_rkd_distance_loss_by_hand():
    # teacher: three points on a line at 0, 1, 2 (distances 1, 1, 2; mean 4/3)
    teacher = torch.tensor([[0.0], [1.0], [2.0]])
    # student: an equilateral triangle (all distances equal, normalised to 1)
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 3 ** 0.5 / 2]])
    t = torch.tensor([[0, 1, 2], [1, 0, 1], [2, 1, 0]]) / (4 / 3)
    s = torch.ones(3, 3) - torch.eye(3)
    diff = (s - t).abs()
    huber = torch.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).mean()
    assert rkd_distance_loss(student, teacher).item() == pytest.approx(huber.item(), rel=1e-5)


def test_rkd_trains_the_student_only_and_validates():
    teacher = torch.randn(6, 4, requires_grad=True)
    student = torch.randn(6, 4, requires_grad=True)
    rkd_loss(student, teacher).backward()
    assert teacher.grad is None and student.grad is not None
    with pytest.raises(ValueError, match="batch sizes differ"):
        rkd_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        rkd_distance_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="non-negative"):
        rkd_loss(torch.randn(4, 3), torch.randn(4, 3), angle_weight=-1)


# ------------------------------------------------------------------------------ trainers


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture(scope="module")
def digits_teacher(digits):
    seed_everything(0)
    teacher = build_model("sisa_cnn", digits.input_shape, 10, width=0.5)
    fit(teacher, digits.train, epochs=6, lr=3e-3, seed=0, device="cpu")
    return teacher


def test_distill_with_alpha_zero_is_training_on_labels(digits, digits_teacher):
    torch.manual_seed(1)
    a = build_model("mlp", digits.input_shape, 10)
    b = build_model("mlp", digits.input_shape, 10)
    b.load_state_dict(a.state_dict())
    fit(a, digits.train, epochs=2, seed=3, device="cpu")
    distill(digits_teacher, b, digits.train, epochs=2, alpha=0.0, seed=3, device="cpu")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_distill_makes_the_student_imitate_a_fixed_teacher(digits, digits_teacher):
    before = {k: v.clone() for k, v in digits_teacher.state_dict().items()}
    digits_teacher.train()
    torch.manual_seed(2)
    student = build_model("mlp", digits.input_shape, 10, hidden=(32,))
    history = distill(digits_teacher, student, digits.train, epochs=8, lr=3e-3, temperature=4.0,
                      alpha=1.0, seed=0, device="cpu")
    assert history.epoch_loss[-1] < 0.3 * history.epoch_loss[0]
    assert history.steps == 8 * -(-len(digits.train) // 64)
    # the teacher was neither changed nor left in evaluation mode
    assert all(torch.equal(v, before[k]) for k, v in digits_teacher.state_dict().items())
    assert digits_teacher.training
    # with alpha = 1 the labels are never used, yet the student learns the task from the teacher
    agree = (predict_proba(student, digits.test).argmax(1) == predict_proba(digits_teacher, digits.test).argmax(1))
    assert agree.float().mean() > 0.9
    assert evaluate(student, digits.test).accuracy > 0.85


def test_distill_with_attention_transfer_aligns_attention_maps(digits, digits_teacher):
    x = digits.test.x[:200]

    def gap(student):
        with torch.no_grad(), ActivationRecorder(student, ["conv1", "conv2"]) as rs, \
                ActivationRecorder(digits_teacher, ["conv1", "conv2"]) as rt:
            student.eval(), digits_teacher.eval()
            student(x), digits_teacher(x)
            return attention_loss(rs.outputs, rt.outputs).item()

    results = {}
    for beta in (0.0, 250.0):
        torch.manual_seed(4)
        student = build_model("lenet5", digits.input_shape, 10, width=0.5)
        distill(digits_teacher, student, digits.train, epochs=4, lr=3e-3, alpha=0.9, beta=beta,
                seed=1, device="cpu")
        results[beta] = gap(student)
    assert results[250.0] < 0.5 * results[0.0]


def test_distill_validation(digits, digits_teacher):
    student = build_model("mlp", digits.input_shape, 10)
    with pytest.raises(ValueError, match="alpha"):
        distill(digits_teacher, student, digits.train, alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        distill(digits_teacher, student, digits.train, temperature=0)
    with pytest.raises(ValueError, match="beta"):
        distill(digits_teacher, student, digits.train, beta=-1)
    with pytest.raises(ValueError, match="student has 5"):
        distill(digits_teacher, build_model("mlp", digits.input_shape, 5), digits.train, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="feature_layers"):
        distill(digits_teacher, student, digits.train, beta=1.0, epochs=1, device="cpu")
    lenet = build_model("lenet5", (1, 28, 28), 10)
    big_teacher = build_model("sisa_cnn", (1, 28, 28), 10, width=0.25)
    mnist_like = (torch.rand(8, 1, 28, 28), torch.arange(8) % 10)
    # lenet5's conv2 is 10x10 on 28x28 inputs, sisa_cnn's is 14x14
    with pytest.raises(ValueError, match="spatial sizes differ"):
        distill(big_teacher, lenet, mnist_like, beta=1.0, epochs=1, device="cpu")


def test_mutual_distill_without_imitation_is_independent_training(digits):
    data = digits.train.subset(range(400))
    torch.manual_seed(5)
    peers = [build_model("mlp", digits.input_shape, 10) for _ in range(2)]
    copies = [build_model("mlp", digits.input_shape, 10) for _ in range(2)]
    for p, c in zip(peers, copies):
        c.load_state_dict(p.state_dict())
    histories = mutual_distill(peers, data, epochs=2, alpha=0.0, seed=9, device="cpu")
    assert len(histories) == 2 and len(histories[0].epoch_loss) == 2
    for p, c in zip(peers, copies):
        fit(c, data, epochs=2, seed=9, device="cpu")
        for a, b in zip(p.parameters(), c.parameters()):
            assert torch.allclose(a, b, atol=1e-6)


def test_mutual_distill_makes_peers_agree(digits):
    data = digits.train.subset(range(300))

    def disagreement(alpha):
        torch.manual_seed(6)
        peers = [build_model("mlp", digits.input_shape, 10, hidden=(16,)) for _ in range(2)]
        mutual_distill(peers, data, epochs=15, lr=3e-3, alpha=alpha, seed=2, device="cpu")
        a, b = (predict_proba(m, digits.test) for m in peers)
        return (a - b).abs().sum(1).mean().item()

    assert disagreement(0.5) < 0.8 * disagreement(0.0)
    with pytest.raises(ValueError, match="at least 2"):
        mutual_distill([build_model("mlp", digits.input_shape, 10)], data)


def test_self_distill_generations(digits):
    make = lambda: build_model("mlp", digits.input_shape, 10, hidden=(32,))  # noqa: E731
    models = self_distill(make, digits.train, generations=1, epochs=4, lr=3e-3, seed=7, device="cpu")
    assert len(models) == 2 and models[0] is not models[1]
    # generation 0 is plain training with the given seed
    with torch.random.fork_rng():
        torch.manual_seed(7)
        reference = make()
    fit(reference, digits.train, epochs=4, lr=3e-3, seed=7, device="cpu")
    assert _same_weights(reference, models[0])
    # generation 1 learned from generation 0
    agree = (predict_proba(models[0], digits.test).argmax(1) == predict_proba(models[1], digits.test).argmax(1))
    assert agree.float().mean() > 0.9
    with pytest.raises(ValueError, match="generations"):
        self_distill(make, digits.train, generations=-1)
