r"""Deep convolutional network :class:`DeepCNNNet` (docs/deep-cnn.md section 3).

L layers of Nc channels on a :class:`~lkr.DeepGeometry`, bias-free, a dense readout over the
d final patches:

.. math::

    h^1_{a,p} = M_1^{-1/2} \sum_m W^1_{a m} x_{p, m}, \qquad
    h^l_{a,p} = (N_c k_l)^{-1/2} \sum_{m} W^l_{a m}\, \sigma(h^{l-1})_{p, m}, \qquad
    f = (N_c d)^{-1/2} \sum_{a,i} v_{a i}\, \sigma(h^L_{a,i}),

with x_{p, m} the m-th entry of window p of layer 1 (M1 = C_in k_1 entries, zero padded as
the layer's padding says) and sigma(h^{l-1})_{p, m} likewise the entries (site, channel) of
window p of layer l over the previous layer's output grid, a padded site contributing 0.
Priors W^l ~ N(0, 1/lambda_{l-1}), v ~ N(0, 1/lambda_L); its prior covariance at infinite
width is the deep CNN-GP kernel K_R(I) of :func:`lkr.renormalized_kernel`.

Implementation: per layer, one gather of the windows (an index table of the previous grid,
precomputed) and one batched BLAS GEMM over the chain axis; sigma and sigma' come from the
compiled activation pass; the backward pass scatters the window gradients back with a sparse
matrix (SciPy on the CPU). Chains of parameters are one batched computation. There is no
dedicated compiled kernel: the GEMMs dominate the cost.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .._kernel_args import resolve_lambdas
from .._validate import count as _count
from ..activations import check_activation
from ..deep_geometry import DeepGeometry
from ._activations import sigma_pair
from ._base import Net, width_argument

__all__ = ["DeepCNNNet"]


class _Layer:
    """Window table of one layer l >= 2 over the previous output grid with Nc channels."""

    def __init__(self, g):
        self.n, self.M, self.size = g.num_patches, g.patch_size, g.input_size
        self.index = np.ascontiguousarray(g.patch_index().reshape(-1))  # n M, size = pad
        self._dev = {}
        self._scatter = None

    def gather(self, A, xp):
        """(B, size) activations -> (B, n, M) windows (padding reads 0)."""
        idx = self._dev.get(xp)
        if idx is None:
            idx = self._dev[xp] = xp.asarray(self.index)
        Ae = xp.concatenate([A, xp.zeros(A.shape[:-1] + (1,), dtype=A.dtype)], axis=-1)
        return xp.take(Ae, idx, axis=-1).reshape(A.shape[:-1] + (self.n, self.M))

    def scatter(self, G, xp):
        """Adjoint of :meth:`gather`: (B, n, M) -> (B, size), padding dropped."""
        B = G.shape[:-2]
        Gf = G.reshape(-1, self.n * self.M)
        if xp is np:
            if self._scatter is None:
                import scipy.sparse as sp

                m = self.n * self.M
                S = sp.csr_matrix((np.ones(m), (self.index, np.arange(m))),
                                  shape=(self.size + 1, m))
                self._scatter = S
            out = np.asarray((self._scatter @ Gf.T).T, dtype=G.dtype)
        else:  # pragma: no cover - GPU only
            idx = xp.asarray(self.index)
            out = xp.zeros((Gf.shape[0], self.size + 1), dtype=G.dtype)
            xp.add.at(out, (slice(None), idx), Gf)
        return out[:, :self.size].reshape(B + (self.size,))


class DeepCNNNet(Net):
    r"""Deep CNN: L convolutional layers of ``width`` filters each, bias-free, and a dense
    readout over the d final patches (see the module docstring for the formulas).

    Parameters
    ----------
    geometry : DeepGeometry
        The layers (filters, strides, paddings); the input's channels and layout are layer 1's.
    width : int
        Nc, the filters (channels) of every layer: the ``width`` of
        :class:`lkr.theory.DeepCNNTheory`. The former keyword ``channels=`` is accepted with a
        DeprecationWarning; ``net.channels`` stays.
    activation : {"linear", "erf", "relu"}
    lambdas : sequence of L + 1 floats, optional
        Prior precisions (lambda_0, ..., lambda_L): W^l ~ N(0, 1/lambda_{l-1}),
        v ~ N(0, 1/lambda_L). Default all ones.
    seed : int, optional
    params : dict, optional
        ``{"W1": (Nc, M1), "W2": (Nc, Nc k_2), ..., "v": (Nc, d)}`` instead of a prior draw
        (layer l's entries ordered (site of the window, channel), as
        ``geometry.layer(l - 1, channels=Nc).patch_index()``).
    dtype : float32 or float64
    """

    def __init__(self, geometry, width=None, activation="erf", lambdas=None, seed=None, *,
                 params=None, dtype=np.float64, channels=None):
        width = width_argument(width, channels, "channels", "DeepCNNNet")
        if not isinstance(geometry, DeepGeometry):
            raise TypeError(f"geometry must be a DeepGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.width = Nc = _count(width, "width")
        self.activation = check_activation(activation)
        self.depth = L = geometry.depth
        self.lambdas = resolve_lambdas(lambdas, 1.0, 1.0, L)
        self._layers = [_Layer(geometry.layer(l, channels=Nc)) for l in range(1, L)]
        self._wnames = [f"W{l + 1}" for l in range(L)]
        sizes = [geometry.layers[0].patch_size] + [lay.M for lay in self._layers]
        self._scales = [1.0 / math.sqrt(m) for m in sizes]
        self._shapes = {n: (Nc, m) for n, m in zip(self._wnames, sizes)}
        self._shapes["v"] = (Nc, geometry.num_patches)
        self.priors = {n: self.lambdas[l] for l, n in enumerate(self._wnames)}
        self.priors["v"] = self.lambdas[L]
        self._c1 = 1.0 / math.sqrt(Nc * geometry.num_patches)
        self._init(seed, params, dtype)

    @property
    def channels(self) -> int:
        """Nc, the channels of every layer: the hidden width (``width``)."""
        return self.width

    @property
    def config(self) -> dict:
        return dict(type=type(self).__name__, geometry=self.geometry.to_dict(),
                    channels=self.width, activation=self.activation,
                    lambdas=list(self.lambdas))

    def _inputs(self, X):
        return self.geometry.patches(X, "X")  # (P, n1, M1)

    # -- passes -------------------------------------------------------------------------
    # Every array carries a leading chain axis C (1 when unchained, broadcast by matmul).
    def _lift(self, p):
        chained = p["v"].ndim == 3
        return {k: (a if chained else a[None]) for k, a in p.items()}, chained

    def _pre(self, Z, W, l):
        """h (C, P, n, Nc) = s_l Z (C|1, P, n, M) @ W^T (C, M, Nc)."""
        B, n, M = Z.shape[-3:]
        H = Z.reshape(Z.shape[:-3] + (B * n, M)) @ W.swapaxes(-1, -2)
        H *= self._scales[l]
        return H.reshape((H.shape[0], B, n, W.shape[1]))

    def _run(self, Z, p, derivative):
        """Forward pass: windows Zs, activations Ss, derivatives Ds per layer and f (C, P)."""
        xp = backend.array_module(Z)
        Zs, Ss, Ds = [Z[None]], [], []
        for l, name in enumerate(self._wnames):
            H = self._pre(Zs[-1], p[name], l)
            S, D = sigma_pair(self.activation, H, derivative)
            Ss.append(S)
            Ds.append(D)
            if l + 1 < self.depth:
                Cc, P = S.shape[:2]
                Zs.append(self._layers[l].gather(S.reshape(Cc, P, -1), xp))
        f = xp.einsum("cpia,cai->cp", Ss[-1], p["v"]) * self._c1
        return Zs, Ss, Ds, f

    def _back(self, Zs, Ss, Ds, p, r, per_sample=False):
        """Gradients of sum_mu r_mu f_mu (r (C, P)); per_sample keeps the sample axis."""
        xp = backend.array_module(r)
        rc = r * self._c1
        out = {}
        if per_sample:
            out["v"] = xp.einsum("cp,cpia->cpai", rc, Ss[-1])
        else:
            out["v"] = xp.einsum("cp,cpia->cai", rc, Ss[-1])
        dS = rc[:, :, None, None] * p["v"].swapaxes(-1, -2)[:, None, :, :]  # (C, P, d, Nc)
        for l in range(self.depth - 1, -1, -1):
            dH = dS * Ds[l] * self._scales[l]                                 # (C, P, n, Nc)
            Z = Zs[l]
            if per_sample:
                Zb = xp.broadcast_to(Z, dH.shape[:3] + Z.shape[-1:])
                out[self._wnames[l]] = xp.einsum("cpna,cpnm->cpam", dH, Zb)
            else:
                Cc, P, n, Nc = dH.shape
                Zb = Z.reshape(Z.shape[0], P * n, Z.shape[-1])
                out[self._wnames[l]] = dH.reshape(Cc, P * n, Nc).swapaxes(-1, -2) @ Zb
            if l > 0:
                dZ = dH @ p[self._wnames[l]][:, None]                          # (C, P, n, M)
                lay = self._layers[l - 1]
                dS = lay.scatter(dZ, xp).reshape(Ss[l - 1].shape)
        return out

    def _forward(self, Z, p):
        q, chained = self._lift(p)
        f = self._run(Z, q, False)[3]
        return f if chained else f[0]

    def _vjp(self, Z, r, p):
        q, chained = self._lift(p)
        rr = r if r.ndim == 2 else r[None]
        Zs, Ss, Ds, _ = self._run(Z, q, True)
        C = max(rr.shape[0], q["v"].shape[0])
        g = self._back(Zs, Ss, Ds, q, xp_broadcast(rr, (C, rr.shape[1])))
        if not chained and r.ndim == 1:
            g = {k: v[0] for k, v in g.items()}
        return {k: g[k] for k in self._shapes}

    def value_and_grad(self, X, y, params=None):
        """f and the gradient of (1/2) sum (y - f)^2 in one forward and one backward pass."""
        Z, p, yv, _, _ = self.resolve(X, params, y, rname="y")
        q, chained = self._lift(p)
        Zs, Ss, Ds, f = self._run(Z, q, True)
        yy = yv if yv.ndim == 2 else yv[None]
        C = max(yy.shape[0], f.shape[0])
        f = xp_broadcast(f, (C, f.shape[1]))
        g = self._back(Zs, Ss, Ds, q, f - yy)
        if not chained and yv.ndim == 1:
            return f[0], {k: g[k][0] for k in self._shapes}
        return f.copy(), {k: g[k] for k in self._shapes}

    def _jvp(self, Z, p, t):
        xp = backend.array_module(Z)
        q, chained = self._lift(p)
        tq, tchained = self._lift(t)
        Zs, Ss, Ds, _ = self._run(Z, q, True)
        dZ = None
        for l, name in enumerate(self._wnames):
            dH = self._pre(Zs[l], tq[name], l)
            if dZ is not None:
                dH = dH + self._pre(dZ, q[name], l)
            dS = Ds[l] * dH
            if l + 1 < self.depth:
                Cc, P = dS.shape[:2]
                dZ = self._layers[l].gather(dS.reshape(Cc, P, -1), xp)
        df = (xp.einsum("cpia,cai->cp", *_bc(Ss[-1], tq["v"]))
              + xp.einsum("cpia,cai->cp", *_bc(dS, q["v"]))) * self._c1
        return df if (chained or tchained) else df[0]

    # -- NTK ----------------------------------------------------------------------------
    def per_sample_jacobian(self, Z, p):
        """J (P, num_params) for validated windows Z and unchained params p (columns in
        :meth:`flatten` order); memory O(P num_params). :func:`lkr.ntk.empirical_ntk` and
        :func:`lkr.ntk.jacobian` use it (in blocks of samples)."""
        q, _ = self._lift(p)
        Zs, Ss, Ds, f = self._run(Z, q, True)
        xp = backend.array_module(Z)
        g = self._back(Zs, Ss, Ds, q, xp.ones_like(f), per_sample=True)
        P = Z.shape[0]
        return xp.concatenate([g[k][0].reshape(P, -1) for k in self._shapes], axis=1)


def xp_broadcast(a, shape):
    xp = backend.array_module(a)
    return a if a.shape == shape else xp.broadcast_to(a, shape)


def _bc(a, b):
    """Broadcast the chain axes of a (C, ...) and b (C', ...) for einsum."""
    xp = backend.array_module(a)
    C = max(a.shape[0], b.shape[0])
    return (xp.broadcast_to(a, (C,) + a.shape[1:]), xp.broadcast_to(b, (C,) + b.shape[1:]))
