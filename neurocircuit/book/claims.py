"""Pre-registered claims: protocols written before their runs, and the verdicts their stored results give.

A claim lives in ``results/v1/protocol/<claim>.toml`` (the folder's README.md states the fields and the verdict
rules): what is claimed, the runs that test it (each a measured table of the book, on fresh seeds), and its
comparisons — paired differences by seed with a test each:

- ``equivalence`` (margin m): met when the two one-sided tests both reject at ``alpha`` (the 1 - 2 alpha interval
  of the mean difference lies inside (-m, m)); not met when the 1 - alpha (95 %) interval lies entirely outside
  [-m, m]; otherwise inconclusive.
- ``greater``: met when the 1 - alpha interval lies above 0, not met when below, otherwise inconclusive.
- ``at_most`` (threshold c, one arm's values): met when the 1 - alpha interval lies at or below c, not met when
  above.
- ``report``: the difference and its interval, no verdict.

A result counts only when ``neurocircuit claims --summarize`` (:mod:`neurocircuit.book.preregistered`) checked with
git that every commit its run started at descends from the protocol's last change, and the protocol file is still
the one it checked (:func:`registration_problem`): a protocol edited after its runs voids their verdicts. The book
itself reads files only, so it renders the same in any checkout.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._toml import check_keys, read_toml
from ..errors import ConfigError
from .summaries import BookError, Table

__all__ = ["Claim", "Comparison", "Term", "Outcome", "load_claims", "evaluate", "outcomes", "claim_verdict",
           "protocol_sha256", "readers", "registration_problem", "render_claims", "compact_claims", "tost_p", "TESTS"]

PROTOCOL_FOLDER = "protocol"
TESTS = ("equivalence", "greater", "at_most", "report")
_CLAIM_KEYS = ("claim", "source", "recipe", "metric", "alpha", "runs", "comparisons")
_RUN_KEYS = ("table", "simulation", "arms", "seeds", "settings", "device", "command")
_COMPARISON_KEYS = ("name", "table", "metric", "arm", "reference", "reference_metric", "contrast", "seeds", "test",
                    "margin", "threshold")


@dataclass(frozen=True)
class Term:
    """One arm's metric with its weight in a comparison (``arm - reference`` is two terms, +1 and -1)."""

    arm: str
    metric: str
    weight: float


@dataclass(frozen=True)
class Comparison:
    """One pre-registered comparison: per seed, ``sum weight * value`` over its terms, tested by ``test``."""

    name: str
    table: str
    test: str
    terms: tuple[Term, ...]
    seeds: tuple[int, ...] | None = None
    margin: float | None = None
    threshold: float | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the comparison reads, each once, in order."""
        return tuple(dict.fromkeys(t.metric for t in self.terms))


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
    ci95: tuple[float, float] = (math.nan, math.nan)  # the 1 - alpha interval
    ci90: tuple[float, float] = (math.nan, math.nan)  # the 1 - 2 alpha interval (TOST)
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
        terms = tuple(Term(str(a), metric, float(w)) for a, w in contrast.items())
    else:
        arm = raw.get("arm")
        _need(isinstance(arm, str), path, f"comparisons[{index}] ({name!r}): 'arm' must be a string")
        if test == "at_most":
            _need("reference" not in raw, path, f"comparisons[{index}] ({name!r}): 'at_most' reads one arm")
            terms = (Term(arm, metric, 1.0),)
        else:
            ref = raw.get("reference")
            _need(isinstance(ref, str), path, f"comparisons[{index}] ({name!r}): 'reference' must be a string")
            ref_metric = raw.get("reference_metric", metric)
            _need(isinstance(ref_metric, str) and (ref != arm or ref_metric != metric), path,
                  f"comparisons[{index}] ({name!r}): arm and reference are the same arm and metric")
            terms = (Term(arm, metric, 1.0), Term(ref, ref_metric, -1.0))
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
    return Comparison(name, table, test, terms, tuple(seeds) if seeds else None,
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
    runs = data.get("runs")  # empty: every comparison reads another claim's runs (table and seeds named)
    _need(isinstance(runs, list), path, "'runs' must be an array of tables")
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
    _need(len(devices) <= 1, path, f"the runs of one claim must share one device, got {sorted(devices)}")
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
            # one device per claim: its own runs', or (a claim of other claims' runs) its first comparison's
            device = claim.runs[0]["device"] if claim.runs else runs[claim.comparisons[0].table][1]["device"]
            _need(run["device"] == device, claim.path,
                  f"comparison {comparison.name!r} reads {comparison.table!r} from another device ({run['device']})")
            missing = set(comparison.seeds or ()) - set(run["seeds"])
            _need(not missing, claim.path, f"comparison {comparison.name!r}: seeds {sorted(missing)} are not "
                                           f"among {comparison.table!r}'s runs ({other.path.name})")
            arms = [t.arm for t in comparison.terms if t.arm not in run["arms"]]
            _need(not arms, claim.path, f"comparison {comparison.name!r}: arm {arms[0] if arms else ''!r} is not "
                                        f"among {comparison.table!r}'s arms ({', '.join(run['arms'])})")
    return claims


# ----------------------------------------------------------------------------------------------------- statistics


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def _interval(values: Sequence[float], level: float) -> tuple[float, float]:
    from scipy import stats

    mean, se = _mean_se(values)
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * se
    return (mean - half, mean + half)


def tost_p(values: Sequence[float], margin: float) -> float:
    """The two one-sided tests' p-value for ``|mean| < margin`` (the larger of the two one-sided p-values)."""
    from scipy import stats

    mean, se = _mean_se(values)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    below = float(stats.t.sf((mean + margin) / se, len(values) - 1))   # H0: mean <= -margin
    above = float(stats.t.cdf((mean - margin) / se, len(values) - 1))  # H0: mean >= +margin
    return max(below, above)


