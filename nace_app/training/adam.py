"""Adam for training's loop, without `torch.optim`'s `Optimizer` class.

The embedding table gets torch's `SparseAdam` update, row by row: only the rows a batch uses move, as fastText
updates only those (a dense step would rewrite buckets x dimension numbers every step). The other parameters get
`AdamW`'s update. The arithmetic is torch's, held against `torch.optim.SparseAdam` and `AdamW` by tests; what this
saves is their overhead: the first `Optimizer` made in a process imports `torch._dynamo` (about 2.5 CPU-seconds),
and `SparseAdam.step` builds three sparse tensors per step (a third of a default run's loop).
"""

from __future__ import annotations

import math
from typing import Any

import torch


class RowwiseAdam:
    """`step(lr)` applies one update with that learning rate (the schedule is the caller's).

    `sparse` is the embedding weight whose gradient is sparse (its layer's `sparse=True`), or None; weight decay
    applies to the dense parameters only, as `AdamW` on them beside `SparseAdam` on the table would.
    """

    def __init__(self, parameters: list[torch.nn.Parameter], sparse: torch.nn.Parameter | None, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.dense = [p for p in parameters if p is not sparse and p.requires_grad]
        self.sparse = sparse
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.steps = 0
        tracked = self.dense + ([sparse] if sparse is not None else [])
        self.first = {id(p): torch.zeros_like(p, memory_format=torch.preserve_format) for p in tracked}
        self.second = {id(p): torch.zeros_like(p, memory_format=torch.preserve_format) for p in tracked}

    def zero_grad(self) -> None:
        for parameter in self.dense + ([self.sparse] if self.sparse is not None else []):
            parameter.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        for parameter in self.dense:
            if parameter.grad is None:
                continue
            grad, first, second = parameter.grad, self.first[id(parameter)], self.second[id(parameter)]
            parameter.mul_(1 - lr * self.weight_decay)
            first.lerp_(grad, 1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (second.sqrt() / math.sqrt(correction2)).add_(self.eps)
            parameter.addcdiv_(first, denominator, value=-lr / correction1)
        if self.sparse is not None and self.sparse.grad is not None:
            self._rows_step(self.sparse, lr * math.sqrt(correction2) / correction1)

    def _rows_step(self, parameter: torch.nn.Parameter, step_size: float) -> None:
        grad = parameter.grad.coalesce()  # one row per id (forward_flat's gradient already is; a padded batch's not)
        rows, values = grad.indices()[0], grad.values()
        if rows.numel() == 0:
            return
        beta1, beta2 = self.betas
        first = self.first[id(parameter)].index_select(0, rows).lerp_(values, 1 - beta1)
        second = self.second[id(parameter)].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        self.first[id(parameter)].index_copy_(0, rows, first)
        self.second[id(parameter)].index_copy_(0, rows, second)
        parameter.index_add_(0, rows, first.div_(second.sqrt_().add_(self.eps)), alpha=-step_size)


def rowwise_adam(model: Any, weight_decay: float) -> RowwiseAdam:
    """The optimizer of a model with a token embedder: its table row by row (its layer made sparse), the rest dense."""
    embedding = getattr(getattr(model, "token_embedder", None), "embedding_layer", None)
    if embedding is not None:
        embedding.sparse = True
    return RowwiseAdam(list(model.parameters()), embedding.weight if embedding is not None else None, weight_decay)
