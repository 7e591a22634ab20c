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

import numpy as np
import xarray as xr

from .errors import ConfigError, DataError

__all__ = ["atomic_path", "write_netcdf", "write_atomic", "read_results", "attach_config", "prepare_output",
           "first_missing_folder", "remove_empty_folders", "edge_with_data"]


@contextmanager
def atomic_path(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, else removed. A write that
    fails for the system (a full disk, a lost mount) is a one-line :class:`DataError` naming ``path`` (the ``what``
    it is), and ``path`` keeps what it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); the result gets the mode any new file gets here (the umask's).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, DataError):
            kept = f"the previous {what} is kept" if path.exists() else "nothing was written there"
            raise DataError(f"writing {what} {path} failed: {exc.strerror or exc}; {kept}") from exc
        raise


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to netCDF atomically and return the path.

    Encodings that variables carry from files they were read from are dropped first: merged from several results
    files, a label coordinate would otherwise be written with the first file's string width (``"usf"`` read back as
    ``"us"``) and numbers with its dtype."""
    ds = ds.copy()
    for variable in ds.variables.values():
        variable.encoding = {}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)
    return Path(path)


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the file into place atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def read_results(path: str | Path) -> xr.Dataset:
    """Open a results file fully into memory (the file is closed afterwards); a file that is not netCDF is a
    :class:`~neurocircuit.errors.DataError` naming it."""
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (ValueError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path}: not a readable netCDF results file ({type(exc).__name__})") from None


def prepare_output(folder: str | Path, what: str = "--out") -> Path:
    """Create ``folder`` (and its parents) and check that files can be written there — before any work is done, so a
    bad output location costs seconds, never results. Temp files a killed run left (``.<name>.*.tmp`` from
    :func:`atomic_path`, in the folder and two levels below) are removed."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
        for pattern in (".*.tmp", "*/.*.tmp", "*/*/.*.tmp"):
            for stale in folder.glob(pattern):
                stale.unlink(missing_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{what} {str(folder)!r}: cannot write there ({reason})") from None
    return folder


def attach_config(ds: xr.Dataset, config: dict[str, Any], **attrs: Any) -> xr.Dataset:
    """Store ``config`` as JSON in ``ds.attrs['config']`` plus any extra attrs; returns ``ds``."""
    ds.attrs["config"] = json.dumps(config, sort_keys=True, default=str)
    ds.attrs.update(attrs)
    return ds


def first_missing_folder(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what creating it makes), or None."""
    folder = folder.absolute()
    if folder.exists():
        return None
    while not folder.parent.exists():
        folder = folder.parent
    return folder


def remove_empty_folders(folder: Path) -> None:
    """Remove ``folder`` and the folders under it if they hold no file (a file anywhere keeps its folders)."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [folder]:
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()  # only an empty folder goes
            except OSError:
                pass


def edge_with_data(da: xr.DataArray, dim: str, *, first: bool = False) -> tuple[xr.DataArray, np.ndarray]:
    """Each series' last (``first``: first) value along ``dim`` that has data -- a series is every combination of
    the other dims, so arms, sweep points and runs that end at different records each keep their own end -- and the
    sorted positions along ``dim`` that were taken (of the series with data; a series without any is NaN). The
    coordinates along ``dim`` are dropped: they differ from series to series."""
    values = da.values
    has = np.isfinite(values) if values.dtype.kind in "fc" else np.asarray(da.notnull().values)
    has = np.moveaxis(has, da.get_axis_num(dim), -1)
    at = np.argmax(has, axis=-1) if first else has.shape[-1] - 1 - np.argmax(has[..., ::-1], axis=-1)
    picked = da.isel({dim: xr.DataArray(at, dims=[d for d in da.dims if d != dim])})
    picked = picked.drop_vars([c for c in picked.coords if c in da.coords and dim in da[c].dims])
    return picked, np.unique(at[has.any(axis=-1)])
