"""Test-only endpoints: counters, the passing of time for access tokens, a user withdrawing access."""

from datetime import timedelta

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from . import stats as token_stats


def stats(request: HttpRequest) -> HttpResponse:
    """Token and revocation calls by kind and status, and how many refresh tokens are still live."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    live = get_refresh_token_model().objects.filter(revoked__isnull=True).count()
    return JsonResponse({"calls": token_stats.snapshot(), "live_refresh_tokens": live})


def reset(request: HttpRequest) -> HttpResponse:
    """A clean slate for the next test: counters at zero, every earlier grant revoked."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _revoke_refresh_tokens()
    token_stats.reset()
    return JsonResponse({})


def expire_access(request: HttpRequest) -> HttpResponse:
    """Every access token expires now, as if its lifetime had passed (refresh tokens stay valid)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    past = timezone.now() - timedelta(seconds=1)
    expired = get_access_token_model().objects.filter(expires__gt=past).update(expires=past)
    return JsonResponse({"expired": expired})


def revoke_refresh(request: HttpRequest) -> HttpResponse:
    """The user withdraws the app's access: DOT's own ``revoke()`` on every live refresh token."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return JsonResponse({"revoked": _revoke_refresh_tokens()})


def _revoke_refresh_tokens() -> int:
    tokens = list(get_refresh_token_model().objects.filter(revoked__isnull=True))
    for token in tokens:
        token.revoke()  # also revokes its access token
    return len(tokens)
