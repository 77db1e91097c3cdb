"""What every theory shares: argument checks, the data binding and kernel cache, the
ReLU caveat, convergence reporting, Gaussian-process posteriors by Cholesky, and
``fit_path``."""
from __future__ import annotations

import copy
import hashlib
import math
import time
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from .. import _linalg, _memory, backend
from .._arrays import ArrayLike
from .._blas import blas_threads
from .._validate import integer as _integer
from .._validate import positive, real, samples, targets  # noqa: F401  (re-exported to the theories)
from .._validate import width as _width
from .._warnings import ActivationCaveatWarning, ConvergenceWarning
from ..activations import check_activation, is_odd
from . import _regime
from .result import ConvergenceError, Prediction, Solution

DEFAULT_TOL = 1e-8
#: Solves with at most this many samples run their dense algebra on one BLAS thread.
_ONE_THREAD_MAX_P = 2000
DEFAULT_MAXITER = 1000

RELU_CAVEAT = (
    "the one-order-parameter effective actions are exact only for odd activations "
    "(linear, erf): for relu the post-activations have a non-zero mean, which couples the "
    "readout to extra order parameters that these actions leave out; treat the result as "
    "an approximation")


def warn_relu(activation: str, name: str, stacklevel: int = 3) -> None:
    """Warn (ActivationCaveatWarning, a UserWarning; once per call site under the default
    filter) for non-odd sigma."""
    if not is_odd(activation):
        warnings.warn(f"{name} with activation={activation!r}: {RELU_CAVEAT}",
                      ActivationCaveatWarning,
                      stacklevel=stacklevel)


# -- argument checks ----------------------------------------------------------------------


def temperature(value) -> float:
    v = real(value, "temperature")
    if v < 0:
        raise ValueError(f"temperature must be >= 0, got {value!r} (T = 0 is allowed when the "
                         "kernel is positive definite on the training set)")
    return v


def tolerance(value) -> float:
    v = positive(value, "tol")
    return v


def iterations(value) -> int:
    return _integer(value, "maxiter", 0)


def activation_name(value) -> str:
    return check_activation(value)


def inputs(X, name: str = "X"):
    """X as a float64 array of its own library (NumPy or CuPy), validated finite."""
    return samples(X, name, dtype=np.float64)


MEAN_MODES = ("auto", "ignore")


def mean_mode(value) -> str:
    """The ``mean`` constructor argument: "auto" (the non-central action when the
    activation's mean is non-zero) or "ignore" (the one-parameter action, with its caveat)."""
    if not isinstance(value, str) or value not in MEAN_MODES:
        raise ValueError(f"mean must be one of {MEAN_MODES}, got {value!r}")
    return value


def width_condition(width: float, needed: int, what: str, reason: str) -> None:
    """Refuse width < needed with one line naming both numbers (e.g. N1 >= D for FC)."""
    if width < needed:
        raise ValueError(f"{what}: width {width:g} is below {needed} ({reason}); the prior of "
                         f"the order parameter is singular there: use width >= {needed}")


