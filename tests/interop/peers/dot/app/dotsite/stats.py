"""Test-only: the calls DOT's token and revocation endpoints answered, by grant type and status."""

import threading
from collections import Counter
from urllib.parse import parse_qs

# The paths of DOT's TokenView and RevokeTokenView under the "o/" prefix (urls.py).
COUNTED = {"/o/token/": "grant_type", "/o/revoke_token/": "token_type_hint"}
_lock = threading.Lock()
_calls = Counter()


def snapshot():
    with _lock:
        return dict(_calls)


class TokenEndpointStats:
    """Counts ``"refresh_token 200"``, ``"authorization_code 200"``, ``"revoke refresh_token 200"``..."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        field = COUNTED.get(request.path)
        if field is None or request.method != "POST":
            return self.get_response(request)
        # request.body first: it is kept, so DOT can still read request.POST afterwards.
        value = parse_qs(request.body.decode("latin-1")).get(field, ["?"])[0]
        name = value if field == "grant_type" else f"revoke {value}"
        response = self.get_response(request)
        with _lock:
            _calls[f"{name} {response.status_code}"] += 1
        return response
