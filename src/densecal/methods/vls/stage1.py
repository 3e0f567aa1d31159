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
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from densecal.atomic import atomic_path, atomic_write_text
from densecal.data.folder import FolderDataset, augment_labels, resize_labels
from densecal.data.transforms import random_augment, resize
from densecal.errors import input_error
from densecal.losses.soft_label import one_hot_labels
from densecal.methods.config import TrainConfig
from densecal.methods.engine.checkpoints import epochs_trained, read_checkpoint
from densecal.methods.engine.data_module import EpochData
from densecal.methods.engine.fit import run_trainer
from densecal.methods.engine.seeding import StepSeeded
from densecal.methods.vls.nets import (
    ConditionalVAE,
    cvae_loss,
    gaussian_kl,
    make_cvae,
    vls_soft_labels,
)

__all__ = [
    "COLLAPSE_KL",
    "SOFT_LABELS_SCHEMA",
    "STAGE1_KIND",
    "SoftLabelDataset",
    "VLSStage1Module",
    "augment_with_soft",
    "diagnostics_path",
    "file_sha256",
    "fold_blocks",
    "load_stage1",
    "posterior_diagnostics",
    "soft_label_dir",
    "soft_label_training_set",
    "stage1_checkpoint",
    "stage1_finished",
    "write_soft_labels",
]

STAGE1_KIND = "densecal.vls-stage1/1"
SOFT_LABELS_SCHEMA = "densecal.vls-soft-labels/1"


def stage1_checkpoint(run_dir: str | Path, fold: int | None = None) -> Path:
    """``RUN/vls/stage1/last.ckpt``, the stage-1 checkpoint a ``vls`` run trains itself
    (``RUN/vls/stage1/foldK/last.ckpt`` for fold ``K`` of a cross-fitted run)."""
    folder = Path(run_dir) / "vls" / "stage1"
    return (folder if fold is None else folder / f"fold{fold}") / "last.ckpt"


def diagnostics_path(run_dir: str | Path) -> Path:
    """``RUN/vls/diagnostics.json``: the posterior diagnostics of :func:`posterior_diagnostics`
    per stage-1 network, written when the soft labels are."""
    return Path(run_dir) / "vls" / "diagnostics.json"


