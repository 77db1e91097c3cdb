"""Effective-action solvers: lkr's CNN and FC fits against "the authors' approach".

The peer is a faithful NumPy re-creation of how the reference code of Aiudi et al.
evaluates the CNN action: every evaluation rebuilds the whole local kernel from the
patches (einsum for the patch overlaps, arcsin for erf) and contracts it with Q; the
gradient is what reverse-mode autograd returns for that graph (the vector-Jacobian product
through the solve and log-det back onto Q, contracting dS/dK_R with the *saved* 4-index
tensor - autograd does not re-derive the kernel build, which does not depend on Q).
Three drivers are reported. (1) The reference code's own: ``scipy.optimize.fsolve`` on the
autograd gradient, with Q as Np^2 free entries, xtol = 1e-6, Q0 = I (its finite-difference
Jacobian alone costs Np^2 = 256 gradient evaluations). (2), (3) A stronger driver the
peer could have used, ``scipy.optimize.minimize(method="L-BFGS-B")`` on a Cholesky
parametrisation of Q: with SciPy's default tolerances (it stops around a relative gradient
of 1e-5) and run to lkr's accuracy (relative gradient 1e-8).

A full run of the peer at P = 500 takes minutes, so (full mode) it is timed honestly by
parts: the cost of one peer evaluation is measured (median of a few), and the number of
evaluations its optimiser needs is counted by running the same optimiser on the same
action evaluated by lkr (the same function to rounding, so the same trajectory). The
peer's fit time is their product; the record says so (``method``). In quick mode
(P = 100) the default-tolerance peer runs to the end.

lkr's time includes building its local-kernel cache (``kernel_s``) as well as the solve.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import erf

from .harness import measure, record

SUITE = "theory"


# -- problem --------------------------------------------------------------------------
def _cnn_problem(P, seed=0):
    import lkr

    g = lkr.PatchGeometry((32, 32), 8, 8)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 32, 32))
    w = rng.standard_normal(g.patch_size)
    v = rng.standard_normal(g.num_patches)
    y = erf(g.patches(X) @ w / np.sqrt(g.patch_size)) @ v / np.sqrt(g.num_patches)
    return g, X, y


# -- the peer -------------------------------------------------------------------------
class PeerCNNAction:
    """The authors' approach in NumPy: kernel rebuilt from patches in every evaluation."""

    def __init__(self, patches, y, T, alpha, lambda0=1.0, lambda1=1.0):
        self.p = patches  # (P, Np, M)
        self.y = y
        self.T, self.alpha, self.l0, self.l1 = T, alpha, lambda0, lambda1
        self.P, self.Np, self.M = patches.shape

    def _kernel(self):
        P, Np, M = self.P, self.Np, self.M
        flat = self.p.reshape(P * Np, M)
        C = (flat @ flat.T).reshape(P, Np, P, Np).transpose(0, 2, 1, 3) / (self.l0 * M)
        d = np.einsum("pim,pim->pi", self.p, self.p) / (self.l0 * M)
        den = np.sqrt((1 + 2 * d)[:, None, :, None] * (1 + 2 * d)[None, :, None, :])
        return (2 / np.pi) * np.arcsin(2 * C / den)  # (P, P, Np, Np)

    def value_and_grad(self, Q):
        return full_action_grad(self._kernel(), Q, self.y, self.T, self.alpha, self.l1)


def full_action_grad(K, Q, y, T, alpha, l1):
    """S and dS/dQ over all Np^2 entries of Q (symmetric or not, as the reference code
    treats it), given the 4-index kernel: the forward graph and its reverse-mode VJP."""
    P, Np = K.shape[0], K.shape[-1]
    Kf = K.reshape(P * P, Np * Np)
    KR = (Kf @ Q.reshape(-1)).reshape(P, P) / (l1 * Np)
    A = KR + T * np.eye(P)
    Ainv = np.linalg.inv(A)  # what a plain autograd graph of inverse/logdet computes
    a = Ainv @ y
    b = y @ Ainv  # = A^-T y
    c = alpha / P
    S = np.trace(Q) - np.linalg.slogdet(Q)[1] + c * (y @ a + np.linalg.slogdet(A)[1])
    gKR = c * (Ainv.T - np.outer(b, a))  # backward through y^T A^-1 y + log det A
    gQ = np.eye(Np) - np.linalg.inv(Q).T + (gKR.reshape(-1) @ Kf).reshape(Np, Np) / (l1 * Np)
    return S, gQ


def _chol(theta, n):
    L = np.zeros((n, n))
    L[np.tril_indices(n)] = theta
    L[np.diag_indices(n)] = np.exp(np.diag(L))
    return L


