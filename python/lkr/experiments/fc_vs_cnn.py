"""FC versus CNN versus LCN: test error against width, against the infinite-width limits.

The experiment behind ``lkr fc-vs-cnn``. On one task (seeded), for every width N it fits the
effective actions of the three one-hidden-layer architectures (docs/theory.md section 2):

FC
    one scalar order parameter Qbar renormalises the whole NNGP kernel (*global*
    renormalisation): K_R = Qbar K / lambda1;
CNN
    a matrix Qbar_ij over pairs of patches renormalises the local kernel (*local*
    renormalisation): K_R = (1 / (lambda1 Np)) sum_ij Qbar_ij K_ij;
LCN
    the same with Qbar diagonal (a filter per patch: no patch-patch coupling survives),

and evaluates the Bayesian predictor's test error = bias^2 + variance. The infinite-width
references are the Gaussian processes with Q = I: the FC kernel for FC, and K_R(I) for the
CNN. The LCN's infinite-width limit is the same GP as the CNN's (with Q = I the cross-patch
terms drop out of both), so one line serves both. The pooled GP (Q = 11^T / Np, a CNN with
global average pooling at infinite width) is recorded too, for context.

:func:`run` returns a JSON-friendly dict; :func:`format_table`, :func:`save_results` and
:func:`plot_results` turn it into the table, ``results.json`` and ``fc_vs_cnn.png``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

__all__ = ["run", "prepare", "Prepared", "default_widths", "format_table", "save_results", "plot_results",
           "Progress", "ARCHITECTURES", "DEFAULTS"]

ARCHITECTURES = ("fc", "cnn", "lcn")
_NAMES = {"fc": "FC", "cnn": "CNN", "lcn": "LCN"}

#: alpha = P / N of the default widths (from wide to narrow)
DEFAULT_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

#: The default run: sized to finish within 3 minutes on 2 cores (see the README).
DEFAULTS = dict(task="local-teacher", P=400, P_test=1000, widths=None, temperature=0.1,
                activation="erf", lambda0=1.0, lambda1=1.0, input_shape=(64,),
                filter_size=(4,), stride=None, boundary="periodic", seed=0)


def default_widths(P: int, alphas: Sequence[float] = DEFAULT_ALPHAS) -> list:
    """Widths N = round(P / alpha) for the default alphas, ascending, duplicates dropped."""
    return sorted({max(1, int(round(P / a))) for a in alphas})


class Progress:
    """A plain-text progress bar on a stream (stderr by default).

    On a terminal it redraws one line; elsewhere (a pipe, a log file) it prints one line
    per step so that logs stay readable.
    """

    def __init__(self, total: int, stream=None, width: int = 24, enabled: bool = True):
        self.total = max(int(total), 1)
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, label: str = "", n: int = 1) -> None:
        """Advance by n steps and show ``label`` (what was just finished)."""
        self.done = min(self.done + n, self.total)
        self.show(label)

    def show(self, label: str = "") -> None:
        """Redraw the bar with ``label`` (e.g. what is being computed now) without advancing."""
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {self.done}/{self.total} {time.perf_counter() - self.t0:6.1f}s  "
                f"{label}")
        if self.tty:
            self.stream.write("\r" + line[:100].ljust(100))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# -- helpers ----------------------------------------------------------------------------------
def _to_numpy(a):
    from ..backend import to_numpy

    return to_numpy(a)


def _q_summary(arch: str, Q) -> dict:
    """A few numbers that describe the order parameter Qbar (the full matrix is kept too)."""
    if arch == "fc":
        return {"Qbar": float(np.asarray(_to_numpy(Q)).reshape(()))}
    Q = np.asarray(_to_numpy(Q), dtype=np.float64)
    if Q.ndim == 1:  # an LCN solver may return only the diagonal
        Q = np.diag(Q)
    d = np.diag(Q)
    out = {"diag_mean": float(d.mean()), "diag_min": float(d.min()), "diag_max": float(d.max())}
    if arch == "cnn":
        n = Q.shape[0]
        off = Q[~np.eye(n, dtype=bool)]
        ev = np.linalg.eigvalsh((Q + Q.T) / 2)
        out.update(offdiag_mean=float(off.mean()) if off.size else 0.0,
                   offdiag_absmax=float(np.abs(off).max()) if off.size else 0.0,
                   eig_min=float(ev[0]), eig_max=float(ev[-1]))
    return out


def _jsonable(obj):
    """Convert NumPy (and CuPy) scalars and arrays inside obj into plain Python."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None if math.isnan(v) else str(v)
    if hasattr(obj, "__array__") or hasattr(obj, "get"):
        try:
            return _jsonable(np.asarray(_to_numpy(obj)).tolist())
        except Exception:  # not an array after all
            pass
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)


