"""unlearnlib.published: the deck's numbers beside ours."""

import pytest

from unlearnlib.metrics import AnamnesisIndex, RelearnResult
from unlearnlib.published import DECK_CIFAR10_ALLCNN, DECK_MNIST_AIN, DECK_MNIST_ALLCNN, deck_side_by_side


def _ain(value):
    r = RelearnResult(4, 0.9, 40, ())
    return AnamnesisIndex(value, "ok", r, r, 0.95, 0.9, 0.05, "relative")


def _fields(text, name):
    """The columns after the method name: | D_r C10, MNIST, ours | D_f ... | AIN MNIST, ours."""
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return line[len(name):].split()


def test_side_by_side_puts_the_requested_columns_next_to_ours():
    rows = {"Retrain": {"test_acc": 0.958, "forget_test_acc": 0.0, "ain": _ain(1.0)},
            "GKT": {"test_acc": 0.111, "forget_test_acc": 0.0, "ain": _ain(2.5)},
            "Fine-tune": {"test_acc": 0.92, "forget_test_acc": 0.01, "ain": _ain(0.75)}}
    one, two = deck_side_by_side(rows, 1), deck_side_by_side(rows, 2)
    gkt1, gkt2 = _fields(one, "GKT"), _fields(two, "GKT")
    assert gkt1 == ["|", "81.97", "97.1", "11.1", "|", "0.00", "0.0", "0.0", "|", "0.65", "2.50"]
    assert gkt2 == ["|", "81.70", "96.9", "11.1", "|", "0.00", "0.0", "0.0", "|", "0.30", "2.50"]
    assert DECK_MNIST_AIN["GKT"] == (0.65, 0.30) and DECK_MNIST_ALLCNN["GKT"][0] == 97.12
    ft = _fields(one, "Fine-tune")
    assert ft == ["|", "-", "-", "92.0", "|", "-", "-", "1.0", "|", "-", "0.75"]  # the deck has no fine-tuning row
    # the references get no AIN of their own; a deck method we did not run shows '-' for ours
    assert _fields(one, "Retrain")[-2:] == ["-", "-"]
    bt = _fields(one, "Bad Teacher")
    assert bt[1] == f"{DECK_CIFAR10_ALLCNN['Bad Teacher'][0]:.2f}" and bt[3] == "-" and bt[-1] == "-"
    assert "UNSIR" not in one  # neither the deck nor we have it


def test_side_by_side_rejects_other_request_sizes():
    with pytest.raises(ValueError, match="one- and two-class"):
        deck_side_by_side({}, 3)