def lbfgs_on_cholesky(value_and_grad, n, Q0, rel_target=None):
    """Peer optimiser: L-BFGS-B over Q = L L^T, log-diagonal L.

    ``rel_target=None``: SciPy's default tolerances (what a user gets). Otherwise the
    tolerances are switched off and the run stops once the relative gradient
    ||dS/dQ|| / (||I|| + ||Q^-1|| + ||c G||) - lkr's convergence measure - reaches the target,
    for a comparison at equal accuracy.
    """
    L0 = np.linalg.cholesky(Q0)
    tril = np.tril_indices(n)
    on_diag = tril[0] == tril[1]
    theta0 = L0[tril].copy()
    theta0[on_diag] = np.log(np.diag(L0))
    last = {}

    def f(theta):
        L = _chol(theta, n)
        Q = L @ L.T
        S, gQ = value_and_grad(Q)
        Qinv = np.linalg.inv(Q)
        last["rel"] = np.linalg.norm(gQ) / (np.sqrt(n) + np.linalg.norm(Qinv)
                                           + np.linalg.norm(gQ - np.eye(n) + Qinv))
        gL = 2 * gQ @ L
        g = gL[tril]
        g[on_diag] *= np.exp(theta[on_diag])
        return S, g

    if rel_target is None:
        res = minimize(f, theta0, jac=True, method="L-BFGS-B")
    else:
        def stop(intermediate_result):
            if last["rel"] <= rel_target:
                raise StopIteration

        res = minimize(f, theta0, jac=True, method="L-BFGS-B", callback=stop,
                       options=dict(ftol=0.0, gtol=0.0, maxiter=20_000, maxfun=20_000))
    L = _chol(res.x, n)
    return L @ L.T, res, last["rel"]


# -- suite ------------------------------------------------------------------------------
def _cnn_rows(quick):
    from lkr.theory import CNNTheory

    P = 100 if quick else 500
    width, T = 20, 0.01
    g, X, y = _cnn_problem(P)
    case = f"cnn fit P={P} 32x32 m8 s8 Np=16 erf T={T} N={width}"
    rows = []

    def lkr_fit():
        th = CNNTheory(geometry=g, width=width, temperature=T)
        th.fit(X, y)
        return th

    med, iqr, n, th = measure(lkr_fit, repeats=3 if quick else 5, warmup=1)
    sol = th.solution
    t_bind = measure(lambda: CNNTheory(geometry=g, width=width, temperature=T).set_data(X, y),
                     repeats=3, warmup=0)[0]
    rows.append(record(SUITE, case, "lkr (kernel once + BFGS)", med, iqr, n,
                       iterations=sol.iterations, evaluations=sol.evaluations,
                       rel_grad_norm=sol.rel_grad_norm, kernel_s=t_bind,
                       solve_s=med - t_bind))

    peer = PeerCNNAction(g.patches(X), y, T, P / width)
    Q0 = np.eye(g.num_patches)
    per_eval, per_iqr, n_ev, _ = measure(lambda: peer.value_and_grad(Q0),
                                         repeats=3, warmup=1 if quick else 0,
                                         max_seconds=20)
    th.set_data(X, y)

    def lkr_vg(Q):  # the same action and gradient, to count the peer optimiser's steps
        Q = (Q + Q.T) / 2
        return th.action(Q), th.gradient(Q)

    lkr_name = "lkr (kernel once + BFGS)"
    for label, target in (("default tolerances", None), ("to lkr's accuracy", sol.tol)):
        if quick and target is None:
            t0 = time.perf_counter()
            Qp, res, rel = lbfgs_on_cholesky(peer.value_and_grad, g.num_patches, Q0)
            peer_total = time.perf_counter() - t0
            how = f"ran to the end ({res.nfev} evaluations)"
        else:
            Qp, res, rel = lbfgs_on_cholesky(lkr_vg, g.num_patches, Q0, target)
            peer_total = res.nfev * per_eval
            how = f"extrapolated: {res.nfev} evaluations x measured {per_eval:.3g} s each"
        err = float(np.abs(Qp - sol.Q).max() / np.abs(sol.Q).max())
        rows.append(record(SUITE, case, f"peer L-BFGS-B, {label}", peer_total,
                           per_iqr * res.nfev, n_ev, ratio=peer_total / med, vs=lkr_name,
                           evaluations=int(res.nfev), per_eval_s=per_eval, method=how,
                           rel_grad_norm=float(rel), max_rel_err=err,
                           note="ratio = peer time / lkr time (kernel + fit); "
                                "max_rel_err = max|Q_peer - Q_lkr| / max|Q_lkr|"))
    # The reference code itself: scipy.optimize.fsolve on the autograd gradient over all
    # Np^2 entries of Q (xtol 1e-6, Q0 = I); its finite-difference Jacobian alone costs
    # Np^2 gradient evaluations. Counted on the same function with a cached tensor.
    from scipy.optimize import fsolve

    import lkr

    K4 = lkr.local_kernel(X, geometry=g)
    Np = g.num_patches
    nfev = [0]

    def grad_vec(q):
        nfev[0] += 1
        return full_action_grad(K4, q.reshape(Np, Np), y, T, P / width, 1.0)[1].ravel()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fsolve's "not making progress"
        qf, info, ier, msg = fsolve(grad_vec, np.eye(Np).ravel(), xtol=1e-6, full_output=True)
    Qf = qf.reshape(Np, Np)
    peer_total = nfev[0] * per_eval
    rows.append(record(SUITE, case, "peer fsolve on gradient (reference code)", peer_total,
                       per_iqr * nfev[0], n_ev, ratio=peer_total / med, vs=lkr_name,
                       evaluations=nfev[0], per_eval_s=per_eval,
                       method=f"extrapolated: {nfev[0]} evaluations x measured "
                              f"{per_eval:.3g} s each (fsolve: {msg.strip()[:60]})",
                       max_rel_err=float(np.abs(Qf - sol.Q).max() / np.abs(sol.Q).max()),
                       converged=bool(ier == 1),
                       note="Q as Np^2 free entries, as in the reference code; when fsolve "
                            "fails (converged False) the reference code retries from a "
                            "perturbed start, so its real cost is higher still"))
    rows.append(record(SUITE, case, "peer: one evaluation", per_eval, per_iqr, n_ev,
                       ratio=per_eval / (med / max(1, sol.evaluations)),
                       vs="lkr per evaluation (fit time / evaluations)"))
    return rows


