"""CALSeg's Variational Label Smoothing (``densecal train --method vls``): stages and soft labels.

Source: Guo et al., "CALSeg: Improving Calibration of Medical Image
Segmentation via Variational Label Smoothing" (ICASSP 2024); official code
github.com/Guoxt/CALSeg (incomplete: stage 1 only); docs/methods.md section 3. Networks and
formulas: :mod:`densecal.methods.vls.nets`. The run is driven by
:func:`densecal.methods.train.train`:

1. **Stage 1** -- :class:`VLSStage1Module` trains the conditional VAE with
   ``CE + MSE + KL`` on the training split, with the run's schedule (``lr``, batch size, seed,
   image size, augmentation; ``vls_stage1_epochs`` epochs), checkpointed to
   ``RUN/vls/stage1/last.ckpt`` and resumable. ``--vls-stage1 CKPT`` reuses a finished one.
2. **Soft labels** -- :func:`write_soft_labels` draws ``m`` latents from the posterior of each
   training image and caches ``Y_s`` as ``RUN/vls/soft_labels/STEM.npy`` ``(K, S, S)`` float32,
   with ``manifest.json`` (``m``, ``tau``, ``a``, classes, size, seed, stage-1 path and SHA-256).
   A cache whose manifest matches is reused; an interrupted one is completed.
3. **Stage 2** -- the ordinary
   :class:`~densecal.methods.segmentation.module.SegmentationModule` (same ``--model``) with the
   ``vls`` objective, pixel-mean ``KL(Y_s || softmax(f_cal(x)))``, on batches of
   :class:`SoftLabelDataset` (``batch["soft"]``). Its checkpoint is a plain densecal checkpoint:
   :func:`~densecal.methods.segmentation.inference.load_module`, ``densecal evaluate`` and
   ``densecal predict`` need no soft labels.

Augmentation (``--augment``) in stage 2 is applied at the training resolution ``S`` (the
soft labels only exist there), after resizing, with the flip / border crop / rotation of
:func:`densecal.data.folder.augment_labels`; the soft map gets the same geometry (bilinear) and
rotated-in corners become one-hot background (or are ignored with ``ignore_index``), then the
crop is resized back to ``S``. Other methods augment at the original resolution.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from densecal.atomic import atomic_path, atomic_write_text
from densecal.data.folder import FolderDataset, augment_labels, resize_labels
from densecal.data.transforms import random_augment, resize
from densecal.errors import input_error
from densecal.losses.soft_label import one_hot_labels
from densecal.methods.config import TrainConfig
from densecal.methods.engine.checkpoints import read_checkpoint
from densecal.methods.engine.data_module import EpochData
from densecal.methods.engine.fit import run_trainer
from densecal.methods.engine.optim import adam_schedule
from densecal.methods.engine.seeding import StepSeeded
from densecal.methods.vls.nets import ConditionalVAE, cvae_loss, vls_soft_labels

__all__ = [
    "SOFT_LABELS_SCHEMA",
    "STAGE1_KIND",
    "SoftLabelDataset",
    "VLSStage1Module",
    "augment_with_soft",
    "file_sha256",
    "load_stage1",
    "soft_label_dir",
    "soft_label_training_set",
    "stage1_checkpoint",
    "stage1_finished",
    "write_soft_labels",
]

STAGE1_KIND = "densecal.vls-stage1/1"
SOFT_LABELS_SCHEMA = "densecal.vls-soft-labels/1"


def stage1_checkpoint(run_dir: str | Path) -> Path:
    """``RUN/vls/stage1/last.ckpt``, the stage-1 checkpoint a ``vls`` run trains itself."""
    return Path(run_dir) / "vls" / "stage1" / "last.ckpt"


def soft_label_dir(run_dir: str | Path) -> Path:
    """``RUN/vls/soft_labels``, the soft-label cache of a ``vls`` run."""
    return Path(run_dir) / "vls" / "soft_labels"


class VLSStage1Module(StepSeeded, L.LightningModule):
    """Stage 1 of VLS: the conditional VAE trained with ``CE + MSE + KL`` (weights 1).

    Args:
        config: the run configuration as a dict (``num_classes >= 2``, ``vls_latent``,
            ``ignore_index``, ``lr`` and its decay are used).
        kind: checkpoint marker (:data:`STAGE1_KIND`), saved in the hyper-parameters so that
            :func:`load_stage1` can recognise the file.

    Batches are :class:`~densecal.data.FolderDataset` dicts with ``labels=True``: ``image``
    ``(N, 3, S, S)`` in [0, 1], ``mask`` ``(N, S, S)`` int64. Logged per epoch: ``stage1_loss``,
    ``stage1_ce``, ``stage1_mse``, ``stage1_kl`` (see :func:`~densecal.methods.vls.nets.cvae_loss`).
    """

    def __init__(self, config: dict[str, Any], kind: str = STAGE1_KIND) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        self.net = ConditionalVAE(self.config.num_classes, latent=self.config.vls_latent)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        image, labels = batch["image"], batch["mask"]
        onehot = one_hot_labels(labels, self.config.num_classes, self.config.ignore_index)
        terms = cvae_loss(self.net(image, onehot), image, labels, self.config.ignore_index)
        for name, value in terms.items():
            self.log(f"stage1_{name}", value, prog_bar=name == "loss", on_step=False,
                     on_epoch=True, batch_size=image.shape[0])
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        return adam_schedule(self.net.parameters(), self.config)


def _read_checkpoint(path: Path, option: str) -> dict[str, Any]:
    state, hparams = read_checkpoint(path, "stage-1 checkpoint", missing=option)
    if hparams.get("kind") != STAGE1_KIND or "config" not in hparams:
        raise input_error(path, "is not a VLS stage-1 checkpoint (RUN/vls/stage1/last.ckpt of a "
                                "densecal vls run)")
    return state


def stage1_finished(path: str | Path, epochs: int) -> bool:
    """Whether the stage-1 checkpoint at ``path`` exists and has trained ``epochs`` epochs."""
    path = Path(path)
    if not path.is_file():
        return False
    state = _read_checkpoint(path, "stage-1")
    # checkpoints are written at the end of each epoch (train.EpochCheckpoint): "epoch" is the
    # index of the last finished one
    return int(state.get("epoch", -1)) + 1 >= epochs


def load_stage1(path: str | Path, num_classes: int, *, option: str = "--vls-stage1"
                ) -> ConditionalVAE:
    """Load the conditional VAE of a stage-1 checkpoint (eval mode, CPU).

    Args:
        path: a ``RUN/vls/stage1/last.ckpt`` written by a ``vls`` run.
        num_classes: the classes ``K`` of the run that will use it.
        option: the option named in error messages.

    Raises:
        DensecalInputError: missing or unreadable file, not a VLS stage-1 checkpoint, or trained
            for another number of classes.
    """
    path = Path(path)
    state = _read_checkpoint(path, option)
    config = TrainConfig.from_dict(state["hyper_parameters"]["config"], source=str(path))
    if config.num_classes != num_classes:
        raise input_error(option, f"{path} was trained for {config.num_classes} classes, this "
                                  f"run has --num-classes {num_classes}")
    module = VLSStage1Module(config.to_dict())
    module.load_state_dict(state["state_dict"])
    return module.net.eval()


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(config: TrainConfig, stage1: Path, names: Sequence[str]) -> dict[str, Any]:
    return {"schema": SOFT_LABELS_SCHEMA, "samples": config.vls_samples, "tau": config.vls_tau,
            "mix": config.vls_mix, "num_classes": config.num_classes,
            "image_size": config.image_size, "ignore_index": config.ignore_index,
            "seed": config.seed, "stage1": {"path": str(stage1.resolve()),
                                            "sha256": file_sha256(stage1)},
            "names": list(names)}


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@torch.no_grad()
def write_soft_labels(cvae: ConditionalVAE, dataset: FolderDataset, config: TrainConfig,
                      stage1: Path, out_dir: Path, *, device: torch.device | str = "cpu") -> Path:
    """Compute (or reuse) the VLS soft labels of every training image, one ``.npy`` per stem.

    For image ``i``, ``m = config.vls_samples`` latents ``z = mu + sigma * eps`` are drawn from
    the posterior ``q(z | x_i, y_i)`` with ``eps`` from a generator seeded by
    ``(config.seed, i)`` (so the result does not depend on batching or interruptions) and
    :func:`~densecal.methods.vls.nets.vls_soft_labels` mixes them with the one-hot label.

    Args:
        cvae: the trained stage-1 network.
        dataset: the training images at size ``S`` (``labels=True``, no augmentation).
        config: the run configuration (``vls_samples``, ``vls_tau``, ``vls_mix``, ``seed``).
        stage1: the checkpoint ``cvae`` came from (recorded in the manifest with its SHA-256).
        out_dir: cache folder; ``STEM.npy`` ``(K, S, S)`` float32 plus ``manifest.json``.
        device: where to run the network.

    Returns:
        ``out_dir``. A folder whose manifest equals the new one (``complete: true``) is reused
        as it is; one with a matching incomplete manifest is completed; any other is rewritten.
    """
    manifest_path = out_dir / "manifest.json"
    expected = _manifest(config, stage1, dataset.names)
    found = _read_manifest(manifest_path)
    if found == {**expected, "complete": True} and all(
            (out_dir / f"{name}.npy").is_file() for name in dataset.names):
        return out_dir
    keep_done = found == {**expected, "complete": False}
    atomic_write_text(manifest_path, json.dumps({**expected, "complete": False}, indent=2))
    cvae = cvae.to(device).eval()
    todo = [i for i, name in enumerate(dataset.names)
            if not (keep_done and (out_dir / f"{name}.npy").is_file())]
    for start in range(0, len(todo), config.batch_size):
        items = [dataset[i] for i in todo[start:start + config.batch_size]]
        image = torch.stack([item["image"] for item in items]).to(device)
        labels = torch.stack([item["mask"] for item in items]).to(device)
        eps = torch.stack([_posterior_noise(config, int(item["index"]), cvae.latent)
                           for item in items], 1).to(device)  # (M, N, L)
        onehot = one_hot_labels(labels, config.num_classes, config.ignore_index)
        h = cvae.features(image)
        mu, logvar = cvae.posterior(image, onehot)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = torch.stack([cvae.segment(h, z_m) for z_m in z])
        soft = vls_soft_labels(logits, labels, tau=config.vls_tau, mix=config.vls_mix,
                               ignore_index=config.ignore_index)
        for item, target in zip(items, soft.float().cpu().numpy(), strict=True):
            with atomic_path(out_dir / f"{item['name']}.npy") as tmp:
                np.save(tmp, target)
    atomic_write_text(manifest_path, json.dumps({**expected, "complete": True}, indent=2))
    return out_dir


def _posterior_noise(config: TrainConfig, index: int, latent: int) -> Tensor:
    """``(M, L)`` standard-normal draws for training image ``index``, seeded by
    ``(config.seed, index)``."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index)
    return torch.randn(config.vls_samples, latent, generator=generator)


