"""The results convention shared by every backend, and atomic writing.

Results are :class:`xarray.Dataset` s with named dimensions (``rule``, ``seed``, ``step``, ``layer``, ...),
a ``units`` attribute on every data variable, and the full configuration as JSON in the ``config``
attribute. Files are written to a temporary name in the target folder and renamed into place, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xarray as xr

__all__ = ["atomic_path", "write_netcdf", "write_atomic", "read_results", "attach_config"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to netCDF atomically and return the path."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)
    return Path(path)


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the file into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def read_results(path: str | Path) -> xr.Dataset:
    """Open a results file fully into memory (the file is closed afterwards)."""
    with xr.open_dataset(path) as ds:
        return ds.load()


def attach_config(ds: xr.Dataset, config: dict[str, Any], **attrs: Any) -> xr.Dataset:
    """Store ``config`` as JSON in ``ds.attrs['config']`` plus any extra attrs; returns ``ds``."""
    ds.attrs["config"] = json.dumps(config, sort_keys=True, default=str)
    ds.attrs.update(attrs)
    return ds
