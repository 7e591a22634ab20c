"""The command line: the default run, list, and one-line errors with exit code 2."""

import subprocess
import sys

import pytest
import xarray as xr

from neurocircuit.cli import main


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    # The default simulation, one seed and 3 of its 30 epochs (the README's table is the full run), its output
    # (stdout and stderr) to a file, as a log file gets it.
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "neurocircuit", "run", "--out", str(out),
                               "--set", "seeds=[0]", "--set", "train.epochs=3"],
                              stdout=log, stderr=subprocess.STDOUT, text=True, timeout=600)
    text = (out / "log.txt").read_text()
    assert proc.returncode == 0, text
    return out, text


def test_default_run_writes_results_and_figures(default_run):
    out, stdout = default_run
    with xr.open_dataset(out / "results.nc") as ds:
        assert {"test_accuracy", "weight_angle", "gradient_angle", "norm_ratio"} <= set(ds.data_vars)
        assert list(ds["arm"].values) == ["bp", "fa", "usf", "brsf", "frsf", "kp"] == list(ds["rule"].values)
        assert ds["weight_angle"].dims == ("arm", "seed", "step", "layer")
        assert ds.attrs["backend"] == "torch" and "config" in ds.attrs
        assert ds["weight_angle"].attrs["units"] == "degree" and ds["seconds_per_step"].attrs["units"] == "s"
        final = ds.isel(step=-1)
        # Kolen-Pollack aligns B with W (3 epochs: readout 15.5 deg, hidden 47.1 deg, both falling from 90);
        # feedback alignment's hidden layer stays at ~90 deg and its readout far from KP's (53.3 deg).
        kp, fa = final["weight_angle"].sel(arm="kp"), final["weight_angle"].sel(arm="fa")
        assert float(kp.sel(layer="W2").max()) < 20.0 and float(kp.max()) < 55.0
        assert float(fa.sel(layer="W2").min()) > 45.0 and float(fa.sel(layer="W1").min()) > 80.0
        assert float(final["weight_angle"].sel(arm="bp").max()) < 1e-3
        assert float(final["test_accuracy"].min()) > 0.9
    for fig in ("learning_curves.png", "weight_angle.png", "gradient_angle.png"):
        assert (out / fig).stat().st_size > 10_000
    assert "kp" in stdout and "wrote" in stdout


def test_default_run_log_file_has_a_line_per_run_and_no_nan(default_run):
    _, log = default_run
    lines = log.splitlines()
    assert "nan" not in log.lower() and "\r" not in log  # no value that was not measured, no bar redrawn
    assert lines[0].startswith("running 'default' on torch")
    done = [line for line in lines if line.startswith("[")]
    assert [line.split("]")[0] for line in done] == [f"[{k}/6" for k in range(1, 7)]
    assert "about" in done[0] and "test acc" in done[-1] and "max angle" in done[-1]
    # per run at most one record line (a record reaches a log file at most once a minute, and these runs take
    # seconds), not one per epoch: the 30-epoch, 2-seed default run stays within 40 lines the same way
    records = [line for line in lines if " epoch " in line and " step " in line]
    assert len(records) <= len(done)
    table = lines.index(next(line for line in lines if line.startswith("arm ")))  # a head and a row per arm
    assert table == 1 + len(done) + len(records) and all(line.startswith("wrote ") for line in lines[table + 7:])


def test_list_shows_models_rules_and_simulations(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mlp_digits", "lenet5", "kp", "usf", "default", "digits"):
        assert name in out


# The one-line errors of `run`, `train`, `sweep` and `plot` on hostile input: tests/test_hostile.py.


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neurocircuit", "run", "default", "--set", "arms=[\"zz\"]",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "unknown rule 'zz'" in proc.stderr


def test_every_shipped_simulation_is_valid():
    from neurocircuit.registry import list_simulations
    from neurocircuit.simulation import load_simulation

    names = list_simulations()
    assert {"default", "weight_mirror", "kolen_pollack", "noise_pretraining", "rules_fashion_mnist",
            "rules_fashion_mnist_lenet5", "both_directions"} <= set(names)
    for name in names:
        if name.startswith("sweep_"):
            continue  # sweeps: tests/test_sweep.py
        sim = load_simulation(name)  # every backend, every model kind: the one parser
        assert sim.arms and sim.seeds and sim.backend in ("torch", "brian2")


def test_mirror_only_simulation_and_only(tmp_path, capsys):
    sim = tmp_path / "m.toml"
    sim.write_text('model = "mlp_digits"\narms = ["wm", "fa"]\nphases = [{ kind = "mirror", steps = 60 }]\n'
                   '[mirror]\nbatch_size = 256\nlearning_rate = 0.2\ndecay = 0.2\n')
    assert main(["run", str(sim), "--out", str(tmp_path / "o"), "--only", "wm", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mirror_weight_angle" in out
    with xr.open_dataset(tmp_path / "o" / "results.nc") as ds:
        assert list(ds["arm"].values) == ["wm"]
        assert float(ds["mirror_weight_angle"].isel(mirror_step=-1).max()) < 20
    assert (tmp_path / "o" / "mirror_weight_angle.png").exists()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("neurocircuit: error:"), err
    return err


def test_bad_files_outputs_and_checkpoints_are_refused_up_front(tmp_path, capsys):
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('model = "mlp_digits"\n# caf\xe9\n'.encode("latin-1"))
    assert main(["run", str(latin), "--out", str(tmp_path / "o")]) == 2
    assert "not a UTF-8 text file" in _one_error_line(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["run", "default", "--out", str(tmp_path / "file" / "sub"), "--set", "train.epochs=0"]) == 2
    assert "cannot write there" in _one_error_line(capsys)
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.nc").write_text("earlier results")
    assert main(["run", "default", "--out", str(done)]) == 2
    assert "pass --resume" in _one_error_line(capsys)
    # A garbage checkpoint: one line naming it, nothing run.
    broken = tmp_path / "broken"
    (broken / "runs" / "kp-seed0").mkdir(parents=True)
    (broken / "runs" / "kp-seed0" / "checkpoint.pt").write_bytes(b"\x00garbage")
    assert main(["run", "default", "--arm", "kp", "--set", "seeds=[0]", "--out", str(broken), "--resume"]) == 2
    assert "is not a readable neurocircuit checkpoint" in _one_error_line(capsys)
    # plot: a file that is not netCDF, and the same dimension twice
    assert main(["plot", str(latin), "--var", "x", "--x", "step", "--out", str(tmp_path / "p.png")]) == 2
    assert "not a readable netCDF" in _one_error_line(capsys)
    assert main(["plot", str(latin), "--var", "x", "--x", "step", "--y", "step", "--out", str(tmp_path / "p.png")]) == 2
    assert "two different dimensions" in _one_error_line(capsys)


def test_results_get_the_umask_mode_not_the_temp_files(tmp_path):
    import os

    from neurocircuit.results import write_atomic

    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "r.txt", lambda p: p.write_text("x"))
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644 and not list(tmp_path.glob(".*.tmp"))


def test_overwrite_replaces_and_stale_temp_files_are_removed(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "default", "--arm", "bp", "--set", "seeds=[0]", "--set", "train.epochs=1", "--quiet",
            "--no-figures", "--out", str(out)]
    assert main(args) == 0
    stale = out / "runs" / "bp-seed0" / ".checkpoint.pt.x1y2z3.tmp"  # what a killed run leaves
    stale.write_bytes(b"partial")
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--resume"]) == 2
    assert main([*args, "--overwrite"]) == 0
    assert not stale.exists() and (out / "runs" / "bp-seed0" / "checkpoint.pt").exists()
