from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Readiness of its dependencies is a separate check."""
    return JsonResponse({"status": "ok"})
