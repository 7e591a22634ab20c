"""The torch rate backend: feedback layers, conversion of any network, metrics and KP learning of B."""

from .build import ACTIVATION_FUNCTIONS, CircuitNetwork, build_network
from .convert import ConversionReport, ConvertedLayer, convert
from .direct import DirectFeedbackHub, direct_layers, direct_matrix, wire_direct_feedback
from .feedback_optim import FeedbackOptimizer, attach_feedback_learning
from .functional import feedback_conv2d, feedback_linear
from .init import INIT_SCHEMES, initialize
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
from .rules import FeedbackRule, get_rule, register_rule

__all__ = [
    "ACTIVATION_FUNCTIONS",
    "CircuitNetwork",
    "build_network",
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
