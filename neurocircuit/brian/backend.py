"""The Brian2 backend (``backend = "brian2"``): every arm and seed of a simulation as one Brian2 network.

::

    model = "mlp_digits"          # a dense circuit
    backend = "brian2"
    arms = ["fa", "kp", "wm"]     # rule names, or tables {rule, label, overrides, phases}
    seeds = [0]
    [data]                        # for engaged phases (the one data registry)
    name = "digits"
    [[phases]]                    # the schedule (see neurocircuit.phases); steps = presentation windows
    kind = "mirror"
    steps = 200
    [brian2]                      # RateParameters, values with units: tau = "2 ms", eta_w = "5 Hz"
    variant = "rate"              # or "spiking" (every phase; fa, dfa, kp, wm)
    [brian2.spiking]              # SpikingParameters

It honours the keys in :attr:`BrianBackend.honours` and refuses every other (e.g. a mirror phase's
``learning_rate``: the mirror plasticity here is ``brian2.eta_mirror`` / ``lambda_mirror``, in units).

Results follow the package convention: dims ``arm`` (with the ``rule`` coordinate), ``seed``, ``layer``;
``weight_angle`` and ``norm_ratio`` over ``weight_time`` (s); sampled activity ``<population>_y`` /
``<population>_delta`` over ``time`` (s) and ``<population>_neuron``; ``phase`` labels on both times;
``test_accuracy`` / ``test_loss`` (and with ``[data] validation``, ``val_accuracy`` / ``val_loss``) over ``step``
(training presentations done) with an ``epoch`` coordinate; with ``brian2.twin``, the torch twin's
``twin_test_accuracy`` / ``twin_test_loss`` over ``step`` and ``twin_weight_angle`` over ``weight_time``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._reads import note_read, origins_of, set_origins
from .._toml import close_name
from .._version import __version__
from ..backends import RESULTS_FILE, Backend, register_backend, set_keys
from ..circuit import Circuit
from ..errors import ConfigError
from ..limits import check_data_fits
from ..outdir import arm_table
from ..phases import EngagedPhase
from ..registry import load_circuit
from ..results import read_results, write_netcdf
from .budget import check_run_limits, check_synapse_memory
from .parameters import RateParameters, SpikingParameters, parameters_from_dict

__all__ = ["BrianBackend", "brian_parameters", "initial_weights", "VARIANTS"]

_log = logging.getLogger(__name__)

VARIANTS = ("rate", "spiking")
#: [data] keys that only act through a training-time transform pipeline, which the circuit never sees.
DATA_TRANSFORM_KEYS = frozenset({"channels", "augment"})
#: [brian2] keys only the rate circuit reads, and keys only the spiking variant reads (measured with
#: neurocircuit._reads: tests/test_honour.py fails on any key a variant accepts and never reads).
RATE_ONLY = frozenset({"tau", "tau_feedback", "dale"})
SPIKING_ONLY = frozenset({"delay"})
#: [brian2.spiking] keys of LIF units: refused beside neuron = "poisson".
LIF_ONLY = frozenset({"tau_membrane", "threshold", "reset", "refractory"})
#: [brian2] keys of the forward synapses' learning (engaged and prenatal phases): refused where no arm has one.
FORWARD_LEARNING = frozenset({"eta_w", "lambda_w", "loss", "settle"})


def _phase_kinds(raw: Any) -> set[str]:
    """The phase kinds some arm of the simulation table ``raw`` runs (an arm without phases: the top-level ones,
    or one engaged phase)."""
    top = raw.get("phases", [{"kind": "engaged"}])
    kinds = set()
    for arm in raw.get("arms", []) if isinstance(raw.get("arms"), list) else []:
        phases = arm.get("phases", top) if isinstance(arm, dict) else top
        kinds |= {p.get("kind") for p in phases if isinstance(p, dict)} if isinstance(phases, list) else set()
    return kinds


def _value(raw: Any, where: str) -> Any:
    """The value at dotted key ``where`` of the simulation table ``raw`` (list entries by index)."""
    value = raw
    for part in where.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@register_backend
class BrianBackend(Backend):
    """Explicit rate (or spiking) populations and plastic synapses, simulated in time with units."""

    name = "brian2"
    honours = {
        "top": frozenset({"name", "description", "model", "backend", "seeds", "arms", "data", "train", "phases",
                          "brian2"}),
        "arm": frozenset({"rule", "label", "overrides", "options", "phases"}),
        "train": frozenset({"epochs"}),  # an engaged phase without its own epochs
        # mirror_follows_lr stays refused: the circuit has no learning-rate schedule for B to follow
        "phase.engaged": frozenset({"name", "epochs", "mirror_every", "mirror_steps"}),
        "phase.mirror": frozenset({"name", "steps"}),
        "phase.prenatal": frozenset({"name", "samples", "dataset_size", "noise_std", "inputs", "labels"}),
    }

    def honoured(self, raw: Any) -> dict[str, frozenset[str] | None]:
        """:attr:`honours`, plus the ``[data]``, rule-option and ``[brian2]`` keys the chosen variant reads."""
        from ..data import loader_options

        section = raw.get("brian2", {}) if isinstance(raw.get("brian2", {}), dict) else {}
        spiking = section.get("variant", "rate") == "spiking"
        rate_keys = {f.name for f in dataclasses.fields(RateParameters)} - {"seed", "tau_population"}
        out: dict[str, frozenset[str] | None] = dict(self.honours)
        data = raw.get("data", {}) if isinstance(raw.get("data", {}), dict) else {}
        # The circuit learns from the loaded tensors themselves: options that only act in a training-time transform
        # pipeline (three-channel copies, augmentation) would be loaded and never used.
        out["data"] = loader_options(data.get("name", "digits")) - DATA_TRANSFORM_KEYS
        kinds = _phase_kinds(raw)
        if "engaged" not in kinds:  # no data is presented: a [data] table would be loaded for nothing
            out["data"] = frozenset()
        out["options"] = None  # each rule's options shape its initial B (initial_weights) or its plasticity
        if not kinds & {"engaged", "prenatal"}:  # W never learns: its plasticity settings would change nothing
            rate_keys -= FORWARD_LEARNING
        out["brian2"] = frozenset({"variant"} | (rate_keys - RATE_ONLY if spiking else rate_keys - SPIKING_ONLY)
                                  | ({"spiking"} if spiking else {"tau_population"}))
        spiking_section = section.get("spiking", {}) if isinstance(section.get("spiking", {}), dict) else {}
        lif = spiking_section.get("neuron", "poisson") == "lif"
        # test_windows shapes test presentations: with no engaged phase there are none to shape
        out["brian2.spiking"] = frozenset(f.name for f in dataclasses.fields(SpikingParameters)
                                          if (lif or f.name not in LIF_ONLY)
                                          and (f.name != "test_windows" or "engaged" in kinds)) \
            if spiking else frozenset()
        out["brian2.tau_population"] = frozenset() if spiking else self._population_names(raw.get("model"))
        return out

    def _population_names(self, model: Any) -> frozenset[str]:
        try:
            return frozenset(p.name for p in load_circuit(model).populations)
        except Exception:  # noqa: BLE001 - an unloadable model is named by prepare(), not here
            return frozenset()

    def refuse_unhonoured(self, raw: Any, source: str, schema: Any = None) -> None:
        if isinstance(raw.get("brian2"), dict) and "seed" in raw["brian2"]:  # a key users reach for: say what to do
            raise ConfigError(f"{source}: brian2.seed: Brian2's random numbers are seeded from the simulation's "
                              "seeds; set seeds (or --set seed=N) instead")
        exact = [where for section, key, where in set_keys(raw)
                 if key == "estimate" and section in ("mirror", "phase.mirror") and _value(raw, where) == "exact"]
        if exact:  # the torch backend's control arm: say why there is none here
            raise ConfigError(f"{source}: {', '.join(exact)} = \"exact\" is not honoured by the brian2 backend: its "
                              "mirror is the circuit's own feedback synapses, which learn (brian2.eta_mirror, "
                              "lambda_mirror) and cannot be set to W")
        follows = [where for section, key, where in set_keys(raw)
                   if section == "phase.engaged" and key == "mirror_follows_lr"]
        if follows:  # a torch-backend key users carry over with mirror_every: say why it has no meaning here
            raise ConfigError(f"{source}: {', '.join(follows)} is not honoured by the brian2 backend: the circuit's "
                              "eta_w is constant (no learning-rate schedule for the mirror to follow)")
        self._refuse_unknown_populations(raw, source, schema)
        super().refuse_unhonoured(raw, source, schema)

    def _refuse_unknown_populations(self, raw: Any, source: str, schema: Any) -> None:
        """A ``brian2.tau_population`` name the circuit does not have, said as such (as network.py would), where it
        is the only unhonoured setting (beside others, the one line names them all)."""
        section = raw.get("brian2", {}) if isinstance(raw.get("brian2", {}), dict) else {}
        taus = section.get("tau_population", {})
        if section.get("variant", "rate") == "spiking" or not isinstance(taus, dict):
            return
        try:
            circuit = load_circuit(raw.get("model"))
        except Exception:  # noqa: BLE001 - an unloadable model is named by prepare(), not here
            return
        names = [p.name for p in circuit.populations]
        unknown = [name for name in taus if name not in names]
        if not unknown:
            return
        known = {k: v for k, v in taus.items() if k not in unknown}
        try:
            super().refuse_unhonoured({**raw, "brian2": {**section, "tau_population": known}}, source, schema)
        except ConfigError:
            return  # other keys are refused too: the caller's check names them and these together
        name = unknown[0]
        raise ConfigError(f"{source}: brian2.tau_population.{name}: circuit {circuit.name!r} has "
                          f"no population {name!r}{close_name(name, names)}")

    def _refusal_context(self, raw: Any) -> str:
        section = raw.get("brian2", {}) if isinstance(raw.get("brian2", {}), dict) else {}
        return f" ({section.get('variant', 'rate')} variant)"

    def rule_names(self) -> set[str]:
        from .network import SYNAPSE_RULES

        return set(SYNAPSE_RULES)

    def prepare(self, sim: Any) -> None:
        from ..data import check_validation

        try:
            check_validation(sim.data.get("validation", 0.0), sim.data.get("validation_seed", 0))
        except ConfigError as exc:
            raise ConfigError(f"{sim.source}: {exc}") from None
        variant, rate_params, spiking_params = brian_parameters(sim)
        if rate_params.device == "cuda_standalone":
            from .network import check_cuda_device

            check_cuda_device()  # before anything runs
        if variant == "spiking":
            try:
                spiking_params.check_against(rate_params.dt)
            except ConfigError as exc:
                raise ConfigError(f"{sim.source}: {exc}") from None
        if rate_params.twin and variant == "rate":
            from .twin import check_twin_parameters

            check_twin_parameters(rate_params)
        for arm in sim.arms:
            circuit = load_circuit(sim.model, rule=arm.rule, overrides=arm.overrides, options=arm.options)
            for proj in circuit.projections:
                if proj.kind != "dense":
                    raise ConfigError(f"{sim.source}: model {sim.model_name!r} has a {proj.kind} projection "
                                      f"({proj.name!r}); the Brian2 backend runs dense circuits")
            for pop in circuit.populations:
                if pop.batch_norm:
                    raise ConfigError(f"{sim.source}: model {sim.model_name!r}: population {pop.name!r} has "
                                      "batch_norm; the Brian2 backend's populations see one sample at a time (no "
                                      "batch)")
            phases = sim.schedule_for(arm).phases
            if variant == "spiking":
                from .spiking import SPIKING_RULES

                if rate_params.loss != "mse" and any(p.kind != "mirror" for p in phases):
                    raise ConfigError(f"{sim.source}: brian2.loss = {rate_params.loss!r}: the spiking variant's "
                                      "output errors are mse (target - activity)")
                for rule in (arm.rule, *arm.overrides.values()):
                    if rule not in SPIKING_RULES:
                        raise ConfigError(f"{sim.source}: arm {arm.label!r}: rule {rule!r} is not implemented by the "
                                          f"spiking variant (it implements: {', '.join(SPIKING_RULES)})")
            if any(isinstance(p, EngagedPhase) for p in phases) and "data" not in sim.raw:
                raise ConfigError(f"{sim.source}: arm {arm.label!r} has an engaged phase but there is no [data] table")
        check_synapse_memory(sim)

    def load_data(self, sim: Any) -> Any:
        variant, params, spiking = brian_parameters(sim)
        if not any(isinstance(p, EngagedPhase) for a in sim.arms for p in sim.schedule_for(a).phases):
            check_run_limits(sim, variant, params, (0, 0, 0))  # nothing scored: rate_max bounds nothing
            return None
        from torch.utils.data import TensorDataset

        from ..data import load_splits

        # validate() refused DATA_TRANSFORM_KEYS; every other option is a named parameter of the loader
        options = sim.data.consumed(without=("name",))
        train, val, test, info = load_splits(str(sim.data["name"]), **options)
        if info.task != "classification" or type(train) is not TensorDataset:
            # the circuit is driven by the stored tensors: a set that transforms its samples when they are drawn
            # would be learned untransformed
            raise ConfigError(f"data {info.name!r}: the Brian2 backend learns in-memory classification tasks whose "
                              "samples are the stored tensors")
        check_data_fits(load_circuit(sim.model), info)  # before the protocol is unrolled (the arms share shapes)
        check_run_limits(sim, variant, params, (len(train), len(test), 0 if val is None else len(val)),
                         test_windows=spiking.test_windows if variant == "spiking" else 1,
                         rate_max=float(spiking.rate_max) if variant == "spiking" else 0.0)

        def arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
            return ds.tensors[0].numpy().reshape(len(ds), -1).astype(float), ds.tensors[1].numpy()

        return arrays(train), arrays(test), None if val is None else arrays(val)

    def run_arm(self, sim: Any, arm: Any, seed: int, data: Any, *, out: Path | None = None, resume: bool = False,
                progress: bool | None = None, stop_after_steps: int | None = None, on_record: Any = None
                ) -> xr.Dataset:
        """One arm and seed as one Brian2 network (no checkpoints: a run is one ``Network.run``). With ``out``, the
        finished run's results are written there (``results.nc``, atomically) and ``resume`` reads them back instead
        of running again, so an interrupted simulation loses only the runs that had not finished."""
        if stop_after_steps is not None:
            raise ConfigError("the brian2 backend runs a network in one piece: it cannot stop after N steps")
        from .network import RateCircuit, brian_device
        from .protocol import build_protocol
        from .record import rate_results

        variant, params, spiking_params = brian_parameters(sim)
        note_read("brian2.variant")  # it chooses the network built below
        # each rule option shapes the initial B (initial_weights builds the torch rule) or a plasticity rate
        options = arm.options.consumed() if hasattr(arm.options, "consumed") else arm.options
        circuit = load_circuit(sim.model, rule=arm.rule, overrides=arm.overrides, options=options)
        phases = sim.schedule_for(arm).phases
        protocol = build_protocol(phases, n_in=circuit.input.size, n_out=circuit.output.size,
                                  train=data[0] if data else None, test=data[1] if data else None,
                                  validation=data[2] if data and len(data) > 2 else None,
                                  epochs=sim.train.epochs, seed=seed,
                                  # as in the torch trainer, only a circuit with wm synapses mirrors between samples
                                  interleave=any(circuit.feedback_for(p.name).rule == "wm"
                                                 for p in circuit.projections),
                                  # a spiking readout counts over several windows; the rate variant refuses the key
                                  test_windows=spiking_params.test_windows if variant == "spiking" else 1)
        params = set_origins(dataclasses.replace(params, seed=seed), origins_of(params))
        stored = None if out is None else Path(out) / RESULTS_FILE
        made_by = _run_identity(sim, arm.label, circuit)
        if stored is not None and stored.exists():
            if not resume:
                raise ConfigError(f"{stored} exists: pass --resume to read that finished run back, or choose another "
                                  "--out")
            ds = read_results(stored)  # (after the settings above were read, as a run reads them)
            differs = [k for k, v in made_by.items() if ds.attrs.get(k) != v]
            if differs:
                raise ConfigError(f"{stored}: that finished run was made with another {' and '.join(differs)} "
                                  "(the simulation, model or neurocircuit changed since): run into a new --out, or "
                                  "--overwrite")
            ds.attrs = {k: v for k, v in ds.attrs.items() if k not in made_by}  # as the run returned it
            return ds
        with brian_device(params):
            if variant == "spiking":
                from .spiking import SpikingCircuit

                net: Any = SpikingCircuit(circuit, initial_weights(circuit, seed), params, spiking_params, protocol)
            else:
                net = RateCircuit(circuit, initial_weights(circuit, seed), params, protocol)
            net.run(**_report(f"{arm.label} seed {seed}", float(net.duration), params, progress))
            _check_finite(net, arm.label, seed)
            ds = net.results() if variant == "spiking" else rate_results(net)
        if params.twin and variant == "spiking":
            ds = ds.merge(_rate_twin_results(circuit, params, spiking_params, protocol, seed, ds))
        elif params.twin:
            ds = ds.merge(_twin_results(circuit, params, protocol, seed, ds))
        # Phase labels become variables, so arms with different schedules merge (missing times get "").
        ds = ds.reset_coords([c for c in ("weight_phase", "phase", "layer_rule") if c in ds.coords])
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            write_netcdf(ds.assign_attrs(made_by), stored)
        return ds

    def finish(self, results: xr.Dataset) -> xr.Dataset:
        for name in ("weight_phase", "phase", "layer_rule"):
            if name in results:
                results[name] = results[name].fillna("").astype(str)
        return results

    def attrs(self, sim: Any) -> dict[str, Any]:
        variant, params, _ = brian_parameters(sim)
        # JSON like the config attribute (quantities as the strings a [brian2] table takes)
        return {"variant": variant, "parameters": json.dumps(params.to_dict(), sort_keys=True, default=str),
                "time_convention": "brian2 backend: simulated time in seconds; one step = one presentation "
                                   f"window of {params.presentation}"}


def _run_identity(sim: Any, arm_label: str, circuit: Circuit) -> dict[str, str]:
    """What a finished run's stored results must have been made with to be read back for this run: the simulation's
    settings (all but its seeds), the circuit as built and the package version."""
    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]

    config = sim.to_dict()
    # this arm's own table, not the list of arms: --merge may add arms beside runs already made
    settings = {k: v for k, v in config.items() if k not in ("seeds", "seed", "arms")}
    settings["arm"] = arm_table(config.get("arms", []), arm_label)
    return {"run_settings_hash": digest(settings), "run_circuit_hash": digest(circuit.to_dict()),
            "run_neurocircuit_version": __version__}


def brian_parameters(sim: Any) -> tuple[str, RateParameters, SpikingParameters]:
    """(variant, rate parameters, spiking parameters) of the simulation's ``[brian2]`` section."""
    table = dict(sim.backend_section)
    where = f"{sim.source}: brian2"
    variant = table.pop("variant", "rate")
    if variant not in VARIANTS:
        raise ConfigError(f"{where}.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if "seed" in table:
        raise ConfigError(f"{where}.seed: Brian2's random numbers are seeded from the simulation's seeds; set seeds "
                          "(or --set seed=N) instead")
    learns = any(p.kind in ("engaged", "prenatal") for a in sim.arms for p in sim.schedule_for(a).phases)
    if variant == "spiking" and not learns:
        # nothing learns, so nothing settles: the rate circuit's default must not bound the presentation
        table.setdefault("settle", "0 ms")
    try:
        params, spiking = parameters_from_dict(table, where)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(sim.source) else f"{sim.source}: {text}") from None
    return variant, params, spiking


