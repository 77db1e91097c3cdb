"""lkr: local kernel renormalisation for finite-width neural networks.

Fast kernels (C++/OpenMP and CUDA) and effective-action theory of Bayesian one-hidden-layer
networks in the proportional regime: fully-connected nets renormalise their kernel globally
by a scalar Qbar, convolutional nets locally by a matrix Qbar_ij over patch pairs.

Quick start::

    import lkr
    g = lkr.PatchGeometry(input_shape=(64,), filter_size=4, stride=4)
    K = lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g)

Submodules: ``lkr.theory`` (solvers), ``lkr.nets``, ``lkr.ntk``, ``lkr.spectrum``,
``lkr.arccos``, ``lkr.train``, ``lkr.data``; see the README.
"""
from importlib import import_module as _import_module

from ._version import __version__
from .activations import ACTIVATIONS, nngp_map
from .backend import get_num_threads, set_num_threads
from .deep_geometry import DeepGeometry
from .geometry import PatchGeometry, patches, patches_adjoint
from .kernels import (
    local_kernel,
    local_kernel_adjoint,
    nngp,
    renormalized_kernel,
    renormalized_kernel_diag,
)

__all__ = ["__version__", "PatchGeometry", "DeepGeometry", "patches", "patches_adjoint", "nngp",
           "nngp_map", "local_kernel",
           "renormalized_kernel", "renormalized_kernel_diag", "local_kernel_adjoint",
           "ACTIVATIONS", "get_num_threads", "set_num_threads", "info"]

_SUBMODULES = {"theory", "nets", "ntk", "spectrum", "arccos", "train", "data", "backend",
               "distributed", "cli"}


def __getattr__(name):
    # Submodules load on first use so that `import lkr` stays fast.
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lkr' has no attribute {name!r}")


def info() -> dict:
    """Versions, backend, threads, BLAS and GPU (what ``lkr info`` prints)."""
    from .backend import info as _info

    return _info()
