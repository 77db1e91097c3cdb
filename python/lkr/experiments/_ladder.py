"""The tasks of ``lkr nets-vs-linearized --tasks``: rungs of a difficulty ladder.

A task is ``NAME[@CLASSES]``: NAME one of :data:`lkr.data_groups.GROUP_TASKS` (``digits``,
``mnist:DIR``, ``fashion-mnist:DIR``, ``cifar10:DIR``), CLASSES the class groups, one output
each (``0:1``, ``3,8``, ``0,2,4,6,8:1,3,5,7,9``, ``all``; default ``all``). ``ladder`` stands
for :data:`LADDER`, the default: four rungs on scikit-learn's 8 x 8 digits, from easy to
hard. Tasks run in the order given (easy to hard by convention); each reports its measured
difficulty.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

__all__ = ["LADDER", "TaskSpec", "parse_tasks", "load", "P_TEST_MAX"]

#: the default ladder: 0 vs 1, 3 vs 8, even vs odd digits, the ten digits one-hot
LADDER = ("digits@0:1", "digits@3:8", "digits@0,2,4,6,8:1,3,5,7,9", "digits@all")

#: the default test set: the images left after the training set, at most this many
P_TEST_MAX = 500

_EVEN_ODD = ((0, 2, 4, 6, 8), (1, 3, 5, 7, 9))


class TaskSpec(NamedTuple):
    """One rung: the task name (``digits``, ``mnist:DIR``, ...), its class groups and a
    short label for tables and figures."""

    name: str
    classes: tuple
    label: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{':'.join(','.join(map(str, g)) for g in self.classes)}"


def _label(name, groups):
    base = name.partition(":")[0]
    if groups == _EVEN_ODD:
        what = "even vs odd"
    elif len(groups) == 10 and all(len(g) == 1 for g in groups):
        what = "10 classes"
    else:
        what = " vs ".join(",".join(map(str, g)) for g in groups)
    return f"{base} {what}"


def _one(text) -> TaskSpec:
    from ..data_groups import GROUP_TASKS
    from ..datasets_sklearn import parse_class_groups

    text = text.strip()
    name, at, classes = text.rpartition("@") if "@" in text else (text, "", "all")
    kind = name.partition(":")[0]
    if kind not in {t.partition(":")[0] for t in GROUP_TASKS}:
        raise ValueError(f"task must be NAME[@CLASSES] with NAME a classification task "
                         f"({', '.join(GROUP_TASKS)}), got {text!r}")
    if kind != "digits" and not name.partition(":")[2]:
        raise ValueError(f"task {kind!r} needs a local directory: '{kind}:DIR' (nothing is "
                         f"downloaded), got {text!r}")
    if kind == "digits" and ":" in name:
        raise ValueError(f"task 'digits' takes no ':' argument, got {text!r}")
    try:
        groups = parse_class_groups(classes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"task {text!r}: {exc}") from None
    return TaskSpec(name, groups, _label(name, groups))


def parse_tasks(items) -> list:
    """TaskSpecs from a string or a sequence of strings: each item ``NAME[@CLASSES]`` or
    ``ladder``; items may also be separated by ';' within a string. ValueError for an
    unknown task, bad classes, or the same task twice."""
    if isinstance(items, str):
        items = [items]
    texts = [p for item in items for p in str(item).split(";") if p.strip()]
    out = []
    for t in texts:
        out.extend(_one(x) for x in (LADDER if t.strip() == "ladder" else (t,)))
    if not out:
        raise ValueError("give at least one task (NAME[@CLASSES] or 'ladder')")
    seen = set()
    for s in out:
        if (s.name, s.classes) in seen:
            raise ValueError(f"task {s.spec!r} is given twice")
        seen.add((s.name, s.classes))
    return out


def load(spec: TaskSpec, P: int, P_test: Optional[int], seed: int, downsample: int = 1):
    """(X, g, X_test, g_test, info, D) of one rung. ``P_test=None``: the images left after
    the training set (digits) or the test images of the classes, at most :data:`P_TEST_MAX`.
    A size that does not fit says the largest that do."""
    from ..data_groups import available, load_groups

    n_train, n_test = available(spec.name, spec.classes)
    digits = spec.name == "digits"
    room = n_train - P if digits else n_test
    if P > n_train or (digits and room < 1):
        raise ValueError(f"{spec.label}: P = {P} training images asked for, but the classes "
                         f"have {n_train}" + (" to share with the test set" if digits else "")
                         + f"; use -P {n_train - 1 if digits else n_train} or less")
    if P_test is None:
        P_test = min(P_TEST_MAX, room)
    elif P_test > room:
        raise ValueError(f"{spec.label}: P_test = {P_test} test images asked for, but "
                         f"{'after P = ' + str(P) + ' training images ' if digits else ''}"
                         f"the classes have {room} left; use --P-test {room} or less "
                         f"(or leave it out: the rest, at most {P_TEST_MAX})")
    X, g, Xt, gt, info = load_groups(spec.name, P, P_test, seed, classes=spec.classes,
                                     downsample=downsample)
    return X, g, Xt, gt, info, int(info["groups"])
