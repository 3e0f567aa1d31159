"""Tests for densecal.report.figures (reliability diagrams, prediction grids)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.errors import DensecalInputError
from densecal.report.figures import (
    plot_reliability,
    save_prediction_grid,
    save_reliability_grid,
    save_risk_coverage_grid,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = math.nan

# Five bins: two empty, one over-confident (0.6 > 0.5), one under-confident (0.7 < 0.875),
# one exactly calibrated (0.9 == 0.9). Values are exact binary fractions where compared.
REL = {
    "bin_lower": [0.0, 0.2, 0.4, 0.6, 0.8],
    "bin_upper": [0.2, 0.4, 0.6, 0.8, 1.0],
    "count": [0, 0, 12, 40, 1000],
    "confidence": [NAN, None, 0.5625, 0.6875, 0.875],
    "accuracy": [NAN, None, 0.5, 0.75, 0.875],
}


def _new_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


def test_plot_reliability_draws_one_bar_per_filled_bin() -> None:
    ax = plot_reliability(REL, show_counts=False)
    acc_bars = ax.containers[0].patches
    assert len(acc_bars) == 3
    assert [b.get_height() for b in acc_bars] == [0.5, 0.75, 0.875]
    assert [b.get_x() + b.get_width() / 2 for b in acc_bars] == pytest.approx([0.5, 0.7, 0.9])
    # Gap shading: one over-confident bin (0.5 -> 0.5625), one under-confident (0.75 -> 0.6875);
    # the calibrated bin gets none.
    assert len(ax.patches) == 3 + 1 + 1
    over, under = ax.containers[1].patches, ax.containers[2].patches
    assert (over[0].get_y(), over[0].get_height()) == (0.5, 0.0625)
    assert (under[0].get_y(), under[0].get_height()) == (0.75, -0.0625)
    assert len(ax.figure.axes) == 1


def test_plot_reliability_count_strip_on_given_axes() -> None:
    ax = _new_axes()
    out = plot_reliability(REL, ax, title="BCE")
    assert out is ax and ax.get_title() == "BCE"
    strip = [a for a in ax.figure.axes if a is not ax]
    assert len(strip) == 1
    assert strip[0].get_yscale() == "log"
    assert [b.get_height() for b in strip[0].patches] == [12, 40, 1000]


def test_plot_reliability_all_bins_empty() -> None:
    empty = {k: [0.0, 0.5] if k == "bin_lower" else [0.5, 1.0] if k == "bin_upper"
             else [0, 0] if k == "count" else [NAN, NAN] for k in REL}
    ax = plot_reliability(empty)
    assert len(ax.patches) == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"count": [0, 0, 12, 40]}, "equal length"),
        ({"accuracy": [NAN, NAN, NAN, 0.75, 0.875]}, "accuracy"),
        ({"confidence": [NAN, NAN, 1.5, 0.6875, 0.875]}, "confidence"),
        ({"count": [0, 0, -1, 40, 1000]}, "count"),
    ],
)
def test_plot_reliability_rejects_bad_bins(change: dict, match: str) -> None:
    with pytest.raises(DensecalInputError, match=match):
        plot_reliability({**REL, **change})


def test_save_reliability_grid_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "reliability.png"
    save_reliability_grid({"BCE": REL, "ASLP": REL}, path, ece={"BCE": 0.0312},
                          titles={"ASLP": "ASLP (β=2)"})
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    with Image.open(path) as im:
        w, h = im.size
    # Two 4.2 x 4.8 in panels at 120 dpi, cropped tight: wider than tall, hundreds of pixels.
    assert 600 < w < 1100 and 350 < h < 600 and w > h
    assert _no_temp_files(path.parent)


def test_save_reliability_grid_leaves_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "reliability.png"
    bad = {**REL, "accuracy": [NAN, NAN, 0.5, 0.75]}  # one entry short
    with pytest.raises(DensecalInputError, match="equal length"):
        save_reliability_grid({"BCE": REL, "ASLP": bad}, path)
    with pytest.raises(DensecalInputError, match="ece"):
        save_reliability_grid({"BCE": REL}, path, ece={"bce": 0.1})
    assert list(tmp_path.iterdir()) == []


def test_save_risk_coverage_grid(tmp_path: Path) -> None:
    curve = {"coverage": [0.25, 0.5, 1.0], "risk": [0.0, 0.1, 0.3], "oracle_risk": [0.0, 0.0, 0.3]}
    path = tmp_path / "rc.png"
    save_risk_coverage_grid({"test": curve, "ood": curve}, path, aurc={"test": 0.12})
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        assert im.size[0] > im.size[1]  # two panels side by side
    with pytest.raises(DensecalInputError, match="differ in length"):
        save_risk_coverage_grid({"x": {**curve, "risk": [0.1]}}, tmp_path / "bad.png")
    with pytest.raises(DensecalInputError, match="aurc"):
        save_risk_coverage_grid({"x": curve}, tmp_path / "bad.png", aurc={"y": 0.1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rc.png"]


def test_failure_while_rendering_keeps_previous_file(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    path = tmp_path / "reliability.png"
    path.write_bytes(b"old")

    def boom(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"partial")
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="renderer failed"):
        save_reliability_grid({"BCE": REL}, path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reliability.png"]


def _rows(n: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        mask = np.zeros((24, 32))
        mask[6:18, 8:20] = 1.0
        rows.append({
            "image": (rng.random((24, 32, 3)) * 255).astype(np.uint8),
            "mask": mask,
            "pred/BCE": np.clip(mask + rng.normal(0, 0.2, mask.shape), 0, 1),
            "pred/ASLP": np.clip(0.2 + 0.6 * mask, 0, 1),
            "name": f"img{i}",
        })
    rows[-1]["image"] = rows[-1]["image"] / 255.0  # float images work too
    return rows


def test_save_prediction_grid_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "predictions.png"
    save_prediction_grid(_rows(), path)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000
    with Image.open(path) as im:
        w, h = im.size
    # 6 columns (image, GT, 2 x (q, conf)) of 2 in, 2 rows: about 3x wider than tall.
    assert 900 < w < 1500 and 2.0 < w / h < 5.0


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r[1].__setitem__("pred/BCE", np.zeros((24, 31))), "does not match"),
        (lambda r: r[1].pop("pred/ASLP"), r"rows\[1\]"),
        (lambda r: r[0].__setitem__("pred/ASLP", np.full((24, 32), 1.5)), r"\[0, 1\]"),
        (lambda r: r[0].pop("mask"), "missing key 'mask'"),
    ],
)
def test_save_prediction_grid_rejects_bad_rows(tmp_path: Path, mutate, match: str) -> None:
    rows = _rows()
    mutate(rows)
    path = tmp_path / "predictions.png"
    with pytest.raises(DensecalInputError, match=match):
        save_prediction_grid(rows, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_save_prediction_grid_column_titles_count(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="needs 6 titles"):
        save_prediction_grid(_rows(1), tmp_path / "p.png", column_titles=["a", "b"])
    with pytest.raises(DensecalInputError, match="must end in"):
        save_prediction_grid(_rows(1), tmp_path / "p.jpg")


def test_confidence_error_map_and_soft_truth_figure(tmp_path) -> None:
    import numpy as np

    from densecal.report.benchmark_figures import confidence_error_map, save_soft_truth_examples

    soft = np.zeros((3, 2, 2))
    soft[0], soft[1] = 0.5, 0.5  # half class 0, half class 1 everywhere
    probs = np.zeros((3, 2, 2))
    probs[0], probs[1] = 0.75, 0.25  # predicts class 0 with confidence 0.75
    probs[:, 1, 1] = (0.125, 0.125, 0.75)  # predicts class 2 (soft truth 0) with 0.75
    error = confidence_error_map(probs, soft)
    assert error.tolist() == [[0.25, 0.25], [0.25, 0.75]]
    image = np.zeros((2, 2, 3), np.uint8)
    save_soft_truth_examples(image, soft, {"ce": probs, "vls": soft}, tmp_path / "ex.png")
    assert (tmp_path / "ex.png").stat().st_size > 2_000
