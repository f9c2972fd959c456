"""Administrators' pages of the compliance app that are not a model's list: the readable compliance report."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.compliance import reports
from apps.core.errors import ApplicationError
from apps.security.staff_otp import staff_verified_required

# The report's own fields, shown in its heading rather than as a section.
_HEADING = ("report_type", "start_date", "end_date", "generated_at")


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _rows(value: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """A section's rows: one per key, a nested mapping's keys indented below their parent."""
    rows: list[dict[str, Any]] = []
    for key, item in value.items():
        if isinstance(item, dict):
            rows.append({"label": _label(key), "value": "" if item else "none", "depth": depth})
            rows.extend(_rows(item, depth + 1))
        else:
            rows.append({"label": _label(key) if depth == 0 else key, "value": _cell(item), "depth": depth})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(each) for each in value) or "none"
    return str(value)


def report_sections(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report (apps.compliance.reports.report_build) as titled sections of rows: each top-level mapping is a
    section, the top-level numbers form a "Summary" section first."""
    body = {key: value for key, value in report.items() if key not in _HEADING}
    summary = {key: value for key, value in body.items() if not isinstance(value, dict)}
    sections = [{"title": "Summary", "rows": _rows(summary)}] if summary else []
    sections += [
        {"title": _label(key), "rows": _rows(value) or [{"label": "none", "value": "", "depth": 0}]}
        for key, value in body.items()
        if isinstance(value, dict)
    ]
    return sections


@staff_verified_required
def report_page(request: HttpRequest) -> HttpResponse:
    """The same reports as POST /compliance/report, readable and printable in the admin's look, or as a JSON
    download (`format=json`), for administrators (linked from the admin)."""
    report, error = None, None
    if request.GET.get("report_type"):
        try:
            report = reports.report_build(
                report_type=request.GET["report_type"],
                start_date=request.GET.get("start_date", ""),
                end_date=request.GET.get("end_date", ""),
            )
        except ApplicationError as exc:
            error = exc.message
    if report is not None and request.GET.get("format") == "json":
        response = HttpResponse(json.dumps(report, indent=2), content_type="application/json")
        name = f"{report['report_type']}-report-{report['start_date']}-{report['end_date']}.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    query = request.GET.copy()
    query["format"] = "json"
    return render(
        request,
        "compliance/report.html",
        {
            **admin.site.each_context(request),
            "report": report,
            "sections": report_sections(report) if report else [],
            "generated": datetime.fromisoformat(report["generated_at"]) if report else None,
            "json_url": f"{request.path}?{query.urlencode()}",
            "error": error,
            "form": request.GET,
            "title": "Compliance report",
        },
    )
