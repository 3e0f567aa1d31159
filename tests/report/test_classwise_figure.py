"""Tests for densecal.report.figures.save_classwise_reliability_grid (one panel per class)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import densecal.report.figures as figures
from densecal.errors import DensecalInputError
from densecal.metrics import PixelCalibration
from densecal.report.figures import save_classwise_reliability_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _table(num_classes: int = 5, scale: float = 3.0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(scale * torch.randn(2, num_classes, 16, 16, generator=gen), 1)
    target = torch.randint(0, num_classes, (2, 16, 16), generator=gen)
    metric = PixelCalibration(task="multiclass", num_classes=num_classes)
    metric.update(probs, target)
    return metric.reliability_classwise()


def test_one_panel_per_class_drawn_from_its_row(tmp_path: Path, monkeypatch):
    table = _table(5)
    drawn = []
    plot = figures.plot_reliability

    def spy(rel, ax=None, **kw):
        drawn.append((rel, kw["title"]))
        return plot(rel, ax, **kw)

    monkeypatch.setattr(figures, "plot_reliability", spy)
    out = tmp_path / "sub" / "classes.png"
    save_classwise_reliability_grid(table, out, class_names=list("abcde"), max_classes=3)
    assert [title for _, title in drawn] == ["a", "b", "c"]
    for k, (rel, _) in enumerate(drawn):
        assert rel["count"] == table["count"][k].tolist()
        assert rel["bin_upper"] == table["bin_upper"].tolist()
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["classes.png"]  # no temp file left


def test_grid_grows_with_classes_and_reads_json(tmp_path: Path):
    table = _table(6, scale=0.3)  # p_k stays below 0.9: the top bins are empty
    as_json = json.loads(json.dumps({k: v.tolist() for k, v in table.items()}).replace(
        "NaN", "null"))
    assert as_json["confidence"][0][-1] is None  # empty bins come back as None
    save_classwise_reliability_grid(as_json, tmp_path / "two.png", max_classes=2)
    save_classwise_reliability_grid(as_json, tmp_path / "six.png")
    with Image.open(tmp_path / "two.png") as two, Image.open(tmp_path / "six.png") as six:
        assert six.size[0] > two.size[0] and six.size[1] > two.size[1]  # 4 x 2 vs 2 x 1 panels


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        ({"count": None}, {}, "reliability: missing key 'count'"),
        ({}, {"class_names": ["a"]}, "class_names: needs 5 names, got 1"),
        ({}, {"max_classes": 0}, "max_classes"),
        ({"accuracy": [[0.5] * 10]}, {}, "one row per class"),
    ],
)
def test_errors_write_nothing(tmp_path: Path, change, kwargs, message):
    table = {k: v for k, v in _table(5).items()}
    for key, value in change.items():
        if value is None:
            del table[key]
        else:
            table[key] = value
    with pytest.raises(DensecalInputError, match=message):
        save_classwise_reliability_grid(table, tmp_path / "x.png", **kwargs)
    with pytest.raises(DensecalInputError, match="figure files must end"):
        save_classwise_reliability_grid(_table(5), tmp_path / "x.jpg")
    assert list(tmp_path.iterdir()) == []
