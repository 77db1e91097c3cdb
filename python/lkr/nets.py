r"""Networks with analytic forward passes and parameter gradients (docs/theory.md section 2).

Fully connected, one hidden layer (:class:`FCNet`)

.. math:: f(x) = N_1^{-1/2} \sum_k v_k \, \sigma(w_k \cdot x / \sqrt{N_0})

Convolutional (:class:`CNNNet`, one filter w_a shared by all patches x_i of a
:class:`~lkr.PatchGeometry`) and locally connected (:class:`LCNNet`, a filter w_{ai} per
patch)

.. math:: f(x) = (N_c N_p)^{-1/2} \sum_{a,i} v_{ai} \, \sigma(w_a \cdot x_i / \sqrt{M})

Deep fully connected (:class:`DeepFCNet`, L hidden layers of widths N_1..N_L)

.. math:: h^1 = W^1 x / \sqrt{N_0}, \quad h^l = W^l \sigma(h^{l-1}) / \sqrt{N_{l-1}},
          \quad f = N_L^{-1/2} v \cdot \sigma(h^L).

Priors: first-layer (and hidden) weights ~ N(0, 1/lambda0) (``lambdas[l-1]`` for W^l in the
deep net), readout ~ N(0, 1/lambda1) (``lambdas[L]``). Activations ``linear``, ``erf`` (the
plain error function, whose NNGP map is the arcsine formula) and ``relu``.

The protocol every network here follows (and :class:`LinearizedNet` too, so that training
code works unchanged):

``net.params``
    dict name -> array; ``net.priors`` dict name -> prior precision.
``net.forward(X, params=None)``
    f(X), shape (P,); or (chains, P) when every params array carries an extra leading
    chain axis.
``net.vjp(X, r, params=None)``
    dict of d/dparams of sum_mu r[mu] f(x_mu); r of shape (P,) or (chains, P). The chain
    axis of the result is that of the params or of r (both, when they agree). The gradient of
    the loss (1/2) sum (y - f)^2 is ``-vjp(X, y - f)``.
``net.value_and_grad(X, y, params=None)``
    (f, gradient of (1/2) sum (y - f)^2): forward and ``-vjp(X, y - f)`` in one pass (for
    CNN/LCN one fused compiled kernel, each activation evaluated once).
``net.jvp(X, tangents, params=None)``
    J(X) t, the directional derivative of f along the parameter tangents t.
``net.with_params(params)``, ``net.init_params(seed, chains=None)``, ``net.num_params``,
``net.activation``, ``net.config`` (JSON-friendly), ``net.flatten(params)`` /
``net.unflatten(vector)`` (the parameter order of :func:`lkr.ntk.jacobian`'s columns).

Batched chains are one array computation (broadcast matmuls, or one compiled call for
CNN/LCN), never a Python loop over chains. The patch forward, backward and tangent passes of
CNN/LCN run in the C++ extension for NumPy arrays (float32 and float64, GIL released,
OpenMP); CuPy arrays use the same formulas as array expressions.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from . import backend
from ._validate import count as _count
from ._validate import positive as _positive

from .activations import check_activation
from .geometry import PatchGeometry

__all__ = ["FCNet", "DeepFCNet", "CNNNet", "LCNNet", "LinearizedNet", "init_params",
           "linearize", "fit_linearized", "sigma", "sigma_prime"]


# -- activations ------------------------------------------------------------------------
def _erf(xp):
    if xp is np:
        from scipy.special import erf
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf
    return erf


def sigma(activation: str, h):
    """The activation sigma(h), elementwise (``erf`` is the plain error function)."""
    xp = backend.array_module(h)
    if activation == "linear":
        return h
    if activation == "erf":
        return _erf(xp)(h)
    return xp.maximum(h, 0)


def sigma_prime(activation: str, h):
    """sigma'(h): 1, (2/sqrt(pi)) exp(-h^2), or the step (h > 0) for relu."""
    xp = backend.array_module(h)
    if activation == "linear":
        return xp.ones_like(h)
    if activation == "erf":
        return (2.0 / math.sqrt(math.pi)) * xp.exp(-h * h)
    return (h > 0).astype(h.dtype)


