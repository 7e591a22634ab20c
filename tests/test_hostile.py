"""A corpus of hostile input: every case ends with exit code 2, one line on stderr, no traceback, nothing written."""

import pickle

import pytest
from oneline import refused_in_one_line

SIM = "default"
BRIAN = "brian2_weight_mirror"


def _files(tmp) -> None:
    (tmp / "malformed.toml").write_text('model = "mlp_digits"\narms = ["bp"\n')
    (tmp / "mistyped.toml").write_text('model = "mlp_digits"\narms = ["bp"]\n[train]\nepoch = 3\n')
    (tmp / "badmodel.toml").write_text(
        'name = "bad"\n[[populations]]\nname = "x"\nshape = [1, 8, 8]\n[[populations]]\nname = "y"\n'
        'shape = [4, 5, 5]\n[[projections]]\nsource = "x"\ntarget = "y"\nkind = "conv2d"\nkernel_size = 3\n')
    (tmp / "badshape.toml").write_text(f'model = "{tmp / "badmodel.toml"}"\narms = ["bp"]\n')
    (tmp / "mismatch.toml").write_text('model = "mlp_784_500_10"\narms = ["bp"]\n[train]\nepochs = 1\n')
    (tmp / "olddeep.toml").write_text('kind = "deep"\n[train]\nmodel = "resnet18"\n[arms.kp]\nrule = "kp"\n')
    (tmp / "oldbrian.toml").write_text('kind = "brian2"\nmodel = "mlp_digits"\nrules = ["wm"]\n')
    (tmp / "latin1.toml").write_bytes('model = "mlp_digits"\n# caf\xe9\n'.encode("latin-1"))
    (tmp / "notatable.toml").write_text('model = ["mlp_digits"]\narms = ["bp"]\n')
    (tmp / "afile").write_text("x")
    (tmp / "done").mkdir()
    (tmp / "done" / "results.nc").write_text("an earlier run")
    (tmp / "results.txt").write_text("not netCDF")
    run = tmp / "ckpt" / "runs" / "kp-seed0"
    for name, content in (("garbage", b"\x00garbage"), ("empty", b""), ("truncated", b"PK\x03\x04\x14\x00"),
                          ("pickle", pickle.dumps({"version": 2, "payload": pickle.loads}))):
        (tmp / f"ckpt_{name}" / "runs" / "kp-seed0").mkdir(parents=True)
        (tmp / f"ckpt_{name}" / "runs" / "kp-seed0" / "checkpoint.pt").write_bytes(content)
    run.mkdir(parents=True)


def S(*settings: str) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


