"""Reports on a finished build: an HTML page with PNG plots, a terminal summary, the manifest as JSON."""

from align_data.report.summary import manifest_summary
from align_data.report.write import Report, write_report

__all__ = ["Report", "manifest_summary", "write_report"]
