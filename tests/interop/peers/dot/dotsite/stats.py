"""Test-only: how many calls DOT's token endpoint answered, by grant type and status."""

import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import parse_qs

from django.http import HttpRequest, HttpResponse

TOKEN_PATH = "/o/token/"
_lock = threading.Lock()
_calls: Counter[str] = Counter()


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_calls)


class TokenEndpointStats:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path != TOKEN_PATH or request.method != "POST":
            return self.get_response(request)
        # request.body first: it is kept, so DOT can still read request.POST afterwards.
        grant = parse_qs(request.body.decode("latin-1")).get("grant_type", ["?"])[0]
        response = self.get_response(request)
        with _lock:
            _calls[f"{grant} {response.status_code}"] += 1
        return response
