"""Bad input across every CLI verb: exit code 2, one line naming the file or argument, no
traceback, no partial output, and the inputs untouched.

One table (``CASES``): each case is a small builder that breaks a fresh input and returns a
:class:`Case` - the argv, a fragment the error line must contain, the paths whose every file must
hash the same before and after the run, and the paths that must not exist afterwards.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.atomic import OUTPUT_MARKER
from densecal.cli.main import main


@dataclass
class Case:
    """What one malformed input must produce."""

    argv: list[str]
    fragment: str
    untouched: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


@dataclass
class Ctx:
    """What a builder may use: a fresh folder, monkeypatch and the session checkpoint."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest

    @property
    def checkpoint(self) -> Path:
        return self.request.getfixturevalue("bad_input_checkpoint")


Builder = Callable[[Ctx], Case]
CASES: list[Builder] = []


def _named(name: str, builder: Builder) -> Builder:
    builder.__name__ = name
    return builder


def case(builder: Builder) -> Builder:
    CASES.append(builder)
    return builder


@pytest.fixture(scope="session")
def bad_input_checkpoint(tiny_checkpoint: Path) -> Path:
    """One tiny trained binary (ASLP) checkpoint per session, shared with the other CLI tests."""
    return tiny_checkpoint


# ----------------------------------------------------------------------------- input builders

def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _dataset(root: Path, n: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        _png(root / "images" / f"im{i}.png", rng.integers(0, 255, (size, size, 3), np.uint8))
        _png(root / "masks" / f"im{i}.png", (rng.random((size, size)) > 0.5).astype(np.uint8) * 255)
    return root


def _maps(folder: Path, n: int = 4, size: int = 16) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        np.save(folder / f"im{i}.npy", np.full((size, size), 0.5, np.float32))
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _train(ctx: Ctx, data: Path, *extra: str) -> Case:
    run = ctx.tmp / "run"
    return Case(["train", "--data", str(data), "--epochs", "1", "--image-size", "16",
                 "--batch-size", "2", "--val-fraction", "0.25", *extra, "--out", str(run)],
                "", [data], [run])


def _evaluate(ctx: Ctx, pred: Path, data: Path, *extra: str) -> Case:
    out = ctx.tmp / "out"
    return Case(["evaluate", "--pred", str(pred), "--gt", str(data), *extra, "--out", str(out)],
                "", [pred, data], [out])


def _calibrate(ckpt: Path, data: Path, out: Path, *extra: str) -> Case:
    return Case(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), *extra, "--out",
                 str(out)], "", [data, ckpt], [out])


def _with(c: Case, fragment: str) -> Case:
    c.fragment = fragment
    return c


def _read_only(ctx: Ctx, folder: Path) -> None:
    """Make ``folder`` refuse new entries: chmod 0o500, and where that does not restrict (root)
    make every create / rename inside it fail with EACCES, as a read-only folder does."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    ctx.request.addfinalizer(lambda: folder.chmod(0o700))
    if not os.access(folder, os.W_OK):
        return
    inside = str(folder) + os.sep

    def denied(path: Any) -> bool:
        return os.fspath(path).startswith(inside) if isinstance(path, str | Path) else False

    def fail(path: Any) -> OSError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_mkdir, real_open, real_replace = os.mkdir, os.open, os.replace

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if denied(path):
            raise fail(path)
        real_mkdir(path, *args, **kwargs)

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if denied(path) and flags & os.O_CREAT:
            raise fail(path)
        return real_open(path, flags, *args, **kwargs)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if denied(dst):
            raise fail(dst)
        real_replace(src, dst, *args, **kwargs)

    ctx.monkeypatch.setattr(os, "mkdir", mkdir)
    ctx.monkeypatch.setattr(os, "open", open_)
    ctx.monkeypatch.setattr(os, "replace", replace)


def _disk_full(ctx: Ctx, folder: Path) -> None:
    """A full disk under ``folder``: the atomic writers' final renames fail with ENOSPC."""
    inside = str(folder)
    import densecal.atomic

    for name in ("replace", "rename"):
        real = getattr(os, name)

        def move(src: Any, dst: Any, *args: Any, real: Any = real, **kwargs: Any) -> None:
            if os.fspath(dst).startswith(inside):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(dst))
            real(src, dst, *args, **kwargs)

        ctx.monkeypatch.setattr(densecal.atomic.os, name, move)


