"""The evaluation report: plots, the worst images and one self-contained HTML page."""

from fasterrcnn.evaluation.report.writer import (
    ReportError,
    ReportOptions,
    ReportSummary,
    write_report,
)

__all__ = ["ReportError", "ReportOptions", "ReportSummary", "write_report"]
