"""unlearnlib.published: the deck's numbers beside ours."""

import pytest

from unlearnlib.metrics import AnamnesisIndex, RelearnResult
from unlearnlib.published import (DECK_CIFAR10_ALLCNN, DECK_MNIST_AIN, DECK_MNIST_ALLCNN, DECK_ZERO_SHOT,
                                  deck_side_by_side)


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


def test_zero_shot_tables_are_the_single_source_of_the_deck_numbers():
    # the deck prints M-M and GKT on CIFAR-10 (All-CNN) in two tables: both copies agree
    for k, cols in ((1, slice(0, 2)), (2, slice(2, 4))):
        row = DECK_ZERO_SHOT["cifar10", "allcnn", k]
        for method in ("Original", "Retrain", "M-M", "GKT"):
            assert DECK_CIFAR10_ALLCNN[method][cols] == row.accuracy[method]
    assert DECK_MNIST_ALLCNN["GKT"] == (97.12, 0.0, 96.87, 0.0)
    assert DECK_MNIST_AIN == {"M-M": (0.31, 0.20), "GKT": (0.65, 0.30)}
    assert DECK_ZERO_SHOT["mnist", "lenet5", 1].accuracy["M-M"] == (96.96, 99.37)  # M-M fails on LeNet
    # every row: the retrained model forgets completely and all four methods are present
    for key, row in DECK_ZERO_SHOT.items():
        assert set(row.accuracy) == {"Original", "Retrain", "M-M", "GKT"} and set(row.ain) == {"GKT", "M-M"}, key
        assert row.accuracy["Retrain"][1] == 0.0 and row.accuracy["GKT"][1] == 0.0, key
    assert {k[0] for k in DECK_ZERO_SHOT} == {"cifar10", "svhn", "mnist"}
