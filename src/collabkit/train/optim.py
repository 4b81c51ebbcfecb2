"""Adam with decoupled weight decay (fastai's Adam, torch's AdamW arithmetic), grouped as fastai groups it.

Why not torch.optim.AdamW as is: at the chapter's sizes (bs 64, 133k parameters) its per-step
bookkeeping (hooks, profiler records, state look-ups) costs more than the update. `FastAdamW`
keeps the state in flat lists and calls the same fused kernel directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d)
_fused_ok: dict[str, bool] = {}  # device type -> whether torch's fused AdamW kernel runs there


def adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
) -> None:
    """One AdamW step in place: p *= 1 - lr*wd, then the bias-corrected Adam update."""
    torch._foreach_add_(steps, 1)
    device = params[0].device.type
    if _fused_ok.get(device, True):
        try:
            torch._fused_adamw_(
                params, grads, exp_avgs, exp_avg_sqs, [], steps,
                lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps,
                amsgrad=False, maximize=False,
            )  # fmt: skip
            _fused_ok[device] = True
            return
        except (RuntimeError, NotImplementedError):  # older torch, or a device without the kernel
            _fused_ok[device] = False
    for p, g, m, v, s in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        t = float(s)
        p.mul_(1 - lr * weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))


class FastAdamW:
    """AdamW over parameter groups, with `param_groups` shaped like torch's for the schedule."""

    def __init__(
        self, groups: Iterable[dict[str, Any]], lr: float, betas: tuple[float, float], eps: float
    ) -> None:
        self.param_groups: list[dict[str, Any]] = []
        for g in groups:
            params = list(g["params"])
            self.param_groups.append(
                {
                    "params": params,
                    "lr": lr,
                    "betas": betas,
                    "eps": eps,
                    "weight_decay": g.get("weight_decay", 0.0),
                    "exp_avg": [torch.zeros_like(p) for p in params],
                    "exp_avg_sq": [torch.zeros_like(p) for p in params],
                    "step": [torch.zeros((), dtype=torch.float32, device=p.device) for p in params],
                }
            )

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            live = [i for i, p in enumerate(g["params"]) if p.grad is not None]
            if not live:
                continue
            adamw_update(
                [g["params"][i] for i in live],
                [g["params"][i].grad for i in live],
                [g["exp_avg"][i] for i in live],
                [g["exp_avg_sq"][i] for i in live],
                [g["step"][i] for i in live],
                lr=g["lr"],
                beta1=g["betas"][0],
                beta2=g["betas"][1],
                weight_decay=g["weight_decay"],
                eps=g["eps"],
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None


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
) -> FastAdamW:
    """fastai's Adam (beta2 0.99, eps 1e-5, decoupled weight decay) in two groups: decayed or not."""
    skip = no_decay_params(model)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if id(p) not in skip]
    plain = [p for p in params if id(p) in skip]
    groups = [{"params": decay, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
    return FastAdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, sqr_mom), eps=eps)


def set_hyper(opt: Any, lr: float, mom: float | None = None, wd: float | None = None) -> None:
    """Set the learning rate (and Adam's beta1, and the decayed group's weight decay) for this step."""
    for g in opt.param_groups:
        g["lr"] = lr
        if mom is not None:
            g["betas"] = (mom, g["betas"][1])
        if wd is not None and g["weight_decay"] != 0.0:
            g["weight_decay"] = wd