def _activation_pair(activation: str, h, derivative: bool):
    """(sigma(h), sigma'(h) or None): one compiled pass for NumPy arrays."""
    xp = backend.array_module(h)
    if xp is np and activation != "linear" and hasattr(backend.core(), "activation_pair"):
        h = np.ascontiguousarray(h)
        out = backend.core().activation_pair(h, activation=activation, derivative=derivative,
                                             nthreads=backend.get_num_threads())
        return out if derivative else (out, None)
    return sigma(activation, h), (sigma_prime(activation, h) if derivative else None)






# -- the shared protocol ----------------------------------------------------------------
class _Net:
    """Base class: parameter bookkeeping, chain axes, validation."""

    #: parameter names in flattening order, filled by subclasses with their shapes
    _shapes: Dict[str, tuple]
    priors: Dict[str, float]
    activation: str

    # subclasses implement _forward(X, p), _vjp(X, r, p), _jvp(X, p, t), _inputs(X)

    def _init(self, seed, params, dtype):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if params is None:
            self._params = self.init_params(seed)
        else:
            checked, chains = self._check_params(params)
            if chains is not None:
                raise ValueError("a net's own params have no chain axis; pass chained params "
                                 "to forward/vjp instead")
            self._params = checked

    # sizes
    @property
    def params(self) -> dict:
        """The parameters, name -> array (shapes in :attr:`param_shapes`)."""
        return dict(self._params)

    @property
    def param_shapes(self) -> dict:
        """name -> shape, in the order of :meth:`flatten`."""
        return dict(self._shapes)

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(math.prod(s) for s in self._shapes.values()))

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "type")
        return f"{type(self).__name__}({cfg})"

    # params
    def init_params(self, seed=None, chains: Optional[int] = None) -> dict:
        """Fresh draws from the prior: each array ~ N(0, 1/precision).

        Parameters
        ----------
        seed : int or numpy.random.Generator, optional
        chains : int, optional
            When given, every array gets a leading axis of this length (independent draws).
        """
        rng = np.random.default_rng(seed)
        lead = () if chains is None else (_count(chains, "chains"),)
        out = {}
        for name, shape in self._shapes.items():
            std = 1.0 / np.sqrt(np.asarray(self.priors[name], dtype=np.float64))
            out[name] = (rng.standard_normal(lead + shape) * std).astype(self.dtype)
        return out

    def with_params(self, params) -> "_Net":
        """A new net of the same configuration with the given (unchained) parameters."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        checked, chains = self._check_params(params)
        if chains is not None:
            raise ValueError("with_params takes params without a chain axis")
        new._params = checked
        return new

    def _check_params(self, params):
        """Validated params and the chain count (None when unchained)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict with keys {list(self._shapes)}, got "
                            f"{type(params).__name__}")
        if set(params) != set(self._shapes):
            raise ValueError(f"params must have keys {sorted(self._shapes)}, got {sorted(params)}")
        out, chains = {}, set()
        for name, shape in self._shapes.items():
            a = backend.asarray(params[name], f"params[{name!r}]")
            backend.check_floating(a, f"params[{name!r}]")
            if tuple(a.shape) == shape:
                chains.add(None)
            elif a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
                chains.add(int(a.shape[0]))
            else:
                raise ValueError(f"params[{name!r}] must have shape {shape} or (chains, "
                                 f"{', '.join(map(str, shape))}), got {tuple(a.shape)}")
            out[name] = a
        if len(chains) > 1:
            raise ValueError(f"params arrays disagree on the chain axis: {sorted(map(str, chains))} "
                             "(every array needs the same leading chain axis, or none)")
        xp = backend.array_module(*out.values())
        dtype = backend.result_dtype(*out.values())
        out = {k: xp.asarray(v, dtype=dtype) for k, v in out.items()}
        return out, chains.pop()

    def _resolve(self, X, params, r=None, rname="r"):
        """Validated (inputs, params, r, xp, chains) in one dtype (r may be y, named rname)."""
        p, chains = (dict(self._params), None) if params is None else self._check_params(params)
        Xa = backend.asarray(X, "X")
        backend.check_floating(Xa, "X")
        xp = backend.array_module(Xa, *p.values())
        Z = self._inputs(Xa)
        backend.check_finite(Z, "X")
        P = Z.shape[0]
        if r is not None:
            r = backend.asarray(r, rname)
            if backend.array_module(r) is not xp:
                raise TypeError(f"{rname} must live on the same device as X")
            backend.check_floating(r, rname)
            if r.ndim not in (1, 2) or r.shape[-1] != P:
                raise ValueError(f"{rname} must have shape ({P},) or (chains, {P}), got {tuple(r.shape)}")
            if r.ndim == 2:
                if chains is not None and r.shape[0] != chains:
                    raise ValueError(f"{rname} has {r.shape[0]} chains but params have {chains}")
                chains = int(r.shape[0])
            backend.check_finite(r, rname)
        dtype = backend.result_dtype(Z, *p.values(), *(() if r is None else (r,)))
        Z = xp.asarray(Z, dtype=dtype)
        p = {k: xp.asarray(v, dtype=dtype) for k, v in p.items()}
        if r is not None:
            r = xp.asarray(r, dtype=dtype)
        return Z, p, r, xp, chains

    # protocol
    def forward(self, X, params=None):
        """f(X): shape (P,), or (chains, P) for params with a leading chain axis."""
        Z, p, _, _, _ = self._resolve(X, params)
        return self._forward(Z, p)

    __call__ = forward

    def vjp(self, X, r, params=None) -> dict:
        """d/dparams of sum_mu r[mu] f(x_mu), as a dict shaped like params.

        r has shape (P,) or (chains, P); the result carries a chain axis when params or r do.
        """
        Z, p, r, _, _ = self._resolve(X, params, r)
        return self._vjp(Z, r, p)

    def value_and_grad(self, X, y, params=None):
        """f(X) and the gradient of the loss (1/2) sum_mu (y_mu - f(x_mu))^2 w.r.t. params.

        The same as ``f = forward(X, params)`` and ``-vjp(X, y - f, params)``, in one pass
        where the net has one (CNN/LCN: a fused compiled kernel, each activation evaluated
        once; FC: the layers are computed once). y has shape (P,) or (chains, P); f has the
        chain axis of params or y.
        """
        f = self.forward(X, params)
        r = backend.asarray(y, "y") - f
        g = self.vjp(X, r, params)
        if r.ndim > f.ndim:
            f = backend.array_module(r).broadcast_to(f, r.shape).copy()
        return f, {k: -v for k, v in g.items()}

    def jvp(self, X, tangents, params=None):
        """J(X) t = sum over parameters of (d f / d theta) t_theta: shape (P,) or (chains, P).

        ``tangents`` is a dict shaped like params (optionally with a chain axis, independent
        of whether params have one).
        """
        Z, p, _, xp, _ = self._resolve(X, params)
        t, _ = self._check_params(tangents)
        dtype = Z.dtype
        t = {k: xp.asarray(v, dtype=dtype) for k, v in t.items()}
        return self._jvp(Z, p, t)

    def flatten(self, params=None):
        """Concatenate params (in :attr:`param_shapes` order) into (..., num_params)."""
        p, chains = (dict(self._params), None) if params is None else self._check_params(params)
        xp = backend.array_module(*p.values())
        lead = () if chains is None else (chains,)
        return xp.concatenate([p[k].reshape(lead + (-1,)) for k in self._shapes], axis=-1)

    def unflatten(self, vector) -> dict:
        """Inverse of :meth:`flatten`: (..., num_params) -> dict (views where possible)."""
        vector = backend.asarray(vector, "vector")
        if vector.ndim not in (1, 2) or vector.shape[-1] != self.num_params:
            raise ValueError(f"vector must have shape ({self.num_params},) or (chains, "
                             f"{self.num_params}), got {tuple(vector.shape)}")
        lead = tuple(vector.shape[:-1])
        out, start = {}, 0
        for k, shape in self._shapes.items():
            n = math.prod(shape)
            out[k] = vector[..., start:start + n].reshape(lead + shape)
            start += n
        return out


