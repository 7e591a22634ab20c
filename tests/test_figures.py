"""Every figure a run writes draws data in every panel: the default run (torch) and brian2_learning (Brian2), made
small; and the conventions that make them readable (one colour per arm, markers on short curves, panels that carry
information, Wᵀ, simulated time)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from neurocircuit.figure_style import MARKER_MAX, arm_colours, empty_panels
from neurocircuit.run_figures import plot_alignment, plot_learning_curves, run_figures
from neurocircuit.runs import run_simulation
from neurocircuit.simulation import load_simulation


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def default_run() -> xr.Dataset:
    return run_simulation(load_simulation("default", ["train.epochs=2"]), progress=False)


def synthetic(steps: int = 3) -> xr.Dataset:
    """A run's results as the torch backend records them: 3 arms, 2 seeds, ``steps`` records, 2 layers."""
    rng = np.random.default_rng(0)
    shape = (3, 2, steps)
    return xr.Dataset(
        {"test_accuracy": (("arm", "seed", "step"), rng.uniform(0.1, 0.9, shape), {"units": "1"}),
         "train_loss": (("arm", "seed", "step"), rng.uniform(0.1, 2, shape), {"units": "1"}),
         "test_loss": (("arm", "seed", "step"), rng.uniform(0.1, 2, shape), {"units": "1"}),
         "weight_angle": (("arm", "seed", "step", "layer"), rng.uniform(10, 90, (*shape, 2)),
                          {"units": "degree", "long_name": "angle between B and W^T"})},
        coords={"arm": ["bp", "fa", "kp"], "seed": [0, 1], "step": np.arange(steps) * 10,
                "epoch": ("step", np.arange(steps) / 2), "layer": ["W1", "W2"]})


@pytest.fixture(scope="module")
def brian_run() -> xr.Dataset:
    # the shipped circuit and protocol; fewer samples, a shorter mirror phase (weight snapshots often enough to
    # see it), Brian2's numpy target (no compiler)
    settings = ["brian2.target=numpy", "brian2.twin=false", "data.train_samples=60", "data.test_samples=30",
                "arms.2.phases.0.steps=20", "brian2.record_every=10"]
    return run_simulation(load_simulation("brian2_learning", settings), progress=False)


def data_lines(ax: plt.Axes) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_") and line.get_gid() != "frame"]


@pytest.mark.slow
def test_every_figure_of_the_default_run_draws_every_panel(default_run: xr.Dataset) -> None:
    figures = run_figures(default_run)
    assert set(figures) == {"learning_curves.png", "weight_angle.png", "gradient_angle.png", "update_angle.png",
                            "effective_dim.png"}
    for name, fig in figures.items():
        assert not empty_panels(fig), (name, empty_panels(fig))
    # panels that are the same for every rule by construction, or measure an error no rule uses, are left out
    assert [ax.get_title() for ax in figures["gradient_angle.png"].axes] == ["W2"]
    assert "W1 not shown" in figures["gradient_angle.png"].get_suptitle()
    assert [ax.get_title() for ax in figures["update_angle.png"].axes] == ["W1"]
    assert "W2 not shown" in figures["update_angle.png"].get_suptitle()
    title = figures["weight_angle.png"].get_suptitle()
    assert "Wᵀ" in title and "W^T" not in title
    # one colour per arm, the same in every figure; 3 records per curve: each point marked
    colours = arm_colours(default_run["arm"].values)
    for name in ("learning_curves.png", "weight_angle.png", "gradient_angle.png"):
        lines = data_lines(figures[name].axes[0])
        assert {line.get_label(): line.get_color() for line in lines} == colours, name
        assert all(line.get_marker() == "o" for line in lines), name
    # the learning curves show training and test loss
    styles = {line.get_linestyle() for line in data_lines(figures["learning_curves.png"].axes[2])}
    assert styles == {"-", "--"}


@pytest.mark.slow
def test_every_figure_of_brian2_learning_draws_every_panel(brian_run: xr.Dataset) -> None:
    figures = run_figures(brian_run)
    assert {"learning_curves.png", "weight_angle.png", "activity.png"} <= set(figures)
    for name, fig in figures.items():
        assert not empty_panels(fig), (name, empty_panels(fig))
    # one epoch: one test block, a point that only a marker shows
    accuracy = data_lines(figures["learning_curves.png"].axes[0])
    assert len(accuracy) == 3 and all(line.get_marker() == "o" for line in accuracy)
    assert figures["weight_angle.png"].axes[0].get_xlabel() == "simulated time (s)"
    # every arm in the activity, the input's error left out and said so, a colour bar per column
    activity = figures["activity.png"]
    titles = [ax.get_title() for ax in activity.axes if ax.get_label() != "<colorbar>"]
    assert {t.split(":")[0] for t in titles} == {"fa", "kp", "wm"}
    assert not any("pixels error" in t for t in titles) and "pixels δ not shown" in activity.get_suptitle()
    n_columns = len(titles) // 3
    assert sum(ax.get_label() == "<colorbar>" for ax in activity.axes) == n_columns
    # wm runs a mirror phase first: its start of learning is marked on the time axes
    assert any(t.get_text() == "wm: engaged" for t in figures["weight_angle.png"].axes[0].texts)


def test_an_empty_panel_is_found() -> None:
    ds = synthetic()
    ds["test_accuracy"] = ds["test_accuracy"] * np.nan  # no accuracy recorded: its panels are empty
    assert "test accuracy" in empty_panels(plot_learning_curves(ds))
    ds = synthetic()
    ds["weight_angle"] = ds["weight_angle"].where(ds["layer"] != "W1")  # e.g. a layer without an angle
    fig = plot_alignment(ds, "weight_angle")
    assert not empty_panels(fig) and "W1 not shown: no data" in fig.get_suptitle()
    # a reference line alone is not data
    fig, ax = plt.subplots()
    ax.axhline(90, gid="frame")
    ax.plot([0, 1], [np.nan, np.nan])
    assert empty_panels(fig) == ["axes 0"]
    ax.plot([0, 1], [1, 2])
    assert empty_panels(fig) == []


def test_markers_only_on_short_curves() -> None:
    for steps in (1, MARKER_MAX, MARKER_MAX + 1):
        lines = data_lines(plot_learning_curves(synthetic(steps)).axes[0])
        assert len(lines) == 3
        assert all(line.get_marker() == ("o" if steps <= MARKER_MAX else "None") for line in lines), steps
