"""Structured logs: JSON lines on stdout, each carrying the tool call it belongs to (request id, the caller's
pseudonym, client, tool). The call context lives in a context variable set by the invocation path."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from pythonjsonlogger.json import JsonFormatter

call_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("call_context", default=None)


class CallContextFilter(logging.Filter):
    """Adds the current call's fields to every record logged while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = call_context.get()
        if context:
            for key, value in context.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


class Formatter(JsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            *args,  # noqa: B026 - the base class's own positional arguments, if any
            **kwargs,
        )
