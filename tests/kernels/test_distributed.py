"""lkr.distributed on a LocalCluster of 2 worker processes on 127.0.0.1: tiled kernels equal
the single-process ones, a sweep on the cluster equals the serial one, a killed worker does
not lose tiles, and an interrupted sweep resumes with only its missing points."""
import concurrent.futures as cf
import json
import os
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")
da = pytest.importorskip("dask.array")

import lkr  # noqa: E402
from lkr import distributed as ld  # noqa: E402

RTOL = 1e-12


@pytest.fixture(scope="module")
def client():
    # One cluster for the module: starting one costs seconds.
    with ld.connect(workers=2) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    g = lkr.PatchGeometry(input_shape=(18,), filter_size=3, stride=2)  # Np = 9, M = 3
    Np = g.num_patches
    A = rng.standard_normal((Np, Np))
    Q = A @ A.T / Np + 0.5 * np.eye(Np)
    X = rng.standard_normal((41, 18))
    Y = rng.standard_normal((23, 18))
    return g, Q, X, Y


def _close(a, b, rtol=RTOL):
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def test_connect_is_local_and_closes():
    with ld.connect(workers=1) as c:
        addr = c.scheduler.address
        assert addr.startswith("tcp://127.0.0.1:")
        workers = c.scheduler_info()["workers"]
        assert len(workers) == 1 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
        cluster = c.cluster
    assert c.status == "closed"
    assert cluster.status.name == "closed"


def test_executor_joins_a_running_scheduler(client):
    with ld.executor(scheduler=client.scheduler.address) as ex:
        assert isinstance(ex, cf.Executor)
        assert ex.client is not client and ex.client.scheduler.address == client.scheduler.address
        assert ex.submit(pow, 3, 4).result(timeout=30) == 81
    assert ex.client.status == "closed"
    assert client.status == "running"  # the cluster itself is not ours to close


@pytest.mark.parametrize("tile", [1, 5, 13, 40, 41, 100])
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_renormalized_kernel_symmetric(client, data, tile, activation):
    g, Q, X, _ = data
    ref = lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=activation, lambda0=1.3,
                                  lambda1=0.7)
    K = ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=tile,
                               activation=activation, lambda0=1.3, lambda1=0.7)
    assert isinstance(K, np.ndarray) and K.shape == ref.shape and K.dtype == ref.dtype
    _close(K, ref)
    assert (K == K.T).all()  # lower tiles are the mirrored upper ones


@pytest.mark.parametrize("tile", [3, 7, 23])
def test_renormalized_kernel_with_Y(client, data, tile):
    g, Q, X, Y = data
    ref = lkr.renormalized_kernel(X, Y, Q=Q, geometry=g)
    K = ld.renormalized_kernel(X, Y, Q=Q, geometry=g, client=client, tile=tile)
    assert K.shape == (41, 23)
    _close(K, ref)


def test_renormalized_kernel_float32_and_linear(client, data):
    g, Q, X, _ = data
    X32 = X.astype(np.float32)
    K = ld.renormalized_kernel(X32, Q=Q.astype(np.float32), geometry=g, client=client, tile=9)
    assert K.dtype == np.float32
    _close(K, lkr.renormalized_kernel(X32, Q=Q.astype(np.float32), geometry=g), rtol=1e-5)
    K = ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=9, activation="linear")
    _close(K, lkr.renormalized_kernel(X, Q=Q, geometry=g, activation="linear"))


@pytest.mark.parametrize("tile", [1, 7, 19, 64])
def test_adjoint_symmetric_W(client, data, tile):
    g, _, X, _ = data
    rng = np.random.default_rng(1)
    W = rng.standard_normal((41, 41))
    W = W + W.T
    ref = lkr.local_kernel_adjoint(X, W, geometry=g)
    G = ld.local_kernel_adjoint(X, W, geometry=g, client=client, tile=tile)
    assert G.shape == (g.num_patches, g.num_patches)
    _close(G, ref)
    assert (G == G.T).all()


@pytest.mark.parametrize("tile", [5, 13])
def test_adjoint_general_W(client, data, tile):
    g, Q, X, Y = data
    rng = np.random.default_rng(2)
    W = rng.standard_normal((41, 41))  # not symmetric: every tile pair is visited
    _close(ld.local_kernel_adjoint(X, W, geometry=g, client=client, tile=tile),
           lkr.local_kernel_adjoint(X, W, geometry=g))
    W2 = rng.standard_normal((41, 23))
    G = ld.local_kernel_adjoint(X, W2, geometry=g, Y=Y, client=client, tile=tile,
                                activation="relu", lambda0=2.0)
    _close(G, lkr.local_kernel_adjoint(X, W2, geometry=g, Y=Y, activation="relu", lambda0=2.0))


