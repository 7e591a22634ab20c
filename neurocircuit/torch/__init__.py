"""The torch rate backend, one folder beside :mod:`neurocircuit.brian`.

=================  ==========================================================================================
``backend``        :class:`~.backend.TorchBackend`: a simulation's model run through each arm's phases
``settings``       the ``[torch]`` section (:class:`~.settings.TorchSettings`)
``networks``       :func:`~.networks.build_network`: a circuit or a torchvision classifier as a torch network
``trainer``        :class:`~.trainer.Trainer`: the training loop, records, checkpoints, DDP
``fitting``        :func:`~.fitting.fit`: the trainer with one engaged phase, for models and data built in Python
``phase_runners``  the mirror and prenatal phases
``optim``          optimizers by name, ``[optimizer]``, the learning-rate schedule (torch's ``LambdaLR``)
``sampling``       resumable shuffled epochs, evaluation shards, batches on the device
``distributed``    device choice and the ``torchrun`` process group
``checkpoint``     atomic checkpoints and the checks a resumed run passes
``records``        records as an ``xarray.Dataset``
``stopping``       SIGINT/SIGTERM as a request honoured between steps
``evaluation``     loss and top-1/top-5 on a held-out set, summed over ranks
``nn``             the rule layers (public as :mod:`neurocircuit.nn`)
=================  ==========================================================================================

Importing this package imports nothing of its own (``import neurocircuit.torch.nn`` does not load the trainer);
its main names load their module on first use: ``from neurocircuit.torch import fit, Trainer, build_network``.
"""

import importlib
from typing import Any

#: The package's main names and the modules that hold them (imported when first asked for).
_NAMES = {"fit": "fitting", "Trainer": "trainer", "build_network": "networks", "TorchBackend": "backend",
          "TorchSettings": "settings"}
__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
