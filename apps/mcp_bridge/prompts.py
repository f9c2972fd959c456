"""Prompts for the common workflows, each declared once: listed by prompts/list, written out by prompts/get.

A prompt is a recipe for the assistant: which tools to call, in which order, with which arguments. Each of its
arguments feeds one tool argument and names it (`feeds`): its description, its validation and its completions
(apps.mcp_bridge.completions) come from that tool's declaration, not from a second copy here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from pydantic import TypeAdapter, ValidationError

from apps.tools.registry import TOOLS

# What completes an argument: the caller's own score ids, the bundled corpus's works, the values its tool
# argument declares (an enum, or the examples of an open list), or nothing (free text).
Values = Literal["scores", "corpus", "declared", "free"]


@dataclass(frozen=True)
class PromptArgument:
    name: str
    feeds: tuple[str, str]  # (tool, argument): the declaration that describes, checks and completes it
    values: Values
    required: bool = False
    description: str = ""  # by default the tool argument's own

    def tool_schema(self) -> dict[str, Any]:
        tool, argument = self.feeds
        return TOOLS[tool].input_schema["properties"][argument]

    def check(self, value: str) -> None:
        """Refuse a value its tool would refuse, with the tool's own rule (a score id's pattern, an enum)."""
        try:
            _validator(*self.feeds).validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise MCPError(
                INVALID_PARAMS,
                f"The argument {self.name!r} cannot be {value!r}: {problem}.",
                data={"argument": self.name},
            ) from None

    def listed(self) -> types.PromptArgument:
        return types.PromptArgument(
            name=self.name,
            description=self.description or self.tool_schema().get("description", ""),
            required=self.required,
        )


@functools.cache
def _validator(tool: str, argument: str) -> TypeAdapter[Any]:
    field = TOOLS[tool].arguments.model_fields[argument]
    return TypeAdapter(Annotated[field.annotation, field])


@dataclass(frozen=True)
class Prompt:
    name: str
    title: str
    description: str
    arguments: tuple[PromptArgument, ...]
    # The instructions, from the arguments given (optional ones absent when not given).
    write: Callable[[Mapping[str, str]], str]

    def listed(self) -> types.Prompt:
        return types.Prompt(
            name=self.name,
            title=self.title,
            description=self.description,
            arguments=[argument.listed() for argument in self.arguments],
        )

    def argument(self, name: str) -> PromptArgument | None:
        return next((argument for argument in self.arguments if argument.name == name), None)


def call(tool: str, **arguments: Any) -> str:
    """One step of a recipe: the tool and its arguments as the assistant should send them."""
    if tool not in TOOLS:
        raise LookupError(f"A prompt names the tool {tool!r}, which is not declared")
    return f"`{tool}` with {json.dumps(arguments)}"


def steps(*lines: str) -> str:
    return "\n".join(f"{number}. {line}" for number, line in enumerate(lines, 1))


SCORE_ID = PromptArgument(
    "score_id", ("score_info", "score_id"), "scores", required=True, description="One of your scores, by its id."
)


def _analyse_chorale(args: Mapping[str, str]) -> str:
    score_id, chorale = args["score_id"], args.get("chorale")
    first = (
        f"Import it: {call('import_score', score_id=score_id, source=chorale, source_type='corpus')}. If the "
        f"answer is `already_exists`, {score_id!r} is already one of your scores: check with "
        f"{call('score_info', score_id=score_id)} that it is this chorale before going on."
        if chorale
        else f"Look at the score: {call('score_info', score_id=score_id)} (parts, measures, key signature)."
    )
    harmony = args.get("harmony", "roman")
    return (
        f"Analyse the chorale {chorale or score_id!r} with the music21 tools, in this order:\n"
        + steps(
            first,
            f"Find its key: {call('key_analysis', score_id=score_id, algorithm=args.get('algorithm', 'all'))}; "
            "note the confidence and whether the algorithms agree.",
            f"Label its harmony: {call('harmony_analysis', score_id=score_id, analysis_type=harmony)}.",
            *(
                []
                if harmony == "cadences"
                else [f"Find its cadences: {call('harmony_analysis', score_id=score_id, analysis_type='cadences')}."]
            ),
            f"Check its voice leading: {call('voice_leading_analysis', score_id=score_id)}.",
        )
        + "\n\nThen report the key with its confidence, the harmony phrase by phrase with the cadence ending each "
        "phrase, and every parallel fifth or octave and voice crossing with its parts and measure. Where the tools "
        "disagree or find nothing, say so rather than guessing."
    )


def _harmonise_melody(args: Mapping[str, str]) -> str:
    score_id, melody = args["score_id"], args.get("melody")
    first = (
        f"Import the melody: {call('import_score', score_id=score_id, source=melody, source_type='tinynotation')}."
        if melody
        else f"Look at the melody: {call('score_info', score_id=score_id)}; its top part is the one harmonised."
    )
    style = args.get("style", "chorale")
    voices = ["soprano", "alto", "tenor", "bass"]
    return (
        f"Harmonise the melody {score_id!r} in {style} style with the music21 tools, in this order:\n"
        + steps(
            first,
            f"Find its key: {call('key_analysis', score_id=score_id)}.",
            f"Harmonise it: {call('harmonize_melody', score_id=score_id, style=style, voice_parts=voices)}. "
            "The answer's `new_score_id` is the harmonisation, stored as a new score; use it below.",
            f"Check the new score's voice leading: {call('voice_leading_analysis', score_id='<new_score_id>')}.",
            f"Show it: {call('render_score', score_id='<new_score_id>')}.",
        )
        + "\n\nThen give the progression the harmonisation used, the new score's id, and any parallel fifths or "
        "octaves it contains with their measures."
    )


def _check_voice_leading(args: Mapping[str, str]) -> str:
    score_id = args["score_id"]
    return (
        f"Check the voice leading of the score {score_id!r} with the music21 tools, in this order:\n"
        + steps(
            f"Find the problems: {call('voice_leading_analysis', score_id=score_id)} (parallel fifths and "
            "octaves, voice crossings, each with its parts, measure and beat).",
            f"Name the chords around them: {call('chord_analysis', score_id=score_id)}.",
            f"Show each passage with a problem: call `render_score` for score_id {score_id!r}, with measure_start "
            "and measure_end (integers) around the measure step 1 gave.",
        )
        + "\n\nThen list every problem with its parts, measure and chords, and suggest how to rewrite each. If "
        "step 1 finds none, say the voice leading is clean."
    )


def _compare_keys(args: Mapping[str, str]) -> str:
    first, second = args["score_id"], args["other_score_id"]
    algorithm = args.get("algorithm", "all")
    return (
        f"Compare the keys of the scores {first!r} and {second!r} with the music21 tools, in this order:\n"
        + steps(
            f"{call('key_analysis', score_id=first, algorithm=algorithm)}.",
            f"{call('key_analysis', score_id=second, algorithm=algorithm)}.",
            "If the keys differ, work out the interval from the second key's tonic to the first's (for example "
            f"'M2' or '-m3') and offer {call('transpose_score', score_id=second, interval='<interval>')}: it "
            "stores a transposed copy. Ask before calling it.",
        )
        + "\n\nThen report both keys with their confidence, and how sure each answer is when the algorithms "
        "disagree."
    )


def _find_patterns(args: Mapping[str, str]) -> str:
    score_id = args["score_id"]
    pattern_type = args.get("pattern_type", "both")
    return (
        f"Find the patterns of the score {score_id!r} with the music21 tools, in this order:\n"
        + steps(
            f"{call('pattern_recognition', score_id=score_id, pattern_type=pattern_type)} (repeated motifs with "
            "their locations, and the phrase structure of the top part).",
            f"Relate the phrases to the harmony: "
            f"{call('harmony_analysis', score_id=score_id, analysis_type='cadences')}.",
        )
        + "\n\nThen describe the most frequent motifs with where they recur, and the phrase structure with the "
        "cadence that ends each phrase."
    )


def _render_and_export(args: Mapping[str, str]) -> str:
    score_id, fmt = args["score_id"], args["format"]
    return (
        f"Show the score {score_id!r} and export it as {fmt} with the music21 tools, in this order:\n"
        + steps(
            f"{call('render_score', score_id=score_id)}: the notation as SVG.",
            f"{call('export_score', score_id=score_id, format=fmt)}: the content itself with its media type "
            "(text as text, binary formats as base64).",
        )
        + "\n\nThen show the notation and hand over the export as the answer gives it, with its media type."
    )


PROMPTS: dict[str, Prompt] = {
    prompt.name: prompt
    for prompt in (
        Prompt(
            "analyse_chorale",
            "Analyse a chorale",
            "Key, Roman-numeral harmony, cadences and voice leading of a chorale: a work of the music21 corpus "
            "imported for you, or one of your scores.",
            (
                PromptArgument(
                    "score_id",
                    ("import_score", "score_id"),
                    "scores",
                    required=True,
                    description="The score to analyse: one of yours, or the id to import `chorale` under.",
                ),
                PromptArgument(
                    "chorale",
                    ("import_score", "source"),
                    "corpus",
                    description="A work of the music21 corpus to import first, e.g. 'bach/bwv66.6'; leave it out to "
                    "analyse `score_id` as it is.",
                ),
                PromptArgument("algorithm", ("key_analysis", "algorithm"), "declared"),
                PromptArgument(
                    "harmony",
                    ("harmony_analysis", "analysis_type"),
                    "declared",
                    description="How to label the harmony: 'roman' (default), 'functional' or 'cadences'.",
                ),
            ),
            _analyse_chorale,
        ),
        Prompt(
            "harmonise_melody",
            "Harmonise a melody",
            "Harmonise a melody (yours, or typed in tinyNotation) in four voices, then check and show the result.",
            (
                PromptArgument(
                    "score_id",
                    ("import_score", "score_id"),
                    "scores",
                    required=True,
                    description="The melody: one of your scores, or the id to import `melody` under.",
                ),
                PromptArgument(
                    "melody",
                    ("import_score", "source"),
                    "free",
                    description="A melody in tinyNotation to import first, e.g. \"4/4 c'4 d' e' f' g'2 g'\"; leave it "
                    "out to harmonise `score_id`.",
                ),
                PromptArgument("style", ("harmonize_melody", "style"), "declared"),
            ),
            _harmonise_melody,
        ),
        Prompt(
            "check_voice_leading",
            "Check voice leading",
            "Find parallel fifths and octaves and voice crossings in one of your scores, with the chords around "
            "them and pictures of the passages.",
            (SCORE_ID,),
            _check_voice_leading,
        ),
        Prompt(
            "compare_keys",
            "Compare the keys of two scores",
            "Find the keys of two of your scores and offer to transpose the second into the first's key.",
            (
                SCORE_ID,
                PromptArgument(
                    "other_score_id",
                    ("transpose_score", "score_id"),
                    "scores",
                    required=True,
                    description="The score to compare with `score_id` (and to transpose, if you agree).",
                ),
                PromptArgument("algorithm", ("key_analysis", "algorithm"), "declared"),
            ),
            _compare_keys,
        ),
        Prompt(
            "find_patterns",
            "Find motifs and phrases",
            "Repeated melodic and rhythmic motifs of one of your scores, and its phrases with their cadences.",
            (SCORE_ID, PromptArgument("pattern_type", ("pattern_recognition", "pattern_type"), "declared")),
            _find_patterns,
        ),
        Prompt(
            "render_and_export",
            "Show and export a score",
            "Engrave one of your scores as SVG and export it in a format of your choice.",
            (SCORE_ID, PromptArgument("format", ("export_score", "format"), "declared", required=True)),
            _render_and_export,
        ),
    )
}


def prompt_get(name: str) -> Prompt:
    """The prompt `name`, or the MCP error for an unknown one (-32602, naming it and the prompts there are)."""
    prompt = PROMPTS.get(name)
    if prompt is None:
        raise MCPError(
            INVALID_PARAMS,
            f"Unknown prompt {name!r}; the prompts are: {', '.join(PROMPTS)}.",
            data={"prompt": name},
        )
    return prompt


def prompt_messages(name: str, arguments: Mapping[str, str] | None) -> types.GetPromptResult:
    """The prompt `name` written out for `arguments`: missing required, unknown or invalid arguments are refused
    with an MCP error (-32602) naming the argument. An empty value counts as not given."""
    prompt = prompt_get(name)
    given = {key: value.strip() for key, value in (arguments or {}).items() if value and value.strip()}
    unknown = sorted(set(given) - {argument.name for argument in prompt.arguments})
    if unknown:
        raise MCPError(
            INVALID_PARAMS,
            f"The prompt {name!r} has no argument {unknown[0]!r}; its arguments are: "
            f"{', '.join(argument.name for argument in prompt.arguments)}.",
            data={"prompt": name, "argument": unknown[0]},
        )
    for argument in prompt.arguments:
        if argument.name in given:
            argument.check(given[argument.name])
        elif argument.required:
            raise MCPError(
                INVALID_PARAMS,
                f"The prompt {name!r} needs the argument {argument.name!r}: {argument.listed().description}",
                data={"prompt": name, "argument": argument.name},
            )
    return types.GetPromptResult(
        description=prompt.description,
        messages=[types.PromptMessage(role="user", content=types.TextContent(text=prompt.write(given)))],
    )
