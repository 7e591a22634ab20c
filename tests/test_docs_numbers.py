"""README and docs hold no measured numbers: those live in the results book (docs/results.md, generated).

Heuristic: a decimal number followed by ``%``, ``pp``, ``°`` or ``×``, or any number followed by ``±``, outside fenced
code blocks and outside the README's generated ``book:TABLE`` blocks, is taken for a measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250

QUICK_START = "```bash\npip install . && neurocircuit run --out runs/default\n```"
# .ci/run reads the test command from between these markers: they must stay byte-identical.
TEST_COMMAND = ('<!-- test-command -->\n```bash\npip install ".[test]" && python -m pytest -q -n 2\n```\n'
                "<!-- /test-command -->")
BOOK_BLOCK = re.compile(r"<!-- book:default -->.*?<!-- /book:default -->", re.S)
# every generated block (``<!-- book:TABLE -->`` or ``<!-- book:TABLE compact -->`` up to ``<!-- /book:TABLE -->``)
ANY_BOOK_BLOCK = re.compile(r"<!-- book:([A-Za-z0-9_.-]+)(?: compact)? -->.*?<!-- /book:\1 -->", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
MEASURED = re.compile(r"\d+\.\d+\s?(?:%|pp\b|°|×)|\d\s?±\s?\d")


def measured_numbers(text: str) -> list[tuple[int, str]]:
    """Return ``(line number, match)`` for every number in ``text`` that looks measured.

    Fenced code blocks and the generated ``book:TABLE`` blocks are blanked first (their newlines kept, so line
    numbers stay those of the file).
    """
    def blank(match: re.Match[str]) -> str:
        return "\n" * match.group(0).count("\n")

    text = FENCE.sub(blank, ANY_BOOK_BLOCK.sub(blank, text))
    return [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in MEASURED.finditer(text)]


def doc_files() -> list[Path]:
    return [README] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "results.md")


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES})"


def test_readme_keeps_the_quick_start_commands_and_markers() -> None:
    text = README.read_text(encoding="utf-8")
    assert QUICK_START in text
    assert text.count(TEST_COMMAND) == 1
    assert text.count("<!-- book:default -->") == 1 and text.count("<!-- /book:default -->") == 1
    assert BOOK_BLOCK.search(text), "the book:default block must open before it closes"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_no_measured_numbers_outside_the_book(path: Path) -> None:
    found = measured_numbers(path.read_text(encoding="utf-8"))
    assert not found, (f"{path.relative_to(ROOT)} holds measured numbers (move them to results/v1/ and link "
                       f"docs/results.md): " + "; ".join(f"line {n}: {m!r}" for n, m in found[:10]))


def test_the_heuristic_sees_numbers_and_skips_code_and_the_generated_block() -> None:
    text = ("WM ends 0.3 pp behind, at 9.50 ± 0.21 and 4.6°.\n```bash\nrun --set x=1.5%\n```\n"
            "<!-- book:default -->\n| bp | 95.43 ± 0.11 |\n<!-- /book:default -->\nsteps 1.79× slower\n")
    assert measured_numbers(text) == [(1, "0.3 pp"), (1, "0 ± 0"), (1, "4.6°"), (8, "1.79×")]
    assert measured_numbers("rtol 1e-3, tested to 1e-9, within 10 %, 2 ms\n") == []
    # any table's block, compact or not, is generated; a block closed under another name is not a block
    assert measured_numbers("<!-- book:b2 compact -->\n| wm | 13.37 ± 0.13 |\n<!-- /book:b2 -->\n") == []
    assert measured_numbers("<!-- book:b2 -->\n| wm | 13.37 ± 0.13 |\n<!-- /book:other -->\n") == [(2, "7 ± 0")]