def _solution_dict(sol) -> dict:
    d = sol.to_dict() if hasattr(sol, "to_dict") else {
        k: getattr(sol, k) for k in ("Q", "action", "grad_norm", "iterations", "converged")
        if hasattr(sol, k)}
    return _jsonable(d)


def _versions() -> dict:
    import scipy

    from .._version import __version__

    return {"lkr": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _row(arch, width, P, ev, sol) -> dict:
    return {"width": int(width), "alpha": P / width,
            "error": float(ev["error"]), "bias2": float(ev["bias2"]),
            "variance": float(ev["variance"]), "Q_summary": _q_summary(arch, sol.Q),
            "converged": bool(getattr(sol, "converged", True)),
            "solution": _solution_dict(sol)}


def _per_axis(value, ndim):
    """A filter or stride per axis: one number serves every axis (a square filter in 2D)."""
    if value is None:
        return None
    v = (value,) if np.ndim(value) == 0 else tuple(value)
    return v * ndim if len(v) == 1 else v


class Prepared(NamedTuple):
    """A loaded task with its geometry and widths: everything checked before any fit."""

    task: "object"
    geometry: "object"
    widths: list
    task_options: dict
    seconds: float
    spec: str
    seed: int


def prepare(task: str = DEFAULTS["task"], *, P: int = DEFAULTS["P"],
            P_test: int = DEFAULTS["P_test"], widths=None, input_shape=None,
            filter_size=DEFAULTS["filter_size"], stride=None, boundary=DEFAULTS["boundary"],
            seed: int = DEFAULTS["seed"], task_options: Optional[dict] = None) -> Prepared:
    """Load the task and build the patch geometry (arguments as in :func:`run`).

    Every user error (unknown task, missing or corrupt files, a geometry that does not fit
    the input, bad widths) surfaces here as a ``ValueError``/``TypeError``, before any
    solver runs.
    """
    from .. import data
    from ..geometry import PatchGeometry

    t0 = time.perf_counter()
    if widths is None:
        widths = default_widths(P)
    widths = list(widths)
    for w in widths:
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"widths must be positive integers, got {widths}")
    if not widths:
        raise ValueError("widths must not be empty")
    widths = sorted({int(w) for w in widths})
    task_options = dict(task_options or {})
    is_synthetic = not (task.startswith("mnist") or task.startswith("cifar10"))
    if input_shape is None and is_synthetic:
        input_shape = DEFAULTS["input_shape"]
    if input_shape is not None:
        ndim = 1 if np.ndim(input_shape) == 0 else len(tuple(input_shape))
        filter_size, stride = _per_axis(filter_size, ndim), _per_axis(stride, ndim)
    loaded = data.load_task(task, P, P_test, seed, input_shape=input_shape,
                            filter_size=filter_size, stride=stride, boundary=boundary,
                            **task_options)
    info = loaded.info
    shape = tuple(info["input_shape"])
    geometry = PatchGeometry(shape, _per_axis(filter_size, len(shape)),
                             _per_axis(stride, len(shape)), channels=info["channels"],
                             boundary=boundary, layout=info["layout"])
    return Prepared(loaded, geometry, widths, task_options, time.perf_counter() - t0, task,
                    int(seed))