def _fc_rows(quick):
    import lkr
    from lkr.theory import FCTheory

    P = 1000 if quick else 5000
    rng = np.random.default_rng(1)
    X = rng.standard_normal((P, 1024))
    y = np.tanh(X[:, :8].sum(1) / 2)
    case = f"fc fit P={P} N0=1024 erf T=0.01 N=100"
    t_k = measure(lambda: lkr.nngp(X), repeats=3, warmup=1)[0]
    th = FCTheory(width=100, temperature=0.01)
    t0 = time.perf_counter()
    th.set_data(X, y)
    t_bind = time.perf_counter() - t0
    eigh_s = th._cache["eigh_seconds"]
    med, iqr, n, sol = measure(lambda: th.fit(X, y), repeats=5, warmup=1)
    rows = [record(SUITE, case, "lkr nngp kernel", t_k, 0.0, 3),
            record(SUITE, case, "lkr eigendecomposition (once per data set)", eigh_s, 0.0, 1,
                   bind_s=t_bind),
            record(SUITE, case, "lkr fit after kernel + eigh (O(P) root)", med, iqr, n,
                   rel_grad_norm=sol.rel_grad_norm)]
    widths = np.geomspace(10, 10_000, 20)
    t0 = time.perf_counter()
    th.fit_path(X, y, widths)
    rows.append(record(SUITE, case, "lkr fit_path 20 widths (spectrum reused)",
                       time.perf_counter() - t0, 0.0, 1))
    return rows


def _cnn_scale_rows(quick):
    """Issue 13 item 4: the whole CNN fit at P in the thousands against one
    ``renormalized_kernel`` call on the same data (goal: within 8x). Alternating, in one
    process; the compressed kernel is float64 when it fits half the available memory."""
    import lkr
    from lkr.theory import CNNTheory

    rows = []
    for P in ((512,) if quick else (2048, 4096)):
        g, X, y = _cnn_problem(P)
        case = f"cnn fit at scale P={P} 32x32 m8 s8 Np=16 erf T=0.01 N=20"
        Q = np.eye(g.num_patches)
        t_rk, t_fit, info = [], [], {}
        for _ in range(1 if P >= 4096 else 2):  # alternate the two
            t0 = time.perf_counter()
            lkr.renormalized_kernel(X, Q=Q, geometry=g)
            t_rk.append(time.perf_counter() - t0)
            th = CNNTheory(geometry=g, width=20, temperature=0.01)
            t0 = time.perf_counter()
            sol = th.fit(X, y)
            t_fit.append(time.perf_counter() - t0)
            info = dict(evaluations=sol.evaluations, iterations=sol.iterations,
                        converged=sol.converged, kernel_dtype=sol.extra.get("kernel_dtype"),
                        materialized=sol.extra.get("materialized"),
                        kernel_gb=th._cache.nbytes / 1e9)
            del th
        rk, fit = float(np.median(t_rk)), float(np.median(t_fit))
        rows.append(record(SUITE, case, "lkr renormalized_kernel (one call)", rk, 0.0,
                           len(t_rk)))
        rows.append(record(SUITE, case, "lkr CNNTheory.fit (kernel + solve)", fit, 0.0,
                           len(t_fit), ratio=fit / rk, vs="lkr renormalized_kernel (one call)",
                           note="goal: ratio <= 8", **info))
    return rows


