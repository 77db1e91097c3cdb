r"""Fully connected nets: :class:`DeepFCNet` (L hidden layers) and :class:`FCNet` (one).

.. math:: h^1 = W^1 x / \sqrt{N_0}, \quad h^l = W^l \sigma(h^{l-1}) / \sqrt{N_{l-1}},
          \quad f = N_L^{-1/2} v \cdot \sigma(h^L).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .. import backend
from .._kernel_args import resolve_lambdas
from .._validate import count as _count
from .._validate import positive as _positive
from .._validate import width as _width
from ..activations import check_activation
from ._activations import sigma_pair
from ._base import FusedObjective, Net, width_argument

__all__ = ["DeepFCNet", "FCNet"]


def _T(a):
    return a.swapaxes(-1, -2)


class DeepFCNet(Net):
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
        self.widths = tuple(_width(w, "widths") for w in widths)
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

    def _hidden_units(self) -> int:
        return sum(self.widths)

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

    def layers(self, X, p, derivative=False):
        """Activations [a^0 = X, a^1, ..., a^L] and, with ``derivative``, [sigma'(h^l)]
        (else Nones), for validated inputs and params (see :meth:`resolve`); a part of the
        interface :mod:`lkr.ntk` uses."""
        dims = (self.N0,) + self.widths
        a, acts, ders = X, [X], []
        for l, n in enumerate(self._wnames):
            h = a @ _T(p[n])
            h *= 1.0 / math.sqrt(dims[l])  # h is a fresh array: scale in place
            a, d = sigma_pair(self.activation, h, derivative)
            acts.append(a)
            ders.append(d)
        return acts, ders

    def _forward(self, X, p):
        acts, _ = self.layers(X, p)
        v = p["v"]
        return (acts[-1] @ v[..., None])[..., 0] / math.sqrt(self.widths[-1])

    def deltas(self, ders, p, r=None):
        """delta^l = r * d f / d h^l for each layer, shape (..., P, N_l), first layer first
        (r = None: d f / d h^l itself, as the NTK needs); ``ders`` from :meth:`layers`."""
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
        acts, ders = self.layers(X, p, derivative=True)
        return self._grads(acts, ders, p, r)

    def value_and_grad(self, X, y, params=None):
        Z, p, yv, _, _ = self.resolve(X, params, y, rname="y")
        acts, ders = self.layers(Z, p, derivative=True)
        f = (acts[-1] @ p["v"][..., None])[..., 0] / math.sqrt(self.widths[-1])
        r = f - yv  # the gradient of (1/2)|y - f|^2 is the vjp of f - y
        if r.ndim > f.ndim:  # one parameter set, several label vectors
            f = backend.array_module(f).broadcast_to(f, r.shape).copy()
        return f, self._grads(acts, ders, p, r)

    def _grads(self, acts, ders, p, r):
        dims = (self.N0,) + self.widths
        deltas = self.deltas(ders, p, r)
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
            a, d = sigma_pair(self.activation, h, True)
            da = d * dh
        v, dv = p["v"], t["v"]
        out = (da @ v[..., None])[..., 0] + (a @ dv[..., None])[..., 0]
        return out / math.sqrt(dims[-1])


class FCNet(DeepFCNet):
    r"""One-hidden-layer fully connected network, f(x) = N1^{-1/2} sum_k v_k sigma(w_k.x/sqrt(N0)).

    Parameters
    ----------
    N0 : int
        Input dimension.
    width : int
        N1, the hidden width (the ``width`` of :class:`lkr.theory.FCTheory`). The former
        keyword ``N1=`` is accepted with a DeprecationWarning; ``net.N1`` stays.
    activation : {"linear", "erf", "relu"}
    lambda0, lambda1 : float
        Prior precisions: W ~ N(0, 1/lambda0), v ~ N(0, 1/lambda1).
    seed : int, optional
        Seed of the prior draw of the initial parameters.
    params : dict, optional
        ``{"W": (N1, N0), "v": (N1,)}`` to use instead of a prior draw.
    dtype : float32 or float64
    lambdas : (lambda0, lambda1), optional
        The two precisions as one sequence (as the kernels and the deep nets take them),
        instead of ``lambda0``/``lambda1``.

    Examples
    --------
    >>> net = FCNet(10, 64, activation="erf", seed=0)
    >>> net.forward(np.ones((3, 10))).shape
    (3,)
    """

    def __init__(self, N0, width=None, activation="erf", lambda0=1.0, lambda1=1.0, seed=None, *,
                 params=None, dtype=np.float64, lambdas=None, N1=None):
        width = width_argument(width, N1, "N1", "FCNet")
        lambdas = resolve_lambdas(lambdas, lambda0, lambda1, 1)
        super().__init__(N0, (_width(width),), activation, lambdas, seed, params=params,
                         dtype=dtype)

    def _setup_names(self):
        super()._setup_names()
        self._wnames = ["W"]
        self._shapes = {"W": self._shapes["W1"], "v": self._shapes["v"]}
        self.priors = {"W": self.lambdas[0], "v": self.lambdas[1]}

    @property
    def width(self) -> int:
        """N1, the hidden width."""
        return self.widths[0]

    @property
    def N1(self) -> int:
        return self.widths[0]

    @property
    def lambda0(self) -> float:
        return self.lambdas[0]

    @property
    def lambda1(self) -> float:
        return self.lambdas[1]

    def _prepare_fused(self, X, X_test, dtype):
        return _FCObjective(self, X, X_test, dtype)

    @property
    def config(self) -> dict:
        return dict(type="FCNet", N0=self.N0, N1=self.width, activation=self.activation,
                    lambda0=self.lambda0, lambda1=self.lambda1)


class _FCObjective(FusedObjective):
    # hT (C, N1, n) = W (C N1, N0) @ Xs^T: one GEMM for all chains; Xs = X / sqrt(N0).

    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test)
        xp = self.xp
        s0 = 1.0 / math.sqrt(net.N0)
        self.c1 = 1.0 / math.sqrt(net.width)
        self.Z = xp.ascontiguousarray(net._inputs(X), dtype=dtype) * s0
        self.Zt = (None if X_test is None
                   else xp.ascontiguousarray(net._inputs(X_test), dtype=dtype) * s0)

    def _pre(self, W, Z):
        C, N1, N0 = W.shape
        return (W.reshape(C * N1, N0) @ Z.T).reshape(C, N1, Z.shape[0])

    def _f(self, S, v):
        return (v[:, None, :] @ S)[:, 0, :] * self.c1

    def value_and_grad(self, params, y, rows=None):
        # one compiled step (FusedPrepared._step): H (C, n, N1) = Z W^T, one row of hidden
        # units per sample, the readout and its gradient, and the filter gradient D^T Z
        W, v = params["W"], params["v"]
        Z = self.Z if rows is None else self.Z[rows]
        f, gv, gW = self._step(Z, W, v, y, 1)
        return f, {"W": gW, "v": gv}

    def gemm_flops(self, chains):
        return 2.0 * chains * self.net.width * self.net.N0 * self.Z.shape[0]