# -- the experiment ------------------------------------------------------------------------------
def run(task: str = DEFAULTS["task"], *, P: int = DEFAULTS["P"], P_test: int = DEFAULTS["P_test"],
        widths: Optional[Sequence[int]] = None, temperature: float = DEFAULTS["temperature"],
        activation: str = DEFAULTS["activation"], lambda0: float = DEFAULTS["lambda0"],
        lambda1: float = DEFAULTS["lambda1"], input_shape=None, filter_size=DEFAULTS["filter_size"],
        stride=None, boundary: str = DEFAULTS["boundary"], seed: int = DEFAULTS["seed"],
        task_options: Optional[dict] = None, architectures: Sequence[str] = ARCHITECTURES,
        executor=None, langevin: Optional[dict] = None,
        progress: Optional[Callable[[int], Progress]] = None,
        prepared: Optional["Prepared"] = None) -> dict:
    """Run the FC-versus-CNN experiment and return every number and setting.

    Parameters
    ----------
    task : str
        A :func:`lkr.data.load_task` spec: ``"local-teacher"`` (default),
        ``"gaussian-linear"``, ``"mnist:DIR"``, ``"cifar10:DIR"``.
    P, P_test : int
        Training and test set sizes.
    widths : sequence of int, optional
        Hidden widths N (FC units, CNN/LCN channels); default :func:`default_widths` (P).
    temperature, activation, lambda0, lambda1
        The Bayesian posterior (docs/theory.md section 2).
    input_shape : tuple of int, optional
        Synthetic tasks: ``(N0,)`` or ``(H, W)``, default ``(64,)``; image tasks: taken
        from the images.
    filter_size, stride, boundary
        The patch geometry of CNN and LCN (and of the local teacher).
    seed : int
        Seeds the task (and Langevin sampling).
    task_options : dict, optional
        Extra :func:`lkr.data.load_task` arguments (``classes``, ``grayscale``,
        ``downsample``, ``teacher_channels``, ``noise``).
    architectures : sequence of {"fc", "cnn", "lcn"}
    executor : concurrent.futures.Executor, optional
        Fit every (architecture, width) independently through :func:`lkr.theory.sweep` on
        this executor (e.g. from :func:`lkr.distributed.executor`) instead of the serial,
        warm-started path.
    langevin : dict, optional
        When given, also sample the networks by Langevin dynamics at every width
        (:func:`lkr.train.sampled_test_error`); keys ``chains``, ``steps``, ``burn_in``,
        ``lr``.
    progress : callable, optional
        ``progress(total) -> Progress``; called once with the number of steps.
    prepared : Prepared, optional
        The output of :func:`prepare`; then the task arguments above (task, P, P_test,
        widths, input_shape, filter_size, stride, boundary, seed, task_options) are taken
        from it.

    Returns
    -------
    dict
        ``settings``, ``task``, ``versions``, ``infinite_width``, ``finite_width``
        (per architecture, a row per width), ``langevin`` (or None), ``summary``, ``timing``.
    """
    t_start = time.perf_counter()
    architectures = tuple(architectures)
    for a in architectures:
        if a not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {a!r}; choose from {ARCHITECTURES}")
    if prepared is None:
        prepared = prepare(task, P=P, P_test=P_test, widths=widths, input_shape=input_shape,
                           filter_size=filter_size, stride=stride, boundary=boundary, seed=seed,
                           task_options=task_options)
    X, y, X_test, y_test, info = prepared.task
    geometry, widths = prepared.geometry, prepared.widths
    task_options = prepared.task_options
    task, seed = prepared.spec, prepared.seed  # what the data were made with
    P, P_test = len(y), len(y_test)
    t_data = prepared.seconds
    common = dict(temperature=temperature, activation=activation, lambda0=lambda0,
                  lambda1=lambda1)

    n_lang = len(widths) * len(architectures) if langevin else 0
    bar = progress(3 + len(widths) * len(architectures) + n_lang) if progress else None

    def tick(label):
        if bar is not None:
            bar.step(label)

    def status(label):
        if bar is not None:
            bar.show(label)

    from ..theory import GPTheory

    timing = {"data_s": t_data}
    # -- infinite width: Gaussian processes with Q = I (and the pooled one, for context)
    t0 = time.perf_counter()
    infinite = {}
    for key, kernel, label in (("fc", "fc", "GP with the FC kernel (Qbar = 1)"),
                               ("cnn", "cnn", "GP with the CNN kernel K_R(I) (Qbar = I)"),
                               ("pooled", "pooled", "GP with the pooled kernel K_R(11^T/Np) "
                                                    "(global average pooling)")):
        gp = GPTheory(kernel=kernel, geometry=None if kernel == "fc" else geometry, **common)
        gp.fit(X, y)
        ev = gp.evaluate(X_test, y_test)
        infinite[key] = {"kernel": kernel, "description": label, "error": float(ev["error"]),
                         "bias2": float(ev["bias2"]), "variance": float(ev["variance"])}
        tick(f"infinite width, {kernel} kernel")
    infinite["lcn"] = dict(infinite["cnn"], description="same as the CNN's: with Qbar = I the "
                           "LCN and CNN kernels coincide (only the diagonal K_ii enters)",
                           same_as="cnn")
    timing["infinite_width_s"] = time.perf_counter() - t0

    # -- finite width
    finite = {}
    t0 = time.perf_counter()
    if executor is None:
        mode = "serial, warm-started along the widths (Theory.fit_path)"
        for arch in architectures:
            # Widest first: the solution at large N is close to Qbar = I, a good start for
            # the next narrower width.
            order = sorted(widths, reverse=True)
            base = _make_theory(order[0], arch=arch, geometry=geometry, **common)
            status(f"{_NAMES[arch]}: solving at {len(order)} widths (warm-started) ...")
            rows = []
            for w, th in zip(order, base.fit_path(X, y, order)):
                rows.append(_row(arch, w, P, th.evaluate(X_test, y_test), th.solution))
                tick(f"{_NAMES[arch]} N={w}")
            finite[arch] = sorted(rows, key=lambda r: r["width"])
    else:
        mode = "independent fits on an executor (lkr.theory.sweep)"
        status(f"solving {len(widths) * len(architectures)} (architecture, width) points on "
               "the executor ...")
        finite = _sweep_finite(architectures, widths, X, y, X_test, y_test, P, executor, tick,
                               geometry=geometry, **common)
    timing["finite_width_s"] = time.perf_counter() - t0

    # -- Langevin sampling of the actual networks
    sampled = None
    if langevin:
        from ..train import sampled_test_error

        t0 = time.perf_counter()
        sampled = {}
        for arch in architectures:
            rows = []
            for w in widths:
                status(f"Langevin {_NAMES[arch]} N={w} ...")
                r = sampled_test_error(arch, width=w, geometry=geometry, X=X, y=y, X_test=X_test,
                                       y_test=y_test, seed=seed, **common, **langevin)
                rows.append(dict(_jsonable(r), width=w))
                tick(f"Langevin {_NAMES[arch]} N={w}")
            sampled[arch] = rows
        timing["langevin_s"] = time.perf_counter() - t0

    summary = {}
    for arch in architectures:
        inf = infinite[arch]["error"]
        rows = finite[arch]
        best = min(rows, key=lambda r: r["error"])
        narrow = rows[0]
        summary[arch] = {
            "infinite_error": inf, "best_width": best["width"], "best_error": best["error"],
            "narrowest_width": narrow["width"], "narrowest_error": narrow["error"],
            "beats_infinite_at": [r["width"] for r in rows if r["error"] < inf],
            "beats_infinite": best["error"] < inf,
            "relative_change_at_narrowest": (narrow["error"] - inf) / inf}
    timing["total_s"] = time.perf_counter() - t_start

    settings = dict(task=task, P=int(P), P_test=int(P_test), widths=widths,
                    temperature=float(temperature), activation=activation,
                    lambda0=float(lambda0), lambda1=float(lambda1), seed=int(seed),
                    geometry=geometry.to_dict(), num_patches=geometry.num_patches,
                    patch_size=geometry.patch_size, input_size=geometry.input_size,
                    architectures=list(architectures), task_options=_jsonable(task_options),
                    mode=mode, langevin=_jsonable(langevin) if langevin else None)
    return _jsonable(dict(experiment="fc-vs-cnn", settings=settings, task=info,
                          versions=_versions(), infinite_width=infinite, finite_width=finite,
                          langevin=sampled, summary=summary, timing=timing,
                          created=time.strftime("%Y-%m-%dT%H:%M:%S%z")))


