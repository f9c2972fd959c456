from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

SCORE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
score_id_validator = RegexValidator(
    SCORE_ID_PATTERN,
    "A score id is 1 to 128 letters, digits, dots, dashes or underscores, starting with a letter or digit.",
)


class SourceFormat(models.TextChoices):
    CORPUS = "corpus", "music21 corpus"
    TINYNOTATION = "tinynotation", "tinyNotation"
    ABC = "abc", "ABC"
    MUSICXML = "musicxml", "MusicXML"
    MXL = "mxl", "Compressed MusicXML"
    MIDI = "midi", "MIDI"
    HUMDRUM = "humdrum", "Humdrum"


class Score(models.Model):
    """A score owned by one user. The source is kept as given; the parsed stream lives only in memory."""

    # The source columns: large, and left behind by the reads that do not need them (`score.source` loads them).
    SOURCE_FIELDS = ("source_text", "source_bytes")

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scores")
    score_id = models.CharField(max_length=128, validators=[score_id_validator])
    title = models.CharField(max_length=300, blank=True)
    composer = models.CharField(max_length=300, blank=True)
    source_format = models.CharField(max_length=20, choices=SourceFormat.choices)
    source_origin = models.CharField(
        max_length=500, blank=True, help_text="Where the source came from: a corpus path or an imported file's name."
    )
    source_text = models.TextField(blank=True)
    source_bytes = models.BinaryField(null=True, blank=True)
    content_sha256 = models.CharField(max_length=64)
    derived_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="derivatives",
        help_text="The score this one was generated from (harmonisation, counterpoint, transposition...).",
    )
    derivation = models.CharField(max_length=40, blank=True, help_text="The tool that generated this score.")

    parts_count = models.PositiveIntegerField(default=0)
    measures_count = models.PositiveIntegerField(default=0)
    notes_count = models.PositiveIntegerField(default=0)
    lowest_pitch = models.CharField(max_length=10, blank=True)
    highest_pitch = models.CharField(max_length=10, blank=True)
    key_signatures = models.JSONField(default=list, blank=True)
    time_signatures = models.JSONField(default=list, blank=True)
    duration_quarters = models.FloatField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "score_id"], name="unique_score_id_per_owner")]
        indexes = [models.Index(fields=["owner", "created_at", "id"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.score_id

    @property
    def source(self) -> str | bytes:
        return bytes(self.source_bytes) if self.source_bytes is not None else self.source_text

    @property
    def is_derived(self) -> bool:
        return bool(self.derivation)


class AnalysisResult(models.Model):
    """An analysis tool's answer, remembered for the score content, tool, arguments and analysis code it came from
    (apps.tools.results). It belongs to the score it was computed on and goes with it, and so with its owner's
    erasure; answers on a public corpus work are `shared` with every caller who imported the same work."""

    score = models.ForeignKey(Score, on_delete=models.CASCADE, related_name="analysis_results")
    content_sha256 = models.CharField(max_length=64)
    tool = models.CharField(max_length=64)
    arguments_sha256 = models.CharField(max_length=64)
    code_version = models.CharField(max_length=16)
    shared = models.BooleanField(default=False)
    result = models.TextField(help_text="The answer as JSON text, its keys in the tool's order.")
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["score", "content_sha256", "tool", "arguments_sha256", "code_version"],
                name="one_result_per_score_question",
            )
        ]
        indexes = [models.Index(fields=["content_sha256", "tool", "arguments_sha256", "code_version"])]

    def __str__(self) -> str:
        return f"{self.tool} on {self.content_sha256[:12]}"
