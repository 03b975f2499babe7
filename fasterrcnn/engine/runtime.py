"""Old path of :mod:`fasterrcnn.export.runtimes`."""

from fasterrcnn.export.runtimes import BACKENDS, ExportedModel, RuntimeLoadError

__all__ = ["BACKENDS", "ExportedModel", "RuntimeLoadError"]
