"""Results files in the conventions of the ecosystem (CF-style attributes): every variable and coordinate with
``long_name`` and ``units``, accuracies as fractions (units "1"), tables in attributes as JSON, the phase of each
record a coordinate, the recorded neurons of a Brian2 run a coordinate."""

import json

import matplotlib
import numpy as np
import pytest
import xarray as xr

matplotlib.use("Agg")

from neurocircuit.results import write_netcdf  # noqa: E402
from neurocircuit.runs import run_simulation  # noqa: E402
from neurocircuit.simulation import load_simulation  # noqa: E402

SMALL_TORCH = ["seeds=[0]", 'arms=["bp", "fa"]', "train.epochs=1", "data.train_samples=256",
               "data.test_samples=64"]
# fa learns from the start, wm mirrors first: the arms' records carry different phases
SMALL_BRIAN = ['arms=["fa", {rule = "wm", phases = [{kind = "mirror", steps = 20}, {kind = "engaged", epochs = 1}]}]',
               "data.train_samples=30", "data.test_samples=10", 'brian2.target="numpy"', "brian2.record_every=10"]


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory) -> str:
    ds = run_simulation(load_simulation("default", SMALL_TORCH), progress=False)
    return str(write_netcdf(ds, tmp_path_factory.mktemp("torch") / "results.nc"))


@pytest.fixture(scope="module")
def brian_file(tmp_path_factory) -> str:
    ds = run_simulation(load_simulation("brian2_learning", SMALL_BRIAN), progress=False)
    return str(write_netcdf(ds, tmp_path_factory.mktemp("brian") / "results.nc"))


def _unlabelled(ds: xr.Dataset) -> list[str]:
    return [f"{name}: {sorted(var.attrs)}" for name, var in ds.variables.items()
            if not ({"long_name", "units"} <= set(var.attrs) and str(var.attrs["long_name"]).strip())]


@pytest.mark.parametrize("which", ["torch_file", "brian_file"])
def test_every_variable_and_coordinate_has_long_name_and_units(which, request):
    with xr.open_dataset(request.getfixturevalue(which)) as ds:
        assert not _unlabelled(ds), _unlabelled(ds)
        for name in ("test_accuracy", "val_accuracy"):  # fractions, as the console's "(%)" columns are 100 x these
            assert ds[name].attrs["units"] == "1" and "fraction" in ds[name].attrs["long_name"]
            assert float(ds[name].max()) <= 1.0


@pytest.mark.parametrize("which", ["torch_file", "brian_file"])
def test_attributes_that_hold_tables_are_json(which, request):
    with xr.open_dataset(request.getfixturevalue(which)) as ds:
        tables = [key for key in ("config", "parameters") if key in ds.attrs]
        assert "config" in tables and (which == "torch_file" or "parameters" in tables)
        for key in tables:
            assert isinstance(json.loads(ds.attrs[key]), dict), key
        if which == "brian_file":
            assert json.loads(ds.attrs["parameters"])["presentation"] == "20. ms"


def test_phase_is_a_coordinate_along_the_records(torch_file, brian_file):
    with xr.open_dataset(torch_file) as ds:
        assert "phase" in ds.coords and "phase" not in ds.data_vars
        assert ds["phase"].dims == ("arm", "seed", "step") and set(ds["phase"].values.ravel()) == {"engaged"}
        assert "layer_rule" in ds.coords
    with xr.open_dataset(brian_file) as ds:
        for name, dim in (("phase", "time"), ("weight_phase", "weight_time")):
            assert name in ds.coords and name not in ds.data_vars and dim in ds[name].dims
        phases = {arm: set(ds["weight_phase"].sel(arm=arm).values.ravel()) - {""} for arm in ("fa", "wm")}
        assert "mirror" in phases["wm"] and "mirror" not in phases["fa"]


def test_brian2_recorded_neurons_are_a_coordinate(brian_file):
    with xr.open_dataset(brian_file) as ds:
        neuron_dims = [d for d in ds.dims if str(d).endswith("_neuron")]
        assert neuron_dims
        for dim in neuron_dims:
            assert dim in ds.coords and "recorded neuron" in ds[dim].attrs["long_name"]
            # brian2.record_neurons = 20 (the default): the first 20 units of each population, or all of a smaller one
            np.testing.assert_array_equal(ds[dim].values, np.arange(ds.sizes[dim]))
            assert ds.sizes[dim] <= 20


def _text(label: str) -> str:
    return " ".join(label.split())  # xarray wraps long labels


def test_plotting_a_variable_gives_labelled_axes(torch_file, brian_file):
    import matplotlib.pyplot as plt

    with xr.open_dataset(torch_file) as ds:
        lines = ds["test_accuracy"].sel(arm="fa", seed=0).plot()
        ax = lines[0].axes
        assert _text(ax.get_xlabel()) == "optimizer steps done [1]"
        assert _text(ax.get_ylabel()) == "top-1 accuracy on the test set (fraction) [1]"
        plt.close("all")
        ax = ds["weight_angle"].sel(arm="fa", seed=0, layer="W2").plot(x="epoch")[0].axes
        assert _text(ax.get_xlabel()) == "epochs of training done [epoch]"
        assert _text(ax.get_ylabel()) == "angle between B and Wᵀ [degree]"
        plt.close("all")
    with xr.open_dataset(brian_file) as ds:
        mesh = ds["hidden_y"].sel(arm="fa", seed=0).plot(x="time")
        assert _text(mesh.axes.get_xlabel()) == "simulated time [s]"
        assert _text(mesh.axes.get_ylabel()) == "recorded neuron of hidden (index in the population) [1]"
        assert "activity of hidden" in _text(mesh.colorbar.ax.get_ylabel())
        plt.close("all")
