"""The mirror phase in the torch backend (Akrout et al.'s weight mirror).

Every ``wm`` layer gets its own noise x in its input population (independent across layers: noise propagated
from below would no longer be i.i.d.). The postsynaptic signal is the forward *drive* y = W x — the activity
with its bias part removed and before the nonlinearity — so it is zero-mean and E[x y^T] = sigma^2 W^T exactly;
passing it through a nonlinearity around a bias b would give W^T diag(phi'(b)) instead, which matches W^T only up
to a per-unit scale. The feedback synapses then learn ``dB = eta * mean(y x^T) - lambda * B`` (in W's layout),
and optionally B is rescaled to ||W||. For convolutions the same rule is the correlation of noise input patches
with the output maps, computed with the convolution weight-gradient kernel. The control ``estimate = "exact"``
sets B := W instead.

Only B buffers change: W, biases, BatchNorm statistics and optimizer state are never touched.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...phases import MirrorSettings
from .functional import _convolution_backward
from .layers import FeedbackConv2d, FeedbackLayer

__all__ = ["mirror_layers", "spontaneous_noise", "mirror_update", "mirror_step", "mirror_gain"]


def mirror_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    """(name, layer) of the layers whose rule learns in mirror phases."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer) and m.rule.learns_in_mirror]


def mirror_gain(settings: MirrorSettings) -> float | None:
    """The multiple of W that B settles at, ``learning_rate * noise_std**2 / decay`` (None with ``normalize``, which
    holds ||B|| at ||W||; 1 for the exact estimate, which copies W).

    E[y x^T] = sigma^2 W^T for either noise kind, so the fixed point of dB = eta y x^T - lambda B is
    (eta sigma^2 / lambda) W; with ``decay = 1`` every update *is* eta sigma^2 times the burst's estimate of W.
    ``mirror_follows_lr`` scales eta and lambda together and leaves it unchanged. The error a ``wm`` layer sends
    down is scaled by this gain, so through k mirrored layers the error reaching the first is scaled by about
    gain^(k-1): measured (README, ``sweep_wm_robustness``), LeNet-5 trains at 1, loses 5-7 pp at 0.5, and stays at
    chance or diverges at 0.09 and 4.5; in the one-hidden-layer MLP the gain only multiplies the hidden layer's
    learning rate.
    """
    if settings.estimate == "exact":
        return 1.0
    if settings.normalize:
        return None
    return settings.learning_rate * settings.noise_std ** 2 / settings.decay


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    # Draw on the generator's device, so a CPU generator gives the same noise whatever the model's device.
    return generator.device if generator is not None else device


def spontaneous_noise(shape: tuple[int, ...], settings: MirrorSettings, *, generator: torch.Generator | None,
                      device: torch.device, dtype: torch.dtype) -> Tensor:
    """Zero-mean i.i.d. noise of variance ``noise_std**2`` (Gaussian, or uniform on +-sqrt(3) sigma), on
    ``device``."""
    where = _draw_device(generator, device)
    if settings.noise == "gaussian":
        x = torch.randn(shape, generator=generator, device=where, dtype=dtype)
    else:
        x = torch.rand(shape, generator=generator, device=where, dtype=dtype).mul_(2).sub_(1).mul_(math.sqrt(3))
    return x.mul_(settings.noise_std).to(device)


def _active_mask(n: int, fan_in: int, settings: MirrorSettings, generator: torch.Generator | None,
                 device: torch.device) -> Tensor | None:
    """Which of ``n`` units (input channels for a conv, whose ``fan_in`` is channels x kernel size) are spontaneously
    active, each with probability active_units / fan_in (None: all of them), on the device it is drawn on."""
    if settings.active_units is None or settings.active_units >= fan_in:
        return None
    return torch.rand(n, generator=generator, device=_draw_device(generator, device)) < settings.active_units / fan_in


def _indices_would_sync(mask: Tensor) -> bool:
    """Whether turning ``mask`` into indices waits for a device: ``nonzero`` on an accelerator copies the count to
    the host, a stall per layer and mirror step (53 on ResNet-50), so there the noise is masked instead."""
    return mask.device.type != "cpu"


def _hebbian(w: Tensor, x: Tensor) -> Tensor:
    """mean(y x^T) over the n noise samples x (n, k), y = x w^T the drive through w (out, k).

    That is w (x^T x) / n as well: with few active inputs (k small next to n and out) the k x k noise covariance
    first costs k^2 (n + out) multiply-adds instead of 2 n k out — e.g. ResNet-18's layer4 with 64 active inputs
    and 2048 noise samples, 10 M instead of 134 M — so the cheaper order is taken (the same matrix up to rounding).
    """
    n, k = x.shape
    out = w.shape[0]
    if k * (n + out) < 2 * n * out:
        return w @ (x.t() @ x).div_(n)
    return (x @ w.t()).t() @ x / n


@functools.lru_cache(maxsize=1024)
def _candidates(n: int, p: float, tail: float = 1e-15) -> int:
    """How many units a static-size draw keeps: the smallest k with P(Binomial(n, p) > k) < ``tail``, so an active
    unit is dropped in fewer than one draw in 10^15."""
    if p >= 1.0:
        return n
    log_pmf = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p)
               + (n - k) * math.log1p(-p) for k in range(n + 1)]
    above = 0.0  # P(count > k), summed from the top
    for k in range(n, -1, -1):
        if above + math.exp(log_pmf[k]) >= tail:
            return k
        above += math.exp(log_pmf[k])
    return 0


