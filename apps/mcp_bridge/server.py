"""The MCP server: the tool registry served over MCP, every call on the single invocation path.

Nothing here knows a tool by name. Tools are listed from `apps.tools.registry.TOOLS` and called through
`apps.tools.invocation.invoke_tool`; who is calling comes from the transport (a verified bearer token over HTTP,
the `--user` of `mcp_stdio`), passed in as `identify`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import functools
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import mcp_types as types
import pydantic_core
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS, INVALID_REQUEST

from apps.core.db import with_connections
from apps.core.errors import ApplicationError, UnknownTool
from apps.core.runtime import garbage_after_call
from apps.mcp_bridge.completions import (
    MAX_VALUES,
    SCORE_TEMPLATE,
    SCORE_URI_PREFIX,
    completion,
    completion_source,
    corpus_matching,
    declared_matching,
)
from apps.mcp_bridge.params import name_params_problems
from apps.mcp_bridge.prompts import PROMPTS, prompt_messages
from apps.security import scopes
from apps.tools import runner
from apps.tools.invocation import Caller, get_tool, invoke_tool
from apps.tools.models import SCORE_ID_PATTERN
from apps.tools.registry import TOOLS
from apps.tools.selectors import score_ids_starting

T = TypeVar("T")
Identify = Callable[[ServerRequestContext[Any, Any]], Awaitable[Caller]]

INSTRUCTIONS = (
    "music21 analysis and composition tools. Import a score first (import_score, e.g. source 'bach/bwv66.6' with "
    "source_type 'corpus'), then refer to it by its score_id. Your scores are also readable as resources "
    "score://{score_id} (MusicXML). The prompts (analyse_chorale, harmonise_melody, check_voice_leading...) lay out "
    "the common workflows step by step."
)
MUSICXML = "application/vnd.recordare.musicxml+xml"


async def in_worker(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (the ORM, music21) in a worker thread, never on the event loop.

    If the awaiting request is cancelled, it stops waiting at once; the thread finishes (or, for tools that
    watch `Caller.cancelled`, stops at its next step) on its own.
    """

    # Worker threads are reused: their connections are kept as Django's request cycle would keep them.
    return await anyio.to_thread.run_sync(
        functools.partial(with_connections, function, *args, **kwargs), abandon_on_cancel=True
    )


async def until_answered(name: str, arguments: dict[str, Any], *, caller: Caller) -> dict[str, Any]:
    """`invoke_tool` in a worker thread, resumed as soon as the call is answered (`Caller.answer`), which is once
    its audit event is committed (a call whose event cannot be written is answered `unavailable`): the thread then
    records the call's security events and collects its garbage while this request's response goes out.

    If the awaiting request is cancelled, it stops waiting at once; the thread finishes as `in_worker`'s do.
    """
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any) -> None:
        if not answered.done():
            answered.set_result(outcome)

    def answer(outcome: Any) -> None:  # from the worker thread
        loop.call_soon_threadsafe(settle, outcome)

    def run() -> None:
        try:
            outcome: Any = with_connections(
                invoke_tool, name, arguments, caller=dataclasses.replace(caller, answer=answer)
            )
        except BaseException as exc:  # handed to the awaiting request, which raises it
            outcome = exc
        answer(outcome)  # when the call ended before it could answer (an unexpected error)
        if runner.tools_run_here():  # a tool process does the same once it has sent its answer
            garbage_after_call()

    # The thread runs in a copy of this context, as anyio's worker threads do (tracing, the auth context).
    loop.run_in_executor(runner.call_threads(), contextvars.copy_context().run, run)
    outcome = await answered
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _listing() -> list[types.Tool]:
    listing = []
    for tool in TOOLS.values():
        listing.append(
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema,
                annotations=types.ToolAnnotations(
                    read_only_hint=tool.read_only,
                    destructive_hint=tool.destructive,
                    open_world_hint=False,
                ),
            )
        )
    return listing


def _unknown_cursor(cursor: str, what_to_do: str) -> MCPError:
    """A cursor this server never gave, refused as the MCP specification asks of an invalid one (-32602)."""
    return MCPError(INVALID_PARAMS, f"Unknown cursor {cursor[:64]!r}: {what_to_do}", data={"cursor": cursor[:64]})


