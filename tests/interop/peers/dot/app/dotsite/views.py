"""The protected API: a plain Django view that DOT guards, as its docs show.

``ProtectedResourceMetadataView`` is DOT's RFC 9728 variant of ``ProtectedResourceView``: a missing,
expired or revoked token gets ``401`` with ``WWW-Authenticate: Bearer`` (the plain view answers a bare
``403``, which tells no client to refresh).
"""

import json

from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views.generic import ProtectedResourceMetadataView


@method_decorator(csrf_exempt, name="dispatch")  # Bearer-token API: no session cookie, no CSRF token
class Echo(ProtectedResourceMetadataView):
    """What the client sent, for the token's user."""

    def get(self, request, *args, **kwargs):
        return JsonResponse(_seen(request, None))

    def post(self, request, *args, **kwargs):
        return JsonResponse(_seen(request, json.loads(request.body or b"null")))


def _seen(request, body):
    return {
        "method": request.method,
        "query": request.META.get("QUERY_STRING", ""),
        "json": body,
        "user": request.resource_owner.get_username(),
    }
