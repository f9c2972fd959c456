"""The analysis tools with their default arguments, in process, against plain music21 doing the same work naively
(what a user's own script would write): on one chorale asked again and again (warm), on a chorale not analysed
before in this process (cold: each call on a fresh parse of another chorale, for both sides), on a Beethoven
quartet movement (large), and as calls per second of CPU time (throughput per core).

Usage: python bench/analysis.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Row, Timing, interleaved

WORK = "bach/bwv66.6"
LARGE = "beethoven/opus18no1/movement3"  # 145 bars, 1257 notes: the naive Roman numerals of movement 1 take minutes
WARM = f"Analysis tools, default arguments, warm: the same chorale again ({WORK}) vs plain music21"
COLD = "Analysis tools, default arguments, cold: each call on a chorale not analysed before vs plain music21"
BIG = f"Analysis tools, default arguments, a large score ({LARGE}, one fresh parse per call) vs plain music21"
INVOKED = f"Analysis tools through the invocation path (call_tool's path, {WORK}) vs plain music21"
# The cold rows' chorales are of about WORK's size (165 notes), as the targets' anchor was measured on WORK: some
# cantata chorales run to 600 notes with their instruments, and a row's p99 would then be the longest chorale's time.
CHORALE_NOTES = 300
KEY_PROFILES = ("AardenEssen", "KrumhanslSchmuckler", "BellmanBudge", "TemperleyKostkaPayne", "SimpleWeights")

Music = Any  # a music21 stream.Score


# --- Plain music21, as a user's own script would do the same work -----------------------------------------------


def plain_key(music: Music) -> list[Any]:
    """Every key profile over the whole score, as key_analysis's default ('all') reports them."""
    return [music.analyze(profile) for profile in KEY_PROFILES]


def plain_chords(music: Music) -> list[tuple[Any, ...]]:
    """Each chordified slice with its bar, beat, name and Roman numeral in the score's key."""
    from music21 import chord, roman

    found = music.analyze("key")
    return [
        (ch.measureNumber, ch.beat, ch.pitches, ch.commonName, roman.romanNumeralFromChord(ch, found).figure)
        for ch in music.chordify().recurse().getElementsByClass(chord.Chord)
    ]


def plain_roman(music: Music) -> list[tuple[Any, str]]:
    """The Roman-numeral progression in the score's key, repeated chords once."""
    from music21 import chord, roman

    found = music.analyze("key")
    progression: list[tuple[Any, str]] = []
    for ch in music.chordify().recurse().getElementsByClass(chord.Chord):
        figure = roman.romanNumeralFromChord(ch, found).figure
        if not progression or progression[-1][1] != figure:
            progression.append((ch.measureNumber, figure))
    return progression


def plain_voice_leading(music: Music) -> list[tuple[Any, ...]]:
    """Parallel fifths and octaves and crossings between every pair of parts, at the onsets they share."""
    from music21 import note, voiceLeading

    lines = [[n for n in part.stripTies().flatten().notes if isinstance(n, note.Note)] for part in music.parts]
    found: list[tuple[Any, ...]] = []
    for upper, lower in itertools.combinations(lines, 2):
        at = {n.offset: n for n in lower}
        together = [(n, at[n.offset]) for n in upper if n.offset in at]
        for (u1, l1), (u2, l2) in itertools.pairwise(together):
            quartet = voiceLeading.VoiceLeadingQuartet(u1, u2, l1, l2)
            if quartet.parallelFifth() or quartet.parallelOctave():
                found.append((u2.measureNumber, u2.nameWithOctave, l2.nameWithOctave))
            if u2.pitch < l2.pitch:
                found.append(("crossing", u2.measureNumber))
    return found


def plain_patterns(music: Music) -> tuple[Counter[Any], Counter[Any], list[Any]]:
    """Repeated interval and rhythm sequences of 3 to 12 notes in every part, and the top part's phrase ends."""
    from music21 import interval, note

    melodic: Counter[Any] = Counter()
    rhythmic: Counter[Any] = Counter()
    for part in music.parts:
        notes = [n for n in part.stripTies().flatten().notes if isinstance(n, note.Note)]
        steps = [interval.Interval(a, b).semitones for a, b in itertools.pairwise(notes)]
        lengths = [n.quarterLength for n in notes]
        for length in range(3, 13):
            for start in range(len(notes) - length + 1):
                melodic[tuple(steps[start : start + length - 1])] += 1
                rhythmic[tuple(lengths[start : start + length])] += 1
    top = music.parts[0].stripTies().flatten().notes
    phrases = [(n.measureNumber, n.beat) for n in top if any(e.name == "fermata" for e in n.expressions)]
    return melodic, rhythmic, phrases


