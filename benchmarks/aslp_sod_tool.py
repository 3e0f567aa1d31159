"""densecal's SOD measures under ``--protocol official`` against ASLP's ``SOD_Evaluation_Tool``.

densecal computes MAE, F-, E- and S-measures with pysodmetrics (the MATLAB toolbox's
definitions); the ASLP repository evaluates with its own torch tool
(``SOD_Evaluation_Tool/evaluator.py``). This script runs that tool, unchanged, from a checkout
of github.com/Carlisle-Liu/ASLP as the oracle (densecal ships none of its code; torchvision,
which the tool imports only for ``transforms.ToTensor``, is replaced by a 10-line stand-in
that converts a PIL image to a float tensor / 255, as ``ToTensor`` does), on the official 8-bit
maps of ``benchmarks/aslp_official.py``, and reports each measure's difference.

Run: ``python benchmarks/aslp_sod_tool.py --aslp-repo PATH [--n-maps 40] [--seed 0]
[--write]``; ``PATH`` is a clone of the ASLP repository (``git clone
https://github.com/Carlisle-Liu/ASLP``). Prints ONE JSON object (``--write`` also saves
``results/aslp_sod_tool.json``): three ground-truth sets (``binary``: the soft masks binarised
at 128; ``soft``: the soft masks; ``degenerate``: one empty and one all-foreground mask), each
with densecal's and the tool's MAE, max/mean F, max/mean E and S-measure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aslp_official import make_maps, official_levels

RESULT = Path(__file__).resolve().parent / "results" / "aslp_sod_tool.json"
PAIRS = {"mae": "MAE", "max_f": "MaxFm", "mean_f": "MeanFm", "max_e": "MaxEm",
         "mean_e": "MeanEm", "s_measure": "Sm"}


def _torchvision_stand_in() -> None:
    """``torchvision.transforms`` with the two names the tool uses."""
    def to_tensor() -> Any:
        return lambda image: torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None]

    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor = to_tensor  # type: ignore[attr-defined]
    transforms.Compose = lambda steps: steps[0]  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", package)
    sys.modules.setdefault("torchvision.transforms", transforms)


def official_tool(repo: Path, pred_dir: Path, gt_dir: Path, work: Path) -> dict[str, float]:
    """The ASLP tool's measures (its ``Eval_thread.run``, on the CPU)."""
    _torchvision_stand_in()
    sys.path.insert(0, str(repo))
    from SOD_Evaluation_Tool.dataloader import EvalDataset  # type: ignore[import-not-found]
    from SOD_Evaluation_Tool.evaluator import Eval_thread  # type: ignore[import-not-found]

    thread = Eval_thread(EvalDataset(str(pred_dir) + "/", str(gt_dir) + "/"), "densecal", "set",
                         str(work), False)
    values = {"MAE": thread.Eval_mae()}
    fm, _, _ = thread.Eval_fmeasure()
    em = thread.Eval_Emeasure()
    values.update(MaxFm=fm.max().item(), MeanFm=fm.mean().item(), MaxEm=em.max().item(),
                  MeanEm=em.mean().item(), Sm=thread.Eval_Smeasure())
    return values


def densecal_measures(pred_dir: Path, gt_dir: Path, out: Path) -> dict[str, float]:
    subprocess.run([sys.executable, "-m", "densecal", "evaluate", "--pred", str(pred_dir),
                    "--gt", str(gt_dir), "--protocol", "official", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())["segmentation"]


def compare(repo: Path, levels: list[np.ndarray], gts: list[np.ndarray], work: Path
            ) -> dict[str, Any]:
    pred_dir, gt_dir = work / "pred", work / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir()
    for i, (level, gt) in enumerate(zip(levels, gts, strict=True)):
        Image.fromarray(level).save(pred_dir / f"m{i:03d}.png")
        Image.fromarray(gt).save(gt_dir / f"m{i:03d}.png")
    ours = densecal_measures(pred_dir, gt_dir, work / "out")
    tool = official_tool(repo, pred_dir, gt_dir, work)
    return {key: {"densecal": ours[key], "aslp_tool": tool[name],
                  "difference": ours[key] - tool[name]} for key, name in PAIRS.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aslp-repo", type=Path, required=True)
    parser.add_argument("--n-maps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not (args.aslp_repo / "SOD_Evaluation_Tool" / "evaluator.py").is_file():
        parser.error(f"--aslp-repo: {args.aslp_repo} holds no SOD_Evaluation_Tool/evaluator.py")
    pairs = make_maps(args.n_maps, args.seed)[2:]  # sigmoid maps (no constant map)
    levels = [official_levels(p) for p, _ in pairs]
    soft = [g for _, g in pairs]
    binary = [np.where(g >= 128, 255, 0).astype(np.uint8) for g in soft]
    empty, full = np.zeros_like(soft[0]), np.full_like(soft[1], 255)
    sets = {"binary": (levels, binary), "soft": (levels, soft),
            "degenerate": (levels[:2], [empty, full])}
    result: dict[str, Any] = {"benchmark": "aslp_sod_tool", "n_maps": len(levels),
                              "seed": args.seed}
    for name, (maps, gts) in sets.items():
        with tempfile.TemporaryDirectory() as tmp:
            result[name] = compare(args.aslp_repo, maps, gts, Path(tmp))
    if args.write:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
