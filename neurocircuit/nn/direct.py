"""Old path of :mod:`neurocircuit.torch.nn.direct` and of the dfa wiring, now :mod:`neurocircuit.torch.nn.wiring`
(kept for one release)."""

from ..torch.nn.direct import DirectFeedbackHub, direct_input, direct_matrix, direct_signal
from ..torch.nn.wiring import direct_layers, wire_direct_feedback

__all__ = ["DirectFeedbackHub", "direct_input", "direct_matrix", "direct_signal", "direct_layers",
           "wire_direct_feedback"]