def init_params(net, seed=None, chains: Optional[int] = None) -> dict:
    """Fresh prior draws for ``net`` (see :meth:`_Net.init_params`)."""
    return net.init_params(seed, chains=chains)


# -- fully connected --------------------------------------------------------------------
def _T(a):
    return a.swapaxes(-1, -2)


class DeepFCNet(_Net):
    r"""Fully connected network with L hidden layers (docs/theory.md section 2, deep FC).

    .. math:: h^1 = W^1 x / \sqrt{N_0}, \quad h^l = W^l \sigma(h^{l-1}) / \sqrt{N_{l-1}},
              \quad f(x) = N_L^{-1/2} \sum_k v_k \sigma(h^L_k)

    Parameters
    ----------
    N0 : int
        Input dimension.
    widths : sequence of int
        Hidden widths (N_1, ..., N_L).
    activation : {"linear", "erf", "relu"}
    lambdas : sequence of float, optional
        Prior precisions (lambda_0, ..., lambda_L): W^l ~ N(0, 1/lambda_{l-1}), the readout
        v ~ N(0, 1/lambda_L). Default all ones.
    seed : int, optional
        Seed of the prior draw of the initial parameters.
    params : dict, optional
        Parameters to use instead of a prior draw.
    dtype : float32 or float64

    Parameters are ``W1`` (N1, N0), ..., ``WL`` (NL, N_{L-1}) and ``v`` (NL,).
    """

    def __init__(self, N0, widths: Sequence[int], activation="erf", lambdas=None, seed=None, *,
                 params=None, dtype=np.float64):
        self.N0 = _count(N0, "N0")
        if np.ndim(widths) == 0:
            widths = (widths,)
        self.widths = tuple(_count(w, "widths") for w in widths)
        if not self.widths:
            raise ValueError("widths must name at least one hidden layer")
        self.activation = check_activation(activation)
        L = len(self.widths)
        if lambdas is None:
            lambdas = (1.0,) * (L + 1)
        lambdas = tuple(lambdas)
        if len(lambdas) != L + 1:
            raise ValueError(f"lambdas must have {L + 1} entries (lambda_0..lambda_L) for {L} "
                             f"layers, got {len(lambdas)}")
        self.lambdas = tuple(_positive(l, f"lambdas[{i}]") for i, l in enumerate(lambdas))
        self._setup_names()
        self._init(seed, params, dtype)

    def _setup_names(self):
        L = len(self.widths)
        self._wnames = [f"W{l + 1}" for l in range(L)]
        dims = (self.N0,) + self.widths
        self._shapes = {n: (dims[l + 1], dims[l]) for l, n in enumerate(self._wnames)}
        self._shapes["v"] = (dims[-1],)
        self.priors = {n: self.lambdas[l] for l, n in enumerate(self._wnames)}
        self.priors["v"] = self.lambdas[L]

    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.widths)

    @property
    def config(self) -> dict:
        return dict(type="DeepFCNet", N0=self.N0, widths=list(self.widths),
                    activation=self.activation, lambdas=list(self.lambdas))

    def _inputs(self, X):
        if X.ndim != 2 or X.shape[1] != self.N0:
            raise ValueError(f"X must have shape (P, {self.N0}), got {tuple(X.shape)}")
        return X

    # the layers: activations a^l (a^0 = x) and, on request, sigma'(h^l)
    def _layers(self, X, p, derivative=False):
        dims = (self.N0,) + self.widths
        a, acts, ders = X, [X], []
        for l, n in enumerate(self._wnames):
            h = a @ _T(p[n])
            h *= 1.0 / math.sqrt(dims[l])  # h is a fresh array: scale in place
            a, d = _activation_pair(self.activation, h, derivative)
            acts.append(a)
            ders.append(d)
        return acts, ders

    def _forward(self, X, p):
        acts, _ = self._layers(X, p)
        v = p["v"]
        return (acts[-1] @ v[..., None])[..., 0] / math.sqrt(self.widths[-1])

    def _deltas(self, ders, p, r=None):
        """delta^l = r * d f / d h^l for each layer, shape (..., P, N_l), first layer first
        (r = None: d f / d h^l itself, as the NTK needs)."""
        dims = (self.N0,) + self.widths
        v = p["v"] / math.sqrt(dims[-1])
        delta = ders[-1] * v[..., None, :]
        if r is not None:
            delta = delta * r[..., :, None]
        out = [delta]
        for l in range(len(self._wnames) - 1, 0, -1):
            delta = delta @ p[self._wnames[l]]
            delta *= 1.0 / math.sqrt(dims[l])
            delta *= ders[l - 1]
            out.append(delta)
        return out[::-1]

    def _vjp(self, X, r, p):
        acts, ders = self._layers(X, p, derivative=True)
        return self._grads(acts, ders, p, r)

    def value_and_grad(self, X, y, params=None):
        Z, p, yv, _, _ = self._resolve(X, params, y, rname="y")
        acts, ders = self._layers(Z, p, derivative=True)
        f = (acts[-1] @ p["v"][..., None])[..., 0] / math.sqrt(self.widths[-1])
        r = f - yv  # the gradient of (1/2)|y - f|^2 is the vjp of f - y
        if r.ndim > f.ndim:  # one parameter set, several label vectors
            f = backend.array_module(f).broadcast_to(f, r.shape).copy()
        return f, self._grads(acts, ders, p, r)

    def _grads(self, acts, ders, p, r):
        dims = (self.N0,) + self.widths
        deltas = self._deltas(ders, p, r)
        g = {}
        for l, n in enumerate(self._wnames):
            g[n] = (_T(deltas[l]) @ acts[l]) / math.sqrt(dims[l])
        g["v"] = (_T(acts[-1]) @ r[..., :, None])[..., 0] / math.sqrt(dims[-1])
        return g

    def _jvp(self, X, p, t):
        dims = (self.N0,) + self.widths
        a, da = X, None
        for l, n in enumerate(self._wnames):
            h = (a @ _T(p[n])) / math.sqrt(dims[l])
            dh = a @ _T(t[n])
            if da is not None:
                dh = dh + da @ _T(p[n])
            dh = dh / math.sqrt(dims[l])
            a, d = _activation_pair(self.activation, h, True)
            da = d * dh
        v, dv = p["v"], t["v"]
        out = (da @ v[..., None])[..., 0] + (a @ dv[..., None])[..., 0]
        return out / math.sqrt(dims[-1])


