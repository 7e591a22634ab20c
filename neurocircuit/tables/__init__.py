"""Report tables from results files, as data and as text (``neurocircuit table KIND FILE...``).

Four kinds, each a function that computes the table as a small record and a ``render_*`` function that writes it:

- :func:`paired_table` (``paired``): per arm over seeds pooled from any number of ``results.nc`` files, the final
  test error, the test error at the record chosen on validation, the largest final B-W angle, whether every training
  loss stayed finite and the step time; and each arm's difference from a reference arm, paired by seed, with the
  95 % confidence interval of its mean (Student t, n - 1 degrees of freedom).
- :func:`sweep_table` (``sweep``): a grid sweep's final values with rows over some axes and columns over one, failed
  points named, and the sweep's best point chosen on validation.
- :func:`layer_table` (``angles``): a per-layer variable (the B-W angle) over training, one column per record.
- :func:`noise_pretraining_tables` (``noise-pretraining``): the tables of Cheon et al.'s experiment with its controls.

Nothing here imports torch or Brian2: tables are read from the files the backends wrote.
"""

from .common import TableError, read_table_file
from .layer_angles import LayerColumn, LayerTable, layer_table, render_layers
from .noise_pretraining import (
    NOISE_CLAIMS,
    NOISE_EPOCHS,
    NOISE_NEEDS,
    NOISE_THRESHOLD,
    NoisePretrainingTables,
    noise_pretraining_tables,
    render_noise_pretraining,
)
from .paired import ArmRow, PairedDifference, PairedTable, SeedRun, paired_table, read_paired_runs, render_paired
from .sweep_grid import GridCell, SweepTable, open_sweep, render_sweep, select_points, sweep_table

__all__ = ["TableError", "SeedRun", "PairedDifference", "ArmRow", "PairedTable", "read_paired_runs", "paired_table",
           "render_paired", "open_sweep", "select_points", "GridCell", "SweepTable", "sweep_table", "render_sweep",
           "LayerColumn", "LayerTable", "layer_table", "render_layers", "NOISE_EPOCHS", "NOISE_THRESHOLD",
           "NOISE_CLAIMS", "NOISE_NEEDS", "NoisePretrainingTables", "noise_pretraining_tables",
           "render_noise_pretraining", "read_table_file"]
