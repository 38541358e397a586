"""ImportReport and describe, re-exported: they live in ``attnres.import_report``."""

from ..import_report import ImportReport, describe

__all__ = ["ImportReport", "describe"]