class FCNet(DeepFCNet):
    r"""One-hidden-layer fully connected network, f(x) = N1^{-1/2} sum_k v_k sigma(w_k.x/sqrt(N0)).

    Parameters
    ----------
    N0, N1 : int
        Input dimension and hidden width.
    activation : {"linear", "erf", "relu"}
    lambda0, lambda1 : float
        Prior precisions: W ~ N(0, 1/lambda0), v ~ N(0, 1/lambda1).
    seed : int, optional
        Seed of the prior draw of the initial parameters.
    params : dict, optional
        ``{"W": (N1, N0), "v": (N1,)}`` to use instead of a prior draw.
    dtype : float32 or float64

    Examples
    --------
    >>> net = FCNet(10, 64, activation="erf", seed=0)
    >>> net.forward(np.ones((3, 10))).shape
    (3,)
    """

    def __init__(self, N0, N1, activation="erf", lambda0=1.0, lambda1=1.0, seed=None, *,
                 params=None, dtype=np.float64):
        lambdas = (_positive(lambda0, "lambda0"), _positive(lambda1, "lambda1"))
        super().__init__(N0, (_count(N1, "N1"),), activation, lambdas, seed, params=params,
                         dtype=dtype)

    def _setup_names(self):
        super()._setup_names()
        self._wnames = ["W"]
        self._shapes = {"W": self._shapes["W1"], "v": self._shapes["v"]}
        self.priors = {"W": self.lambdas[0], "v": self.lambdas[1]}

    @property
    def N1(self) -> int:
        return self.widths[0]

    @property
    def lambda0(self) -> float:
        return self.lambdas[0]

    @property
    def lambda1(self) -> float:
        return self.lambdas[1]

    @property
    def config(self) -> dict:
        return dict(type="FCNet", N0=self.N0, N1=self.N1, activation=self.activation,
                    lambda0=self.lambda0, lambda1=self.lambda1)