def _cnn_multi_rows(quick):
    """Issue 11: CNN with D = 10 outputs against D = 1 on the same data (32x32, filter and
    stride 8, Np = 16: Q of size 160). The P D x P D algebra (Cholesky and inverse of A)
    grows as D^3, so the full P = 500 problem is timed at a smaller P in quick mode."""
    from lkr.theory import CNNTheory

    P = 100 if quick else 500
    g, X, y = _cnn_problem(P)
    rng = np.random.default_rng(3)
    D = 10
    Y = np.stack([y] + [y * rng.uniform(0.5, 1.5) + 0.1 * rng.standard_normal(P)
                        for _ in range(D - 1)], axis=1)
    width, T = 200, 0.01  # Nc >= Np D = 160
    case = f"cnn multi-output fit P={P} 32x32 m8 s8 Np=16 erf T={T} N={width}"
    t1, tD = [], []
    for _ in range(2):  # alternate
        for store, Yk in ((t1, y), (tD, Y)):
            th = CNNTheory(geometry=g, width=width, temperature=T)
            t0 = time.perf_counter()
            sol = th.fit(X, Yk)
            store.append((time.perf_counter() - t0, sol))
    (a, s1), (b, sD) = min(t1, key=lambda t: t[0]), min(tD, key=lambda t: t[0])
    return [record(SUITE, case, "lkr fit D=1", a, 0.0, len(t1), evaluations=s1.evaluations),
            record(SUITE, case, f"lkr fit D={D}", b, 0.0, len(tD), ratio=b / a,
                   vs="lkr fit D=1", evaluations=sD.evaluations, converged=sD.converged,
                   per_eval_ratio=(b / sD.evaluations) / (a / s1.evaluations),
                   note="goal: ratio < 4; the (P D)^3 Cholesky/inverse of A dominates")]


def _eigh_route_rows(quick):
    """Issue 13 item 5: which LAPACK route to eigenvalues + U^T y is cheapest. The drivers
    run alternately in one process (ratios, not absolute times, are the result on a shared
    machine); "eigenvalues only" is the lower bound a tridiagonal-only route could reach."""
    import scipy.linalg as sla

    import lkr
    from lkr._blas import blas_threads

    rows = []
    for P in ((1000,) if quick else (2000, 5000)):
        rng = np.random.default_rng(2)
        X = rng.standard_normal((P, 256))
        K = lkr.nngp(X)
        case = f"fc kernel spectrum P={P}"
        routes = {"evd": lambda K=K: sla.eigh(K, driver="evd", check_finite=False),
                  "evr": lambda K=K: sla.eigh(K, driver="evr", check_finite=False),
                  "ev": lambda K=K: sla.eigh(K, driver="ev", check_finite=False),
                  "eigenvalues only (evr)": lambda K=K: sla.eigh(K, driver="evr",
                                                                 eigvals_only=True,
                                                                 check_finite=False)}
        for threads in (1, None):
            times = {k: [] for k in routes}
            with blas_threads(threads or 1, enabled=threads is not None):
                for _ in range(2 if P <= 2000 else 1):
                    for name, fn in routes.items():  # alternating: the load hits all alike
                        t0 = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - t0)
            base = min(times["evd"])
            tn = "1 BLAS thread" if threads else "default BLAS threads"
            for name, ts in times.items():
                rows.append(record(SUITE, case, f"scipy eigh driver {name}, {tn}", min(ts), 0.0,
                                   len(ts), ratio=min(ts) / base, vs="evd (lkr's choice)"))
    return rows


