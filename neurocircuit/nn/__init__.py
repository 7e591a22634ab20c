"""The public name of the torch backend's rule layers: everything in :mod:`neurocircuit.torch.nn`.

``import neurocircuit.nn as ncnn`` and ``from neurocircuit.nn import FeedbackLinear, convert, mirror_step`` keep
working; so do the old submodule paths (``neurocircuit.nn.rules``, ``.init``, ``.build``, ``.mirror``, ...), which
are the modules of :mod:`neurocircuit.torch.nn` under their old names for one release.
"""

import importlib
import sys
import warnings
from typing import Any

from ..torch.nn import *  # noqa: F403 - this package *is* the public name of those layers
from ..torch.nn import __all__ as _layer_names
from ..torch.nn.circuit_network import network_from_circuit

__all__ = list(_layer_names)

#: Old submodule names -> the modules of neurocircuit.torch.nn that hold them now.
# (build and direct are small modules of their own here: their old contents span two new modules.)
_MOVED = {"rules": "feedback_rules", "init": "initialization", "layers": "layers", "functional": "functional",
          "metrics": "metrics", "mirror": "mirror", "convert": "convert", "feedback_optim": "feedback_optim"}
for _old, _new in _MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = _module = importlib.import_module(f"neurocircuit.torch.nn.{_new}")
    globals().setdefault(_old, _module)  # a function of that name (convert) stays the function


def __getattr__(name: str) -> Any:
    if name == "build_network":
        warnings.warn("neurocircuit.nn.build_network is deprecated: use neurocircuit.nn.network_from_circuit (or "
                      "neurocircuit.build_network for a name, path or circuit)", DeprecationWarning, stacklevel=2)
        return network_from_circuit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
