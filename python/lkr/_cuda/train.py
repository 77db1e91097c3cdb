"""The training step and the Langevin update of ``lkr._core`` (csrc/lkr/train_step.hpp,
noise.hpp) for the CUDA engine, as array expressions over the engine's readout passes
(:mod:`lkr._cuda.nets`).

The CuPy training path does not call them (the nets' objectives fuse on NumPy only, and
Langevin on CuPy draws from CuPy's generator); they keep the engines' function lists one,
and run in the host emulator of the tests.
"""
from __future__ import annotations

import functools

__all__ = ["TrainingCalls", "module_functions"]

_NAMES = ("train_step", "langevin_update")


class TrainingCalls:
    """Mixed into :class:`lkr._cuda.Engine` (which provides ``xp``, ``readout_forward`` and
    ``readout_backward``)."""

    def train_step(self, Z, W, u, y, H, S, *, rows_per_sample, scale, activation, nthreads=0):
        """One training step of the FC/CNN objective (as ``lkr._core.train_step``): the two
        GEMMs around the readout passes; returns (f, gu, gW)."""
        xp = self.xp
        C, Kout, _ = W.shape
        n = Z.shape[0] // rows_per_sample
        K = rows_per_sample * Kout
        xp.matmul(Z[None], W.transpose(0, 2, 1), out=H.reshape(C, n * rows_per_sample, Kout))
        f = xp.empty((C, n), dtype=W.dtype)
        self.readout_forward(H, u, S, f, scale=scale, activation=activation)
        rc = (f - y) * scale
        gu = xp.empty((C, K), dtype=W.dtype)
        self.readout_backward(H, S, rc, gu)
        gW = xp.matmul(H.reshape(C, n * rows_per_sample, Kout).transpose(0, 2, 1), Z[None])
        return f, gu, gW

    def langevin_update(self, a, g, *, decay, lr, amp, key, stream, step, nthreads=0):
        """In place: a <- decay a - lr g + amp xi (as ``lkr._core.langevin_update``), xi from
        the array library's generator seeded by (key, stream, step) (not the CPU's Philox
        numbers)."""
        seed = (int(key) ^ (int(stream) * 0x9E3779B97F4A7C15) ^ (int(step) * 0xC2B2AE3D27D4EB4F))
        rng = self.xp.random.default_rng(seed & (2**63 - 1))
        xi = rng.standard_normal(a.shape, dtype=a.dtype)
        a *= decay
        a -= lr * g
        a += amp * xi


def module_functions(default_engine):
    """Module-level functions of the calls above that use ``default_engine()``."""
    out = {}
    for name in _NAMES:
        method = getattr(TrainingCalls, name)

        def fn(*args, _name=name, **kw):
            return getattr(default_engine(), _name)(*args, **kw)

        out[name] = functools.wraps(method)(fn)
    return out