RUN = {
    # names, files, old formats
    "unknown rule": ([SIM, *S('arms=["bp", "nope"]')], "unknown rule 'nope'"),
    "unknown model": ([SIM, *S("model=nope")], "unknown model 'nope'"),
    "model not a string": ([SIM, *S("model=5")], "model: expected str"),
    "unknown simulation": (["nope"], "unknown simulation 'nope'"),
    "unknown dataset": ([SIM, *S("data.name=cifar")], "unknown dataset 'cifar'"),
    "empty torchvision class": ([SIM, *S('data.name="torchvision:"')], "unknown dataset"),
    "unknown data option": ([SIM, *S("data.colour=1")], "colour"),
    "unknown backend": ([SIM, *S("backend=nest")], "unknown backend 'nest'"),
    "malformed toml": (["{tmp}/malformed.toml"], "malformed TOML"),
    "mistyped key": (["{tmp}/mistyped.toml"], "train.epoch (did you mean 'epochs'?) is not honoured"),
    "not utf-8": (["{tmp}/latin1.toml"], "not a UTF-8 text file"),
    "list for a string": (["{tmp}/notatable.toml"], "model: expected str"),
    "shapes do not chain": (["{tmp}/badshape.toml"], "gives shape (4, 6, 6)"),
    "data do not fit": (["{tmp}/mismatch.toml"], "expects (784,)"),
    "missing file": (["{tmp}/absent.toml"], "not found"),
    "old deep format": (["{tmp}/olddeep.toml"], "old deep format"),
    "old brian2 kind": (["{tmp}/oldbrian.toml"], 'now backend = "brian2"'),
    "old rules key": ([SIM, *S('rules=["bp"]')], "'rules' is now 'arms'"),
    "a sweep file": (["sweep_kp_decay_lr"], "is a sweep"),
    # --set and arms
    "set without =": ([SIM, "--set", "train.epochs"], "key=value"),
    "set into a value": ([SIM, *S("model.x=1")], "is a value, not a table"),
    "set past a list": ([SIM, *S("arms.9.rule=kp")], "not an index"),
    "unknown arm": ([SIM, "--only", "kp,zz"], "no arm 'zz'"),
    "only commas": ([SIM, "--only", ","], "names no arm"),
    "unknown --arm": ([SIM, "--arm", "zz"], "no arm 'zz'"),
    "no arms": ([SIM, *S("arms=[]")], "arms is empty"),
    "duplicate labels": ([SIM, *S('arms=["bp", "bp"]')], "unique"),
    "arm without rule": ([SIM, *S('arms=[{label = "x"}]')], "missing key 'rule'"),
    "unknown rule option": ([SIM, *S('arms=[{rule = "fa", options = {gian = 1.0}}]')], "no option 'gian'"),
    "rule option not a number": ([SIM, *S('arms=[{rule = "fa", options = {gain = "big"}}]')], "must be a number"),
    "override of no projection": ([SIM, *S('arms=[{rule = "fa", overrides = {W9 = "bp"}}]')], "W9"),
    "seeds of strings": ([SIM, *S('seeds=["a"]')], "seeds: expected int"),
    "no seeds": ([SIM, *S("seeds=[]")], "non-empty list"),
    # numbers out of range, wrong types
    "zero batch": ([SIM, *S("train.batch_size=0")], "train.batch_size must be a finite number > 0"),
    "negative epochs": ([SIM, *S("train.epochs=-1")], "train.epochs must be"),
    "float epochs": ([SIM, *S("train.epochs=1.5")], "train.epochs: expected int"),
    "negative alignment samples": ([SIM, *S("train.alignment_samples=-1")], "alignment_samples must be"),
    "zero alignment samples": ([SIM, *S("train.alignment_samples=0")], "alignment_samples must be"),
    "zero record_every": ([SIM, *S("train.record_every=0")], "record_every"),
    "unknown schedule": ([SIM, *S("train.lr_schedule=zigzag")], "lr_schedule must be one of"),
    "loss as a list": ([SIM, *S('train.loss=["x"]')], "unknown loss"),
    "label smoothing 1.5": ([SIM, *S("train.label_smoothing=1.5")], "label_smoothing must be < 1"),
    "bad ood transform": ([SIM, *S('train.ood_transforms=["flip:1"]')], "bad transform"),
    "optimizer name a number": ([SIM, *S("optimizer.name=5")], "optimizer.name: expected str"),
    "unknown optimizer": ([SIM, *S("optimizer.name=sgdd")], "unknown optimizer 'sgdd'"),
    "unknown optimizer setting": ([SIM, *S("optimizer.momentun=0.9")], "no setting 'momentun'"),
    "early weight decay without a weight decay": (
        [SIM, *S('optimizer={name = "Rprop", lr = 0.01}', "train.early_weight_decay=0.1",
                 "train.early_weight_decay_epochs=1")], "optimizer 'Rprop' has no weight_decay setting"),
    "early weight decay epochs alone": ([SIM, *S("train.early_weight_decay_epochs=1")],
                                        "needs train.early_weight_decay"),
    "nan learning rate": ([SIM, *S("optimizer.lr=nan")], "optimizer.lr must be a finite number"),
    "negative learning rate": ([SIM, *S("optimizer.lr=-0.1")], "optimizer.lr must be a finite number"),
    "nan lr_per_256": ([SIM, *S('optimizer={name = "sgd", lr_per_256 = nan}')], "lr_per_256 must be a finite"),
    "lr and lr_per_256": ([SIM, *S("optimizer.lr_per_256=0.1")], "not both"),
    "unknown device": ([SIM, *S("torch.device=tpu9")], "unknown device 'tpu9'"),
    "no cuda here": ([SIM, *S("torch.device=cuda")], "CUDA is not available here"),
    "unknown amp": ([SIM, *S("torch.amp=fp8")], "torch.amp: unknown value"),
    "negative workers": ([SIM, *S("torch.workers=-1")], "torch.workers must be"),
    "negative checkpoint_every": ([SIM, *S("torch.checkpoint_every=-5")], "checkpoint_every must be"),
    "brian2 section on torch": ([SIM, *S('brian2.tau="2 ms"')], "brian2.tau is not honoured by the torch backend"),
    # phases and mirror settings
    "unknown phase": ([SIM, *S('phases=[{kind="dream"}]')], "'kind' must be one of"),
    "phase without kind": ([SIM, *S("phases=[{steps=3}]")], "'kind' must be one of"),
    "two engaged phases": ([SIM, *S('phases=[{kind="engaged"}, {kind="engaged", name="again"}]')],
                           "at most one engaged phase"),
    "mirror without bound": ([SIM, *S("mirror.decay=0.0")], "needs a bound"),
    "nan mirror noise": ([SIM, *S("mirror.noise_std=nan")], "must be a finite number > 0"),
    "inf mirror rate": ([SIM, *S("mirror.learning_rate=inf")], "must be a finite number > 0"),
    "pink noise": ([SIM, *S("mirror.noise=pink")], "unknown noise 'pink'"),
    "zero mirror batch": ([SIM, *S("mirror.batch_size=0")], "mirror.batch_size"),
    "zero prenatal patterns": ([SIM, *S('phases=[{kind="prenatal", dataset_size=0}]')], "dataset_size"),
    "prenatal inputs ones": ([SIM, *S('phases=[{kind="prenatal", inputs="ones"}]')], "inputs must be"),
    # Brian2: parameters read, never evaluated; settings it cannot honour refused
    "brian2 subclasses": ([BRIAN, *S('brian2.tau="().__class__.__base__.__subclasses__().__len__() * ms"')],
                          "cannot read"),
    "brian2 import": ([BRIAN, *S("brian2.tau=\"__import__('os').getcwd() and 5 * ms\"")], "cannot read"),
    "brian2 attribute": ([BRIAN, *S('brian2.tau="ms.__class__"')], "cannot read"),
    "brian2 call": ([BRIAN, *S('brian2.tau="abs(5) * ms"')], "cannot read"),
    "brian2 dunder name": ([BRIAN, *S('brian2.tau="5 * __builtins__"')], "cannot read"),
    "brian2 expression": ([BRIAN, *S('brian2.tau="5 * ms + 1 * ms"')], "cannot read"),
    "brian2 not a quantity": ([BRIAN, *S('brian2.tau="fast"')], "cannot read"),
    "brian2 unknown unit": ([BRIAN, *S('brian2.tau="5 parsecs"')], "cannot read"),
    "brian2 wrong dimension": ([BRIAN, *S('brian2.tau="5 mV"')], "wrong dimensions"),
    "brian2 bare number": ([BRIAN, *S("brian2.tau=5")], "missing units"),
    "brian2 infinite": ([BRIAN, *S('brian2.tau="1e400 ms"')], "not finite"),
    "brian2 nan noise": ([BRIAN, *S("brian2.noise_sigma=nan")], "noise_sigma must be > 0"),
    "brian2 seed": ([BRIAN, *S("brian2.seed=3")], "seeded from the simulation's seeds"),
    "brian2 unknown parameter": ([BRIAN, *S('brian2.tua="2 ms"')], "brian2.tua (did you mean 'tau'?) is not honoured"),
    "brian2 variant": ([BRIAN, *S("brian2.variant=bursting")], "variant must be one of"),
    "brian2 twin not a flag": ([BRIAN, *S("brian2.twin=yes")], "brian2.twin"),
    "brian2 spiking cross-entropy": (
        ["brian2_weight_mirror_spiking", *S('arms=["fa"]', 'phases=[{kind="engaged"}]', 'data.name="digits"',
                                            "brian2.loss=cross_entropy")],
        "the spiking variant's output errors are mse"),
    "brian2 twin of a sparse circuit": (["brian2_learning", *S("brian2.p_feedback=0.5")],
                                        "brian2.twin needs dense connections"),
    "brian2 unknown loss": (["brian2_learning", *S("brian2.loss=hinge")], "brian2.loss: unknown value 'hinge'"),
    "brian2 loss without learning": ([BRIAN, *S("brian2.loss=mse")], "brian2.loss is not honoured by the brian2"),
    "brian2 data without learning": ([BRIAN, *S('data.name="digits"', "data.validation=0.1")],
                                     "data.name, data.validation are not honoured by the brian2"),
    "fresh noise misspelt": ([SIM, *S('arms=[{rule="fa", phases=[{kind="prenatal", dataset_size="new"}, '
                                      '{kind="engaged"}]}]')], 'dataset_size must be a number of patterns or "fresh"'),
    "brian2 mirror noise_std": ([BRIAN, *S("phases.0.noise_std=0.5")], "not honoured by the brian2 backend"),
    "brian2 optimizer": ([BRIAN, *S("optimizer.lr=0.1")], "optimizer.lr is not honoured by the brian2 backend"),
    "brian2 sign-symmetry": ([BRIAN, *S('arms=["usf"]')], "not implemented by the brian2 backend"),
    # a data set swapped under the simulation's [data] options; numbers given as strings
    "--data keeps the old options": ([SIM, "--data", "fashion_mnist"],
                                     "data.test_fraction is not an option of data set 'fashion_mnist'"),
    "data.name keeps the old options": ([SIM, *S('data.name="fashion_mnist"')],
                                        "data.test_fraction is not an option of data set 'fashion_mnist'"),
    "quoted learning rate": ([SIM, *S('optimizer.lr="0.05"')], "got '0.05' (a string: write 0.05 without quotes"),
    "quoted epochs": ([SIM, *S('train.epochs="3"')], "train.epochs: expected int, got '3' (a string"),
    "quoted mirror noise": ([SIM, *S('mirror.noise_std="0.1"')], "got '0.1' (a string"),
    "quoted rule option": ([SIM, *S('arms=[{rule="fa", options={gain="2"}}]')], "got '2' (a string"),
    # refused once the data are loaded: the output folder the run made goes again
    "quoted test fraction": ([SIM, *S('data.test_fraction="0.5"'), "--out", "{tmp}/new/out"],
                             "data.test_fraction: expected int or float, got '0.5' (a string"),
    # output locations and checkpoints
    "out under a file": ([SIM, *S("train.epochs=0"), "--out", "{tmp}/afile/sub"], "cannot write there"),
    "out is a file": ([SIM, "--out", "{tmp}/afile"], "exists and is not a folder"),
    "out in /proc": ([SIM, "--out", "/proc/neurocircuit-out"], "cannot write there"),
    "results exist": ([SIM, "--out", "{tmp}/done"], "pass --resume"),
}
for _name in ("garbage", "empty", "truncated", "pickle"):
    RUN[f"{_name} checkpoint"] = ([SIM, "--arm", "kp", *S("seeds=[0]"), "--resume", "--out", f"{{tmp}}/ckpt_{_name}"],
                                  "is not a readable neurocircuit checkpoint")