def _unreadable(ctx: Ctx, path: Path) -> None:
    """``path`` cannot be opened: chmod 0, and where that does not restrict (root) a failing
    ``open`` for that one path."""
    path.chmod(0)
    ctx.request.addfinalizer(lambda: path.chmod(0o600))
    if not os.access(path, os.R_OK):
        return
    real_open = builtins.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | Path) and Path(file) == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    ctx.monkeypatch.setattr(builtins, "open", open_)


# ----------------------------------------------------------------------------- train

@case
def train_truncated_image(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    raw = (data / "images" / "im1.png").read_bytes()
    (data / "images" / "im1.png").write_bytes(raw[: len(raw) // 2])
    return _with(_train(ctx, data), "im1.png")


@case
def train_corrupt_image(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    (data / "images" / "im2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return _with(_train(ctx, data), "im2.png")


@case
def train_size_mismatch(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    _png(data / "masks" / "im2.png", np.zeros((8, 8), np.uint8))
    return _with(_train(ctx, data), "im2")


@case
def train_unmatched_stem(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    (data / "masks" / "im3.png").rename(data / "masks" / "other.png")
    return _with(_train(ctx, data), "unmatched")


@case
def train_duplicate_stem_other_extension(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    shutil.copy(data / "images" / "im0.png", data / "images" / "im0.jpg")
    return _with(_train(ctx, data), "duplicate name 'im0'")


@case
def train_colour_mask(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    green = np.zeros((16, 16, 3), np.uint8)
    green[..., 1] = 255
    _png(data / "masks" / "im0.png", green)
    return _with(_train(ctx, data), "im0.png")


@case
def train_float_image_mode(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    (data / "images" / "im1.png").unlink()
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(data / "images" / "im1.tif")
    return _with(_train(ctx, data), "unsupported image mode 'F'")


@case
def train_nan_in_float_mask(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    (data / "masks" / "im3.png").unlink()
    mask = np.zeros((16, 16), np.float32)
    mask[3, 4] = np.nan
    Image.fromarray(mask).save(data / "masks" / "im3.tif")
    return _with(_train(ctx, data), "finite")


@case
def train_empty_masks_folder(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    for p in (data / "masks").iterdir():
        p.unlink()
    return _with(_train(ctx, data), "masks")


@case
def train_empty_dataset_folder(ctx: Ctx) -> Case:
    data = ctx.tmp / "data"
    data.mkdir()
    return _with(_train(ctx, data), str(data))


@case
def train_missing_data_folder(ctx: Ctx) -> Case:
    c = _train(ctx, ctx.tmp / "nowhere")
    c.untouched = []
    return _with(c, "nowhere")


@case
def train_unreadable_image(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    _unreadable(ctx, data / "images" / "im2.png")
    return _with(_train(ctx, data), "im2.png")


def _train_option(option: str, value: str, fragment: str, method: str = "aslp") -> Builder:
    def build(ctx: Ctx) -> Case:
        return _with(_train(ctx, _dataset(ctx.tmp / "data"), "--method", method, option, value),
                     fragment)

    build.__name__ = f"train_bad_{option.strip('-').replace('-', '_')}"
    return case(build)


_train_option("--image-size", "30", "--image-size")
_train_option("--val-fraction", "1.5", "--val-fraction")
_train_option("--aslp-objective", "greedy", "greedy")
_train_option("--technique", "flip", "flip")
_train_option("--beta", "3", "beta")
_train_option("--model", "resnet9000", "resnet9000")
_train_option("--set", "car", "--set")


@case
def train_config_unknown_keys(ctx: Ctx) -> Case:
    """--set of a key the car family does not know."""
    return _with(_train(ctx, _dataset(ctx.tmp / "data"), "--method", "car",
                        "--set", "car.no_such_key=1"), "no_such_key")


@case
def train_resume_config_unknown_keys(ctx: Ctx) -> Case:
    """--resume of a run whose config.json holds a key densecal does not know."""
    run = ctx.tmp / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"method": "bce", "no_such_key": 1}))
    return Case(["train", "--resume", "--out", str(run)], "no_such_key", [run])


@case
def train_read_only_out(ctx: Ctx) -> Case:
    c = _train(ctx, _dataset(ctx.tmp / "data"))
    parent = ctx.tmp / "locked"
    c.argv[-1] = str(parent / "run")
    c.absent = [parent / "run"]
    _read_only(ctx, parent)
    return _with(c, f"{parent / 'run'}: Permission denied")


# ----------------------------------------------------------------------------- evaluate

def _bad_map(name: str, array: np.ndarray, fragment: str) -> Builder:
    def build(ctx: Ctx) -> Case:
        data, pred = _dataset(ctx.tmp / "data"), _maps(ctx.tmp / "pred")
        np.save(pred / "im0.npy", array)
        return _with(_evaluate(ctx, pred, data), fragment)

    build.__name__ = f"evaluate_{name}"
    return case(build)


_bad_map("probability_above_one", np.full((16, 16), 1.5, np.float32), "outside [0, 1]")
_bad_map("inf", np.full((16, 16), np.inf, np.float32), "NaN or Inf")
_bad_map("nan", np.where(np.eye(16) > 0, np.nan, 0.5).astype(np.float32), "16 NaN or Inf")
_bad_map("logits_as_probabilities",
         np.random.default_rng(1).normal(0, 3, (16, 16)).astype(np.float32), "outside [0, 1]")
_bad_map("two_channel_map", np.zeros((2, 16, 16), np.float32), "im0.npy")
_bad_map("string_array", np.full((16, 16), "a"), "dtype")
_bad_map("size_mismatch", np.full((8, 8), 0.5, np.float32), "im0")


@case
def evaluate_corrupt_npy(ctx: Ctx) -> Case:
    data, pred = _dataset(ctx.tmp / "data"), _maps(ctx.tmp / "pred")
    (pred / "im1.npy").write_bytes(b"not a numpy file")
    return _with(_evaluate(ctx, pred, data), "im1.npy")


@case
def evaluate_empty_pred_folder(ctx: Ctx) -> Case:
    data, pred = _dataset(ctx.tmp / "data"), ctx.tmp / "pred"
    pred.mkdir()
    return _with(_evaluate(ctx, pred, data), "pred")


@case
def evaluate_multiclass_not_summing_to_one(ctx: Ctx) -> Case:
    data, pred = ctx.tmp / "data", ctx.tmp / "pred"
    pred.mkdir()
    for i in range(2):
        _png(data / "images" / f"im{i}.png", np.zeros((8, 8, 3), np.uint8))
        _png(data / "masks" / f"im{i}.png", np.full((8, 8), i, np.uint8))
        np.save(pred / f"im{i}.npy", np.full((3, 8, 8), 0.5, np.float32))
    return _with(_evaluate(ctx, pred, data, "--num-classes", "3"), "im0.npy")


def _bad_eval_option(option: str, value: str) -> Builder:
    def build(ctx: Ctx) -> Case:
        return _with(_evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"),
                               option, value), option.lstrip("-"))

    build.__name__ = f"evaluate_bad_{option.strip('-').replace('-', '_')}"
    return case(build)


_bad_eval_option("--n-bins", "0")
_bad_eval_option("--protocol", "matlab")
_bad_eval_option("--confidence", "max")
_bad_eval_option("--aggregate", "mean")


@case
def evaluate_corrupt_checkpoint(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    ckpt = ctx.tmp / "model.ckpt"
    ckpt.write_bytes(b"\x00garbage" * 64)
    out = ctx.tmp / "out"
    return Case(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)],
                "model.ckpt", [data, ckpt], [out])


@case
def evaluate_disk_full(ctx: Ctx) -> Case:
    c = _evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"))
    _disk_full(ctx, ctx.tmp / "out")
    return _with(c, f"{ctx.tmp / 'out'}: No space left on device")


@case
def evaluate_read_only_out(ctx: Ctx) -> Case:
    c = _evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"))
    parent = ctx.tmp / "locked"
    c.argv[-1], c.absent = str(parent / "out"), [parent / "out"]
    _read_only(ctx, parent)
    return _with(c, f"{parent / 'out'}: Permission denied")


# ----------------------------------------------------------------------------- predict / calibrate

def _predict(ctx: Ctx, data: Path, *extra: str, checkpoint: Path | None = None) -> Case:
    ckpt = checkpoint or _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    out = ctx.tmp / "maps"
    return Case(["predict", "--checkpoint", str(ckpt), "--data", str(data), *extra,
                 "--out", str(out)], "", [p for p in (data, ckpt) if p.exists()], [out])


@case
def predict_bad_format(ctx: Ctx) -> Case:
    none = ctx.tmp / "none.ckpt"
    return _with(_predict(ctx, _dataset(ctx.tmp / "data"), "--format", "jpg", checkpoint=none),
                 "--format")


@case
def predict_missing_checkpoint(ctx: Ctx) -> Case:
    return _with(_predict(ctx, _dataset(ctx.tmp / "data"), checkpoint=ctx.tmp / "none.ckpt"),
                 "none.ckpt")


@case
def predict_json_as_checkpoint(ctx: Ctx) -> Case:
    ckpt = ctx.tmp / "config.json"
    ckpt.write_text('{"method": "bce"}')
    return _with(_predict(ctx, _dataset(ctx.tmp / "data"), checkpoint=ckpt), "config.json")


@case
def predict_truncated_image(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    raw = (data / "images" / "im3.png").read_bytes()
    (data / "images" / "im3.png").write_bytes(raw[:40])
    return _with(_predict(ctx, data), "im3.png")


@case
def predict_disk_full(ctx: Ctx) -> Case:
    c = _predict(ctx, _dataset(ctx.tmp / "data"))
    _disk_full(ctx, ctx.tmp / "maps")
    return _with(c, f"{ctx.tmp / 'maps'}: No space left on device")


@case
def predict_read_only_out(ctx: Ctx) -> Case:
    c = _predict(ctx, _dataset(ctx.tmp / "data"))
    parent = ctx.tmp / "locked"
    c.argv[-1], c.absent = str(parent / "maps"), [parent / "maps"]
    _read_only(ctx, parent)
    return _with(c, f"{parent / 'maps'}: Permission denied")


@case
def calibrate_corrupt_checkpoint(ctx: Ctx) -> Case:
    data = _dataset(ctx.tmp / "data")
    ckpt = ctx.tmp / "model.ckpt"
    ckpt.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    out = ctx.tmp / "cal.ckpt"
    return _with(_calibrate(ckpt, data, out), "model.ckpt")


@case
def calibrate_empty_data(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    data = ctx.tmp / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    out = ctx.tmp / "cal.ckpt"
    return _with(_calibrate(ckpt, data, out), "images")


@case
def calibrate_disk_full(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    data = _dataset(ctx.tmp / "data")
    out = ctx.tmp / "cal" / "cal.ckpt"
    _disk_full(ctx, out.parent)
    return _with(_calibrate(ckpt, data, out), f"{out}: No space left on device")


# ----------------------------------------------------------------------------- other verbs

@case
def sample_checkpoint_of_another_method(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "aslp.ckpt")
    data, out = _dataset(ctx.tmp / "data"), ctx.tmp / "samples"
    return Case(["sample", "--checkpoint", str(ckpt), "--data", str(data), "--n", "2",
                 "--out", str(out)], "aslp.ckpt", [data, ckpt], [out])


@case
def overmap_checkpoint_of_another_method(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "aslp.ckpt")
    data, out = ctx.tmp / "cls", ctx.tmp / "overmap"
    _png(data / "images" / "a.png", np.zeros((16, 16, 3), np.uint8))
    (data / "labels.csv").write_text("name,label\na,0\n")
    return Case(["overmap", "--classifier", str(ckpt), "--data", str(data), "--out", str(out)],
                "aslp.ckpt", [data, ckpt], [out])


@case
def benchmark_unknown_method(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "bench", ctx.tmp / "out"
    for split in ("train", "val", "test"):
        _dataset(data / split)
    return Case(["benchmark", "--methods", "bce,nosuch", "--seeds", "1", "--data", str(data),
                 "--out", str(out)], "nosuch", [data], [out])


@case
def benchmark_missing_split(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "bench", ctx.tmp / "out"
    _dataset(data / "train")
    return Case(["benchmark", "--methods", "bce", "--seeds", "1", "--data", str(data),
                 "--out", str(out)], "val", [data], [out])


@case
def demo_out_is_a_file(ctx: Ctx) -> Case:
    out = ctx.tmp / "demo"
    out.write_text("a file where the output folder should go")
    return Case(["demo", "--fast", "--out", str(out)], "demo", [out])


@case
def data_demo_out_is_a_file(ctx: Ctx) -> Case:
    out = ctx.tmp / "scenes"
    out.write_text("a file where the output folder should go")
    return Case(["data", "demo", "--out", str(out)], "scenes", [out])


@case
def data_ambiguous_bad_size(ctx: Ctx) -> Case:
    out = ctx.tmp / "amb"
    return Case(["data", "ambiguous", "--size", "0", "--out", str(out)], "size", [], [out])


@case
def data_brain_unknown_axis(ctx: Ctx) -> Case:
    out = ctx.tmp / "brain"
    return Case(["data", "brain", "--axes", "axial,diagonal", "--out", str(out)], "diagonal",
                [], [out])


@case
def data_nifti_corrupt_volume(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "vols", ctx.tmp / "slices"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "images" / "a.nii.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    (data / "labels" / "a.nii.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    return Case(["data", "nifti", "--data", str(data), "--out", str(out)], "a.nii.gz", [data],
                [out])


@case
def data_voc_empty_root(ctx: Ctx) -> Case:
    root, out = ctx.tmp / "VOC2007", ctx.tmp / "voc"
    root.mkdir()
    return Case(["data", "voc", "--root", str(root), "--out", str(out)], "VOC2007", [root],
                [out])


@case
def data_coco_annotations_not_json(ctx: Ctx) -> Case:
    ann, images, out = ctx.tmp / "instances_val2014.json", ctx.tmp / "val2014", ctx.tmp / "coco"
    ann.write_text("{not json")
    _png(images / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    return Case(["data", "coco", "--annotations", str(ann), "--images", str(images),
                 "--out", str(out)], "instances_val2014.json", [ann, images], [out])


# ------------------------------------------------------ issue 16: outputs densecal did not write

def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("the user's own file")
    return path


def _result_of(kind: str, path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text("{}\n")
    (path / OUTPUT_MARKER).write_text(json.dumps({"schema": "densecal.output/1", "kind": kind}))
    return path


@case
def evaluate_out_user_folder(ctx: Ctx) -> Case:
    c = _evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"))
    c.untouched.append(_user_folder(ctx.tmp / "out"))
    c.absent = []
    return _with(c, "out: is not empty and was not written by densecal")


@case
def evaluate_out_holds_predict_output(ctx: Ctx) -> Case:
    c = _evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"))
    c.untouched.append(_result_of("predict", ctx.tmp / "out"))
    c.absent = []
    return _with(c, "holds densecal predict output, not evaluate output")


@case
def predict_out_user_folder(ctx: Ctx) -> Case:
    c = _predict(ctx, _dataset(ctx.tmp / "data"))
    c.untouched.append(_user_folder(ctx.tmp / "maps"))
    c.absent = []
    return _with(c, "maps: is not empty and was not written by densecal")


@case
def predict_out_holds_evaluate_result(ctx: Ctx) -> Case:
    c = _predict(ctx, _dataset(ctx.tmp / "data"))
    c.untouched.append(_result_of("evaluate", ctx.tmp / "maps"))
    c.absent = []
    return _with(c, "holds densecal evaluate output, not predict output")


@case
def sample_out_user_folder(ctx: Ctx) -> Case:
    data, out = _dataset(ctx.tmp / "data"), _user_folder(ctx.tmp / "samples")
    return Case(["sample", "--checkpoint", str(ctx.tmp / "car.ckpt"), "--data", str(data),
                 "--out", str(out)], "samples: is not empty and was not written by densecal",
                [data, out])


@case
def overmap_out_user_folder(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "cls", _user_folder(ctx.tmp / "overmap")
    _png(data / "images" / "a.png", np.zeros((16, 16, 3), np.uint8))
    (data / "labels.csv").write_text("name,label\na,0\n")
    return Case(["overmap", "--classifier", str(ctx.tmp / "c.ckpt"), "--data", str(data),
                 "--out", str(out)], "overmap: is not empty and was not written by densecal",
                [data, out])


@case
def demo_out_user_folder(ctx: Ctx) -> Case:
    out = _user_folder(ctx.tmp / "demo")
    return Case(["demo", "--fast", "--out", str(out)], "demo: is not empty and was not written",
                [out])


@case
def benchmark_out_user_folder(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "bench", _user_folder(ctx.tmp / "out")
    for split in ("train", "val", "test"):
        _dataset(data / split)
    return Case(["benchmark", "--methods", "bce", "--seeds", "1", "--data", str(data),
                 "--out", str(out)], "out: is not empty and was not written by densecal",
                [data, out])


@case
def benchmark_out_holds_demo_workspace(ctx: Ctx) -> Case:
    data, out = ctx.tmp / "bench", _result_of("demo-workspace", ctx.tmp / "out")
    for split in ("train", "val", "test"):
        _dataset(data / split)
    return Case(["benchmark", "--methods", "bce", "--seeds", "1", "--data", str(data),
                 "--out", str(out)], "holds densecal demo-workspace output", [data, out])


@case
def calibrate_out_user_file(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    data, out = _dataset(ctx.tmp / "data"), ctx.tmp / "notes.ckpt"
    out.write_text("the user's notes, named like a checkpoint")
    c = _with(_calibrate(ckpt, data, out), "notes.ckpt exists and is not a densecal checkpoint")
    c.untouched.append(out)
    c.absent = []
    return c


@case
def calibrate_out_is_a_folder(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    data, out = _dataset(ctx.tmp / "data"), _user_folder(ctx.tmp / "cal")
    c = _with(_calibrate(ckpt, data, out), "cal is a folder")
    c.untouched.append(out)
    c.absent = []
    return c


@case
def calibrate_negative_batch_size(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "model.ckpt")
    data, out = _dataset(ctx.tmp / "data"), ctx.tmp / "cal.ckpt"
    return _with(_calibrate(ckpt, data, out, "--batch-size", "-1"),
                 "--batch-size: must be an integer in [1, 65536]")


# ------------------------------------------------ issue 16: checkpoints from elsewhere or later

def _edited_checkpoint(ctx: Ctx, edit: Callable[[dict[str, Any]], None]) -> Path:
    state = torch.load(ctx.checkpoint, map_location="cpu", weights_only=True)
    edit(state)
    path = ctx.tmp / "in" / "edited.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _checkpoint_case(edit: Callable[[dict[str, Any]], None], fragment: str,
                     verb: str = "predict") -> Builder:
    def build(ctx: Ctx) -> Case:
        ckpt = _edited_checkpoint(ctx, edit)
        data = _dataset(ctx.tmp / "data")
        if verb == "predict":
            return _with(_predict(ctx, data, checkpoint=ckpt), f"edited.ckpt: {fragment}")
        out = ctx.tmp / "out"
        return Case([verb, "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)],
                    f"edited.ckpt: {fragment}", [data, ckpt], [out])
    return build


def _newer_hparam(state: dict[str, Any]) -> None:
    state["hyper_parameters"]["future_setting"] = 1


def _newer_config_key(state: dict[str, Any]) -> None:
    state["hyper_parameters"]["config"]["future_option"] = 1


def _image_size_zero(state: dict[str, Any]) -> None:
    state["hyper_parameters"]["config"]["image_size"] = 0


def _car_method(state: dict[str, Any]) -> None:
    state["hyper_parameters"]["config"]["method"] = "car"


def _unknown_method(state: dict[str, Any]) -> None:
    state["hyper_parameters"]["config"]["method"] = "from-the-future"


def _no_weights(state: dict[str, Any]) -> None:
    del state["state_dict"]


_NEWER = "holds settings this densecal does not know (future_setting)"
CASES.extend(_named(f"{verb}_checkpoint_{name}", _checkpoint_case(edit, fragment, verb))
             for verb in ("predict", "evaluate", "calibrate")
             for name, edit, fragment in [
                 ("newer_hyper_parameter", _newer_hparam, _NEWER),
                 ("newer_config_key", _newer_config_key, "its saved configuration is not valid: "
                  "config: unknown keys future_option (a newer densecal wrote it"),
                 ("image_size_zero", _image_size_zero, "its saved configuration is not valid: "
                  "image_size: must be a positive integer"),
                 ("of_car", _car_method, "was trained with method car, not a segmentation "
                                         "checkpoint; use densecal sample"),
                 ("unknown_method", _unknown_method, "was trained with method from-the-future, "
                  "not a segmentation checkpoint; this densecal does not know that method"),
                 ("without_weights", _no_weights, "holds no weights"),
             ])


@case
def sample_checkpoint_names_the_verb_to_use(ctx: Ctx) -> Case:
    ckpt = _copy(ctx.checkpoint, ctx.tmp / "in" / "aslp.ckpt")
    data, out = _dataset(ctx.tmp / "data"), ctx.tmp / "samples"
    return Case(["sample", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)],
                "was trained with method aslp, not a CAR checkpoint; use densecal predict",
                [data, ckpt], [out])


# ------------------------------------------------------- issue 16: files that are not what they say

@case
def evaluate_npz_saved_as_npy(ctx: Ctx) -> Case:
    pred = _maps(ctx.tmp / "pred")
    with open(pred / "im1.npy", "wb") as f:
        np.savez(f, a=np.zeros((16, 16), np.float32))
    return _with(_evaluate(ctx, pred, _dataset(ctx.tmp / "data")),
                 "im1.npy: is a .npz archive, not a .npy array")


@case
def evaluate_ood_npz_saved_as_npy(ctx: Ctx) -> Case:
    ood = _maps(ctx.tmp / "ood")
    with open(ood / "im2.npy", "wb") as f:
        np.savez(f, a=np.zeros((16, 16), np.float32))
    c = _evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"), "--ood", str(ood))
    c.untouched.append(ood)
    return _with(c, "im2.npy: is a .npz archive")


@case
def evaluate_size_mismatch_names_both_files(ctx: Ctx) -> Case:
    pred = _maps(ctx.tmp / "pred")
    np.save(pred / "im3.npy", np.full((16, 15), 0.5, np.float32))
    return _with(_evaluate(ctx, pred, _dataset(ctx.tmp / "data")),
                 f"{pred / 'im3.npy'} (ground truth {ctx.tmp / 'data' / 'masks' / 'im3.png'})")


@case
def evaluate_label_out_of_range_names_the_files(ctx: Ctx) -> Case:
    data, pred = ctx.tmp / "mc", ctx.tmp / "pred"
    pred.mkdir()
    for i in range(2):
        _png(data / "images" / f"s{i}.png", np.zeros((8, 8, 3), np.uint8))
        _png(data / "masks" / f"s{i}.png", np.full((8, 8), 4 * i, np.uint8))
        np.save(pred / f"s{i}.npy", np.full((3, 8, 8), 1 / 3, np.float32))
    c = _evaluate(ctx, pred, data, "--num-classes", "3")
    return _with(c, f"{pred / 's1.npy'} (ground truth {data / 'masks' / 's1.png'}): label "
                    f"value 4 is not a class")


@case
def evaluate_threshold_zero_names_the_option(ctx: Ctx) -> Case:
    return _with(_evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"),
                           "--threshold", "0"), "--threshold: must lie in (0, 1]")


@case
def evaluate_target_unknown_names_the_option(ctx: Ctx) -> Case:
    return _with(_evaluate(ctx, _maps(ctx.tmp / "pred"), _dataset(ctx.tmp / "data"),
                           "--target", "fuzzy"), "--target: expected one of")


@case
def predict_negative_batch_size(ctx: Ctx) -> Case:
    return _with(_predict(ctx, _dataset(ctx.tmp / "data"), "--batch-size", "-1"),
                 "--batch-size: must be an integer in [1, 65536]")


@case
def predict_zero_batch_size(ctx: Ctx) -> Case:
    return _with(_predict(ctx, _dataset(ctx.tmp / "data"), "--batch-size", "0"),
                 "--batch-size: must be an integer in [1, 65536]")


@case
def evaluate_map_larger_than_the_free_memory(ctx: Ctx) -> Case:
    from densecal.evaluation import binary

    pred, data = ctx.tmp / "pred", ctx.tmp / "data"
    pred.mkdir()
    np.save(pred / "huge.npy", np.zeros((2048, 2048), np.float32))
    _png(data / "images" / "huge.png", np.zeros((8, 8, 3), np.uint8))
    _png(data / "masks" / "huge.png", np.zeros((2048, 2048), np.uint8))
    ctx.monkeypatch.setattr(binary, "_available_memory", lambda: 64 << 20)  # 64 MiB free
    return _with(_evaluate(ctx, pred, data),
                 f"{pred / 'huge.npy'} (ground truth {data / 'masks' / 'huge.png'}): a 2048x2048 "
                 f"map needs about 0.4 GiB to evaluate")


# ----------------------------------------------------------------------------- the one test

def _digest(paths: list[Path]) -> dict[str, str]:
    files = [q for p in paths for q in ([p] if p.is_file() else sorted(p.rglob("*")))
             if q.is_file()]
    return {str(q): hashlib.sha256(q.read_bytes()).hexdigest() for q in files}


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".staging")]


def test_the_table_covers_every_verb_and_30_inputs() -> None:
    names = [b.__name__ for b in CASES]
    assert len(names) == len(set(names)) and len(names) >= 30, len(names)
    verbs = {"train", "evaluate", "predict", "calibrate", "sample", "overmap", "benchmark",
             "demo", "data_demo", "data_ambiguous", "data_brain", "data_nifti", "data_voc",
             "data_coco"}
    assert all(any(n.startswith(v + "_") for n in names) for v in verbs)


@pytest.mark.parametrize("builder", CASES, ids=lambda b: b.__name__)
def test_bad_input_exits_2_with_one_line(builder: Builder, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         request: pytest.FixtureRequest,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    c = builder(Ctx(tmp_path, monkeypatch, request))
    assert c.fragment, "every case names what the error line must say"
    assert all(p.exists() for p in c.untouched)
    before = _digest(c.untouched)
    with pytest.raises(SystemExit) as info:
        main(c.argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("densecal: error: "), err
    assert c.fragment in lines[0], err
    for path in c.absent:
        assert not path.exists(), f"partial output left at {path}"
    assert _digest(c.untouched) == before, "inputs untouched"
    assert _leftovers(tmp_path) == [], "no temporary files remain"