def test_adjoint_identity_across_tiles(client, data):
    # sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W), both sides tiled.
    g, Q, X, _ = data
    rng = np.random.default_rng(3)
    W = rng.standard_normal((41, 41))
    W = W + W.T
    K = ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=11, lambda1=1.5)
    G = ld.local_kernel_adjoint(X, W, geometry=g, client=client, tile=11)
    lhs = float((W * K).sum())
    rhs = float((Q * G).sum()) / (1.5 * g.num_patches)
    assert abs(lhs - rhs) <= 1e-11 * (abs(lhs) + abs(rhs))


def test_compute_false_returns_dask_array(client, data):
    g, Q, X, Y = data
    K = ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=11, compute=False)
    assert isinstance(K, da.Array)
    assert K.shape == (41, 41) and K.chunks == ((11, 11, 11, 8), (11, 11, 11, 8))
    K2 = ld.renormalized_kernel(X, Y, Q=Q, geometry=g, client=client, tile=11, compute=False)
    assert isinstance(K2, da.Array) and K2.shape == (41, 23)
    # Works as any dask array: reduce on the cluster, then gather.
    trace = K.trace().compute()
    ref = lkr.renormalized_kernel(X, Q=Q, geometry=g)
    assert abs(trace - np.trace(ref)) <= 1e-12 * abs(np.trace(ref))
    Kc = K.compute()
    _close(Kc, ref)
    assert (Kc == Kc.T).all()
    _close(K2.compute(), lkr.renormalized_kernel(X, Y, Q=Q, geometry=g))


def test_validation(client, data):
    g, Q, X, _ = data
    for bad, err in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError),
                     ("8", TypeError)):
        with pytest.raises(err, match="tile"):
            ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=bad)
        with pytest.raises(err, match="tile"):
            ld.local_kernel_adjoint(X, np.eye(41), geometry=g, client=client, tile=bad)
    with pytest.raises(TypeError, match="Client"):
        ld.renormalized_kernel(X, Q=Q, geometry=g, client="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="Q"):
        ld.renormalized_kernel(X, Q=np.eye(4), geometry=g, client=client)
    with pytest.raises(ValueError, match="W"):
        ld.local_kernel_adjoint(X, np.eye(40), geometry=g, client=client)
    with pytest.raises(ValueError, match="activation|tanh"):
        ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, activation="tanh")
    with pytest.raises(ValueError, match="device"):
        ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, device="tpu")
    with pytest.raises(ValueError, match="either"):
        with ld.connect(scheduler="tcp://127.0.0.1:1", workers=2):
            pass


def test_worker_error_reaches_the_caller(client, data):
    # A tile that raises on its worker (after its retries) raises here, naming the cause.
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("the workers have a GPU: device='gpu' would succeed")
    except Exception:
        pass
    g, Q, X, _ = data
    with pytest.raises(RuntimeError, match="no usable GPU|no CUDA device"):
        ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=20, device="gpu",
                               retries=1)
    # The cluster is still fine afterwards.
    _close(ld.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=20, device="cpu"),
           lkr.renormalized_kernel(X, Q=Q, geometry=g))


def _slow_kernels(seconds):
    """Run on a worker: make every tile take at least ``seconds`` (a stand-in for a large
    tile), so that a worker can be killed while it holds tiles."""
    import time as _time

    import lkr.kernels as k

    if getattr(k, "_lkr_test_original", None) is None:
        k._lkr_test_original = k.renormalized_kernel

    def slow(*args, **kwargs):
        _time.sleep(seconds)
        return k._lkr_test_original(*args, **kwargs)

    k.renormalized_kernel = slow
    return os.getpid()


def test_killed_worker_tiles_are_recomputed(data):
    """A worker process dies (SIGKILL) while it computes tiles; its nanny restarts it and
    the scheduler runs the lost tiles elsewhere: the result is complete and exact."""
    g, Q, X, _ = data
    ref = lkr.renormalized_kernel(X, Q=Q, geometry=g)
    # Its own cluster, so that the other tests never see a dying worker.
    with ld.connect(workers=2) as client:
        client.wait_for_workers(2, timeout=60)
        pids_before = set(client.run(_slow_kernels, 0.25).values())
        with cf.ThreadPoolExecutor(1) as pool:
            # 5 x 5 tiles of 9 samples: 15 tasks of >= 0.25 s on 2 workers (~2 s).
            job = pool.submit(ld.renormalized_kernel, X, Q=Q, geometry=g, client=client,
                              tile=9)
            victim = None
            deadline = time.monotonic() + 30
            while victim is None and time.monotonic() < deadline:
                busy = {w: ts for w, ts in client.processing().items() if ts}
                done = [k for k, v in client.who_has().items()
                        if k.startswith("lkr-renormalized-kernel") and v]
                if len(busy) == 2 and done:  # mid-run: tiles finished and tiles in flight
                    victim = sorted(busy)[0]
                else:
                    time.sleep(0.02)
            assert victim is not None, "the tiled run never had both workers busy"
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)  # a worker process this test's cluster started
            K = job.result(timeout=60)
        _close(K, ref)
        assert (K == K.T).all()
        client.wait_for_workers(2, timeout=60)  # the nanny brought a fresh process up
        pids_after = set(client.run(os.getpid).values())
        assert len(pids_before - pids_after) == 1, (pids_before, pids_after)


