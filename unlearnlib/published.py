"""Numbers published in the course's source deck, for side-by-side tables.

Introduced in the Zero-shot unlearning ({ref}`chap-zero-shot`) and Evaluation and attacks
({ref}`chap-evaluation`) chapters.

The deck (../shared/seed/, after Chundawat et al., IEEE TIFS 2023) compares its zero-shot
methods with Retrain, Bad Teacher, Fisher forgetting and Amnesiac unlearning on CIFAR-10
(All-CNN), and reports the zero-shot methods alone, with the anamnesis index, for All-CNN
on CIFAR-10, SVHN and MNIST and for LeNet-5 and ResNet-9 (:data:`DECK_ZERO_SHOT`). Our runs
use ``mnist5k`` and small models, so only orderings and gaps to the retrained model can be
compared; :func:`deck_side_by_side` prints both so that the reader
never sees one without the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

__all__ = ["DeckZeroShotRow", "DECK_ZERO_SHOT", "DECK_CIFAR10_ALLCNN", "DECK_MNIST_ALLCNN", "DECK_MNIST_AIN",
           "DECK_ORDER", "deck_side_by_side"]


@dataclass(frozen=True)
class DeckZeroShotRow:
    """One row pair of the deck's zero-shot tables, as printed there.

    ``accuracy`` maps "Original", "Retrain", "M-M" and "GKT" to (D_r, D_f) in %: accuracy on
    held-out images of the retain classes and of the forget classes. ``ain`` maps "GKT" and
    "M-M" to the printed anamnesis index. Introduced in {ref}`chap-zero-shot`.
    """

    accuracy: Mapping[str, tuple[float, float]]
    ain: Mapping[str, float]


def _zero_shot_row(original, retrain, mm, gkt, ain_gkt, ain_mm) -> DeckZeroShotRow:
    return DeckZeroShotRow({"Original": original, "Retrain": retrain, "M-M": mm, "GKT": gkt},
                           {"GKT": ain_gkt, "M-M": ain_mm})


#: The deck's two zero-shot tables, keyed by (dataset, model, number of forgotten classes):
#: All-CNN on three datasets for one and two classes, then LeNet-5 and ResNet-9 for one class.
#: The AIN column of the second table is printed on another scale than the first (1, 2, 3, 24,
#: 211, ...), as if it counted epochs rather than forming a ratio; it is kept as printed and
#: should not be compared with an index near 1.
DECK_ZERO_SHOT: dict[tuple[str, str, int], DeckZeroShotRow] = {
    ("cifar10", "allcnn", 1): _zero_shot_row((84.05, 87.49), (85.72, 0.0), (20.48, 5.11), (81.97, 0.0), 0.81, 0.11),
    ("cifar10", "allcnn", 2): _zero_shot_row((84.18, 84.72), (86.30, 0.0), (29.59, 7.59), (81.70, 0.0), 0.74, 0.10),
    ("svhn", "allcnn", 1): _zero_shot_row((94.52, 95.16), (93.02, 0.0), (72.92, 42.32), (92.43, 0.0), 0.37, 0.15),
    ("svhn", "allcnn", 2): _zero_shot_row((93.61, 96.39), (95.10, 0.0), (58.70, 50.23), (92.13, 0.0), 0.74, 0.13),
    ("mnist", "allcnn", 1): _zero_shot_row((97.84, 99.61), (99.25, 0.0), (10.57, 0.0), (97.12, 0.0), 0.65, 0.31),
    ("mnist", "allcnn", 2): _zero_shot_row((98.17, 98.77), (99.41, 0.0), (10.96, 0.0), (96.87, 0.0), 0.30, 0.20),
    ("cifar10", "lenet5", 1): _zero_shot_row((59.80, 65.25), (62.93, 0.0), (55.32, 23.98), (41.32, 0.0), 211, 24),
    ("cifar10", "resnet9", 1): _zero_shot_row((84.83, 88.50), (85.61, 0.0), (10.85, 0.0), (56.83, 0.0), 212, 12),
    ("svhn", "lenet5", 1): _zero_shot_row((85.69, 81.42), (88.31, 0.0), (81.80, 89.73), (78.27, 0.0), 1, 1),
    ("svhn", "resnet9", 1): _zero_shot_row((82.76, 87.11), (94.24, 0.0), (53.75, 49.65), (39.44, 0.0), 143, 2),
    ("mnist", "lenet5", 1): _zero_shot_row((98.15, 99.59), (98.73, 0.0), (96.96, 99.37), (95.79, 0.0), 1, 1),
    ("mnist", "resnet9", 1): _zero_shot_row((98.57, 99.10), (98.83, 0.0), (12.32, 0.0), (94.57, 0.0), 2, 3),
}

def _one_and_two_classes(dataset: str, model: str, method: str) -> tuple[float, float, float, float]:
    return DECK_ZERO_SHOT[dataset, model, 1].accuracy[method] + DECK_ZERO_SHOT[dataset, model, 2].accuracy[method]


#: The deck's comparison table, All-CNN on CIFAR-10: accuracy in % on held-out images of
#: the retain classes (D_r) and of the forget classes (D_f), as
#: (D_r one class, D_f one class, D_r two classes, D_f two classes). The deck prints its
#: Original, Retrain, M-M and GKT rows in its zero-shot table too; they are taken from there.
DECK_CIFAR10_ALLCNN: dict[str, tuple[float, float, float, float]] = {
    "Original": _one_and_two_classes("cifar10", "allcnn", "Original"),
    "Retrain": _one_and_two_classes("cifar10", "allcnn", "Retrain"),
    "Bad Teacher": (83.71, 5.56, 84.11, 7.81),
    "Fisher forgetting": (7.61, 0.0, 8.57, 0.0),
    "Amnesiac": (83.47, 0.0, 82.85, 0.0),
    "M-M": _one_and_two_classes("cifar10", "allcnn", "M-M"),
    "GKT": _one_and_two_classes("cifar10", "allcnn", "GKT"),
}

#: The deck's zero-shot table, All-CNN on MNIST, same layout as :data:`DECK_CIFAR10_ALLCNN`.
DECK_MNIST_ALLCNN: dict[str, tuple[float, float, float, float]] = {
    method: _one_and_two_classes("mnist", "allcnn", method) for method in ("Original", "Retrain", "M-M", "GKT")
}

#: The deck's anamnesis index on MNIST (All-CNN): (one class, two classes).
DECK_MNIST_AIN: dict[str, tuple[float, float]] = {
    method: (DECK_ZERO_SHOT["mnist", "allcnn", 1].ain[method], DECK_ZERO_SHOT["mnist", "allcnn", 2].ain[method])
    for method in ("M-M", "GKT")
}

#: Row order of the side-by-side tables: the two references, then the methods.
DECK_ORDER = ("Original", "Retrain", "Fine-tune", "Gradient ascent", "Bad Teacher", "Fisher forgetting",
              "Amnesiac", "UNSIR", "M-M", "GKT")


def _cell(value, width: int, decimals: int = 1) -> str:
    return f"{value:{width}.{decimals}f}" if value is not None else " " * (width - 1) + "-"


def deck_side_by_side(rows: Mapping[str, Mapping], n_classes: int) -> str:
    """The deck's published numbers beside ours for a request of ``n_classes`` (1 or 2)
    forgotten classes, one line per method of :data:`DECK_ORDER`.

    ``rows`` maps method names to metrics as :func:`~unlearnlib.metrics.measure_methods`
    returns them (fractions): ``test_acc`` (test images of the kept classes) is set beside
    the deck's $D_r$, ``forget_test_acc`` (test images of the forgotten classes) beside its
    $D_f$, both in %, and ``ain`` beside the deck's MNIST anamnesis index. "-" marks a
    number the deck (or ``rows``) does not have. Introduced in {ref}`chap-evaluation`.
    """
    if n_classes not in (1, 2):
        raise ValueError(f"the deck reports one- and two-class forgetting only, got n_classes={n_classes!r}")
    r = n_classes - 1
    lines = [f"{'method':18s} | {'D_r: C10':>8s} {'MNIST':>6s} {'ours':>6s} | {'D_f: C10':>8s} {'MNIST':>6s} "
             f"{'ours':>6s} | {'AIN: MNIST':>10s} {'ours':>6s}"]
    for name in DECK_ORDER:
        c10, mnist = DECK_CIFAR10_ALLCNN.get(name), DECK_MNIST_ALLCNN.get(name)
        ours = rows.get(name)
        if c10 is None and mnist is None and ours is None:
            continue
        dr = 100 * ours["test_acc"] if ours is not None else None
        df = 100 * ours["forget_test_acc"] if ours is not None else None
        ain_deck = DECK_MNIST_AIN.get(name, (None, None))[r]
        ain_ours = ours.get("ain") if ours is not None and name not in ("Original", "Retrain") else None
        ain_text = f"{ain_ours:6.2f}" if ain_ours is not None else _cell(None, 6)
        lines.append(f"{name:18s} | {_cell(c10 and c10[2 * r], 8, 2)} {_cell(mnist and mnist[2 * r], 6)} "
                     f"{_cell(dr, 6)} | {_cell(c10 and c10[2 * r + 1], 8, 2)} {_cell(mnist and mnist[2 * r + 1], 6)} "
                     f"{_cell(df, 6)} | {_cell(ain_deck, 10, 2)} {ain_text}")
    return "\n".join(lines)
