"""Analyses of works of the bundled music21 corpus: which works a query names, and each work's analysis.

Pure music21 work, knowing nothing of Celery: spreading a job over the workers in chunks, its progress and its
cancellation are apps.tools.corpus_jobs's, and each chunk is apps.tools.tasks.analyze_corpus_chunk.
"""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path
from typing import Any

from music21 import common, corpus, stream

from apps.core.errors import InvalidArguments, RejectedInput
from apps.core.metrics import FILES_PROCESSED
from apps.tools.services.keys import key_analysis
from apps.tools.services.parsing import parse_corpus_work
from apps.tools.services.summary import score_summary

CORPUS_ANALYSES = ("key", "summary")


def composer_paths(name: str) -> list[str]:
    """The corpus works of composer `name` ('bach'): those in the corpus's folder of that name. music21's
    `getComposer` matches the name against every folder of a work's path, so that 'corpus' or 'music21' named all
    3,194 works of the corpus."""
    root = Path(common.getCorpusFilePath())
    return [str(p) for p in corpus.getComposer(name) if Path(p).relative_to(root).parts[0].lower() == name.lower()]


def corpus_select(*, composer: str | None = None, pattern: str | None = None, limit: int) -> list[str]:
    """Corpus paths ('bach/bwv66.6.mxl') of a composer's works, or matching a glob such as 'bach/bwv1*'."""
    root = Path(common.getCorpusFilePath())
    if composer is not None:
        name = composer.strip().lower()
        if not name.isidentifier():
            raise InvalidArguments(f"{composer!r} is not a composer name in the music21 corpus (e.g. 'bach').")
        found = [Path(p) for p in composer_paths(name)]
        if not found:
            raise InvalidArguments(f"The music21 corpus has no works by {composer!r}; try 'bach' or 'mozart'.")
    elif pattern is not None:
        glob = pattern.strip()
        if not glob:
            raise InvalidArguments(f"{pattern!r} is not a corpus path pattern (for example 'bach/bwv1*').")
        if glob.startswith(("/", "\\", "~")) or ".." in glob.replace("\\", "/").split("/"):
            # Nothing outside the corpus would be read (the pattern is matched against the corpus's own list of
            # works), but a caller climbing out of it is probing, as with a path sent to import_score.
            raise RejectedInput(
                f"{pattern!r} is not a corpus path pattern: it points out of the corpus. Patterns name works inside "
                "it, relative to its root (for example 'bach/bwv1*').",
                kind="path_traversal",
            )
        found = [Path(p) for p in corpus.getPaths() if _matches(Path(p).relative_to(root).as_posix(), glob)]
        if not found:
            raise InvalidArguments(f"No corpus work matches {pattern!r}.")
    else:
        raise InvalidArguments("Give a composer or a path pattern.")
    paths = sorted(p.relative_to(root).as_posix() for p in found)
    return paths[:limit]


def _matches(relative: str, glob: str) -> bool:
    stem = relative.rsplit(".", 1)[0]
    return fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(stem, glob)


def corpus_analyze_works(paths: list[str], analysis: str) -> list[dict[str, Any]]:
    """Analyse each work; a work that fails is reported with its error and does not stop the others."""
    results = []
    for path in paths:
        started = time.perf_counter()
        try:
            music = parse_corpus_work(path)
            if not isinstance(music, stream.Score):
                raise InvalidArguments("not a single score")
            if analysis == "key":
                found = key_analysis(music, algorithm="aarden")
                outcome: dict[str, Any] = {"key": found["key"], "confidence": found["confidence"]}
            else:
                outcome = score_summary(music)
            results.append({"path": path, **outcome, "seconds": round(time.perf_counter() - started, 3)})
            FILES_PROCESSED.inc()
        except Exception as exc:  # one bad file in a corpus job is a result, not a failure of the job
            results.append({"path": path, "error": f"{type(exc).__name__}: {exc}"[:300]})
    return results
