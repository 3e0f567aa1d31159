"""ASLP's controller of the per-image perturbation probabilities ``alpha_i``.

Source: Liu et al., "Model Calibration in Dense Classification with Adaptive Label Perturbation"
(ICCV 2023), Sec. 3.3, and the official code github.com/Carlisle-Liu/ASLP (``main_ASLP.py``,
``train_ASLP_MC``). The rule is docs/methods.md section 1.2, in the paper convention
(official ``b = beta / 2``)::

    alpha_i <- alpha_i + lr * [ (2/beta) (C_i - 2 BCE_i)
                                + penalty * min((1 - A_val) - beta alpha_i / 2, 0) ]
    alpha_i <- clip(alpha_i, 0, max_alpha),       max_alpha = 1/beta - 0.01 by default

``BCE_i`` and ``C_i`` come from :func:`~densecal.losses.scbce.per_image_statistics` on the same
forward pass as the training step; ``A_val`` is the validation pixel accuracy measured at the end
of the previous epoch. The first term is the signed logit margin ``mean[(2y - 1) logit]`` scaled
by ``2 / beta``: alpha grows on images the model gets right with confidence. The penalty keeps the
expected target confidence ``1 - beta alpha_i / 2`` from going below ``A_val``.

Typical use inside a training step (``index`` = dataset ids of the batch)::

    ctrl = AdaptivePerturbation(len(train_set), beta=2.0)
    loss_fn = SCBCELoss(beta=2.0)                 # same beta (and beta_convention) as ctrl
    ...
    logits = model(images)
    loss = loss_fn(logits, masks, alpha=ctrl(index))  # one coin per image, P = alpha_i
    ctrl.update(index, logits, masks, epoch)           # no-op during warm-up
    ...
    ctrl.set_validation_accuracy(acc)                  # at the end of each epoch
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from densecal._checks import check_int, check_number, parse_choice
from densecal.atomic import atomic_write_text
from densecal.errors import input_error
from densecal.losses._options import BetaConvention
from densecal.losses.scbce import per_image_statistics, resolve_beta
from densecal.types import StrEnum

__all__ = ["AdaptivePerturbation", "Objective"]


class Objective(StrEnum):
    """What the penalty term of the alpha update enforces.

    ``CALIBRATION`` (the paper's ASLP_MC, the official code): the expected target confidence
    ``1 - beta alpha_i / 2`` is pushed down to, but not below, the validation accuracy.
    ``CONSERVATIVE`` (the paper's ASLP_MEI, not in the official code): the penalty is
    ``penalty * min(A_val - A_ref, 0)`` with ``A_ref`` the best validation accuracy so far.
    """

    CALIBRATION = "calibration"
    CONSERVATIVE = "conservative"


def _number(value: object, where: str, low: float, high: float = math.inf) -> float:
    return check_number(where, value, low, high, problem=f"must be a number in [{low}, {high}]")


class AdaptivePerturbation(nn.Module):
    """Per-image perturbation probabilities ``alpha`` learnt by ASLP's update rule.

    State lives in registered buffers, so it is saved in ``state_dict`` (and Lightning
    checkpoints) and restored on resume: ``alpha (num_images,)`` float32, ``num_updates
    (num_images,)`` int64, ``val_accuracy`` and ``best_val_accuracy`` (scalars, NaN until set).
    Image ``i`` is the dataset index ``i``: keep the dataset order fixed between runs.

    Args:
        num_images: number of training images (size of the table), ``>= 1``.
        beta: perturbation strength in ``beta_convention``; default 2 (hard inversion). The
            official recipe is ``beta=2, beta_convention="code"`` (paper ``beta = 4``, clip 0.24).
        lr: step size ``eta`` of the update (official 0.002).
        penalty: weight ``lambda`` of the one-sided penalty (official 2000).
        warmup_epochs: updates start at (0-based) epoch ``warmup_epochs`` (official: after 5
            epochs).
        objective: ``"calibration"`` or ``"conservative"`` (:class:`Objective`).
        beta_convention: ``"paper"`` (``beta`` in ``(0, 2]``) or ``"code"`` (official ``b``).
        max_alpha: upper clip of alpha; ``None`` means ``min(1/beta - 0.01, 1)``.

    Raises:
        DensecalInputError: invalid option values.

    Example:
        >>> ctrl = AdaptivePerturbation(3, beta=2.0)
        >>> ctrl(torch.tensor([0, 2]))
        tensor([0., 0.])
    """

    alpha: Tensor
    num_updates: Tensor
    val_accuracy: Tensor
    best_val_accuracy: Tensor

    def __init__(self, num_images: int, beta: float = 2.0, *, lr: float = 0.002,
                 penalty: float = 2000.0, warmup_epochs: int = 5,
                 objective: Objective | str = "calibration",
                 beta_convention: BetaConvention | str = "paper",
                 max_alpha: float | None = None) -> None:
        super().__init__()
        check_int("num_images", num_images, low=1)
        if beta is None or beta == 0:
            raise input_error("beta", "must be > 0 for ASLP (the update divides by beta)")
        self.beta = resolve_beta(beta, "hard_inversion", beta_convention)  # paper convention
        self.lr = _number(lr, "lr", 0.0)
        self.penalty = _number(penalty, "penalty", 0.0)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, low=0)
        self.objective = parse_choice(Objective, objective, "objective")
        self.max_alpha = (min(1.0 / self.beta - 0.01, 1.0) if max_alpha is None
                          else _number(max_alpha, "max_alpha", 0.0, 1.0))
        self.register_buffer("alpha", torch.zeros(num_images, dtype=torch.float32))
        self.register_buffer("num_updates", torch.zeros(num_images, dtype=torch.int64))
        self.register_buffer("val_accuracy", torch.tensor(math.nan, dtype=torch.float32))
        self.register_buffer("best_val_accuracy", torch.tensor(math.nan, dtype=torch.float32))

    @property
    def num_images(self) -> int:
        """Number of images in the table."""
        return self.alpha.numel()

    @property
    def expected_confidence(self) -> Tensor:
        """Expected target confidence ``1 - beta alpha_i / 2`` per image, shape ``(num_images,)``.

        It is the minimiser ``q*`` of the expected SC-BCE on a foreground pixel.
        """
        return 1.0 - self.beta * self.alpha / 2

    def _check_index(self, index: Tensor) -> Tensor:
        if not isinstance(index, Tensor) or index.ndim != 1 or index.is_floating_point() \
                or index.dtype == torch.bool:
            raise input_error("index", "must be a 1-D integer tensor of image ids, shape (B,)")
        # checked where the ids live (a CPU batch from the loader costs no device sync)
        if index.numel() and not bool(((index >= 0) & (index < self.num_images)).all()):
            raise input_error("index", f"image ids must lie in [0, {self.num_images - 1}]")
        return index.to(device=self.alpha.device, dtype=torch.int64)

    def forward(self, index: Tensor) -> Tensor:
        """Return the current ``alpha`` of the images ``index``.

        Args:
            index: image ids, integer tensor ``(B,)`` in ``[0, num_images)``.

        Returns:
            Detached float32 tensor ``(B,)`` on the buffers' device.

        Raises:
            DensecalInputError: index not 1-D integer or out of range.
        """
        return self.alpha[self._check_index(index)].detach()

    def set_validation_accuracy(self, accuracy: float | Tensor) -> None:
        """Record ``A_val``, the validation pixel accuracy (threshold 0.5) of the last epoch.

        Also keeps ``best_val_accuracy`` (``A_ref`` of the conservative objective), the best
        accuracy seen so far, the current one included.

        Args:
            accuracy: a fraction in ``[0, 1]`` (a float or a one-element tensor).

        Raises:
            DensecalInputError: not a finite number in ``[0, 1]``.
        """
        if isinstance(accuracy, Tensor):
            if accuracy.numel() != 1:
                raise input_error("accuracy", "must be a single number")
            accuracy = float(accuracy.item())
        acc = _number(accuracy, "accuracy", 0.0, 1.0)
        self.val_accuracy.fill_(acc)
        best = self.best_val_accuracy.item()
        if math.isnan(best) or acc > best:
            self.best_val_accuracy.fill_(acc)

    def compute_statistics(self, logits: Tensor, target: Tensor,
                           ignore_index: float | None = None) -> tuple[Tensor, Tensor]:
        """Per-image ``(BCE_i, C_i)``, each ``(B,)``: see :func:`per_image_statistics`."""
        return per_image_statistics(logits, target, ignore_index=ignore_index)

    @torch.no_grad()
    def apply_update(self, index: Tensor, bce: Tensor, c: Tensor, epoch: int) -> None:
        """Apply one ASLP step to the images ``index`` (vectorised over the batch).

        ``alpha_i <- clip(alpha_i + lr * [(2/beta)(C_i - 2 BCE_i) + penalty * P_i], 0, max_alpha)``
        with ``P_i = min((1 - A_val) - beta alpha_i / 2, 0)`` for the calibration objective
        (official ``train_ASLP_MC``) and ``P_i = min(A_val - A_ref, 0)`` for the conservative
        one (densecal's reading of the paper's ambiguous ASLP_MEI definition; ``A_ref`` is the
        best validation accuracy so far).

        No-op while ``epoch < warmup_epochs`` and while no validation accuracy was ever set (the
        official code has none before its first update either). Entries with non-finite
        statistics (images whose pixels were all ignored) are skipped. An id present several
        times in one call gets the mean of its updates (all computed from the same old alpha)
        and counts one update, deterministically: this is what happens to DDP all-gathered
        batches padded with repeated ids. Kept apart from :meth:`compute_statistics` so that
        all-gathered ``(index, bce, c)`` give the same table on every rank.

        Args:
            index: image ids, integer tensor ``(B,)``.
            bce: per-image mean BCE against the unperturbed labels, ``(B,)``.
            c: per-image mean ``-log(q (1 - q))``, ``(B,)``.
            epoch: current epoch, 0-based.

        Raises:
            DensecalInputError: bad index or statistics shapes.
        """
        if epoch < self.warmup_epochs:
            return
        index = self._check_index(index)
        dev = self.alpha.device
        bce = bce.detach().to(device=dev, dtype=torch.float32)
        c = c.detach().to(device=dev, dtype=torch.float32)
        if bce.shape != index.shape or c.shape != index.shape:
            raise input_error("bce, c", f"must have the shape of index {tuple(index.shape)}, got "
                                        f"{tuple(bce.shape)} and {tuple(c.shape)}")
        old = self.alpha[index]
        acc = self.val_accuracy
        if self.objective is Objective.CALIBRATION:
            gap = (1.0 - acc) - self.beta * old / 2
        else:
            gap = (acc - self.best_val_accuracy).expand_as(old)
        step = (2.0 / self.beta) * (c - 2.0 * bce) + self.penalty * gap.clamp(max=0.0)
        new = (old + self.lr * step).clamp(0.0, self.max_alpha)
        valid = (torch.isfinite(bce) & torch.isfinite(c) & ~torch.isnan(acc)).to(torch.float32)
        counts = torch.zeros_like(self.alpha).index_add_(0, index, valid)
        sums = torch.zeros_like(self.alpha).index_add_(0, index, torch.where(valid > 0, new, 0.0))
        touched = counts > 0
        self.alpha.copy_(torch.where(touched, sums / counts.clamp(min=1.0), self.alpha))
        self.num_updates.add_(touched.to(torch.int64))

    def update(self, index: Tensor, logits: Tensor, target: Tensor, epoch: int,
               ignore_index: float | None = None) -> None:
        """:meth:`compute_statistics` then :meth:`apply_update` (skipped during warm-up).

        Args:
            index: image ids ``(B,)`` of the batch.
            logits: raw logits of the training forward pass, ``(B, *spatial)`` or
                ``(B, 1, *spatial)`` (detached inside).
            target: unperturbed labels of the same shape.
            epoch: current epoch, 0-based.
            ignore_index: optional label value to leave out of the statistics.
        """
        if epoch < self.warmup_epochs:
            return
        bce, c = self.compute_statistics(logits, target, ignore_index=ignore_index)
        self.apply_update(index, bce, c, epoch)

    def table(self, names: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The alpha table as ``(name, alpha)`` rows in image-id order.

        Args:
            names: one name per image (e.g. file stems, in dataset order); default ``"0"``,
                ``"1"``, ...

        Returns:
            ``num_images`` rows.

        Raises:
            DensecalInputError: ``names`` has the wrong length.
        """
        if names is None:
            names = [str(i) for i in range(self.num_images)]
        elif len(names) != self.num_images:
            raise input_error("names", f"must have {self.num_images} entries (one per image), "
                                       f"got {len(names)}")
        return list(zip((str(n) for n in names), self.alpha.tolist(), strict=True))

    def write_table(self, path: str | Path, names: Sequence[str] | None = None) -> None:
        """Write the table as CSV ``name,alpha,updates`` (atomically).

        Alpha is written with 9 significant digits (round-trips float32 exactly).

        Args:
            path: destination file; its folder is created if missing.
            names: as in :meth:`table`.

        Raises:
            DensecalInputError: ``names`` has the wrong length.
        """
        rows = self.table(names)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name", "alpha", "updates"])
        for (name, a), k in zip(rows, self.num_updates.tolist(), strict=True):
            writer.writerow([name, format(a, ".9g"), k])
        atomic_write_text(path, buf.getvalue())

    def extra_repr(self) -> str:
        return (f"num_images={self.num_images}, beta={self.beta}, lr={self.lr}, "
                f"penalty={self.penalty}, warmup_epochs={self.warmup_epochs}, "
                f"objective={self.objective.value}, max_alpha={self.max_alpha:g}")
