"""``densecal train``: train a method on a folder dataset into a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

__all__ = ["parse_settings", "train", "with_recipe"]


def parse_settings(settings: list[str]) -> dict[str, dict[str, Any]]:
    """``["car.cal_weight=0", "car.betas=[0.5, 0.9]"]`` -> ``{"car": {"cal_weight": 0, ...}}``.

    Raises:
        DensecalInputError: an entry without ``FAMILY.KEY=VALUE`` form.
    """
    from densecal.errors import input_error

    extra: dict[str, dict[str, Any]] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        family, dot, name = key.strip().partition(".")
        if not (sep and dot and family and name):
            raise input_error("--set", f"expected FAMILY.KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        extra.setdefault(family, {})[name] = value
    return extra


def _resume_note(ctx: typer.Context, config_path: Path, requested: dict[str, object]) -> None:
    """With ``--resume``, say which options typed on the command line the saved run overrides
    (only ``--epochs`` changes a resumed run); silent when ``config.json`` cannot be read (the
    resume itself then fails with one line)."""
    from densecal.errors import DensecalInputError
    from densecal.methods.config import load_config

    try:
        saved = load_config(config_path).to_dict()
    except (DensecalInputError, OSError):
        return
    typed = [name for name in requested if name in saved and name != "epochs"
             and getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"]
    for name in ("data", "val_data"):  # saved absolute; compare what the user meant
        if requested.get(name):
            requested[name] = str(Path(str(requested[name])).resolve())
    kept = [f"{name} {saved[name]!r} (not {requested[name]!r})" for name in typed
            if saved[name] != requested[name]]
    if kept:
        typer.echo(f"densecal: note: --resume keeps the run's saved {', '.join(kept)}; only "
                   f"--epochs changes a resumed run", err=True)


def with_recipe(ctx: typer.Context, config: Any) -> Any:
    """``config`` with the official ASLP recipe's values for every option not typed on the
    command line (``densecal.methods.config.OFFICIAL_ASLP_RECIPE``)."""
    import dataclasses

    from densecal.methods.config import OFFICIAL_ASLP_RECIPE

    values = {name: value for name, value in OFFICIAL_ASLP_RECIPE.items()
              if getattr(ctx.get_parameter_source(name), "name", None) != "COMMANDLINE"}
    return dataclasses.replace(config, **values)


def train(
    ctx: typer.Context,
    method: str = typer.Option("bce", "--method",
                               help="Segmentation: bce, ce, ls, slp, aslp, focal, ecp, mbls, "
                                    "svls, vls (bce, slp, aslp: binary only; vls: multi-class "
                                    "only; ce = bce when binary). Families: car (stochastic "
                                    "segmentation), classifier (image classification, "
                                    "--model resnet-tiny), ud-teacher, ud-student, ud-gt "
                                    "(uncertainty distillation, multi-label)."),
    num_classes: int = typer.Option(1, "--num-classes",
                                    help="1: binary (sigmoid, masks in [0, 1]); K >= 2: softmax "
                                         "over K classes, masks are class-index label maps."),
    ignore_index: int | None = typer.Option(None, "--ignore-index",
                                            help="Label value left out of loss and metrics "
                                                 "(multi-class, e.g. 255)."),
    data: Path | None = typer.Option(None, "--data",
                                     help="Folder dataset of training image/mask pairs."),
    val_data: Path | None = typer.Option(None, "--val-data",
                                         help="Separate validation folder (else --val-fraction)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction",
                                       help="Fraction of --data held out for validation."),
    model: str = typer.Option("unet-small", "--model", help="Network name."),
    epochs: int = typer.Option(30, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size",
                                   help="Images per step and process (global batch: "
                                        "batch size x devices x num nodes)."),
    image_size: int = typer.Option(96, "--image-size", help="Training resolution (multiple of 8)."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    seed: int = typer.Option(0, "--seed"),
    eps: float = typer.Option(0.1, "--eps", help="Label smoothing factor (ls)."),
    gamma: float = typer.Option(3.0, "--gamma", help="Focal-loss gamma (focal)."),
    beta_h: float = typer.Option(0.1, "--beta-h", help="Entropy-penalty weight (ecp)."),
    margin: float = typer.Option(10.0, "--margin", help="MbLS margin on logit distances."),
    mbls_lambda: float = typer.Option(0.1, "--mbls-lambda", help="MbLS penalty weight."),
    svls_sigma: float = typer.Option(1.0, "--svls-sigma", help="SVLS Gaussian sigma (svls)."),
    alpha: float = typer.Option(0.1, "--alpha", help="Fixed perturbation probability (slp)."),
    technique: str = typer.Option("hard_inversion", "--technique",
                                  help="hard_inversion, soft_inversion, moderation, "
                                       "moderation_noise (slp, aslp)."),
    beta: float | None = typer.Option(None, "--beta", help="Explicit beta (overrides "
                                      "--technique); paper convention unless --beta-convention "
                                      "code."),
    beta_convention: str = typer.Option("paper", "--beta-convention",
                                        help="paper (beta in [0, 2]) or code (official ASLP "
                                             "code's b = beta/2, up to 2)."),
    aslp_objective: str = typer.Option("calibration", "--aslp-objective",
                                       help="calibration (ASLP_MC) or conservative (ASLP_MEI)."),
    aslp_warmup: int = typer.Option(5, "--aslp-warmup", help="Epochs before alpha adapts."),
    aslp_lr: float = typer.Option(0.002, "--aslp-lr", help="Alpha step size eta."),
    aslp_penalty: float = typer.Option(2000.0, "--aslp-penalty", help="Penalty weight lambda."),
    lr_decay: float = typer.Option(1.0, "--lr-decay",
                                   help="Learning-rate decay factor d in (0, 1] (1: none; "
                                        "official ASLP recipe: 0.95, compound)."),
    lr_decay_every: int = typer.Option(10, "--lr-decay-every",
                                       help="The k of --lr-decay-rule."),
    lr_decay_rule: str = typer.Option("step", "--lr-decay-rule",
                                      help="step: lr d^(e//k) in 0-based epoch e; compound: the "
                                           "official ASLP adjust_lr, lr multiplied by d^(j//k) "
                                           "after every epoch j (0.215 lr in epoch 30)."),
    aslp_val_rule: str = typer.Option("binarised", "--aslp-val-rule",
                                      help="ASLP's validation accuracy: binarised (truth >= 0.5 "
                                           "at the training size) or strict (official: 8-bit "
                                           "maps at the original size, soft truth pixels "
                                           "wrong)."),
    normalize: str = typer.Option("none", "--normalize",
                                  help="none or imagenet (mean/std per channel, the official "
                                       "ASLP recipe)."),
    recipe: str = typer.Option("densecal", "--recipe",
                               help="densecal (defaults as listed) or official: every value of "
                                    "the official ASLP training recipe (docs/methods.md 1.3); "
                                    "options typed here override it."),
    vls_samples: int = typer.Option(8, "--vls-samples",
                                    help="VLS: posterior samples m per training image."),
    vls_tau: float = typer.Option(2.0, "--vls-tau", help="VLS: softmax temperature tau."),
    vls_mix: float = typer.Option(0.3, "--vls-mix",
                                  help="VLS: weight a of sampled labels, (1-a) onehot + a y_s."),
    vls_latent: int = typer.Option(3, "--vls-latent", help="VLS: latent size of the CVAE."),
    vls_stage1_epochs: int | None = typer.Option(None, "--vls-stage1-epochs",
                                                 help="VLS: stage-1 (CVAE) epochs; default "
                                                      "--epochs."),
    vls_stage1: Path | None = typer.Option(None, "--vls-stage1",
                                           help="VLS: reuse this stage-1 checkpoint "
                                                "(RUN/vls/stage1/last.ckpt) instead of "
                                                "training one."),
    vls_stage1_lr: float = typer.Option(1e-4, "--vls-stage1-lr",
                                        help="VLS: stage-1 Adam learning rate (constant; the "
                                             "official code's 1e-4)."),
    vls_variant: str = typer.Option("paper", "--vls-variant",
                                    help="VLS: paper (latent at the heads) or bottleneck "
                                         "(non-paper: no skips, latent at the bottleneck)."),
    vls_kl_warmup: int = typer.Option(0, "--vls-kl-warmup",
                                      help="VLS: stage-1 epochs of linear KL annealing (0: "
                                           "off, as the paper)."),
    vls_kl_weight: float = typer.Option(1.0, "--vls-kl-weight",
                                        help="VLS: stage-1 KL weight beta (1: the paper; "
                                             "1/(S*S) for S-px images: the per-pixel ELBO, "
                                             "non-paper)."),
    vls_folds: int = typer.Option(1, "--vls-folds",
                                  help="VLS: cross-fitting folds (non-paper; 1: off): soft "
                                       "labels of each block from a CVAE trained on the "
                                       "others."),
    augment: bool = typer.Option(True, "--augment/--no-augment",
                                 help="Random flip, border crop and rotation (ASLP recipe)."),
    num_workers: int = typer.Option(0, "--num-workers", help="DataLoader workers."),
    teacher: Path | None = typer.Option(None, "--teacher",
                                        help="ud-student: the teacher checkpoint (same as "
                                             "--set ud.teacher=PATH)."),
    settings: list[str] = typer.Option([], "--set",
                                       help="Method-family option FAMILY.KEY=VALUE, repeatable, "
                                            "e.g. --set car.cal_weight=0 (values read as JSON "
                                            "when they parse, else as text)."),
    accelerator: str = typer.Option("auto", "--accelerator",
                                    help="cpu, gpu, cuda, mps or auto (a GPU when present)."),
    devices: str = typer.Option("auto", "--devices",
                                help="Devices per node: auto, a count N, -1 (all) or ids 0,1."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Machines in distributed training."),
    strategy: str = typer.Option("auto", "--strategy",
                                 help="Lightning strategy: auto, ddp, ddp_spawn, ... (ddp starts "
                                      "one process per device by re-running this command)."),
    deterministic: bool = typer.Option(False, "--deterministic/--no-deterministic",
                                       help="Deterministic kernels (exact resume; slower on "
                                            "GPU)."),
    out: Path = typer.Option(Path("runs/run"), "--out", help="Run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Train a dense binary or multi-class classifier; checkpoints, config and (ASLP) α table go
    to --out. vls trains its conditional VAE (stage 1), caches soft labels, then the model.
    --resume continues with the run's saved config.json (hardware options included) and the
    given --epochs."""
    from densecal.errors import input_error
    from densecal.methods import TrainConfig
    from densecal.methods import train as run_training
    from densecal.methods.engine import is_primary_process

    if data is None and not resume:
        raise input_error("--data", "required (except with --resume, which reads the run's "
                          "config.json)")
    config = TrainConfig(method=method, num_classes=num_classes, ignore_index=ignore_index,
                         data=str(data or ""),
                         val_data=str(val_data) if val_data else None,
                         val_fraction=val_fraction, model=model, epochs=epochs,
                         batch_size=batch_size, image_size=image_size, lr=lr, seed=seed, eps=eps,
                         gamma=gamma, beta_h=beta_h, margin=margin, mbls_lambda=mbls_lambda,
                         svls_sigma=svls_sigma,
                         alpha=alpha, technique=technique, beta=beta,
                         beta_convention=beta_convention, aslp_objective=aslp_objective,
                         aslp_warmup=aslp_warmup, aslp_lr=aslp_lr, aslp_penalty=aslp_penalty,
                         lr_decay=lr_decay, lr_decay_every=lr_decay_every,
                         lr_decay_rule=lr_decay_rule, aslp_val_rule=aslp_val_rule,
                         normalize=normalize, recipe=recipe, augment=augment,
                         num_workers=num_workers, accelerator=accelerator, devices=devices,
                         num_nodes=num_nodes, strategy=strategy, deterministic=deterministic,
                         vls_samples=vls_samples, vls_tau=vls_tau, vls_mix=vls_mix,
                         vls_latent=vls_latent, vls_stage1_epochs=vls_stage1_epochs,
                         vls_stage1=str(vls_stage1) if vls_stage1 else None,
                         vls_stage1_lr=vls_stage1_lr, vls_variant=vls_variant,
                         vls_kl_warmup=vls_kl_warmup, vls_folds=vls_folds,
                         vls_kl_weight=vls_kl_weight,
                         extra=parse_settings(settings))
    if recipe == "official":
        config = with_recipe(ctx, config)
    if teacher is not None:
        config.extra.setdefault("ud", {})["teacher"] = str(teacher)
    if resume:
        _resume_note(ctx, out / "config.json", config.to_dict())
    ckpt = run_training(config, out, resume=resume)
    if is_primary_process():  # once, not once per DDP rank
        typer.echo(f"checkpoint: {ckpt}")
