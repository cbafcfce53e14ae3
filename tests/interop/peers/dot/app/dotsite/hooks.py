"""Test-only endpoint: the counters of DOT's token and revocation endpoints, and live refresh tokens."""

from django.http import HttpResponseNotAllowed, JsonResponse
from oauth2_provider.models import get_refresh_token_model

from . import stats as token_stats


def stats(request):
    """``{"calls": {"refresh_token 200": 1, ...}, "live_refresh_tokens": n}``."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    live = get_refresh_token_model().objects.filter(revoked__isnull=True).count()
    return JsonResponse({"calls": token_stats.snapshot(), "live_refresh_tokens": live})
