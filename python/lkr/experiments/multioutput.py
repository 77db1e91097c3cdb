r"""D outputs from one of lkr's single-output nets, its Jacobian, tangent kernel and training.

lkr's nets (:mod:`lkr.nets`) have one output. A classifier with one output per class gets D
readouts that share every hidden parameter:

.. math:: f_d(x) = f(x; \theta_h, v_d), \quad d = 1..D,

(``theta_h`` the hidden weights, ``v_d`` the d-th copy of the readout ``v``). The D outputs
are computed by the nets' own batched *chain* axis: the hidden weights are broadcast to D
chains and the readouts are the chains, so ``forward``/``value_and_grad`` are one compiled
call; the gradient of a shared parameter is the sum over the chains of its per-chain
gradient (the chain rule for a parameter used D times).

Jacobian rows are (sample, output) pairs, sample-major (row ``mu * D + d``, the order of
:func:`lkr.ntk.from_torch`); columns the hidden parameters in the base net's flatten order,
then ``v_1, ..., v_D``. Its Gram matrix, the empirical NTK of the D-output net, is

.. math:: \Theta_{(\mu d),(\nu d')} = J_h^d(x_\mu) \cdot J_h^{d'}(x_\nu)
          + \delta_{d d'} \, J_v(x_\mu) \cdot J_v(x_\nu),

computed by :func:`ntk` from :func:`lkr.ntk.jacobian` (per readout) and :func:`lkr.ntk.gram`.

Training: :func:`train_net` is (full-batch or minibatch) gradient descent on the squared
loss (1/2) sum_{mu,d} (Y_{mu d} - f_d(x_mu))^2. :func:`train_linearized` runs the *same*
optimiser on the linearisation f_lin(u) = f(w0) + J u exactly, in function space: from u = 0
every iterate is u_t = J^T alpha_t, and a step on the rows B,
u += eta s J_B^T (Y_B - f_B), is alpha_B += eta s (Y_B - f0_B - Theta_{B,:} alpha). Its limit
for many steps is the kernel (minimum-norm least-squares) solution :func:`kernel_solution`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import ntk as _ntk
from .._validate import is_integer as _is_integer

__all__ = ["MultiOutput", "jacobian", "ntk", "train_net", "train_linearized", "kernel_solution",
           "batches"]


class MultiOutput:
    """D readouts sharing the hidden parameters of a single-output lkr net.

    Parameters
    ----------
    base : FCNet, DeepFCNet, CNNNet, LCNNet (any :mod:`lkr.nets` net whose output is linear
        in the parameter ``readout``)
        Its parameters are the initialisation: hidden weights and readout ``v_1``.
    outputs : int
        D >= 1; readouts 2..D are fresh prior draws (seeded by ``seed``). With D = 1 this is
        ``base`` itself.
    seed : int
    readout : str
        Name of the readout parameter of ``base`` (``"v"`` for lkr's nets).
    """

    def __init__(self, base, outputs, seed=0, readout="v"):
        if readout not in base.param_shapes:
            raise ValueError(f"readout {readout!r} is not a parameter of {type(base).__name__} "
                             f"(it has {list(base.param_shapes)})")
        if not _is_integer(outputs) or outputs < 1:
            raise ValueError(f"outputs must be a positive integer, got {outputs!r}")
        self.base, self.D, self.readout = base, int(outputs), readout
        p = base.params
        v = p[readout][None]
        if self.D > 1:
            extra = base.init_params(np.random.default_rng([int(seed), 7]), chains=self.D - 1)
            v = np.concatenate([v, extra[readout].astype(v.dtype)], axis=0)
        p[readout] = v
        self.params = p

    @property
    def hidden(self):
        return [k for k in self.base.param_shapes if k != self.readout]

    @property
    def num_params(self) -> int:
        shapes = self.base.param_shapes
        return int(sum(math.prod(s) for k, s in shapes.items() if k != self.readout)
                   + self.D * math.prod(shapes[self.readout]))

    def chained(self, params=None) -> dict:
        """The base net's params with a chain axis of D (hidden weights broadcast)."""
        p = self.params if params is None else params
        out = {k: np.broadcast_to(p[k], (self.D,) + p[k].shape) for k in self.hidden}
        out[self.readout] = p[self.readout]
        return out

    def single(self, d, params=None):
        """The base net with readout d (the d-th output as a net of its own)."""
        p = dict(self.params if params is None else params)
        p[self.readout] = p[self.readout][d]
        return self.base.with_params(p)

    def forward(self, X, params=None):
        """f(X): shape (P, D)."""
        return backend.to_numpy(self.base.forward(X, self.chained(params))).T

    def value_and_grad(self, X, Y, params=None):
        """f(X) (P, D) and the gradient of (1/2) sum (Y - f)^2 (a dict shaped like params)."""
        f, g = self.base.value_and_grad(X, np.ascontiguousarray(np.asarray(Y).T),
                                        self.chained(params))
        grads = {k: g[k].sum(axis=0) for k in self.hidden}  # a shared weight: sum over uses
        grads[self.readout] = g[self.readout]
        return f.T, grads


def _split_columns(m):
    """Slices of the base net's flattened columns: hidden ones and the readout's."""
    hid, start = [], 0
    for k, s in m.base.param_shapes.items():
        n = math.prod(s)
        if k == m.readout:
            ro = slice(start, start + n)
        else:
            hid.append(slice(start, start + n))
        start += n
    return hid, ro


def _per_output(m, X):
    """[(J_h^d (P, n_h), J_v^d (P, n_v)) for d in 0..D-1] from lkr.ntk.jacobian."""
    hid, ro = _split_columns(m)
    out = []
    for d in range(m.D):
        J = np.asarray(backend.to_numpy(_ntk.jacobian(m.single(d), X)))
        out.append((np.concatenate([J[:, s] for s in hid], axis=1), J[:, ro]))
    return out


def jacobian(m: MultiOutput, X) -> np.ndarray:
    """The Jacobian of the D outputs, (P D, num_params), rows sample-major (see module)."""
    parts = _per_output(m, X)
    P, nh = parts[0][0].shape
    nv = parts[0][1].shape[1]
    J = np.zeros((P, m.D, nh + m.D * nv), dtype=parts[0][0].dtype)
    for d, (Jh, Jv) in enumerate(parts):
        J[:, d, :nh] = Jh
        J[:, d, nh + d * nv:nh + (d + 1) * nv] = Jv
    return J.reshape(P * m.D, -1)


def ntk(m: MultiOutput, X, Y=None) -> np.ndarray:
    """Empirical NTK Theta(X, Y) = J(X) J(Y)^T of the D outputs, (P D, P' D), sample-major.

    The hidden block through :func:`lkr.ntk.gram` (symmetric, syrk) when Y is None; the
    readout block is diagonal in the outputs (each readout moves its own output only).
    """
    A = _per_output(m, X)
    B = A if Y is None else _per_output(m, Y)
    P, P2, D = A[0][0].shape[0], B[0][0].shape[0], m.D
    # stack sample-major: row mu * D + d
    Ah = np.stack([a for a, _ in A], axis=1).reshape(P * D, -1)
    if Y is None:
        K = np.array(_ntk.gram(Ah), dtype=np.float64)
    else:
        Bh = np.stack([b for b, _ in B], axis=1).reshape(P2 * D, -1)
        K = Ah @ Bh.T
    K = K.reshape(P, D, P2, D)
    for d in range(D):
        K[:, d, :, d] += A[d][1] @ B[d][1].T
    K = K.reshape(P * D, P2 * D)
    if Y is None:
        K = 0.5 * (K + K.T)
    return K


def batches(P, batch, steps, seed):
    """The row sets of each step: None (full batch) or a seeded sequence of minibatches
    (epochs of a permutation), shared by the net and its linearisation."""
    if batch is None or batch >= P:
        for _ in range(steps):
            yield None
        return
    rng = np.random.default_rng([int(seed), 11])
    order, pos = None, P
    for _ in range(steps):
        if pos + batch > P:
            order, pos = rng.permutation(P), 0
        yield np.sort(order[pos:pos + batch])
        pos += batch


def train_net(m: MultiOutput, X, Y, lr, steps, batch=None, seed=0, stop=None):
    """Gradient descent (minibatch: data gradient scaled by P/B) on (1/2) sum (Y - f)^2.

    Returns (params, steps_done). ``stop()`` is polled each step (Ctrl-C handling).
    Raises FloatingPointError when the outputs stop being finite.
    """
    params = {k: np.array(v, copy=True) for k, v in m.params.items()}
    P = X.shape[0]
    done = 0
    for t, rows in enumerate(batches(P, batch, steps, seed)):
        if rows is None:
            f, g = m.value_and_grad(X, Y, params)
            scale = 1.0
        else:
            f, g = m.value_and_grad(X[rows], Y[rows], params)
            scale = P / len(rows)
        if not np.all(np.isfinite(f)):
            raise FloatingPointError(f"gradient descent on the network diverged at step {t}; "
                                     f"lower the step size (lr = {lr:g})")
        for k in params:
            params[k] -= (lr * scale) * g[k]
        done = t + 1
        if stop is not None and stop():
            break
    return params, done


def train_linearized(K, F0, Y, lr, steps, batch=None, seed=0, D=1):
    """The same optimiser on the linearisation, in function space (see module).

    Parameters
    ----------
    K : (P D, P D) empirical NTK at w0 (sample-major)
    F0 : (P, D) outputs at w0; Y : (P, D) targets
    Returns alpha (P D,): predictions f0 + Theta(., X) alpha.
    """
    P = F0.shape[0]
    r0 = (np.asarray(Y, np.float64) - F0).reshape(-1)
    alpha = np.zeros_like(r0)
    for rows in batches(P, batch, steps, seed):
        if rows is None:
            alpha += lr * (r0 - K @ alpha)
        else:
            idx = (rows[:, None] * D + np.arange(D)).reshape(-1)
            alpha[idx] += (lr * P / len(rows)) * (r0[idx] - K[idx] @ alpha)
        if not np.all(np.isfinite(alpha)):
            raise FloatingPointError(f"gradient descent on the linearisation diverged; lower "
                                     f"the step size (lr = {lr:g})")
    return alpha


def kernel_solution(K, F0, Y, rtol=None):
    """alpha = Theta^+ (Y - f0), the minimum-norm least-squares limit of GD from u = 0.

    Eigenvalues below ``rtol * lambda_max`` (default P D eps) count as zero.
    """
    from scipy import linalg as sla

    r0 = (np.asarray(Y, np.float64) - F0).reshape(-1)
    w, V = sla.eigh(K, check_finite=False)
    rtol = K.shape[0] * np.finfo(np.float64).eps if rtol is None else rtol
    keep = w > rtol * w[-1]
    return V[:, keep] @ ((V[:, keep].T @ r0) / w[keep])
