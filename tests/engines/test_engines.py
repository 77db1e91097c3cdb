"""The CPU and GPU engines expose one function list, the compute calls of ``_core.pyi``;
and the nets, the NTK and Langevin run their CuPy path through the CUDA engine (driven here
by the host emulator of tests/cuda_emulator.py where there is no GPU)."""
import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import lkr
from lkr import _cuda, backend, nets, ntk, train

STUB = Path(lkr.__file__).with_name("_core.pyi")


def _stub_functions():
    """name -> (number of positional parameters, keyword-only names) of every function in
    _core.pyi (positional names differ between the engines: callers pass them by position;
    ``nthreads`` is passed by name)."""
    tree = ast.parse(STUB.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            pos = [x.arg for x in a.posonlyargs + a.args]
            out[node.name] = (len(pos), sorted(x.arg for x in a.kwonlyargs), "nthreads" in pos)
    return out


def _compute_calls():
    return {n: sig for n, sig in _stub_functions().items()
            if sig[2] or "nthreads" in sig[1]}


def _signature(fn):
    ps = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    pos = [p.name for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(pos), sorted(p.name for p in ps if p.kind == p.KEYWORD_ONLY), "nthreads" in pos


def test_the_stub_states_the_compute_calls():
    calls = _compute_calls()
    assert {"local_kernel", "patch_forward", "patch_features", "activation_pair"} <= set(calls)


def test_core_exports_exactly_the_stub():
    core = backend.core()
    exported = {n for n in dir(core) if not n.startswith("_")}
    assert exported == set(_stub_functions()) | {"openmp"}


@pytest.mark.parametrize("where", ["module", "engine"])
def test_cuda_engine_has_the_compute_calls_with_their_parameters(where):
    obj = _cuda if where == "module" else _cuda.Engine
    for name, params in _compute_calls().items():
        fn = getattr(obj, name, None)
        assert callable(fn), f"lkr._cuda {where} lacks {name}"
        assert _signature(fn) == params, (name, _signature(fn), params)


# -- the nets' CuPy path, through the emulated CUDA engine ---------------------------------------
@pytest.fixture
def on_emulator(emulator, monkeypatch):
    """backend.implementation returns the emulated CUDA engine for NumPy arrays, so that the
    nets take the road CuPy arrays take."""
    monkeypatch.setattr(backend, "implementation", lambda xp: emulator)
    return emulator


def _patch_net(cls, act):
    g = lkr.PatchGeometry(input_shape=(12,), filter_size=4, stride=2)
    return cls(g, width=3, activation=act, seed=1)


@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
@pytest.mark.parametrize("cls", [nets.CNNNet, nets.LCNNet, "fc"])
def test_nets_on_the_cuda_engine_match_the_cpu(cls, act, monkeypatch, emulator):
    rng = np.random.default_rng(3)
    if cls == "fc":
        net, X = nets.DeepFCNet(5, (4, 3), activation=act, seed=2), rng.standard_normal((6, 5))
    else:
        net, X = _patch_net(cls, act), rng.standard_normal((6, 12))
    y = rng.standard_normal(6)
    p = net.init_params(4, chains=2)
    t = net.init_params(5)
    cpu = (net.forward(X, p), net.vjp(X, y, p), net.value_and_grad(X, y, p),
           net.jvp(X, t, p), ntk.empirical_ntk(net, X))
    monkeypatch.setattr(backend, "implementation", lambda xp: emulator)
    gpu = (net.forward(X, p), net.vjp(X, y, p), net.value_and_grad(X, y, p),
           net.jvp(X, t, p), ntk.empirical_ntk(net, X))
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-12, atol=1e-13)
    for k in p:
        np.testing.assert_allclose(gpu[1][k], cpu[1][k], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(gpu[2][1][k], cpu[2][1][k], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gpu[2][0], cpu[2][0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gpu[3], cpu[3], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gpu[4], cpu[4], rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("local", [False, True], ids=["cnn", "lcn"])
def test_emulated_features_match_the_cpu(emulator, local):
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((5, 4, 3))
    W = rng.standard_normal((6, 4, 3) if local else (6, 3))
    v = rng.standard_normal((6, 4))
    kw = dict(local=local, activation="erf")
    S, G = emulator.patch_features(Z, W, v, 1, 4, **kw)
    S0, G0 = backend.core().patch_features(Z, W, v, 1, 4, **kw, nthreads=0)
    np.testing.assert_allclose(S, S0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(G, G0, rtol=1e-12, atol=1e-14)


def test_langevin_runs_on_the_cuda_engine(on_emulator):
    net = _patch_net(nets.CNNNet, "erf")
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((5, 12)), rng.standard_normal(5)
    res = train.langevin(net, X, y, 0.2, lr=0.01, steps=6, burn_in=2, chains=2, seed=0,
                         fused=False, progress=False)
    assert res.samples == 8 and np.all(np.isfinite(res.mean))


@pytest.mark.parametrize("cls", [nets.CNNNet, nets.LCNNet])
def test_langevin_on_every_array_library(cls, xp):
    # CuPy arrays (on a GPU) train through the CUDA passes; the numbers follow the same law,
    # so compare the GPU run with the CPU run from the same start only loosely (the noise
    # streams differ) and the deterministic pieces exactly
    net = _patch_net(cls, "erf")
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((5, 12)), rng.standard_normal(5)
    Xd, yd = xp.asarray(X), xp.asarray(y)
    loss, g = train.loss_and_grad(net.with_params({k: xp.asarray(v) for k, v in
                                                   net.params.items()}), Xd, yd, 0.2)
    loss0, g0 = train.loss_and_grad(net, X, y, 0.2)
    assert loss == pytest.approx(loss0, rel=1e-12)
    for k in g:
        np.testing.assert_allclose(backend.to_numpy(g[k]), g0[k], rtol=1e-11, atol=1e-13)
    res = train.langevin(net, Xd, yd, 0.2, lr=0.01, steps=6, burn_in=2, chains=2, seed=0,
                         progress=False)
    assert res.samples == 8 and bool(xp.all(xp.isfinite(res.mean)))
