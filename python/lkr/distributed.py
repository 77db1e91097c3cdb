r"""Past one machine: the local-kernel contractions tiled over a Dask cluster.

The (mu, nu) plane of sample pairs is cut into square tiles of ``tile`` samples a side and
each tile is computed on a worker by the ordinary single-machine kernel
(:func:`lkr.renormalized_kernel`, :func:`lkr.local_kernel_adjoint`: C++ on a CPU worker,
CUDA on a worker with a GPU), using

.. math::

    K_R(X, Y)[I, J] = K_R(X_I, Y_J), \qquad
    G(W) = \sum_{I, J} G(W_{IJ}; X_I, Y_J),

(the adjoint is linear in W and additive over sample pairs). When ``Y`` is None only the
tiles with I <= J are computed: K_R is symmetric, so the lower tiles are mirrors, and for
a symmetric W the tile (J, I) contributes the transpose of the tile (I, J).

Inputs are scattered to every worker once (``client.scatter(..., broadcast=True)``); the
W blocks travel with their tasks, so that each byte of W goes to one worker and a task can
be re-run elsewhere. Each tile task is submitted with ``retries``: a task that raises is
re-run, and a task whose worker dies is re-scheduled on another worker by Dask (up to the
scheduler's ``distributed.scheduler.allowed-failures``).

Dask is an optional dependency: ``pip install "dask[distributed]"`` (or ``pip install
".[distributed]"`` in lkr's source folder). Typical use::

    from lkr import distributed
    with distributed.connect(workers=2) as client:          # a LocalCluster on 127.0.0.1
        K = distributed.renormalized_kernel(X, Q=Q, geometry=g, client=client, tile=1024)

and :func:`executor` for sweeps (:func:`lkr.theory.sweep`) on the same cluster.
"""
from __future__ import annotations

import contextlib
import numbers
import uuid
import warnings

import numpy as np

from . import backend
from . import kernels as _kernels
from ._extras import install_hint
from ._validate import choice as _choice
from ._validate import integer as _integer

__all__ = ["renormalized_kernel", "local_kernel_adjoint", "connect", "executor",
           "DEFAULT_TILE", "DEFAULT_RETRIES"]

#: Default tile side (samples). On a 2-core machine, 2 one-thread workers at P = 4096
#: (1D, N0 = 64, filter 4, stride 4, erf) took 1.06x-1.21x the time of one 2-thread
#: process for tiles from 512 to 1366, 1.4x at 2048 (3 tasks do not balance over 2 workers;
#: bench/bench_distributed.py, on a shared machine). A 1024 x 1024 float64 tile is
#: 8 MiB, small to move and large enough to amortise a task's ~1 ms of overhead, and
#: P = 4096 still gives 10 tasks to balance over the workers.
DEFAULT_TILE = 1024

#: Default ``retries`` of every tile task (re-runs of a task that raised).
DEFAULT_RETRIES = 3

_DEVICES = ("auto", "cpu", "gpu")


# -- optional import and validation ------------------------------------------------------
def _distributed():
    """The ``distributed`` module, with the install hint when Dask is missing."""
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ImportError("lkr.distributed needs Dask (dask.distributed); "
                          f"{install_hint('distributed')}") from exc
    return distributed


def _check_client(client):
    distributed = _distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError("client must be a dask.distributed.Client, got "
                        f"{type(client).__name__}; e.g. `with lkr.distributed.connect(workers=2) "
                        "as client:`")
    return client


def _check_tile(tile):
    return _integer(tile, "tile", 1)


def _check_retries(retries):
    return _integer(retries, "retries", 0)


def _check_device(device):
    return _choice(device, "device", _DEVICES)


def _host(A, name):
    """A NumPy array for scattering (CuPy/DLPack inputs are copied to the host)."""
    A = backend.asarray(A, name)
    if A is None:
        return None
    return backend.to_numpy(A)


def _edges(n, tile):
    return [(a, min(a + tile, n)) for a in range(0, n, tile)]


def _cost(a, b, diag):
    """Task priority: the tile's work (a diagonal tile visits half its pairs). Dask runs
    higher priorities first, so the cheap tiles fill the tail and the workers finish
    together instead of one waiting on a late large tile."""
    pairs = (a[1] - a[0]) * (b[1] - b[0])
    return pairs // 2 if diag else pairs