def evaluate(comparison: Comparison, table: Table | None, alpha: float, seeds: Sequence[int]) -> Outcome:
    """The comparison's outcome on ``table`` (None: not run) over ``seeds`` (the run's, or the comparison's own).
    Intervals: ``1 - alpha`` (95 %) for every rule, ``1 - 2 alpha`` (90 %) for TOST's equivalence."""
    if table is None:
        return Outcome("not run", why=f"no measured table {comparison.table!r} yet")
    runs: dict[tuple[str, int], Mapping[str, Any]] = {}
    for run in table.data["runs"]:
        key = (run["arm"], run["seed"])
        if key in runs:
            raise BookError(f"{table.path}: {run['arm']} seed {run['seed']} appears twice")
        runs[key] = run
    values = []
    for seed in comparison.seeds or tuple(seeds):
        total = 0.0
        for term in comparison.terms:
            value = runs.get((term.arm, seed), {}).get(term.metric)
            if value is None or not math.isfinite(value):
                return Outcome("incomplete", why=f"{term.arm} seed {seed} has no {term.metric}")
            total += term.weight * value
        values.append(total)
    n = len(values)
    if n < 2:
        return Outcome("incomplete", n=n, why="fewer than two seeds")
    mean = sum(values) / n
    ci95, ci90 = _interval(values, 1 - alpha), _interval(values, 1 - 2 * alpha)
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
    for blocking in ("void", "unverified"):
        if blocking in verdicts:
            return blocking
    if "not met" in verdicts:
        return "not met"
    if verdicts and all(v == "not run" for v in verdicts):
        return "not run"
    if any(v in ("not run", "incomplete") for v in verdicts):
        return "incomplete"
    return "met" if verdicts and all(v == "met" for v in verdicts) else "inconclusive"


# ----------------------------------------------------------------------------------------------------- registration


