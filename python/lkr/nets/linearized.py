"""Linearised networks: the first-order Taylor model of a net around its parameters."""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ._base import Net

__all__ = ["LinearizedNet", "linearize"]


class LinearizedNet(Net):
    r"""The first-order Taylor model of a network around its parameters w0:

    .. math:: f_{lin}(u, x) = f(w_0, x) + J(x) u, \qquad J(x) = \partial f(w_0, x) / \partial w.

    It follows the same protocol as the nets, with the single parameter ``u`` of shape
    (num_params,) (the displacement, in the order of ``base.flatten``), so training code
    works unchanged. ``priors["u"]`` is the vector of per-parameter prior precisions of the
    base net (the prior of w0 + u centred at w0). f_lin is linear in u: its vjp does not
    depend on u.
    """

    def __init__(self, base, u=None):
        if not isinstance(base, Net) or isinstance(base, LinearizedNet):
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

