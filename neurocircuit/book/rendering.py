"""Rendering the results book: ``docs/results.md`` and the README's book blocks from the stored summaries. See
:mod:`neurocircuit.book`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NeurocircuitError
from ..results import write_atomic

if TYPE_CHECKING:
    pass

from .claims import compact_claims, render_claims
from .summaries import (
    BOOK_FILE,
    BOOK_FOLDER,
    REFERENCE_ARM,
    BookError,
    Table,
    load_book,
    mean_sd,
    paired_difference,
    simulation_hash,
)

__all__ = ["stale_reason", "render_book", "render_outputs", "write_outputs", "first_difference"]

# ``<!-- book:TABLE compact -->`` asks for the short form (a measured table's final columns, linked to the book)
_MARKER = re.compile(r"<!-- book:([A-Za-z0-9_.-]+)( compact)? -->\n(.*?)<!-- /book:\1 -->", re.DOTALL)
_OPEN_MARKER = re.compile(r"<!-- book:([A-Za-z0-9_.-]+)(?: compact)? -->")


# ----------------------------------------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(head), "|" + "|".join("---" for _ in head) + "|", *(_row(r) for r in rows)]


def _fmt(value: float) -> str:
    return f"{value:.2f}".replace("-0.00", "0.00")


def stale_reason(data: Mapping[str, Any]) -> str | None:
    """Why a measured table no longer describes what its simulation resolves to today (None: it does)."""
    from ..simulation import load_simulation

    if data.get("superseded_by"):  # the code (not the simulation) changed what it measures
        later = data["superseded_by"]
        return f"superseded by [{later['table']}](#{later['table']}): {later['because']}"
    prov = data["provenance"]
    settings = list(prov.get("settings", []))
    try:
        today = simulation_hash(load_simulation(prov["simulation"], settings).to_dict())
    except NeurocircuitError as exc:
        return f"simulation {prov['simulation']!r} no longer resolves ({' '.join(str(exc).split())})."
    if today != prov["simulation_hash"]:
        return (f"simulation `{prov['simulation']}`" + (f" with {', '.join(settings)}" if settings else "")
                + f" resolves today to hash `{today[:12]}`, not the stored `{prov['simulation_hash'][:12]}`: "
                "the shipped simulation changed since this table was measured, or its run applied settings "
                "the table does not record.")
    return None


def _by_arm(data: Mapping[str, Any]) -> tuple[list[str], dict[str, list[Mapping[str, Any]]]]:
    """The arms in stored order and each arm's runs sorted by seed."""
    arms: list[str] = []
    by_arm: dict[str, list[Mapping[str, Any]]] = {}
    for run in data["runs"]:
        if run["arm"] not in by_arm:
            arms.append(run["arm"])
        by_arm.setdefault(run["arm"], []).append(run)
    for arm in arms:
        by_arm[arm].sort(key=lambda r: r["seed"])
    return arms, by_arm


def _stat(runs: Sequence[Mapping[str, Any]], metric: str) -> str:
    """Mean ± sd of a metric over an arm's runs; "–" when no run has a value (None: e.g. an arm without that
    phase), "(n=k)" when only k of them do."""
    mean, sd, n = mean_sd([float(r[metric]) for r in runs if r.get(metric) is not None])
    if n == 0:
        return "–"
    text = _fmt(mean) if n == 1 else f"{_fmt(mean)} ± {_fmt(sd)}"
    return text + (f" (n={n})" if n != len(runs) else "")


def _compact_label(metric: str, unit: str | None) -> str:
    if metric.endswith("_final"):
        metric = "final_" + metric[:-len("_final")]
    text = metric.replace("weight_angle_after_", "angle after ").replace("weight_angle_", "final angle ")
    text = text.replace("_", " ")
    unit = "°" if unit == "degree" else unit
    return f"{text} ({unit})" if unit else text


def _compact_measured(table: Table) -> list[str]:
    """A README's short form of a measured table: final accuracies, angles and rates (no validation-selected
    columns, no paired differences), each ``X`` beside its ``twin_X`` in one cell ``circuit / twin``, and a link to
    the full table with its provenance in the book."""
    data = table.data
    metrics, units = list(data["metrics"]), dict(data.get("units", {}))
    shown = [m for m in metrics if not (m.startswith("val_") or m.endswith("_at_best_val"))
             and not (m.startswith("twin_") and m[len("twin_"):] in metrics)]
    arms, by_arm = _by_arm(data)
    rows = []
    for arm in arms:
        cells = [f"`{arm}`", str(len(by_arm[arm]))]
        for m in shown:
            twin = f"twin_{m}"
            cells.append(_stat(by_arm[arm], m) + (f" / {_stat(by_arm[arm], twin)}" if twin in metrics else ""))
        rows.append(cells)
    paired = any(f"twin_{m}" in metrics for m in shown)
    status = "**stale**" if stale_reason(data) else "current"
    return [f"**{table.title}** · measured, {status} · per arm: mean ± sd over seeds, n = seeds"
            + ("; a cell `a / b` is circuit / twin" if paired else "") + "; – where an arm has no such record · "
            f"[command, provenance and every column](docs/results.md#{table.id})", "",
            *_table(["arm", "n", *(_compact_label(m, units.get(m)) + (" circuit / twin" if f"twin_{m}" in metrics
                                                                        else "") for m in shown)], rows)]


