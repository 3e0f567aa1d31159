"""A dataset generator replaces only a folder it wrote itself (issue 16, A2).

``densecal data demo``, ``data ambiguous`` and ``data finegrained`` into a folder of the user's
(any non-empty folder without the generator's manifest) are refused with one line and leave
every file byte-identical; into their own earlier output they replace it whole, stale files
included. (``data multilabel`` refuses any existing split folder; ``data brain`` and ``data
nifti`` had manifests already.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from densecal.cli.main import main

GENERATORS = {
    "demo": ["data", "demo", "--fast"],
    "ambiguous": ["data", "ambiguous", "--size", "16", "--n-train", "2", "--n-val", "1",
                  "--n-test", "1"],
    "finegrained": ["data", "finegrained", "--size", "16", "--n-train", "4", "--n-val", "2",
                    "--n-test", "2"],
}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _users_folder(root: Path) -> Path:
    """A folder that looks like a generator's output but is the user's own work."""
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "images" / "my_photo.png").write_bytes(b"\x89PNG not really")
    (root / "train" / "masks").mkdir()
    (root / "train" / "masks" / "my_photo.png").write_bytes(b"mask")
    (root / "README.md").write_text("my notes\n")
    (root / "ambiguity.json").write_text('{"mine": true}\n')
    return root


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_refuses_a_users_folder(kind: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = _users_folder(tmp_path / "mine")
    before = _digest(out)
    with pytest.raises(SystemExit) as info:
        main([*GENERATORS[kind], "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert str(out) in err[0] and "not written by densecal" in err[0], err[0]
    assert _digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left behind


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_replaces_its_own_output(kind: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    main([*GENERATORS[kind], "--out", str(out)])
    first = _digest(out)
    stale = out / "train" / "images" / "stale.png"
    stale.write_bytes(b"left from a bigger earlier run")
    main([*GENERATORS[kind], "--out", str(out)])
    assert not stale.exists() and _digest(out) == first
