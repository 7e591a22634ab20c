"""What every report table shares: reading a results file, and the one error for bad input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from ..errors import NeurocircuitError
from ..results import read_results

__all__ = ["TableError", "read_table_file"]


class TableError(NeurocircuitError, ValueError):
    """A file or an option a table cannot be made from."""


def read_table_file(path: str | Path, needs: Sequence[str] = (), what: str = "a results file of neurocircuit run"
                    ) -> xr.Dataset:
    """Read ``path`` into memory, refusing a missing file, a file that is not netCDF, or one without the
    variables (or dimensions) ``needs``, each with a one-line :class:`TableError`."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"no such file: {path}")
    try:
        ds = read_results(path)
    except NeurocircuitError:
        raise TableError(f"{path} is not a netCDF results file") from None
    missing = [name for name in needs if name not in ds.variables and name not in ds.dims]
    if missing:
        raise TableError(f"{path} is not {what} (no {', '.join(missing)})")
    return ds