def protocol_sha256(path: Path) -> str:
    """The sha256 of a protocol file's bytes: what a stored result was checked against."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readers(claims: Sequence[Claim], table: str) -> list[Claim]:
    """The claims whose comparisons read ``table``."""
    return [c for c in claims if any(comp.table == table for comp in c.comparisons)]


def registration_problem(claim: Claim, run: Mapping[str, Any] | None, table: Table) -> str | None:
    """Why ``table`` cannot decide ``claim`` (None: it can). Checked from files only, so the book renders the same
    in any checkout: the table's ``preregistration`` entry for the claim — written by ``neurocircuit claims
    --summarize``, which checked with git that every commit the run started at descends from the protocol's last
    change and that the simulation resolved as at that change — must hold the protocol file's present sha256;
    the table's simulation and settings must be the run's."""
    entry = table.data.get("preregistration", {}).get(claim.id)
    if entry is None:
        return "unverified: stored without 'neurocircuit claims --summarize'"
    if entry["protocol_sha256"] != protocol_sha256(claim.path):
        return "void: the protocol file changed after this result was checked against it"
    if not entry["follows_protocol"]:
        return (f"void: the run started at {', '.join(c[:12] for c in entry['run_commits'])}, not after the "
                f"protocol's commit {entry['protocol_commit'][:12]}")
    prov = table.data["provenance"]
    if run is not None and (prov["simulation"], list(prov.get("settings", []))) != (run["simulation"],
                                                                                    list(run["settings"])):
        return (f"void: the table ran {prov['simulation']} with {prov.get('settings', [])}, the protocol "
                f"{run['simulation']} with {run['settings']}")
    if not entry["simulation_as_registered"]:
        return ("void: the table's simulation hash is not what the simulation file resolved to at the protocol's "
                "commit (it changed in between)")
    return None


def outcomes(claim: Claim, tables: Mapping[str, Table], all_claims: Sequence[Claim] = ()) -> list[Outcome]:
    """Each comparison's outcome; a table that cannot decide the claim (:func:`registration_problem`) gives
    ``void`` or ``unverified``."""
    runs = {run["table"]: run for c in (*all_claims, claim) for run in c.runs}
    own = {run["table"]: run["seeds"] for run in claim.runs}  # (another claim's table: the comparison's seeds)
    out = []
    for comparison in claim.comparisons:
        table = tables.get(comparison.table)
        if table is not None and table.kind != "measured":
            raise BookError(f"{claim.path}: table {comparison.table!r} is transcribed; a claim reads measured tables")
        problem = registration_problem(claim, runs.get(comparison.table), table) if table is not None else None
        if problem is not None:
            out.append(Outcome(problem.split(":")[0], why=problem.split(": ", 1)[1]))
            continue
        out.append(evaluate(comparison, table, claim.alpha, own.get(comparison.table, ())))
    return out


def _difference_unit(comparison: Comparison, table: Table | None) -> str:
    metric = comparison.terms[0].metric
    unit = str(table.data.get("units", {}).get(metric, "")) if table is not None else (
        "%" if "accuracy" in metric else "degree" if "angle" in metric else "")  # (not run yet: by its name)
    if unit == "%":
        return " %" if comparison.test == "at_most" else " pp"
    return {"degree": "°", "deg": "°"}.get(unit, f" {unit}" if unit else "")


def _expression(comparison: Comparison) -> str:
    one_metric = len(comparison.metrics) == 1
    parts = []
    for term in comparison.terms:
        name = term.arm if one_metric else f"{term.arm}.{term.metric}"
        sign = "−" if term.weight < 0 else ("+" if parts else "")
        size = "" if abs(term.weight) == 1 else f"{abs(term.weight):g}·"
        parts.append(f"{sign} {size}{name}".strip())
    return " ".join(parts) + (f" ({comparison.metrics[0]})" if one_metric else "")


def _test_text(comparison: Comparison, unit: str) -> str:
    if comparison.test == "equivalence":
        return f"equivalence, margin ±{comparison.margin:g}{unit}"
    if comparison.test == "at_most":
        return f"mean at most {comparison.threshold:g}{unit}"
    return {"greater": "greater than 0", "report": "reported (no verdict)"}[comparison.test]


def _num(value: float, signed: bool = True) -> str:
    if not math.isfinite(value):
        return "–"
    return (f"{value:+.2f}" if signed else f"{value:.2f}").replace("-", "−").replace("+0.00", "0.00")


def _level(claim: Claim, two_sided_tost: bool = False) -> str:
    return f"{round(100 * (1 - (2 if two_sided_tost else 1) * claim.alpha), 3):g} %"


def render_claims(folder: Path, tables: Mapping[str, Table]) -> list[str]:
    """The book's section of pre-registered claims (empty without protocols)."""
    claims = load_claims(folder)
    if not claims:
        return []
    results = {claim.id: outcomes(claim, tables, claims) for claim in claims}
    lines = ["", "## Pre-registered claims", "",
             "Each claim was written in `results/v1/protocol/CLAIM.toml` and committed before any of its runs: "
             "the data, model and recipe, fresh seeds never used for tuning, the device, the statistic and what "
             "counts as met (the folder's README.md states the rules). Differences are paired by seed; intervals "
             "are t intervals over seeds; equivalence is two one-sided tests (TOST) at the stated margin. "
             "`neurocircuit claims --summarize` stores a run only after checking with git that it started after "
             "its protocol's last change, with the simulation as it was then; the book then checks that the "
             "protocol file is still the one checked (its sha256), else the result is void.", "",
             *_summary_table(claims, results)]
    for claim in claims:
        lines += ["", f'<a id="claim-{claim.id}"></a>', "", f"### Claim `{claim.id}`", "", claim.claim, "",
                  f"- Protocol: `results/v1/protocol/{claim.path.name}` (sha256 "
                  f"`{protocol_sha256(claim.path)[:12]}`)",
                  f"- Source of the claim: {claim.source}", f"- Recipe: {claim.recipe}",
                  f"- Verdict: **{claim_verdict(results[claim.id])}**", ""]
        rows = []
        for run in claim.runs:
            table = tables.get(run["table"])
            made = "not run yet"
            if table is not None:
                entry = table.data.get("preregistration", {}).get(claim.id)
                made = (f"[measured](#{run['table']}) at `{table.data['provenance']['git_commit'][:12]}`, "
                        f"{table.data['provenance']['date']}" + (
                            f"; protocol commit `{entry['protocol_commit'][:12]}`" if entry else ""))
            rows.append([f"`{run['table']}`", f"`{run['simulation']}`", ", ".join(run["arms"]),
                         _seed_text(run["seeds"]), run["device"], made])
        lines += _rows(["table", "simulation", "arms", "seeds", "device", "result"], rows) + [""]
        rows = []
        for comparison, outcome in zip(claim.comparisons, results[claim.id]):
            unit = _difference_unit(comparison, tables.get(comparison.table))
            both, signed = outcome.n >= 2, comparison.test != "at_most"  # (at_most: a value, not a difference)
            ci = f"{_num(outcome.ci95[0], signed)} … {_num(outcome.ci95[1], signed)}" if both else "–"
            ci90 = (f"{_num(outcome.ci90[0])} … {_num(outcome.ci90[1])}"
                    if both and comparison.test == "equivalence" else "–")
            p = f"{outcome.p_tost:.3f}" if math.isfinite(outcome.p_tost) else "–"
            verdict = outcome.verdict + (f" ({outcome.why})" if outcome.why else "")
            mean = _num(outcome.mean, signed=comparison.test != "at_most") + unit if both else "–"
            rows.append([comparison.name, _expression(comparison), _test_text(comparison, unit),
                         str(outcome.n or "–"), mean, ci, ci90, p, f"**{verdict}**"])
        lines += _rows(["comparison", "per seed", "test", "n", "mean",
                        f"{_level(claim)} CI", f"{_level(claim, True)} CI (TOST)", "TOST p", "verdict"], rows)
    return lines


