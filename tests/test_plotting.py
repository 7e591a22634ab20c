"""Figures hide no dimension: every dimension off the axes is selected, drawn as lines (panels) with a legend, or
averaged on request with its sd shown and named; numeric coordinates go on numeric axes."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from neurocircuit.cli import main
from neurocircuit.errors import ConfigError
from neurocircuit.plotting import MAX_LINES, plot_learning_curves, plot_ood, plot_over, save_figures
from neurocircuit.results import write_netcdf

LR = [0.01, 0.02, 0.1]  # unevenly spaced, spanning one decade (a linear axis)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def results(arms: tuple[str, ...] = ("bp", "fa", "kp"), seeds: int = 2) -> xr.Dataset:
    """A run's results: test_accuracy (arm, seed, step) and weight_angle (arm, seed, step, layer); epoch is a
    coordinate along step. Every value differs, so that any average shows."""
    rng = np.random.default_rng(0)
    steps = [0, 10, 20, 30]
    shape = (len(arms), seeds, len(steps))
    ds = xr.Dataset(
        {"test_accuracy": (("arm", "seed", "step"), rng.uniform(0.1, 0.9, shape), {"units": "1"}),
         "test_loss": (("arm", "seed", "step"), rng.uniform(0.1, 2, shape), {"units": "1"}),
         "weight_angle": (("arm", "seed", "step", "layer"), rng.uniform(10, 90, (*shape, 2)),
                          {"units": "degree", "long_name": "angle between B and W^T"})},
        coords={"arm": list(arms), "seed": list(range(seeds)),
                "step": ("step", steps, {"long_name": "optimizer steps done"}),
                "epoch": ("step", [0.0, 0.25, 0.5, 1.5], {"units": "epoch"}), "layer": ["W1", "W2"]})
    ds.attrs["simulation"] = "synthetic"
    return ds


def swept() -> xr.Dataset:
    """A sweep: a 3-D weight_angle over optimizer.lr x seed x layer, and one over a swept time constant (SI)."""
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {"weight_angle": (("optimizer.lr", "seed", "layer"), rng.uniform(10, 90, (3, 2, 2)), {"units": "degree"}),
         "mirror_angle": (("brian2.tau", "layer"), rng.uniform(10, 90, (3, 2)), {"units": "degree"})},
        coords={"optimizer.lr": LR, "seed": [0, 1], "layer": ["W1", "W2"],
                "brian2.tau": ("brian2.tau", [0.001, 0.002, 0.004], {"units": "s"})})


def drawn(fig: plt.Figure) -> list:
    """The data lines of the figure's first axes (not reference lines such as 90 degrees); over categories, the
    points of each error-bar series (drawn without a joining line)."""
    from matplotlib.container import ErrorbarContainer

    ax = fig.axes[0]
    return ([line for line in ax.get_lines() if not line.get_label().startswith("_")]
            + [c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)])


def test_a_3d_variable_draws_one_line_per_remaining_combination() -> None:
    ds = swept()
    fig = plot_over(ds, "weight_angle", "optimizer.lr")
    lines = drawn(fig)
    assert len(lines) == 4  # seed (2) x layer (2): nothing averaged
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["seed=0, layer=W1", "seed=0, layer=W2", "seed=1, layer=W1", "seed=1, layer=W2"]
    for line, label in zip(lines, labels):
        seed, layer = (part.split("=")[1] for part in label.split(", "))
        expected = ds["weight_angle"].sel(seed=int(seed), layer=layer).values
        np.testing.assert_array_equal(line.get_ydata(), expected)
    assert fig.get_suptitle() == "weight_angle"


def test_too_many_combinations_are_refused_in_one_line() -> None:
    ds = results(arms=("bp", "fa", "kp", "usf"))  # 4 arms x 2 seeds x 2 layers = 16 > 12
    with pytest.raises(ConfigError) as info:
        plot_over(ds, "weight_angle", "step")
    message = str(info.value)
    assert "\n" not in message and "16 combinations of arm (4) × seed (2) × layer (2)" in message
    assert "--sel" in message and "--mean" in message and f"at most {MAX_LINES}" in message
    # selecting one layer leaves 8 lines, drawn
    assert len(drawn(plot_over(ds, "weight_angle", "step", select={"layer": "W2"}))) == 8


def test_mean_draws_the_sd_as_a_band_and_names_it() -> None:
    ds = results()
    fig = plot_over(ds, "weight_angle", "step", select={"layer": "W1"}, mean=["seed"])
    lines, ax = drawn(fig), fig.axes[0]
    assert [line.get_label() for line in lines] == ["arm=bp", "arm=fa", "arm=kp"]
    bands = ax.collections
    assert len(bands) == 3
    for line, band, arm in zip(lines, bands, ("bp", "fa", "kp")):
        da = ds["weight_angle"].sel(arm=arm, layer="W1")
        np.testing.assert_allclose(line.get_ydata(), da.mean("seed").values)
        low, high = (da.mean("seed") - da.std("seed")).values, (da.mean("seed") + da.std("seed")).values
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(low.min()) and ys.max() == pytest.approx(high.max())
    assert "mean ± sd over seed (n=2)" in fig.get_suptitle()
    # two dims at once: n is their product
    fig = plot_over(ds, "weight_angle", "step", mean=["seed", "arm"])
    assert "mean ± sd over seed × arm (n=6)" in fig.get_suptitle() and len(drawn(fig)) == 2


def test_last_is_each_series_own_last_value_with_data() -> None:
    # fa's run ended two records before kp's (a shorter schedule): "last" must not drop it for kp's longer one
    ds = results(arms=("fa", "kp"), seeds=1)
    ds["weight_angle"].loc[{"arm": "fa", "step": [20, 30]}] = np.nan
    fig = plot_over(ds, "weight_angle", "arm", select={"layer": "W2", "step": "last"})
    angle = ds["weight_angle"].sel(layer="W2", seed=0)
    np.testing.assert_array_equal(drawn(fig)[0].get_ydata(),
                                  [angle.sel(arm="fa", step=10), angle.sel(arm="kp", step=30)])
    assert "step = each one's last with data (10 … 30)" in fig.get_suptitle()
    fig = plot_over(ds, "weight_angle", "arm", select={"layer": "W2", "step": "first"})  # all start together
    assert "step = 0 (first)" in fig.get_suptitle()
    # averaged over seeds afterwards: each seed's own last, then the mean
    two = results(arms=("fa", "kp"), seeds=2)
    two["weight_angle"].loc[{"seed": 1, "step": 30}] = np.nan
    fig = plot_over(two, "weight_angle", "arm", select={"layer": "W1", "step": "last"}, mean=["seed"])
    w1 = two["weight_angle"].sel(layer="W1")
    np.testing.assert_allclose(drawn(fig)[0].get_ydata(),
                               (w1.sel(seed=0, step=30) + w1.sel(seed=1, step=20)).values / 2)


def test_categories_are_points_side_by_side_never_joined() -> None:
    from matplotlib.container import ErrorbarContainer

    ds = results(seeds=2)
    fig = plot_over(ds, "weight_angle", "arm", select={"step": "last"}, mean=["seed"])  # a series per layer
    ax = fig.axes[0]
    series = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(series) == 2 and [c.get_label() for c in series] == ["layer=W1", "layer=W2"]
    for k, container in enumerate(series):
        points = container.lines[0]
        assert points.get_linestyle() == "None"  # arms have no order: nothing joins them
        xs = np.asarray(points.get_xdata())
        np.testing.assert_allclose(xs - np.arange(3), (k - 0.5) * 0.1)  # side by side about each arm's tick
        layer = ds["weight_angle"].isel(step=-1, layer=k)
        np.testing.assert_allclose(points.get_ydata(), layer.mean("seed"))
        bars = container.lines[2][0].get_segments()  # the error bars: mean ± sd over the seeds
        sd = layer.std("seed").values
        np.testing.assert_allclose([seg[1, 1] - seg[0, 1] for seg in bars], 2 * sd)


def test_every_selection_is_in_the_title() -> None:
    ds = results(seeds=1)
    fig = plot_over(ds, "weight_angle", "arm", select={"layer": "W2", "step": "last"})
    title = fig.get_suptitle()
    # the selections, and the dimension of one value (seed) that no legend shows
    assert "layer = W2" in title and "step = 30 (last)" in title and "seed = 0" in title
    np.testing.assert_array_equal(drawn(fig)[0].get_ydata(),
                                  ds["weight_angle"].sel(layer="W2", seed=0).isel(step=-1).values)
    # selecting by a coordinate along a dimension: epoch along step
    fig = plot_over(ds, "weight_angle", "arm", select={"layer": "W1", "epoch": "0.5"})
    assert "epoch = 0.5" in fig.get_suptitle()
    np.testing.assert_array_equal(drawn(fig)[0].get_ydata(), ds["weight_angle"].sel(layer="W1", seed=0, step=20))


def test_numeric_coordinates_go_on_numeric_axes() -> None:
    fig = plot_over(swept(), "weight_angle", "optimizer.lr", select={"layer": "W1"}, mean=["seed"])
    ax = fig.axes[0]
    np.testing.assert_array_equal(drawn(fig)[0].get_xdata(), LR)  # not 0, 1, 2
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "optimizer.lr"
    assert ax.get_ylabel() == "weight_angle (degree)"
    # a swept time constant in s is shown in ms, on a numeric axis labelled with its units
    fig = plot_over(swept(), "mirror_angle", "brian2.tau")
    np.testing.assert_allclose(drawn(fig)[0].get_xdata(), [1, 2, 4])
    assert fig.axes[0].get_xlabel() == "brian2.tau (ms)"
    # and selected by value with units
    fig = plot_over(swept(), "mirror_angle", "layer", select={"brian2.tau": "2 ms"})
    assert "brian2.tau = 2 ms" in fig.get_suptitle()
    np.testing.assert_array_equal(drawn(fig)[0].get_ydata(), swept()["mirror_angle"].isel({"brian2.tau": 1}))


def test_x_epoch_is_the_coordinate_along_step() -> None:
    ds = results()
    fig = plot_over(ds, "test_accuracy", "epoch", mean=["seed"])
    for line in drawn(fig):
        np.testing.assert_array_equal(line.get_xdata(), [0.0, 0.25, 0.5, 1.5])
    assert fig.axes[0].get_xlabel() == "epoch"
    assert plot_over(ds, "test_accuracy", "step", mean=["seed"]).axes[0].get_xlabel() == "optimizer steps done"


def test_a_heat_map_draws_each_remaining_combination_as_a_panel() -> None:
    ds = swept()
    fig = plot_over(ds, "weight_angle", "optimizer.lr", "layer")
    panels = [ax for ax in fig.axes if ax.collections and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["seed=0", "seed=1"]
    mesh = panels[1].collections[0]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(2, 3),
                                  ds["weight_angle"].sel(seed=1).transpose("layer", "optimizer.lr").values)
    fig = plot_over(ds, "weight_angle", "optimizer.lr", "layer", mean=["seed"])
    assert "mean ± sd over seed (n=2)" in fig.get_suptitle()
    assert all("±" in text.get_text() for text in fig.axes[0].texts)


def test_bad_names_are_one_line_errors_naming_the_choices() -> None:
    ds = results()
    cases = [({"variable": "angle", "x": "step"}, "no variable 'angle' (variables: test_accuracy, test_loss"),
             ({"variable": "weight_angle", "x": "time"}, "no dimension 'time' in weight_angle (dims: arm, seed, step"),
             ({"variable": "weight_angle", "x": "step", "select": {"layer": "W3"}}, "values: W1, W2"),
             ({"variable": "weight_angle", "x": "step", "select": {"lair": "W1"}}, "--sel: no dimension 'lair'"),
             ({"variable": "weight_angle", "x": "step", "select": {"epoch": "0"}}, "step is on an axis"),
             ({"variable": "weight_angle", "x": "step", "mean": ["sed"]}, "--mean: no dimension 'sed'"),
             ({"variable": "weight_angle", "x": "step", "select": {"seed": "0"}, "mean": ["seed"]},
              "already selected")]
    for kwargs, needle in cases:
        with pytest.raises(ConfigError) as info:
            plot_over(ds, **kwargs)
        assert needle in str(info.value) and "\n" not in str(info.value), (kwargs, str(info.value))


def test_the_plot_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_netcdf(results(arms=("bp", "fa", "kp", "usf")), tmp_path / "results.nc")
    base = ["plot", str(path), "--var", "weight_angle", "--out", str(tmp_path / "a.png")]
    assert main([*base, "--x", "epoch", "--sel", "layer=W2", "--mean", "seed"]) == 0
    assert (tmp_path / "a.png").stat().st_size > 1000
    capsys.readouterr()
    for extra, needle in ((["--x", "nope"], "no dimension 'nope' in weight_angle (dims: arm, seed, step, layer"),
                          (["--x", "step"], "16 combinations of arm (4) × seed (2) × layer (2)"),
                          (["--x", "step", "--sel", "layer"], "--sel expects DIM=VALUE"),
                          (["--x", "step", "--sel", "layer=W1", "--sel", "layer=W2"], "given twice")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("neurocircuit: error: ") and err.count("\n") == 1 and needle in err, (extra, err)


def test_the_figures_of_a_run_name_the_mean_and_draw_the_band(tmp_path: Path) -> None:
    ds = results()
    written = {p.name for p in save_figures(ds, tmp_path)}
    assert written == {"learning_curves.png", "weight_angle.png"}
    curves = plot_learning_curves(ds)
    assert "mean ± sd over seed (n=2)" in curves.get_suptitle()
    assert len(drawn(curves)) == 3 and len(curves.axes[0].collections) == 3  # a band per arm
    np.testing.assert_allclose(drawn(curves)[1].get_ydata(), 100 * ds["test_accuracy"].sel(arm="fa").mean("seed"))
    # out-of-distribution bars: the mean over seeds, the sd as the error bar, both named
    ds["ood_accuracy"] = (("arm", "seed", "transform"), np.random.default_rng(2).uniform(0, 1, (3, 2, 2)),
                          {"units": "1"})
    ds = ds.assign_coords(transform=["rotate", "noise"])
    ood = plot_ood(ds)
    assert "mean ± sd over seed (n=2)" in ood.axes[0].get_title()
    heights = [bar.get_height() for bar in ood.axes[0].patches]
    expected = [100 * float(v) for arm in ("bp", "fa", "kp") for v in
                [ds["test_accuracy"].sel(arm=arm).isel(step=-1).mean("seed"),
                 *ds["ood_accuracy"].sel(arm=arm).mean("seed").values]]
    np.testing.assert_allclose(heights, expected)
    # a dimension these figures do not know is an error, never averaged in
    extra = results().expand_dims({"optimizer.lr": LR})
    with pytest.raises(ValueError, match="optimizer.lr"):
        plot_learning_curves(extra)


def test_swept_quantities_are_stored_as_numbers_with_units(tmp_path: Path) -> None:
    from neurocircuit.sweep import Axis, Sweep, merge_points, point_id

    sweep = Sweep("default", (Axis("brian2.tau", ("1 ms", "500 us", "4 ms")), Axis("arms.0.rule", ("bp", "fa"))))
    folder = tmp_path / "points"
    for i, point in enumerate(sweep.points()):
        if point == {"brian2.tau": "4 ms", "arms.0.rule": "fa"}:
            (folder / f"{point_id(point)}.error.json").write_text(json.dumps({"error": "boom", "point": point}))
            continue
        write_netcdf(xr.Dataset({"v": ((), float(i))}), folder / f"{point_id(point)}.nc")
    ds = merge_points(sweep, folder)
    np.testing.assert_allclose(ds["brian2.tau"].values, [0.001, 0.0005, 0.004])
    assert ds["brian2.tau"].attrs["units"] == "s"
    assert list(ds["arms.0.rule"].values) == ["bp", "fa"]  # categorical text stays text
    assert float(ds["v"].sel({"brian2.tau": 0.0005, "arms.0.rule": "fa"})) == 3.0
    # the failure names its point by the stored values
    assert json.loads(ds.attrs["errors"])[0]["point"] == {"brian2.tau": 0.004, "arms.0.rule": "fa"}