def fingerprint(*parts) -> str:
    """A content hash of arrays and settings: the kernel cache is reused only for the very
    same data, not for an array that was modified in place."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if backend.is_gpu_array(p):
            # Hash on the device: only two scalars cross to the host, not the data.
            xp = backend.array_module(p)
            v = xp.ascontiguousarray(p).reshape(-1).view(xp.uint8).astype(xp.uint64)
            w = xp.arange(v.size, dtype=xp.uint64) % xp.uint64(65521) + xp.uint64(1)
            h.update(repr((p.shape, p.dtype.str, int(v.sum()), int((v * w).sum()))).encode())
        elif hasattr(p, "shape") and hasattr(p, "dtype"):
            a = np.ascontiguousarray(backend.to_numpy(p))
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(a.view(np.uint8).reshape(-1).data)
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


# -- posteriors ---------------------------------------------------------------------------
def cholesky_of_A(A, T: float, what: str):
    """Cholesky of A = T I + K_R, with an error that explains T = 0."""
    try:
        return _linalg.cholesky(A, "A = T I + K_R")
    except _linalg.NotPositiveDefiniteError:
        if T == 0:
            raise _linalg.NotPositiveDefiniteError(
                f"{what}: A = K_R is not positive definite at T = 0 (the training kernel is "
                "singular, e.g. repeated inputs or P larger than its rank); use T > 0") from None
        raise


def check_T0_spectrum(lam, T: float, what: str) -> None:
    """At T = 0, A = K_R must be positive definite: refuse a (numerically) singular kernel."""
    if T == 0 and lam.size:
        top = float(lam.max())
        if float(lam.min()) <= lam.size * np.finfo(float).eps * top:
            raise _linalg.NotPositiveDefiniteError(
                f"{what}: at T = 0 the kernel must be positive definite on the training set, "
                f"but its smallest eigenvalue is {float(lam.min()):.3g} (largest {top:.3g}); "
                "use T > 0")


def gp_posterior(chol, y, k_cross, k_diag) -> Prediction:
    """mean = k^T A^{-1} y, variance = k00 - k^T A^{-1} k from a Cholesky of A.

    ``k_cross`` is (P_test, P), ``k_diag`` (P_test,). A (P, D) ``y`` gives D independent
    GPs with one kernel: mean (P_test, D), the same variance for every output (P_test, D)
    and covariance variance * I_D.
    """
    xp = backend.array_module(k_cross)
    a = chol.solve(y)
    mean = k_cross @ a
    V = chol.half_solve(k_cross.T)  # L^{-1} k: the variance without forming A^{-1}
    var = k_diag - xp.einsum("ij,ij->j", V, V)
    var = xp.maximum(var, 0.0)  # rounding can push a zero variance below 0
    if y.ndim == 2:
        var = xp.repeat(var[:, None], y.shape[1], axis=1)
    return Prediction(mean=mean, variance=var)


# -- the base class -----------------------------------------------------------------------
class _Theory:
    """Shared machinery. Subclasses implement ``_bind`` (data-dependent cache),
    ``_solve`` (returns a Solution), ``_predict`` and, for actions, ``action``/``gradient``."""

    _name = "theory"
    #: Whether fit accepts Y of shape (P, D), D >= 2 (set by the theories that do).
    _multi_output = False
    #: Whether predict/evaluate accept corrected=True (the 1/N corrections).
    _corrected = False

    def __init__(self, *, temperature_value, tol, maxiter):
        self.temperature = temperature(temperature_value)
        self.tol = tolerance(tol)
        self.maxiter = iterations(maxiter)
        self.solution = None
        self._X = None
        self._y = None
        self._cache = None
        self._cache_key = None

    # data --------------------------------------------------------------------------------
    @property
    def num_samples(self) -> Optional[int]:
        """P of the bound training set (None before ``fit``/``set_data``)."""
        return None if self._X is None else int(self._X.shape[0])

    @property
    def alpha(self) -> Optional[float]:
        """P / width of the bound training set (None before ``fit``/``set_data``)."""
        P = self.num_samples
        w = getattr(self, "width", None)
        if P is None or w is None:
            return None
        return P / w if np.isfinite(w) else 0.0

    @property
    def num_outputs(self) -> Optional[int]:
        """D of the bound targets: 1 for a vector y, D for Y of shape (P, D); None before
        ``fit``/``set_data``."""
        if self._y is None:
            return None
        return 1 if self._y.ndim == 1 else int(self._y.shape[1])

    def _min_width(self):
        """The smallest admissible width for the bound targets (None: no condition).
        FC with D outputs: D; CNN: Np D. Checked before every solve."""

    def _check_width(self):
        need = self._min_width()
        w = getattr(self, "width", None)
        if need is not None and w is not None and np.isfinite(w):
            width_condition(w, need, type(self).__name__,
                            f"{self.num_outputs} outputs need a {need} x {need} Wishart prior")

    def set_data(self, X: ArrayLike, y: ArrayLike):
        """Bind a training set (validated) and build or reuse the kernel cache.

        ``fit`` calls it; call it yourself to use :meth:`action` and :meth:`gradient`
        without fitting. The cache (kernel, spectrum or local-kernel tensor) is reused when
        the same X (by content) and kernel settings come again.
        """
        Xa = self._validate_X(X)
        xp = backend.array_module(Xa)
        ya = targets(y, Xa.shape[0], xp, multi=self._multi_output, what=type(self).__name__)
        P, D = Xa.shape[0], 1 if ya.ndim == 1 else int(ya.shape[1])
        # refused before the kernel exists (lkr._memory), naming size, budget and remedy
        N0 = int(np.prod(Xa.shape[1:]))
        _memory.check(self._fit_bytes(P, D, N0),
                      f"{type(self).__name__}.fit with P = {P} samples and D = {D} output(s)",
                      "use fewer training samples", xp=xp,
                      size=("P", P, lambda n: self._fit_bytes(n, D, N0)))
        self._bind_outputs = D
        key = fingerprint(Xa, self._cache_settings())
        if key != self._cache_key:
            self._cache = None
            self._cache_key = None
            self._X = Xa
            small = xp is np and Xa.shape[0] <= _ONE_THREAD_MAX_P
            self._bind_key = key  # lets _bind share a cache between theories (FC spectrum)
            with blas_threads(1, enabled=small):
                self._cache = self._bind(Xa)
            self._cache_key = key
        self._X = Xa
        self._y = ya
        self.solution = None
        return self

    def _validate_X(self, X):
        return inputs(X)

    #: whether the order parameter couples outputs and patches (CNN, LCN: (Np D) x (Np D)),
    #: so that the fit works on (P D) x (P D) matrices
    _local_memory = False
    #: D of the targets the kernel cache is built for (set by set_data before _bind)
    _bind_outputs = 1

    def _fit_bytes(self, P, D, N0):
        """Estimated peak memory of a fit (lkr._memory), without a stored local kernel,
        which takes what is left of the budget or streams."""
        if self._local_memory:
            return _memory.local_theory_bytes(P, D, N0, self._unknowns(D))
        return _memory.fc_theory_bytes(P, D, N0)

    def _unknowns(self, D):
        """Unknowns of the solver (the free entries of Qbar) for D outputs."""
        return D * (D + 1) // 2

    def _predict_bytes(self, Pt, D):
        return _memory.predict_bytes(self.num_samples, Pt, D, local=self._local_memory,
                                     finite=np.isfinite(getattr(self, "width", np.inf)))

    def _cache_settings(self):
        raise NotImplementedError

    def _need_data(self, what):
        if self._X is None:
            raise RuntimeError(f"{type(self).__name__}.{what}: no training data; call "
                               "fit(X, y) (or set_data(X, y)) first")

    def _need_fit(self, what):
        if self.solution is None:
            raise RuntimeError(f"{type(self).__name__}.{what} before fit: call fit(X, y) first")

    # fitting -----------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, Q0: Any = None, strict: bool = False, *,
            tol: Optional[float] = None, maxiter: Optional[int] = None) -> Solution:
        """Bind (X, y) and solve for the saddle point Qbar (see the class docstring).

        Parameters
        ----------
        X : array_like, shape (P, ...)
            Training inputs.
        y : array_like, shape (P,) or (P, D)
            Training labels; (P, D) with D >= 2 for the theories with several outputs
            (FCTheory, DeepFCTheory vanilla, GPTheory, ...).
        Q0 : optional
            Starting point (warm start); must be admissible (positive, SPD). For the
            non-central actions (relu) also the pair (Qbar, conjugate) of a neighbouring
            saddle, as ``fit_path`` passes it. None (the default) starts from the
            infinite-width point.
        strict : bool
            Raise :class:`ConvergenceError` instead of warning when not converged.
        tol, maxiter : optional
            Override the instance's tolerance on the relative gradient and iteration cap.

        Returns
        -------
        Solution
            Also stored as ``self.solution``.
        """
        self.set_data(X, y)
        return self._fit_bound(Q0, strict, tol, maxiter)

    def _filter_dim(self):
        """M of the renormalised layer (FC: N0), or None where the Gaussian-equivalence
        condition does not apply (the GP). See :mod:`._regime`."""
        return None

    def _fit_bound(self, Q0, strict, tol, maxiter, regime_warning=True):
        tol = self.tol if tol is None else tolerance(tol)
        maxiter = self.maxiter if maxiter is None else iterations(maxiter)
        self._check_width()
        t0 = time.perf_counter()
        # many small LAPACK calls: one BLAS thread is as fast and immune to oversubscription
        small = backend.array_module(self._X) is np and self.num_samples <= _ONE_THREAD_MAX_P
        with blas_threads(1, enabled=small):
            sol = self._solve(Q0, tol, maxiter)
        sol.seconds = time.perf_counter() - t0
        sol.theory = type(self).__name__
        sol.tol = tol
        sol.temperature = self.temperature
        sol.width = float(getattr(self, "width", float("inf")))
        sol.alpha = float(self.alpha or 0.0)
        self._check_finite_solution(sol)
        self.solution = sol
        if regime_warning:
            _regime.check(self, sol)
        else:
            sol.filter_dim = self._filter_dim()
        if not sol.converged:
            msg = (f"{sol.theory}.fit did not converge: relative gradient norm "
                   f"{sol.rel_grad_norm:.3g} > tol {tol:.3g} after {sol.iterations} iterations "
                   f"({sol.evaluations} evaluations), action {sol.action!r}: {sol.message}. "
                   "Raise maxiter, loosen tol, or pass a better Q0.")
            if strict:
                raise ConvergenceError(msg, sol)
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
        return sol

    @staticmethod
    def _check_finite_solution(sol):
        Q = backend.to_numpy(sol.Q)
        conj = sol.conjugate
        if conj is not None and not np.all(np.isfinite(backend.to_numpy(conj))):
            Q = np.nan
        if not np.all(np.isfinite(Q)) or (sol.action is not None and not np.isfinite(sol.action)):
            raise FloatingPointError(f"{sol.theory}: the solver produced a non-finite Qbar or "
                                     f"action ({sol.message}); this is a bug, please report it")

    def fit_path(self, X: ArrayLike, y: ArrayLike, widths: Sequence[float], *,
                 strict: bool = False, tol: Optional[float] = None,
                 maxiter: Optional[int] = None) -> list:
        """Fit at each width in turn, each solve warm-started from the previous one.

        The kernel cache (kernel spectrum or local-kernel tensor) is built once and shared.

        Parameters
        ----------
        X, y : training set
        widths : sequence of float
            Widths N (alpha = P / N), solved in the given order (sort them so neighbouring
            solutions are close).

        Returns
        -------
        list of theories
            Fitted copies of this theory (its type), one per width, in the same order.
        """
        widths = list(widths)
        if not widths:
            raise ValueError("widths is empty")
        for w in widths:
            _width(w, "widths entry")
        self.set_data(X, y)
        out = []
        prev = None
        warned = None
        for w in widths:
            th = copy.copy(self)
            th.width = float(_width(w, "widths entry"))
            th.solution = None
            # warm start; a non-central action continues from the pair (Q, conjugate)
            start = (None if prev is None else
                     prev.Q if prev.conjugate is None else (prev.Q, prev.conjugate))
            # one regime warning per path and filter dimension (the deep CNN's depends on
            # the width), not one per width
            dim = th._filter_dim()
            th._fit_bound(start, strict, tol, maxiter, regime_warning=dim != warned)
            warned = dim
            out.append(th)
            prev = th.solution
        return out

    # predictions -------------------------------------------------------------------------
    def predict(self, Xt: ArrayLike, corrected: bool = False) -> Prediction:
        """Posterior mean k_R^T A^{-1} y and variance K_R^00 - k_R^T A^{-1} k_R at test
        inputs (T not added), with K_R at the fitted Qbar.

        Parameters
        ----------
        Xt : array_like, shape (P_test, ...)
        corrected : bool
            Apply the first-order 1/N corrections to the predictor's kernels
            (docs/theory-beyond-odd.md section 4; FCTheory, and where a theory says so).

        Returns
        -------
        Prediction
            ``mean`` (P_test,) and ``variance`` (P_test,) for one output; (P_test, D),
            and ``covariance`` (P_test, D, D), for D outputs. Unpacks as ``mean, var``.
        """
        self._need_fit("predict")
        if corrected not in (True, False):
            raise TypeError(f"corrected must be True or False, got {corrected!r}")
        if corrected and not self._corrected:
            raise ValueError(f"{type(self).__name__}.predict: corrected=True (1/N corrections)"
                             " is not available for this theory")
        Xt = self._validate_X(Xt)
        if math.prod(Xt.shape[1:]) != math.prod(self._X.shape[1:]):
            # said here: the kernel would report "X and Y differ", Y being no label array
            raise ValueError(f"Xt must hold samples of the shape the theory was fit on, "
                             f"{tuple(self._X.shape[1:])}; got Xt of shape {tuple(Xt.shape)}")
        xp = backend.array_module(self._X)
        if backend.array_module(Xt) is not xp:
            raise TypeError("Xt must live on the same device as the training X")
        Pt, D = Xt.shape[0], self.num_outputs or 1
        _memory.check(self._predict_bytes(Pt, D), f"{type(self).__name__}.predict at "
                      f"{Pt} test points (P = {self.num_samples}, D = {D})",
                      "predict in batches of fewer test points", xp=xp,
                      size=("P_test", Pt, lambda n: self._predict_bytes(n, D)))
        if corrected:
            return self._predict_corrected(Xt)
        return self._predict(Xt)

    def evaluate(self, Xt: ArrayLike, yt: ArrayLike, corrected: bool = False) -> dict:
        """Test-set means ``{"error": bias2 + variance, "bias2", "variance"}`` (T not added);
        with D outputs the means run over test points and outputs, and ``per_output`` holds
        the three as length-D arrays. Class targets (one-hot or +-1 coded, see
        :meth:`Prediction.error`) add ``accuracy`` (argmax of the posterior mean),
        ``confusion`` (true by predicted class counts) and ``class_coding``. ``corrected`` as
        in :meth:`predict`."""
        pred = self.predict(Xt, corrected=corrected)
        return pred.error(yt)
