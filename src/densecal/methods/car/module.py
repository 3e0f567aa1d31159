"""CAR — Calibrated Adversarial Refinement (Kassapis et al., ICCV 2021): training and sampling.

Source: the paper, official code github.com/EliasKassapis/CARSSS, docs/methods.md section 4.
Networks and formulas: :mod:`densecal.methods.car.nets`.

A calibration net ``F`` (any :mod:`densecal.models` network, trained with pixel CE, or frozen and
loaded from a ``densecal train`` checkpoint) gives per-pixel marginals; a refinement generator
``G`` turns ``(x, F(x))`` and a latent ``z ~ N(0, I)`` into one label-map sample; an image-level
discriminator ``D`` makes the samples realistic; ``L_cal = KL(mean of M samples || F)`` makes
their average match ``F``. ``cal_weight = 0`` is the cGAN-only ablation ("no_cal").

Run folder (as :mod:`densecal.methods.train`)::

    RUN/config.json             TrainConfig with method "car"; CAR options in extra["car"]
    RUN/checkpoints/last.ckpt   F, G, D, their optimisers and the iteration counter
    RUN/logs/version_K/metrics.csv

Training is resume-exact and DDP-sharded like the segmentation objectives
(:func:`densecal.methods.engine.fit.fit_family_run`): the latent ``z`` comes from torch's global
RNG, reseeded before every step (:class:`~densecal.methods.engine.seeding.StepSeeded`), and under
DDP the discriminator's skip decision uses its accuracy over all ranks' images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from densecal._checks import check_int, parse_choice
from densecal.data.synthetic.ambiguity import flip_transform_for
from densecal.errors import input_error
from densecal.losses.soft_label import one_hot_labels
from densecal.methods.car.nets import (
    CARSSSDiscriminator,
    ImageDiscriminator,
    RefinementGenerator,
    calibration_kl,
    discriminator_accuracy,
    discriminator_loss,
    generator_adversarial_loss,
    r1_penalty,
)
from densecal.methods.config import TrainConfig, check_run_options, family_options
from densecal.methods.engine.fit import fit_family_run
from densecal.methods.engine.run_folder import resume_or_refuse
from densecal.methods.engine.seeding import StepSeeded
from densecal.methods.registry import register_trainer
from densecal.methods.segmentation.training import folder_datasets
from densecal.models.segmentation import create_model
from densecal.types import StrEnum

__all__ = ["CARModule", "CAROptions", "Discriminator", "d_window_active", "pixel_ce", "train_car"]

CE_CLAMP = 1e-7


class Discriminator(StrEnum):
    """CAR's discriminator (``CAROptions.discriminator``)."""

    SMALL = "small"
    CARSSS = "carsss"