def tools() -> list[tuple[str, Callable[[Music], object], Callable[[Music], object]]]:
    """(row name, the platform's service with the tool's default arguments, plain music21's same work)."""
    from apps.tools.services import harmony, keys, patterns, voiceleading

    return [
        ("key_analysis (all profiles)", keys.key_analysis, plain_key),
        ("chord_analysis", harmony.chord_analysis, plain_chords),
        ("harmony_analysis (roman)", harmony.harmony_analysis, plain_roman),
        ("voice_leading_analysis", voiceleading.voice_leading_analysis, plain_voice_leading),
        ("pattern_recognition", patterns.pattern_recognition, plain_patterns),
    ]


# --- Cold scores --------------------------------------------------------------------------------------------------


def chorales() -> Iterator[str]:
    """Four-part cantata chorales of the corpus other than WORK, in a fixed order: each is used once per run."""
    from music21 import corpus

    for path in sorted(str(p) for p in corpus.getComposer("bach")):
        name = Path(path).name
        if re.fullmatch(r"bwv\d+\.\d+\.mxl", name) and name != "bwv66.6.mxl":
            yield path


def of_a_chorales_size(paths: Iterator[str]) -> Iterator[str]:
    """Those of `paths` with four parts and a chorale's length (at most CHORALE_NOTES notes), the cold rows' scores
    (here and over MCP, bench/mcp_analysis.py). Each is measured on a parse of its own: music21 keeps a flattened
    stream on the stream flattened, which would spare whichever side got that copy its own `flatten()`."""
    from music21 import corpus

    for path in paths:
        probe = corpus.parse(path)
        if len(probe.parts) == 4 and len(probe.flatten().notes) <= CHORALE_NOTES:
            yield path


def cold_chorales(count: int) -> Iterator[str]:
    """The first `count` chorales of a chorale's size (`of_a_chorales_size`), chosen now, for an MCP client's cold
    calls: choosing them while calls are timed would leave each probe's parse (a large reference cycle) as garbage
    for the client's next full collection, a pause of a few hundred milliseconds in whichever call it fell in."""
    return iter(list(itertools.islice(of_a_chorales_size(chorales()), count)))


def fresh_pairs(paths: Iterator[str], count: int) -> list[tuple[Music, Music]]:
    """`count` chorales of a chorale's size (`of_a_chorales_size`), each parsed twice (one copy per side, so
    neither side finds the other's work on the stream)."""
    from music21 import corpus

    sized = of_a_chorales_size(paths)
    return [(corpus.parse(path), corpus.parse(path)) for path in itertools.islice(sized, count)]


def alternately(
    ours: Callable[[Music], object], theirs: Callable[[Music], object], pairs: list[tuple[Music, Music]]
) -> tuple[Timing, Timing]:
    """Both sides alternately, ours on the first score of each pair and theirs on the second. After each call,
    untimed, the young garbage is collected, as the platform's tool processes do once an answer is on its way
    (apps.core.runtime.garbage_after_call): a collection set off by one call's garbage would otherwise fall in
    whichever call comes next, on either side."""
    mine: list[float] = []
    plain: list[float] = []
    gc.collect()  # the scores of the rows before, dropped: not for this row's calls to collect
    for a, b in pairs:
        for work, music, samples in ((ours, a, mine), (theirs, b, plain)):
            start = time.perf_counter()
            work(music)
            samples.append(time.perf_counter() - start)
            gc.collect(1)
    return Timing(mine), Timing(plain)


def invoked_rows(repeat: int) -> list[Row]:
    """key_analysis and harmony_analysis as a tool call runs them (lookup, scope, validation, ownership, the
    remembered answers of apps.tools.results, the parsed-score cache), with their default arguments."""
    from django.contrib.auth import get_user_model
    from music21 import corpus

    from apps.tools.invocation import Caller, invoke_tool

    user, _ = get_user_model().objects.get_or_create(username="bench-analysis")
    user.scores.all().delete()
    caller = Caller.operator(user, transport="bench")
    invoke_tool("import_score", {"score_id": "chorale", "source": WORK, "source_type": "corpus"}, caller=caller)
    music = corpus.parse(WORK)
    rows = []
    for tool, plain in [("key_analysis", plain_key), ("harmony_analysis", plain_roman)]:
        ours, theirs = interleaved(
            lambda tool=tool: invoke_tool(tool, {"score_id": "chorale"}, caller=caller),
            lambda plain=plain: plain(music),
            repeat=repeat,
        )
        rows.append(Row(INVOKED, tool, ours, theirs))
    return rows


