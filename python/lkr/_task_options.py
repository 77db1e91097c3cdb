"""Task options that apply to some tasks only (re-exported by :mod:`lkr.data`)."""
from __future__ import annotations

__all__ = ["TASK_OPTIONS", "check_task_options"]

#: The task options that apply to some tasks only, and those tasks.
TASK_OPTIONS = {
    "classes": ("mnist", "cifar10", "digits"),
    "downsample": ("mnist", "cifar10", "digits"),
    "color": ("cifar10",),
    "grayscale": ("cifar10",),
    "teacher_channels": ("local-teacher",),
    "noise": ("local-teacher",),
}


def check_task_options(task, **given) -> None:
    """Refuse options that the task would silently ignore.

    Parameters
    ----------
    task : str
        A task spec as :func:`load_task` takes it (``"mnist:DIR"``, ``"local-teacher"`` ...).
    **given
        The options the user set explicitly, by their :data:`TASK_OPTIONS` name
        (``color=True``, ``noise=0.1``, ``teacher_channels=8`` ...). ``None`` and ``False``
        mean "not given" and are always accepted.

    Raises
    ------
    ValueError
        One line naming the first option that does not apply and the tasks it applies to.
    TypeError
        For an option name not in :data:`TASK_OPTIONS`.
    """
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {task!r}")
    name = task.partition(":")[0]
    for option, value in given.items():
        if option not in TASK_OPTIONS:
            raise TypeError(f"unknown task option {option!r}; known: {', '.join(TASK_OPTIONS)}")
        if value is None or value is False or name in TASK_OPTIONS[option]:
            continue
        flag = "--" + option.replace("_", "-")
        tasks = TASK_OPTIONS[option]
        names = tasks[0] if len(tasks) == 1 else f"{', '.join(tasks[:-1])} and {tasks[-1]}"
        raise ValueError(f"{flag} ({option}={value!r}) applies only to the {names} task"
                         f"{'s' if len(tasks) > 1 else ''}; task {task!r} would ignore it")