def augment_with_soft(image: Tensor, label: Tensor, soft: Tensor, fill: int = 0
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Augment an image, its label map and its soft label map with the same geometry.

    The image and labels go through :func:`densecal.data.folder.augment_labels`; the global
    torch RNG is then rewound and ``soft - e_0`` goes through
    :func:`densecal.data.transforms.random_augment`, which makes the same draws in the same
    order, and ``e_0`` (one-hot background) is added back. The resampling is linear and
    convex, so every pixel still sums to 1, and pixels rotated in from outside are ``e_0``.

    Args:
        image: ``(C, H, W)`` float.
        label: ``(H, W)`` integer class indices.
        soft: ``(K, H, W)`` per-pixel distributions.
        fill: label value of rotated-in pixels (``ignore_index`` or 0).

    Returns:
        The transformed ``(C, H', W')``, ``(H', W')`` and ``(K, H', W')`` tensors.
    """
    state = torch.get_rng_state()
    image_out, label_out = augment_labels(image, label, fill)
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    background = torch.zeros(soft.shape[0], 1, 1, dtype=soft.dtype)
    background[0] = 1.0
    shifted, _ = random_augment(soft - background, label[None].to(soft.dtype))
    if not torch.equal(torch.get_rng_state(), after):  # the two must draw alike
        raise RuntimeError("augment_labels and random_augment drew different random numbers")
    return image_out, label_out, shifted + background


class SoftLabelDataset(Dataset):
    """A training set at size ``S`` whose items also carry their cached VLS soft labels.

    Args:
        base: the training :class:`~densecal.data.FolderDataset` (``labels=True``,
            ``image_size=S``, ``augment=False``).
        soft_dir: folder of ``STEM.npy`` ``(K, S, S)`` soft labels (:func:`write_soft_labels`).
        augment: apply :func:`augment_with_soft` and resize back to ``S``.

    Each item is ``base``'s dict plus ``"soft"``: ``(K, S, S)`` float32 distributions; at pixels
    whose label is ``base.ignore_index`` every channel is set to ``ignore_index`` (the ignore
    convention of the probability targets of :mod:`densecal.losses`).

    Raises:
        DensecalInputError: a soft-label file is missing or has the wrong shape (named).
    """

    def __init__(self, base: FolderDataset, soft_dir: Path, *, augment: bool = False) -> None:
        self.base = base
        self.soft_dir = Path(soft_dir)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.base)

    @property
    def names(self) -> list[str]:
        """File stems in dataset order."""
        return self.base.names

    def __getitem__(self, index: int) -> dict[str, object]:
        item = self.base[index]
        image, label = item["image"], item["mask"]
        assert isinstance(image, Tensor) and isinstance(label, Tensor)
        path = self.soft_dir / f"{item['name']}.npy"
        if not path.is_file():
            raise input_error(path, "missing VLS soft label (delete the soft_labels folder to "
                                    "recompute it)")
        soft = torch.from_numpy(np.load(path))
        expected = (self.base.num_classes, *label.shape)
        if tuple(soft.shape) != expected:
            raise input_error(path, f"soft label shape {tuple(soft.shape)} is not {expected}")
        ignore = self.base.ignore_index
        if self.augment:
            size = label.shape[-1]
            image, label, soft = augment_with_soft(image, label, soft,
                                                   0 if ignore is None else int(ignore))
            image, label, soft = resize(image, size), resize_labels(label, size), \
                resize(soft, size)
        if ignore is not None:
            soft = torch.where((label == ignore).unsqueeze(0), float(ignore), soft)
        return {**item, "image": image, "mask": label, "soft": soft.float()}


def soft_label_training_set(config: TrainConfig, run_dir: Path, train_set: FolderDataset, *,
                           progress: bool) -> SoftLabelDataset:
    """VLS stage 1 and soft labels: train (or reuse) the conditional VAE, cache the soft labels, and
    return the training set that carries them."""
    assert config.vls_stage1_epochs is not None
    stage1 = Path(config.vls_stage1) if config.vls_stage1 else stage1_checkpoint(run_dir)
    if not config.vls_stage1 and not stage1_finished(stage1, config.vls_stage1_epochs):
        L.seed_everything(config.seed, workers=True, verbose=False)
        run_trainer(VLSStage1Module(config.to_dict()), config,
                     EpochData(config, train_set, None), stage1.parent, stage1.parent,
                     max_epochs=config.vls_stage1_epochs,
                     resume_from=stage1 if stage1.is_file() else None, progress=progress,
                     single_process=True)
    cvae = load_stage1(stage1, config.num_classes)
    plain = copy.copy(train_set)
    plain.augment = False
    device = "cuda" if config.accelerator in ("auto", "gpu", "cuda") and \
        torch.cuda.is_available() else "cpu"
    soft_dir = write_soft_labels(cvae, plain, config, stage1, soft_label_dir(run_dir),
                                     device=device)
    return SoftLabelDataset(plain, soft_dir, augment=config.augment)
