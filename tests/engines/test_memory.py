"""Memory refusals (issue 22, item 2): lkr._memory's estimates bound the peak memory that
tracemalloc measures (NumPy reports its allocations to it), and a job above the budget is
refused before allocating, with one line naming the size, the budget and what to do."""
import gc
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import lkr
from lkr import _memory, data, nets
from lkr.theory import CNNTheory, DeepCNNTheory, FCTheory, GPTheory, LCNTheory

G = lkr.PatchGeometry(input_shape=(64,), filter_size=4, stride=4)   # Np = 16, M = 4


def _peak(job):
    """(result, peak bytes allocated while ``job`` ran)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = job()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _task(P, Pt=0, D=1, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.standard_normal((P, 64)), rng.standard_normal((max(Pt, 1), 64))
    Y = rng.standard_normal((P, D)) if D > 1 else np.tanh(X[:, :8].sum(1))
    Yt = rng.standard_normal((len(Xt), D)) if D > 1 else np.tanh(Xt[:, :8].sum(1))
    return X, Y, Xt, Yt


# -- the estimates bound what is measured (and are not far above it) --------------------------
THEORIES = {
    "fc": lambda D: FCTheory(width=64 * D, temperature=0.1),
    "gp": lambda D: GPTheory(kernel="fc", temperature=0.1),
    "gp-cnn": lambda D: GPTheory(kernel="cnn", geometry=G, temperature=0.1),
    "cnn": lambda D: CNNTheory(geometry=G, width=64 * D, temperature=0.1, materialize=False),
    "lcn": lambda D: LCNTheory(geometry=G, width=64 * D, temperature=0.1, materialize=False),
}


@pytest.mark.parametrize("name, P, D", [("fc", 600, 1), ("fc", 400, 3), ("gp", 600, 1),
                                        ("gp-cnn", 400, 1), ("cnn", 400, 1), ("cnn", 150, 3),
                                        ("lcn", 400, 1), ("lcn", 150, 3)])
def test_fit_and_predict_estimates_bound_the_measured_peak(name, P, D):
    X, Y, Xt, Yt = _task(P, 500, D)
    th = THEORIES[name](D)
    _, fit_peak = _peak(lambda: th.fit(X, Y))
    est = th._fit_bytes(P, D, 64)
    assert fit_peak <= est, (fit_peak, est)
    if name in ("cnn", "lcn") and D > 1:
        # D outputs solve by a fixed point first; the estimate bounds the worst path, its
        # BFGS fallback with the dense model over the unknowns of Qbar
        worst = THEORIES[name](D)
        worst._solve_fixed_point = worst._solve_bfgs
        _, fit_peak = _peak(lambda: worst.fit(X, Y))
        assert fit_peak <= est, (fit_peak, est)
    assert est <= 4 * fit_peak + _memory.OVERHEAD, (fit_peak, est)
    _, pred_peak = _peak(lambda: th.evaluate(Xt, Yt))
    est = th._predict_bytes(len(Xt), D)
    assert pred_peak <= est, (pred_peak, est)
    assert est <= 4 * pred_peak + _memory.OVERHEAD, (pred_peak, est)


def test_nngp_net_and_task_estimates_bound_the_measured_peak():
    X = np.random.default_rng(1).standard_normal((1500, 64))
    _, peak = _peak(lambda: lkr.nngp(X))
    assert peak <= _memory.nngp_bytes(1500, 1500, 64) <= 4 * peak
    for net in (nets.CNNNet(geometry=G, width=32, seed=0), nets.FCNet(64, width=256, seed=0)):
        params = net.init_params(0, chains=4)
        obj = net.prepare(X)   # the training step's objective (its work buffers)
        _, peak = _peak(lambda o=obj, n=net, p=params: (
            o.value_and_grad(p, np.zeros(1500)), n.value_and_grad(X, np.zeros(1500), p)))
        assert peak <= net.memory_bytes(1500, 4) <= 8 * peak, (peak, net.memory_bytes(1500, 4))
    _, peak = _peak(lambda: data.local_teacher(3000, 1000, 0, input_shape=(64,)))
    assert peak <= _memory.task_bytes(4000, 64, 16, 4, 4) + _memory.OVERHEAD


# -- refusals: before allocating, one line with the size, the budget and what to do ---------
def _refused(job, *words, allowed=0):
    """Run ``job`` expecting a MemoryBudgetError; returns its message after checking it is
    one line naming sizes and the budget, and that nearly nothing (beyond ``allowed`` bytes,
    e.g. the NaN check of an input) was allocated first."""
    def run():
        with pytest.raises(MemoryError) as exc:
            job()
        return exc

    t0 = time.perf_counter()
    exc, peak = _peak(run)
    assert time.perf_counter() - t0 < 5
    assert isinstance(exc.value, _memory.MemoryBudgetError)
    msg = str(exc.value)
    assert "\n" not in msg and "needs about" in msg and "memory budget of" in msg, msg
    for w in words:
        assert w in msg, msg
    assert peak < 2 * 1024**2 + allowed, f"{peak} bytes allocated before the refusal"
    return msg


def test_nngp_refuses_above_the_budget(monkeypatch):
    monkeypatch.setenv("LKR_MAX_BYTES", "1MB")
    X = np.zeros((2000, 4))
    msg = _refused(lambda: lkr.nngp(X), "nngp of 2000 x 2000", "LKR_MAX_BYTES", "at most P = ")
    assert "61.3 MiB" in msg and "977 KiB" in msg   # the size and the budget, in binary units
    assert lkr.nngp(X[:200]).shape == (200, 200)   # what fits still runs


def test_default_budget_refuses_a_huge_job_at_once():
    X = np.zeros((3_000_000, 1), dtype=np.float32)   # a 72 TB kernel
    msg = _refused(lambda: lkr.nngp(X), "half of the available memory", "LKR_MAX_BYTES")
    assert "TiB" in msg


@pytest.mark.parametrize("make", [
    lambda: FCTheory(width=50, temperature=0.1),
    lambda: GPTheory(kernel="fc", temperature=0.1),
    lambda: CNNTheory(geometry=G, width=100, temperature=0.1),
    lambda: LCNTheory(geometry=G, width=50, temperature=0.1),
])
@pytest.mark.parametrize("D", [1, 4])
def test_theories_refuse_fits_and_predictions_above_the_budget(monkeypatch, make, D):
    X, Y, _, _ = _task(3000, 1, D)
    monkeypatch.setenv("LKR_MAX_BYTES", "200MB")
    th = make()
    _refused(lambda: th.fit(X, Y), f"P = 3000 samples and D = {D}", "at most P = ")
    th.fit(X[:200], Y[:200])   # what fits still runs
    Xbig = np.zeros((100_000, 64))
    _refused(lambda: th.predict(Xbig), "100000 test points", "at most P_test = ",
             allowed=Xbig.size)   # the NaN check of Xbig: one bool per entry


def test_deep_cnn_theory_refuses_above_the_budget(monkeypatch):
    dg = lkr.DeepGeometry((8, 8), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    X = np.random.default_rng(0).standard_normal((1500, 8, 8))
    monkeypatch.setenv("LKR_MAX_BYTES", "20MB")
    _refused(lambda: DeepCNNTheory(dg, width=32, temperature=0.1).fit(X, X[:, 0, 0]),
             "DeepCNNTheory.fit with P = 1500")


def test_d_output_cnn_fit_stays_within_its_budget(monkeypatch):
    """The ten-class case of issue 22: the stored kernel fitted the budget, but its
    antisymmetric half (D >= 2) and the (P D)^2 matrices did not count. Now, whatever the
    budget, the fit either is refused or allocates at most the budget."""
    X, Y, _, _ = _task(200, 0, 2)
    outcomes = []
    for mb in (20, 30, 45, 90):
        monkeypatch.setenv("LKR_MAX_BYTES", f"{mb}MiB")
        th = CNNTheory(geometry=G, width=200, temperature=0.1, tol=1e-4)
        try:
            _, peak = _peak(lambda th=th: th.fit(X, Y))
        except _memory.MemoryBudgetError:
            outcomes.append("refused")
            continue
        assert peak <= mb * 1024**2, (mb, peak, th.materialized)
        outcomes.append("materialized" if th.materialized else "streamed")
    assert outcomes == ["refused", "streamed", "streamed", "materialized"], outcomes


def test_nets_refuse_above_the_budget(monkeypatch):
    _refused(lambda: nets.FCNet(10**6, width=10**6), "FCNet with 1000001000000 parameters",
             "use a smaller width")
    net = nets.CNNNet(geometry=G, width=64, seed=0)
    Xbig = np.zeros((400_000, 64))
    monkeypatch.setenv("LKR_MAX_BYTES", "100MB")
    _refused(lambda: net.forward(Xbig), "CNNNet with", "400000 samples", "at most P = ")
    _refused(lambda: net.init_params(0, chains=200_000), "200000 chains")
    from lkr import train

    X = np.zeros((20_000, 64))
    _refused(lambda: train.langevin(net, X, np.zeros(20_000), 0.1, lr=1e-3, steps=1,
                                    chains=64), "20000 samples x 64 chain(s)")


def test_data_generators_refuse_above_the_budget():
    for job in (lambda: data.gaussian_linear(10**10, 10),
                lambda: data.local_teacher(10**10, 10),
                lambda: data.load_task("local-teacher", 10**10, 10)):
        _refused(job, "P + P_test = 10000000010", "at most P + P_test = ")


@pytest.mark.parametrize("args", [["fc-vs-cnn", "-P", "2000000"], ["train", "-P", "2000000"],
                                  ["fc-vs-cnn", "--P-test", "2000000000"]])
def test_cli_refuses_in_one_line_before_making_the_task(args):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lkr", *args, "--quiet"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs about" in lines[0] and "memory budget" in lines[0], r.stderr
    assert lines[0].startswith(f"lkr {args[0]}: error: ")
    assert time.perf_counter() - t0 < 60   # no data generation first (it took 13 s)


def test_kernels_refuse_results_above_the_budget(monkeypatch):
    from lkr.kernels_multi import renormalized_kernel_multi

    monkeypatch.setenv("LKR_MAX_BYTES", "10MB")
    X = np.zeros((2000, 64))
    dg = lkr.DeepGeometry((8, 8), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    _refused(lambda: lkr.renormalized_kernel(X, Q=np.eye(16), geometry=G),
             "renormalized_kernel of 2000 x 2000 samples", "at most P = ")
    _refused(lambda: lkr.renormalized_kernel(X, Q=np.eye(16), geometry=dg),
             "renormalized_kernel of 2000 x 2000", allowed=10 * X.nbytes)  # layer-1 windows
    _refused(lambda: renormalized_kernel_multi(X[:600], Q=np.eye(48), D=3, geometry=G),
             "renormalized_kernel_multi of 600 x 600")
    assert lkr.renormalized_kernel(X[:300], Q=np.eye(16), geometry=G).shape == (300, 300)


def test_collapsed_sampler_refuses_above_the_budget(monkeypatch):
    from lkr import train

    net = nets.CNNNet(geometry=G, width=16, seed=0)
    X = np.zeros((3000, 64))
    monkeypatch.setenv("LKR_MAX_BYTES", "200MB")
    _refused(lambda: train.collapsed(net, X, np.zeros(3000), 0.1, sweeps=2, chains=8),
             "collapsed sampler on P = 3000 samples x 8 chain(s)", "at most P = ",
             allowed=X.nbytes)
    assert _memory.collapsed_bytes(3000, 3000, 1, 256, 8) > 200e6
