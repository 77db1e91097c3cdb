r"""Convolutional (:class:`CNNNet`) and locally connected (:class:`LCNNet`) nets.

.. math:: f(x) = (N_c N_p)^{-1/2} \sum_{a,i} v_{ai} \, \sigma(w_a \cdot x_i / \sqrt{M})

(the LCN has a filter w_{ai} per patch). The forward, backward and tangent passes run in
the compiled engine of the inputs' array library (:func:`lkr.backend.implementation`: the
C++ extension for NumPy, the CUDA passes of ``csrc/cuda/nets.cu`` for CuPy); the training
objective (:meth:`prepare`) does the products as BLAS GEMMs instead.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._kernel_args import resolve_lambdas
from .._validate import width as _width
from ..activations import check_activation
from ..geometry import PatchGeometry
from ._activations import sigma_pair_inplace
from ._base import FusedObjective, Net, width_argument

__all__ = ["PatchNet", "CNNNet", "LCNNet"]


class PatchNet(Net):
    """CNN and LCN share everything but the filter's patch index."""

    local = False

    def __init__(self, geometry, width=None, activation="erf", lambda0=1.0, lambda1=1.0,
                 seed=None, *, params=None, dtype=np.float64, lambdas=None, channels=None):
        width = width_argument(width, channels, "channels", type(self).__name__)
        if not isinstance(geometry, PatchGeometry):
            raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.width = _width(width)
        self.activation = check_activation(activation)
        self.lambda0, self.lambda1 = resolve_lambdas(lambdas, lambda0, lambda1, 1)
        Nc, Np, M = self.width, geometry.num_patches, geometry.patch_size
        self._shapes = {"W": (Nc, Np, M) if self.local else (Nc, M), "v": (Nc, Np)}
        self.priors = {"W": self.lambda0, "v": self.lambda1}
        self._init(seed, params, dtype)

    @property
    def channels(self) -> int:
        """Nc, the channels: the hidden width (``width``)."""
        return self.width

    def _hidden_units(self) -> int:
        return self.width * self.geometry.num_patches

    def _input_values(self) -> int:
        return self.geometry.num_patches * self.geometry.patch_size

    @property
    def config(self) -> dict:
        return dict(type=type(self).__name__, geometry=self.geometry.to_dict(),
                    channels=self.width, activation=self.activation, lambda0=self.lambda0,
                    lambda1=self.lambda1)

    def _inputs(self, X):
        return self.geometry.patches(X, "X")

    # the compiled passes take arrays with an explicit chain axis of 1 when unchained
    def _core_call(self, fn, Z, *arrays):
        xp = backend.array_module(Z)
        args = [xp.ascontiguousarray(Z)]
        for a, base_ndim in arrays:
            a = xp.ascontiguousarray(a)
            args.append(a if a.ndim > base_ndim else a[None])
        return getattr(backend.implementation(xp), fn)(
            *args, local=self.local, activation=self.activation,
            nthreads=backend.get_num_threads())

    def _forward(self, Z, p):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        out = self._core_call("patch_forward", Z, (W, wd), (v, 2))
        return out if v.ndim > 2 else out[0]

    def _vjp(self, Z, r, p):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        dW, dv = self._core_call("patch_vjp", Z, (W, wd), (v, 2), (r, 1))
        if v.ndim == 2 and r.ndim == 1:
            dW, dv = dW[0], dv[0]
        return {"W": dW, "v": dv}

    def value_and_grad(self, X, y, params=None):
        Z, p, yv, _, _ = self.resolve(X, params, y, rname="y")
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        f, dW, dv = self._core_call("patch_value_and_grad", Z, (W, wd), (v, 2), (yv, 1))
        if v.ndim == 2 and yv.ndim == 1:
            f, dW, dv = f[0], dW[0], dv[0]
        return f, {"W": dW, "v": dv}

    def _jvp(self, Z, p, t):
        W, v = p["W"], p["v"]
        wd = len(self._shapes["W"])
        out = self._core_call("patch_jvp", Z, (W, wd), (v, 2), (t["W"], wd), (t["v"], 2))
        return out if (v.ndim > 2 or t["v"].ndim > 2) else out[0]

    def features(self, Z, p, a0, a1, combined=False):
        """NTK features (S, G) of channels [a0, a1) for validated patches Z and unchained
        params p (see :meth:`resolve` and csrc/lkr/nets.hpp, scales included); with
        ``combined`` one (P, nb (Np + ng)) matrix [S | G] whose Gram is the block's NTK.
        The interface :func:`lkr.ntk.empirical_ntk` uses."""
        xp = backend.array_module(Z)
        return backend.implementation(xp).patch_features(
            xp.ascontiguousarray(Z), xp.ascontiguousarray(p["W"]), xp.ascontiguousarray(p["v"]),
            int(a0), int(a1), local=self.local, activation=self.activation,
            nthreads=backend.get_num_threads(), combined=combined)

    def _prepare_fused(self, X, X_test, dtype):
        return (_LCNObjective if self.local else _CNNObjective)(self, X, X_test, dtype)


