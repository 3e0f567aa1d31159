"""The floor plan holds: the core never loads Lightning, nothing imports upward, no cycles.

The import graph is read from the source text by ``scripts/import_layers.py`` (the same script
that prints the layer counts); the Lightning checks import in a fresh interpreter, so what
other tests loaded does not count.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _benchmark_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
layers = load_script(ROOT / "scripts" / "import_layers.py", "import_layers")

CORE = ("losses", "metrics", "posthoc", "overmap", "evaluation", "report", "data")


def _fresh(code: str) -> list[str]:
    """Run ``code`` in a new interpreter; the Lightning modules it left in ``sys.modules``."""
    probe = (f"{code}\nimport sys, json\n"
             "print(json.dumps(sorted(m for m in sys.modules\n"
             "    if m.split('.')[0] in ('lightning', 'pytorch_lightning'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_packages_do_not_import_lightning() -> None:
    assert _fresh("\n".join(f"import densecal.{name}" for name in CORE)) == []


def test_cli_help_does_not_import_lightning() -> None:
    assert _fresh("from densecal.cli.main import main\nmain(['--help'])") == []


def test_evaluate_saved_maps_does_not_import_lightning(tmp_path: Path) -> None:
    """``densecal evaluate --pred --gt`` in-process: scoring saved maps needs no model."""
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(
            tmp_path / "pred" / f"{i}.png")
        Image.fromarray(((rng.random((8, 8)) > 0.5) * 255).astype(np.uint8)).save(
            tmp_path / "gt" / f"{i}.png")
    code = ("from densecal.cli.main import main\n"
            f"main(['evaluate', '--pred', {str(tmp_path / 'pred')!r}, '--gt', "
            f"{str(tmp_path / 'gt')!r}, '--out', {str(tmp_path / 'eval')!r}])")
    assert _fresh(code) == []
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["dataset"][
        "n_images"] == 3


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "all-imports"])
def test_nothing_imports_upward_and_no_cycles(deferred: bool) -> None:
    graph = layers.import_graph(SRC, deferred=deferred)
    assert layers.upward_imports(graph) == []
    assert layers.cycles(graph) == []


def test_names_come_from_their_defining_module() -> None:
    assert layers.imports_through_init(SRC) == []


def test_engine_knows_no_method() -> None:
    """methods/engine imports, inside methods, only the run configuration and itself."""
    graph = layers.import_graph(SRC, deferred=True)
    allowed = ("densecal.methods.engine", "densecal.methods.config")
    found = {m: sorted(t for t in targets if t.startswith("densecal.methods")
                       and not t.startswith(allowed))
             for m, targets in graph.items() if m.startswith("densecal.methods.engine")}
    assert {m: t for m, t in found.items() if t} == {}
    assert "densecal.methods.engine.fit" in found  # the check looked at the engine


def test_every_module_has_a_floor() -> None:
    graph = layers.import_graph(SRC)
    assert [m for m in graph if layers.floor_of(m) is None] == []


def test_upward_import_is_detected() -> None:
    """The check can fail: a metric importing the evaluation layer is an upward import."""
    graph = {"densecal.metrics.x": {"densecal.evaluation.binary"},
             "densecal.evaluation.binary": set()}
    assert layers.upward_imports(graph) == [("densecal.metrics.x", "densecal.evaluation.binary")]
    assert layers.cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]


def _inline_bool_checks(path: Path) -> list[int]:
    """Lines of ``isinstance(x, bool) or ...`` checks (validation belongs in _checks.py)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.BoolOp) and any(
                isinstance(v, ast.Call) and getattr(v.func, "id", "") == "isinstance"
                and len(v.args) == 2 and getattr(v.args[1], "id", "") == "bool"
                for v in node.values):
            hits.append(node.lineno)
    return hits


def test_no_inline_bool_number_checks() -> None:
    found = {str(p.relative_to(SRC)): _inline_bool_checks(p)
             for p in (SRC / "densecal").rglob("*.py") if p.name != "_checks.py"}
    assert {k: v for k, v in found.items() if v} == {}


def test_docstrings_cite_only_what_ships() -> None:
    """No citation of the steering files; every ``docs/methods.md section N`` exists there."""
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\. ",
                              (ROOT / "docs" / "methods.md").read_text(encoding="utf-8"), re.M))
    assert {"1", "1.1", "1.2", "1.3", "2", "3", "4", "5", "6", "7", "8"} <= headings
    unshipped, dangling = [], []
    for path in sorted((SRC / "densecal").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(SRC))
        if "METHODS.md" in text or "DESIGN.md" in text:
            unshipped.append(name)
        dangling += [f"{name}: {n}" for n in re.findall(r"docs/methods\.md\s+section\s+"
                                                         r"(\d+(?:\.\d+)?)", text)
                     if n not in headings]
    assert unshipped == [] and dangling == []


def test_root_exports_are_lazy() -> None:
    """``import densecal`` loads no torch; each root name is the object of its package."""
    code = ("import sys, densecal\n"
            "assert 'torch' not in sys.modules\n"
            "from densecal import (AdaptivePerturbation, PixelCalibration, SCBCELoss,\n"
            "    TemperatureScaler, create_model, pixel_calibration)\n"
            "from densecal.losses import AdaptivePerturbation as A, SCBCELoss as S\n"
            "from densecal.metrics import PixelCalibration as P\n"
            "from densecal.metrics.functional import pixel_calibration as p\n"
            "from densecal.models import create_model as c\n"
            "from densecal.posthoc import TemperatureScaler as T\n"
            "assert (AdaptivePerturbation, PixelCalibration, SCBCELoss, TemperatureScaler,\n"
            "        create_model, pixel_calibration) == (A, P, S, T, c, p)\n")
    assert _fresh(code) == []


def test_old_import_paths_warn_and_resolve() -> None:
    """0.1 paths still work for one release, each with a DeprecationWarning."""
    import importlib
    import warnings

    cases = [("densecal.predict", "evaluate_checkpoint", "densecal.apps.evaluate_checkpoint"),
             ("densecal.evaluation_multiclass", "MulticlassEvaluator",
              "densecal.evaluation.multiclass"),
             ("densecal.methods.binary", "SegmentationModule",
              "densecal.methods.segmentation.module"),
             ("densecal.methods.objectives", "OBJECTIVES", "densecal.methods.registry"),
             ("densecal.data.demo", "write_demo_dataset", "densecal.data.synthetic.demo"),
             ("densecal.metrics.stochastic", "iou_distance",
              "densecal.metrics.functional.stochastic")]
    for old, name, new in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(importlib.import_module(old), name)
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
                   for w in caught), (old, name)
        assert value is getattr(importlib.import_module(new),
                                "METHODS" if name == "OBJECTIVES" else name)