# -- what runs on a worker -----------------------------------------------------------------
def _worker_xp(device):
    """CuPy when this worker should (and can) compute on its GPU, else NumPy."""
    if device == "cpu":
        return np
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception as exc:  # ImportError, or a CUDA runtime without a device
        if device == "gpu":
            raise RuntimeError(f"device='gpu' but this worker has no usable GPU ({exc})") from exc
        return np
    if not has_gpu:
        if device == "gpu":
            raise RuntimeError("device='gpu' but this worker sees no CUDA device")
        return np
    return cupy


def _to(xp, A):
    return None if A is None else (A if xp is np else xp.asarray(A))


def _back(A):
    return backend.to_numpy(A)


def _kr_tile(X, Y, a, b, Q, geometry, kwargs, device):
    """K_R of rows X[a0:a1] against Y[b0:b1] (Y None: the diagonal tile of X)."""
    xp = _worker_xp(device)
    Xt = _to(xp, X[a[0]:a[1]])
    Yt = None if Y is None else _to(xp, Y[b[0]:b[1]])
    return _back(_kernels.renormalized_kernel(Xt, Yt, Q=_to(xp, Q), geometry=geometry,
                                              **kwargs))


def _adj_tile(X, Y, a, b, W, geometry, kwargs, device, add_transpose):
    """G of the block W against rows X[a0:a1] and columns Y[b0:b1] (Y None: diagonal)."""
    xp = _worker_xp(device)
    Xt = _to(xp, X[a[0]:a[1]])
    Yt = None if Y is None else _to(xp, Y[b[0]:b[1]])
    G = _back(_kernels.local_kernel_adjoint(Xt, _to(xp, W), geometry=geometry, Y=Yt,
                                            **kwargs))
    # The mirror tile (J, I) of a symmetric W contributes G(W_IJ)^T (K_ij^{mu nu} =
    # K_ji^{nu mu}); adding it here halves what comes back to the client.
    return G + G.T if add_transpose else G


def _mirror(dest, block, panel=64):
    """dest[...] = block.T in panels of rows of ``block``: a whole-tile transposed copy
    strides across pages for every element and runs ~4x slower than this."""
    for i in range(0, block.shape[0], panel):
        dest[:, i:i + panel] = block[i:i + panel].T


def _gather_into(client, futures, place):
    """Wait for ``futures`` (a dict future -> tag), calling ``place(tag, result)`` as each
    finishes, so that the client holds one tile at a time on top of the output. On an
    error the remaining tasks are cancelled and the error is re-raised."""
    distributed = _distributed()
    try:
        for fut in distributed.as_completed(list(futures)):
            place(futures[fut], fut.result())
            fut.release()
    except BaseException:
        client.cancel(list(futures))
        raise