class CNNNet(PatchNet):
    r"""One-hidden-layer CNN: f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(w_a . x_i / sqrt(M)).

    One filter w_a (M entries) per channel a, shared by the Np patches x_i of the geometry.

    Parameters
    ----------
    geometry : PatchGeometry
        How inputs are cut into patches (Np patches of M entries).
    width : int
        Nc, the number of filters (channels): the ``width`` of :class:`lkr.theory.CNNTheory`.
        The former keyword ``channels=`` is accepted with a DeprecationWarning;
        ``net.channels`` stays.
    activation : {"linear", "erf", "relu"}
    lambda0, lambda1 : float
        Prior precisions: W ~ N(0, 1/lambda0), v ~ N(0, 1/lambda1).
    seed : int, optional
    params : dict, optional
        ``{"W": (Nc, M), "v": (Nc, Np)}`` instead of a prior draw.
    dtype : float32 or float64
    lambdas : (lambda0, lambda1), optional
        The two precisions as one sequence, instead of ``lambda0``/``lambda1``.
    """

    local = False


class LCNNet(PatchNet):
    r"""One-hidden-layer locally connected net: a filter w_{ai} per channel and patch,
    f(x) = (Nc Np)^{-1/2} sum_{a,i} v_{ai} sigma(w_{ai} . x_i / sqrt(M)).

    Parameters as :class:`CNNNet`; params ``{"W": (Nc, Np, M), "v": (Nc, Np)}``.
    """

    local = True


class _CNNObjective(FusedObjective):
    # H (C, Nc, n, Np) = W (C Nc, M) @ Zflat^T with Zflat the (n Np, M) patches / sqrt(M),
    # cut once: the patch tensor of the training set is reused at every step.

    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test)
        xp = self.xp
        g = net.geometry
        self.M, self.Np = g.patch_size, g.num_patches
        sm = 1.0 / math.sqrt(self.M)
        self.c1 = 1.0 / math.sqrt(net.width * self.Np)
        self.Z = xp.ascontiguousarray(g.patches(X), dtype=dtype) * sm      # (P, Np, M)
        self.Zt = None if X_test is None else xp.ascontiguousarray(g.patches(X_test), dtype=dtype) * sm

    def _pre(self, W, Z):
        C, Nc, M = W.shape
        n = Z.shape[0]
        return (W.reshape(C * Nc, M) @ Z.reshape(n * self.Np, M).T).reshape(C, Nc, n, self.Np)

    def _f(self, S, v):
        return self.xp.einsum("capi,cai->cp", S, v) * self.c1

    def gemm_flops(self, chains):
        return 2.0 * chains * self.net.width * self.M * self.Np * self.Z.shape[0]

    def value_and_grad(self, params, y, rows=None):
        # one compiled step (FusedPrepared._step): the GEMM H (C, n Np, Nc) = Z W^T, one row
        # of K = Np Nc pre-activations per sample (patch-major), the readout and its
        # gradient, and the filter gradient GEMM D^T Z
        xp = self.xp
        W, v = params["W"], params["v"]
        Z = self.Z if rows is None else self.Z[rows]
        C, Nc, M = W.shape
        n, Np = Z.shape[0], self.Np
        u = xp.ascontiguousarray(v.transpose(0, 2, 1)).reshape(C, Np * Nc)
        f, gu, gW = self._step(Z.reshape(n * Np, M), W, u, y, Np)
        gv = xp.ascontiguousarray(gu.reshape(C, Np, Nc).transpose(0, 2, 1))
        return f, {"W": gW, "v": gv}


class _LCNObjective(_CNNObjective):
    # A filter per patch: batched over patches i, H (Np, n, C Nc) = Z_i (n, M) @ W_i (M, C Nc).
    # NumPy's batched GEMMs and the compiled activation pass, on lkr's / BLAS's threads.
    own_threads = False
    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test, dtype)
        xp = self.xp
        self.ZT = xp.ascontiguousarray(self.Z.transpose(1, 0, 2))          # (Np, P, M)
        self.ZtT = None if self.Zt is None else xp.ascontiguousarray(self.Zt.transpose(1, 0, 2))

    def _pre(self, W, ZT):
        C, Nc, Np, M = W.shape
        Wi = W.reshape(C * Nc, Np, M).transpose(1, 2, 0)                   # (Np, M, C Nc)
        return (ZT @ Wi).reshape(Np, ZT.shape[1], C, Nc)                   # (i, p, c, a)

    def _f(self, S, v):
        return self.xp.einsum("ipca,cai->cp", S, v) * self.c1

    @property
    def inputs(self):
        return self.ZT, self.ZtT

    def value_and_grad(self, params, y, rows=None):
        xp = self.xp
        W, v = params["W"], params["v"]
        ZT = self.ZT if rows is None else self.ZT[:, rows]
        C, Nc, Np, M = W.shape
        n = ZT.shape[1]
        S, D = sigma_pair_inplace(self.act, self._pre(W, ZT))
        f = self._f(S, v)
        rc = (f - y) * self.c1
        gv = xp.einsum("cp,ipca->cai", rc, S)
        D *= v.transpose(2, 0, 1)[:, None, :, :]
        D *= rc.T[None, :, :, None]
        gW = D.reshape(Np, n, C * Nc).transpose(0, 2, 1) @ ZT                # (Np, C Nc, M)
        gW = xp.ascontiguousarray(gW.reshape(Np, C, Nc, M).transpose(1, 2, 0, 3))
        return f, {"W": gW, "v": gv}
