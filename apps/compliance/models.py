"""Compliance records: the audit trail, retention policies and their runs, data-subject requests and their exports.

The audit trail never stores a user's identity directly. Each person has a `SubjectKey`: a random pseudonym, which
audit events carry, and a random encryption key, with which the personal data of an event (the IP address) is
encrypted. Erasure deletes the SubjectKey: the events stay, byte for byte (so their hash chain still verifies),
but nothing links them to the person any more and their IP addresses can no longer be read.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone


class SubjectKey(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subject_key")
    pseudonym = models.CharField(max_length=32, unique=True)
    key = models.CharField(max_length=64, help_text="Fernet key for the personal data in this person's audit events.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.pseudonym


class AuditEvent(models.Model):
    """One thing that happened: a tool call or a security-relevant action. Append-only.

    Rows are written unsealed (no lock, so callers never wait on each other); the sealer then gives them, in
    order, a position `seq` in the chain and `hash` = SHA-256 over the previous hash and the row's fields.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=32, blank=True, db_index=True, help_text="The person's pseudonym.")
    client_id = models.CharField(max_length=100, blank=True, db_index=True)
    action = models.CharField(max_length=80, db_index=True)
    target = models.CharField(max_length=300, blank=True, db_index=True)
    outcome = models.CharField(max_length=40, db_index=True)
    duration_ms = models.FloatField(null=True, blank=True)
    ip = models.TextField(blank=True, help_text="Encrypted with the person's key, or a truncated address.")
    request_id = models.CharField(max_length=32, blank=True, db_index=True)
    transport = models.CharField(max_length=20, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["action", "created_at"]),
            models.Index(fields=["actor", "created_at"]),
            models.Index(fields=["outcome", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome} #{self.pk}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("Audit events are append-only: an event cannot be changed once written.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValueError("Audit events are append-only: only retention removes them, oldest first.")


class AuditChainHead(models.Model):
    """The end of the sealed chain (one row), and where it starts after retention removed its oldest events."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    pruned_through_seq = models.BigIntegerField(default=0)
    pruned_through_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        verbose_name = "audit chain head"

    def __str__(self) -> str:
        return f"audit chain at {self.seq}"


MAX_RETENTION_DAYS = 36_500


class RetentionPolicy(models.Model):
    class Category(models.TextChoices):
        SCORES = "scores", "scores"
        DERIVED_SCORES = "derived_scores", "derived scores"
        AUDIT_EVENTS = "audit_events", "audit events"
        SECURITY_EVENTS = "security_events", "security events"
        EXPIRED_TOKENS = "expired_tokens", "expired tokens and grants"
        EXPORT_FILES = "export_files", "finished export files"

    category = models.CharField(max_length=32, choices=Category.choices, unique=True)
    # A run deletes what was created before now minus `days`: a period reaching back before year 1 cannot be
    # reckoned (every run failed on it), and "keep for ever" is what disabling the policy says.
    days = models.PositiveIntegerField(
        validators=[
            MaxValueValidator(
                MAX_RETENTION_DAYS,
                message=f"At most {MAX_RETENTION_DAYS} days (100 years); to keep records for ever, disable the policy.",
            )
        ],
        help_text="Keep records of this category this many days, then delete them.",
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["category"]

    def __str__(self) -> str:
        return f"{self.get_category_display()}: {self.days} days"


class RetentionRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    duration_ms = models.FloatField(default=0)
    dry_run = models.BooleanField(default=False)
    removed = models.JSONField(default=dict, help_text="Rows removed (or, in a dry run, that would be) per category.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"retention run {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class DataSubjectRequestQuerySet(models.QuerySet):
    def with_archive_dates(self) -> DataSubjectRequestQuerySet:
        """The requests with their export archive's size and dates (a download link, a column), never its content:
        a ZIP of megabytes per row."""
        return self.select_related("archive").defer("archive__content")


class DataSubjectRequest(models.Model):
    class Kind(models.TextChoices):
        EXPORT = "export", "export"
        ERASURE = "erasure", "erasure"

    class Status(models.TextChoices):
        PENDING = "pending", "awaiting approval"
        SCHEDULED = "scheduled", "scheduled"
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        CANCELLED = "cancelled", "cancelled"
        FAILED = "failed", "failed"

    OPEN = (Status.PENDING, Status.SCHEDULED, Status.RUNNING)

    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="privacy_requests"
    )
    subject_pseudonym = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    requested_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(help_text="The legal deadline: one month after the request.")
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="When an approved request runs.")
    completed_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The administrator who filed the request for the person; empty when the person filed it.",
    )
    via = models.CharField(max_length=20, default="privacy page")
    note = models.CharField(max_length=500, blank=True)

    objects = DataSubjectRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "data-subject request"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} request #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    @property
    def filed_by_administrator(self) -> bool:
        """Whether someone other than the person filed it (the administrator may since have left: then
        `filed_by` is empty but `via` still says where it was filed)."""
        return self.filed_by_id is not None or self.via == "admin"

    @property
    def is_overdue(self) -> bool:
        return self.is_open and self.due_at < timezone.now()


class ExportArchive(models.Model):
    """The ZIP of a finished export, kept in the database (every web and worker process can reach it) until it
    expires and retention purges it."""

    request = models.OneToOneField(DataSubjectRequest, on_delete=models.CASCADE, related_name="archive")
    content = models.BinaryField()
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    downloads = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"export of request #{self.request_id}"
