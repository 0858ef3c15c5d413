"""A small layer API on top of the kernels: ``Dense`` and ``Sequential``.

Enough to build, train, inspect and save a multilayer perceptron in a few lines, and plain
enough to read in one sitting: a layer holds its parameters and gradient buffers, ``forward``
keeps what ``backward`` needs (the input and the OUTPUT: the fused kernels take the
activation's derivative from the output, so the pre-activation is never stored), and
``backward`` adds into the gradient buffers until ``zero_grad()``. There is no autograd:
networks that are not a chain (two branches merged by ``maximum_forward``, say) are written
by hand with the functional kernels -- see examples/two_branch.py.

Shapes as ``torch.nn.Linear``: weight ``(out_features, in_features)``, inputs ``(B, in)``.
Optimizers take ``model.parameters()`` and ``model.gradients()`` (two aligned lists).
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from ._core import (ACTIVATIONS, FLOAT_DTYPES, PREACT_ACTIVATIONS, act_code, as_input, describe,
                    result_dtype)
from ._npz import npz_headers, npz_path
from .dense import dense_backward, dense_forward

__all__ = ["Dense", "Sequential"]

_HE = ("relu", "leaky_relu", "softplus", "gelu", "gelu_tanh", "silu")  # He normal init
_XAVIER = ("sigmoid", "tanh", "identity")       # Xavier (Glorot) uniform init
_FORMAT = "pybackprop.nn/1"                     # the layout of a saved .npz
# Dense's configuration in a saved file: each key and the types it may hold.
_CONFIG = {"type": str, "in_features": int, "out_features": int, "activation": str,
           "bias": bool, "negative_slope": numbers.Real, "spectral_norm": bool, "dtype": str}


def _float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Dense:
    """Fully connected layer ``y = act(x @ weight.T + bias)`` with its gradient buffers.

    Parameters
    ----------
    in_features, out_features : int >= 1
    activation : None (the default: no activation, as ``torch.nn.Linear``), "identity",
        "relu", "leaky_relu", "softplus", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu"
    bias : bool, whether the layer has a bias (initialised to 0)
    negative_slope : float >= 0, the slope of leaky_relu
    spectral_norm : bool
        Use ``weight / sigma(weight)`` in the forward pass, sigma from a power iteration
        whose vectors persist between calls (:class:`pybackprop.SpectralNorm`, one iteration
        per training forward, as ``torch.nn.utils.parametrizations.spectral_norm``);
        ``backward`` goes through the spectral-norm backward into ``grad_w``.
    dtype : np.float32 (default) or np.float64
    rng : None, int or numpy.random.Generator, for the initial weights (and the power
        iteration's start vectors)

    Notes
    -----
    Initialisation: He normal, ``std = gain / sqrt(in_features)`` with ``gain = sqrt(2)``
    (``sqrt(2 / (1 + negative_slope^2))`` for leaky_relu), for the ReLU family (relu,
    leaky_relu, softplus, gelu, gelu_tanh, silu); Xavier uniform, ``U(-a, a)`` with
    ``a = sqrt(6 / (in_features + out_features))``, for sigmoid, tanh and identity. Drawn in
    float64 and rounded to ``dtype``.

    Attributes
    ----------
    weight : (out, in) ndarray;  bias : (out,) ndarray or None
    grad_w, grad_b : gradient buffers of the same shapes (grad_b None without bias)
    """

    def __init__(self, in_features: int, out_features: int, activation: Optional[str] = None,
                 bias: bool = True, negative_slope: float = 0.01, spectral_norm: bool = False,
                 dtype: Any = np.float32, rng: Any = None):
        K = _positive_int("in_features", in_features)
        N = _positive_int("out_features", out_features)
        act_code(activation, negative_slope)  # validates both
        self.activation = "identity" if activation is None else activation
        self.negative_slope = float(negative_slope)
        self.dtype = _float_dtype(dtype)
        rng = np.random.default_rng(rng)
        if activation in _HE:
            gain = np.sqrt(2.0 / (1.0 + (self.negative_slope ** 2
                                         if activation == "leaky_relu" else 0.0)))
            w = rng.standard_normal((N, K)) * (gain / np.sqrt(K))
        else:
            a = np.sqrt(6.0 / (K + N))
            w = rng.uniform(-a, a, size=(N, K))
        self.weight = w.astype(self.dtype)
        self.bias = np.zeros(N, self.dtype) if bias else None
        self.grad_w = np.zeros_like(self.weight)
        self.grad_b = np.zeros_like(self.bias) if bias else None
        self.spectral_norm = None
        if spectral_norm:
            from .spectral import SpectralNorm
            self.spectral_norm = SpectralNorm((N, K), dtype=self.dtype, seed=rng)
            self._g_sn = np.empty_like(self.weight)   # gradient w.r.t. weight / sigma
            self._g_w = np.empty_like(self.weight)    # ... carried back to weight
        self._x: Any = None  # what forward keeps for backward (ndarrays, or None before)
        self._y: Any = None
        self._z: Any = None  # the pre-activation, kept for gelu, gelu_tanh and silu
        self._w_used: Any = None

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, "
                f"activation={self.activation!r}, bias={self.bias is not None}"
                + (f", negative_slope={self.negative_slope}"
                   if self.activation == "leaky_relu" else "")
                + (", spectral_norm=True" if self.spectral_norm is not None else "")
                + f", dtype={self.dtype.name})")

    def _input(self, x):
        """``x`` converted and checked against the layer (dtype, ``(..., in)``) before
        anything runs: a bad input changes no state, spectral norm's included."""
        dtype = result_dtype(x=x, weight=self.weight)  # TypeError on mixed dtypes
        xa = as_input("x", x, dtype)
        if xa.ndim < 1 or xa.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"x has {describe(xa)}; expected (..., {self.weight.shape[1]}) "
                             f"for this layer's weight of shape {self.weight.shape}")
        return xa

    def effective_weight(self, *, training: bool = False) -> np.ndarray:
        """The weight the forward pass multiplies by: ``weight``, or ``weight / sigma``
        with spectral norm (``training=True`` runs the layer's power iteration and updates
        its state, as ``forward`` does; ``False`` evaluates sigma from the stored vectors
        and changes nothing)."""
        if self.spectral_norm is None:
            return self.weight
        if training:
            return self.spectral_norm.normalize(self.weight)
        from .spectral import power_iteration, spectral_normalize
        sn = self.spectral_norm
        sigma = power_iteration(self.weight, sn.u.copy(), sn.v.copy(), n_iters=0,
                                eps=sn.eps)
        return spectral_normalize(self.weight, sigma)

    def forward(self, x: ArrayLike) -> np.ndarray:
        """``y = act(x @ W.T + b)`` for ``x`` of shape (..., in), ``y`` (..., out); keeps
        ``x`` (by reference: do not modify it before ``backward``) and ``y`` for
        ``backward`` -- for gelu, gelu_tanh and silu also the pre-activation
        ``z = x @ W.T + b`` (..., out), stored by the same fused call, which their backward
        needs. ``layer(x)`` is the same."""
        xa = self._input(x)
        w = self.effective_weight(training=True)
        z = None
        if self.activation in PREACT_ACTIVATIONS:
            z = np.empty(xa.shape[:-1] + (w.shape[0],), xa.dtype)
        y = dense_forward(xa, w, self.bias, activation=self.activation,
                          negative_slope=self.negative_slope, preact=z)
        self._x, self._y, self._z, self._w_used = xa, y, z, w
        return y

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The forward pass without keeping anything (and, with spectral norm, without
        advancing the power iteration)."""
        return dense_forward(self._input(x), self.effective_weight(), self.bias,
                             activation=self.activation, negative_slope=self.negative_slope)

    def backward(self, dy: ArrayLike, need_dx: bool = True) -> Optional[np.ndarray]:
        """Add the gradients of the last ``forward`` into ``grad_w`` / ``grad_b`` and return
        ``dx`` of the input's shape (None when ``need_dx`` is False)."""
        if self._x is None:
            raise RuntimeError("backward() needs a preceding forward()")
        common: Dict[str, Any] = dict(activation=self.activation, negative_slope=self.negative_slope,
                      need_dx=need_dx, db=self.grad_b, accumulate=True, preact=self._z)
        if self.spectral_norm is None:
            dx, _, _ = dense_backward(dy, self._x, self.weight, self._y, dw=self.grad_w,
                                      **common)
            return dx
        self._g_sn.fill(0)
        dx, _, _ = dense_backward(dy, self._x, self._w_used, self._y, dw=self._g_sn,
                                  **common)
        self.spectral_norm.backward(self._g_sn, self.weight, out=self._g_w)
        self.grad_w += self._g_w
        return dx

    __call__ = forward

    def parameters(self) -> List[np.ndarray]:
        """[weight, bias] (bias left out when absent): the arrays an optimizer updates."""
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """[("weight", weight), ("bias", bias)] (bias left out when absent)."""
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None
                                            else [])

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The arrays that determine the layer's results, by name (the arrays themselves,
        as PyTorch's): weight, bias, and with spectral norm its vectors ``sn_u``, ``sn_v``
        and ``sn_warmed_up``. Plain arrays: ``np.savez(path, **state)`` stores them."""
        return dict(self._arrays())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` (as :meth:`state_dict` returns) into the layer: every key, shape
        and dtype is checked before anything is written (ValueError names the first bad
        one)."""
        own = self._arrays()
        if not hasattr(state, "keys") or set(state.keys()) != set(own):
            raise ValueError(f"state must have exactly the keys {sorted(own)}, got "
                             f"{sorted(state.keys()) if hasattr(state, 'keys') else state!r}")
        for name, a in own.items():
            src = np.asarray(state[name])
            if src.shape != a.shape or src.dtype != a.dtype:
                raise ValueError(f"state[{name!r}] has {describe(src)}; expected "
                                 f"{describe(a)}")
        self._assign(state)

    def _assign(self, arrays):
        self.weight[...] = arrays["weight"]
        if self.bias is not None:
            self.bias[...] = arrays["bias"]
        if self.spectral_norm is not None:
            self.spectral_norm.u[...] = arrays["sn_u"]
            self.spectral_norm.v[...] = arrays["sn_v"]
            self.spectral_norm.warmed_up = bool(arrays["sn_warmed_up"])

    def gradients(self) -> List[np.ndarray]:
        """[grad_w, grad_b], aligned with :meth:`parameters`."""
        return [self.grad_w] + ([self.grad_b] if self.grad_b is not None else [])

    def zero_grad(self) -> None:
        """Reset the gradient buffers to 0 (in place: optimizers may hold them)."""
        for g in self.gradients():
            g.fill(0)

    # -- saving: the configuration and the arrays that determine every result --
    def _config(self):
        return {"type": "Dense", "in_features": self.in_features,
                "out_features": self.out_features, "activation": self.activation,
                "bias": self.bias is not None, "negative_slope": self.negative_slope,
                "spectral_norm": self.spectral_norm is not None, "dtype": self.dtype.name}

    def _arrays(self):
        arrays = {"weight": self.weight}
        if self.bias is not None:
            arrays["bias"] = self.bias
        if self.spectral_norm is not None:
            sn = self.spectral_norm
            arrays.update(sn_u=sn.u, sn_v=sn.v,
                          sn_warmed_up=np.array(bool(sn.warmed_up)))
        return arrays

    @staticmethod
    def _saved_layout(config, where):
        """The arrays a saved layer of ``config`` holds: name -> (shape, dtype). Checks the
        configuration's keys and types (ValueError naming the layer) without allocating."""
        if not isinstance(config, dict) or set(config) != set(_CONFIG):
            raise ValueError(f"{where}: the configuration must be an object with the keys "
                             f"{sorted(_CONFIG)}, got {config!r:.200}")
        for key, kind in _CONFIG.items():
            value = config[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{where}: {key} has the {type(value).__name__} {value!r:.80}")
        if config["type"] != "Dense":
            raise ValueError(f"{where}: unknown layer type {config['type']!r:.80}")
        if config["activation"] not in ACTIVATIONS:
            raise ValueError(f"{where}: activation {config['activation']!r:.80} is not one "
                             f"of {ACTIVATIONS}")
        if config["dtype"] not in ("float32", "float64"):
            raise ValueError(f"{where}: dtype {config['dtype']!r:.80} is not float32 or "
                             "float64")
        K, N = config["in_features"], config["out_features"]
        if K < 1 or N < 1:
            raise ValueError(f"{where}: in_features and out_features must be >= 1, got "
                             f"{K} and {N}")
        if not (0.0 <= config["negative_slope"] < math.inf):
            raise ValueError(f"{where}: negative_slope {config['negative_slope']!r} is not "
                             "finite and >= 0")
        dt = np.dtype(config["dtype"])
        layout = {"weight": ((N, K), dt)}
        if config["bias"]:
            layout["bias"] = ((N,), dt)
        if config["spectral_norm"]:
            layout.update(sn_u=((N,), dt), sn_v=((K,), dt), sn_warmed_up=((), np.dtype(bool)))
        return layout

    @classmethod
    def _from_saved(cls, config, arrays, where):
        layer = cls(config["in_features"], config["out_features"],
                    activation=config["activation"], bias=config["bias"],
                    negative_slope=config["negative_slope"],
                    spectral_norm=config["spectral_norm"], dtype=config["dtype"], rng=0)
        for name, a in layer._arrays().items():
            if name not in arrays:
                raise ValueError(f"{where}: the file has no array {name!r}")
            saved = arrays[name]
            if saved.shape != a.shape or saved.dtype != a.dtype:
                raise ValueError(f"{where}: array {name!r} has {describe(saved)}; expected "
                                 f"{describe(a)}")
        layer._assign(arrays)
        return layer


class Sequential:
    """A chain of layers: ``Sequential(Dense(2, 64), Dense(64, 3, activation="identity"))``.

    Any object with ``forward``, ``backward(dy, need_dx)``, ``predict``, ``parameters``,
    ``gradients`` and ``zero_grad`` can be a layer; ``save``/``load`` and
    ``lipschitz_bound`` need :class:`Dense` layers.
    """

    def __init__(self, *layers: Any):
        for i, layer in enumerate(layers):
            missing = [m for m in ("forward", "backward", "predict", "parameters",
                                   "gradients", "zero_grad") if not hasattr(layer, m)]
            if missing:
                raise TypeError(f"layer {i} ({type(layer).__name__}) lacks {missing}")
        self.layers = list(layers)

    def __repr__(self):
        inner = ",\n".join("    " + repr(layer) for layer in self.layers)
        return f"Sequential(\n{inner}\n)"

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def forward(self, x: ArrayLike) -> np.ndarray:
        """Run every layer's ``forward`` (each keeps what its backward needs); ``model(x)``
        is the same."""
        out: Any = x
        for layer in self.layers:
            out = layer.forward(out)
        return out

    __call__ = forward

    def backward(self, dy: ArrayLike, need_dx: bool = True) -> Optional[np.ndarray]:
        """Back-propagate ``dy`` (the gradient of the loss w.r.t. the output) through every
        layer, adding into their gradient buffers; return the gradient w.r.t. the input
        (None when ``need_dx`` is False: the first layer then skips that product)."""
        g: Any = dy
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_dx=need_dx or i > 0)
        return g

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The output for ``x`` without keeping anything for a backward pass."""
        out: Any = x
        for layer in self.layers:
            out = layer.predict(out)
        return out

    def parameters(self) -> List[np.ndarray]:
        """Every layer's parameters in order (flat list of arrays, updated in place)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """[(name, array)] aligned with :meth:`parameters`: ``"0.weight"``, ``"0.bias"``,
        ``"1.weight"``, ... (layer index, then the layer's name), as PyTorch's."""
        return [(f"{i}.{n}", p) for i, layer in enumerate(self.layers)
                for n, p in layer.named_parameters()]

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every layer's :meth:`Dense.state_dict`, keys prefixed by the layer index
        (``"0.weight"``, ...): flat arrays, ``np.savez(path, **model.state_dict())``."""
        return {f"{i}.{n}": a for i, layer in enumerate(self._dense_layers("state_dict"))
                for n, a in layer.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` (as :meth:`state_dict` returns) into the layers; every layer's
        part is checked before any is written."""
        layers = self._dense_layers("load_state_dict")
        if not hasattr(state, "keys"):
            raise ValueError(f"state must be a mapping of arrays, got {type(state).__name__}")
        parts: List[Dict[str, Any]] = [{} for _ in layers]
        for key in state.keys():
            head, _, name = str(key).partition(".")
            if not head.isdigit() or int(head) >= len(layers):
                raise ValueError(f"state has the key {key!r}, which names no layer")
            parts[int(head)][name] = state[key]
        for i, (layer, part) in enumerate(zip(layers, parts)):  # checks only
            own = layer._arrays()
            if set(part) != set(own):
                raise ValueError(f"layer {i}: state has {sorted(part)}; expected {sorted(own)}")
            for name, a in own.items():
                src = np.asarray(part[name])
                if src.shape != a.shape or src.dtype != a.dtype:
                    raise ValueError(f"state['{i}.{name}'] has {describe(src)}; expected "
                                     f"{describe(a)}")
        for layer, part in zip(layers, parts):
            layer._assign(part)

    def gradients(self) -> List[np.ndarray]:
        """Every layer's gradient buffers, aligned with :meth:`parameters`."""
        return [g for layer in self.layers for g in layer.gradients()]

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def _dense_layers(self, what):
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"{what} needs Dense layers; layer {i} is "
                                f"{type(layer).__name__}")
        return self.layers

    def lipschitz_bound(self, *, certified: bool = False,
                        n_iters: int = 100) -> Tuple[float, List[float]]:
        """Upper bound of the network's Lipschitz constant (2-norm):
        ``prod_l sigma(W_l) * lip(act_l)`` over the effective weights (``W / sigma`` for
        spectral-norm layers), through :func:`pybackprop.lipschitz_bound`.

        ``certified=False``: each sigma estimated by ``n_iters`` power iterations (a lower
        estimate, so the product is an estimate); ``True``: certified per-layer upper
        bounds, so the product is a guarantee. Returns ``(bound, factors)``.
        """
        from .spectral import lipschitz_bound
        factors = []
        for layer in self._dense_layers("lipschitz_bound"):
            _, f = lipschitz_bound([layer.effective_weight()], [layer.activation],
                                   negative_slope=layer.negative_slope, n_iters=n_iters,
                                   certified=certified)
            factors.extend(f)
        bound = 1.0
        for f in factors:
            bound *= f
        return bound, factors

    def save(self, path: Any) -> None:
        """Write the architecture and every array to ``path`` (numpy ``.npz``; numpy adds
        the suffix when missing). ``Sequential.load`` restores it bit for bit, from the same
        ``path`` with or without the suffix."""
        layers = self._dense_layers("save")
        arrays: Dict[str, Any] = {"format": np.array(_FORMAT),
                  "config": np.array(json.dumps([layer._config() for layer in layers]))}
        for i, layer in enumerate(layers):
            for name, a in layer._arrays().items():
                arrays[f"{i}.{name}"] = a
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Any) -> "Sequential":
        """A new ``Sequential`` from a file written by :meth:`save` (no pickles read).

        The file is checked before anything large is allocated: the configuration's keys
        and types, then every array's declared shape and dtype (the .npy headers) against
        the configuration and against the bytes the archive holds for it. A file that is
        not such a save raises ValueError (a missing file OSError)."""
        start = path.tell() if hasattr(path, "seek") else None  # a file object
        path = npz_path(path)
        headers = npz_headers(path)
        if start is not None:
            path.seek(start)
        for key in ("format", "config"):
            shape, dtype, _ = headers.get(key, ((None,), None, None))
            if shape != () or dtype.kind != "U":
                raise ValueError(f"{path} was not written by Sequential.save "
                                 f"(format {_FORMAT})")
        with np.load(path, allow_pickle=False) as f:
            if str(f["format"]) != _FORMAT:
                raise ValueError(f"{path} was not written by Sequential.save "
                                 f"(format {_FORMAT})")
            try:
                configs = json.loads(str(f["config"]))
            except ValueError as e:
                raise ValueError(f"{path}: the configuration is not JSON: {e}") from None
            if not isinstance(configs, list):
                raise ValueError(f"{path}: the configuration must be a list of layers")
            for i, config in enumerate(configs):  # every layer checked before any is built
                where = f"{path}: layer {i}"
                for name, (shape, dtype) in Dense._saved_layout(config, where).items():
                    if f"{i}.{name}" not in headers:
                        raise ValueError(f"{where}: the file has no array {name!r}")
                    saved_shape, saved_dtype, _ = headers[f"{i}.{name}"]
                    if saved_shape != shape or saved_dtype != dtype:
                        raise ValueError(f"{where}: array {name!r} has shape {saved_shape} "
                                         f"and dtype {saved_dtype}; expected shape {shape} "
                                         f"and dtype {dtype}")
            layers = []
            for i, config in enumerate(configs):
                prefix = f"{i}."
                names = Dense._saved_layout(config, "")
                arrays = {name: f[prefix + name] for name in names}
                layers.append(Dense._from_saved(config, arrays, f"{path}: layer {i}"))
        return cls(*layers)