def _make_theory(width, *, arch, geometry, **common):
    """The theory of one architecture at one width (module level, so it pickles)."""
    from ..theory import CNNTheory, FCTheory, LCNTheory

    if arch == "fc":
        return FCTheory(width=width, **common)
    return {"cnn": CNNTheory, "lcn": LCNTheory}[arch](geometry=geometry, width=width, **common)


class _KeepQ:
    """A theory whose fit returns a solution summary carrying the whole Qbar, so that the
    sweep's rows hold every number (its own summary keeps only a digest of a matrix)."""

    def __init__(self, width, **kwargs):
        self.theory = _make_theory(width, **kwargs)

    def fit(self, X, y):
        return _SolutionWithQ(self.theory.fit(X, y))

    def evaluate(self, X_test, y_test):
        return self.theory.evaluate(X_test, y_test)


class _SolutionWithQ:
    def __init__(self, sol):
        self.sol = sol
        self.converged = sol.converged
        self.grad_norm = sol.grad_norm
        self.action = sol.action
        self.iterations = sol.iterations

    def summary(self):
        d = dict(self.sol.summary())
        d["Q"] = _jsonable(self.sol.Q)
        d["solution"] = _solution_dict(self.sol)
        return d


class _RowSolution:
    """What :func:`_row` reads from a solution, rebuilt from a sweep row."""

    def __init__(self, row: dict):
        self.Q = np.asarray(row["Q"], dtype=np.float64)
        self.converged = bool(row.get("converged", True))
        self._d = row.get("solution") or {k: v for k, v in row.items()
                                          if k not in ("error", "bias2", "variance")}

    def to_dict(self):
        return self._d


