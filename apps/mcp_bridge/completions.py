"""Completions (completion/complete) for the arguments a person types: prompt arguments and the `score_id` of the
resource template score://{score_id}.

What completes an argument is declared with it (apps.mcp_bridge.prompts.PromptArgument.values): the caller's own
score ids (read for the authenticated caller, never anyone else's), the works of music21's bundled corpus, or the
values the tool argument it feeds declares in its schema.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from music21 import common, corpus

from apps.mcp_bridge.prompts import PromptArgument, Values, prompt_get

MAX_VALUES = 100  # the most values one completion may carry (the MCP specification's limit)

SCORE_URI_PREFIX = "score://"
SCORE_TEMPLATE = SCORE_URI_PREFIX + "{score_id}"


def completion(values: Sequence[str], *, total: int | None = None) -> types.Completion:
    """The first MAX_VALUES of `values`, with how many there are in all (`total`, when more than `values`)."""
    total = len(values) if total is None else total
    shown = list(values[:MAX_VALUES])
    return types.Completion(values=shown, total=total, has_more=total > len(shown))


def completion_source(
    ref: types.PromptReference | types.ResourceTemplateReference, name: str
) -> tuple[Values, PromptArgument | None]:
    """What completes argument `name` of `ref`, and the prompt argument it is (None for the template's score_id).
    An unknown prompt, template or argument is an MCP error (-32602) naming it."""
    if isinstance(ref, types.ResourceTemplateReference):
        if ref.uri != SCORE_TEMPLATE:
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown resource template {ref.uri!r}; the template is {SCORE_TEMPLATE}.",
                data={"uri": ref.uri},
            )
        if name != "score_id":
            raise MCPError(
                INVALID_PARAMS,
                f"The template {SCORE_TEMPLATE} has no variable {name!r}; it has score_id.",
                data={"uri": ref.uri, "argument": name},
            )
        return "scores", None
    prompt = prompt_get(ref.name)
    argument = prompt.argument(name)
    if argument is None:
        raise MCPError(
            INVALID_PARAMS,
            f"The prompt {ref.name!r} has no argument {name!r}; its arguments are: "
            f"{', '.join(a.name for a in prompt.arguments)}.",
            data={"prompt": ref.name, "argument": name},
        )
    return argument.values, argument


def declared_matching(argument: PromptArgument, typed: str) -> types.Completion:
    """The values the tool argument declares (its enum, or the examples of an open list) that start as typed."""
    typed = typed.strip().lower()
    return completion([value for value in declared_values(argument) if value.lower().startswith(typed)])


def declared_values(argument: PromptArgument) -> tuple[str, ...]:
    schema = argument.tool_schema()
    for option in (schema, *schema.get("anyOf", []), schema.get("items", {})):
        values: list[Any] = option.get("enum") or option.get("examples") or []
        if values:
            return tuple(str(value) for value in values)
    return ()


def corpus_matching(typed: str) -> types.Completion:
    """Corpus works that start as typed, by their whole path ('bach/bwv6') or below the composer ('bwv6')."""
    typed = typed.strip().lower()
    return completion(
        [
            work
            for work, lowered in corpus_works()
            if lowered.startswith(typed) or lowered.partition("/")[2].startswith(typed)
        ]
    )


@functools.cache
def corpus_works() -> tuple[tuple[str, str], ...]:
    """The works of music21's bundled corpus as import_score takes them ('bach/bwv66.6'), each with its lower-case
    form, in order. Read once per process: the corpus ships with music21 and cannot change while it runs, and
    listing it takes most of a second."""
    root = Path(common.getCorpusFilePath())
    works = {Path(path).relative_to(root).with_suffix("").as_posix() for path in corpus.getPaths()}
    return tuple((work, work.lower()) for work in sorted(works, key=str.lower))
