"""Pre-registered claims: protocols written before their runs, and the verdicts their stored results give.

A claim lives in ``results/v1/protocol/<claim>.toml`` (the folder's README.md states the fields and the verdict
rules): what is claimed, the runs that test it (each a measured table of the book, on fresh seeds), and its
comparisons — paired differences by seed with a test each:

- ``equivalence`` (margin m): met when the two one-sided tests both reject at ``alpha`` (the 1 - 2 alpha interval
  of the mean difference lies inside (-m, m)); not met when the 95 % interval lies entirely outside [-m, m];
  otherwise inconclusive.
- ``greater``: met when the 95 % interval lies above 0, not met when below, otherwise inconclusive.
- ``at_most`` (threshold c, one arm's values): met when the 95 % interval lies at or below c, not met when above.
- ``report``: the difference and its interval, no verdict.

A result counts only when it was made at a commit that descends from the commit that last changed its protocol
(:func:`protocol_commit`): a protocol edited after its runs voids their verdicts.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._toml import check_keys, read_toml
from ..errors import ConfigError
from .summaries import BookError, Table

__all__ = ["Claim", "Comparison", "Outcome", "load_claims", "evaluate", "outcomes", "claim_verdict",
           "protocol_commit", "result_follows_protocol", "render_claims", "compact_claims", "tost_p", "TESTS"]

PROTOCOL_FOLDER = "protocol"
TESTS = ("equivalence", "greater", "at_most", "report")
_CLAIM_KEYS = ("claim", "source", "recipe", "metric", "alpha", "runs", "comparisons")
_RUN_KEYS = ("table", "simulation", "arms", "seeds", "settings", "device", "command")
_COMPARISON_KEYS = ("name", "table", "metric", "arm", "reference", "reference_metric", "contrast", "seeds", "test",
                    "margin", "threshold")


@dataclass(frozen=True)
class Comparison:
    """One pre-registered comparison: per seed, ``sum_arm weight * value`` (``contrast``), tested by ``test``."""

    name: str
    table: str
    test: str
    contrast: Mapping[str, float]  # arm -> weight; "arm - reference" is {arm: 1, reference: -1}
    metrics: Mapping[str, str]     # arm -> metric (a reference may read another metric: the twin's)
    seeds: tuple[int, ...] | None = None
    margin: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class Claim:
    """One protocol file: what is claimed, the runs that test it, its comparisons."""

    id: str
    path: Path
    claim: str
    source: str
    recipe: str
    alpha: float
    runs: tuple[Mapping[str, Any], ...]
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class Outcome:
    """A comparison's statistic over seeds and its verdict (``met``, ``not met``, ``inconclusive``, ``reported``,
    ``not run``, ``incomplete``)."""

    verdict: str
    n: int = 0
    mean: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)
    ci90: tuple[float, float] = (math.nan, math.nan)
    p_tost: float = math.nan
    why: str = ""
    values: tuple[float, ...] = field(default=())


def _need(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise BookError(f"{path}: {what}")


def _comparison(raw: Any, index: int, path: Path, metric: str, tables: Sequence[str]) -> Comparison:
    where = f"{path}: comparisons[{index}]"
    _need(isinstance(raw, dict), path, f"comparisons[{index}] must be a table")
    try:
        check_keys(raw, _COMPARISON_KEYS, where)
    except ConfigError as exc:
        raise BookError(str(exc)) from None
    name = raw.get("name")
    _need(isinstance(name, str) and bool(name), path, f"comparisons[{index}]: 'name' must be a non-empty string")
    test = raw.get("test")
    _need(test in TESTS, path, f"comparisons[{index}] ({name!r}): 'test' must be one of {', '.join(TESTS)}, "
                               f"got {test!r}")
    table = raw.get("table", tables[0] if len(tables) == 1 else None)
    # another claim's table (its runs shared, e.g. the shipped recipe's point of a sweep) with the seeds it reads
    _need(table in tables or (isinstance(table, str) and "seeds" in raw), path,
          f"comparisons[{index}] ({name!r}): 'table' must name one of its runs' tables ({', '.join(tables)}), or "
          f"another claim's with 'seeds', got {table!r}")
    metric = raw.get("metric", metric)
    _need(isinstance(metric, str) and bool(metric), path, f"comparisons[{index}] ({name!r}): no 'metric'")
    if "contrast" in raw:
        _need("arm" not in raw and "reference" not in raw, path,
              f"comparisons[{index}] ({name!r}): give either 'contrast' or 'arm'/'reference', not both")
        contrast = raw["contrast"]
        _need(isinstance(contrast, dict) and len(contrast) >= 2 and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w != 0 for w in contrast.values()), path,
            f"comparisons[{index}] ({name!r}): 'contrast' must map two or more arms to nonzero numbers")
        weights = {str(a): float(w) for a, w in contrast.items()}
        metrics = {a: metric for a in weights}
    else:
        arm = raw.get("arm")
        _need(isinstance(arm, str), path, f"comparisons[{index}] ({name!r}): 'arm' must be a string")
        if test == "at_most":
            _need("reference" not in raw, path, f"comparisons[{index}] ({name!r}): 'at_most' reads one arm")
            weights, metrics = {arm: 1.0}, {arm: metric}
        else:
            ref = raw.get("reference")
            _need(isinstance(ref, str), path, f"comparisons[{index}] ({name!r}): 'reference' must be a string")
            ref_metric = raw.get("reference_metric", metric)
            _need(ref != arm or ref_metric != metric, path,
                  f"comparisons[{index}] ({name!r}): arm and reference are the same arm and metric")
            # the same arm against its twin reads two metrics: key the reference apart
            ref_key = ref if ref != arm else f"{ref}\0reference"
            weights, metrics = {arm: 1.0, ref_key: -1.0}, {arm: metric, ref_key: ref_metric}
    margin, threshold = raw.get("margin"), raw.get("threshold")
    _need((margin is not None) == (test == "equivalence"), path,
          f"comparisons[{index}] ({name!r}): 'margin' is for (and required by) test = \"equivalence\"")
    _need((threshold is not None) == (test == "at_most"), path,
          f"comparisons[{index}] ({name!r}): 'threshold' is for (and required by) test = \"at_most\"")
    for key, value in (("margin", margin), ("threshold", threshold)):
        _need(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                and math.isfinite(value) and (key != "margin" or value > 0)), path,
              f"comparisons[{index}] ({name!r}): {key!r} must be a finite number (a margin above 0), got {value!r}")
    seeds = raw.get("seeds")
    _need(seeds is None or (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)), path,
          f"comparisons[{index}] ({name!r}): 'seeds' must be a non-empty list of integers")
    return Comparison(name, table, test, weights, metrics, tuple(seeds) if seeds else None,
                      None if margin is None else float(margin), None if threshold is None else float(threshold))


def _claim(path: Path) -> Claim:
    try:
        data = read_toml(path)
        check_keys(data, _CLAIM_KEYS, str(path))
    except ConfigError as exc:
        raise BookError(str(exc)) from None
    for key in ("claim", "source", "recipe", "metric"):
        _need(isinstance(data.get(key), str) and bool(data[key]), path, f"{key!r} must be a non-empty string")
    alpha = data.get("alpha", 0.05)
    _need(isinstance(alpha, float) and 0 < alpha < 0.5, path, f"'alpha' must be a number in (0, 0.5), got {alpha!r}")
    runs = data.get("runs")
    _need(isinstance(runs, list) and bool(runs), path, "'runs' must be a non-empty array of tables")
    for i, run in enumerate(runs):
        _need(isinstance(run, dict), path, f"runs[{i}] must be a table")
        try:
            check_keys(run, _RUN_KEYS, f"{path}: runs[{i}]")
        except ConfigError as exc:
            raise BookError(str(exc)) from None
        for key in ("table", "simulation", "device", "command"):
            _need(isinstance(run.get(key), str) and bool(run[key]), path, f"runs[{i}]: {key!r} must be a string")
        for key, kind in (("arms", str), ("seeds", int), ("settings", str)):
            value = run.get(key)
            _need(isinstance(value, list) and (bool(value) or key == "settings")
                  and all(isinstance(v, kind) and not isinstance(v, bool) for v in value), path,
                  f"runs[{i}]: {key!r} must be a list of {kind.__name__}")
    tables = [run["table"] for run in runs]
    _need(len(set(tables)) == len(tables), path, "two runs name the same table")
    devices = {run["device"] for run in runs}
    _need(len(devices) == 1, path, f"the runs of one claim must share one device, got {sorted(devices)}")
    raw = data.get("comparisons")
    _need(isinstance(raw, list) and bool(raw), path, "'comparisons' must be a non-empty array of tables")
    comparisons = tuple(_comparison(c, i, path, data["metric"], tables) for i, c in enumerate(raw))
    return Claim(path.stem, path, data["claim"], data["source"], data["recipe"], alpha, tuple(runs), comparisons)


def load_claims(folder: str | Path) -> list[Claim]:
    """Every protocol in ``folder/protocol/*.toml``, by id (none: an empty list)."""
    claims = [_claim(path) for path in sorted((Path(folder) / PROTOCOL_FOLDER).glob("*.toml"))]
    runs = {run["table"]: (claim, run) for claim in claims for run in claim.runs}
    for claim in claims:
        for comparison in claim.comparisons:
            owner = runs.get(comparison.table)
            _need(owner is not None, claim.path, f"comparison {comparison.name!r} reads table {comparison.table!r}, "
                                                 "which no protocol runs")
            other, run = owner
            _need(run["device"] == claim.runs[0]["device"], claim.path,
                  f"comparison {comparison.name!r} reads {comparison.table!r} from another device ({run['device']})")
            missing = set(comparison.seeds or ()) - set(run["seeds"])
            _need(not missing, claim.path, f"comparison {comparison.name!r}: seeds {sorted(missing)} are not "
                                           f"among {comparison.table!r}'s runs ({other.path.name})")
    return claims


# ----------------------------------------------------------------------------------------------------- statistics


def _interval(values: Sequence[float], level: float) -> tuple[float, float]:
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def tost_p(values: Sequence[float], margin: float) -> float:
    """The two one-sided tests' p-value for ``|mean| < margin`` (the larger of the two one-sided p-values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    below = float(stats.t.sf((mean + margin) / se, n - 1))   # H0: mean <= -margin
    above = float(stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
    return max(below, above)


def evaluate(comparison: Comparison, table: Table | None, alpha: float, seeds: Sequence[int]) -> Outcome:
    """The comparison's outcome on ``table`` (None: not run) over ``seeds`` (the run's, or the comparison's own)."""
    if table is None:
        return Outcome("not run", why=f"no measured table {comparison.table!r} yet")
    runs = {(r["arm"], r["seed"]): r for r in table.data["runs"]}
    use = comparison.seeds or tuple(seeds)
    values = []
    for seed in use:
        total = 0.0
        for key, weight in comparison.contrast.items():
            arm = key.split("\0")[0]
            metric = comparison.metrics[key]
            value = runs.get((arm, seed), {}).get(metric)
            if value is None or not math.isfinite(value):
                return Outcome("incomplete", why=f"{arm} seed {seed} has no {metric}")
            total += weight * value
        values.append(total)
    n = len(values)
    if n < 2:
        return Outcome("incomplete", n=n, why="fewer than two seeds")
    mean = sum(values) / n
    ci95, ci90 = _interval(values, 0.95), _interval(values, 1 - 2 * alpha)
    p = math.nan
    if comparison.test == "equivalence":
        m = float(comparison.margin or 0.0)
        p = tost_p(values, m)
        verdict = "met" if -m < ci90[0] and ci90[1] < m else (
            "not met" if ci95[0] > m or ci95[1] < -m else "inconclusive")
    elif comparison.test == "greater":
        verdict = "met" if ci95[0] > 0 else ("not met" if ci95[1] < 0 else "inconclusive")
    elif comparison.test == "at_most":
        c = float(comparison.threshold or 0.0)
        verdict = "met" if ci95[1] <= c else ("not met" if ci95[0] > c else "inconclusive")
    else:
        verdict = "reported"
    return Outcome(verdict, n, mean, ci95, ci90, p, values=tuple(values))


def claim_verdict(outcomes: Sequence[Outcome]) -> str:
    """met when every comparison with a verdict is met; not met when any is not met; else inconclusive (or not run
    / incomplete while runs are missing)."""
    verdicts = [o.verdict for o in outcomes if o.verdict != "reported"]
    if "void" in verdicts:
        return "void"
    if "not met" in verdicts:
        return "not met"
    if verdicts and all(v == "not run" for v in verdicts):
        return "not run"
    if any(v in ("not run", "incomplete") for v in verdicts):
        return "incomplete"
    return "met" if verdicts and all(v == "met" for v in verdicts) else "inconclusive"


# ----------------------------------------------------------------------------------------------------- git order


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)


def protocol_commit(path: Path) -> str | None:
    """The commit that last changed the protocol file at ``path`` (None: not committed, or no git history)."""
    try:
        done = _git(path.parent, "log", "-1", "--format=%H", "--", path.name)
    except OSError:
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def result_follows_protocol(result_commit: str, protocol: str, root: Path) -> bool | None:
    """Whether ``result_commit`` descends from (or is) the protocol's commit (None: git cannot tell here)."""
    commit = result_commit.removesuffix("+dirty")
    try:
        done = _git(root, "merge-base", "--is-ancestor", protocol, commit)
    except OSError:
        return None
    return {0: True, 1: False}.get(done.returncode)


# ----------------------------------------------------------------------------------------------------- rendering


def outcomes(claim: Claim, tables: Mapping[str, Table]) -> list[Outcome]:
    """Each comparison's outcome; a table made before its protocol's last change is void."""
    commit = protocol_commit(claim.path)
    seeds = {run["table"]: run["seeds"] for run in claim.runs}  # (another claim's table: its comparison's seeds)
    out = []
    for comparison in claim.comparisons:
        table = tables.get(comparison.table)
        if table is not None and table.kind != "measured":
            raise BookError(f"{claim.path}: table {comparison.table!r} is transcribed; a claim reads measured tables")
        made = table.data["provenance"]["git_commit"] if table is not None else ""
        if table is not None and commit is not None and \
                result_follows_protocol(made, commit, claim.path.parent) is False:
            out.append(Outcome("void", why=f"made at {made[:12]}, which does not descend from the protocol's "
                                           f"commit {commit[:12]}"))
            continue
        out.append(evaluate(comparison, table, claim.alpha, seeds.get(comparison.table, ())))
    return out


def _difference_unit(comparison: Comparison, table: Table | None) -> str:
    metric = next(iter(comparison.metrics.values()))
    unit = str(table.data.get("units", {}).get(metric, "")) if table is not None else ""
    if unit == "%":
        return "%" if comparison.test == "at_most" else "pp"
    return {"degree": "°", "deg": "°"}.get(unit, f" {unit}" if unit else "")


def _expression(comparison: Comparison) -> str:
    parts = []
    for key, weight in comparison.contrast.items():
        arm = key.split("\0")[0]
        metric = comparison.metrics[key]
        term = f"{arm}.{metric}" if len(set(comparison.metrics.values())) > 1 else arm
        sign = "−" if weight < 0 else ("+" if parts else "")
        size = "" if abs(weight) == 1 else f"{abs(weight):g}·"
        parts.append(f"{sign} {size}{term}".strip())
    what = " ".join(parts)
    if len(set(comparison.metrics.values())) == 1:
        what += f" ({next(iter(comparison.metrics.values()))})"
    return what


def _test_text(comparison: Comparison) -> str:
    if comparison.test == "equivalence":
        return f"equivalence, margin ±{comparison.margin:g}"
    if comparison.test == "at_most":
        return f"at most {comparison.threshold:g}"
    return {"greater": "greater than 0", "report": "reported (no verdict)"}[comparison.test]


def _num(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.2f}".replace("-", "−").replace("+0.00", "0.00")


def render_claims(folder: Path, tables: Mapping[str, Table]) -> list[str]:
    """The book's section of pre-registered claims (empty without protocols)."""
    claims = load_claims(folder)
    if not claims:
        return []
    results = {claim.id: outcomes(claim, tables) for claim in claims}
    lines = ["", "## Pre-registered claims", "",
             "Each claim was written in `results/v1/protocol/CLAIM.toml` and committed before any of its runs: "
             "the data, model and recipe, fresh seeds never used for tuning, the device, the statistic and what "
             "counts as met (the folder's README.md states the rules). Differences are paired by seed; intervals "
             "are t intervals over seeds; equivalence is two one-sided tests (TOST) at the stated margin. A result "
             "made at a commit that does not descend from its protocol's last change is void.", "",
             *_summary_table(claims, results)]
    for claim in claims:
        commit = protocol_commit(claim.path)
        lines += ["", f'<a id="claim-{claim.id}"></a>', "", f"### Claim `{claim.id}`", "", claim.claim, "",
                  f"- Protocol: `results/v1/protocol/{claim.path.name}`, last changed at commit "
                  + (f"`{commit[:12]}`" if commit else "(not committed, or no git history here)"),
                  f"- Source of the claim: {claim.source}", f"- Recipe: {claim.recipe}",
                  f"- Verdict: **{claim_verdict(results[claim.id])}**", ""]
        rows = []
        for run in claim.runs:
            table = tables.get(run["table"])
            made = ("not run yet" if table is None else
                    f"[measured](#{run['table']}) at `{table.data['provenance']['git_commit'][:12]}`, "
                    f"{table.data['provenance']['date']}")
            rows.append([f"`{run['table']}`", f"`{run['simulation']}`", ", ".join(run["arms"]),
                         _seed_text(run["seeds"]), run["device"], made])
        lines += _rows(["table", "simulation", "arms", "seeds", "device", "result"], rows) + [""]
        rows = []
        for comparison, outcome in zip(claim.comparisons, results[claim.id]):
            unit = _difference_unit(comparison, tables.get(comparison.table))
            ci = (f"{_num(outcome.ci95[0])} … {_num(outcome.ci95[1])}" if outcome.n >= 2 else "–")
            ci90 = (f"{_num(outcome.ci90[0])} … {_num(outcome.ci90[1])}"
                    if outcome.n >= 2 and comparison.test == "equivalence" else "–")
            p = f"{outcome.p_tost:.3f}" if math.isfinite(outcome.p_tost) else "–"
            verdict = outcome.verdict + (f" ({outcome.why})" if outcome.why else "")
            rows.append([comparison.name, _expression(comparison), _test_text(comparison) + unit.strip(),
                         str(outcome.n or "–"), _num(outcome.mean) + (unit if outcome.n else ""), ci, ci90, p,
                         f"**{verdict}**"])
        lines += _rows(["comparison", "per seed", "test", "n", "mean", "95 % CI", "90 % CI", "TOST p",
                        "verdict"], rows)
    return lines


def _seed_text(seeds: Sequence[int]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _rows(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [row(head), "|" + "|".join("---" for _ in head) + "|", *(row(r) for r in rows)]


def _summary_table(claims: Sequence[Claim], results: Mapping[str, Sequence[Outcome]]) -> list[str]:
    return _rows(["claim", "verdict", "comparisons met / with a verdict"], [
        [f"[`{c.id}`](#claim-{c.id})", f"**{claim_verdict(results[c.id])}**",
         f"{sum(o.verdict == 'met' for o in results[c.id])} / "
         f"{sum(o.verdict not in ('reported',) for o in results[c.id])}"] for c in claims])


def compact_claims(folder: Path, tables: Mapping[str, Table]) -> list[str]:
    """The README's form: one row per claim, each comparison's mean, 95 % interval and verdict in one cell."""
    rows = []
    for claim in load_claims(folder):
        results = outcomes(claim, tables)
        cells = []
        for comparison, outcome in zip(claim.comparisons, results):
            unit = _difference_unit(comparison, tables.get(comparison.table))
            value = (f" {_num(outcome.mean)}{unit} [{_num(outcome.ci95[0])}, {_num(outcome.ci95[1])}]"
                     if outcome.n >= 2 else "")
            cells.append(f"{comparison.name}:{value} {outcome.verdict}")
        rows.append([f"[`{claim.id}`](docs/results.md#claim-{claim.id})", f"**{claim_verdict(results)}**",
                     "; ".join(cells)])
    return _rows(["claim", "verdict", "comparisons: mean [95 % CI], verdict"], rows)
