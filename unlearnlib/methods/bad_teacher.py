"""Bad Teacher: unlearning with a competent and an incompetent teacher (Chundawat et al.,
AAAI 2023).

Introduced in the Baselines chapter ({ref}`chap-baselines`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..data import LabelledData
from ..distill import kd_loss
from ..training import fit, predict_logits
from .base import reinitialized_copy

__all__ = ["bad_teacher_model"]


def bad_teacher_model(model: nn.Module, *, forget: LabelledData, retain: LabelledData, config, device, **_):
    """Distil from two teachers: on $\\mathcal D_f$ (tag $l=1$) the student imitates a
    randomly initialised network $T_d$, on a random share ``retain_fraction`` of
    $\\mathcal D_r$ (tag $l=0$) the original model $T_s$. The student starts from the
    original model's weights; the loss is
    $\\mathrm{KL}(l\\,\\sigma(T_d(x)/\\tau) + (1-l)\\,\\sigma(T_s(x)/\\tau)\\,\\|\\,\\sigma(S(x)/\\tau))$
    via :func:`~unlearnlib.distill.kd_loss`.

    Both teachers are frozen and in evaluation mode, so their logits are computed once; the
    student is then trained with :func:`~unlearnlib.training.fit`, whose "labels" are the
    positions of the samples in the mixed set (the loss looks up the selected teacher's
    logits by position). Introduced in {ref}`chap-baselines`."""
    fraction = float(config["retain_fraction"])
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"retain_fraction must lie in (0, 1], got {fraction}")
    gen = torch.Generator().manual_seed(config["seed"])
    n_keep = max(1, int(round(fraction * len(retain))))
    keep = torch.randperm(len(retain), generator=gen)[:n_keep]
    x = torch.cat([forget.x.cpu(), retain.x.cpu()[keep]])
    is_forget = torch.cat([torch.ones(len(forget), dtype=torch.bool), torch.zeros(n_keep, dtype=torch.bool)])

    competent = copy.deepcopy(model)
    incompetent = reinitialized_copy(model, seed=config["seed"] + 1)
    t_competent = predict_logits(competent, x, device=device)
    t_incompetent = predict_logits(incompetent, x, device=device)
    teacher = torch.where(is_forget[:, None], t_incompetent, t_competent).to(device)
    temperature, reduction = config["temperature"], config["reduction"]

    def loss_fn(student_logits, positions):
        return kd_loss(student_logits, teacher[positions], temperature=temperature, reduction=reduction)

    history = fit(model, (x, torch.arange(len(x))), loss_fn=loss_fn, epochs=config["epochs"], lr=config["lr"],
                  batch_size=config["batch_size"], optimizer=config["optimizer"], seed=config["seed"],
                  device=device, desc="bad teacher")
    return model, {"steps": history.steps, "n_forget": len(forget), "n_retain_used": n_keep,
                   "final_loss": history.epoch_loss[-1] if history.epoch_loss else None}