def _one_page(method: str, params: types.PaginatedRequestParams | None) -> None:
    """A list that fits in one page has no cursor to continue from: one sent is refused, rather than answered with
    the first page again."""
    cursor = None if params is None else params.cursor
    if cursor:
        raise _unknown_cursor(cursor, f"{method} answers in one page, with no nextCursor; call it without one.")


def _success(result: dict[str, Any]) -> types.CallToolResult:
    """Structured content for programs, and the same as JSON text for models; an SVG also as a picture.

    Built as the SDK's model, so that the SDK shapes it for the protocol version the client negotiated (the
    2026-07-28 result carries `resultType`, which a hand-built dict lacked)."""
    content: list[types.ContentBlock] = [types.TextContent(text=pydantic_core.to_json(result).decode())]
    if result.get("media_type") == "image/svg+xml" and isinstance(result.get("svg"), str):
        content.append(types.ImageContent(data=_base64(result["svg"]), mime_type="image/svg+xml"))
    return types.CallToolResult(content=content, structured_content=result, is_error=False)


def _base64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _failure(error: ApplicationError) -> types.CallToolResult:
    """A tool error the model can read and correct: `code: message`, and the same structured."""
    detail = error.as_dict()
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.code}: {error}")], structured_content=detail, is_error=True
    )


def _progress_reporter(ctx: ServerRequestContext[Any, Any]) -> Callable[[int, int, str], None] | None:
    """A function worker threads call to send MCP progress notifications, when the client asked for them; a report
    that does not advance the progress is not sent."""
    meta = ctx.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))  # type: ignore[call-overload]
    if token is None:
        return None

    # The report comes from whichever thread runs the tool: hand it back to this event loop explicitly.
    loop = anyio.lowlevel.current_token()
    sent = [-1]  # the progress last sent: MCP's progress "MUST increase with each notification"

    def report(done: int, total: int, message: str) -> None:
        if done <= sent[0]:  # a tool's report that says nothing new (a job's start, then its first poll)
            return
        sent[0] = done
        with contextlib.suppress(Exception):  # progress is best effort; the call goes on if the client went away
            anyio.from_thread.run(
                functools.partial(
                    ctx.session.send_progress_notification,
                    progress_token=token,
                    progress=done,
                    total=total,
                    message=message,
                    related_request_id=None if ctx.request_id is None else str(ctx.request_id),
                ),
                token=loop,
            )

    return report


