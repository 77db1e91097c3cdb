"""The D-output CNN/LCN solves of lkr.theory._shared_outputs (docs/theory-beyond-odd.md
section 3.3): the shared-outputs problem (Q = Q1 (x) I_D) is the full problem restricted,
the cheap evaluation at such points equals the dense one, the odd fixed point reaches the
dense reference's saddle, and a fixed point that does not converge hands over to BFGS."""
import numpy as np
import pytest
from theory_cnn_reference import Problem

import lkr
from lkr.theory import CNNTheory, LCNTheory
from lkr.theory import _shared_outputs as so

G6 = lkr.PatchGeometry((6,), 2, 2)  # Np = 3, M = 2


def _data(seed=0, P=12, D=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 6))
    Y = np.tanh(X[:, :D] + X[:, 3:3 + D]) + 0.1 * rng.standard_normal((P, D))
    return X, Y


def test_shared_blocks_detects_kronecker_points():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3, 3))
    Q1 = A @ A.T + np.eye(3)
    Q = so.kron_outputs(Q1, 4)
    assert Q.shape == (12, 12) and Q[0, 4] == Q1[0, 1] and Q[0, 1] == 0
    got = so.shared_blocks(Q, None, 4)
    assert np.array_equal(got[0], Q1) and got[1] is None
    assert so.shared_blocks(Q, Q + 1e-9, 4) is None  # Qm not shared (off-output entries)
    Q2 = Q.copy()
    Q2[1, 5] += 1e-6                                     # one output's block differs
    assert so.shared_blocks(Q2, None, 4) is None


@pytest.mark.parametrize("act", ["erf", "relu"])
@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_cheap_evaluation_at_shared_points_equals_the_dense_one(cls, act):
    X, Y = _data(1)
    th = cls(G6, 20.0, 0.2, activation=act)
    th.set_data(X, Y)
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3))
    Q1 = np.diag(np.diag(A @ A.T + np.eye(3))) if cls is LCNTheory else A @ A.T + np.eye(3)
    Qm1 = 0.1 * np.diag(rng.random(3))
    Q, Qm = so.kron_outputs(Q1, 3), so.kron_outputs(Qm1, 3)
    for qm in ((None, Qm) if act == "relu" else (None,)):
        val, state = th._data(Q, qm)
        assert isinstance(state, so.SharedState)
        ref = Problem(X, Y, G6, width=20.0, T=0.2, act=act, lcn=cls is LCNTheory)
        A_ = 0.2 * np.eye(36) + ref.kr(Q, qm)
        assert val == pytest.approx(ref.data(A_), rel=1e-12)
        B_ref, _ = ref._B(A_)
        np.testing.assert_allclose(th._B(state), B_ref, atol=1e-11 * np.abs(B_ref).max())


@pytest.mark.parametrize("act", ["erf", "relu"])
def test_shared_problem_is_the_restriction(act):
    """S(Q1 (x) I_D) / D of the full problem equals the shared problem's action, and its
    block-trace gradient sum_a dS/dQ[(i a), (j a)] / D the shared problem's gradient."""
    X, Y = _data(3)
    th = CNNTheory(G6, 20.0, 0.2, activation=act)
    th.set_data(X, Y)
    view = so.SharedOutputs(th)
    ref = Problem(X, Y, G6, width=20.0, T=0.2, act=act)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3, 3))
    Q1 = A @ A.T / 3 + np.eye(3)
    Q = so.kron_outputs(Q1, 3)
    val1, st1 = view._data(Q1)
    assert val1 == pytest.approx(ref.data(0.2 * np.eye(36) + ref.kr(Q)) / 3, rel=1e-12)
    G1 = view._G(st1)
    Gfull = ref.G(ref._B(0.2 * np.eye(36) + ref.kr(Q))[0])
    blocktrace = np.einsum("iaja->ij", Gfull.reshape(3, 3, 3, 3)) / 3
    np.testing.assert_allclose(G1, blocktrace, atol=1e-11 * np.abs(blocktrace).max())


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_odd_fixed_point_reaches_the_dense_saddle(cls):
    X, Y = _data(5)
    th = cls(G6, 12.0, 0.15, activation="erf", tol=1e-11)
    sol = th.fit(X, Y)
    assert sol.converged and sol.extra["start"] == "shared outputs Q1 (x) I_D"
    assert sol.extra["shared_start_evaluations"] > 0
    Q = Problem(X, Y, G6, width=12.0, T=0.15, act="erf", lcn=cls is LCNTheory).solve_odd()
    np.testing.assert_allclose(sol.Q, Q, atol=1e-9)


