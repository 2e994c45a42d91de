"""Logs: one JSON object per line (or text for a terminal), secrets masked.

`configure_logging` installs one handler on the root logger, so every line on the stream
has the same format, a third-party library's included; the ``monitord``, ``connectors``
and ``detectors`` loggers log at the configured level, everything else at warning or
above. A JSON line holds ``time`` (RFC 3339 UTC), ``level``, ``logger``, ``message``, the
context passed as ``extra`` (``model``, ``partition``, ``offset``, ...) and, for an
exception, ``exc_info`` as one string::

    log.warning("bad record", extra={"model": "fraud", "partition": 3, "offset": 41})
    {"time": "2026-11-23T12:00:00.123Z", "level": "warning", "logger": "monitord.daemon",
     "message": "bad record", "model": "fraud", "partition": 3, "offset": 41}

Before anything is written, `Redaction` masks every value given to `register_secret` and
the credentials, path, query and fragment of every URL (a webhook URL's path is its
secret), in the message, the exception text and string context fields alike.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import sys
import threading
from collections.abc import Mapping
from typing import IO, Literal

from monitord.clock import iso
from monitord.config import SECRET_ENV, Config

PACKAGES = ("monitord", "connectors", "detectors")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
MASK = "***"

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?P<userinfo>[^\s/?#]*@)?"  # greedy: up to the last "@", should a password hold one
    r"(?P<host>[^\s/?#]*)"
    r"(?P<rest>[/?#][^\s\"'<>]*)?"
)

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in a log line from now on (empty values are
    ignored: they cannot leak)."""
    global _secret_pattern  # noqa: PLW0603 (one process-wide list, like logging's own state)
    if not value:
        return
    with _secrets_lock:
        _secrets.add(value)
        # Longest first: a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_config_secrets(config: Config, environ: Mapping[str, str]) -> None:
    """Register the secrets a configuration uses: the Kafka SASL password and the value of
    every receiver's ``secret_env`` variable."""
    if config.kafka.sasl_password is not None:
        register_secret(config.kafka.sasl_password.get_secret_value())
    for variable in SECRET_ENV.values():
        register_secret(environ.get(variable, ""))
    for receiver in config.receivers:
        if receiver.secret_variable:
            register_secret(environ.get(receiver.secret_variable, ""))


def redact(text: str) -> str:
    """``text`` with registered secrets and URL credentials, paths and queries masked."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL.sub(_mask_url, text)
    return text


def _mask_url(match: re.Match[str]) -> str:
    userinfo = f"{MASK}@" if match["userinfo"] else ""
    rest = f"/{MASK}" if match["rest"] and match["rest"] != "/" else (match["rest"] or "")
    return f"{match['scheme']}{userinfo}{match['host']}{rest}"


class Redaction(logging.Filter):
    """Masks secrets in a record before any handler formats it (see `redact`)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self._formatter = formatter  # renders the exception text, once, to redact it

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _context(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _context(record).items():
            line.setdefault(key, _jsonable(value))  # the fields above win over context
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [key=value ...]`` and the traceback, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in _context(record).items())
        line = (
            f"{iso(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
            + (f" [{context}]" if context else "")
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return redact(line)  # context values of any type are rendered as text here


def configure_logging(
    format: Literal["json", "text"], level: str, stream: IO[str] | None = None
) -> logging.Handler:
    """Log to ``stream`` (default: standard error) in ``format`` at ``level``.

    Calling it again replaces the handler it installed before; other handlers on the root
    logger are left alone. Returns the installed handler.
    """
    if format not in ("json", "text"):
        raise ValueError(f"format must be 'json' or 'text', got {format!r}")
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    formatter = JsonFormatter() if format == "json" else TextFormatter()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    handler.addFilter(Redaction(formatter))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # Libraries (kafka-python, urllib3) stay at warning: their debug output would drown ours.
    root.setLevel(max(numeric, logging.WARNING))
    for package in PACKAGES:
        logging.getLogger(package).setLevel(numeric)
    return handler


_HANDLER_NAME = "monitord"


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS}


def _jsonable(value: object) -> object:
    """A context value as JSON: numbers (numpy's too) stay numbers, containers stay
    containers, anything else becomes its redacted text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)  # JSON has no NaN
    if isinstance(value, Mapping):
        return {redact(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return redact(str(value))


__all__ = [
    "JsonFormatter",
    "Redaction",
    "TextFormatter",
    "configure_logging",
    "redact",
    "register_config_secrets",
    "register_secret",
]
