"""Helpers for the chapters: one set-up call and a ``glue`` that works outside the book.

Introduced in the Background chapter ({ref}`chap-background`).
"""

from __future__ import annotations

from . import __version__
from .plotting import use_style
from .training import get_device, seed_everything

__all__ = ["setup_notebook", "glue"]


def setup_notebook(seed: int = 0, *, requires: str = "0.1", device=None):
    """Seed everything, apply the plot style and check the library version.

    ``requires`` is the ``major.minor`` version of unlearnlib the chapter was written for;
    a different one raises, because chapters and library change together. Returns the
    compute device. Introduced in {ref}`chap-background`.
    """
    have = ".".join(__version__.split(".")[:2])
    if have != requires:
        raise RuntimeError(
            f"this chapter was written for unlearnlib {requires}.x but {__version__} is "
            f"installed; reinstall from the course repository (make book)"
        )
    seed_everything(seed)
    use_style()
    return get_device(device)


def glue(name: str, value, display: bool = False):
    """Record ``value`` under ``name`` for ``{glue:text}`` in the chapter's prose.

    Uses myst-nb's glue when it is installed and otherwise does nothing, so the chapters
    also run in a plain Jupyter environment. NumPy scalars and one-element tensors become
    Python numbers first: their reprs (``np.float64(0.5)``) cannot be formatted by
    ``{glue:text}`name:.1f```. Returns ``value``.
    """
    if getattr(value, "ndim", None) == 0 or type(value).__module__ == "numpy":
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    _glue(name, value, display=display)
    return value
