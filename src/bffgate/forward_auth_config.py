"""``bffgate forward-auth-config nginx|caddy``: a front proxy's configuration for the current settings.

The front proxy serves the browser on ``listen``: ``/api/auth/…`` (login, logout, user) goes to
bffgate, each route's prefix (``ROUTES``) to its upstream and everything else under ``prefix`` to
``REMOTE_API`` (prefix removed), once bffgate said yes and handed over the Bearer token (or, for a
route whose rule gives none, no Authorization at all). With routes, nginx's decision cache is keyed
on the URI's path too: the route decides which token goes. bffgate's decision endpoint itself is
never reachable from outside: whoever can call it with a session cookie gets that session's token.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import Settings
from .forward_auth import COOKIE_SLOT_HEADER, FORWARD_AUTH_PATH

AUTH_PREFIX = "/api/auth/"
# Browser headers that routers and frameworks behind the proxy take as the word of a trusted hop
# (where the request came from, what URL or method it "really" had): removed on the way to the API,
# as bffgate's own proxy does by family (proxy.TRUSTED_HOP_*). The front proxy writes its own
# X-Forwarded-For / -Proto / -Host.
TRUSTED_HOP_HEADERS = (
    "Forwarded",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Method",
    "X-Forwarded-Uri",
    "X-Forwarded-Ssl",
    "X-Original-URL",
    "X-Original-URI",
    "X-Original-Method",
    "X-Original-Host",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "X-Real-IP",
    "True-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Host",
)
# How many Set-Cookie lines one decision can carry: the Redis store's one ticket; the cookie store's
# three cookies, each split into up to eight chunks plus the expiry of its other form.
REDIS_COOKIE_SLOTS = 1
COOKIE_STORE_COOKIE_SLOTS = 3 * 9


@dataclass(frozen=True, slots=True)
class FrontProxy:
    """Where the front proxy listens, where bffgate is, and what it keeps its state in."""

    listen: str  # host:port
    bffgate: str  # host:port bffgate listens on (reachable only by the front proxy)
    prefix: str = "/api/"
    state_dir: str = "/var/lib/bffgate-front"  # pid file, logs, temporary files, decision cache

    @property
    def stripped_prefix(self) -> str:
        return self.prefix.rstrip("/")


def cookie_slots(settings: Settings) -> int:
    return COOKIE_STORE_COOKIE_SLOTS if settings.bff_session_store == "cookie" else REDIS_COOKIE_SLOTS


def _url_parts(url: str) -> tuple[str, str, str]:
    """A base URL as scheme, host:port and base path (without its trailing slash)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{parts.hostname}:{port}", parts.path.rstrip("/")


def _api_locations(settings: Settings, front: FrontProxy) -> list[tuple[str, str]]:
    """(prefix, upstream base URL): the routes (``ROUTES``) first, then ``--prefix`` → ``REMOTE_API``.

    The front proxy does the proxying, so each route gets its own location to its own API; bffgate
    judges the original URI by the same prefixes and hands over the route's token (or none)."""
    return [(route.prefix, route.upstream) for route in settings.routes] + [
        (front.prefix, settings.remote_api)
    ]


def _stripped(settings: Settings) -> list[str]:
    """Browser headers the API never gets: the trusted-hop ones, and the routes' claim headers
    (``X-User-Id``…), which bffgate's own proxy sets itself and a forward-auth recipe does not pass:
    the API must not take a browser's word for them."""
    claims = sorted({name for route in settings.routes for name in route.claim_headers})
    return [*TRUSTED_HOP_HEADERS, *claims]


def nginx_config(settings: Settings, front: FrontProxy) -> str:
    """A complete nginx.conf: ``auth_request`` asks bffgate, ``proxy_cache`` keeps its "yes" briefly."""
    slots = range(cookie_slots(settings))
    state = front.state_dir
    take_cookies = "\n".join(
        f"            auth_request_set $bffgate_cookie_{i} $upstream_http_"
        f"{(COOKIE_SLOT_HEADER + str(i)).lower().replace('-', '_')};"
        for i in slots
    )
    clear_hops = "\n".join(f'            proxy_set_header {name} "";' for name in _stripped(settings))
    give_cookies = "\n".join(f"            add_header Set-Cookie $bffgate_cookie_{i} always;" for i in slots)
    upstreams = []
    locations = []
    for index, (prefix, base) in enumerate(_api_locations(settings, front)):
        scheme, api_host, api_path = _url_parts(base)
        name = "bffgate_api" if prefix == front.prefix else f"bffgate_route_{index}"
        upstreams.append(
            f"""    upstream {name} {{
        server {api_host};
        keepalive 64;
    }}"""
        )
        locations.append(
            _nginx_api_location(
                prefix, f"{scheme}://{name}{api_path}/", take_cookies, clear_hops, give_cookies
            )
        )
    routed = bool(settings.routes)
    # With routes the decision depends on the path (the route's token rule): the key holds it.
    key = "$request_method|$http_cookie|$http_x_csrf|$http_origin" + ("|$bffgate_uri_path" if routed else "")
    path_map = (
        """
    # The original URI's path without the query: a route's decision depends on it.
    map $request_uri $bffgate_uri_path {
        "~^(?<bffgate_path>[^?]*)" $bffgate_path;
    }
"""
        if routed
        else ""
    )
    key_note = ", the CSRF proof (X-CSRF, Origin)" + (" and the URI's path (routes)" if routed else "")
    ask = """proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            # Only nginx names the original request: never the browser (an empty value is not sent).
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""
    head = f"""# nginx in front, bffgate deciding: generated by `bffgate forward-auth-config nginx`.