def _seed_text(seeds: Sequence[int]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _rows(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [row(head), "|" + "|".join("---" for _ in head) + "|", *(row(r) for r in rows)]


_DECIDED = ("met", "not met", "inconclusive")


def _summary_table(claims: Sequence[Claim], results: Mapping[str, Sequence[Outcome]]) -> list[str]:
    def count(claim: Claim, verdicts: Sequence[str]) -> int:
        return sum(o.verdict in verdicts for o in results[claim.id])

    return _rows(["claim", "verdict", "comparisons met / decided / with a verdict rule"], [
        [f"[`{c.id}`](#claim-{c.id})", f"**{claim_verdict(results[c.id])}**",
         f"{count(c, ('met',))} / {count(c, _DECIDED)} / {sum(o.verdict != 'reported' for o in results[c.id])}"]
        for c in claims])


def compact_claims(folder: Path, tables: Mapping[str, Table]) -> list[str]:
    """The README's form: one row per claim, each comparison's mean, 95 % interval and verdict in one cell."""
    rows = []
    claims = load_claims(folder)
    for claim in claims:
        results = outcomes(claim, tables, claims)
        cells = []
        for comparison, outcome in zip(claim.comparisons, results):
            unit = _difference_unit(comparison, tables.get(comparison.table))
            signed = comparison.test != "at_most"
            value = (f" {_num(outcome.mean, signed)}{unit} [{_num(outcome.ci95[0], signed)}, "
                     f"{_num(outcome.ci95[1], signed)}]" if outcome.n >= 2 else "")
            cells.append(f"{comparison.name}:{value} {outcome.verdict}")
        rows.append([f"[`{claim.id}`](docs/results.md#claim-{claim.id})", f"**{claim_verdict(results)}**",
                     "; ".join(cells)])
    return _rows(["claim", "verdict", "comparisons: mean [95 % CI], verdict"], rows)
