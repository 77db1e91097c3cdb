"""The CUDA engine: the functions of ``lkr._core`` for CuPy arrays (see :mod:`.kernels`)."""
from .kernels import *  # noqa: F401,F403
from .kernels import (  # noqa: F401 - the tests drive the launch planning
    __all__,
    _grid,
    _panels,
    _suffix,
    readout_backward,
    readout_forward,
)
