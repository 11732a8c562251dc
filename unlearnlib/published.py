"""Numbers published in the course's source deck, for side-by-side tables.

Introduced in the Evaluation and attacks chapter ({ref}`chap-evaluation`).

The deck (../shared/seed/, after Chundawat et al., IEEE TIFS 2023) compares its zero-shot
methods with Retrain, Bad Teacher, Fisher forgetting and Amnesiac unlearning on CIFAR-10
(All-CNN), and reports the zero-shot methods alone, with the anamnesis index, on MNIST
(All-CNN). Our runs use ``mnist5k`` and small models, so only orderings and gaps to the
retrained model can be compared; :func:`deck_side_by_side` prints both so that the reader
never sees one without the other.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["DECK_CIFAR10_ALLCNN", "DECK_MNIST_ALLCNN", "DECK_MNIST_AIN", "DECK_ORDER", "deck_side_by_side"]

#: The deck's comparison table, All-CNN on CIFAR-10: accuracy in % on held-out images of
#: the retain classes (D_r) and of the forget classes (D_f), as
#: (D_r one class, D_f one class, D_r two classes, D_f two classes).
DECK_CIFAR10_ALLCNN: dict[str, tuple[float, float, float, float]] = {
    "Original": (84.05, 87.49, 84.18, 84.72),
    "Retrain": (85.72, 0.0, 86.30, 0.0),
    "Bad Teacher": (83.71, 5.56, 84.11, 7.81),
    "Fisher forgetting": (7.61, 0.0, 8.57, 0.0),
    "Amnesiac": (83.47, 0.0, 82.85, 0.0),
    "M-M": (20.48, 5.11, 29.59, 7.59),
    "GKT": (81.97, 0.0, 81.70, 0.0),
}

#: The deck's zero-shot table, All-CNN on MNIST, same layout as :data:`DECK_CIFAR10_ALLCNN`.
DECK_MNIST_ALLCNN: dict[str, tuple[float, float, float, float]] = {
    "Original": (97.84, 99.61, 98.17, 98.77),
    "Retrain": (99.25, 0.0, 99.41, 0.0),
    "M-M": (10.57, 0.0, 10.96, 0.0),
    "GKT": (97.12, 0.0, 96.87, 0.0),
}

#: The deck's anamnesis index on MNIST (All-CNN): (one class, two classes).
DECK_MNIST_AIN: dict[str, tuple[float, float]] = {"M-M": (0.31, 0.20), "GKT": (0.65, 0.30)}

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