OTHER = {
    "plot not netCDF": (["plot", "{tmp}/results.txt", "--var", "x", "--x", "step", "--out", "{tmp}/p/p.png"],
                        "not a readable netCDF"),
    "plot x equals y": (["plot", "{tmp}/results.txt", "--var", "x", "--x", "s", "--y", "s", "--out", "{tmp}/p/p.png"],
                        "two different dimensions"),
    "plot missing file": (["plot", "{tmp}/none.nc", "--var", "x", "--x", "step", "--out", "{tmp}/p/p.png"],
                          "not found"),
    "sweep unknown key": (["sweep", SIM, "--set", "train.epochz=1,2", "--out", "{tmp}/s"], "epochz"),
    "sweep bad axis": (["sweep", SIM, "--set", "optimizer.lr=lin:1:2", "--out", "{tmp}/s"], "lin"),
    "sweep zero workers": (["sweep", SIM, "--set", "optimizer.lr=0.1,0.2", "--workers", "0", "--out", "{tmp}/s"],
                           "--workers must be >= 1"),
    "sweep unreachable dask": (["sweep", SIM, "--set", "optimizer.lr=0.1,0.2", "--dask", "tcp://127.0.0.1:1",
                                "--out", "{tmp}/s"], "cannot reach the dask scheduler"),
    "train = run": (["train", SIM, *S("arms=[]"), "--out", "{tmp}/t"], "arms is empty"),
    "train out under a file": (["train", SIM, "--out", "{tmp}/afile/sub"], "cannot write there"),
    "plot out under a file": (["plot", "{tmp}/results.txt", "--var", "x", "--x", "step", "--out", "{tmp}/afile/p.png"],
                              "cannot write there"),
}


