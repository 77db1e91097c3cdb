"""Activations and the base class of lkr's networks (the protocol of :mod:`lkr.nets`)."""
from __future__ import annotations

import math
import warnings
from typing import Dict, Optional

import numpy as np

from .. import _memory, backend
from .._blas import gemm_capsules, one_thread
from .._tuning import StepThreads, usable_threads
from .._validate import count as _count
from ._activations import sigma_pair

__all__ = ["Net", "Objective", "init_params", "width_argument"]


def width_argument(width, old, old_name: str, owner: str):
    """``width``, or the value of its former keyword ``old_name`` (``N1``, ``channels``) with
    a DeprecationWarning; a TypeError when both or neither are given."""
    if old is not None:
        if width is not None:
            raise TypeError(f"{owner}: give width (the hidden width), not also {old_name}")
        warnings.warn(f"{owner}({old_name}=...) is deprecated; use width=... (the nets take "
                      "width like the theories)", DeprecationWarning, stacklevel=3)
        return old
    if width is None:
        raise TypeError(f"{owner}() missing the argument 'width' (the hidden width)")
    return width


class Net:
    """Base class: parameter bookkeeping, chain axes, validation.

    Besides the protocol of :mod:`lkr.nets`, it offers the named interface that
    :mod:`lkr.ntk` and :mod:`lkr.train` use: :meth:`resolve` (validated inputs in the net's
    internal form and params in one dtype) and :meth:`prepare` (an objective on inputs
    prepared once, for training loops).
    """

    #: parameter names in flattening order, filled by subclasses with their shapes
    _shapes: Dict[str, tuple]
    priors: Dict[str, float]
    activation: str

    # subclasses implement _forward(X, p), _vjp(X, r, p), _jvp(X, p, t), _inputs(X)

    def _init(self, seed, params, dtype):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.check_memory()
        if params is None:
            self._params = self.init_params(seed)
        else:
            checked, chains = self._check_params(params)
            if chains is not None:
                raise ValueError("a net's own params have no chain axis; pass chained params "
                                 "to forward/vjp instead")
            self._params = checked

    # sizes
    @property
    def params(self) -> dict:
        """The parameters, name -> array (shapes in :attr:`param_shapes`)."""
        return dict(self._params)

    @property
    def param_shapes(self) -> dict:
        """name -> shape, in the order of :meth:`flatten`."""
        return dict(self._shapes)

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(math.prod(s) for s in self._shapes.values()))

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "type")
        return f"{type(self).__name__}({cfg})"

    # memory (lkr._memory): refused before allocating, naming the size and the budget
    def _hidden_units(self) -> int:
        """Hidden activations per sample (the pre-activations of every hidden layer)."""
        return 0

    def _input_values(self) -> int:
        """Numbers per sample of the net's internal inputs (CNN: the patches, Np M)."""
        return 0

    def memory_bytes(self, P: int = 0, chains: int = 1) -> int:
        """Estimated peak memory (bytes) of this net's parameters (``chains`` copies) and of
        a pass over P samples: inputs, pre-activations, activations and their
        derivatives (:func:`lkr._memory.net_bytes`)."""
        item = np.dtype(getattr(self, "dtype", np.float64)).itemsize
        return (_memory.net_bytes(self.num_params, self._hidden_units(), P, chains, item)
                + P * self._input_values() * item)

    def check_memory(self, P: int = 0, chains: int = 1, what: str = "") -> None:
        """Raise :class:`lkr._memory.MemoryBudgetError` (a MemoryError) when
        :meth:`memory_bytes` is above the memory budget (``LKR_MAX_BYTES``, default half of
        the available memory)."""
        name = type(self).__name__
        what = what or (f"{name} with {self.num_params} parameters" + (
            f" on {P} samples x {chains} chain(s)" if P else ""))
        _memory.check(self.memory_bytes(P, chains), what,
                      "use a smaller width" + (", fewer samples or fewer chains" if P else ""),
                      size=("P", P, lambda n: self.memory_bytes(n, chains)) if P else None)

    # params
    def init_params(self, seed=None, chains: Optional[int] = None) -> dict:
        """Fresh draws from the prior: each array ~ N(0, 1/precision).

        Parameters
        ----------
        seed : int or numpy.random.Generator, optional
        chains : int, optional
            When given, every array gets a leading axis of this length (independent draws).
        """
        rng = np.random.default_rng(seed)
        lead = () if chains is None else (_count(chains, "chains"),)
        if chains is not None:
            self.check_memory(0, chains, f"{type(self).__name__}.init_params with "
                              f"{self.num_params} parameters x {chains} chains")
        out = {}
        for name, shape in self._shapes.items():
            std = 1.0 / np.sqrt(np.asarray(self.priors[name], dtype=np.float64))
            out[name] = (rng.standard_normal(lead + shape) * std).astype(self.dtype)
        return out

    def with_params(self, params) -> Net:
        """A new net of the same configuration with the given (unchained) parameters."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        checked, chains = self._check_params(params)
        if chains is not None:
            raise ValueError("with_params takes params without a chain axis")
        new._params = checked
        return new

    def _check_params(self, params):
        """Validated params and the chain count (None when unchained)."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict with keys {list(self._shapes)}, got "
                            f"{type(params).__name__}")
        if set(params) != set(self._shapes):
            raise ValueError(f"params must have keys {sorted(self._shapes)}, got {sorted(params)}")
        out, chains = {}, set()
        for name, shape in self._shapes.items():
            a = backend.asarray(params[name], f"params[{name!r}]")
            backend.check_floating(a, f"params[{name!r}]")
            if tuple(a.shape) == shape:
                chains.add(None)
            elif a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
                chains.add(int(a.shape[0]))
            else:
                raise ValueError(f"params[{name!r}] must have shape {shape} or (chains, "
                                 f"{', '.join(map(str, shape))}), got {tuple(a.shape)}")
            out[name] = a
        if len(chains) > 1:
            raise ValueError(f"params arrays disagree on the chain axis: {sorted(map(str, chains))} "
                             "(every array needs the same leading chain axis, or none)")
        xp = backend.array_module(*out.values())
        dtype = backend.result_dtype(*out.values())
        out = {k: xp.asarray(v, dtype=dtype) for k, v in out.items()}
        return out, chains.pop()

    def resolve(self, X, params=None, r=None, rname="r"):
        """Validated (inputs, params, r, xp, chains) in one dtype (r may be y, named rname).

        The inputs are in the net's internal form (FC: X itself; CNN/LCN: the patches
        (P, Np, M)); params default to the net's own; chains is None when neither params nor
        r carry a chain axis.
        """
        p, chains = (dict(self._params), None) if params is None else self._check_params(params)
        Xa = backend.asarray(X, "X")
        backend.check_floating(Xa, "X")
        xp = backend.array_module(Xa, *p.values())
        if Xa.ndim >= 1:
            self.check_memory(int(Xa.shape[0]), max(1, chains or 1))
        Z = self._inputs(Xa)
        backend.check_finite(Z, "X")
        P = Z.shape[0]
        if r is not None:
            r = backend.asarray(r, rname)
            if backend.array_module(r) is not xp:
                raise TypeError(f"{rname} must live on the same device as X")
            backend.check_floating(r, rname)
            if r.ndim not in (1, 2) or r.shape[-1] != P:
                raise ValueError(f"{rname} must have shape ({P},) or (chains, {P}), got {tuple(r.shape)}")
            if r.ndim == 2:
                if chains is not None and r.shape[0] != chains:
                    raise ValueError(f"{rname} has {r.shape[0]} chains but params have {chains}")
                chains = int(r.shape[0])
            backend.check_finite(r, rname)
        dtype = backend.result_dtype(Z, *p.values(), *(() if r is None else (r,)))
        Z = xp.asarray(Z, dtype=dtype)
        p = {k: xp.asarray(v, dtype=dtype) for k, v in p.items()}
        if r is not None:
            r = xp.asarray(r, dtype=dtype)
        return Z, p, r, xp, chains

    # protocol
    def forward(self, X, params=None):
        """f(X): shape (P,), or (chains, P) for params with a leading chain axis."""
        Z, p, _, _, _ = self.resolve(X, params)
        return self._forward(Z, p)

    __call__ = forward

    def vjp(self, X, r, params=None) -> dict:
        """d/dparams of sum_mu r[mu] f(x_mu), as a dict shaped like params.

        r has shape (P,) or (chains, P); the result carries a chain axis when params or r do.
        """
        Z, p, r, _, _ = self.resolve(X, params, r)
        return self._vjp(Z, r, p)

    def value_and_grad(self, X, y, params=None):
        """f(X) and the gradient of the loss (1/2) sum_mu (y_mu - f(x_mu))^2 w.r.t. params.

        The same as ``f = forward(X, params)`` and ``-vjp(X, y - f, params)``, in one pass
        where the net has one (CNN/LCN: a fused compiled kernel, each activation evaluated
        once; FC: the layers are computed once). y has shape (P,) or (chains, P); f has the
        chain axis of params or y.
        """
        f = self.forward(X, params)
        r = backend.asarray(y, "y") - f
        g = self.vjp(X, r, params)
        if r.ndim > f.ndim:
            f = backend.array_module(r).broadcast_to(f, r.shape).copy()
        return f, {k: -v for k, v in g.items()}

    def jvp(self, X, tangents, params=None):
        """J(X) t = sum over parameters of (d f / d theta) t_theta: shape (P,) or (chains, P).

        ``tangents`` is a dict shaped like params (optionally with a chain axis, independent
        of whether params have one).
        """
        Z, p, _, xp, _ = self.resolve(X, params)
        t, _ = self._check_params(tangents)
        dtype = Z.dtype
        t = {k: xp.asarray(v, dtype=dtype) for k, v in t.items()}
        return self._jvp(Z, p, t)

    def flatten(self, params=None):
        """Concatenate params (in :attr:`param_shapes` order) into (..., num_params)."""
        p, chains = (dict(self._params), None) if params is None else self._check_params(params)
        xp = backend.array_module(*p.values())
        lead = () if chains is None else (chains,)
        return xp.concatenate([p[k].reshape(lead + (-1,)) for k in self._shapes], axis=-1)

    def unflatten(self, vector) -> dict:
        """Inverse of :meth:`flatten`: (..., num_params) -> dict (views where possible)."""
        vector = backend.asarray(vector, "vector")
        if vector.ndim not in (1, 2) or vector.shape[-1] != self.num_params:
            raise ValueError(f"vector must have shape ({self.num_params},) or (chains, "
                             f"{self.num_params}), got {tuple(vector.shape)}")
        lead = tuple(vector.shape[:-1])
        out, start = {}, 0
        for k, shape in self._shapes.items():
            n = math.prod(shape)
            out[k] = vector[..., start:start + n].reshape(lead + shape)
            start += n
        return out


    def prepare(self, X, X_test=None, *, dtype=None, fused=True) -> Objective:
        """An objective on inputs prepared once: f and the gradient of (1/2) sum (y - f)^2
        for chain-batched params (every array with a leading chain axis).

        Parameters
        ----------
        X, X_test : arrays
            Training inputs and optional test inputs, validated by the caller.
        dtype : float32 or float64, optional
            The dtype of the computation (default the net's).
        fused : bool
            Use the net's fused evaluation where it has one (FC, CNN, LCN on NumPy arrays:
            one set of pre-activations per step, two BLAS products), else the generic one
            through :meth:`forward` and :meth:`vjp` (the same numbers to rounding).

        Returns
        -------
        Objective
            with ``value_and_grad(params, y, rows=None)``, ``forward(params)`` (training
            inputs), ``forward_test(params)``, ``fused`` and ``gemm_flops(chains)``.
        """
        if fused and backend.array_module(X) is np:
            obj = self._prepare_fused(X, X_test, np.dtype(self.dtype if dtype is None else dtype))
            if obj is not None:
                return obj
        return Objective(self, X, X_test)

    def _prepare_fused(self, X, X_test, dtype):
        return None  # nets with a fused objective override this