# -- public API ------------------------------------------------------------------------------
def renormalized_kernel(X, Y=None, *, Q, geometry, client, tile=DEFAULT_TILE, compute=True,
                        retries=DEFAULT_RETRIES, device="auto", **kernel_kwargs):
    r"""The renormalised kernel K_R(Q), tiled over the workers of a Dask cluster.

    .. math:: K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\nu}

    Equal (to rounding) to :func:`lkr.renormalized_kernel` with the same arguments.

    Parameters
    ----------
    X, Y : array_like
        Inputs (Y defaults to X), as :func:`lkr.renormalized_kernel` takes them. GPU
        arrays are copied to the host before they are scattered.
    Q : array_like, shape (Np, Np)
        Symmetric order parameter.
    geometry : PatchGeometry
    client : dask.distributed.Client
        The cluster to run on.
    tile : int, default :data:`DEFAULT_TILE`
        Side of the square tiles of the (mu, nu) plane, in samples. With Y None there are
        n (n + 1) / 2 tile tasks, n = ceil(P / tile).
    compute : bool, default True
        True: gather the tiles into one NumPy array on the client. False: leave them on the
        workers and return a ``dask.array.Array`` built on them (the tasks start at once;
        the client never holds the whole matrix).
    retries : int, default :data:`DEFAULT_RETRIES`
        Re-runs of a tile task that raised. A task whose worker died is re-scheduled
        elsewhere regardless.
    device : {"auto", "cpu", "gpu"}
        Where a worker computes its tiles: ``auto`` uses the worker's GPU when CuPy and a
        CUDA device are present there, else the C++ kernel.
    **kernel_kwargs
        ``activation``, ``lambda0``, ``lambda1``, ``nthreads`` of
        :func:`lkr.renormalized_kernel` (``nthreads`` is per task: match it to the
        worker's cores divided by its threads; Dask's nanny sets ``OMP_NUM_THREADS=1`` in
        its workers, which is the default).

    Returns
    -------
    numpy.ndarray or dask.array.Array, shape (P, P')
        Exactly symmetric when Y is None.
    """
    client = _check_client(client)
    tile = _check_tile(tile)
    retries = _check_retries(retries)
    device = _check_device(device)
    Xh, Yh, Qh = _host(X, "X"), _host(Y, "Y"), _host(Q, "Q")
    # A one-sample call validates geometry, Q, activation and the lambdas here, with the
    # single-machine messages, rather than on a worker after scheduling.
    probe = _kernels.renormalized_kernel(Xh[:1], None if Yh is None else Yh[:1], Q=Qh,
                                         geometry=geometry, **kernel_kwargs)
    backend.check_finite(Xh, "X")
    if Yh is not None:
        backend.check_finite(Yh, "Y")
    dtype = probe.dtype
    P = Xh.shape[0]
    P2 = P if Yh is None else Yh.shape[0]
    rows, cols = _edges(P, tile), _edges(P2, tile)

    [Xf] = client.scatter([Xh], broadcast=True, hash=False)
    Yf = None if Yh is None else client.scatter([Yh], broadcast=True, hash=False)[0]
    run = uuid.uuid4().hex[:12]
    futures = {}
    for I, a in enumerate(rows):
        for J, b in enumerate(cols):
            if Yh is None and J < I:
                continue  # the mirror of (J, I)
            diag = Yh is None and I == J
            fut = client.submit(_kr_tile, Xf, None if diag else (Xf if Yh is None else Yf),
                                a, b, Qh, geometry, kernel_kwargs, device,
                                key=f"lkr-renormalized-kernel-{run}-{I}-{J}",
                                retries=retries, pure=False, priority=_cost(a, b, diag))
            futures[fut] = (I, J)

    if compute:
        out = np.empty((P, P2), dtype=dtype)

        def place(tag, block):
            I, J = tag
            (a0, a1), (b0, b1) = rows[I], cols[J]
            out[a0:a1, b0:b1] = block
            if Yh is None and I != J:
                _mirror(out[b0:b1, a0:a1], block)

        _gather_into(client, futures, place)
        return out

    import dask.array as da

    blocks = {tag: da.from_delayed(fut, shape=(rows[tag[0]][1] - rows[tag[0]][0],
                                               cols[tag[1]][1] - cols[tag[1]][0]), dtype=dtype)
              for fut, tag in futures.items()}
    grid = [[blocks[(I, J)] if (I, J) in blocks else blocks[(J, I)].T
             for J in range(len(cols))] for I in range(len(rows))]
    return da.block(grid)


