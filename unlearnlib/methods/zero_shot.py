"""The zero-shot methods of :mod:`unlearnlib.zeroshot` behind the common interface.

Introduced in the Baselines chapter ({ref}`chap-baselines`); the methods themselves are
introduced in {ref}`chap-zero-shot`.

Both methods see the trained model and the ids of the forget classes, nothing else: their
contract refuses forget samples and retain data. They still need to know what an input
looks like (to generate noise or pseudo-samples), given as the ``input_shape`` option;
:meth:`~unlearnlib.methods.base.UnlearningMethod.run` fills it from the task, since a
shape is not training data. Every other option is a keyword of the wrapped function, with
that function's default (the deck's MNIST settings), except ``seed``, fixed at 0 so that
results repeat.
"""

from __future__ import annotations

import inspect

from torch import nn

from .. import zeroshot

__all__ = ["ZERO_SHOT_FUNCTIONS", "zero_shot_defaults", "error_min_max_model", "gkt_model"]

# arguments that are not hyperparameters: data-free metadata, callbacks, or passed by the wrapper
_NOT_OPTIONS = {"input_shape", "num_classes", "device", "monitor", "monitor_every", "student"}

ZERO_SHOT_FUNCTIONS = {"error_min_max": zeroshot.error_min_max, "gkt": zeroshot.gated_knowledge_transfer}


def zero_shot_defaults(name: str) -> dict:
    """The options of the wrapped function ``name`` (``'error_min_max'`` or ``'gkt'``)
    with their defaults, plus ``input_shape`` (None: taken from the task) and ``seed`` 0.
    Introduced in {ref}`chap-baselines`."""
    fn = ZERO_SHOT_FUNCTIONS[name]
    options = {p.name: p.default for p in inspect.signature(fn).parameters.values()
               if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_OPTIONS}
    options["seed"] = 0
    return {"input_shape": None, **options}


def _call(name, model, classes, config, device):
    options = dict(config)
    shape = options.pop("input_shape")
    if shape is None:
        raise ValueError(f"{name} generates its own inputs and needs their shape: pass config={{'input_shape': "
                         f"(channels, height, width)}} or run it on an UnlearningTask built from a dataset")
    return ZERO_SHOT_FUNCTIONS[name](model, list(classes), input_shape=tuple(shape), device=device, **options)


def error_min_max_model(model: nn.Module, *, classes, config, device, **_):
    """M-M through :func:`unlearnlib.zeroshot.error_min_max`."""
    result = _call("error_min_max", model, classes, config, device)
    return result.model, {"phase_seconds": dict(result.phase_seconds), "n_forget_noise": len(result.forget_noise[0]),
                          "n_retain_noise": len(result.retain_noise[0])}


def gkt_model(model: nn.Module, *, classes, config, device, **_):
    """GKT through :func:`unlearnlib.zeroshot.gated_knowledge_transfer`."""
    result = _call("gkt", model, classes, config, device)
    return result.student, {"selected": result.selected, "selection": result.selection,
                            "empty_batches": result.empty_batches, "history": result.history}
