"""Structured logs: ``--log-format json`` writes one JSON object per line, with the job id when there is one.

Why: with several front ends and workers on several hosts, an operator follows one job through the
logs of all of them by its id; a log shipper reads JSON lines without a parser per message format.
Log calls pass the id as ``extra={"job_id": ...}``; the text format shows it as ``job_id=...``.
"""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "job_id"?, "exc"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            out["job_id"] = job_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """uvicorn's ``INFO:     message`` look, with `` job_id=...`` appended when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname + ':':<9} {record.getMessage()}"
        job_id = getattr(record, "job_id", None)
        if job_id and f"{job_id}" not in line:
            line += f" job_id={job_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def formatter_config(log_format: str) -> dict:
    """A logging.config ``formatters`` entry for ``log_format`` ("text" or "json")."""
    cls = JsonFormatter if log_format == "json" else TextFormatter
    return {"()": f"{cls.__module__}.{cls.__name__}"}
