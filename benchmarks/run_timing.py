"""Training wall time of resumable benchmark runs, kept across restarts.

A benchmark that trains many runs over several sessions cannot time itself end to end: each
``record`` appends one ``{"run", "seconds"}`` line to a ``timing.jsonl`` file, and
``wall_seconds`` sums a run's lines (a run resumed three times has three). Runs trained before
a script recorded timing are counted as ``untimed``, never guessed; a run that was partly
trained before (its first epochs untimed) is marked by a line ``{"run", "seconds": 0,
"partial": true}`` and counted as ``partly_timed``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def record(path: Path, run: Path | str) -> Iterator[None]:
    """Append the wall time of the ``with`` block for ``run`` to ``path`` (JSON lines) when
    the block ends without an exception."""
    start = time.perf_counter()
    yield
    seconds = round(time.perf_counter() - start, 1)
    with path.open("a") as f:
        f.write(json.dumps({"run": str(run), "seconds": seconds}) + "\n")


def wall_seconds(path: Path, runs: list[Path]) -> dict[str, Any]:
    """Summed recorded wall time of ``runs`` in ``path``: ``{"seconds", "runs", "untimed",
    "partly_timed"}``.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "timing.jsonl"
    >>> _ = f.write_text('{"run": "a", "seconds": 2.5}\\n{"run": "a", "seconds": 1.0}\\n')
    >>> wall_seconds(f, [Path("a"), Path("b")])
    {'seconds': 3.5, 'runs': 2, 'untimed': 1, 'partly_timed': 0}
    """
    timed: dict[str, float] = {}
    partial: set[str] = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            timed[row["run"]] = timed.get(row["run"], 0.0) + row["seconds"]
            if row.get("partial"):
                partial.add(row["run"])
    names = [str(r) for r in runs]
    return {"seconds": round(sum(timed.get(r, 0.0) for r in names), 1), "runs": len(runs),
            "untimed": sum(r not in timed for r in names),
            "partly_timed": sum(r in partial for r in names)}


def wall_gaps(wall: dict[str, Any]) -> str:
    """What a :func:`wall_seconds` total leaves out, for a table cell: ``""`` when nothing.

    >>> wall_gaps({"seconds": 5.0, "runs": 3, "untimed": 1, "partly_timed": 1})
    ' (1 untimed, 1 partly timed)'
    """
    gaps = [f"{wall[k]} {k.replace('_', ' ')}" for k in ("untimed", "partly_timed") if wall[k]]
    return f" ({', '.join(gaps)})" if gaps else ""