def _check(args: list[str], message: str, tmp_path, capsys) -> None:
    _files(tmp_path)
    refused_in_one_line(args, message, tmp_path, capsys)


@pytest.mark.parametrize("case", list(RUN))
def test_run_refuses_hostile_input_in_one_line(case, tmp_path, capsys):
    if case == "no cuda here":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
    args, message = RUN[case]
    if "--out" not in args:
        args = [*args, "--out", "{tmp}/out"]
    _check(["run", *args], message, tmp_path, capsys)


@pytest.mark.parametrize("case", list(OTHER))
def test_other_commands_refuse_hostile_input_in_one_line(case, tmp_path, capsys):
    _check(*OTHER[case], tmp_path, capsys)


@pytest.mark.parametrize("download", [False, True])
def test_missing_data_says_what_was_tried_and_which_setting_changes_it(download, tmp_path, capsys, monkeypatch):
    """Fashion-MNIST in none of the places looked in: the one line names them, says whether a download was tried
    (here it fails: no network) and the settings that change it; the output folder the run made goes again."""
    import urllib.error

    import torchvision

    from neurocircuit import data

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(tmp_path / "debian"), str(tmp_path / "cache" / "F" / "raw")))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    monkeypatch.setenv("NEUROCIRCUIT_DATA", str(tmp_path / "data"))
    table = f'data={{name="fashion_mnist", download={str(download).lower()}}}'
    tried = "was tried and failed (URLError" if download else "no download was tried (data.download = false"
    _check(["run", SIM, *S(table), "--out", "{tmp}/out"], tried, tmp_path, capsys)
    with pytest.raises(data.DataError) as caught:
        data.find_fashion_mnist(download=download)
    for part in (f"looked in {tmp_path / 'data' / 'fashion-mnist'}, {tmp_path / 'debian'}", tried,
                 "set data.root (--data-root)", "$NEUROCIRCUIT_DATA"):
        assert part in str(caught.value), str(caught.value)


def test_the_corpus_is_large():
    assert len(RUN) + len(OTHER) >= 60
