r"""CUDA backend of the local-kernel engine: the functions of ``lkr._core`` for CuPy arrays.

:mod:`lkr.backend` routes CuPy inputs here; the public API is :mod:`lkr.kernels`, which
validates its arguments and calls, with patch tensors ``PX`` (P, Np, M) and ``PY``
(P2, Np, M) or ``None`` (C-contiguous, one dtype, float32 or float64):

=====================================================================  =====================
``local_kernel(PX, PY, activation, lambda0, nthreads)``                 (P, P2, Np, Np)
``renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1, nthreads)``  (P, P2)
``renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1, nthreads)`` (P,)
``local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0, nthreads)`` (Np, Np)
``nngp_map_inplace(K, dx, dy, activation, nthreads)``                   None (K in place)
``patch_forward(Z, W, v, *, local, activation, nthreads)``              (C, P)
``patch_vjp(Z, W, v, r, *, local, activation, nthreads)``               (dW, dv)
``patch_jvp(Z, W, v, tW, tv, *, local, activation, nthreads)``          (C, P)
``patch_value_and_grad(Z, W, v, y, *, local, activation, nthreads)``    (f, dW, dv)
``patch_features(Z, W, v, a0, a1, *, local, activation, nthreads)``     (S, G)
``activation_pair(H, *, activation, derivative, nthreads)``             sigma(H) (, sigma'(H))
``deep_*(...)``: the deep-CNN kernel, see :mod:`lkr._cuda.deep`
=====================================================================  =====================

(the function list of ``lkr._core``, stated in ``_core.pyi``; a test checks both engines
against it).

with (docs/theory.md section 2)

.. math::

    K_{ij}^{\mu\nu} = s_i^\mu s_j^\nu F(z_i^\mu \cdot z_j^\nu), \qquad
    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\nu}, \qquad
    G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K_{ij}^{\mu\nu}

for the prepared patches z and amplitudes s of ``csrc/lkr/activations.hpp``; the patch
passes are those of the CNN/LCN nets (``csrc/lkr/nets.hpp``, ``csrc/cuda/nets.cu``), with
chained parameters (a leading chain axis of length C, or 1 to broadcast). ``nthreads``
is accepted and ignored. The kernels are ``csrc/cuda/*.cu``, installed as package data in
``lkr/cuda/`` (read from ``<repo>/csrc/cuda`` in a source checkout; see :func:`source_dir`),
compiled at run time by NVRTC through ``cupy.RawModule`` once per dtype and device (and
cached on disk by CuPy).
No device pointer crosses pybind11: everything here is CuPy.

Layout: :mod:`.sources` (where the ``.cu`` files are, how they are read), :mod:`.kernels`
(CuPy loading, launch planning, the one-layer kernels), :mod:`.nets` (the patch passes),
:mod:`.multi` (multi-output and compressed-kernel calls), :mod:`.deep` (the deep-CNN
kernel), :mod:`.collapsed` (the collapsed sampler's factor updates); here the
:class:`Engine` that combines them and the module-level functions on CuPy's default engine.
The launch planning is array-library agnostic, so that the tests drive an ``Engine`` over
NumPy with a host emulator of the kernels.

Importing this package needs neither CuPy nor a device (CuPy is imported at the first call);
nothing is compiled until a kernel runs.
"""
from __future__ import annotations

from typing import Optional

from .collapsed import CollapsedCalls
from .deep import DeepEngineMixin
from .kernels import (  # noqa: F401 - _grid, _panels, _suffix: the tests check the planning
    SOURCES,
    KernelEngine,
    _cupy,
    _cupy_kernel,
    _cupy_num_sms,
    _grid,
    _panels,
    _suffix,
    compile_options,
    device_info,
    load_source,
    source_dir,
    source_of,
)
from .multi import MultiOutputCalls
from .multi import module_functions as _multi_functions
from .nets import NetPasses
from .train import TrainingCalls
from .train import module_functions as _train_functions

