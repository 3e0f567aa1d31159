"""The README's Quickstart and Python example stay true."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_block_has_exactly_two_lines() -> None:
    section = README.read_text().split("## Quickstart", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S)
    assert block is not None
    lines = block.group(1).strip().splitlines()
    assert len(lines) == 2
    assert "densecal demo" in lines[0] and "pytest" in lines[1]


def test_python_example_runs(capsys) -> None:
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    exec(compile(code, str(README), "exec"), {})
    assert "'ece'" in capsys.readouterr().out
