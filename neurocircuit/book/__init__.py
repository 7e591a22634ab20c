"""The results book: ``docs/results.md`` generated from small stored summaries, never typed.

The book lives in a versioned folder (``results/v1/``) of the repository:

- ``measured/<table>.json``: written by :func:`summarize` (``neurocircuit summarize``) from a ``results.nc``. Per
  arm × seed the final metrics (test accuracy, final per-layer B-W angles; Brian2: the last snapshot of each layer)
  and, when the results have a validation split, the best-on-validation epoch and the test accuracy there; plus the
  provenance: simulation name, :func:`simulation_hash` of the resolved simulation, package version, git commit,
  device, date and the exact command.
- ``transcribed/<table>.toml``: numbers whose runs are not at hand (GPU measurements, long CPU runs), cells as the
  source gives them, with the source named. They are always shown as transcribed and stale.

:func:`render_book` turns the folder into ``docs/results.md``; :func:`render_outputs` also regenerates every README
block between ``<!-- book:TABLE -->`` and ``<!-- /book:TABLE -->``; ``neurocircuit report`` writes both and
``neurocircuit report --check`` fails on any difference. A measured table whose stored hash no longer equals what its
simulation resolves to today is marked stale.
"""

from .rendering import first_difference, render_book, render_outputs, stale_reason, write_outputs
from .summaries import (
    BOOK_FILE,
    BOOK_FOLDER,
    BookError,
    load_book,
    paired_difference,
    phase_runs,
    simulation_hash,
    summarize,
    write_summary,
)

__all__ = ["BOOK_FOLDER", "BOOK_FILE", "BookError", "simulation_hash", "summarize", "write_summary", "load_book",
           "paired_difference", "phase_runs", "stale_reason", "render_book", "render_outputs", "write_outputs",
           "first_difference"]