def _fc_beyond_rows(quick):
    """docs/theory-beyond-odd.md 1.1 and 2.1 at large P: the non-central relu fit and the
    D = 10 fit after
    the (shared) eigendecomposition."""
    import lkr
    from lkr.theory import FCTheory

    P = 1000 if quick else 5000
    rng = np.random.default_rng(3)
    X = rng.standard_normal((P, 1024))
    y = np.maximum(X[:, :8].sum(1) / np.sqrt(8), 0) + 0.5
    rows = []
    case = f"fc relu non-central fit P={P} N0=1024 T=0.01 N=100"
    th = FCTheory(width=100, temperature=0.01, activation="relu")
    t0 = time.perf_counter()
    th.set_data(X, y)
    t_bind = time.perf_counter() - t0
    med, iqr, n, sol = measure(lambda: th.fit(X, y), repeats=5, warmup=1)
    rows.append(record(SUITE, case, "lkr kernel + eigendecomposition (once per data set)",
                       t_bind, 0.0, 1, eigh_s=th._cache["eigh_seconds"]))
    rows.append(record(SUITE, case, "lkr non-central (Q0, Q1) fit after eigh", med, iqr, n,
                       solve_s=sol.seconds, rel_grad_norm=sol.rel_grad_norm,
                       iterations=sol.iterations, goal_s=0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        odd = FCTheory(width=100, temperature=0.01, activation="relu", mean="ignore")
    t0 = time.perf_counter()
    odd.fit(X, y)
    rows.append(record(SUITE, case, "lkr one-parameter fit, spectrum shared (incl. bind)",
                       time.perf_counter() - t0, 0.0, 1, shared=odd._cache is th._cache))
    D = 10
    Y = lkr.data.one_hot(rng.integers(0, D, P), D) - 1.0 / D
    case = f"fc D={D} outputs fit P={P} N0=1024 erf T=0.01 N=100"
    thD = FCTheory(width=100, temperature=0.01)
    t0 = time.perf_counter()
    thD.set_data(X, Y)
    t_bind = time.perf_counter() - t0
    med, iqr, n, sol = measure(lambda: thD.fit(X, Y), repeats=3, warmup=1)
    rows.append(record(SUITE, case, "lkr kernel + eigendecomposition (once per data set)",
                       t_bind, 0.0, 1))
    rows.append(record(SUITE, case, "lkr D x D fit after eigh (O(P D^2) per evaluation)", med,
                       iqr, n, solve_s=sol.seconds, rel_grad_norm=sol.rel_grad_norm,
                       iterations=sol.iterations, evaluations=sol.evaluations, goal_s=1.0))
    return rows


def _deep_cnn_rows(quick):
    """Issues 12 and 21: DeepCNNTheory fit (kernel + solve), L = 2, P = 500 on 8 x 8 inputs
    (3 x 3 stride 1 "same", then 2 x 2 stride 2 "same": d = 16), against the one-layer
    CNNTheory of the same final grid (4 x 4 stride 2 "same"); goal: at most 2x. Alternating."""
    import lkr
    from lkr.theory import CNNTheory, DeepCNNTheory

    P = 100 if quick else 500
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P, 8, 8))
    y = np.tanh(3 * X[:, 2:6, 2:6].mean((1, 2))) + 0.1 * rng.standard_normal(P)
    dg = lkr.DeepGeometry((8, 8), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    g1 = lkr.PatchGeometry((8, 8), 4, 2, boundary="same")
    case = f"deep cnn fit L=2 P={P} 8x8 [3x3/1, 2x2/2] same d=16 erf T=0.01 N=100"
    times = {"deep": [], "one": []}
    info = {}
    for _ in range(2):  # alternate
        for key in ("deep", "one"):
            th = (DeepCNNTheory(dg, 100, 0.01) if key == "deep"
                  else CNNTheory(g1, 100, 0.01))
            t0 = time.perf_counter()
            sol = th.fit(X, y)
            times[key].append(time.perf_counter() - t0)
            info[key] = dict(evaluations=sol.evaluations, converged=sol.converged)
    deep, one = min(times["deep"]), min(times["one"])
    return [record(SUITE, case, "lkr CNNTheory.fit (one layer, same final grid)", one, 0.0, 2,
                   **info["one"]),
            record(SUITE, case, "lkr DeepCNNTheory.fit (kernel + solve)", deep, 0.0, 2,
                   ratio=deep / one, vs="lkr CNNTheory.fit (one layer, same final grid)",
                   note="goal: at most 2x the one-layer fit (issue 21)", **info["deep"])]


def run(quick: bool = False):
    return (_cnn_rows(quick) + _fc_rows(quick) + _fc_beyond_rows(quick) + _eigh_route_rows(quick)
            + _cnn_scale_rows(quick) + _cnn_multi_rows(quick) + _deep_cnn_rows(quick))