def initial_weights(circuit: Circuit, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """W, b and B of every projection, drawn exactly as the torch backend draws them for ``seed``.

    For a hidden ``dfa`` projection B is its direct matrix D, of shape (output size, source size).
    """
    import torch

    from ..torch.nn.circuit_network import network_from_circuit
    from ..torch.nn.direct import direct_matrix

    net = network_from_circuit(circuit, seed=seed).double()
    out = {}
    for proj in circuit.projections:
        layer = getattr(net, proj.name)
        if layer.sends_direct:
            feedback = direct_matrix(layer, circuit.output.size, (layer.weight.shape[1],), dtype=torch.float64)
        else:
            feedback = layer.current_feedback().detach()
        out[proj.name] = (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy(),
                          feedback.numpy().copy())
    return out


def _twin_results(circuit: Circuit, params: RateParameters, protocol: Any, seed: int, ds: xr.Dataset) -> xr.Dataset:
    """The torch twin's accuracy and loss on the circuit's test blocks and its B-W angles at the circuit's weight
    snapshots (``twin_weight_angle`` over ``weight_time``, beside ``weight_angle``)."""
    from brian2 import second

    from .twin import run_twin

    # the windows before which the circuit took its snapshots (the last: the end of the protocol)
    windows = np.rint(ds["weight_time"].values / float(params.presentation / second)).astype(int)
    twin = run_twin(circuit, initial_weights(circuit, seed), params, protocol, seed=seed, record_at=windows)
    layers = list(ds["layer"].values)
    at = {k: i for i, k in enumerate(twin.angle_steps)}
    out = xr.Dataset(
        {"twin_weight_angle": (("weight_time", "layer"),
                               [[twin.angles[n][at[k]] for n in layers] for k in windows],
                               {"units": "degree", "long_name": "torch twin: angle between B and Wᵀ"})},
        coords={"weight_time": ds["weight_time"]})
    if "test_accuracy" in ds:
        out["twin_test_accuracy"] = ("step", twin.test_accuracy, {
            "units": "1", "long_name": "torch twin: accuracy on the test set (fraction)"})
        out["twin_test_loss"] = ("step", twin.test_loss, {
            "units": "1", "long_name": "torch twin: loss on the test set"})
    if "val_accuracy" in ds:
        out["twin_val_accuracy"] = ("step", twin.val_accuracy, {
            "units": "1", "long_name": "torch twin: accuracy on the validation set (fraction)"})
        out["twin_val_loss"] = ("step", twin.val_loss, {
            "units": "1", "long_name": "torch twin: loss on the validation set"})
    return out.assign_coords(layer=("layer", layers, dict(ds["layer"].attrs)))


def _rate_twin_results(circuit: Circuit, params: RateParameters, spiking: SpikingParameters, protocol: Any,
                       seed: int, ds: xr.Dataset) -> xr.Dataset:
    """The spiking circuit's twin: the rate circuit on the same protocol, initial weights and plasticity, its
    populations' time constants the spiking synapses' (tau = tau_feedback = tau_synapse). Its test scores and
    weight angles, as ``twin_*`` variables."""
    from brian2 import ms

    from .network import RateCircuit, brian_device
    from .record import rate_results

    rate = dataclasses.replace(params, tau=spiking.tau_synapse, tau_feedback=spiking.tau_synapse, delay=0 * ms,
                               twin=False)
    with brian_device(rate):
        net = RateCircuit(circuit, initial_weights(circuit, seed), rate, protocol)
        net.run()
        twin = rate_results(net)
    out = xr.Dataset()
    for name in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "weight_angle", "norm_ratio"):
        if name in twin and (name not in ("test_accuracy", "test_loss", "val_accuracy", "val_loss") or name in ds):
            out[f"twin_{name}"] = twin[name].reset_coords(drop=True)
            out[f"twin_{name}"].attrs = {**twin[name].attrs,
                                         "long_name": f"rate circuit twin: {twin[name].attrs.get('long_name', name)}"}
    out.attrs["twin"] = "rate circuit"
    return out


def _report(label: str, seconds: float, params: RateParameters, progress: bool | None) -> dict[str, Any]:
    """How ``BrianCircuit.run`` reports its progress: a bar over the simulated time on a terminal, else a log line
    every :data:`~neurocircuit.progress.REPORT_INTERVAL` s. A standalone device runs a compiled program, which cannot
    call back into Python: it writes Brian2's own text report on stderr (unless the log shows warnings only)."""
    from ..progress import TimeReport

    if params.device != "runtime":
        return {"report": "stderr" if _log.isEnabledFor(logging.INFO) else None}
    reporter = TimeReport(label, seconds, unit="s simulated", progress=progress)
    return {"report": reporter.update, "report_period": reporter.period}


def _check_finite(net: Any, label: str, seed: int) -> None:
    for name in net.forward_synapses:
        w, b = net.matrices(name)
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise FloatingPointError(f"arm {label!r}, seed {seed}: the synapses of {name!r} diverged (NaN/inf) by "
                                     f"t = {net.network.t}; lower brian2.eta_w or the input scale")
