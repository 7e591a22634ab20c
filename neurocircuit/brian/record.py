"""Brian2 monitors -> xarray, in the package's results convention (shared with the torch backend)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr
from brian2 import second

from ..torch.nn.metrics import angle_degrees

#: Attributes of a phase-label coordinate (a label has no unit: "1").
PHASE_ATTRS = {"long_name": "phase of the schedule", "units": "1"}

__all__ = ["rate_results", "alignment_over_time", "activity_dataset", "phase_labels", "readout_scores", "block_scores",
           "accuracy_dataset"]


def phase_labels(times: np.ndarray, phase: np.ndarray, presentation: float) -> np.ndarray:
    """The phase name of each time (s), from the per-step labels."""
    index = np.clip(np.floor(times / presentation + 1e-9).astype(int), 0, len(phase) - 1)
    return np.asarray(phase[index], dtype=str)


def _angle(b: np.ndarray, w: np.ndarray) -> float:
    return angle_degrees(torch.from_numpy(b), torch.from_numpy(w))


def _upper(key: str, values: list[np.ndarray], matrices: dict[str, list[np.ndarray]]) -> str:
    """Dimension name of a snapshot's first axis: ``post`` (W's layout), ``output`` for direct (dfa) feedback."""
    return "output" if key.endswith("_B") and values[0].shape != matrices[key[:-2] + "_W"][0].shape else "post"


def alignment_over_time(net: Any) -> xr.Dataset:
    """``weight_angle`` (B vs W^T, degrees) and ``norm_ratio`` per layer at every weight snapshot and at the end."""
    names = list(net.forward_synapses)
    times = list(net.snapshot_times())
    snapshots: list[int | None] = list(range(len(times)))
    end = float(net.network.t / second)
    if not times or times[-1] < end - 1e-12:
        times.append(end)
        snapshots.append(None)
    angles = np.zeros((len(times), len(names)))
    ratios = np.zeros_like(angles)
    matrices: dict[str, list[np.ndarray]] = {}
    for k, snap in enumerate(snapshots):
        for m, name in enumerate(names):
            w, b = net.matrices(name, snap)
            direct = b.shape != w.shape  # dfa: B comes from the output population, no angle to W
            angles[k, m] = math.nan if direct else _angle(b, w)
            ratios[k, m] = math.nan if direct else np.linalg.norm(b) / max(np.linalg.norm(w), 1e-300)
            matrices.setdefault(f"{name}_W", []).append(w.astype(np.float32))
            matrices.setdefault(f"{name}_B", []).append(b.astype(np.float32))
    presentation = float(net.params.presentation / second)
    times_arr = np.asarray(times)
    # Weight snapshots (float32), W and B in W's layout (post x pre); missing synapses are 0.
    snapshots_vars = {
        key: (("weight_time", f"{key[:-2]}_{_upper(key, values, matrices)}", f"{key[:-2]}_pre"), np.stack(values),
              {"units": "1", "long_name": f"{'forward weights W' if key.endswith('_W') else 'feedback weights B'} "
                                          f"of {key[:-2]} (W's layout)"})
        for key, values in matrices.items()} if net.params.record_weights else {}
    return xr.Dataset(
        {"weight_angle": (("weight_time", "layer"), angles,
                          {"units": "degree", "long_name": "angle between B and Wᵀ"}),
         "norm_ratio": (("weight_time", "layer"), ratios, {"units": "1", "long_name": "||B|| / ||W||"}),
         **snapshots_vars},
        coords={"weight_time": ("weight_time", times_arr, {"units": "s", "long_name": "simulated time"}),
                "weight_phase": ("weight_time", phase_labels(times_arr, net.protocol.phase, presentation),
                                 dict(PHASE_ATTRS)),
                "layer": ("layer", names, {"long_name": "layer (projection of the circuit)", "units": "1"}),
                "layer_rule": ("layer", [net.rules[n] for n in names],
                               {"long_name": "feedback rule of the layer", "units": "1"})})


def activity_dataset(net: Any, transform: Callable[[Any], np.ndarray] = np.asarray,
                     long_name: str = "{kind} of {name} (rate, dimensionless)") -> xr.Dataset:
    """The sampled activity monitors (``<pop>_y``, ``<pop>_delta``) as (time, neuron) variables, values passed
    through ``transform``, with the phase of each time and the recorded neurons (indices into the population) as
    coordinates."""
    presentation = float(net.params.presentation / second)
    data: dict[str, Any] = {}
    times = None
    coords: dict[str, Any] = {}
    for name in net.layers:
        for key, kind in (("y", "activity"), ("delta", "error activity")):
            mon = net.monitors[f"{name}_{key}"]
            times = np.asarray(mon.t / second)
            values = transform(getattr(mon, mon.record_variables[0])).T  # (time, neuron)
            data[f"{name}_{key}"] = (("time", f"{name}_neuron"), values,
                                     {"units": "1", "long_name": long_name.format(kind=kind, name=name)})
            coords[f"{name}_neuron"] = (f"{name}_neuron", np.asarray(mon.record, dtype=int), {
                "long_name": f"recorded neuron of {name} (index in the population)", "units": "1"})
    coords.update({"time": ("time", times, {"units": "s", "long_name": "simulated time"}),
                   "phase": ("time", phase_labels(times, net.protocol.phase, presentation), dict(PHASE_ATTRS))})
    return xr.Dataset(data, coords=coords)


def readout_scores(outputs: np.ndarray, labels: np.ndarray, targets: np.ndarray, loss: str) -> tuple[float, float]:
    """(accuracy, mean loss) of a test block's outputs (samples x units): the loss the circuit learns with —
    ``cross_entropy`` of softmax(y), or ``mse`` 0.5 ||target - y||^2."""
    accuracy = float((outputs.argmax(1) == labels).mean())
    if loss == "cross_entropy":
        shifted = outputs - outputs.max(1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        return accuracy, float(-(targets * log_p).sum(1).mean())
    return accuracy, float(0.5 * ((targets - outputs) ** 2).sum(1).mean())


def block_scores(readout: np.ndarray, protocol: Any, blocks: list[tuple[int, int, int]], loss: str
                 ) -> tuple[list[float], list[float]]:
    """(accuracies, losses) of the scored ``blocks`` of ``protocol``, from ``readout`` (steps + 1, n_out): the
    state at the start of each window, so a window's answer is the next row; a sample shown for several windows
    (``protocol.test_windows``) answers at the end of its last."""
    rows = [protocol.answer_steps(start, end) for start, end, _ in blocks]
    scores = [readout_scores(readout[at + 1], protocol.labels[at], protocol.target[at], loss) for at in rows]
    return [a for a, _ in scores], [b for _, b in scores]


def _accuracy(net: Any) -> xr.Dataset | None:
    if "readout" not in net.monitors or not net.protocol.test_blocks:
        return None
    readout = np.asarray(net.monitors["readout"].y).T  # (steps, n_out): state at the start of each window
    return accuracy_dataset(net.protocol, readout, net.params.loss)


def accuracy_dataset(protocol: Any, readout: np.ndarray, loss: str) -> xr.Dataset:
    """``test_accuracy`` / ``test_loss`` (and ``val_*`` where the protocol has validation blocks) over ``step``
    (training presentations done), from ``readout`` in the :func:`block_scores` convention."""
    acc, losses = block_scores(readout, protocol, protocol.test_blocks, loss)
    steps = [int(protocol.learn_b[:start].sum()) for start, _, _ in protocol.test_blocks]
    epochs = [epoch for _, _, epoch in protocol.test_blocks]
    loss_name = "cross-entropy of softmax(y)" if loss == "cross_entropy" else "0.5 ||target - y||^2"
    data = {"test_accuracy": ("step", acc, {"units": "1", "long_name": "accuracy on the test set (fraction)"}),
            "test_loss": ("step", losses, {"units": "1", "long_name": f"{loss_name} on the test set"})}
    if protocol.val_blocks:  # one validation block right after each test block: the same record steps
        val_acc, val_loss = block_scores(readout, protocol, protocol.val_blocks, loss)
        data["val_accuracy"] = ("step", val_acc, {"units": "1", "long_name": (
            "accuracy on the validation set (held out of the training data; fraction)")})
        data["val_loss"] = ("step", val_loss, {"units": "1", "long_name": (
            f"{loss_name} on the validation set (held out of the training data)")})
    return xr.Dataset(data, coords={
        "step": ("step", steps, {"long_name": "training presentations done", "units": "1"}),
        "epoch": ("step", epochs, {"long_name": "epochs of training done", "units": "epoch"})})


def rate_results(net: Any) -> xr.Dataset:
    """Alignment over time, sampled activity and (with test presentations) accuracy of one run."""
    parts = [alignment_over_time(net), activity_dataset(net)]
    accuracy = _accuracy(net)
    if accuracy is not None:
        parts.append(accuracy)
    ds = xr.merge(parts, compat="override", join="outer")
    ds.attrs["weight_transport"] = int(net.weight_transport)
    return ds