__all__ = ["local_kernel", "renormalized_kernel", "renormalized_kernel_diag",
           "local_kernel_adjoint", "nngp_map_inplace", "patch_forward", "patch_vjp",
           "patch_jvp", "patch_value_and_grad", "patch_features", "activation_pair",
           "readout_forward", "readout_backward", "train_step", "langevin_update",
           "source_dir", "source_of", "load_source", "compile_options",
           "device_info", "Engine", "SOURCES", "patch_mean", "renormalized_kernel_multi",
           "local_kernel_adjoint_multi", "stored_matmul", "pack_compressed", "stored_sym",
           "stored_assemble", "stored_gather",
           "deep_local_kernel", "deep_renormalized_kernel", "deep_renormalized_kernel_diag",
           "deep_local_kernel_adjoint", "deep_pack_compressed", "chol_update", "collapsed_sweep"]


class Engine(KernelEngine, NetPasses, MultiOutputCalls, DeepEngineMixin, CollapsedCalls,
             TrainingCalls):
    """The CUDA engine over an array module ``xp`` and a kernel loader: every function of
    ``lkr._core`` as a method (see :class:`~lkr._cuda.kernels.KernelEngine` for the
    arguments). The module-level functions use CuPy's default engine."""


_engine: Optional[Engine] = None


def _default_engine() -> Engine:
    global _engine
    if _engine is None:
        cp = _cupy()
        _engine = Engine(cp, _cupy_kernel, _cupy_num_sms, device_of=lambda a: a.device)
    return _engine


# -- the functions lkr.backend dispatches to (the signatures of lkr._core) --------------------
def local_kernel(PX, PY, activation, lambda0, nthreads=0):
    """The materialised tensor K (P, P2, Np, Np); see :func:`lkr.kernels.local_kernel`."""
    return _default_engine().local_kernel(PX, PY, activation, lambda0, nthreads)


def renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1, nthreads=0):
    """K_R(Q) (P, P2), streamed; symmetric when PY is None. See
    :func:`lkr.kernels.renormalized_kernel`."""
    return _default_engine().renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1,
                                                 nthreads)


def renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1, nthreads=0):
    """K_R(Q)(x, x) (P,); see :func:`lkr.kernels.renormalized_kernel_diag`."""
    return _default_engine().renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1,
                                                      nthreads)


def local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0, nthreads=0):
    """G(W) (Np, Np); see :func:`lkr.kernels.local_kernel_adjoint`. Accumulated in float64
    with atomics, so two runs may differ in the last bits."""
    return _default_engine().local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0,
                                                  nthreads)


def nngp_map_inplace(K, dx, dy, activation, nthreads=0):
    """K[m, n] <- K_sigma(dx[m], K[m, n], dy[n]) in place; see :func:`lkr.kernels.nngp`."""
    return _default_engine().nngp_map_inplace(K, dx, dy, activation, nthreads)


def patch_forward(Z, W, v, *, local, activation, nthreads=0):
    """CNN/LCN outputs f (C, P) from patches Z (P, Np, M), chained W and v (as
    ``lkr._core.patch_forward``)."""
    return _default_engine().patch_forward(Z, W, v, local=local, activation=activation)


def patch_vjp(Z, W, v, r, *, local, activation, nthreads=0):
    """Gradients (dW, dv) of sum_p r[c, p] f_c(x_p), chained (as ``lkr._core.patch_vjp``)."""
    return _default_engine().patch_vjp(Z, W, v, r, local=local, activation=activation)


def patch_jvp(Z, W, v, tW, tv, *, local, activation, nthreads=0):
    """Directional derivatives J t (C, P) along (tW, tv), chained (as
    ``lkr._core.patch_jvp``)."""
    return _default_engine().patch_jvp(Z, W, v, tW, tv, local=local, activation=activation)


def patch_value_and_grad(Z, W, v, y, *, local, activation, nthreads=0):
    """(f, dW, dv) of the squared loss, chained (as ``lkr._core.patch_value_and_grad``)."""
    return _default_engine().patch_value_and_grad(Z, W, v, y, local=local, activation=activation)


