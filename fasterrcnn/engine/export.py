"""Old path of :func:`fasterrcnn.export.export_model` (as ``export``)."""

from fasterrcnn.export.graph import ExportFormat
from fasterrcnn.export.graph import export_model as export

__all__ = ["ExportFormat", "export"]
