"""Log lines for a service: plain text for people, or one JSON object per line for a collector
(journald, Loki, Elasticsearch), with the fields a program can filter on.

A JSON line has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, plus the
structured fields the caller attached (``extra={"event": "round", "round": 12, …}``) and, for
an exception, ``error`` (its class) and ``code`` (an hvballoon error's code). Secrets never
reach a log line: hvballoon logs redacted URIs only, and as a second line of defence any
``scheme://user:password@`` left in a message or a field is redacted here.

>>> import logging, io, json
>>> stream = io.StringIO()
>>> log = configure_logging("json", stream=stream, logger="hvballoon.example")
>>> log.warning("round failed", extra={"event": "round_failed", "round": 3})
>>> line = json.loads(stream.getvalue())
>>> line["level"], line["message"], line["event"], line["round"]
('warning', 'round failed', 'round_failed', 3)
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import IO, Any, Literal

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging", "scrub"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

#: The attributes every LogRecord has: anything else was passed in ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s@/]*@")


def scrub(text: str) -> str:
    """``text`` with any password in a ``scheme://user:password@host`` redacted.

    >>> scrub("cannot reach esxi://root:hunter2@esx01 now")
    'cannot reach esxi://root:***@esx01 now'
    """
    return _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _plain(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = type(exc).__name__
            code = getattr(exc, "code", None)
            if isinstance(code, str):
                out["code"] = code
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(
    fmt: LogFormat = "text",
    *,
    level: int = logging.INFO,
    stream: IO[str] | None = None,
    logger: str = "hvballoon",
) -> logging.Logger:
    """Send ``logger``'s records (hvballoon's, by default) to ``stream`` (stderr) in ``fmt``.

    Replaces the handler an earlier call installed, so calling it again switches the format.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; accepted: {', '.join(LOG_FORMATS)}")
    target = logging.getLogger(logger)
    for h in list(target.handlers):
        if getattr(h, "_hvballoon_service", False):
            target.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._hvballoon_service = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    target.addHandler(handler)
    target.setLevel(level)
    return target
