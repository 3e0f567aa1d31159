"""``densecal evaluate``: calibration and accuracy of a model or of saved maps."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["evaluate"]


def evaluate(
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Model to evaluate."),
    data: Path | None = typer.Option(None, "--data", help="Folder dataset (with --checkpoint)."),
    pred: Path | None = typer.Option(None, "--pred", help="Folder of saved maps (.png/.npy)."),
    gt: Path | None = typer.Option(None, "--gt", help="Folder of masks (with --pred)."),
    ood: Path | None = typer.Option(
        None, "--ood", help="Out-of-distribution split: with --checkpoint a folder of images "
                            "(masks optional, all-zero assumed); with --pred a folder of maps "
                            "predicted on OOD images, scored against all-zero masks."),
    out: Path = typer.Option(Path("densecal-eval"), "--out", help="Output folder."),
    n_bins: int = typer.Option(10, "--n-bins"),
    confidence: str = typer.Option("top-label", "--confidence", help="top-label or positive."),
    aggregate: str = typer.Option("pooled", "--aggregate", help="pooled or per-image."),
    protocol: str = typer.Option("raw", "--protocol", help="raw or official (ASLP code)."),
    target: str = typer.Option("hard", "--target", help="hard or soft ground truth (raw)."),
    threshold: float = typer.Option(0.5, "--threshold"),
    num_workers: int = typer.Option(0, "--num-workers", help="Decoding workers for --pred."),
) -> None:
    """Write metrics.json (densecal.evaluate/1), report.md, reliability.png, per_image.csv."""
    from densecal.errors import input_error
    from densecal.evaluation import EvaluationOptions
    from densecal.predict import evaluate_checkpoint, evaluate_prediction_folder
    from densecal.report.evaluation_report import write_evaluation_outputs

    options = EvaluationOptions(n_bins=n_bins, confidence=confidence, aggregate=aggregate,
                                protocol=protocol, threshold=threshold, target=target)
    if checkpoint is not None and pred is None:
        if data is None:
            raise input_error("--data", "required with --checkpoint")
        evaluations = evaluate_checkpoint(checkpoint, data, options, ood=ood)
    elif pred is not None and checkpoint is None:
        if gt is None:
            raise input_error("--gt", "required with --pred")
        evaluations = evaluate_prediction_folder(pred, gt, options, ood=ood,
                                                 num_workers=num_workers)
    else:
        raise input_error("evaluate", "give either --checkpoint and --data, or --pred and --gt")
    paths = write_evaluation_outputs(out, evaluations)
    for split, ev in evaluations.items():
        c, s = ev.result["calibration"], ev.result["segmentation"]
        accuracy = (f"Dice {s['dice']:.4f}  IoU {s['iou']:.4f}" if "dice_class" in s
                    else f"MAE {s['mae']:.4f}  max-F {s['max_f']:.4f}")
        typer.echo(f"{split}: ECE {100 * c['ece']:.2f}%  OE {100 * c['oe']:.2f}%  "
                   f"acc {100 * c['accuracy']:.2f}%  {accuracy}")
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}")
