"""One plotting style for every chapter.

Introduced in the Background chapter ({ref}`chap-background`). Figures have opaque white
backgrounds (readable in the site's dark mode) and use one palette in which each role in an
unlearning experiment always has the same colour.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["PALETTE", "ROLE_COLORS", "use_style", "role_color", "plot_loss_histograms", "draw_diagram"]

# Okabe-Ito: distinguishable with the common forms of colour blindness
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

ROLE_COLORS = {
    "original": PALETTE[0],
    "retrain": PALETTE[2],
    "unlearned": PALETTE[3],
    "train": PALETTE[0],
    "retain": PALETTE[0],
    "forget": PALETTE[3],
    "test": PALETTE[1],
}


def use_style(dpi: int = 80) -> None:
    """Apply the course style to matplotlib (white backgrounds, palette, modest dpi so that
    committed notebooks stay small). Introduced in {ref}`chap-background`."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
        "figure.dpi": dpi,
        "savefig.dpi": dpi,
        "figure.figsize": (6.4, 3.6),
        "axes.prop_cycle": cycler(color=list(PALETTE)),
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "font.size": 10,
        "legend.frameon": False,
        "image.cmap": "gray_r",
    })


def role_color(role: str) -> str:
    """The colour of a role such as ``'retrain'`` or ``'forget'``; unknown roles get black."""
    return ROLE_COLORS.get(role, PALETTE[-1])


def plot_loss_histograms(ax, losses: Mapping[str, "np.ndarray"], *, bins: int = 40,
                         floor: float = 1e-6) -> None:
    """Overlaid, normalised histograms of per-sample losses on a log axis.

    ``losses`` maps a label (e.g. ``'train'``, ``'test'``, ``'forget'``) to a 1-D array;
    labels that name a role get that role's colour. Introduced in {ref}`chap-background`.
    """
    arrays = {k: np.clip(np.asarray(v, dtype=float), floor, None) for k, v in losses.items()}
    lo = min(a.min() for a in arrays.values())
    hi = max(a.max() for a in arrays.values())
    edges = np.logspace(np.log10(lo), np.log10(hi), bins + 1)
    for label, arr in arrays.items():
        ax.hist(arr, bins=edges, density=False, weights=np.full(arr.shape, 1 / arr.size),
                histtype="stepfilled", alpha=0.45, color=role_color(label.split()[0].lower()),
                edgecolor="none", label=f"{label} (n={arr.size})")
    ax.set_xscale("log")
    ax.set_xlabel("per-sample cross-entropy loss (log scale)")
    ax.set_ylabel("share of samples")
    ax.legend()


def draw_diagram(nodes, edges=(), *, ax=None, figsize=(7.0, 3.0), fontsize=9):
    """Draw a box-and-arrow diagram of an algorithm.

    ``nodes`` maps a key to ``(x, y, text)`` or ``(x, y, text, role)`` in axes coordinates
    (0 to 1); ``role`` picks the box colour (see :data:`ROLE_COLORS`; any other string is
    used as a colour). ``edges`` is a sequence of ``(from_key, to_key)`` or
    ``(from_key, to_key, label)``. Returns the figure. Introduced in {ref}`chap-background`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    texts = {}
    for key, spec in nodes.items():
        x, y, text = spec[:3]
        role = spec[3] if len(spec) > 3 else None
        edge = role_color(role) if role in ROLE_COLORS else (role or PALETTE[-1])
        texts[key] = ax.text(
            x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3,
            bbox=dict(boxstyle="round,pad=0.4", facecolor="white", edgecolor=edge, linewidth=1.5),
        )
    for edge in edges:
        a, b = edge[:2]
        label = edge[2] if len(edge) > 2 else None
        ax.annotate(
            "", xy=texts[b].get_position(), xytext=texts[a].get_position(),
            arrowprops=dict(arrowstyle="-|>", color="0.25", linewidth=1.2,
                            patchA=texts[a].get_bbox_patch(), patchB=texts[b].get_bbox_patch(),
                            shrinkA=2, shrinkB=2),
            zorder=2,
        )
        if label:
            (xa, ya), (xb, yb) = texts[a].get_position(), texts[b].get_position()
            ax.text((xa + xb) / 2, (ya + yb) / 2, label, ha="center", va="center",
                    fontsize=fontsize - 1, color="0.2", zorder=4,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))
    return fig
