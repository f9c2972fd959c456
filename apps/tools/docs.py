"""The tool reference (docs/tools.md), written from the registry so the docs cannot drift from the code."""

from __future__ import annotations

from typing import Any

from apps.tools.registry import TOOLS

HEADER = """# Tools

Generated from the tool registry by `python manage.py tools_doc`; a test fails when this file is out of date.
Every tool answers a JSON object with `"status": "success"` or fails with an error whose `code` and message say why.
Scopes: `music21:read`, `music21:write` (`music21:admin` implies both).

Conventions in every result:

- Pitches and keys are spelled as the score spells them, in plain text: the letter, then `#` for a sharp or `b` for
  a flat (`F#`, `Bb`, `C##`), the octave after it where there is one (`Bb3`, middle C is `C4`); keys as tonic and
  mode (`F# minor`, `Bb major`).
- Pitches, chords and keys are the music as it sounds: a part for a transposing instrument (a clarinet in Bb, a
  horn in F) or written an octave from its sound is read at sounding pitch, and key signatures are named at concert
  pitch. The parts' written notes are unchanged, and so are `export_score`'s and `render_score`'s.
- Parts are named by `part` (their 0-based index in the score) and `part_label`: the part's name, numbered when two
  parts share one (`Tenor 1`, `Tenor 2`), or `Part 1`, `Part 2`... for parts without a name.
- `measure` is the bar number as printed in the score (a pickup bar is 0); `beat` counts from 1 within the bar.
- Durations and offsets are in quarter notes (a quarter note is 1.0) unless a field's name says otherwise
  (`_ms`, `_seconds`).
"""


def _argument(name: str, spec: dict[str, Any], required: bool) -> str:
    kind = spec.get("type") or " | ".join(
        str(option.get("type", option.get("const", ""))) for option in spec.get("anyOf", []) if option
    )
    kind = kind.replace(" | null", "").replace("null | ", "")
    if "enum" in spec:
        kind = " \\| ".join(f"`{value}`" for value in spec["enum"])
    if spec.get("type") == "array" and "enum" in spec.get("items", {}):
        kind = "list of " + " \\| ".join(f"`{value}`" for value in spec["items"]["enum"])
    if "minimum" in spec and "maximum" in spec:
        kind += f" {spec['minimum']}-{spec['maximum']}"
    default = spec.get("default")
    default = "" if required or default is None else f" (default `{default}`)"
    need = "required" if required else "optional"
    return f"- `{name}` ({need}; {kind}){default}: {spec.get('description', '')}"


def tools_markdown() -> str:
    sections = [HEADER]
    for tool in sorted(TOOLS.values(), key=lambda t: (t.group, t.name)):
        schema = tool.input_schema
        required = set(schema.get("required", []))
        arguments = [
            _argument(name, spec, name in required) for name, spec in schema.get("properties", {}).items()
        ] or ["- none"]
        sections.append(
            f"## `{tool.name}`\n\n{tool.description}\n\n"
            f"Scope: {f'`{tool.scope}`' if tool.scope else 'none'} · guard group: `{tool.group}`\n\n"
            + "\n".join(arguments)
            + "\n"
        )
    return "\n".join(sections)
