"""The rule layers of the torch backend: feedback layers, conversion of any network, metrics, the mirror and KP
learning of B. Public as :mod:`neurocircuit.nn` too."""

from .circuit_network import ACTIVATION_FUNCTIONS, CircuitNetwork, network_from_circuit
from .convert import ConversionReport, ConvertedLayer, convert
from .direct import DirectFeedbackHub, direct_matrix
from .feedback_optim import FeedbackOptimizer, attach_feedback_learning
from .feedback_rules import FeedbackRule, get_rule, register_rule
from .functional import feedback_conv2d, feedback_linear
from .initialization import INIT_SCHEMES, initialize
from .layers import FeedbackConv2d, FeedbackLayer, FeedbackLinear, is_feedback_layer
from .metrics import (
    alignment,
    angle_degrees,
    effective_dimensionality,
    feedback_layers,
    gradient_alignment,
    participation_ratio,
    update_alignment,
    weight_alignment,
)
from .mirror import mirror_gain, mirror_layers, mirror_step, mirror_update, spontaneous_noise
from .wiring import direct_layers, wire_direct_feedback

__all__ = [
    "ACTIVATION_FUNCTIONS",
    "CircuitNetwork",
    "network_from_circuit",
    "ConversionReport",
    "ConvertedLayer",
    "convert",
    "DirectFeedbackHub",
    "direct_layers",
    "direct_matrix",
    "wire_direct_feedback",
    "FeedbackOptimizer",
    "attach_feedback_learning",
    "INIT_SCHEMES",
    "initialize",
    "feedback_conv2d",
    "feedback_linear",
    "FeedbackConv2d",
    "FeedbackLayer",
    "FeedbackLinear",
    "is_feedback_layer",
    "alignment",
    "effective_dimensionality",
    "participation_ratio",
    "mirror_gain",
    "mirror_layers",
    "mirror_step",
    "mirror_update",
    "spontaneous_noise",
    "angle_degrees",
    "feedback_layers",
    "gradient_alignment",
    "update_alignment",
    "weight_alignment",
    "FeedbackRule",
    "get_rule",
    "register_rule",
]