# -- sweeps on the cluster -------------------------------------------------------------------
def _sweep_data():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((30, 8))
    y = np.tanh(X[:, 0] + 0.5 * X[:, 1])
    Xt = rng.standard_normal((12, 8))
    yt = np.tanh(Xt[:, 0] + 0.5 * Xt[:, 1])
    return X, y, Xt, yt


GRID = {"width": [10, 40, 160], "temperature": [0.01, 0.1]}


def _fc_factory(width, temperature):
    from lkr.theory import FCTheory

    return FCTheory(width=width, temperature=temperature, activation="erf")


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_sweep_on_cluster_equals_serial(client):
    from lkr.theory import sweep

    X, y, Xt, yt = _sweep_data()
    serial = sweep(_fc_factory, GRID, X, y, Xt, yt)
    on_cluster = sweep(_fc_factory, GRID, X, y, Xt, yt, executor=client.get_executor())
    assert [(r["width"], r["temperature"]) for r in on_cluster] == \
        [(w, t) for w in GRID["width"] for t in GRID["temperature"]]
    assert _strip(on_cluster) == _strip(serial)
    assert all(r["converged"] for r in serial)


def test_sweep_executor_context(tmp_path):
    from lkr.theory import sweep

    X, y, Xt, yt = _sweep_data()
    grid = [{"width": 20, "temperature": 0.05}, {"width": 80, "temperature": 0.05}]
    with ld.executor(workers=2) as ex:
        assert isinstance(ex, cf.Executor)
        rows = sweep(_fc_factory, grid, X, y, Xt, yt, executor=ex)
        cluster = ex.client.cluster
    assert ex.client.status == "closed" and cluster.status.name == "closed"
    assert _strip(rows) == _strip(sweep(_fc_factory, grid, X, y, Xt, yt))


def test_sweep_resume_on_cluster(client, tmp_path):
    """Interrupt a sweep midway (a point fails), then rerun: only the missing points are
    computed, and the rows equal an uninterrupted serial sweep."""
    from lkr.theory import sweep

    X, y, Xt, yt = _sweep_data()
    out = tmp_path / "sweep.jsonl"
    calls = tmp_path / "calls"
    calls.mkdir()
    fail_at = {"width": 160, "temperature": 0.01}

    def counting(width, temperature, fail=True):
        # Each call leaves a file, so calls on any worker process are counted.
        import uuid

        from lkr.theory import FCTheory

        (calls / f"{width}-{temperature}-{uuid.uuid4().hex}").touch()
        if fail and {"width": width, "temperature": temperature} == fail_at:
            raise RuntimeError("interrupted")
        return FCTheory(width=width, temperature=temperature, activation="erf")

    with pytest.raises(RuntimeError, match="interrupted"):
        sweep(counting, GRID, X, y, Xt, yt, executor=client.get_executor(), out=out)
    # Let tasks that had started before the cancel finish, so the call count is stable.
    deadline = time.monotonic() + 30
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert 0 < len(first) < 6 and fail_at not in [
        {"width": r["width"], "temperature": r["temperature"]} for r in first]
    before = len(list(calls.iterdir()))

    def resumed(width, temperature):
        return counting(width, temperature, fail=False)

    rows = sweep(resumed, GRID, X, y, Xt, yt, executor=client.get_executor(), out=out)
    assert len(list(calls.iterdir())) - before == 6 - len(first)
    assert len(out.read_text().splitlines()) == 6
    assert _strip(rows) == _strip(sweep(_fc_factory, GRID, X, y, Xt, yt))
    # A third run finds everything done and calls nothing.
    again = sweep(resumed, GRID, X, y, Xt, yt, executor=client.get_executor(), out=out)
    assert len(list(calls.iterdir())) - before == 6 - len(first)
    assert again == rows
