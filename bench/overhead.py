"""Per-call cost of the invocation path (`call_tool`'s path: lookup, scope, validation, ownership, cache) against
the same music21 work called directly in this process, on bach/bwv66.6."""

from __future__ import annotations

import itertools

from bench.harness import Row, interleaved

SECTION = "In-process invocation path vs direct music21 (bach/bwv66.6)"
WORK = "bach/bwv66.6"


def run(repeat: int = 30) -> list[Row]:
    from django.contrib.auth import get_user_model
    from music21 import corpus, roman

    from apps.tools.invocation import Caller, invoke_tool
    from apps.tools.services import harmony, keys
    from apps.tools.services.summary import score_summary

    user, _ = get_user_model().objects.get_or_create(username="bench-overhead")
    user.scores.all().delete()
    caller = Caller.operator(user, transport="bench")
    ids = itertools.count()

    def platform_import() -> None:
        invoke_tool(
            "import_score", {"score_id": f"imp-{next(ids)}", "source": WORK, "source_type": "corpus"}, caller=caller
        )

    def direct_import() -> None:
        score_summary(corpus.parse(WORK))  # what a music21 user would write; music21 keeps its own parse cache

    invoke_tool("import_score", {"score_id": "chorale", "source": WORK, "source_type": "corpus"}, caller=caller)
    music = corpus.parse(WORK)

    def platform_key() -> None:
        invoke_tool("key_analysis", {"score_id": "chorale", "algorithm": "aarden"}, caller=caller)

    def direct_key() -> None:
        keys.key_analysis(music, algorithm="aarden")

    def platform_chords() -> None:
        invoke_tool("chord_analysis", {"score_id": "chorale"}, caller=caller)

    def direct_chords() -> None:
        harmony.chord_analysis(music)  # the same work, the same answer

    def bare_chords() -> None:  # the least a music21 user could write: no names, beats or cleaned figures
        found = music.analyze("AardenEssen")
        for ch in music.chordify().flatten().getElementsByClass("Chord"):
            roman.romanNumeralFromChord(ch, found)

    rows = []
    for name, ours, theirs in [
        ("import_score", platform_import, direct_import),
        ("key_analysis (aarden)", platform_key, direct_key),
        ("chord_analysis", platform_chords, direct_chords),
        ("chord_analysis's own work vs a bare romanNumeralFromChord loop", direct_chords, bare_chords),
    ]:
        timing_ours, timing_theirs = interleaved(ours, theirs, repeat=repeat)
        rows.append(Row(SECTION, name, timing_ours, timing_theirs))
    return rows
