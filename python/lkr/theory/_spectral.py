"""One eigendecomposition of an FC kernel, shared by every FC theory of the same data.

The first FC fit at large P is dominated by the eigendecomposition of the P x P kernel
(after it, each action evaluation is O(P)). Two measures keep that cost down:

* the LAPACK route: ``scipy.linalg.eigh`` with :data:`DRIVER` (``"evd"``, divide and
  conquer, measured fastest for P = 2000..5000 with eigenvectors; see bench/bench_theory.py
  ``fc_eigh_route``), CuPy's ``eigh`` on the GPU;
* sharing: :func:`shared` keeps the decomposition of each (X, kernel settings) content key in
  a weak-value registry, so FCTheory instances with other widths, temperatures, lambda1 or
  ``mean`` modes (and ``fit_path`` copies) reuse it while any of them holds it, and it is
  freed with the last one.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from .. import backend

__all__ = ["DRIVER", "eigh_psd", "shared"]

#: scipy.linalg.eigh driver for the FC kernel spectrum.
DRIVER = "evd"


class SpectralCache(dict):
    """A dict that can be weakly referenced (the registry's values)."""


_REGISTRY: weakref.WeakValueDictionary[str, SpectralCache] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def eigh_psd(K, driver=None):
    """(lam, U) of a symmetric PSD kernel: lam as a NumPy array with rounding negatives set
    to 0, U on K's device."""
    xp = backend.array_module(K)
    if xp is np:
        import scipy.linalg as sla

        lam, U = sla.eigh(K, driver=driver or DRIVER, check_finite=False, overwrite_a=False)
    else:
        lam, U = xp.linalg.eigh(K)
    lam = xp.maximum(lam, 0.0)
    return backend.to_numpy(lam), U


def shared(key, build):
    """The cache of ``key`` if some theory still holds it, else ``build()`` (registered).

    ``build`` returns a dict; the registry holds it weakly."""
    with _LOCK:
        hit = _REGISTRY.get(key)
    if hit is not None:
        return hit
    cache = SpectralCache(build())
    with _LOCK:
        _REGISTRY[key] = cache
    return cache