class Objective:
    """The generic training objective on prepared inputs, through a net's own ``forward`` and ``vjp`` (any
    object following the protocol of :mod:`lkr.nets`).

    ``value_and_grad(params, y, rows=None)`` returns (f (C, n), g = J^T (f - y)), the
    gradient of (1/2) sum (y - f)^2; ``rows`` selects a minibatch of training rows (an index
    array) for SGD. ``forward(params)`` is f on the training inputs, ``forward_test(params)``
    on the test inputs. ``fused`` objectives return fresh gradient arrays that the caller may
    overwrite.
    """

    fused = False

    def __init__(self, net, X, X_test=None):
        self.net, self.X, self.X_test = net, X, X_test

    def forward(self, params):
        return self.net.forward(self.X, params)

    forward_train = forward

    def forward_test(self, params):
        return self.net.forward(self.X_test, params)

    def value_and_grad(self, params, y, rows=None):
        X = self.X if rows is None else self.X[rows]
        f = self.net.forward(X, params)
        return f, self.net.vjp(X, f - y, params)

    def gemm_flops(self, chains):
        """Flops of the largest matrix product of one step (None: not known)."""
        return None


class FusedObjective(Objective):
    """f = readout(sigma(pre-activations)) on inputs prepared once per run; subclasses give
    ``_pre`` (pre-activations), ``_f`` (readout) and the prepared (train, test) ``inputs``."""

    fused = True

    def __init__(self, net, X, X_test):
        super().__init__(net, X, X_test)
        self.xp = backend.array_module(X)
        self.act = net.activation

    @property
    def inputs(self):
        return self.Z, self.Zt

    def _forward(self, params, Z):
        return self._f(sigma_pair(self.act, self._pre(params["W"], Z), False)[0], params["v"])

    def forward(self, params):
        return self._forward(params, self.inputs[0])

    forward_train = forward

    def forward_test(self, params):
        return self._forward(params, self.inputs[1])

    # -- the training step: two BLAS products around two compiled elementwise passes ------
    def _work(self, C, n, K, dtype):
        """The step's (C, n, K) work buffers H and S, kept between steps (a run calls with
        the same shapes every step, so a step allocates no (P, K) arrays). Not thread-safe:
        one prepared objective per thread of work."""
        key = (C, n, K, np.dtype(dtype))
        if getattr(self, "_work_key", None) != key:
            xp = self.xp
            self._work_bufs = (xp.empty((C, n, K), dtype=dtype), xp.empty((C, n, K), dtype=dtype))
            self._work_key = key
        return self._work_bufs

    def _step(self, Z, W, u, y, rows_per_sample):
        """One compiled training step (``train_step`` of the engine, csrc/lkr/train_step.hpp):
        from the prepared inputs Z (n R, Kin), filters W (C, Kout, Kin) and the readout u
        (C, R Kout) in row layout, returns f (C, n), the readout gradient gu (C, R Kout)
        and the filter gradient gW (C, Kout, Kin) of (1/2) sum (y - f)^2, with f = c1 sum_k
        u sigma(h). The step runs on lkr's own threads (``lkr.set_num_threads``) and
        calls BLAS on each of them, so BLAS is held at one thread meanwhile; how many of
        them (1 or all) is chosen by measurement (:mod:`lkr._tuning`)."""
        xp = self.xp
        eng = backend.implementation(xp)
        _register_gemm(eng)
        dt = np.result_type(Z.dtype, W.dtype)
        C, Kout, _ = W.shape
        n = Z.shape[0] // rows_per_sample
        H, S = self._work(C, n, rows_per_sample * Kout, dt)
        y2 = xp.asarray(y, dtype=dt)
        y2 = y2.reshape(1, -1) if y2.ndim == 1 else y2
        Z, W, u = (xp.asarray(a, dtype=dt) for a in (Z, W, u))
        if getattr(self, "_threads", None) is None:
            # one measurement per step shape, shared by the runs of a process (a sweep or a
            # bench starts many runs of the same step)
            key = (type(self).__name__, tuple(Z.shape), tuple(W.shape), np.dtype(dt).name)
            self._threads = _TUNERS.setdefault(key, StepThreads())
        with one_thread(), self._threads.timed(usable_threads(backend.get_num_threads())) as run:
            return eng.train_step(Z, W, u, y2, H, S, rows_per_sample=rows_per_sample,
                                  scale=self.c1, activation=self.act, nthreads=run.threads)

    @property
    def threads_now(self):
        """The thread count of the last compiled step (lkr._tuning), None before one."""
        tuner = getattr(self, "_threads", None)
        return None if tuner is None else tuner.current

    #: the step runs on lkr's threads with BLAS at one thread (lkr.train holds it there)
    own_threads = True


_gemm_registered: set = set()
#: step shape -> its measured thread choice (lkr._tuning)
_TUNERS: dict = {}


def _register_gemm(eng):
    """Hand SciPy's GEMMs to the compiled step once per process (see lkr._blas)."""
    set_gemm = getattr(eng, "set_gemm", None)  # the CPU engine; the CUDA one has no BLAS
    if set_gemm is not None and id(eng) not in _gemm_registered:
        try:
            set_gemm(*gemm_capsules())
        except (ImportError, KeyError):  # pragma: no cover - an odd SciPy
            pass  # the step falls back to its plain loops
        _gemm_registered.add(id(eng))


# the former names of the objectives
Prepared, FusedPrepared = Objective, FusedObjective


def init_params(net, seed=None, chains: Optional[int] = None) -> dict:
    """Fresh prior draws for ``net`` (see :meth:`Net.init_params`)."""
    return net.init_params(seed, chains=chains)


