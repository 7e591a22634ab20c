"""Old path of :mod:`neurocircuit.torch.nn.circuit_network` (kept for one release); ``build_network`` here is the old
name of :func:`~neurocircuit.torch.nn.circuit_network.network_from_circuit`."""

import warnings
from typing import Any

from ..torch.nn.circuit_network import *  # noqa: F403 - this module is that one's old path
from ..torch.nn.circuit_network import network_from_circuit


def build_network(*args: Any, **kwargs: Any) -> Any:
    """Deprecated: :func:`neurocircuit.nn.network_from_circuit` (or :func:`neurocircuit.build_network` for a name)."""
    warnings.warn("neurocircuit.nn.build.build_network is deprecated: use neurocircuit.nn.network_from_circuit",
                  DeprecationWarning, stacklevel=2)
    return network_from_circuit(*args, **kwargs)
