"""pybackprop's kernels inside PyTorch training loops (optional extra ``torch``).

``import pybackprop`` never imports torch; ``import pybackprop.torch`` does, and raises
ImportError naming the extra when torch is absent. Tensors must be CPU, float32 or float64:
contiguous ones are handed to the C kernels by address (no copy), other layouts are read
from a contiguous copy, parameters updated in place must be contiguous; anything else
raises naming the tensor.

- :mod:`pybackprop.torch.functional`: ``dense``, ``cross_entropy``, ``mse_loss``,
  ``binary_cross_entropy_with_logits``, autograd functions backed by the fused kernels.
- :class:`Linear`: ``nn.Linear``'s parameters and state_dict, with a fused activation.
- :class:`Adam`, :class:`AdamW`, :class:`Adamax`: ``torch.optim.Optimizer`` subclasses on
  the fused multi-tensor kernels, with torch's hyper-parameter names and state layout.
- :func:`spectral_norm`: a parametrization with the one-pass power iteration.
"""
try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised without torch
    raise ImportError("pybackprop.torch needs PyTorch: pip install 'pybackprop[torch]' "
                      "(or pip install torch)") from e

from . import functional
from .modules import Linear, spectral_norm
from .optim import Adam, AdamW, Adamax

__all__ = ["functional", "Linear", "spectral_norm", "Adam", "AdamW", "Adamax"]
