"""pybackprop: C-accelerated kernels for backpropagation on the CPU.

Fused dense + activation forward/backward (float32 and float64) behind a small numpy API;
every kernel has a plain-numpy specification in :mod:`pybackprop.reference`.
"""
from ._version import __version__
from ._runtime import (available_archs, available_cpus, build_info, cpu_info, get_arch,
                       get_cpu, get_flush_denormal, get_num_threads, set_arch, set_cpu,
                       set_flush_denormal, set_num_threads)
from ._runtime import _check_environment

_check_environment()
from .dense import (ACTIVATIONS, PREACT_ACTIVATIONS, activation, activation_backward,
                    dense_backward, dense_forward)
from .losses import (REDUCTIONS, binary_cross_entropy_with_logits, maximum_backward,
                     maximum_forward, mse_loss, softmax_cross_entropy)
from .gradcheck import gradcheck
from . import nn
from .nn import Dense, Sequential
from .spectral import (SpectralNorm, lipschitz_bound, lipschitz_constant, power_iteration,
                       sigma_upper_bound, spectral_norm_backward, spectral_normalize)
from . import optim  # noqa: E402  (pybackprop.optim.Adam, AdamW, AdaMax, adam_step, ...)
from ._check import check  # noqa: E402

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "PREACT_ACTIVATIONS",
    "dense_forward",
    "dense_backward",
    "activation",
    "activation_backward",
    "REDUCTIONS",
    "mse_loss",
    "softmax_cross_entropy",
    "binary_cross_entropy_with_logits",
    "maximum_forward",
    "maximum_backward",
    "gradcheck",
    "nn",
    "Dense",
    "Sequential",
    "power_iteration",
    "spectral_normalize",
    "spectral_norm_backward",
    "sigma_upper_bound",
    "lipschitz_bound",
    "lipschitz_constant",
    "SpectralNorm",
    "set_num_threads",
    "get_num_threads",
    "set_arch",
    "get_arch",
    "available_archs",
    "set_cpu",
    "get_cpu",
    "available_cpus",
    "cpu_info",
    "set_flush_denormal",
    "get_flush_denormal",
    "build_info",
    "check",
    "optim",
]
