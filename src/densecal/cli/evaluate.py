"""``densecal evaluate``: calibration and accuracy of a model or of saved maps."""

from __future__ import annotations

from pathlib import Path

import typer

from densecal.cli.summary import result_line

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
    n_bins: int = typer.Option(10, "--n-bins", "--bins", help="Equal-width confidence bins."),
    confidence: str = typer.Option("top-label", "--confidence", help="top-label or positive."),
    aggregate: str = typer.Option("pooled", "--aggregate", help="pooled or per-image."),
    protocol: str = typer.Option("raw", "--protocol",
                                 help="raw, or official: the ASLP code's calibration protocol "
                                      "(8-bit min-max maps, "
                                      "soft truth pixels wrong); S/E/F-measures stay "
                                      "pysodmetrics' (MATLAB toolbox), not ASLP's "
                                      "SOD_Evaluation_Tool (docs/compatibility.md)."),
    measures: str = typer.Option("all", "--measures",
                                 help="all, or calibration (skip the S/E/F-measures)."),
    target: str = typer.Option("hard", "--target", help="hard or soft ground truth (raw)."),
    threshold: float = typer.Option(0.5, "--threshold"),
    num_workers: int = typer.Option(0, "--num-workers", help="Worker processes for --pred: "
                                    "decoding and the S/E/F-measures."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="With --pred: K-class maps (NAME.npy of shape (K, H, W)) "
                                    "scored against label maps; a checkpoint knows its K."),
    ignore_index: int | None = typer.Option(
        None, "--ignore-index", help="With --pred --num-classes: label value left out."),
) -> None:
    """Write metrics.json, report.md, reliability.png, per_image.csv.

    Binary maps: schema densecal.evaluate/2. Multi-class maps (a multi-class checkpoint, or
    --pred with --num-classes): schema densecal.evaluate-multiclass/3 with foreground-only ECE,
    per-volume means (stems VOLUME__SLICE) and soft-truth calibration when DATA/soft/ exists.
    """
    from densecal._checks import check_out_apart
    from densecal.atomic import check_replaceable
    from densecal.errors import input_error
    from densecal.evaluation import (
        EvaluationOptions,
        evaluate_class_prediction_folder,
        evaluate_prediction_folder,
        write_evaluation_outputs,
    )

    options = EvaluationOptions(n_bins=n_bins, confidence=confidence, aggregate=aggregate,
                                protocol=protocol, threshold=threshold, target=target,
                                measures=measures)
    check_out_apart(out, {"--checkpoint": checkpoint, "--data": data, "--pred": pred,
                          "--gt": gt, "--ood": ood})
    check_replaceable(out, "evaluate")
    if ignore_index is not None and num_classes is None:
        raise input_error("--ignore-index", "only used with --pred and --num-classes (a "
                                            "checkpoint knows its ignore_index)")
    if checkpoint is not None and pred is None:
        if data is None:
            raise input_error("--data", "required with --checkpoint")
        if num_classes is not None:
            raise input_error("--num-classes", "only used with --pred (a checkpoint knows its "
                                               "classes)")
        from densecal.apps.evaluate_checkpoint import evaluate_checkpoint

        evaluations = evaluate_checkpoint(checkpoint, data, options, ood=ood)
    elif pred is not None and checkpoint is None:
        if gt is None:
            raise input_error("--gt", "required with --pred")
        if num_classes is not None:
            evaluations = evaluate_class_prediction_folder(
                pred, gt, num_classes, options, ignore_index=ignore_index, ood=ood)
        else:
            evaluations = evaluate_prediction_folder(pred, gt, options, ood=ood,
                                                     num_workers=num_workers)
    else:
        raise input_error("evaluate", "give either --checkpoint and --data, or --pred and --gt")
    paths = write_evaluation_outputs(out, evaluations)
    for split, ev in evaluations.items():
        typer.echo(f"{split}: {result_line(ev.result)}")
        if ev.seconds:
            typer.echo(f"{split}: {ev.throughput_line()}")
    typer.echo(f"wrote {', '.join(p.name for p in paths)} to {out}")
