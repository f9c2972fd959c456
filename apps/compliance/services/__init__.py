"""Data-subject rights: what is held about a person and the requests for it (requests.py), their export
(export.py) and their erasure (erasure.py)."""

from __future__ import annotations

from apps.compliance.services.erasure import SUPERSEDED, subject_erase
from apps.compliance.services.export import subject_export_build, subject_export_download
from apps.compliance.services.requests import (
    RESPONSE_DEADLINE,
    RequestRefused,
    subject_inventory,
    subject_request_approve,
    subject_request_cancel,
    subject_request_create,
    subject_request_is_due,
    subject_request_run,
    subject_requests_run_due,
)

__all__ = [
    "RESPONSE_DEADLINE",
    "SUPERSEDED",
    "RequestRefused",
    "subject_erase",
    "subject_export_build",
    "subject_export_download",
    "subject_inventory",
    "subject_request_approve",
    "subject_request_cancel",
    "subject_request_create",
    "subject_request_is_due",
    "subject_request_run",
    "subject_requests_run_due",
]