def _sweep_finite(architectures, widths, X, y, X_test, y_test, P, executor, tick, **kwargs):
    """Every (architecture, width) fitted independently through :func:`lkr.theory.sweep`,
    all points submitted at once so that the executor runs them side by side."""
    from functools import partial

    from ..theory.sweep import sweep

    grid = [{"arch": a, "width": w} for a in architectures for w in widths]
    rows = sweep(partial(_KeepQ, **kwargs), grid, X, y, X_test, y_test, executor=executor)
    finite = {a: [] for a in architectures}
    for point, r in zip(grid, rows):
        arch, w = point["arch"], point["width"]
        finite[arch].append(_row(arch, w, P, r, _RowSolution(r)))
        tick(f"{_NAMES[arch]} N={w}")
    return finite


# -- presentation --------------------------------------------------------------------------------
def _fmt(v, w=9):
    return f"{v:{w}.4f}"


def format_table(results: dict) -> str:
    """The results as plain text: one block per architecture, widths ascending, N = inf last."""
    s = results["settings"]
    g = s["geometry"]
    lines = []
    shape = "x".join(map(str, g["input_shape"]))
    lines.append(f"FC vs CNN vs LCN on {s['task']}: P = {s['P']}, P_test = {s['P_test']}, "
                 f"T = {s['temperature']:g}, {s['activation']}, lambda0 = {s['lambda0']:g}, "
                 f"lambda1 = {s['lambda1']:g}, seed = {s['seed']}")
    lines.append(f"input {shape} x {g['channels']} ch, filter "
                 f"{'x'.join(map(str, g['filter_size']))}, stride "
                 f"{'x'.join(map(str, g['stride']))}, {g['boundary']}: Np = {s['num_patches']} "
                 f"patches of M = {s['patch_size']}")
    lines.append("test error = bias^2 + variance (mean over the test set); alpha = P / N")
    lines.append("Qbar columns: FC the scalar; CNN the mean diagonal and mean off-diagonal entry; "
                 "LCN the mean and range of the diagonal")
    inf = results["infinite_width"]
    lang = results.get("langevin") or {}
    for arch in s["architectures"]:
        rows = results["finite_width"][arch]
        lines.append("")
        if arch == "fc":
            title = "FC   (global renormalisation: one scalar Qbar)"
            qhead = f"{'Qbar':>9}"
        elif arch == "cnn":
            title = "CNN  (local renormalisation: Qbar_ij over patch pairs)"
            qhead = f"{'Qbar_ii':>9}{'Qbar_i!=j':>11}"
        else:
            title = "LCN  (local, diagonal: Qbar_ii only)"
            qhead = f"{'Qbar_ii':>9}{'min-max':>15}"
        lhead = f"{'sampled':>18}" if arch in lang else ""
        lines.append(title)
        lines.append(f"{'N':>7}{'alpha':>8}{'error':>9}{'bias^2':>9}{'variance':>9}  {qhead}{lhead}")
        by_w = {r["width"]: r for r in lang.get(arch, [])}
        for r in rows:
            q = r["Q_summary"]
            if arch == "fc":
                qs = _fmt(q["Qbar"])
            elif arch == "cnn":
                qs = _fmt(q["diag_mean"]) + f"{q['offdiag_mean']:11.5f}"
            else:
                qs = _fmt(q["diag_mean"]) + f"  {q['diag_min']:.3f}-{q['diag_max']:.3f}".rjust(15)
            flag = "" if r.get("converged", True) else "  (not converged)"
            ls = ""
            if r["width"] in by_w:
                b = by_w[r["width"]]
                ls = f"{b['error']:10.4f} +- {b['error_se']:.4f}"
            lines.append(f"{r['width']:>7}{r['alpha']:>8.3g}{r['error']:>9.4f}{r['bias2']:>9.4f}"
                         f"{r['variance']:>9.4f}  {qs}{ls}{flag}")
        i = inf[arch]
        note = {"fc": "GP, FC kernel", "cnn": "GP, CNN kernel, Qbar = I",
                "lcn": "= CNN's limit (Qbar = I)"}[arch]
        lines.append(f"{'inf':>7}{0:>8}{i['error']:>9.4f}{i['bias2']:>9.4f}{i['variance']:>9.4f}"
                     f"  {note}")
    p = inf.get("pooled")
    if p:
        lines.append("")
        lines.append(f"for context, infinite-width CNN with global average pooling (Qbar = 11^T/Np): "
                     f"error {p['error']:.4f} (bias^2 {p['bias2']:.4f}, variance {p['variance']:.4f})")
    lines.append("")
    for arch in s["architectures"]:
        sm = results["summary"][arch]
        verdict = ("below" if sm["best_error"] < sm["infinite_error"] else "not below")
        lines.append(f"{_NAMES[arch]:>4}: best finite-width error {sm['best_error']:.4f} at "
                     f"N = {sm['best_width']}, {verdict} its infinite-width {sm['infinite_error']:.4f}; "
                     f"at N = {sm['narrowest_width']}: {sm['narrowest_error']:.4f} "
                     f"({100 * sm['relative_change_at_narrowest']:+.1f}%)")
    return "\n".join(lines)