def _candidate_columns(mask: Tensor, settings: MirrorSettings, fan_in: int) -> tuple[Tensor, Tensor]:
    """A fixed number of candidate units without a host sync (``nonzero`` would need the active count on the host):
    the active ones first (a stable sort of the mask), then silent ones to fill up, and which of them are active.
    The silent candidates' noise is zeroed, so their columns of the Hebbian term are exactly zero and their decay
    factor is 1: the same distribution as indexing the active units (unless more are active than
    :func:`_candidates` keeps, below 1e-15 per draw), with a different noise stream (n x the candidates' inputs)."""
    count = _candidates(mask.numel(), min(1.0, settings.active_units / fan_in))
    columns = torch.argsort((~mask).to(torch.uint8), stable=True)[:count]
    return columns, mask.index_select(0, columns)


@torch.no_grad()
def mirror_update(layer: FeedbackLayer, settings: MirrorSettings, *, generator: torch.Generator | None = None,
                  rate_scale: float = 1.0, masked: bool | None = None) -> None:
    """One mirror step on one layer: noise in, Hebbian update of B's active synapses, bound (or B := W exactly).

    ``rate_scale`` multiplies both the learning rate and the decay (so the bound ||B|| stays put), e.g. to
    make the feedback plasticity follow the forward learning-rate schedule. With sparse activity
    (``active_units``), ``masked`` picks how the silent inputs are left out: True takes a fixed number of candidate
    units and zeroes the silent ones' noise (static sizes, so no host sync, but a few times the active inputs'
    products), False indexes the active ones (``nonzero``, which waits for the device); None, the
    default, masks where the activity is drawn on an accelerator and indexes on the CPU. Both draw from the same
    distribution; their random streams differ. With ``masked``, an empty draw still rescales B under ``normalize``.
    With ``settings.estimate = "exact"`` B is set to W exactly instead (no noise is drawn; ``rate_scale`` and
    ``masked`` change nothing).
    """
    if settings.estimate == "exact":
        layer.feedback_weight.copy_(layer.weight.detach())
        return
    weight, feedback = layer.weight.detach(), layer.feedback_weight
    grouped = isinstance(layer, FeedbackConv2d) and layer.groups > 1
    fan_in = math.prod(weight.shape[1:])
    mask = None if grouped else _active_mask(weight.shape[1], fan_in, settings, generator, weight.device)
    columns, on = None, None  # None: every input column, all active
    if mask is not None and (_indices_would_sync(mask) if masked is None else masked):
        columns, on = _candidate_columns(mask.to(weight.device), settings, fan_in)
    elif mask is not None:
        columns = mask.nonzero().squeeze(1).to(weight.device)
        if columns.numel() == 0:
            return  # no input was active: B is untouched
    w = weight if columns is None else weight.index_select(1, columns)
    n = settings.batch_size
    if not grouped:
        # A linear layer, or a convolution whose noise sample is one receptive field (one output position), the
        # cheapest sample, with the statistics of a dense layer with in = C * kh * kw (dilation only spaces the
        # taps out): either way a matrix product with W as (out, in).
        flat = w.reshape(w.shape[0], -1)
        x = spontaneous_noise((n, flat.shape[1]), settings, generator=generator, device=w.device, dtype=w.dtype)
        if on is not None:  # silent candidates: no noise (a conv channel's kh x kw inputs are channel-major)
            x.mul_(on.to(x.dtype).repeat_interleave(flat.shape[1] // on.numel()))
        hebb = _hebbian(flat, x).reshape(w.shape)
    else:
        # Grouped: the same receptive-field samples, through the grouped convolution and its weight-gradient kernel.
        kh, kw = w.shape[2:]
        dh, dw = layer.dilation
        size = (n, w.shape[1] * layer.groups, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        x = spontaneous_noise(size, settings, generator=generator, device=w.device, dtype=w.dtype)
        y = F.conv2d(x, w, None, 1, 0, layer.dilation, layer.groups)
        _, hebb, _ = _convolution_backward(y, x, w, None, [1, 1], [0, 0], list(layer.dilation), False, [0, 0],
                                           layer.groups, [False, True, False])
        hebb /= n * y.shape[2] * y.shape[3]
    decay, rate = 1.0 - min(1.0, settings.decay * rate_scale), settings.learning_rate * rate_scale
    if on is not None:  # a silent candidate keeps its column: factor 1 and a zero Hebbian term
        decay = (1.0 - (1.0 - decay) * on.to(feedback.dtype)).reshape((1, -1) + (1,) * (w.dim() - 2))
    if columns is None:
        feedback.mul_(decay).add_(hebb.to(feedback.dtype), alpha=rate)
    else:
        updated = feedback.index_select(1, columns).mul_(decay).add_(hebb.to(feedback.dtype), alpha=rate)
        feedback.index_copy_(1, columns, updated)
    if settings.normalize:
        feedback.mul_(torch.linalg.vector_norm(weight) / torch.linalg.vector_norm(feedback).clamp_min(1e-30))


def mirror_step(model: nn.Module, settings: MirrorSettings, *, generator: torch.Generator | None = None,
                rate_scale: float = 1.0, layers: list[tuple[str, FeedbackLayer]] | None = None,
                masked: bool | None = None) -> int:
    """One mirror step on every ``wm`` layer of ``model``; returns how many layers it updated.

    Loops that mirror often pass ``layers`` (from :func:`mirror_layers`) to skip the module walk; ``masked`` as in
    :func:`mirror_update`.
    """
    layers = mirror_layers(model) if layers is None else layers
    for _, layer in layers:
        mirror_update(layer, settings, generator=generator, rate_scale=rate_scale, masked=masked)
    return len(layers)
