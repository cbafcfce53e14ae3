"""The protected API: a plain Django view that DOT guards, as its docs show.

``ProtectedResourceMetadataView`` is DOT's RFC 9728 variant of ``ProtectedResourceView``: a missing,
expired or revoked token gets ``401`` with ``WWW-Authenticate: Bearer`` (the plain view answers a bare
``403``, which tells no client to refresh).
"""

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views.generic import ProtectedResourceMetadataView


@method_decorator(csrf_exempt, name="dispatch")  # Bearer-token API: no session cookie, no CSRF token
class Echo(ProtectedResourceMetadataView):  # type: ignore[misc]
    """What the API received: method, path, query and body, and the token's user."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        return JsonResponse(_seen(request, body=None))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        return JsonResponse(_seen(request, body=json.loads(request.body or b"null")))


def _seen(request: HttpRequest, body: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "query": {key: request.GET.getlist(key) for key in request.GET},
        "user": request.resource_owner.username,
        "body": body,
    }
