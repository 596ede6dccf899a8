"""Structured (JSON) logs. Only identifiers and technical facts are logged: never patient
names, IDs, birth dates or other patient data."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import warnings
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TextIO

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pynetdicom logs every PDU at INFO/DEBUG, including dataset identifiers: keep it quiet.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances" is routine for a sweep still running.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    # pydicom logs each of its warnings and also issues it as a Python warning: keep the
    # latter only, which _show_warning logs without the quoted values. (A filter, not a level:
    # importing pydicom sets its logger's level.)
    logging.getLogger("pydicom").addFilter(_errors_only)
    route_to_logging()


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    # Instead of warnings' own two-line text on stderr. pydicom warns about odd values and
    # quotes them ("Invalid value for VR PN: '...'"): a value may be patient data, so quoted
    # text is left out.
    logging.getLogger("py.warnings").warning(_QUOTED.sub("'…'", str(message)),
                                             extra={"category": category.__name__, "source": f"{filename}:{lineno}"})


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else None
    logging.getLogger("node").error("uncaught exception in a thread", extra={"thread_name": thread},
                                    exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]


def _process_exception(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("node").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def route_to_logging() -> None:
    """Python warnings and uncaught exceptions (main or any thread) go through logging, so the
    JSON log stays one object per line (a traceback becomes the "exc" field of one line)."""
    warnings.showwarning = _show_warning
    threading.excepthook = _thread_exception
    sys.excepthook = _process_exception