# -- convolutional and locally connected -------------------------------------------------
def _use_core(xp) -> bool:
    # NumPy arrays run the compiled patch passes; CuPy arrays the array expressions below.
    return xp is np and hasattr(backend.core(), "patch_forward")


class _PatchNet(_Net):
    """CNN and LCN share everything but the filter's patch index."""

    local = False

    def __init__(self, geometry, channels, activation="erf", lambda0=1.0, lambda1=1.0,
                 seed=None, *, params=None, dtype=np.float64):
        if not isinstance(geometry, PatchGeometry):
            raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.channels = _count(channels, "channels")
        self.activation = check_activation(activation)
        self.lambda0 = _positive(lambda0, "lambda0")
        self.lambda1 = _positive(lambda1, "lambda1")
        Nc, Np, M = self.channels, geometry.num_patches, geometry.patch_size
        self._shapes = {"W": (Nc, Np, M) if self.local else (Nc, M), "v": (Nc, Np)}
        self.priors = {"W": self.lambda0, "v": self.lambda1}
        self._init(seed, params, dtype)

    @property
    def config(self) -> dict:
        return dict(type=type(self).__name__, geometry=self.geometry.to_dict(),
                    channels=self.channels, activation=self.activation, lambda0=self.lambda0,
                    lambda1=self.lambda1)

    def _inputs(self, X):
        return self.geometry.patches(X, "X")

    # compiled path (NumPy): arrays with an explicit chain axis of 1 when unchained
    def _core_call(self, fn, Z, *arrays):
        c = backend.core()
        args = [np.ascontiguousarray(Z)]
        for a, base_ndim in arrays:
            a = np.ascontiguousarray(a)
            args.append(a if a.ndim > base_ndim else a[None])
        return getattr(c, fn)(*args, local=self.local, activation=self.activation,
                              nthreads=backend.get_num_threads())

    def _forward(self, Z, p):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        if _use_core(backend.array_module(Z)):
            out = self._core_call("patch_forward", Z, (W, wd), (v, 2))
            return out if v.ndim > 2 else out[0]
        return _reference_forward(Z, W, v, self.activation, self.local)

    def _vjp(self, Z, r, p):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        if _use_core(backend.array_module(Z)):
            dW, dv = self._core_call("patch_vjp", Z, (W, wd), (v, 2), (r, 1))
            if v.ndim == 2 and r.ndim == 1:
                dW, dv = dW[0], dv[0]
            return {"W": dW, "v": dv}
        dW, dv = _reference_vjp(Z, W, v, r, self.activation, self.local)
        return {"W": dW, "v": dv}

    def value_and_grad(self, X, y, params=None):
        Z, p, yv, xp, _ = self._resolve(X, params, y, rname="y")
        if not _use_core(xp):
            return super().value_and_grad(X, y, params)
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        f, dW, dv = self._core_call("patch_value_and_grad", Z, (W, wd), (v, 2), (yv, 1))
        if v.ndim == 2 and yv.ndim == 1:
            f, dW, dv = f[0], dW[0], dv[0]
        return f, {"W": dW, "v": dv}

    def _jvp(self, Z, p, t):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        if _use_core(backend.array_module(Z)):
            out = self._core_call("patch_jvp", Z, (W, wd), (v, 2), (t["W"], wd), (t["v"], 2))
            return out if (v.ndim > 2 or t["v"].ndim > 2) else out[0]
        return _reference_jvp(Z, W, v, t["W"], t["v"], self.activation, self.local)


