"""UNSIR: unlearning by selective impair and repair (Tarun, Chundawat, Mandal and
Kankanhalli, IEEE TNNLS 2023).

Introduced in the Baselines chapter ({ref}`chap-baselines`).

UNSIR needs no forget samples: it learns *error-maximising noise* for each forget class
from the trained model, trains on that noise (labelled with its class) together with a
small subset of retain data to impair the forget classes, then repairs on the retain
subset alone. Two bugs of the public notebook are not reproduced (algorithms.md 3.5): every
noise image is used (the notebook copied only 3 of each batch of 256) and each is labelled
with its own forget class (the notebook labelled all of them class 0); and the noise is
learned with the model in evaluation mode, so batch-normalisation statistics do not drift
towards the noise.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data import LabelledData
from ..training import fit

__all__ = ["error_maximizing_noise", "retain_subset", "unsir_model"]


def error_maximizing_noise(model: nn.Module, classes, input_shape, *, per_class: int = 64, steps: int = 40,
                           lr: float = 0.1, l2_weight: float = 0.1, seed: int = 0, device=None):
    """Noise images that maximise the model's loss on each class in ``classes``.

    For every class $c$, ``per_class`` images $N$ start from $\\mathcal N(0, 1)$ and take
    ``steps`` Adam steps (learning rate ``lr``) on
    $-\\mathcal L_{CE}(f_\\theta(N), c) + \\lambda\\,\\frac1B\\sum_b\\lVert N_b\\rVert_2^2$
    with $\\lambda$ = ``l2_weight``; the model is frozen and in evaluation mode. Returns
    ``(x, y, loss_before, loss_after)``: the noise, its labels, and the mean cross-entropy
    of the noise for its class before and after the optimisation (it should rise).
    Introduced in {ref}`chap-baselines`.
    """
    classes = tuple(int(c) for c in classes)
    if not classes:
        raise ValueError("no class given")
    if per_class < 1 or steps < 0 or lr <= 0 or l2_weight < 0:
        raise ValueError("need per_class >= 1, steps >= 0, lr > 0 and l2_weight >= 0")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(classes) * per_class, *input_shape), generator=gen).to(dev).requires_grad_(True)
    labels = torch.tensor(classes, device=dev).repeat_interleave(per_class)
    was_training = model.training
    model.eval()
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.Adam([noise], lr=lr)
    try:
        with torch.no_grad():
            before = float(F.cross_entropy(model(noise), labels))
        for _ in range(steps):
            loss = -F.cross_entropy(model(noise), labels) + l2_weight * noise.pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = float(F.cross_entropy(model(noise), labels))
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return noise.detach(), labels, before, after


def retain_subset(retain: LabelledData, per_class: int, *, seed: int = 0) -> LabelledData:
    """At most ``per_class`` randomly chosen samples of every class in ``retain`` (seeded):
    the small retain subset UNSIR works with. Introduced in {ref}`chap-baselines`."""
    if per_class < 1:
        raise ValueError(f"per_class must be positive, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(retain.y).tolist():
        pos = torch.nonzero(retain.y == c).flatten()
        chosen.append(pos[torch.randperm(len(pos), generator=gen)[:per_class]])
    return retain.subset(torch.cat(chosen).sort().values)


def unsir_model(model: nn.Module, *, retain: LabelledData, classes, config, device, **_):
    """Noise, impair (noise and retain subset), repair (retain subset).
    Introduced in {ref}`chap-baselines`."""
    subset = retain_subset(retain, config["retain_per_class"], seed=config["seed"])
    noise_x, noise_y, before, after = error_maximizing_noise(
        model, classes, tuple(retain.x.shape[1:]), per_class=config["noise_per_class"],
        steps=config["noise_steps"], lr=config["noise_lr"], l2_weight=config["l2_weight"],
        seed=config["seed"], device=device)
    copies = int(config["noise_copies"])
    if copies < 1:
        raise ValueError(f"noise_copies must be positive, got {copies}")
    impair = (torch.cat([noise_x.cpu().repeat(copies, 1, 1, 1), subset.x.cpu()]),
              torch.cat([noise_y.cpu().repeat(copies), subset.y.cpu()]))
    common = dict(batch_size=config["batch_size"], optimizer=config["optimizer"], device=device)
    h1 = fit(model, impair, epochs=config["impair_epochs"], lr=config["impair_lr"], seed=config["seed"],
             desc="UNSIR impair", **common)
    h2 = fit(model, subset, epochs=config["repair_epochs"], lr=config["repair_lr"], seed=config["seed"] + 1,
             desc="UNSIR repair", **common)
    return model, {"noise_loss_before": before, "noise_loss_after": after, "n_retain_used": len(subset),
                   "n_noise": len(noise_x) * copies, "steps": h1.steps + h2.steps}
