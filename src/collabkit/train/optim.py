"""Adam with decoupled weight decay, grouped by parameter as fastai groups it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d)


def no_decay_params(model: nn.Module) -> set[int]:
    """ids of the parameters fastai leaves undecayed (wd_bn_bias=False): norm layers and `.bias`.

    Embedding-based bias tables (`u_bias`, `i_bias`) are not `.bias` attributes, so they are decayed,
    as in fastai; the chapter's numbers depend on it. A rule by tensor dimension would get this wrong.
    """
    skip: set[int] = set()
    for m in model.modules():
        if isinstance(m, NORM_TYPES):
            skip.update(id(p) for p in m.parameters(recurse=False))
        bias = getattr(m, "bias", None)
        if isinstance(bias, nn.Parameter):
            skip.add(id(bias))
    return skip


def make_adam(
    model: nn.Module, lr: float = 1e-3, wd: float = 0.01, eps: float = 1e-5, sqr_mom: float = 0.99
) -> torch.optim.AdamW:
    """fastai's Adam (beta2 0.99, eps 1e-5, decoupled weight decay) as torch's AdamW, in two groups."""
    skip = no_decay_params(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if id(p) not in skip]
    plain = [p for p in params if id(p) in skip]
    groups = [{"params": decay, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
    return make_fused_adamw([g for g in groups if g["params"]], lr=lr, wd=wd, eps=eps, sqr_mom=sqr_mom)


def make_fused_adamw(
    params: Any, lr: float, wd: float, eps: float = 1e-5, sqr_mom: float = 0.99
) -> torch.optim.AdamW:
    """torch's AdamW with the fused kernel (one pass over each tensor) where the device has it."""
    try:
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, sqr_mom), eps=eps, weight_decay=wd, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype the fused kernel does not support
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, sqr_mom), eps=eps, weight_decay=wd)


def set_hyper(
    opt: torch.optim.Optimizer, lr: float, mom: float | None = None, wd: float | None = None
) -> None:
    """Set the learning rate (and Adam's beta1, and the decayed group's weight decay) for this step."""
    for g in opt.param_groups:
        g["lr"] = lr
        if mom is not None:
            g["betas"] = (mom, g["betas"][1])
        if wd is not None and g["weight_decay"] != 0.0:
            g["weight_decay"] = wd
