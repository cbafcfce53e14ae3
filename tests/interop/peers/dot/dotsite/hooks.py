"""Test-only endpoints: the token-endpoint counters, and the passing of time for access tokens."""

from datetime import timedelta

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from . import stats as token_stats


def stats(request: HttpRequest) -> HttpResponse:
    """``{"refresh_token 200": 1, ...}``: token-endpoint calls by grant type and status."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    return JsonResponse(token_stats.snapshot())


def expire_access(request: HttpRequest) -> HttpResponse:
    """Every access token expires now, as if its lifetime had passed (refresh tokens stay valid)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    past = timezone.now() - timedelta(seconds=1)
    expired = get_access_token_model().objects.filter(expires__gt=past).update(expires=past)
    return JsonResponse({"expired": expired})