def build_server(
    *, identify: Identify, name: str = "music21-platform", protocol_versions: Sequence[str] | None = None
) -> Server[Any]:
    """The MCP server over the tool registry; `identify` turns a request into the Caller it acts for.
    `protocol_versions` are those `server/discover` names, when the transport serves more than the per-request
    envelope's (over HTTP every request may use any; on stdio the first request settles the era, so the SDK's
    discover, which names the envelope's, stays).

    Every handler answers with the SDK's result models, which the SDK validates and shapes for the protocol
    version of the request (2026-07-28's `resultType`, cache hints and server stamp included); failures are
    `MCPError`s, mapped by the SDK alike in every era."""
    from music21 import __version__ as music21_version

    async def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller:
        """The caller of a request that is not a tool call (a tool call answers its errors as tool errors)."""
        try:
            return await identify(ctx)
        except ApplicationError as error:
            raise MCPError(INVALID_REQUEST, f"{error.code}: {error}") from error

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        _one_page("tools/list", params)
        return types.ListToolsResult(tools=_listing())

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        try:
            get_tool(params.name)
        except UnknownTool as error:  # the MCP specification makes an unknown tool a protocol error (-32602)
            raise MCPError(INVALID_PARAMS, f"{error.code}: {error}") from error
        cancelled = threading.Event()
        try:
            caller = dataclasses.replace(await identify(ctx), progress=_progress_reporter(ctx), cancelled=cancelled)
            result = await until_answered(params.name, params.arguments or {}, caller=caller)
        except ApplicationError as error:
            return _failure(error)
        finally:
            cancelled.set()  # the client cancelled (or the call ended): long tools stop at their next step
        return _success(result)

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        caller = await caller_of(ctx)
        arguments = {"limit": 200, **({"cursor": params.cursor} if params.cursor else {})}
        try:
            page = await in_worker(invoke_tool, "list_scores", arguments, caller=caller)
        except ApplicationError as error:
            if params.cursor and error.as_dict().get("argument") == "cursor":  # list_scores' words are its own
                raise _unknown_cursor(
                    params.cursor, "pass a nextCursor of resources/list unchanged, or none for the first page."
                ) from error
            raise MCPError(INVALID_PARAMS, f"{error.code}: {error}") from error
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=f"{SCORE_URI_PREFIX}{s['score_id']}",
                    name=s["score_id"],
                    title=s["title"] or s["score_id"],
                    description=f"{s['parts']} parts, {s['measures']} measures, {s['notes']} notes",
                    mime_type=MUSICXML,
                )
                for s in page["scores"]
            ],
            next_cursor=page["next_cursor"],
        )

    async def list_templates(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourceTemplatesResult:
        _one_page("resources/templates/list", params)
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=SCORE_TEMPLATE,
                    name="score",
                    description="One of your scores, as MusicXML.",
                    mime_type=MUSICXML,
                )
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        # A resource that is not there (another scheme, a score id the caller does not have) is invalid params
        # with the URI as data, as the specification asks since SEP-2164 (it was -32002 before).
        caller = await caller_of(ctx)
        uri = str(params.uri)
        if not uri.startswith(SCORE_URI_PREFIX):
            raise MCPError(INVALID_PARAMS, f"Unknown resource {uri!r}: scores are {SCORE_TEMPLATE}.", data={"uri": uri})
        score_id = uri.removeprefix(SCORE_URI_PREFIX)
        if not re.fullmatch(SCORE_ID_PATTERN, score_id):  # else export_score's refusal would name that tool
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown resource {uri!r}: {score_id!r} is not a score id (letters, digits, '.', '-', '_'); scores "
                f"are {SCORE_TEMPLATE}.",
                data={"uri": uri},
            )
        try:
            exported = await in_worker(
                invoke_tool, "export_score", {"score_id": score_id, "format": "musicxml"}, caller=caller
            )
        except ApplicationError as error:
            raise MCPError(INVALID_PARAMS, f"{error.code}: {error}", data={"uri": uri}) from error
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type=exported["media_type"], text=exported["content"])]
        )

    async def list_prompts(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListPromptsResult:
        _one_page("prompts/list", params)
        return types.ListPromptsResult(prompts=[prompt.listed() for prompt in PROMPTS.values()])

    async def get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return prompt_messages(params.name, params.arguments)

    async def complete(
        ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        source, argument = completion_source(params.ref, params.argument.name)
        typed = params.argument.value
        if source == "scores":
            found = await own_score_ids(ctx, typed)
        elif source == "corpus":  # the first one reads the corpus (most of a second): not on the event loop
            found = await anyio.to_thread.run_sync(corpus_matching, typed)
        elif source == "declared" and argument is not None:
            found = declared_matching(argument, typed)
        else:
            found = completion([])
        return types.CompleteResult(completion=found)

    async def own_score_ids(ctx: ServerRequestContext[Any, Any], typed: str) -> types.Completion:
        """The caller's score ids that start as typed: only the caller's, and only for a token that may read them.
        Not a tool call (one per keystroke): no audit event, as listing one's own ids reveals nothing new."""
        caller = await caller_of(ctx)
        if not scopes.has_scope(caller.scopes, scopes.READ):
            return completion([])
        ids, total = await in_worker(score_ids_starting, owner=caller.user, prefix=typed.strip(), limit=MAX_VALUES)
        return completion(ids, total=total)

    server = Server(
        name,
        version=music21_version,
        title="music21 platform",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
    )
    server.middleware.append(name_params_problems)
    if protocol_versions is not None:
        discover = server.get_request_handler("server/discover")
        if discover is None:  # pragma: no cover - the SDK gives every server its own
            raise RuntimeError("the SDK's server/discover handler is missing")

        async def discover_every_version(ctx: ServerRequestContext[Any, Any], params: Any) -> types.DiscoverResult:
            found = await discover.handler(ctx, params)
            return found.model_copy(update={"supported_versions": list(protocol_versions)})

        server.add_request_handler("server/discover", discover.params_type, discover_every_version)
    return server
