"""JSON sent by callers, refused as malformed however it is malformed.

Python's json parser answers a document nested deeper than the interpreter's recursion limit (`[` repeated 100,000
times, a few hundred kilobytes) with a RecursionError, not the ValueError of every other malformed document, so code
that refuses malformed JSON by catching ValueError answered it with a 500. Every JSON a caller sends is parsed here:
by `json_parse`, or by Django REST framework through `JSONParser` (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES).
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

NESTED_TOO_DEEPLY = "the JSON is nested too deeply"


def json_parse(text: str | bytes) -> Any:
    """json.loads, refusing a document nested too deeply with a ValueError, as it refuses any other malformed one."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(NESTED_TOO_DEEPLY) from None


class JSONParser(parsers.JSONParser):
    """Django REST framework's JSON parser, answering a document nested too deeply with its 400 parse error."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {NESTED_TOO_DEEPLY}.") from None
