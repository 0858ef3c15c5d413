"""torch.nn modules on pybackprop's kernels: Linear with a fused activation, and a
spectral-norm parametrization with the one-pass power iteration."""
import torch

import pybackprop as _pb
from ._tensors import once_differentiable
from .functional import as_numpy, dense

__all__ = ["Linear", "spectral_norm"]


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` with the activation fused into the GEMM epilogue:
    ``act(x @ weight.T + bias)``, forward and backward on pybackprop's kernels.

    Same parameters (``weight`` (out_features, in_features), ``bias`` (out_features,)),
    initialisation and state_dict as ``torch.nn.Linear``, so ``load_state_dict`` moves
    between them. CPU float32/float64 only.

    activation : None (linear, default), "relu", "leaky_relu", "sigmoid", "tanh",
        "softplus", "gelu", "gelu_tanh" (``approximate="tanh"``), "silu";
        negative_slope : leaky_relu's slope
    """

    def __init__(self, in_features, out_features, bias=True, activation=None,
                 negative_slope=0.01, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        _pb.activation(torch.zeros(1).numpy(), activation or "identity",
                       negative_slope=negative_slope)  # validates both
        self.activation = activation
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return dense(x, self.weight, self.bias, self.activation, self.negative_slope)

    def extra_repr(self):
        return super().extra_repr() + f", activation={self.activation!r}"


class _Normalize(torch.autograd.Function):
    """w / sigma with sigma = u . (w v), u and v held fixed: the spectral-norm backward."""

    @staticmethod
    def forward(ctx, w, u, v, sigma):
        wn = as_numpy(w, "weight")
        out = torch.from_numpy(_pb.spectral_normalize(wn, sigma))
        ctx.save_for_backward(w, u, v)
        ctx.sigma = sigma
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        w, u, v = ctx.saved_tensors
        dw = _pb.spectral_norm_backward(as_numpy(g, "grad_output"), as_numpy(w, "weight"),
                                        u.numpy(), v.numpy(), ctx.sigma)
        return torch.from_numpy(dw), None, None, None


class _SpectralNorm(torch.nn.Module):
    """The parametrization: ``weight / sigma(weight)`` with sigma from a power iteration
    whose vectors ``_u`` (out,), ``_v`` (in,) persist as buffers; ``n_power_iterations``
    passes per training forward (one pass over the weight each), none in eval mode."""

    def __init__(self, weight, n_power_iterations=1, eps=1e-12):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"spectral_norm: a 2-D weight (out, in) expected, got shape "
                             f"{tuple(weight.shape)}")
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.n_power_iterations, self.eps = int(n_power_iterations), float(eps)
        N, K = weight.shape
        with torch.no_grad():
            u = torch.nn.functional.normalize(weight.new_empty(N).normal_(0, 1), dim=0,
                                              eps=eps)
            v = torch.nn.functional.normalize(weight.new_empty(K).normal_(0, 1), dim=0,
                                              eps=eps)
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)
        self._power(weight, 15)  # warm-up, as torch's spectral_norm

    def _power(self, weight, n_iters):
        with torch.no_grad():
            return float(_pb.power_iteration(as_numpy(weight, "weight"), self._u.numpy(),
                                             self._v.numpy(), n_iters=n_iters,
                                             eps=self.eps))

    def forward(self, weight):
        sigma = self._power(weight, self.n_power_iterations if self.training else 0)
        return _Normalize.apply(weight, self._u.clone(), self._v.clone(), sigma)


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12):
    """Register ``module.<name> = W / sigma(W)`` as a parametrization
    (``torch.nn.utils.parametrize``), as ``torch.nn.utils.parametrizations.spectral_norm``
    with ``dim=0`` on a 2-D weight, but with pybackprop's one-pass power iteration (each
    iteration reads W once) and its fused backward. Returns the module."""
    weight = getattr(module, name)
    torch.nn.utils.parametrize.register_parametrization(
        module, name, _SpectralNorm(weight, n_power_iterations, eps))
    return module
