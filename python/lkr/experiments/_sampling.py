"""The sampling phase of ``lkr fc-vs-cnn --langevin``: the networks sampled width by width,
each finished width handed on at once (so that it is saved as it goes), and an estimate of
the phase's time before it starts.

The estimate samples a few steps of the narrowest and of the widest network of each
architecture (the same sampler and settings as the run), measures the set-up and the time
per step of each, and interpolates linearly in the width between them: a step costs about
a + b x width (chains x P x width for FC, chains x P x Np x width for CNN and LCN, plus
fixed costs). On a busy machine it moves with the load; it is an order of magnitude for
planning (minutes or hours), not a promise.
"""
from __future__ import annotations

import time

from .. import _interrupt
from .._io import describe
from .._json import jsonable
from ..train._arch import NAMES as _NAMES
from ..train._arch import sampled_test_error
from .report import format_table, save_results

__all__ = ["LangevinFailed", "sample_widths", "estimate_seconds", "format_duration",
           "checkpointer", "PROBE_STEPS"]

#: steps (or sweeps) of the probe run per architecture
PROBE_STEPS = 10


class LangevinFailed(FloatingPointError):
    """Langevin sampling diverged; ``results``: the theory and the sampled rows so far."""

    def __init__(self, results, message):
        super().__init__(message)
        self.results = results


def _length_key(langevin):
    return "sweeps" if langevin.get("sampler") == "collapsed" else "steps"


def sample_widths(sampled, runs, data, geoms, common, langevin, seed, bar, on_row=None):
    """Sample every (architecture, width) of ``runs`` in turn, rows into sampled[arch];
    ``on_row()`` after each finished one.

    A run cut short by Ctrl-C or SIGTERM is dropped (its few samples are no estimate) and
    the interrupt goes on to stop the whole job.
    """
    X, y, X_test, y_test = data
    for arch, w in runs:
        bar.status(f"Langevin {_NAMES[arch]} N={w} ...")
        r = sampled_test_error(arch, width=w, geometry=geoms[arch], X=X, y=y, X_test=X_test,
                               y_test=y_test, seed=seed, **common,
                               **{"sampler": "langevin", **langevin})
        if r["interrupted"] or _interrupt.requested():
            raise KeyboardInterrupt
        sampled[arch].append(dict(jsonable(r), width=w))
        bar.tick(f"Langevin {_NAMES[arch]} N={w}")
        if on_row is not None:
            on_row()


def _probe(arch, w, data, geoms, common, langevin, seed, bar):
    """(seconds per step, set-up seconds) of a :data:`PROBE_STEPS`-step run of arch at w."""
    key = _length_key(langevin)
    X, y, X_test, y_test = data
    if bar is not None:
        bar.status(f"timing {PROBE_STEPS} sampling steps of {_NAMES[arch]} N={w} ...")
    t0 = time.perf_counter()
    r = sampled_test_error(arch, width=w, geometry=geoms[arch], X=X, y=y, X_test=X_test,
                           y_test=y_test, seed=seed, **common,
                           **{"sampler": "langevin", **langevin, "burn_in": 0,
                              key: PROBE_STEPS})
    if r["interrupted"] or _interrupt.requested():
        raise KeyboardInterrupt
    wall = time.perf_counter() - t0
    speed = r.get("steps_per_s") or r.get("sweeps_per_s")
    per_step = 1.0 / speed if speed and speed > 0 else wall / PROBE_STEPS
    return per_step, max(0.0, wall - PROBE_STEPS * per_step)


def estimate_seconds(runs, data, geoms, common, langevin, seed, bar=None) -> dict:
    """Seconds the sampling of ``runs`` [(arch, width), ...] should take on this machine now.

    Returns ``{"seconds": total, "per_run": {"FC N=50": s, ...}, "probe_steps": k,
    "probe_seconds": s}``: :data:`PROBE_STEPS`-step runs at each architecture's narrowest
    and widest width give the set-up and the time per step there, interpolated linearly in
    the width in between, times the run length (the module docstring says how far to trust
    it; the probes cost about 2 k / length of the run).
    """
    length = int(langevin.get(_length_key(langevin)) or 0)
    t_start = time.perf_counter()
    per_run = {}
    for arch in dict.fromkeys(a for a, _ in runs):
        ws = sorted(w for a, w in runs if a == arch)
        lo = _probe(arch, ws[0], data, geoms, common, langevin, seed, bar)
        hi = lo if len(ws) == 1 else _probe(arch, ws[-1], data, geoms, common, langevin,
                                            seed, bar)
        for w in ws:
            t = 0.0 if ws[-1] == ws[0] else (w - ws[0]) / (ws[-1] - ws[0])
            step, setup = ((1 - t) * a + t * b for a, b in zip(lo, hi))
            per_run[f"{_NAMES[arch]} N={w}"] = setup + step * length
    return {"seconds": sum(per_run.values()), "per_run": per_run, "probe_steps": PROBE_STEPS,
            "probe_seconds": time.perf_counter() - t_start}


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"3.4 h"``, ``"2.1 days"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def checkpointer(out, note):
    """The ``checkpoint(partial, phase)`` of ``lkr fc-vs-cnn --langevin`` (see
    :func:`lkr.experiments.fc_vs_cnn.run`): saves ``results.json`` into ``out`` (when given)
    at every call, and before any sampling prints the theory table on stdout and the time
    estimate through ``note``."""
    def checkpoint(partial, phase):
        if out is not None:
            try:
                save_results(partial, out)
            except OSError as exc:  # said now; the final write reports it again, exit 2
                note(f"cannot write results.json in {out} yet: {describe(exc)}")
        if phase == "theory":
            print(format_table(partial), flush=True)
            est = partial["timing"]["sampling_estimate"]
            note(f"sampling {len(est['per_run'])} networks: about "
                 f"{format_duration(est['seconds'])} on this machine now (from "
                 f"{est['probe_steps']}-step probes)"
                 + ("; each finished width goes to results.json" if out else ""))

    return checkpoint
