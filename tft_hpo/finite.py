"""Non-finite losses: pytorch-forecasting hides them, this makes them a clear stop or a clear failure.

pytorch-forecasting's metrics replace a NaN or infinite loss by a constant 1e9 tensor (with a warning)
that has no gradient, so Lightning's backward would then fail with "element 0 of tensors does not
require grad". A loss without gradient reaching the backward pass is that replaced loss.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


def replaced_non_finite(loss: Tensor) -> bool:
    """Whether ``loss``, about to be backpropagated, is pytorch-forecasting's stand-in for a non-finite loss."""
    return not loss.requires_grad


class NonFiniteLossCheck(pl.Callback):
    """Ends training with :class:`NonFiniteLoss` at the first non-finite training loss."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if replaced_non_finite(loss):
            raise NonFiniteLoss(
                f"training loss is not finite at epoch {trainer.current_epoch}, step {trainer.global_step}"
            )
