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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import backend
from .. import ntk as _ntk
from .._validate import is_integer as _is_integer

__all__ = ["MultiOutput", "jacobian", "ntk", "train_net", "train_linearized", "kernel_solution",
           "batches", "StopRule", "Stopper", "Trained", "linearized_gd", "eig"]


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

    def prepare(self, X):
        """The training objective on X: ``forward(params, rows=None)`` (P, D) and
        ``value_and_grad(params, Y, rows=None)``; the hidden layers computed once for
        lkr's FC, CNN, LCN and deep CNN nets (:mod:`lkr.experiments._multihead`), else
        through the D chains of :meth:`value_and_grad`."""
        from ._multihead import prepare

        obj = prepare(self, X)
        return _ChainObjective(self, X) if obj is None else obj

    def vjp(self, X, R, params=None):
        """J(X)^T R for R (P, D): the gradient of sum_{mu d} R_{mu d} f_d(x_mu), a dict
        shaped like params (hidden weights: summed over the outputs that share them)."""
        from ._multihead import prepare

        fast = prepare(self, X)
        p = self.params if params is None else params
        if fast is not None:
            return fast.vjp(p, R)
        g = self.base.vjp(X, np.ascontiguousarray(np.asarray(R, np.float64).T),
                          self.chained(p))
        out = {k: g[k].sum(axis=0) for k in self.hidden}
        out[self.readout] = g[self.readout]
        return out

    def jvp(self, X, tangent, params=None):
        """J(X) t (P, D) for a tangent shaped like params (the hidden tangents shared by the
        outputs, readout tangents one per output)."""
        from ._multihead import prepare

        fast = prepare(self, X)
        p = self.params if params is None else params
        if fast is not None:
            return fast.jvp(p, tangent)
        return backend.to_numpy(self.base.jvp(X, self.chained(tangent), self.chained(p))).T

    def value_and_grad(self, X, Y, params=None):
        """f(X) (P, D) and the gradient of (1/2) sum (Y - f)^2 (a dict shaped like params)."""
        f, g = self.base.value_and_grad(X, np.ascontiguousarray(np.asarray(Y).T),
                                        self.chained(params))
        grads = {k: g[k].sum(axis=0) for k in self.hidden}  # a shared weight: sum over uses
        grads[self.readout] = g[self.readout]
        return f.T, grads


