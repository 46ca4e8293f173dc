"""Importing a real business's history (DESIGN.md section 5: "a real deployment imports its history").

- :func:`import_folder`: the canonical layout, one CSV or Parquet file per table
  (``docs/IMPORT_FORMAT.md``), validated set-based in DuckDB and written all or nothing.
- :func:`import_telco`: the IBM Telco Customer Churn sample file, mapped to customers,
  subscriptions and customer attributes.
- :func:`add_import_command` / :func:`run_import`: the ``cli.py import`` command.
"""
from data.importers.canonical import import_folder
from data.importers.command import add_import_command, run_import
from data.importers.common import ImportReport
from data.importers.telco import import_telco

__all__ = ["ImportReport", "add_import_command", "import_folder", "import_telco", "run_import"]