def test_fixed_point_falls_back_to_bfgs(monkeypatch):
    X, Y = _data(6)
    ref = Problem(X, Y, G6, width=12.0, T=0.15, act="erf").solve_odd()
    real = so.odd_fixed_point
    calls = []

    def short(prob, n, Q0, *, tol, maxiter, L=1):
        calls.append(n)
        return real(prob, n, Q0, tol=tol, maxiter=1 if n == 9 else maxiter, L=L)

    monkeypatch.setattr(so, "odd_fixed_point", short)
    sol = CNNTheory(G6, 12.0, 0.15, tol=1e-11).fit(X, Y)
    assert calls == [3, 9] and sol.converged
    assert "fixed point" not in sol.message  # BFGS finished the solve
    assert sol.extra["start"] == "BFGS after the fixed point from shared outputs Q1 (x) I_D"
    assert sol.extra["fixed_point_evaluations"] >= 1
    assert sol.evaluations > sol.extra["fixed_point_evaluations"]
    np.testing.assert_allclose(sol.Q, ref, atol=1e-8)


def test_relu_starts_from_the_shared_pair():
    X, Y = _data(7)
    sol = CNNTheory(G6, 15.0, 0.2, activation="relu", tol=1e-11).fit(X, Y)
    assert sol.converged and sol.extra["start"].startswith("shared outputs")
    Qb, Qc = Problem(X, Y, G6, width=15.0, T=0.2, act="relu").solve_noncentral()
    np.testing.assert_allclose(sol.Q, Qb, atol=1e-9)
    np.testing.assert_allclose(sol.conjugate, Qc, atol=1e-9)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_prior_map_solves_the_stationarity(L):
    rng = np.random.default_rng(L)
    A = rng.standard_normal((5, 5))
    G = 0.01 * (A + A.T)  # eigenvalues above the branch minimum (-0.148 at L = 3)
    Q = so.prior_map(G, 1.0, L)
    w, V = np.linalg.eigh(Q)
    resid = (V * w ** (1 / L - 1)) @ V.T - (V / w) @ V.T + G
    assert np.abs(resid).max() < 1e-12
    assert np.abs(so.prior_map(np.zeros((5, 5)), 1.0, L) - np.eye(5)).max() < 1e-12
    assert so.prior_map(-10 * np.eye(5), 1.0, L) is None   # below the branch: undefined


def test_deep_odd_d_outputs_by_the_fixed_point():
    from deep_reference import canonical
    from deep_theory_reference import DeepProblem

    from lkr.theory import DeepCNNTheory

    dg = lkr.DeepGeometry((8,), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    rng = np.random.default_rng(9)
    X, Xt = canonical(rng, dg, 14), canonical(rng, dg, 3)
    Y = np.tanh(X.reshape(14, -1)[:, :3]) + 0.1 * rng.standard_normal((14, 3))
    th = DeepCNNTheory(dg, 24.0, 0.2, tol=1e-11)
    sol = th.fit(X, Y)
    assert sol.converged and sol.extra["start"] == "shared outputs Q1 (x) I_D"
    Q = DeepProblem(dg, X, Y, Xt, width=24.0, T=0.2, act="erf",
                    lams=(1.0, 1.0, 1.0)).solve_odd()
    np.testing.assert_allclose(sol.Q, Q, atol=1e-8)


def test_fixed_point_from_an_infeasible_start_falls_back(monkeypatch):
    X, Y = _data(6)
    monkeypatch.setattr(so, "odd_fixed_point",
                        lambda *a, **k: (_ for _ in ()).throw(ValueError("infeasible")))
    sol = CNNTheory(G6, 12.0, 0.15, tol=1e-10).fit(X, Y)
    assert sol.converged and sol.extra["start"] == "scalar saddle"  # plain BFGS