def _measured_body(data: Mapping[str, Any]) -> list[str]:
    prov, metrics, units = data["provenance"], list(data["metrics"]), dict(data.get("units", {}))
    settings = list(prov.get("settings", []))
    stale = stale_reason(data)
    lines = [("**measured** · **stale**: " + stale) if stale else
             ("**measured** · current: the stored simulation hash equals what the shipped simulation resolves to.")]
    lines += ["", f"Simulation `{prov['simulation']}`" + (f" with `{' '.join(settings)}`" if settings else "")
              + f" (hash `{prov['simulation_hash'][:12]}`) · neurocircuit {prov['neurocircuit_version']} at commit "
              f"`{prov['git_commit'][:12]}{'+dirty' if prov['git_commit'].endswith('+dirty') else ''}` · "
              f"device: {prov['device']} · date: {prov['date']}", "", f"Command: `{prov['command']}`", ""]
    if not data.get("validation", any(m.startswith("val_") for m in metrics)):
        lines += ["No validation split: every value is the final record.", ""]
    arms, by_arm = _by_arm(data)

    def label(metric: str) -> str:
        unit = units.get(metric)
        return f"{metric} ({unit})" if unit else metric

    rows = [[f"`{arm}`", str(len(by_arm[arm])), *(_stat(by_arm[arm], m) for m in metrics)] for arm in arms]
    lines += ["Per arm: mean ± sd over seeds (sd with n − 1), n = seeds.", ""]
    lines += _table(["arm", "n", *(label(m) for m in metrics)], rows)

    compared = [m for m in metrics if units.get(m) == "%" and "accuracy" in m]
    if REFERENCE_ARM in by_arm and compared and len(arms) > 1:
        reference = {r["seed"]: r for r in by_arm[REFERENCE_ARM]}
        rows = []
        for arm in arms:
            if arm == REFERENCE_ARM:
                continue
            cells = [f"`{arm}`"]
            for metric in compared:
                pairs = [(float(r[metric]), float(reference[r["seed"]][metric])) for r in by_arm[arm]
                         if r["seed"] in reference and r.get(metric) is not None
                         and reference[r["seed"]].get(metric) is not None]
                mean, low, high, n = paired_difference([p[0] for p in pairs], [p[1] for p in pairs])
                if n == 0:
                    cells.append("–")
                elif n < 3 or low == high:
                    # two pairs give a t interval with one degree of freedom, and identical differences (counts
                    # of a small evaluation set) a zero-width one: neither is evidence of precision
                    cells.append(f"{_fmt(mean)} (n={n}, no CI)")
                else:
                    cells.append(f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}] (n={n})")
            rows.append(cells)
        lines += ["", f"Paired difference to `{REFERENCE_ARM}` by seed (arm − {REFERENCE_ARM}, percentage points): "
                  "mean [95 % CI, t-distribution with n − 1 degrees of freedom], n = seeds paired; no CI is shown "
                  "with fewer than 3 pairs or when every pair differs by the same amount.", ""]
        lines += _table(["arm", *(f"Δ {m} (pp)" for m in compared)], rows)
    return lines


def _transcribed_body(data: Mapping[str, Any]) -> list[str]:
    lines = ["**transcribed** · **stale**: no simulation hash — measured before the book existed; its run is not "
             "at hand here.", ""]
    where = [f"Source: {data['source']}"]
    if "simulation" in data:
        where.append(f"simulation `{data['simulation']}`")
    where.append(f"device: {data['device']}")
    if "date" in data:
        where.append(f"date: {data['date']}")
    lines += [" · ".join(where), "", f"Command (as the source gives it): `{data['command']}`", ""]
    if data.get("library_command"):  # the script it names was moved into the library since
        lines += [f"The same with today's library: `{data['library_command']}`", ""]
    if "note" in data:
        lines += [" ".join(str(data["note"]).split()), ""]
    lines += _table(list(data["columns"]), list(data["rows"]))
    return lines


def _body(table: Table) -> list[str]:
    return _measured_body(table.data) if table.kind == "measured" else _transcribed_body(table.data)


