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
CNN/LCN run in the compiled engine of the arrays (:func:`lkr.backend.implementation`): the C++
extension for NumPy arrays (float32 and float64, GIL released, OpenMP), the CUDA passes for
CuPy arrays.

Layout: ``_activations`` (the compiled sigma/sigma' pass; the formulas are
:mod:`lkr.activations`), ``_base`` (:class:`Net`, the protocol, and the training objectives
of :meth:`Net.prepare`), ``fc`` (FC and deep FC), ``patch`` (CNN, LCN), ``deep_cnn``,
``linearized`` (:class:`LinearizedNet`); the array-expression references of the patch
passes are :mod:`lkr._patch_reference` (re-exported here). The least-squares fit of a
linearised net is :func:`lkr.train.fit_linearized`.
"""
from __future__ import annotations

from .._patch_reference import (  # noqa: F401 - the references the tests and benchmarks use
    _preact,
    _reference_features,
    _reference_forward,
    _reference_jvp,
    _reference_vjp,
)
from ._activations import sigma, sigma_pair, sigma_pair_inplace, sigma_prime
from ._base import FusedObjective, Net, Objective, init_params
from .deep_cnn import DeepCNNNet
from .fc import DeepFCNet, FCNet
from .linearized import LinearizedNet, linearize
from .patch import CNNNet, LCNNet, PatchNet

__all__ = ["FCNet", "DeepFCNet", "CNNNet", "LCNNet", "DeepCNNNet", "LinearizedNet", "init_params",
           "linearize", "sigma", "sigma_prime", "sigma_pair", "sigma_pair_inplace",
           "Net", "PatchNet", "Objective", "FusedObjective"]

# the former names of the base classes and of the training objective
_Net, _PatchNet = Net, PatchNet
Prepared = Objective


def __getattr__(name):
    # fit_linearized trains (it needs lkr.ntk, which builds on the nets): it is
    # lkr.train.fit_linearized; a shim importing it here would point up the layers
    if name == "fit_linearized":
        raise AttributeError("lkr.nets.fit_linearized is lkr.train.fit_linearized (the fit "
                             "of a linearised net lives with the trainers)")
    raise AttributeError(f"module 'lkr.nets' has no attribute {name!r}")