@dataclass
class CAROptions:
    """CAR's options (defaults: Kassapis et al. 2021 / CARSSS, docs/methods.md section 4).

    Stored in ``TrainConfig.extra["car"]``. ``TrainConfig.lr`` is not used by CAR.

    Attributes:
        latent_dim: size of ``z`` (8 on LIDC, 32 on Cityscapes).
        samples: ``M``, generator samples per image and step (5).
        adv_weight: ``lambda_adv`` on the non-saturating adversarial loss (10).
        cal_weight: ``lambda_cal`` on ``L_cal`` (5); 0 is the cGAN-only ablation.
        r1_weight: weight of the R1 penalty in ``L_D`` (10).
        d_active: ``D`` trains during the first ``d_active`` of every ``d_period`` iterations.
        d_period: period of the ``D`` schedule (250).
        d_max_accuracy: ``D`` skips its step when its accuracy on the batch is at least this.
        lr_f, lr_g, lr_d: Adam learning rates of ``F``, ``G`` (2e-4) and ``D`` (1e-5).
        betas: Adam betas (0.5, 0.99).
        weight_decay: Adam weight decay (L2, 5e-4) for all three networks.
        calibration_checkpoint: a ``densecal train`` checkpoint whose network becomes a frozen
            ``F`` (``None``: ``F`` is ``TrainConfig.model`` trained from scratch with CE).
        calibration_model: network name of ``F`` (filled from the checkpoint when frozen).
        gen_channels: the generator's four encoder widths.
        residual: ``G``'s logits are a correction added to ``log F(x)``
            (:class:`~densecal.methods.car.nets.RefinementGenerator`), so ``G`` starts from
            ``F``'s marginals instead of a random map (``False``: CARSSS's plain output). Use it
            with a frozen, sharp ``F``: densecal measured the plain ``G`` collapsing to
            all-background samples there (``L_cal`` stuck at 1.13 on the ambiguity scenes, with
            or without the adversarial loss), because the softmax and ``L_cal``'s clamp leave no
            gradient once a class's sample mean has saturated near 0; the residual ``G`` tracked
            ``F`` from the first epoch (``L_cal`` 0.001).
        disc_channels: the small discriminator's widths.
        discriminator: ``small`` (:class:`~densecal.methods.car.nets.ImageDiscriminator`,
            densecal's default: strided convolutions, global pooling) or ``carsss``
            (:class:`~densecal.methods.car.nets.CARSSSDiscriminator`, the CARSSS code's form).
        disc_width: the CARSSS discriminator's width (``n_hidden``, 64).
        oracle: ``F`` is the exact calibration of an ambiguity dataset instead of a network:
            ``(1 - p) onehot(c) + p onehot(twin(c))`` on pixels of a flippable class ``c`` of
            the base label map, ``onehot(base)`` elsewhere (:meth:`CARModule.oracle_probs`).
            Training reads the base maps from the batch (``"base"``, datasets written with base
            masks); sampling needs each image's base map. It isolates ``G``: the whole budget
            goes to following a known ``F`` (issue 19's experiment (a)).
        oracle_flips: the ``[class, twin, p]`` rows of the oracle, filled from the dataset's
            ``ambiguity.json`` when training starts (saved with the run).
    """

    latent_dim: int = 8
    samples: int = 5
    adv_weight: float = 10.0
    cal_weight: float = 5.0
    r1_weight: float = 10.0
    d_active: int = 50
    d_period: int = 250
    d_max_accuracy: float = 0.85
    lr_f: float = 2e-4
    lr_g: float = 2e-4
    lr_d: float = 1e-5
    betas: tuple[float, float] = (0.5, 0.99)
    weight_decay: float = 5e-4
    calibration_checkpoint: str | None = None
    calibration_model: str | None = None
    gen_channels: tuple[int, ...] = (16, 32, 64, 128)
    residual: bool = False
    disc_channels: tuple[int, ...] = (16, 32, 64)
    discriminator: str = "small"
    disc_width: int = 64
    oracle: bool = False
    oracle_flips: tuple[tuple[int, int, float], ...] | None = None

    @property
    def frozen(self) -> bool:
        """Whether ``F`` is fixed: a pretrained network or the oracle (never trained here)."""
        return self.calibration_checkpoint is not None or self.oracle

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CAROptions:
        """Options from a dict (e.g. ``config.extra["car"]``), refusing unknown keys.

        Raises:
            DensecalInputError: unknown keys or invalid values (named in the message).
        """
        data = family_options(data, "car", cls)
        for key in ("betas", "gen_channels", "disc_channels"):
            if key in data:
                data[key] = tuple(data[key])
        if data.get("oracle_flips") is not None:
            data["oracle_flips"] = tuple((int(c), int(t), float(p))
                                         for c, t, p in data["oracle_flips"])
        options = cls(**data)
        options.check()
        return options

    def check(self) -> None:
        """Raise :class:`~densecal.errors.DensecalInputError` on an invalid value."""
        for name in ("latent_dim", "samples", "d_period"):
            check_int(f"car.{name}", getattr(self, name), low=1)
        if not 0 <= self.d_active <= self.d_period:
            raise input_error("car.d_active", f"must be in [0, d_period={self.d_period}], got "
                              f"{self.d_active}")
        for name in ("adv_weight", "cal_weight", "r1_weight", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise input_error(f"car.{name}", f"must be >= 0, got {getattr(self, name)}")
        for name in ("lr_f", "lr_g", "lr_d"):
            if not getattr(self, name) > 0:
                raise input_error(f"car.{name}", f"must be > 0, got {getattr(self, name)}")
        if len(self.gen_channels) != 4:
            raise input_error("car.gen_channels", "needs 4 widths")
        parse_choice(Discriminator, self.discriminator, "car.discriminator")
        check_int("car.disc_width", self.disc_width, low=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: [list(r) for r in v] if k == "oracle_flips" and v is not None
                else list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


def d_window_active(iteration: int, d_active: int, d_period: int) -> bool:
    """Whether ``D`` may train at ``iteration`` (0-based): the first ``d_active`` of every
    ``d_period`` iterations (CARSSS's schedule, 50 of 250).

    Example:
        >>> [d_window_active(i, 2, 5) for i in range(7)]
        [True, True, False, False, False, True, True]
    """
    return iteration % d_period < d_active


class CARModule(StepSeeded, L.LightningModule):
    """Train CAR's ``F``, ``G`` and ``D`` with manual optimisation.

    Each training step, on a batch ``image`` ``(N, 3, H, W)``, ``mask`` ``(N, H, W)`` class
    indices (``FolderDataset(labels=True)``):

    1. ``F``: ``L_F = mean_valid -log clamp(F_y, 1e-7)`` (skipped when frozen);
    2. ``M`` samples ``G(x, F(x).detach(), z_m)``; ``L_cal = calibration_kl(mean_m, F)``;
    3. ``D`` (only inside the active window, see :func:`d_window_active`):
       ``L_D = BCE(D(x, onehot(y)), 1) + BCE(D(x, sample), 0) + r1_weight * R1``; the step is
       skipped when ``D``'s accuracy on this batch (all ranks' images under DDP) is
       ``>= d_max_accuracy``;
    4. ``G``: ``adv_weight * BCE(D(x, sample), 1) + cal_weight * L_cal`` over all ``M`` samples.

    Ignored pixels (``config.ignore_index``) are left out of ``L_F`` and ``L_cal`` and zeroed in
    both the real one-hot maps and the samples ``D`` sees. ``z`` is drawn from torch's global
    RNG, reseeded before every training and validation step (:class:`StepSeeded`).

    Args:
        config: a :class:`TrainConfig` dict (``num_classes >= 2``), CAR options in
            ``extra["car"]``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.config = TrainConfig.from_dict(config)
        self.car = CAROptions.from_dict(self.config.extra.get("car"))
        self.check_classes(self.config)
        k = self.config.num_classes
        self.net_f = create_model(self.car.calibration_model or self.config.model,
                                  in_channels=3, out_channels=k)
        if self.car.frozen:
            self.net_f.requires_grad_(False)
        self.net_g = RefinementGenerator(k, latent_dim=self.car.latent_dim,
                                         channels=self.car.gen_channels,
                                         residual=self.car.residual)
        self.net_d = (CARSSSDiscriminator(k, self.config.image_size, width=self.car.disc_width)
                      if self.car.discriminator == "carsss"
                      else ImageDiscriminator(k, channels=self.car.disc_channels))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    @staticmethod
    def check_classes(config: TrainConfig) -> None:
        """Raise :class:`~densecal.errors.DensecalInputError` unless ``num_classes >= 2``."""
        k = config.num_classes
        check_int("--num-classes", k, low=2, problem="CAR needs a multi-class run (>= 2)")

    def train(self, mode: bool = True) -> CARModule:
        """Set training mode; a frozen ``F`` always stays in eval mode."""
        super().train(mode)
        if self.car.frozen:
            self.net_f.eval()
        return self

    def calibration_probs(self, image: Tensor, base: Tensor | None = None) -> Tensor:
        """``F``'s class probabilities ``(N, K, H, W)`` for images ``(N, 3, H, W)``: the
        network's softmax, or with ``car.oracle`` :meth:`oracle_probs` of the base label maps
        ``base`` ``(N, H, W)``.

        Raises:
            DensecalInputError: an oracle ``F`` without ``base``.
        """
        if self.car.oracle:
            if base is None:
                raise input_error("base", "the oracle F needs each image's base label map")
            return self.oracle_probs(base).to(image.dtype)
        return torch.softmax(self.net_f(image), dim=1)

    def oracle_probs(self, base: Tensor) -> Tensor:
        """The exact calibration ``(N, K, H, W)`` of base label maps ``(N, H, W)``: one-hot of
        the base class, with ``p`` of each flippable class moved to its twin (pixels equal to
        ``ignore_index`` all-zero, as :func:`~densecal.losses.soft_label.one_hot_labels`)."""
        probs = one_hot_labels(base, self.config.num_classes, self.config.ignore_index).double()
        for cls, twin, p in self.car.oracle_flips or ():
            where = base == cls
            probs[:, cls][where] = 1.0 - p
            probs[:, twin][where] = p
        return probs

    def forward(self, image: Tensor, z: Tensor | None = None, base: Tensor | None = None
                ) -> Tensor:
        """One generator sample ``(N, K, H, W)`` per image (``z`` ``(N, L)`` drawn when
        ``None``; ``base`` for an oracle ``F``)."""
        f_probs = self.calibration_probs(image, base).detach()
        if z is None:
            z = torch.randn(image.shape[0], self.car.latent_dim, device=image.device)
        return self.net_g(image, f_probs, z)

    def _valid(self, labels: Tensor) -> Tensor:
        ignore = self.config.ignore_index
        return torch.ones_like(labels, dtype=torch.bool) if ignore is None else labels != ignore

    def _optimizers(self) -> tuple[Any, Any, Any]:
        opts = self.optimizers()
        opts = list(opts) if isinstance(opts, list | tuple) else [opts]
        return (None, *opts) if self.car.frozen else tuple(opts)  # type: ignore[return-value]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        opt_f, opt_g, opt_d = self._optimizers()
        image, labels = batch["image"], batch["mask"]
        n, k, m = image.shape[0], self.config.num_classes, self.car.samples
        valid = self._valid(labels)
        logs: dict[str, float] = {}

        f_probs = self.calibration_probs(image, batch.get("base"))
        if opt_f is not None:
            loss_f = pixel_ce(f_probs, labels, valid)
            opt_f.zero_grad()
            self.manual_backward(loss_f)
            opt_f.step()
            logs["loss_f"] = float(loss_f.detach())
        f_probs = f_probs.detach()

        image_m = image.repeat(m, 1, 1, 1)
        mask_m = valid.repeat(m, 1, 1)[:, None].to(image.dtype)
        z = torch.randn(m * n, self.car.latent_dim, device=image.device)
        samples = self.net_g(image_m, f_probs.repeat(m, 1, 1, 1), z)  # (M*N, K, H, W)
        loss_cal = calibration_kl(samples.view(m, n, k, *samples.shape[2:]).mean(0), f_probs,
                                  valid)
        fake = samples * mask_m

        step = int(self.iteration)
        if d_window_active(step, self.car.d_active, self.car.d_period):
            real = one_hot_labels(labels, k, self.config.ignore_index).to(image.dtype)
            logs.update(self._discriminator_step(opt_d, image, real, image_m, fake.detach()))
        else:
            logs["d_trained"] = 0.0

        self.net_d.requires_grad_(False)
        loss_adv = generator_adversarial_loss(self.net_d(image_m, fake))
        loss_g = self.car.adv_weight * loss_adv + self.car.cal_weight * loss_cal
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.net_d.requires_grad_(True)
        self.iteration += 1
        logs.update(loss_g=float(loss_g.detach()), loss_adv=float(loss_adv.detach()),
                    loss_cal=float(loss_cal.detach()))
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)

    def _discriminator_step(self, opt_d: Any, image: Tensor, real: Tensor, image_m: Tensor,
                            fake: Tensor) -> dict[str, float]:
        """One ``D`` update (skipped when its accuracy is already ``>= d_max_accuracy``)."""
        image_r = image.detach().requires_grad_(True)
        real_r = real.detach().requires_grad_(True)
        real_logits = self.net_d(image_r, real_r)
        fake_logits = self.net_d(image_m, fake)
        penalty = r1_penalty(real_logits, [image_r, real_r])
        loss_d = discriminator_loss(real_logits, fake_logits) + self.car.r1_weight * penalty
        accuracy = self._global_mean(
            discriminator_accuracy(real_logits.detach(), fake_logits.detach()))
        trained = accuracy < self.car.d_max_accuracy  # the same on every rank
        if trained:
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
        return {"loss_d": float(loss_d.detach()), "d_accuracy": accuracy,
                "r1": float(penalty.detach()),
                "d_trained": float(trained)}

    def _global_mean(self, value: float) -> float:
        """``value`` averaged over the DDP ranks (itself on one process).

        Training shards have equal lengths (padded), so the mean of the ranks' accuracies is
        the accuracy over all their images: what one process with the whole batch measures.
        """
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        total = self.trainer.strategy.reduce(torch.tensor(value, device=self.device),
                                             reduce_op="mean")
        return float(total)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        image, labels = batch["image"], batch["mask"]
        valid = self._valid(labels)
        base = batch.get("base")
        f_probs = self.calibration_probs(image, base)
        samples = torch.stack([self(image, base=base) for _ in range(self.car.samples)])
        n_valid = valid.sum().clamp_min(1)
        self.log_dict({
            "val_accuracy": ((f_probs.argmax(1) == labels) & valid).sum() / n_valid,
            "val_sample_accuracy": ((samples[0].argmax(1) == labels) & valid).sum() / n_valid,
            "val_loss_cal": calibration_kl(samples.mean(0), f_probs, valid),
        }, prog_bar=True, batch_size=image.shape[0], sync_dist=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        car = self.car

        def adam(params: Any, lr: float) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=lr, betas=car.betas, weight_decay=car.weight_decay)

        opts = [adam(self.net_g.parameters(), car.lr_g), adam(self.net_d.parameters(), car.lr_d)]
        return opts if car.frozen else [adam(self.net_f.parameters(), car.lr_f), *opts]


def pixel_ce(probs: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """Pixel cross entropy ``mean_valid -log clamp(p_y, 1e-7)`` (CAR's ``L_F``).

    Args:
        probs: ``(N, K, H, W)`` probabilities.
        labels: ``(N, H, W)`` class indices (any value where ``valid`` is false).
        valid: ``(N, H, W)`` boolean.
    """
    index = torch.where(valid, labels, torch.zeros_like(labels))
    p_y = probs.gather(1, index[:, None])[:, 0]
    loss = -p_y.clamp_min(CE_CLAMP).log()
    weight = valid.to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------------------------
# training entry


def _load_frozen_f(car: CAROptions, num_classes: int) -> torch.nn.Module:
    from densecal.methods.segmentation.inference import load_module

    assert car.calibration_checkpoint is not None
    f_module = load_module(car.calibration_checkpoint)
    if f_module.config.num_classes != num_classes:
        raise input_error(car.calibration_checkpoint,
                          f"has {f_module.config.num_classes} classes, the run {num_classes}")
    return f_module.net


def _oracle_flips(data: str) -> tuple[tuple[int, int, float], ...]:
    """The ``[class, twin, p]`` rows of ``data``'s ambiguity spec, for an oracle ``F``.

    Raises:
        DensecalInputError: ``data`` is not the training split of an ambiguity dataset written
            with base masks.
    """
    transform = flip_transform_for(data)
    if transform is None:
        raise input_error("car.oracle", f"{data} is not an ambiguity dataset with base masks "
                                        "(densecal data ambiguous, without --frozen-flips)")
    return tuple((c, t, p) for c, (t, p) in transform.spec.flips.items())


@register_trainer("car", reader="densecal sample")
def train_car(config: TrainConfig, run_dir: str | Path, *, car: CAROptions | None = None,
              resume: bool = False, progress: bool = True) -> Path:
    """Train CAR on a multi-class folder dataset and return ``RUN/checkpoints/last.ckpt``.

    Args:
        config: the run configuration (``num_classes >= 2``; ``method`` is set to ``car``).
            ``model``, ``data``, ``val_*``, ``epochs``, ``batch_size``, ``image_size``, ``seed``,
            ``augment``, ``ignore_index``, ``accelerator``, ``devices`` are used.
        run_dir: output folder (created).
        car: CAR options; ``None`` takes ``config.extra["car"]`` (or the defaults).
        resume: continue from ``RUN/checkpoints/last.ckpt`` with the saved configuration
            (only ``epochs`` is taken from ``config``).
        progress: show Lightning's progress bar.

    Raises:
        DensecalInputError: bad options or data, a run already in ``run_dir`` without
            ``resume``, ``resume`` without a checkpoint, or a frozen ``F`` checkpoint that is
            missing or has another number of classes.
    """
    run_dir = Path(run_dir)
    config = resume_or_refuse(config, run_dir, resume)
    if not resume:
        options = car if car is not None else CAROptions.from_dict(config.extra.get("car"))
        options.check()
        if options.oracle and options.oracle_flips is None:
            options = dataclasses.replace(options, oracle_flips=_oracle_flips(config.data))
        if options.calibration_checkpoint is not None:
            from densecal.methods.segmentation.inference import load_module

            f_config = load_module(options.calibration_checkpoint).config  # type: ignore[arg-type]
            options = dataclasses.replace(options, calibration_model=f_config.model)
        config = dataclasses.replace(config, method="car",
                                     extra={**config.extra, "car": options.to_dict()})
    check_run_options(config)
    CARModule.check_classes(config)
    options = CAROptions.from_dict(config.extra.get("car"))
    frozen_f = (_load_frozen_f(options, config.num_classes)
                if options.calibration_checkpoint is not None and not resume else None)

    def make_module() -> CARModule:
        module = CARModule(config.to_dict())
        if frozen_f is not None:
            module.net_f.load_state_dict(frozen_f.state_dict())
        return module

    train_set, val_set = folder_datasets(config)
    # F's step leaves G and D without gradients, D's step F and G: DDP must allow that
    return fit_family_run(config, run_dir, make_module, train_set, val_set, resume=resume,
                          progress=progress, find_unused_parameters=True)