def fold_blocks(n: int, folds: int) -> list[list[int]]:
    """Cross-fitting folds: ``folds`` contiguous blocks of ``range(n)`` (sizes differ by at most
    one). Contiguous blocks of the sorted file names keep neighbouring slices and the copies of
    one slice (``STEM``, ``STEM-c1``) in the same fold, so a held-out image has no near twin in
    the networks's training data.

    Raises:
        DensecalInputError: ``folds`` above ``n``.

    Example:
        >>> fold_blocks(5, 2)
        [[0, 1, 2], [3, 4]]
    """
    if folds > n:
        raise input_error("--vls-folds", f"{folds} folds for {n} training images")
    bounds = [(k * n + folds - 1) // folds for k in range(folds + 1)]
    return [list(range(bounds[k], bounds[k + 1])) for k in range(folds)]


def soft_label_dir(run_dir: str | Path) -> Path:
    """``RUN/vls/soft_labels``, the soft-label cache of a ``vls`` run."""
    return Path(run_dir) / "vls" / "soft_labels"


class VLSStage1Module(StepSeeded, L.LightningModule):
    """Stage 1 of VLS: the conditional VAE trained with ``CE + MSE + w KL``.

    Args:
        config: the run configuration as a dict (``num_classes >= 2``, ``vls_latent``,
            ``vls_variant``, ``vls_stage1_lr``, ``vls_kl_warmup``, ``vls_kl_weight`` and
            ``ignore_index`` are used).
        kind: checkpoint marker (:data:`STAGE1_KIND`), saved in the hyper-parameters so that
            :func:`load_stage1` can recognise the file.

    Optimiser: Adam at ``vls_stage1_lr``, constant (the official code's 1e-4); stage 2's ``lr``
    and decay do not apply. The KL weight ``w`` is ``beta = vls_kl_weight`` (1 in the paper),
    times ``min(1, (e + 1) / W)`` in epoch ``e`` with ``W = vls_kl_warmup > 0`` (KL annealing,
    non-paper).

    Batches are :class:`~densecal.data.FolderDataset` dicts with ``labels=True``: ``image``
    ``(N, 3, S, S)`` in [0, 1], ``mask`` ``(N, S, S)`` int64. Logged per epoch: ``stage1_loss``,
    ``stage1_ce``, ``stage1_mse``, ``stage1_kl`` (nats per image, unweighted; see
    :func:`~densecal.methods.vls.nets.cvae_loss`), ``stage1_sigma`` (mean posterior standard
    deviation over latent dimensions), ``stage1_mu`` (mean ``|mu|``) and ``stage1_kl_weight``.
    """

    def __init__(self, config: dict[str, Any], kind: str = STAGE1_KIND) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        self.net = make_cvae(self.config.num_classes, latent=self.config.vls_latent,
                             variant=self.config.vls_variant)

    def kl_weight(self) -> float:
        """``w`` of the current epoch (``beta`` without annealing)."""
        warmup, beta = self.config.vls_kl_warmup, self.config.vls_kl_weight
        return beta if warmup <= 0 else beta * min(1.0, (self.current_epoch + 1) / warmup)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        image, labels = batch["image"], batch["mask"]
        onehot = one_hot_labels(labels, self.config.num_classes, self.config.ignore_index)
        output = self.net(image, onehot)
        weight = self.kl_weight()
        terms = cvae_loss(output, image, labels, self.config.ignore_index, kl_weight=weight)
        terms = {**terms, "sigma": torch.exp(0.5 * output.logvar).mean().detach(),
                 "mu": output.mu.abs().mean().detach(),
                 "kl_weight": torch.tensor(weight)}
        for name, value in terms.items():
            self.log(f"stage1_{name}", value, prog_bar=name == "loss", on_step=False,
                     on_epoch=True, batch_size=image.shape[0])
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.net.parameters(), lr=self.config.vls_stage1_lr)


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
    return epochs_trained(_read_checkpoint(path, "stage-1")) >= epochs


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
    """What a soft-label cache was made from (a changed value means the cache is stale)."""
    return {"schema": SOFT_LABELS_SCHEMA, "samples": config.vls_samples, "tau": config.vls_tau,
            "mix": config.vls_mix, "num_classes": config.num_classes,
            "image_size": config.image_size, "ignore_index": config.ignore_index,
            "seed": config.seed, "variant": config.vls_variant, "folds": config.vls_folds,
            "stage1": {"path": str(stage1.resolve()), "sha256": file_sha256(stage1)},
            "names": list(names)}


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@torch.no_grad()
def write_soft_labels(cvae: ConditionalVAE, dataset: FolderDataset, config: TrainConfig,
                      stage1: Path, out_dir: Path, *, device: torch.device | str = "cpu",
                      indices: Sequence[int] | None = None,
                      manifest: str = "manifest.json") -> Path:
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
        indices: the images to label (default all): one fold of a cross-fitted run.
        manifest: the manifest's file name in ``out_dir`` (one per fold).

    Returns:
        ``out_dir``. A folder whose manifest equals the new one (``complete: true``) is reused
        as it is; one with a matching incomplete manifest is completed; any other is rewritten.
    """
    manifest_path = out_dir / manifest
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    names = [dataset.names[i] for i in chosen]
    expected = _manifest(config, stage1, names)
    found = _read_manifest(manifest_path)
    if found == {**expected, "complete": True} and all(
            (out_dir / f"{name}.npy").is_file() for name in names):
        return out_dir
    keep_done = found == {**expected, "complete": False}
    atomic_write_text(manifest_path, json.dumps({**expected, "complete": False}, indent=2))
    todo = [i for i in chosen
            if not (keep_done and (out_dir / f"{dataset.names[i]}.npy").is_file())]
    for items, labels, _, _, logits in _posterior_samples(cvae, dataset, config, todo, device):
        soft = vls_soft_labels(logits, labels, tau=config.vls_tau, mix=config.vls_mix,
                               ignore_index=config.ignore_index)
        for item, target in zip(items, soft.float().cpu().numpy(), strict=True):
            with atomic_path(out_dir / f"{item['name']}.npy") as tmp:
                np.save(tmp, target)
    atomic_write_text(manifest_path, json.dumps({**expected, "complete": True}, indent=2))
    return out_dir


def _posterior_samples(cvae: ConditionalVAE, dataset: FolderDataset, config: TrainConfig,
                       indices: Sequence[int], device: torch.device | str
                       ) -> Iterator[tuple[list[dict[str, Any]], Tensor, Tensor, Tensor, Tensor]]:
    """Batches of ``(items, labels, mu, log sigma^2, logits)`` for the images ``indices``:
    ``logits`` ``(M, N, K, H, W)`` of ``M = vls_samples`` posterior draws, the noise seeded per
    image by :func:`_posterior_noise` (so results do not depend on batching)."""
    cvae = cvae.to(device).eval()
    for start in range(0, len(indices), config.batch_size):
        items = [dataset[i] for i in indices[start:start + config.batch_size]]
        image = torch.stack([item["image"] for item in items]).to(device)
        labels = torch.stack([item["mask"] for item in items]).to(device)
        eps = torch.stack([_posterior_noise(config, int(item["index"]), cvae.latent)
                           for item in items], 1).to(device)  # (M, N, L)
        onehot = one_hot_labels(labels, config.num_classes, config.ignore_index)
        h = cvae.features(image)
        mu, logvar = cvae.posterior(image, onehot)
        z = mu + torch.exp(0.5 * logvar) * eps
        yield items, labels, mu, logvar, torch.stack([cvae.segment(h, z_m) for z_m in z])


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


#: Mean KL per image (nats) below which the stage-1 posterior counts as collapsed: the
#: samples ``z`` then carry (almost) no information about the label, and the ``m`` soft-label
#: samples are one map.
COLLAPSE_KL = 0.05


@torch.no_grad()
def posterior_diagnostics(cvae: ConditionalVAE, dataset: FolderDataset, config: TrainConfig,
                          indices: Sequence[int] | None = None, *,
                          device: torch.device | str = "cpu") -> dict[str, Any]:
    """How much the stage-1 posterior says about each training image's label.

    For every image (of ``indices``, default all): ``KL(q(z|x, y) || N(0, I))`` in nats, the
    posterior standard deviations, ``|mu|``, and the *sample spread*: the mean over pixels of
    the total-variation distance between one posterior sample's ``softmax(v / tau)`` and the
    mean of the ``m`` samples (0 when the samples are one map). Noise as
    :func:`write_soft_labels` (seeded per image).

    Returns:
        ``{"images", "kl_mean", "kl_median", "kl_max", "sigma_mean", "mu_abs_mean",
        "sample_spread", "collapsed"}`` with ``collapsed = kl_mean < COLLAPSE_KL``.
    """
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    kl, sigma, mu_abs, spread = [], [], [], []
    for _, _, mu, logvar, logits in _posterior_samples(cvae, dataset, config, chosen, device):
        probs = torch.softmax(logits / config.vls_tau, 2)  # (M, N, K, H, W)
        kl += gaussian_kl(mu, logvar).tolist()
        sigma += torch.exp(0.5 * logvar).mean(1).tolist()
        mu_abs += mu.abs().mean(1).tolist()
        tv = 0.5 * (probs - probs.mean(0, keepdim=True)).abs().sum(2)  # (M, N, H, W)
        spread += tv.mean(dim=(0, 2, 3)).tolist()
    values = np.asarray(kl, dtype=np.float64)
    return {"images": len(chosen), "kl_mean": float(values.mean()),
            "kl_median": float(np.median(values)), "kl_max": float(values.max()),
            "sigma_mean": float(np.mean(sigma)), "mu_abs_mean": float(np.mean(mu_abs)),
            "sample_spread": float(np.mean(spread)),
            "collapsed": bool(values.mean() < COLLAPSE_KL)}


def _collapse_note(report: dict[str, Any], where: str, kl_weight: float) -> str:
    hint = (" (--vls-kl-weight 1/(S*S) for S-px images weighs the KL as the per-pixel ELBO "
            "does)" if kl_weight >= 1.0 else "")
    return (f"VLS stage 1{where}: posterior collapse (mean KL {report['kl_mean']:.4f} nats per "
            f"image < {COLLAPSE_KL}, posterior sigma {report['sigma_mean']:.3f}): the "
            f"{report['images']} images' m samples are nearly one map, so the soft labels are "
            f"tempered self-distillation{hint}")


def _train_stage1(config: TrainConfig, dataset: Dataset, stage1: Path, *,
                  progress: bool) -> None:
    """Train (or finish) the conditional VAE at ``stage1`` on ``dataset``."""
    assert config.vls_stage1_epochs is not None
    if stage1_finished(stage1, config.vls_stage1_epochs):
        return
    L.seed_everything(config.seed, workers=True, verbose=False)
    run_trainer(VLSStage1Module(config.to_dict()), config, EpochData(config, dataset, None),
                stage1.parent, stage1.parent, max_epochs=config.vls_stage1_epochs,
                resume_from=stage1 if stage1.is_file() else None, progress=progress,
                single_process=True)


def soft_label_training_set(config: TrainConfig, run_dir: Path, train_set: FolderDataset, *,
                           progress: bool) -> SoftLabelDataset:
    """VLS stage 1 and soft labels: train (or reuse) the conditional VAE(s), cache the soft
    labels, write ``RUN/vls/diagnostics.json`` (:func:`posterior_diagnostics` per network, with
    a ``densecal`` warning when a posterior collapsed), and return the training set that
    carries the soft labels.

    With ``config.vls_folds = F >= 2`` (cross-fitting) fold ``k`` of :func:`fold_blocks` gets
    its soft labels from ``RUN/vls/stage1/foldk/last.ckpt``, trained on the other folds.
    """
    plain = copy.copy(train_set)
    plain.augment = False
    device = "cuda" if config.accelerator in ("auto", "gpu", "cuda") and \
        torch.cuda.is_available() else "cpu"
    soft_dir = soft_label_dir(run_dir)
    folds = config.vls_folds
    blocks = fold_blocks(len(train_set), folds) if folds > 1 else [list(range(len(train_set)))]
    reports = []
    for k, held_out in enumerate(blocks):
        if folds > 1:
            stage1 = stage1_checkpoint(run_dir, k)
            rest = sorted(set(range(len(train_set))) - set(held_out))
            _train_stage1(config, Subset(train_set, rest), stage1, progress=progress)
        else:
            stage1 = Path(config.vls_stage1) if config.vls_stage1 else stage1_checkpoint(run_dir)
            if not config.vls_stage1:
                _train_stage1(config, train_set, stage1, progress=progress)
        cvae = load_stage1(stage1, config.num_classes)
        write_soft_labels(cvae, plain, config, stage1, soft_dir, device=device,
                          indices=held_out,
                          manifest="manifest.json" if folds == 1 else f"manifest-fold{k}.json")
        report = {"stage1": str(stage1), **posterior_diagnostics(cvae, plain, config, held_out,
                                                                 device=device)}
        if report["collapsed"]:
            warnings.warn(_collapse_note(report, f" (fold {k})" if folds > 1 else "",
                                         config.vls_kl_weight),
                          stacklevel=2)
        reports.append(report)
    atomic_write_text(diagnostics_path(run_dir), json.dumps(
        {"schema": "densecal.vls-diagnostics/1", "collapse_kl": COLLAPSE_KL,
         "variant": config.vls_variant, "folds": folds, "networks": reports}, indent=2) + "\n")
    return SoftLabelDataset(plain, soft_dir, augment=config.augment)
