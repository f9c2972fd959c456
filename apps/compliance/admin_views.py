"""Administrators' pages of the compliance app that are not a model's list: the readable compliance report."""

from __future__ import annotations

import json

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.compliance import reports
from apps.core.errors import ApplicationError


@staff_member_required
def report_page(request: HttpRequest) -> HttpResponse:
    """The same reports as POST /compliance/report, readable, for administrators (linked from the admin)."""
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
    return render(
        request,
        "compliance/report.html",
        {
            "report": report,
            "report_json": json.dumps(report, indent=2) if report else "",
            "error": error,
            "form": request.GET,
            "title": "Compliance report",
        },
    )
