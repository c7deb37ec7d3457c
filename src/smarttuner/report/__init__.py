"""The run report: one self-contained HTML page per run (`smarttuner report RUN`)."""

from smarttuner.report.build import build_report, write_report
from smarttuner.report.runs import find_runs, run_stages

__all__ = ["build_report", "find_runs", "run_stages", "write_report"]
