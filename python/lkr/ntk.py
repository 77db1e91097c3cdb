r"""Jacobian Gram matrices: the empirical neural tangent kernel (docs/theory.md section 3).

For a network f(theta, x) with parameters theta (num_params of them) and inputs
x^1..x^P, the Jacobian J has rows (sample) and columns (parameter),
J_{mu p} = d f(x^mu) / d theta_p, and the empirical NTK is the Gram matrix

.. math:: \Theta(x, x') = \sum_p \frac{\partial f(x)}{\partial \theta_p}
          \frac{\partial f(x')}{\partial \theta_p} = (J J'^T)_{x x'}.

:func:`empirical_ntk` computes Theta for lkr's own nets from structured closed forms
without materialising J (work O(P P' N) as GEMMs, memory O(P P' + P N)):

- FC (and deep FC, layer by layer, with a^0 = x, h^l the pre-activations,
  delta^l = df/dh^l):

  .. math:: \Theta = \sum_{l=1}^{L} (\delta^l \delta'^{l\,T}) \circ
            \frac{a^{l-1} a'^{l-1\,T}}{N_{l-1}} + \frac{a^L a'^{L\,T}}{N_L},

  which for one layer is (1/N1) sum_k [s_k s'_k + v_k^2 s._k s.'_k (x.x')/N0].
- CNN: (1/(Nc Np)) sum_a [sum_i s_ai s'_ai + (1/M) g_a . g'_a] with
  g_a = sum_i v_ai s._ai x_i (the (1/M) sum_ij v_ai v_aj s._ai s.'_aj x_i.x'_j of the
  design, factorised), accumulated over blocks of channels.
- LCN: (1/(Nc Np)) sum_a sum_i [s_ai s'_ai + (1/M) v_ai^2 s._ai s.'_ai x_i.x'_i].

:func:`jacobian` gives J itself (columns in the order of ``net.flatten``), :func:`gram`
the Gram matrix of a Jacobian from anywhere (NumPy, CuPy, or any ``__dlpack__`` array such
as a torch tensor), computed in row blocks; :func:`from_torch` gets J of a PyTorch model
through ``torch.func`` and returns lkr's Gram and spectral diagnostics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import backend
from ._validate import integer as _integer
from .nets import DeepFCNet, LinearizedNet, Net, PatchNet

__all__ = ["empirical_ntk", "jacobian", "gram", "from_torch", "TorchNTK", "DEFAULT_BLOCK_BYTES"]

#: working-memory budget (bytes) for the per-block features of :func:`empirical_ntk` and the
#: row blocks of :func:`gram`
DEFAULT_BLOCK_BYTES = 128 * 1024**2


def _base(net):
    if isinstance(net, LinearizedNet):
        # f_lin is linear in u with Jacobian J(w0): its NTK is the base net's at w0
        return net.base
    if not isinstance(net, Net):
        raise TypeError(f"net must be one of lkr's nets (FCNet, DeepFCNet, CNNNet, LCNNet, "
                        f"LinearizedNet), got {type(net).__name__}")
    return net


def _inputs(net, X, Y):
    """Validated inputs (in the nets' internal form) and unchained params, one dtype."""
    Z, p, _, xp, _ = net.resolve(X, None)
    ZY = None
    if Y is not None:
        ZY, _, _, xpy, _ = net.resolve(Y, None)
        if xpy is not xp:
            raise TypeError("X and Y must live on the same device")
        dtype = np.result_type(Z.dtype, ZY.dtype)
        Z, ZY = Z.astype(dtype, copy=False), ZY.astype(dtype, copy=False)
        p = {k: v.astype(dtype, copy=False) for k, v in p.items()}
    return Z, ZY, p, xp


def _budget(max_bytes):
    if max_bytes is None:
        return DEFAULT_BLOCK_BYTES
    return _integer(max_bytes, "max_bytes", 1)


# -- fully connected ----------------------------------------------------------------------
def _fc_factors(net, X, p):
    """([delta^l = df/dh^l for l = 1..L], [a^0 = x, a^1, ..., a^L]), unscaled."""
    acts, ders = net.layers(X, p, derivative=True)
    return net.deltas(ders, p), acts


def _sym_product(A, B):
    """A @ B.T. When B is A (a Gram), BLAS's symmetric rank-k update does half the work,
    but it is slower than GEMM for thin A (measured: K = 100 columns, P = 2048)."""
    if B is A and A.shape[-1] < 256:
        return A @ A.T.copy()
    return A @ B.T


def _fc_ntk(net, X, Y, p):
    dims = (net.N0,) + net.widths
    dx, ax = _fc_factors(net, X, p)
    dy, ay = (dx, ax) if Y is None else _fc_factors(net, Y, p)
    theta = _sym_product(ax[-1], ay[-1])
    theta *= 1.0 / dims[-1]
    for l in range(net.depth):
        part = _sym_product(dx[l], dy[l])
        part *= _sym_product(ax[l], ay[l])
        part *= 1.0 / dims[l]
        theta += part
    return theta


def _fc_jacobian(net, X, p):
    xp = backend.array_module(X)
    deltas, acts = _fc_factors(net, X, p)
    dims = (net.N0,) + net.widths
    P = X.shape[0]
    cols = [(deltas[l][:, :, None] * (acts[l] / math.sqrt(dims[l]))[:, None, :]).reshape(P, -1)
            for l in range(net.depth)]
    return xp.concatenate(cols + [acts[-1] / math.sqrt(dims[-1])], axis=1)


# -- convolutional and locally connected ----------------------------------------------------
def _patch_block(net, P, P2, itemsize, max_bytes):
    g = net.geometry
    per_channel = (P + P2) * (g.num_patches + g.patch_size) * itemsize
    return max(1, min(net.width, max_bytes // max(per_channel, 1)))


def _patch_ntk(net, Z, ZY, p, max_bytes):
    xp = backend.array_module(Z)
    P, Np, M = Z.shape
    P2 = P if ZY is None else ZY.shape[0]
    nb = _patch_block(net, P, 0 if ZY is None else P2, Z.dtype.itemsize, max_bytes)
    theta = None

    def add(A, B):
        # theta += A @ B.T; when B is A, BLAS takes the symmetric rank-k path (half the work)
        nonlocal theta
        part = _sym_product(A, B)
        if theta is None:
            theta = part
        else:
            theta += part

    if net.local:
        # x_i . x'_i for every patch: (Np, P, P2), built once when it fits the budget,
        # else per block
        gram_fits = Np * P * P2 * Z.dtype.itemsize <= max_bytes
        ZT = xp.ascontiguousarray(Z.transpose(1, 0, 2))
        ZYT = ZT if ZY is None else xp.ascontiguousarray(ZY.transpose(1, 0, 2))
        zz = ZT @ ZYT.transpose(0, 2, 1) if gram_fits else None
    for a0 in range(0, net.width, nb):
        a1 = min(net.width, a0 + nb)
        if not net.local:
            # the CNN NTK of a block is the Gram of [S | G]: one GEMM
            F = net.features(Z, p, a0, a1, combined=True)
            FY = F if ZY is None else net.features(ZY, p, a0, a1, combined=True)
            add(F, FY)
            continue
        S, G = net.features(Z, p, a0, a1)
        SY, GY = (S, G) if ZY is None else net.features(ZY, p, a0, a1)
        Sf = S.reshape(P, -1)
        add(Sf, Sf if ZY is None else SY.reshape(P2, -1))
        for i in range(Np):
            zi = zz[i] if zz is not None else ZT[i] @ ZYT[i].T
            theta += (G[:, :, i] @ GY[:, :, i].T) * zi
    return theta


def _patch_jacobian(net, Z, p):
    xp = backend.array_module(Z)
    P = Z.shape[0]
    S, G = net.features(Z, p, 0, net.width)
    if net.local:
        G = G[:, :, :, None] * Z[:, None, :, :]       # (P, Nc, Np, M): df/dw_{ai}
    return xp.concatenate([G.reshape(P, -1), S.reshape(P, -1)], axis=1)


# -- public --------------------------------------------------------------------------------
def _jacobian_ntk(net, Z, ZY, p, max_bytes):
    """J(X) J(Y)^T from the per-sample Jacobians of a net without closed-form features
    (:class:`~lkr.nets.DeepCNNNet`), in blocks of samples within ``max_bytes``."""
    xp = backend.array_module(Z)
    rows = max(1, int(max_bytes) // max(1, 2 * net.num_params * Z.dtype.itemsize))
    JY = None if ZY is None else [net.per_sample_jacobian(ZY[b:b + rows], p)
                                  for b in range(0, ZY.shape[0], rows)]
    JX = [net.per_sample_jacobian(Z[b:b + rows], p) for b in range(0, Z.shape[0], rows)]
    JY = JX if JY is None else JY
    return xp.concatenate([xp.concatenate([a @ b.T for b in JY], axis=1) for a in JX], axis=0)


def empirical_ntk(net, X, Y=None, *, max_bytes: Optional[int] = None):
    r"""Empirical NTK Theta(X, Y) = J(X) J(Y)^T of one of lkr's nets, from closed forms.

    J is never materialised: the FC forms are GEMMs over the hidden units, the CNN/LCN forms
    GEMMs over per-sample features of blocks of channels (see the module docstring).

    Parameters
    ----------
    net : FCNet, DeepFCNet, CNNNet, LCNNet, DeepCNNNet or LinearizedNet
        At its current parameters (a LinearizedNet's NTK is its base net's at w0, for any u).
    X : array, (P, ...)
        Inputs in any shape the net accepts.
    Y : array, (P', ...), optional
        Second set of inputs (train-test block); default X.
    max_bytes : int, optional
        Budget for the per-block CNN/LCN features (default :data:`DEFAULT_BLOCK_BYTES`).

    Returns
    -------
    ndarray, shape (P, P')
        In the array library and dtype of the inputs and parameters (float32 kept when all
        are float32). Symmetric positive semi-definite when Y is None.

    Examples
    --------
    >>> from lkr import nets
    >>> net = nets.FCNet(10, 256, activation="erf", seed=0)
    >>> X = np.random.default_rng(0).standard_normal((5, 10))
    >>> empirical_ntk(net, X).shape
    (5, 5)
    """
    net = _base(net)
    budget = _budget(max_bytes)
    Z, ZY, p, xp = _inputs(net, X, Y)
    if isinstance(net, DeepFCNet):
        theta = _fc_ntk(net, Z, ZY, p)
    elif isinstance(net, PatchNet):
        theta = _patch_ntk(net, Z, ZY, p, budget)
    elif hasattr(net, "per_sample_jacobian"):
        theta = _jacobian_ntk(net, Z, ZY, p, budget)
    else:  # pragma: no cover - every Net subclass is handled above
        raise TypeError(f"no closed-form NTK for {type(net).__name__}")
    if ZY is None:
        theta = 0.5 * (theta + theta.T)  # exact symmetry (GEMMs of A and A^T round differently)
    return theta


def jacobian(net, X):
    """The Jacobian J = d f(X) / d theta of one of lkr's nets, shape (P, num_params).

    Rows are samples, columns parameters in the order of ``net.flatten`` (for FCNet: W
    row-major, then v). Memory O(P num_params); :func:`empirical_ntk` avoids it.
    """
    net = _base(net)
    Z, _, p, _ = _inputs(net, X, None)
    if isinstance(net, DeepFCNet):
        return _fc_jacobian(net, Z, p)
    if hasattr(net, "per_sample_jacobian"):
        return net.per_sample_jacobian(Z, p)
    return _patch_jacobian(net, Z, p)


def _as_matrix(J, name="J", finite: bool = True):
    """A 2-D real array from NumPy, CuPy or any __dlpack__ object (finite when ``finite``)."""
    A = backend.asarray(J, name)
    if not hasattr(A, "ndim") or A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows: samples x outputs, columns: "
                         f"parameters), got shape {tuple(getattr(A, 'shape', ()))}")
    backend.check_floating(A, name)
    if A.dtype.kind == "c":  # pragma: no cover - rejected by check_floating
        raise TypeError(f"{name} must be real")
    if finite:
        backend.check_finite(A, name)
    return A


def gram(J, block: Optional[int] = None):
    """Gram matrix J J^T of a Jacobian by a symmetric rank-k update (BLAS syrk).

    .. math:: G_{ab} = \\sum_p J_{ap} J_{bp}

    One triangle is computed (half the flops of the GEMM ``J @ J.T.copy()``) and mirrored
    once, so G is exactly symmetric. A C- or F-contiguous float32/float64 NumPy J goes to
    BLAS in one call (as NumPy's own ``J @ J.T``, which also detects the symmetric product);
    otherwise J is converted in column panels J[:, k0:k1] accumulated as
    G += J_k J_k^T, so it is never copied whole. CuPy: cuBLAS syrk on the same panels.

    Memory: the (R, R) result, plus one converted panel of R x max(R, 2^20 / R) numbers
    when J is not already contiguous float32/float64 (at most max(R^2, 2^20) numbers; for a
    huge R, pass ``block``). J's finiteness is checked on G's diagonal (a NaN or inf in row
    a of J reaches G_aa, since squares cannot cancel), so J is not scanned a second time.

    Parameters
    ----------
    J : array, (R, N)
        NumPy, CuPy, or any object with ``__dlpack__`` (e.g. a torch tensor, taken without a
        copy). Rows are (sample, output) pairs, columns parameters.
    block : int, optional
        Columns per converted panel; forces the panel path. Default: chosen from the shape
        (a single BLAS call for contiguous J, else max(R, 2^20 / R) columns, so each panel
        update is compute-bound).

    Returns
    -------
    array, (R, R)
        Symmetric; float32 for float32 J, float64 otherwise; in the array library of J
        (a torch tensor for a torch J, NumPy for NumPy, CuPy for CuPy).
    """
    from . import _gram

    A = _as_matrix(J, finite=False)
    block = None if block is None else _integer(block, "block", 1)
    G = _gram.gram(A, block)
    return backend.wrap_like(G, J)


# -- PyTorch -------------------------------------------------------------------------------
@dataclass
class TorchNTK:
    """lkr's diagnostics of a PyTorch model's empirical NTK (see :func:`from_torch`).

    Attributes
    ----------
    ntk : ndarray (R, R)
        Theta = J J^T, rows (sample, output), sample-major.
    singular_values : ndarray
        Of J, descending (square roots of the eigenvalues of Theta).
    effective_rank, stable_rank : float
        Of J (see :mod:`lkr.spectrum`).
    condition_number : float
        kappa(J) = sigma_max / sigma_min over all min(R, N) singular values (inf when J is
        rank-deficient); kappa(Theta) = kappa(J)^2.
    jacobian : ndarray (R, N) or None
        J itself when ``return_jacobian=True``.
    """

    ntk: np.ndarray
    singular_values: np.ndarray
    effective_rank: float
    stable_rank: float
    condition_number: float
    jacobian: Optional[np.ndarray] = None


def from_torch(model, X, *, chunk: int = 256, return_jacobian: bool = False) -> TorchNTK:
    """Empirical NTK and its spectrum for a PyTorch model, J through ``torch.func``.

    J = d model(x) / d theta over all parameters that require grad is built per sample with
    ``torch.func.vmap(torch.func.jacrev(...))`` in chunks of ``chunk`` samples (rows
    sample-major, one per output entry), then handed to :func:`gram` and
    :mod:`lkr.spectrum` (through DLPack, no copy for CPU tensors).

    Parameters
    ----------
    model : torch.nn.Module
    X : torch.Tensor or array, (P, ...)
        Inputs (arrays are converted to tensors of the model's dtype and device).
    chunk : int
        Samples per vmap batch (bounds the autograd memory).
    return_jacobian : bool
        Keep J in the result.

    Returns
    -------
    TorchNTK
    """
    try:
        import torch
        from torch.func import functional_call, jacrev, vmap
    except ImportError as exc:
        raise ImportError("from_torch needs PyTorch (pip install torch)") from exc
    from . import spectrum

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    chunk = _integer(chunk, "chunk", 1)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no parameters that require grad")
    first = next(iter(params.values()))
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(backend.to_numpy(backend.asarray(X, "X"))))
    X = X.to(device=first.device, dtype=first.dtype)
    if X.ndim < 1 or X.shape[0] < 1:
        raise ValueError(f"X must have a leading sample axis, got shape {tuple(X.shape)}")

    def f(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))
    blocks = []
    with torch.no_grad():
        for s in range(0, X.shape[0], int(chunk)):
            jb = jac(params, X[s:s + int(chunk)])          # name -> (b, out, *shape)
            b = next(iter(jb.values())).shape[:2]
            blocks.append(torch.cat([jb[k].reshape(b[0] * b[1], -1) for k in params], dim=1))
    J = torch.cat(blocks, dim=0)
    Jn = backend.to_numpy(J.detach().cpu())
    theta = gram(Jn)
    # singular values from J itself: the Gram's eigenvalues resolve them only to
    # ~sqrt(eps) sigma_1
    s = spectrum.singular_values(Jn)
    return TorchNTK(ntk=theta, singular_values=s,
                    effective_rank=spectrum.effective_rank(s, values=True),
                    stable_rank=spectrum.stable_rank(s, values=True),
                    condition_number=spectrum.condition_number(s, values=True),
                    jacobian=Jn if return_jacobian else None)
