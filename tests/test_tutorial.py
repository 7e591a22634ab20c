"""docs/tutorial.md runs as written: its ```python blocks, in order, in one namespace, in a temporary folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def test_the_block_reader_finds_every_python_block() -> None:
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.slow
def test_the_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "tutorial"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{TUTORIAL.name} block {i + 1}", "exec"), namespace)  # noqa: S102
    # what the tutorial says it makes
    assert (tmp_path / "tutorial.png").stat().st_size > 10_000
    assert (tmp_path / "runs" / "tutorial" / "results.nc").is_file()
    sweep = namespace["sweep"]
    assert list(sweep["lambda_w"].values) == [0.5, 2.0, 8.0] and sweep["weight_angle"].notnull().all()