class CNNNet(_PatchNet):
    r"""One-hidden-layer CNN: f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(w_a . x_i / sqrt(M)).

    One filter w_a (M entries) per channel a, shared by the Np patches x_i of the geometry.

    Parameters
    ----------
    geometry : PatchGeometry
        How inputs are cut into patches (Np patches of M entries).
    channels : int
        Nc, the number of filters (the width N of the theory).
    activation : {"linear", "erf", "relu"}
    lambda0, lambda1 : float
        Prior precisions: W ~ N(0, 1/lambda0), v ~ N(0, 1/lambda1).
    seed : int, optional
    params : dict, optional
        ``{"W": (Nc, M), "v": (Nc, Np)}`` instead of a prior draw.
    dtype : float32 or float64
    """

    local = False


class LCNNet(_PatchNet):
    r"""One-hidden-layer locally connected net: a filter w_{ai} per channel and patch,
    f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(w_{ai} . x_i / sqrt(M)).

    Parameters as :class:`CNNNet`; params ``{"W": (Nc, Np, M), "v": (Nc, Np)}``.
    """

    local = True


# NumPy references of the patch passes (also the CuPy path). Shapes: Z (P, Np, M),
# W (..., Nc, M) or (..., Nc, Np, M), v (..., Nc, Np), r (..., P); H is (..., P, Nc, Np).
def _preact(Z, W, local):
    xp = backend.array_module(Z, W)
    M = Z.shape[-1]
    if local:
        return xp.einsum("pim,...aim->...pai", Z, W) / math.sqrt(M)
    return xp.einsum("pim,...am->...pai", Z, W) / math.sqrt(M)