# nginx moves every byte; bffgate ({front.bffgate}) only answers "may this request go on, and with
# which Bearer token". Only nginx may reach bffgate: its decision endpoint hands out tokens.
"""
    return head + nginx_file(
        state,
        f"""    # Decisions hold Bearer tokens: this directory must be readable by nginx's user only.
    proxy_cache_path {state}/decisions levels=1:2 keys_zone=bffgate_decisions:10m max_size=64m
                     inactive=60s use_temp_path=off;

    # The API's answers are to session-authenticated calls: shared caches keep nothing of them unless
    # the API said public (bffgate's own proxy does the same), and nothing that sets cookies.
    map $upstream_http_cache_control $bffgate_shared_safe {{
        "~*(^|,)\\s*(public|no-store|private)\\s*(=|,|$)" $upstream_http_cache_control;
        "" "private";
        default "private, $upstream_http_cache_control";
    }}
    map $bffgate_cookie_0 $bffgate_cache_control {{
        "" $bffgate_shared_safe;
        default "no-store";
    }}

    upstream bffgate {{
        server {front.bffgate};
        keepalive 64;
    }}
{chr(10).join(upstreams)}
{path_map}
    server {{
        listen {front.listen};

        # bffgate's decision endpoint answers with the session's token: never from outside.
        location = {FORWARD_AUTH_PATH} {{
            return 404;
        }}

        # Login, logout, user, OpenID Connect callback: bffgate itself.
        location {AUTH_PREFIX} {{
            proxy_pass http://bffgate;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}

{"".join(locations)}        location = /_bffgate/decide {{
            internal;
            proxy_pass http://bffgate{FORWARD_AUTH_PATH};
            {ask}
            # A "yes" is kept as long as bffgate says (X-Accel-Expires: never past the token's
            # refresh point), under everything the decision reads: the method, the session cookie{key_note}.
            # Answers that set cookies are never kept.
            proxy_cache bffgate_decisions;
            proxy_cache_key "{key}";
            # Kept decisions' files stay open: a HIT costs no open/fstat/close. Never a stale "yes": each
            # HIT reads the decision's expiry from the file, and a decision that replaced another is a
            # new file (a new inode), which nginx reopens. At most 1000 held open; those unused for 10 s
            # are closed as later requests pass.
            open_file_cache max=1000 inactive=10s;
        }}

        location @bffgate_answer {{
            rewrite ^ {FORWARD_AUTH_PATH} break;
            proxy_method GET;
            proxy_pass http://bffgate;
            {ask}
            proxy_hide_header Authorization;
        }}
    }}
""",
    )


def _nginx_api_location(
    prefix: str, target: str, take_cookies: str, clear_hops: str, give_cookies: str
) -> str:
    """One API location: ask bffgate, then proxy to ``target`` with the token it handed over.

    An empty ``$bffgate_authorization`` (a route's "yes" without a token) sends no Authorization at
    all: nginx leaves out a header whose value is empty, and the browser's own is replaced either way.
    """
    return f"""        location {prefix} {{
            auth_request /_bffgate/decide;
            auth_request_set $bffgate_authorization $upstream_http_authorization;
            auth_request_set $bffgate_decision_cache $upstream_cache_status;
{take_cookies}
            # The token goes to the API only; the API never sees the browser's cookies or X-CSRF.
            proxy_set_header Authorization $bffgate_authorization;
            proxy_set_header Cookie "";
            proxy_set_header X-CSRF "";
            # Headers only a trusted hop may set: nginx writes its own, the browser's never pass.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
{clear_hops}
            proxy_set_header Host $proxy_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass {target};
            # Cookies bffgate rotated (a refresh) go back to the browser; empty ones are not sent.
{give_cookies}
            proxy_hide_header Cache-Control;
            add_header Cache-Control $bffgate_cache_control always;
            add_header X-Bffgate-Decision-Cache $bffgate_decision_cache always;
            # A "no", or an answer auth_request cannot pass on (the login redirect, a 503): bffgate's
            # own answer, asked once more in full.
            error_page 401 403 500 = @bffgate_answer;
        }}

"""


def nginx_file(state_dir: str, http: str) -> str:
    """A complete nginx.conf around ``http`` (the ``http`` block's own lines): the process settings,
    with the pid file, the logs and every temporary path in ``state_dir``, so that an unprivileged
    nginx runs it with ``-p``. The recipe and the benchmark's plain ``proxy_pass`` share it."""
    return f"""worker_processes auto;
# Room for worker_connections (browser and upstream connections alike) and the decision files held open.
worker_rlimit_nofile 10240;
pid {state_dir}/nginx.pid;
error_log {state_dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {state_dir}/client_body;
    proxy_temp_path {state_dir}/proxy;
    fastcgi_temp_path {state_dir}/fastcgi;
    uwsgi_temp_path {state_dir}/uwsgi;
    scgi_temp_path {state_dir}/scgi;
{http}}}
"""


def caddy_config(settings: Settings, front: FrontProxy) -> str:
    """A complete Caddyfile: ``forward_auth`` asks bffgate on every request (Caddy keeps no cache)."""
    handles = "".join(
        _caddy_api_handle(prefix, base, front, _stripped(settings))
        for prefix, base in _api_locations(settings, front)
    )
    return f"""# Caddy in front, bffgate deciding: generated by `bffgate forward-auth-config caddy`.
# Caddy moves every byte; bffgate ({front.bffgate}) only answers "may this request go on, and with
# which Bearer token". Only Caddy may reach bffgate: its decision endpoint hands out tokens.
{{
    admin off
    auto_https off
    storage file_system {front.state_dir}/caddy
}}

http://{front.listen} {{
    # bffgate's decision endpoint answers with the session's token: never from outside.
    handle {FORWARD_AUTH_PATH} {{
        respond 404
    }}

    # Login, logout, user, OpenID Connect callback: bffgate itself.
    handle {AUTH_PREFIX}* {{
        reverse_proxy {front.bffgate}
    }}
{handles}}}
"""


def _caddy_api_handle(prefix: str, base: str, front: FrontProxy, stripped: list[str]) -> str:
    """One API prefix: ask bffgate, then proxy to ``base`` (prefix replaced by its path)."""
    scheme, api_host, api_path = _url_parts(base)
    transport = (
        "\n            transport http {\n                tls\n            }" if scheme == "https" else ""
    )
    rewrite = f"\n            rewrite * {api_path}{{uri}}" if api_path else ""
    clear_hops = "\n".join(f"            request_header -{name}" for name in stripped)
    return f"""
    handle {prefix}* {{
        route {{
            # Only bffgate's token reaches the API, never the browser's own Authorization.
            request_header -Authorization
            reverse_proxy {front.bffgate} {{
                method GET
                rewrite {FORWARD_AUTH_PATH}
                header_up X-Forwarded-Method {{method}}
                header_up X-Forwarded-Uri {{uri}}
                # Only Caddy names the original request: never the browser.
                header_up -X-Original-Method
                header_up -X-Original-URI
                # A "yes" with a token: the token goes onto the API request only; rotated cookies
                # to the browser.
                @token {{
                    status 2xx
                    header Authorization *
                }}
                handle_response @token {{
                    request_header Authorization {{rp.header.Authorization}}
                    copy_response_headers {{
                        include Set-Cookie
                    }}
                }}
                # A "yes" without one (a route with the rule none, or user-or-none without a
                # session): the API gets no Authorization header at all.
                @allowed status 2xx
                handle_response @allowed {{
                    copy_response_headers {{
                        include Set-Cookie
                    }}
                }}
            }}
            # The API never sees the browser's cookies or X-CSRF.
            request_header -Cookie
            request_header -X-CSRF
            # Headers only a trusted hop may set (Caddy writes X-Forwarded-For/-Proto/-Host itself).
{clear_hops}
            uri strip_prefix {prefix.rstrip("/")}{rewrite}
            # Shared caches keep nothing of the API's answers to session-authenticated calls.
            header ?Cache-Control private
            reverse_proxy {api_host} {{
                header_up Host {{upstream_hostport}}
                header_down Cache-Control "^(.+)$" "private, $1"{transport}
            }}
        }}
    }}
"""


def render(kind: str, settings: Settings, front: FrontProxy) -> str:
    return nginx_config(settings, front) if kind == "nginx" else caddy_config(settings, front)
