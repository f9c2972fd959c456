"""Admin pages that are not a model's list: circuit breakers (their state lives in Redis, not in a table)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin import site
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from apps.security import breakers
from apps.security.groups import GROUPS


@permission_required("security.manage_circuit_breakers", raise_exception=True)
def breakers_view(request: HttpRequest) -> HttpResponse:
    """Each tool group's breaker (state, failures) with a reset button; POST `group` (or `all`) resets."""
    if request.method == "POST":
        group = request.POST.get("group", "")
        chosen = list(GROUPS) if group == "all" else [group] if group in GROUPS else []
        if not chosen:
            messages.error(request, f"Unknown breaker {group!r}.")
        for name in chosen:
            breakers.breaker_reset(name)
        if chosen:
            messages.success(request, f"Reset: {', '.join(chosen)}. Calls to those tools are let through again.")
        return HttpResponseRedirect(reverse("admin-breakers"))
    context = {
        **site.each_context(request),
        "title": "Circuit breakers",
        "breakers": sorted(breakers.breaker_states().items()),
    }
    return render(request, "admin/security/breakers.html", context)