def throughput(paths: Iterator[str], calls: int) -> str:
    """Calls per second of this process's CPU time (one core): every analysis tool in turn, each call on a chorale
    not analysed before (parsed outside the timing), against plain music21's same work on the same chorales. CPU
    time is what a core gives; the machine's other load disturbs it less than wall-clock time."""
    pairs = fresh_pairs(paths, calls)
    spent = [0.0, 0.0]
    for (ours_music, plain_music), (_, ours, plain) in zip(pairs, itertools.cycle(tools()), strict=False):
        for side, (work, music) in enumerate(((ours, ours_music), (plain, plain_music))):
            started = time.process_time()
            work(music)
            spent[side] += time.process_time() - started
    rates = [len(pairs) / seconds for seconds in spent]
    return "\n".join(
        [
            "\n### Analysis throughput per core (the five tools in turn, each call on a chorale not analysed before)\n",
            "| side | calls | calls per CPU second |",
            "|---|---|---|",
            f"| platform | {len(pairs)} | {rates[0]:.1f} |",
            f"| plain music21 | {len(pairs)} | {rates[1]:.1f} |",
            f"\n(the platform answers {rates[0] / rates[1]:.1f}x the calls per core)",
        ]
    )


def run(repeat: int = 30, cold_repeat: int = 20, calls: int = 40) -> tuple[list[Row], str]:
    from apps.core.runtime import gc_tune

    # Both sides run as the platform's tool processes run calls: what is loaded so far out of the collector's
    # sight and its tuned thresholds (apps.core.runtime.gc_tune); put back afterwards for the benchmarks that follow.
    thresholds = gc.get_threshold()
    gc_tune()
    try:
        return _rows(repeat, cold_repeat, calls)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _rows(repeat: int, cold_repeat: int, calls: int) -> tuple[list[Row], str]:
    from music21 import corpus

    rows: list[Row] = []
    music = corpus.parse(WORK)
    for name, ours, plain in tools():
        for _ in range(3):  # warm-up
            ours(music)
            plain(music)
        mine, theirs = alternately(ours, plain, [(music, music)] * repeat)
        rows.append(Row(WARM, name, mine, theirs))
    paths = chorales()
    for name, ours, plain in tools():
        mine, theirs = alternately(ours, plain, fresh_pairs(paths, cold_repeat))
        rows.append(Row(COLD, name, mine, theirs))
    large = [(corpus.parse(LARGE), corpus.parse(LARGE))]
    for name, ours, plain in tools():
        mine, theirs = alternately(ours, plain, large)
        rows.append(Row(BIG, name, mine, theirs))
        large = [(corpus.parse(LARGE), corpus.parse(LARGE))]
    rows += invoked_rows(repeat)
    return rows, throughput(paths, calls)


# Issue 22's targets: half the public music21 MCP server's p50 on bach/bwv66.6 on the 2-core test machine, p50 and
# p99, warm and cold (docs/performance.md). Absolute figures: they move with the machine's speed in a run.
TARGET_MS = {
    "key_analysis (all profiles)": 28.0,
    "chord_analysis": 75.0,
    "harmony_analysis (roman)": 55.0,
    "voice_leading_analysis": 12.0,
    "pattern_recognition": 20.0,
}


def targets(rows: list[Row]) -> str:
    """Each tool's warm and cold p50 and p99 against its target."""
    lines = [
        "\n### Analysis targets in this run (at most half the public server's time, p50 and p99, warm and cold)\n",
        "| tool | target ms | warm p50 / p99 ms | cold p50 / p99 ms | |",
        "|---|---|---|---|---|",
    ]
    for name, limit in TARGET_MS.items():
        found = {row.section: row.platform for row in rows if row.name == name and row.section in (WARM, COLD)}
        if len(found) < 2:
            continue
        warm, cold_ = found[WARM], found[COLD]
        met = max(warm.p50, warm.p99, cold_.p50, cold_.p99) * 1000 <= limit
        lines.append(
            f"| {name} | {limit:.0f} | {warm.p50 * 1000:.1f} / {warm.p99 * 1000:.1f} | "
            f"{cold_.p50 * 1000:.1f} / {cold_.p99 * 1000:.1f} | {'met' if met else '**not met**'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per warm row and side")
    parser.add_argument("--cold", type=int, default=20, help="fresh chorales per cold row and side")
    parser.add_argument("--calls", type=int, default=40, help="calls per side in the throughput rows")
    args = parser.parse_args()
    from bench.harness import setup_django, table

    setup_django()
    started = time.perf_counter()
    rows, rates = run(repeat=args.repeat, cold_repeat=args.cold, calls=args.calls)
    print(table(rows))
    print(rates)
    print(targets(rows))
    print(f"\n(total {time.perf_counter() - started:.1f} s; ratio = platform / plain music21)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