def _reference_forward(Z, W, v, activation, local):
    xp = backend.array_module(Z, W, v)
    Nc, Np = v.shape[-2:]
    S = sigma(activation, _preact(Z, W, local))
    return xp.einsum("...pai,...ai->...p", S, v) / math.sqrt(Nc * Np)


def _reference_vjp(Z, W, v, r, activation, local):
    xp = backend.array_module(Z, W, v, r)
    Nc, Np = v.shape[-2:]
    M = Z.shape[-1]
    H = _preact(Z, W, local)
    c = 1.0 / math.sqrt(Nc * Np)
    dv = xp.einsum("...p,...pai->...ai", r, sigma(activation, H)) * c
    G = r[..., :, None, None] * v[..., None, :, :] * sigma_prime(activation, H) * c
    if local:
        dW = xp.einsum("...pai,pim->...aim", G, Z) / math.sqrt(M)
    else:
        dW = xp.einsum("...pai,pim->...am", G, Z) / math.sqrt(M)
    return dW, dv


def _reference_jvp(Z, W, v, dW, dv, activation, local):
    xp = backend.array_module(Z, W, v)
    Nc, Np = v.shape[-2:]
    H = _preact(Z, W, local)
    dH = _preact(Z, dW, local)
    out = (xp.einsum("...pai,...ai->...p", sigma_prime(activation, H) * dH, v)
           + xp.einsum("...pai,...ai->...p", sigma(activation, H), dv))
    return out / math.sqrt(Nc * Np)


# -- linearised networks -----------------------------------------------------------------
class LinearizedNet(_Net):
    r"""The first-order Taylor model of a network around its parameters w0:

    .. math:: f_{lin}(u, x) = f(w_0, x) + J(x) u, \qquad J(x) = \partial f(w_0, x) / \partial w.

    It follows the same protocol as the nets, with the single parameter ``u`` of shape
    (num_params,) (the displacement, in the order of ``base.flatten``), so training code
    works unchanged. ``priors["u"]`` is the vector of per-parameter prior precisions of the
    base net (the prior of w0 + u centred at w0). f_lin is linear in u: its vjp does not
    depend on u.
    """

    def __init__(self, base, u=None):
        if not isinstance(base, _Net) or isinstance(base, LinearizedNet):
            raise TypeError(f"base must be one of lkr's nets, got {type(base).__name__}")
        self.base = base
        self.activation = base.activation
        self.dtype = base.dtype
        n = base.num_params
        self._shapes = {"u": (n,)}
        self.priors = {"u": np.concatenate([np.full(math.prod(s), base.priors[k], np.float64)
                                            for k, s in base.param_shapes.items()])}
        self._params = {"u": np.zeros(n, self.dtype)} if u is None else \
            self._check_params({"u": u})[0]

    @property
    def config(self) -> dict:
        return dict(type="LinearizedNet", base=self.base.config)

    def _inputs(self, X):
        return X  # the base net validates

    def init_params(self, seed=None, chains=None) -> dict:
        """Prior draws of u ~ N(0, 1/priors['u'])."""
        return super().init_params(seed, chains)

    def forward(self, X, params=None):
        """f(w0, X) + J(X) u: (P,), or (chains, P) for u of shape (chains, num_params)."""
        p, _ = (self._params, None) if params is None else self._check_params(params)
        f0 = self.base.forward(X)
        return f0 + self.base.jvp(X, self.base.unflatten(p["u"]))

    __call__ = forward

    def vjp(self, X, r, params=None) -> dict:
        """{"u": J(X)^T r}: (num_params,) or (chains, num_params)."""
        if params is not None:
            self._check_params(params)
        g = self.base.vjp(X, r)
        xp = backend.array_module(*g.values())
        lead = tuple(g["v"].shape[:-len(self.base.param_shapes["v"])])
        return {"u": xp.concatenate([g[k].reshape(lead + (-1,)) for k in self.base.param_shapes],
                                    axis=-1)}

    def jvp(self, X, tangents, params=None):
        """J(X) t_u."""
        t, _ = self._check_params(tangents)
        return self.base.jvp(X, self.base.unflatten(t["u"]))


