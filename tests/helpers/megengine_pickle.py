"""Write state dicts as MegEngine's hub files are written: a pickle of a flat dict of numpy
arrays that names numpy 1.x globals (``numpy.core.*``), protocol 4 or 5.

The installed numpy (2.x) would write ``numpy._core`` names, so the pickler renames the
module of every global it writes; everything else is Python's own pickle machinery.
"""

from __future__ import annotations

import io
import pickle
import types
import warnings
from collections import OrderedDict

import numpy as np


class _Numpy1Pickler(pickle._Pickler):  # the pure-Python pickler lets us rename globals
    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", None)
        if module and module.startswith("numpy._core"):
            qualname = name or obj.__qualname__
            self.save(module.replace("numpy._core", "numpy.core"))
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)

    # The base class dispatches Python functions straight to its own save_global.
    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[types.FunctionType] = save_global  # type: ignore[assignment]


def numpy1_pickle_bytes(obj: object, protocol: int) -> bytes:
    """Bytes of ``obj`` pickled with numpy 1.x global names."""
    buffer = io.BytesIO()
    _Numpy1Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def megengine_pickle_bytes(state_dict: dict[str, np.ndarray], protocol: int = 4) -> bytes:
    """Bytes of ``OrderedDict(state_dict)`` pickled with numpy 1.x global names."""
    return numpy1_pickle_bytes(OrderedDict(state_dict), protocol)


def globals_in(data: bytes) -> set[str]:
    """The ``module.name`` globals a pickle asks for (loaded with the standard unpickler)."""
    found: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(f"{module}.{name}")
            return super().find_class(module, name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy 2 warns about numpy.core names
        Recorder(io.BytesIO(data)).load()
    return found
