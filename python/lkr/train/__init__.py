r"""Training lkr's networks: Bayesian sampling by Langevin dynamics, and gradient descent.

Langevin sampling (:func:`langevin`)
    The Bayesian posterior of docs/theory.md section 2 at temperature T is
    :math:`p(\theta) \propto \exp(-\mathcal{L}(\theta)/T)` with

    .. math:: \mathcal{L}(\theta) = \tfrac12 \sum_\mu (y^\mu - f(x^\mu))^2
              + \tfrac{T}{2} \sum_{\rm name} \lambda_{\rm name} |\theta_{\rm name}|^2 ,

    the precisions :math:`\lambda` taken from ``net.priors`` (lambda0 for the first layer,
    lambda1 for the readout), so that the prior is :math:`\theta \sim N(0, 1/\lambda)`.
    It is sampled with the unadjusted Langevin algorithm (Euler-Maruyama),

    .. math:: \theta \leftarrow \theta - \eta \nabla\mathcal{L}(\theta)
              + \sqrt{2 \eta T}\, \xi, \qquad \xi \sim N(0, I),

    whose stationary law is the posterior up to an O(eta) discretisation bias: on a
    quadratic mode of curvature k the sampled variance is
    :math:`T / (k (1 - \eta k / 2))` instead of T / k (exact; the tests use it). The update is
    stable for :math:`\eta k_{\max} < 2`; :func:`suggest_lr` picks eta from the largest
    curvature.

    Chains are independent, start from prior draws, and run as one array computation
    (parameters carry a leading chain axis). Starting from the prior matters at small T: the
    directions the data do not constrain relax only at rate :math:`\eta T \lambda` per step,
    but their posterior is (nearly) the prior, so they start in equilibrium.

Collapsed sampling (:func:`collapsed`)
    The same posterior sampled exactly over the hidden weights alone, the readout
    integrated out (f is a GP given the features): Metropolis-within-Gibbs with pCN
    proposals per block of units or channels, rank-k Cholesky updates in C++, and
    Rao-Blackwellised predictions. No step-size bias; FC, CNN, LCN and deep CNN nets, one or
    several outputs (docs/training.md, "Collapsed sampler").

Gradient descent (:func:`gradient_descent`)
    Full-batch GD or minibatch SGD on (1/2) sum (y - f)^2 + (wd/2) |theta|^2, on the same nets
    and on linearised nets (:func:`lkr.nets.linearize`), for the lazy-versus-feature-learning
    comparison.

Any object that follows the network protocol of :mod:`lkr.nets` (``params``, ``priors``,
``forward``, ``vjp`` with an optional leading chain axis) can be trained. The trainers ask
the net for its objective (:meth:`lkr.nets.Net.prepare`): :class:`~lkr.nets.FCNet`,
:class:`~lkr.nets.CNNNet` and :class:`~lkr.nets.LCNNet` compute f and the gradient from one
set of pre-activations, on inputs (or patches) prepared once: two BLAS products per step,
with erf and erf' from the compiled, vectorised activation pass. It is checked against the
nets' own ``forward``/``vjp`` in the tests. (For these shapes it is faster than
``net.value_and_grad``, whose per-sample patch kernel does the products without BLAS:
measured on one core, 1.4x for the CNN in float64 and 1.9x in float32.)

Layout: :mod:`~lkr.train.langevin` (sampler, result, updater, step size),
:mod:`~lkr.train.collapsed` (with ``_collapsed_models``: the nets' features,
``_collapsed_linalg``: factor and predictive, ``_collapsed_result``), :mod:`~lkr.train.gd`
(gradient descent), :mod:`~lkr.train.linearized` (least-squares fit of a linearised net),
``_arch`` (the experiments' architecture table: :func:`sampled_test_error`, the net and the
theory of ``"fc"``, ``"cnn"``, ``"lcn"``, ``"deepcnn"``), ``_common`` (checks, start-up
draws, the loss).
"""
from __future__ import annotations

from ._arch import ARCHITECTURES, sampled_test_error
from ._common import SamplingWarning, loss_and_grad
from .collapsed import CollapsedResult, collapsed
from .gd import GDResult, gradient_descent
from .langevin import (
    DEFAULT_BURN_IN_FRACTION,
    LangevinResult,
    default_burn_in,
    langevin,
    suggest_lr,
)
from .linearized import LinearizedFit, fit_linearized

__all__ = ["langevin", "LangevinResult", "gradient_descent", "GDResult", "loss_and_grad",
           "suggest_lr", "sampled_test_error", "SamplingWarning", "ARCHITECTURES",
           "fit_linearized", "LinearizedFit", "default_burn_in", "DEFAULT_BURN_IN_FRACTION",
           "collapsed", "CollapsedResult"]