def linearize(net) -> LinearizedNet:
    """The linearised model f(w0, x) + J(x) u of ``net`` around its current parameters."""
    return LinearizedNet(net)


def fit_linearized(net, X, y, X_test=None, y_test=None, ridge: float = 0.0) -> dict:
    r"""Least-squares fit of a linearised network's displacement u.

    Solves :math:`\min_u |J u - (y - f(w_0, X))|^2 + \text{ridge} |u|^2` with J the Jacobian
    at w0 (minimum-norm solution through LAPACK ``gelsd`` when ridge = 0; the kernel form
    u = J^T (J J^T + ridge I)^{-1} r when P <= num_params, else the normal equations).

    Parameters
    ----------
    net : FCNet, DeepFCNet, CNNNet, LCNNet or LinearizedNet
        Linearised around its parameters (a LinearizedNet around its base's w0).
    X, y : arrays
        Training inputs and labels (P,).
    X_test, y_test : arrays, optional
        Test set; errors are reported when y_test is given.
    ridge : float
        Non-negative ridge penalty on u.

    Returns
    -------
    dict
        ``u`` (num_params,), ``train_error`` = mean_mu (y - f_lin)^2 over the training set,
        ``train_prediction``; with a test set also ``test_prediction`` and ``test_error``.
    """
    from scipy import linalg as sla

    from .ntk import jacobian

    base = net.base if isinstance(net, LinearizedNet) else net
    if not isinstance(base, _Net):
        raise TypeError(f"net must be one of lkr's nets, got {type(net).__name__}")
    try:
        ridge = float(ridge)
    except (TypeError, ValueError):
        raise TypeError(f"ridge must be a real number, got {ridge!r}") from None
    if not np.isfinite(ridge) or ridge < 0:
        raise ValueError(f"ridge must be non-negative and finite, got {ridge!r}")
    J = backend.to_numpy(jacobian(base, X)).astype(np.float64)
    y = np.asarray(backend.to_numpy(backend.asarray(y, "y")), dtype=np.float64)
    P = J.shape[0]
    if y.shape != (P,):
        raise ValueError(f"y must have shape ({P},), got {y.shape}")
    backend.check_finite(y, "y")
    f0 = np.asarray(backend.to_numpy(base.forward(X)), dtype=np.float64)
    b = y - f0
    if ridge == 0:
        u = sla.lstsq(J, b, check_finite=False)[0]
    elif P <= J.shape[1]:
        A = J @ J.T
        A[np.diag_indices_from(A)] += ridge
        u = J.T @ sla.solve(A, b, assume_a="pos")
    else:
        A = J.T @ J
        A[np.diag_indices_from(A)] += ridge
        u = sla.solve(A, J.T @ b, assume_a="pos")
    pred = f0 + J @ u
    out = dict(u=u, train_prediction=pred, train_error=float(np.mean((y - pred) ** 2)))
    if X_test is not None:
        lin = LinearizedNet(base, u.astype(base.dtype))
        pt = np.asarray(backend.to_numpy(lin.forward(X_test)), dtype=np.float64)
        out["test_prediction"] = pt
        if y_test is not None:
            yt = np.asarray(backend.to_numpy(backend.asarray(y_test, "y_test")), np.float64)
            if yt.shape != pt.shape:
                raise ValueError(f"y_test must have shape {pt.shape}, got {yt.shape}")
            out["test_error"] = float(np.mean((yt - pt) ** 2))
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    return out