def local_kernel_adjoint(X, W, *, geometry, client, Y=None, tile=DEFAULT_TILE,
                         retries=DEFAULT_RETRIES, device="auto", **kernel_kwargs):
    r"""The adjoint contraction G(W), tiled over the workers of a Dask cluster.

    .. math:: G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K_{ij}^{\mu\nu}
              = \sum_{I, J} G(W_{IJ}; X_I, Y_J)_{ij}

    Equal (to rounding) to :func:`lkr.local_kernel_adjoint` with the same arguments.

    Parameters
    ----------
    X : array_like
        Inputs (P samples).
    W : array_like, shape (P, P')
        Weights over sample pairs. With Y None and W exactly symmetric, each unordered tile
        pair is visited once (G(W_IJ) + G(W_IJ)^T for I < J).
    geometry : PatchGeometry
    client : dask.distributed.Client
    Y : array_like, optional
        Second set of inputs (P' samples).
    tile : int, default :data:`DEFAULT_TILE`
        Side of the square tiles of W, in samples. Each task carries its W block, so W is
        moved once in total, not once per worker.
    retries : int, default :data:`DEFAULT_RETRIES`
    device : {"auto", "cpu", "gpu"}
    **kernel_kwargs
        ``activation``, ``lambda0``, ``nthreads`` of :func:`lkr.local_kernel_adjoint`.

    Returns
    -------
    numpy.ndarray, shape (Np, Np)
        Exactly symmetric when W is symmetric and Y is None.
    """
    client = _check_client(client)
    tile = _check_tile(tile)
    retries = _check_retries(retries)
    device = _check_device(device)
    Xh, Yh, Wh = _host(X, "X"), _host(Y, "Y"), _host(W, "W")
    P = Xh.shape[0] if Xh.ndim else 0
    P2 = P if Yh is None else (Yh.shape[0] if Yh.ndim else 0)
    if Wh.ndim != 2 or Wh.shape != (P, P2):
        raise ValueError(f"W must have shape {(P, P2)}, got {Wh.shape}")
    backend.check_floating(Wh, "W")
    backend.check_finite(Wh, "W")
    backend.check_finite(Xh, "X")
    if Yh is not None:
        backend.check_finite(Yh, "Y")
    probe = _kernels.local_kernel_adjoint(Xh[:1], Wh[:1, :1], geometry=geometry,
                                          Y=None if Yh is None else Yh[:1], **kernel_kwargs)
    symmetric = Yh is None and bool((Wh == Wh.T).all())
    rows, cols = _edges(P, tile), _edges(P2, tile)

    [Xf] = client.scatter([Xh], broadcast=True, hash=False)
    Yf = None if Yh is None else client.scatter([Yh], broadcast=True, hash=False)[0]
    run = uuid.uuid4().hex[:12]
    futures = {}
    for I, (a0, a1) in enumerate(rows):
        for J, (b0, b1) in enumerate(cols):
            if symmetric and J < I:
                continue  # folded into (J, I) as a transpose
            diag = Yh is None and I == J
            Y_arg = None if diag else (Xf if Yh is None else Yf)
            # Contiguous copies: a view would pickle the whole of W with every task.
            block = np.ascontiguousarray(Wh[a0:a1, b0:b1])
            with warnings.catch_warnings():
                # Dask warns about task data above 10 MiB; here it is deliberate (the
                # scheduler keeps each block once, so that a lost task can be re-run).
                warnings.filterwarnings("ignore", message="Sending large graph",
                                        category=UserWarning)
                fut = client.submit(_adj_tile, Xf, Y_arg, (a0, a1), (b0, b1), block,
                                    geometry, kernel_kwargs, device, symmetric and I != J,
                                    key=f"lkr-local-kernel-adjoint-{run}-{I}-{J}",
                                    retries=retries, pure=False,
                                    priority=_cost((a0, a1), (b0, b1), diag))
            futures[fut] = (I, J)

    G = np.zeros(probe.shape, dtype=probe.dtype)

    def place(tag, block):
        G[...] += block

    _gather_into(client, futures, place)
    if symmetric:
        G = (G + G.T) / 2  # each tile is symmetric to rounding; the sum exactly
    return G


# -- clusters --------------------------------------------------------------------------------
@contextlib.contextmanager
def connect(scheduler=None, workers=None, *, threads_per_worker=1, **cluster_kwargs):
    """A Dask client for a running scheduler or for a new local cluster, closed on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:8786"``) to connect to.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes, listening on 127.0.0.1 only
        (the dashboard, if bokeh is installed, on a free port of 127.0.0.1). Without
        ``scheduler`` and ``workers``: one worker per core.
    threads_per_worker : int, default 1
        Threads of each local worker (tasks it runs at once).
    **cluster_kwargs
        Further ``LocalCluster`` arguments (e.g. ``memory_limit``).

    Yields
    ------
    dask.distributed.Client
    """
    distributed = _distributed()
    if scheduler is not None and workers is not None:
        raise ValueError("give either scheduler (an address) or workers (a local cluster), "
                         "not both")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler:
            raise TypeError(f"scheduler must be an address string, got {scheduler!r}")
        with distributed.Client(scheduler) as client:
            yield client
        return
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, numbers.Integral) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    # Everything on loopback: scheduler, workers and the scheduler's HTTP endpoint (a free
    # port, so that a second cluster does not collide with the first on 8787).
    kwargs = dict(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                  host="127.0.0.1", dashboard_address="127.0.0.1:0")
    kwargs.update(cluster_kwargs)
    with distributed.LocalCluster(**kwargs) as cluster, distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def executor(scheduler=None, workers=None, **kwargs):
    """A ``concurrent.futures.Executor`` backed by a Dask client, closed on exit.

    For :func:`lkr.theory.sweep` and anything else written against the standard executor
    interface. Arguments are those of :func:`connect`: ``scheduler`` connects to a running
    cluster, ``workers`` starts a local one of that many processes on 127.0.0.1.

    Yields
    ------
    concurrent.futures.Executor
        ``client.get_executor(pure=False)``; its ``client`` attribute is the Dask client.

    Examples
    --------
    >>> from lkr import distributed, theory                     # doctest: +SKIP
    >>> with distributed.executor(workers=2) as ex:             # doctest: +SKIP
    ...     rows = theory.sweep(factory, grid, X, y, Xt, yt, executor=ex)
    """
    with connect(scheduler, workers, **kwargs) as client:
        ex = client.get_executor(pure=False)
        ex.client = client
        try:
            yield ex
        finally:
            ex.shutdown(wait=False)
