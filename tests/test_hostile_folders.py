"""Output folders and resume under hostile and unlucky use (issue 31): a resumed run is the uninterrupted one bit for
bit for every rule, a folder belongs to one simulation, a second process on it is refused at once, and a full disk
is one line that keeps what was on disk."""

from __future__ import annotations

import pytest
import torch
import xarray as xr

from neurocircuit.runs import run_simulation
from neurocircuit.simulation import load_simulation
from neurocircuit.torch.nn.feedback_rules import list_rules

TIMING = ["seconds_per_step", "images_per_second"]  # wall-clock measurements: the only numbers that may differ
#: Two epochs of 6 steps, a record every 2: a stop at step 3 resumes mid-epoch, between records, before an epoch end.
SMALL = ["train.epochs=2", "train.steps_per_epoch=6", "train.record_every=2", "train.alignment_samples=32",
         "seeds=[0]"]


def _arm(rule: str) -> str:
    # wm with interleaved mirror steps, so its mirror generator is resumed too
    return '{ rule = "wm", phases = [{ kind = "engaged", mirror_every = 2 }] }' if rule == "wm" else f'"{rule}"'


@pytest.mark.parametrize("rule", list_rules())
def test_a_stopped_and_resumed_run_is_the_uninterrupted_one_for_every_rule(rule, tmp_path):
    sim = load_simulation("default", [*SMALL, f"arms=[{_arm(rule)}]"])
    whole = run_simulation(sim, out=tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 3"):
        run_simulation(sim, out=tmp_path / "parts", progress=False, stop_after_steps=3)
    resumed = run_simulation(sim, out=tmp_path / "parts", progress=False, resume=True)
    xr.testing.assert_identical(whole.drop_vars(TIMING), resumed.drop_vars(TIMING))
    label = sim.labels[0]
    weights = [torch.load(tmp_path / part / "runs" / f"{label}-seed0" / "checkpoint.pt", weights_only=True)["model"]
               for part in ("whole", "parts")]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