class _ChainObjective:
    """The generic objective: the D outputs as D chains of the base net."""

    def __init__(self, m, X):
        self.m, self.X = m, X

    def forward(self, params, rows=None):
        return self.m.forward(self.X if rows is None else self.X[rows], params)

    def value_and_grad(self, params, Y, rows=None):
        return self.m.value_and_grad(self.X if rows is None else self.X[rows], Y, params)


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
    For lkr's FC, CNN and LCN nets the same matrix comes from their closed forms
    (:mod:`lkr.experiments._multihead`: GEMMs of sigma' v and the inputs, no Jacobian).
    """
    from ._multihead import prepare

    fast = prepare(m, X)
    if fast is not None and fast.ntk is not None:
        return fast.ntk(Y)
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


# -- when to stop ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StopRule:
    r"""When gradient descent stops, for the net and its linearisation alike.

    Checked every ``every`` steps on the train MSE L_t (mean over samples and outputs of
    (Y - f)^2 after t steps); the first that holds stops training, and its name is reported:

    - ``"tol"``: L_t <= tol L_0 (the loss fell below a fraction ``tol`` of its initial value);
    - ``"plateau"``: |L_{t-window} - L_t| < rtol L_{t-window} (less than a relative ``rtol``
      of progress over the last ``window`` steps);
    - ``"cap"``: t = max_steps (flagged in the reports: there training may be the limit).

    :meth:`fixed` runs exactly n steps (reason ``"fixed"``: the old ``--steps``).
    """

    tol: float = 1e-2
    rtol: float = 1e-3
    window: int = 200
    max_steps: int = 4000
    every: int = 10
    fixed_steps: bool = False

    def __post_init__(self):
        for name in ("tol", "rtol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"StopRule.{name} must be a finite number >= 0, got {v!r}")
        for name, low in (("max_steps", 0), ("every", 1), ("window", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"StopRule.{name} must be an integer >= {low}, got {v!r}")
        if self.window % self.every:
            raise ValueError(f"StopRule.window ({self.window}) must be a multiple of every "
                             f"({self.every})")

    @classmethod
    def fixed(cls, steps):
        """Exactly ``steps`` steps, no early stop."""
        return cls(tol=0.0, rtol=0.0, max_steps=int(steps), fixed_steps=True)

    def to_dict(self) -> dict:
        if self.fixed_steps:
            return {"rule": "fixed", "steps": self.max_steps}
        return {"rule": "tol, plateau or cap", "tol": self.tol, "rtol": self.rtol,
                "window": self.window, "max_steps": self.max_steps, "every": self.every,
                "loss": "train MSE, mean over samples and outputs of (Y - f)^2"}


class Stopper:
    """The streaming form of a :class:`StopRule`: ``due(t)`` says whether step t is checked,
    ``update(t, L)`` returns the reason to stop at step t (or None)."""

    def __init__(self, rule: StopRule):
        self.rule, self.L0, self.history = rule, None, {}

    def due(self, t):
        return t % self.rule.every == 0 or t >= self.rule.max_steps

    def update(self, t, L):
        r = self.rule
        if t >= r.max_steps:
            return "fixed" if r.fixed_steps else "cap"
        if r.fixed_steps:
            return None
        if self.L0 is None:
            self.L0 = L
        if t > 0 and L <= r.tol * self.L0:
            return "tol"
        prev = self.history.get(t - r.window)
        if prev is not None and abs(prev - L) < r.rtol * prev:
            return "plateau"
        self.history[t] = L
        self.history.pop(t - 2 * r.window, None)
        return None


def _rule(steps):
    return steps if isinstance(steps, StopRule) else StopRule.fixed(steps)


class Trained(NamedTuple):
    """A finished training: the result (net parameters, or alpha for the linearisation),
    the steps taken, why it stopped (:class:`StopRule`; ``"interrupted"`` on a Ctrl-C) and
    the final train MSE."""

    result: object
    steps: int
    stopped: str
    train_mse: float


def train_net(m: MultiOutput, X, Y, lr, steps, batch=None, seed=0, stop=None,
              momentum=0.0) -> Trained:
    """Gradient descent (minibatch: data gradient scaled by P/B) on (1/2) sum (Y - f)^2,
    with heavy-ball momentum beta: b <- beta b + g, w <- w - lr b (beta = 0: plain GD).

    ``steps`` is a number of steps or a :class:`StopRule`. The D outputs share one pass of
    the hidden layers where :mod:`lkr.experiments._multihead` knows the net. ``stop()`` is
    polled each step (Ctrl-C handling). Raises FloatingPointError when the outputs stop
    being finite.
    """
    rule = _rule(steps)
    params = {k: np.array(v, copy=True) for k, v in m.params.items()}
    obj = m.prepare(X)
    Y = np.asarray(Y, np.float64)
    P = X.shape[0]
    stopper = Stopper(rule)
    rows_of = batches(P, batch, rule.max_steps, seed)
    t, reason, L = 0, None, float("nan")
    while True:
        rows = None if batch is None or batch >= P else next(rows_of, None)
        if rows is None:
            f, g = obj.value_and_grad(params, Y)
        else:
            f = obj.forward(params) if stopper.due(t) else None
        if f is not None:
            if not np.all(np.isfinite(f)):
                raise FloatingPointError(f"gradient descent on the network diverged at step "
                                         f"{t}; lower the step size (lr = {lr:g})")
            if stopper.due(t):
                L = float(np.mean((Y - f) ** 2))
                reason = stopper.update(t, L)
                if reason is not None:
                    break
        if rows is not None:
            f, g = obj.value_and_grad(params, Y[rows], rows)
            if not np.all(np.isfinite(f)):
                raise FloatingPointError(f"gradient descent on the network diverged at step "
                                         f"{t}; lower the step size (lr = {lr:g})")
            scale = P / len(rows)
        else:
            scale = 1.0
        if momentum:
            if t == 0:
                buf = {k: np.zeros_like(a) for k, a in params.items()}
            for k in params:
                buf[k] *= momentum
                buf[k] += scale * g[k]
                params[k] -= lr * buf[k]
        else:
            for k in params:
                params[k] -= (lr * scale) * g[k]
        t += 1
        if stop is not None and stop():
            reason = "interrupted"
            L = float(np.mean((Y - obj.forward(params)) ** 2))
            break
    return Trained(params, t, reason, L)


def _check_lr(w, lr, momentum=0.0):
    # heavy ball on a quadratic is stable for lr lambda < 2 (1 + beta)
    if lr * float(w[-1]) >= 2.0 * (1.0 + momentum):
        raise FloatingPointError(f"gradient descent on the linearisation diverges: lr "
                                 f"lambda_max = {lr * float(w[-1]):.3g} >= 2 (1 + momentum); "
                                 f"lower the step size (lr = {lr:g})")


def linearized_gd(eig, F0, Y, lr, steps, stop=None, momentum=0.0) -> Trained:
    """Full-batch GD (heavy ball with ``momentum``) on the linearisation, in the eigenbasis
    of Theta = V diag(w) V^T: with alpha = V a and the residual r = V rho, every mode k
    evolves on its own,

        rho_k = c_k - w_k a_k (c = V^T r0),  mu_k <- beta mu_k - rho_k,  a_k <- a_k - lr mu_k,

    the function-space form of b <- beta b + g, u <- u - lr b from u = 0 (beta = 0: the
    plain step alpha += lr r). O(P D) per step after the eigendecomposition; the train MSE
    sum_k rho_k^2 / (P D) is checked by ``steps`` (a number or a :class:`StopRule`) at the
    same steps as the net's. Returns Trained(alpha, ...)."""
    rule = _rule(steps)
    w, V = eig
    _check_lr(w, lr, momentum)
    r0 = (np.asarray(Y, np.float64) - F0).reshape(-1)
    c = V.T @ r0
    lam = np.clip(w, 0.0, None)
    a, mu = np.zeros_like(c), np.zeros_like(c)
    n = r0.size
    stopper = Stopper(rule)
    t, reason = 0, None
    while True:
        rho = c - lam * a
        if stopper.due(t):
            L = float(rho @ rho) / n
            reason = stopper.update(t, L)
            if reason is not None:
                break
        mu *= momentum
        mu -= rho
        a -= lr * mu
        t += 1
        if stop is not None and stop():
            rho = c - lam * a
            reason, L = "interrupted", float(rho @ rho) / n
            break
    if not np.all(np.isfinite(a)):
        raise FloatingPointError(f"gradient descent on the linearisation diverged; lower "
                                 f"the step size (lr = {lr:g})")
    return Trained(V @ a, t, reason, L)


def train_linearized(K, F0, Y, lr, steps, batch=None, seed=0, D=1, stop=None, momentum=0.0):
    """The same optimiser on the linearisation, iterated in function space (see module).

    Parameters
    ----------
    K : (P D, P D) empirical NTK at w0 (sample-major)
    F0 : (P, D) outputs at w0; Y : (P, D) targets
    steps : a number of steps (returns alpha) or a :class:`StopRule` (returns
        :class:`Trained`)
    Returns alpha (P D,): predictions f0 + Theta(., X) alpha.
    """
    rule = _rule(steps)
    P = F0.shape[0]
    r0 = (np.asarray(Y, np.float64) - F0).reshape(-1)
    alpha = np.zeros_like(r0)
    stopper = Stopper(rule)
    rows_of = batches(P, batch, rule.max_steps, seed)
    t, reason, L = 0, None, float("nan")
    while True:
        if stopper.due(t):
            L = float(np.mean((r0 - K @ alpha) ** 2))
            reason = stopper.update(t, L)
            if reason is not None:
                break
        rows = next(rows_of)
        if momentum:
            # b <- beta b + g, u <- u - lr b with b = J^T mu: mu <- beta mu - (scaled r_B)
            if t == 0:
                mu = np.zeros_like(alpha)
            mu *= momentum
            if rows is None:
                mu -= r0 - K @ alpha
            else:
                idx = (rows[:, None] * D + np.arange(D)).reshape(-1)
                mu[idx] -= (P / len(rows)) * (r0[idx] - K[idx] @ alpha)
            alpha -= lr * mu
        elif rows is None:
            alpha += lr * (r0 - K @ alpha)
        else:
            idx = (rows[:, None] * D + np.arange(D)).reshape(-1)
            alpha[idx] += (lr * P / len(rows)) * (r0[idx] - K[idx] @ alpha)
        if not np.all(np.isfinite(alpha)):
            raise FloatingPointError(f"gradient descent on the linearisation diverged; lower "
                                     f"the step size (lr = {lr:g})")
        t += 1
        if stop is not None and stop():
            reason, L = "interrupted", float(np.mean((r0 - K @ alpha) ** 2))
            break
    return Trained(alpha, t, reason, L) if isinstance(steps, StopRule) else alpha


def eig(K):
    """(w, V): the eigendecomposition of the NTK (ascending), shared by the spectrum, the
    linearisation's GD and the kernel solution."""
    from scipy import linalg as sla

    return sla.eigh(K, check_finite=False, driver="evd")


def kernel_solution(K, F0, Y, rtol=None, eig=None):
    """alpha = Theta^+ (Y - f0), the minimum-norm least-squares limit of GD from u = 0.

    Eigenvalues below ``rtol * lambda_max`` (default P D eps) count as zero. ``eig``: the
    eigendecomposition (w, V) of K when already computed.
    """
    from scipy import linalg as sla

    r0 = (np.asarray(Y, np.float64) - F0).reshape(-1)
    w, V = sla.eigh(K, check_finite=False) if eig is None else eig
    rtol = K.shape[0] * np.finfo(np.float64).eps if rtol is None else rtol
    keep = w > rtol * w[-1]
    return V[:, keep] @ ((V[:, keep].T @ r0) / w[keep])