def render_book(folder: str | Path) -> str:
    """The text of ``docs/results.md`` for the book in ``folder`` (deterministic: only stored values, sorted)."""
    tables = load_book(folder)
    measured = [t for t in tables if t.kind == "measured"]
    transcribed = [t for t in tables if t.kind == "transcribed"]
    lines = [
        "# Results book",
        "",
        "<!-- Generated by 'neurocircuit report' from results/v1/: do not edit by hand. -->",
        "",
        "Every measured table of the project, generated by `neurocircuit report` from the summaries in "
        "`results/v1/` — never typed. `neurocircuit report --check` (run by the tests) fails when this file or the "
        "README's table differs from what the summaries give.",
        "",
        "- **measured** tables come from `results/v1/measured/TABLE.json`, written from a run's results by "
        "`neurocircuit summarize OUT/results.nc --table TABLE --title TITLE --command COMMAND` after running "
        "the table's command; then `neurocircuit report`. A measured table is **stale** when the stored hash of its "
        "resolved simulation no longer equals what the shipped simulation resolves to today. Only the simulation "
        "is compared: a change of the package's code does not make a table stale (each table names the commit that "
        "made it).",
        "- **transcribed** tables come from `results/v1/transcribed/TABLE.toml`: numbers whose runs are not at hand "
        "(GPU measurements, long CPU runs), cells exactly as their source gives them. They are always stale.",
        "",
        "## Contents",
        "",
    ]
    claims = render_claims(Path(folder), {t.id: t for t in tables})
    if claims:
        lines.append("- [Pre-registered claims](#pre-registered-claims)")
    for group, name in ((measured, "Measured"), (transcribed, "Transcribed")):
        if group:
            lines.append(f"- {name}")
            lines += [f"  - [{t.title}](#{t.id})" for t in group]
    lines += claims
    for group, name in ((measured, "Measured"), (transcribed, "Transcribed")):
        if not group:
            continue
        lines += ["", f"## {name}"]
        for table in group:
            lines += ["", f'<a id="{table.id}"></a>', "", f"### {table.title}", "", *_body(table)]
    return "\n".join(lines) + "\n"


def _readme_with_blocks(text: str, tables: Mapping[str, Table], readme: Path) -> str:
    opened = {m.group(1) for m in _OPEN_MARKER.finditer(text)}
    closed = {m.group(1) for m in _MARKER.finditer(text)}
    if opened - closed:
        missing = sorted(opened - closed)[0]
        raise BookError(f"{readme}: '<!-- book:{missing} -->' has no '<!-- /book:{missing} -->' after it")

    def block(match: re.Match[str]) -> str:
        if match.group(1) == "claims":  # the pre-registered claims' verdicts, one row per comparison
            body = compact_claims(readme.parent / BOOK_FOLDER, tables)
            return "<!-- book:claims -->\n" + "\n".join(body) + "\n<!-- /book:claims -->"
        table = tables.get(match.group(1))
        if table is None:
            raise BookError(f"{readme}: block 'book:{match.group(1)}' names no table of the book "
                            f"(tables: {', '.join(sorted(tables))})")
        compact = bool(match.group(2))
        if compact and table.kind != "measured":
            raise BookError(f"{readme}: block 'book:{table.id} compact': only a measured table has a compact form")
        # the title in bold, not as a heading: the README's own headings stay its author's
        body = _compact_measured(table) if compact else [
            f"**{table.title}**", "", *_body(table), "",
            f"Generated by `neurocircuit report` from `{(BOOK_FOLDER / table.kind / table.path.name).as_posix()}`; "
            "the full "
            f"[results book](docs/results.md#{table.id}) has every table."]
        return (f"<!-- book:{table.id}{' compact' if compact else ''} -->\n" + "\n".join(body)
                + f"\n<!-- /book:{table.id} -->")

    return _MARKER.sub(block, text)


def render_outputs(root: str | Path = ".") -> dict[Path, str]:
    """What ``neurocircuit report`` writes under the repository ``root``: ``docs/results.md`` and, when
    ``README.md`` has ``<!-- book:TABLE -->`` blocks, the README with those blocks regenerated."""
    root = Path(root)
    folder = root / BOOK_FOLDER
    out = {root / BOOK_FILE: render_book(folder)}
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if _OPEN_MARKER.search(text):
            out[readme] = _readme_with_blocks(text, {t.id: t for t in load_book(folder)}, readme)
    return out


def first_difference(path: Path, expected: str) -> str | None:
    """One line naming where ``path`` first differs from ``expected`` (None when it equals it)."""
    if not path.is_file():
        return f"{path} is missing: run 'neurocircuit report'"
    actual = path.read_text(encoding="utf-8")
    if actual == expected:
        return None
    have, want = actual.splitlines(), expected.splitlines()
    for i, (a, b) in enumerate(zip(have, want), start=1):
        if a != b:
            return f"{path}:{i} differs from what 'neurocircuit report' generates: {a[:80]!r} (expected {b[:80]!r})"
    i = min(len(have), len(want)) + 1
    what = "ends early" if len(have) < len(want) else "has extra lines"
    return f"{path}:{i} {what} compared with what 'neurocircuit report' generates"


def write_outputs(root: str | Path = ".") -> list[Path]:
    """Regenerate the book and the README blocks under ``root`` atomically; returns the files that changed."""
    changed = []
    for path, text in render_outputs(root).items():
        if first_difference(path, text) is not None:
            write_atomic(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            changed.append(path)
    return changed
