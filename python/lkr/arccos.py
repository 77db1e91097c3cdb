r"""Arc-cosine kernels, the ReLU NTK and their Mercer spectra on the sphere (docs/theory.md s. 3).

Normalisation of Bietti & Mairal (2019), for inputs on the unit sphere with u = x.x':

.. math::

    \kappa_0(u) = 1 - \frac{\arccos u}{\pi}, \qquad
    \kappa_1(u) = \frac{u(\pi - \arccos u) + \sqrt{1 - u^2}}{\pi},

so that kappa_0(1) = kappa_1(1) = 1 and kappa_1' = kappa_0. The two-layer ReLU NTK is
kappa_NTK(u) = u kappa_0(u) + kappa_1(u). Deep (L hidden layers):

.. math::

    \Sigma^0 = u, \quad \Sigma^l = \kappa_1(\Sigma^{l-1}), \qquad
    \Theta^0 = u, \quad \Theta^l = \Theta^{l-1} \kappa_0(\Sigma^{l-1}) + \Sigma^l,

with :func:`deep_nngp` = Sigma^L and :func:`deep_ntk` = Theta^L (Theta^1 is the two-layer
NTK; Theta^L(1) = L + 1).

A dot-product kernel kappa(x.x') on S^{p-1} is diagonal in spherical harmonics:
kappa(t) = sum_k N(p, k) mu_k P_k(t), with P_k the Gegenbauer polynomial of S^{p-1}
normalised to P_k(1) = 1, N(p, k) the number of harmonics of degree k, and

.. math:: \mu_k = \frac{\omega_{p-2}}{\omega_{p-1}} \int_{-1}^{1} \kappa(t) P_k(t)
          (1 - t^2)^{(p-3)/2} \, dt,

omega_d the area of S^d. :func:`mercer_eigenvalues` computes mu_0..mu_kmax by
Gauss-Gegenbauer quadrature; :func:`decay_exponent` fits mu_k ~ k^{-s} over the non-zero
even or odd k (for ReLU kernels s = p for kappa_0 and the NTK, p + 2 for kappa_1).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from . import backend
from ._validate import integer as _integer

__all__ = ["kappa0", "kappa1", "ntk", "deep_nngp", "deep_ntk", "mercer_eigenvalues",
           "mercer_series", "harmonic_dimension", "gegenbauer", "decay_exponent"]

_ROUNDING = 1e-9  # |u| may exceed 1 by this much (rounding of normalised dot products)


def _unit(u, name="u"):
    a = backend.asarray(u, name)
    xp = backend.array_module(a)
    a = xp.asarray(a)
    backend.check_floating(a, name)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    backend.check_finite(a, name)
    if a.size and float(xp.abs(a).max()) > 1 + _ROUNDING:
        raise ValueError(f"{name} must lie in [-1, 1] (a cosine), got values up to "
                         f"{float(xp.abs(a).max())!r}")
    return xp, xp.clip(a, -1, 1)


def _depth(depth):
    return _integer(depth, "depth", 0)


def _k0(xp, u):
    return 1 - xp.arccos(u) / np.pi


def _k1(xp, u):
    return (u * (np.pi - xp.arccos(u)) + xp.sqrt(xp.clip(1 - u * u, 0, None))) / np.pi


def kappa0(u):
    """Arc-cosine kernel of degree 0: 1 - arccos(u) / pi (the step function's kernel, x2)."""
    xp, u = _unit(u)
    return _k0(xp, u)


def kappa1(u):
    """Arc-cosine kernel of degree 1: (u (pi - arccos u) + sqrt(1 - u^2)) / pi.

    Twice the ReLU NNGP map at unit variances; kappa1(1) = 1 and kappa1' = kappa0.
    """
    xp, u = _unit(u)
    return _k1(xp, u)


def ntk(u):
    """Two-layer ReLU NTK on the sphere: u kappa0(u) + kappa1(u) (value 2 at u = 1)."""
    xp, u = _unit(u)
    return u * _k0(xp, u) + _k1(xp, u)


def deep_nngp(u, depth: int):
    """Sigma^L: kappa1 applied ``depth`` times (Sigma^0 = u)."""
    depth = _depth(depth)
    xp, s = _unit(u)
    for _ in range(depth):
        s = _k1(xp, xp.clip(s, -1, 1))
    return s


def deep_ntk(u, depth: int):
    """Theta^L of the recursion Theta^l = Theta^{l-1} kappa0(Sigma^{l-1}) + Sigma^l
    (Theta^0 = Sigma^0 = u; depth 1 is :func:`ntk`)."""
    depth = _depth(depth)
    xp, s = _unit(u)
    theta = s
    for _ in range(depth):
        s_prev = xp.clip(s, -1, 1)
        s = _k1(xp, s_prev)
        theta = theta * _k0(xp, s_prev) + s
    return theta


# -- Mercer decomposition on S^{p-1} ---------------------------------------------------------
def _dimension(p):
    # p is the ambient dimension of the sphere S^(p-1)
    return _integer(p, "p", 2)


def harmonic_dimension(p: int, k: int) -> int:
    """N(p, k), the number of linearly independent spherical harmonics of degree k on
    S^{p-1}: 1 for k = 0, else (2k + p - 2) / k * binom(k + p - 3, k - 1) (2k + 1 for p = 3)."""
    p = _dimension(p)
    k = _integer(k, "k", 0)
    if k == 0:
        return 1
    return (2 * k + p - 2) * math.comb(k + p - 3, k - 1) // k


def gegenbauer(kmax: int, p: int, t):
    """P_0(t)..P_kmax(t) of S^{p-1}, normalised to P_k(1) = 1, shape (kmax + 1, *t.shape).

    By the three-term recurrence P_{k+1} = ((2k + p - 2) t P_k - k P_{k-1}) / (k + p - 2)
    (Legendre for p = 3, Chebyshev for p = 2).
    """
    p = _dimension(p)
    t = np.asarray(t, dtype=np.float64)
    out = np.empty((kmax + 1,) + t.shape)
    out[0] = 1.0
    if kmax >= 1:
        out[1] = t
    for k in range(1, kmax):
        out[k + 1] = ((2 * k + p - 2) * t * out[k] - k * out[k - 1]) / (k + p - 2)
    return out


def _sphere_ratio(p):
    """omega_{p-2} / omega_{p-1} = Gamma(p/2) / (sqrt(pi) Gamma((p-1)/2))."""
    return math.exp(math.lgamma(p / 2) - math.lgamma((p - 1) / 2)) / math.sqrt(math.pi)


def _quadrature(p, n, rule):
    from scipy import special

    if rule == "gegenbauer":
        alpha = (p - 2) / 2
        if p == 2:
            t, w = special.roots_chebyt(n)
        else:
            t, w = special.roots_gegenbauer(n, alpha)
        return t, w
    # rule == "angle": t = cos(theta), dt (1 - t^2)^{(p-3)/2} = sin^{p-2}(theta) dtheta;
    # Gauss-Legendre in theta
    x, w = special.roots_legendre(n)
    theta = 0.5 * np.pi * (x + 1)
    return np.cos(theta), 0.5 * np.pi * w * np.sin(theta) ** (p - 2)


def mercer_eigenvalues(kappa: Callable, p: int = 3, kmax: int = 20, *,
                       n_quad: Optional[int] = None, rule: str = "gegenbauer") -> np.ndarray:
    r"""Mercer eigenvalues mu_0..mu_kmax of a dot-product kernel kappa(x.x') on S^{p-1}.

    .. math:: \mu_k = \frac{\omega_{p-2}}{\omega_{p-1}} \int_{-1}^{1} \kappa(t) P_k(t)
              (1 - t^2)^{(p-3)/2} dt

    (each eigenvalue has multiplicity :func:`harmonic_dimension` (p, k)).

    Parameters
    ----------
    kappa : callable
        Vectorised function of t in [-1, 1] (e.g. :func:`kappa0`, :func:`ntk`, or
        ``lambda t: deep_ntk(t, 3)``).
    p : int
        Ambient dimension (the sphere S^{p-1} in R^p), p >= 2.
    kmax : int
        Highest degree.
    n_quad : int, optional
        Quadrature nodes; default max(2000, 20 kmax).
    rule : {"gegenbauer", "angle"}
        ``gegenbauer``: Gauss-Gegenbauer nodes and weights for the weight (1 - t^2)^{(p-3)/2}
        (scipy.special.roots_gegenbauer). The arc-cosine kernels have sqrt(1 - t)
        endpoint singularities, so the error decays algebraically (~1e-11 at the default
        nodes). ``angle``: Gauss-Legendre in theta = arccos t; exponentially accurate for
        kernels smooth in the angle, such as every kernel of this module.

    Returns
    -------
    ndarray, (kmax + 1,)

    Examples
    --------
    >>> np.round(mercer_eigenvalues(kappa0, p=3, kmax=3), 10)
    array([0.5      , 0.125    , 0.       , 0.0078125])
    """
    p = _dimension(p)
    kmax = _integer(kmax, "kmax", 0)
    if rule not in ("gegenbauer", "angle"):
        raise ValueError(f"rule must be 'gegenbauer' or 'angle', got {rule!r}")
    if not callable(kappa):
        raise TypeError(f"kappa must be a callable of t in [-1, 1], got {type(kappa).__name__}")
    n = max(2000, 20 * int(kmax)) if n_quad is None else n_quad
    n = _integer(n, "n_quad", kmax + 1)
    t, w = _quadrature(p, int(n), rule)
    k = np.asarray(backend.to_numpy(kappa(t)), dtype=np.float64)
    if k.shape != t.shape:
        raise ValueError(f"kappa must map an array of shape {t.shape} to the same shape, got "
                         f"{k.shape}")
    if not np.isfinite(k).all():
        raise ValueError("kappa returned non-finite values on [-1, 1]")
    P = gegenbauer(int(kmax), p, t)
    mu = _sphere_ratio(p) * (P @ (w * k))
    return mu


def mercer_series(mu, t, p: int = 3):
    """Rebuild kappa(t) = sum_k N(p, k) mu_k P_k(t) from Mercer eigenvalues mu_0..mu_K."""
    p = _dimension(p)
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu must be 1-D, got shape {mu.shape}")
    K = mu.shape[0] - 1
    dims = np.array([harmonic_dimension(p, k) for k in range(K + 1)], dtype=np.float64)
    P = gegenbauer(K, p, t)
    return np.tensordot(dims * mu, P, axes=1)


def decay_exponent(mu, parity: Optional[str] = None, *, kmin: int = 2,
                   rtol: float = 1e-9) -> float:
    """Fitted s of mu_k ~ C k^{-s}: least squares of log mu_k against log k.

    Parameters
    ----------
    mu : array, (kmax + 1,)
        Mercer eigenvalues indexed by degree k (as :func:`mercer_eigenvalues` returns).
    parity : {"even", "odd", None}
        Use only even or odd k (arc-cosine kernels vanish on the other parity beyond k = 1).
    kmin : int
        Smallest degree used (the asymptotic regime starts later for some kernels).
    rtol : float
        Degrees with |mu_k| <= rtol * max |mu| count as zero and are left out.

    Returns
    -------
    float
        The exponent s (positive for decaying eigenvalues).
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu must be 1-D, got shape {mu.shape}")
    if parity not in (None, "even", "odd"):
        raise ValueError(f"parity must be 'even', 'odd' or None, got {parity!r}")
    k = np.arange(mu.shape[0])
    keep = (k >= max(1, int(kmin))) & (np.abs(mu) > rtol * np.abs(mu).max())
    if parity == "even":
        keep &= k % 2 == 0
    elif parity == "odd":
        keep &= k % 2 == 1
    if keep.sum() < 2:
        raise ValueError(f"fewer than two non-zero eigenvalues with k >= {kmin} and parity "
                         f"{parity!r}; raise kmax")
    slope = np.polyfit(np.log(k[keep]), np.log(np.abs(mu[keep])), 1)[0]
    return float(-slope)