def save_results(results: dict, out_dir) -> str:
    """Write ``results.json`` into out_dir (created if needed); returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1, allow_nan=False)
        fh.write("\n")
    return path


def plot_results(results: dict, path) -> str:
    """Test error, bias^2 and variance against width (log axis), with the N = inf lines.

    Raises
    ------
    ImportError
        When matplotlib is missing, with the install hint ``pip install lkr[plot]``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("matplotlib is not installed; pip install lkr[plot] for the plot") from None
    s = results["settings"]
    colors = {"fc": "tab:blue", "cnn": "tab:red", "lcn": "tab:green"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panels = (("error", "test error = bias$^2$ + variance"),
              ("relative", "test error relative to N = $\\infty$ (%)"),
              ("bias2", "bias$^2$"), ("variance", "variance"))
    for ax, (key, title) in zip(axes.flat, panels):
        for arch in s["architectures"]:
            rows = results["finite_width"][arch]
            inf = results["infinite_width"][arch]
            widths = [r["width"] for r in rows]
            if key == "relative":
                vals = [100 * (r["error"] / inf["error"] - 1) for r in rows]
                ref = 0.0
            else:
                vals = [r[key] for r in rows]
                ref = inf[key]
            ax.plot(widths, vals, "o-", color=colors[arch], label=_NAMES[arch])
            # LCN's limit is the CNN's: drawn dotted over the CNN's dashes
            shared = arch == "lcn" and "cnn" in s["architectures"]
            if key != "relative" or arch == s["architectures"][0]:
                ax.axhline(ref, ls=":" if shared else "--",
                           color="gray" if key == "relative" else colors[arch], lw=1.2,
                           label=None if key == "relative" else
                           f"{_NAMES[arch]}, N = $\\infty$" + (" (= CNN's)" if shared else ""))
            lang = (results.get("langevin") or {}).get(arch)
            if lang and key == "error":
                ax.errorbar([r["width"] for r in lang], [r["error"] for r in lang],
                            yerr=[r["error_se"] for r in lang], fmt="s", mfc="none",
                            color=colors[arch], capsize=3, label=f"{_NAMES[arch]}, Langevin")
        ax.set_xscale("log")
        ax.set_xlabel("width N (FC units; CNN, LCN channels)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=8, ncol=2)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"{s['task']}: P = {s['P']}, T = {s['temperature']:g}, {s['activation']}, "
                 f"Np = {s['num_patches']} patches of M = {s['patch_size']} "
                 "(dashed: infinite-width GP)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