def patch_features(Z, W, v, a0, a1, *, local, activation, nthreads=0, combined=False):
    """NTK features of a block of channels (as ``lkr._core.patch_features``)."""
    return _default_engine().patch_features(Z, W, v, a0, a1, local=local, activation=activation,
                                            combined=combined)


def activation_pair(H, *, activation, derivative, nthreads=0):
    """sigma(H) (and sigma'(H)), elementwise (as ``lkr._core.activation_pair``)."""
    return _default_engine().activation_pair(H, activation=activation, derivative=derivative)


# the multi-output / compressed-kernel calls (lkr._cuda.multi): the same engine
_multi = _multi_functions(_default_engine)
patch_mean = _multi["patch_mean"]
renormalized_kernel_multi = _multi["renormalized_kernel_multi"]
local_kernel_adjoint_multi = _multi["local_kernel_adjoint_multi"]
stored_matmul = _multi["stored_matmul"]
pack_compressed = _multi["pack_compressed"]
stored_sym = _multi["stored_sym"]
stored_assemble = _multi["stored_assemble"]
stored_gather = _multi["stored_gather"]


def readout_forward(H, u, S, f, *, scale, activation, nthreads=0):
    """The training objectives' forward pass, in place (as ``lkr._core.readout_forward``)."""
    _default_engine().readout_forward(H, u, S, f, scale=scale, activation=activation)


def readout_backward(D, S, rc, g, *, nthreads=0):
    """The readout gradient and D *= rc, in place (as ``lkr._core.readout_backward``)."""
    _default_engine().readout_backward(D, S, rc, g)


# the training step and update (lkr._cuda.train): the same engine
_train = _train_functions(_default_engine)
train_step, langevin_update = _train["train_step"], _train["langevin_update"]


# the deep-CNN kernel (lkr._cuda.deep)
def deep_local_kernel(X, Y, layers, plan, activation, lambda0, nthreads=0):
    """Final blocks K_L (P, P2, d, d); see :func:`lkr.kernels.local_kernel`."""
    return _default_engine().deep_local_kernel(X, Y, layers, plan, activation, lambda0)


def deep_renormalized_kernel(X, Y, Q, layers, plan, activation, lambda0, lambdaL, nthreads=0):
    """Deep K_R(Q) (P, P2); see :func:`lkr.kernels.renormalized_kernel`."""
    return _default_engine().deep_renormalized_kernel(X, Y, Q, layers, plan, activation,
                                                      lambda0, lambdaL)


def deep_renormalized_kernel_diag(X, Q, layers, plan, activation, lambda0, lambdaL, nthreads=0):
    """Deep K_R(Q)(x, x) (P,)."""
    return _default_engine().deep_renormalized_kernel_diag(X, Q, layers, plan, activation,
                                                           lambda0, lambdaL)


def deep_local_kernel_adjoint(X, Y, W, w_symmetric, layers, plan, activation, lambda0,
                              nthreads=0):
    """Deep G(W) (d, d); see :func:`lkr.kernels.local_kernel_adjoint`."""
    return _default_engine().deep_local_kernel_adjoint(X, Y, W, w_symmetric, layers, plan,
                                                       activation, lambda0)


def deep_pack_compressed(X, cols, ncols, layers, plan, activation, lambda0, nthreads=0):
    """The stored deep kernel (P (P + 1) / 2, ncols); see :mod:`lkr._deep_kernels`."""
    return _default_engine().deep_pack_compressed(X, cols, ncols, layers, plan, activation,
                                                  lambda0)


# the collapsed sampler's factor calls (lkr._cuda.collapsed)
def chol_update(S, X, sign, nthreads=0):
    """Rank-k up/downdate of the augmented factor, in place (as ``lkr._core.chol_update``)."""
    return _default_engine().chol_update(S, X, sign)


def collapsed_sweep(S, G, Gp, logu, block, nthreads=0):
    """One Metropolis sweep over the blocks, in place (as ``lkr._core.collapsed_sweep``)."""
    return _default_engine().collapsed_sweep(S, G, Gp, logu, block)
