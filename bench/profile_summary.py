"""Summarise a py-spy ``raw`` (collapsed stacks) profile of the gateway: where the time of a request goes.

``python bench/profile_summary.py py-spy.txt [--cpu-us 400]`` prints the same tables run.py does:

* by layer: each sample goes to the innermost frame of a known package (uvicorn, Starlette, bffgate,
  the aiohttp client, ...); standard-library frames count for the package that called them (so
  ``urllib.parse.quote`` inside ``normalize_path`` is bffgate's cost); a sample with nothing but the
  start-up frames is the event loop itself (uvloop's C code: epoll, socket reads, callbacks);
* bffgate's functions, inclusive (everything they call, the aiohttp client included);
* the hottest functions by self time (C calls such as ``transport.write`` count for their caller).

Percentages are of the samples taken while the gateway's thread was busy; ``--cpu-us`` (the gateway's
CPU time per request, measured without the profiler) turns them into microseconds per request.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAYERS = {
    "uvicorn": "uvicorn: HTTP server (httptools callbacks, ASGI send, socket writes)",
    "starlette": "Starlette: middleware, routing, Request/Headers/cookies",
    "bffgate": "bffgate: session, CSRF, URL check, header filters, metrics calls",
    "bffgate.http1": "bffgate.http1: upstream request and answer (httptools parser)",
    "aiohttp": "aiohttp client (+ yarl, multidict): upstream request and response",
    "yarl": "aiohttp client (+ yarl, multidict): upstream request and response",
    "multidict": "aiohttp client (+ yarl, multidict): upstream request and response",
    "propcache": "aiohttp client (+ yarl, multidict): upstream request and response",
    "aiohappyeyeballs": "aiohttp client (+ yarl, multidict): upstream request and response",
    "prometheus_client": "prometheus_client: counters",
    "joserfc": "sealing crypto (joserfc, cryptography)",
    "cryptography": "sealing crypto (joserfc, cryptography)",
}
EVENT_LOOP = "event loop itself (uvloop C code: epoll, socket reads, callbacks)"
ROOT_FILES = ("bffgate/cli.py", "uvicorn/main.py", "uvicorn/_compat.py", "asyncio/runners.py", "bffgate")
ROOT_FUNCTIONS = ("Server.run", "<module>")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[str, str]:
    """The same table as aligned text (terminal) and as markdown (results.md)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    text = [line, "  ".join("-" * w for w in widths)]
    text += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    md = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(text), "\n".join(md)


def parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return match["func"], match["file"]


def package(file: str) -> str:
    """The top-level package of a py-spy file name (``aiohttp/client.py`` → ``aiohttp``)."""
    if file.startswith("<attrs generated methods "):  # attrs' generated __init__ of an aiohttp class
        return file.removeprefix("<attrs generated methods ").split(".", 1)[0]
    if file == "bffgate/http1.py":  # the upstream client is a layer of its own, like aiohttp's
        return "bffgate.http1"
    return file.split("/", 1)[0] if "/" in file else ""


def is_root(func: str, file: str) -> bool:
    return file in ROOT_FILES or func in ROOT_FUNCTIONS


def load(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    samples = []
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            samples.append(([parse_frame(f) for f in stack.split(";")], int(count)))
    return samples


def layer_of(frames: Sequence[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        if is_root(func, file):
            continue
        name = package(file)
        if name in LAYERS:
            return LAYERS[name]
    return EVENT_LOOP


@dataclass
class Profile:
    """Samples per layer, per bffgate function (inclusive) and per function (self), plus the scale."""

    total: int
    per_request_us: float
    layers: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    self_time: Counter[str] = field(default_factory=Counter)

    def us(self, samples: int) -> float:
        return samples / self.total * self.per_request_us if self.total else 0.0


def analyse(raw: str, per_request_us: float) -> Profile:
    samples = load(raw)
    profile = Profile(sum(n for _, n in samples), per_request_us)
    for frames, n in samples:
        profile.layers[layer_of(frames)] += n
        func, file = frames[-1]
        profile.self_time[f"{func} ({file})"] += n
        seen = {
            f"{f} ({p})"
            for f, p in frames
            if package(p) in ("bffgate", "bffgate.http1") and not is_root(f, p) and p != "bffgate"
        }
        for name in seen:
            profile.inclusive[name] += n
    return profile


def summarise(
    raw: str,
    *,
    requests_per_s: float,
    cpu_us_per_request: float | None = None,
    label: str = "small JSON, 32 connections",
) -> tuple[str, str]:
    """(text, markdown) summary of a py-spy raw profile taken under load."""
    per_request = cpu_us_per_request or (1e6 / requests_per_s if requests_per_s else 0.0)
    profile = analyse(raw, per_request)
    total = profile.total
    if not total:
        return f"profile ({label}): no samples", f"### Profile ({label})\n\nno samples"

    def share(n: int) -> tuple[str, str]:
        return f"{n / total * 100:.1f}%", f"{profile.us(n):.0f}" if per_request else "-"

    layer_rows = [[name, *share(n)] for name, n in profile.layers.most_common()]
    bff_rows = [[name, *share(n)] for name, n in profile.inclusive.most_common(18)]
    self_rows = [[name, *share(n)] for name, n in profile.self_time.most_common(20)]
    basis = (
        f"{total} samples of the busy gateway thread; µs/request = share x {per_request:.0f} µs, the gateway's "
        "CPU per request measured without the profiler"
        if cpu_us_per_request
        else f"{total} samples of the busy gateway thread; µs/request = share x 1/req/s of the profiled run "
        f"({requests_per_s:,.0f} req/s, the gateway's core being saturated)"
    )
    parts = [
        ("Where the gateway's CPU goes, by layer", ["layer", "share", "µs/request"], layer_rows),
        (
            "bffgate's functions, inclusive (with what they call)",
            ["function", "share", "µs/request"],
            bff_rows,
        ),
        ("Hottest functions, self time", ["function", "share", "µs/request"], self_rows),
    ]
    return render(f"Profile (py-spy, {label})", basis, parts, label)


def compare(
    gateway_raw: str, gateway_us: float, base_raw: str, base_us: float, base_name: str
) -> tuple[str, str]:
    """What the gateway spends beyond a bare proxy on the same stack, by layer and by function."""
    gw, base = analyse(gateway_raw, gateway_us), analyse(base_raw, base_us)
    if not gw.total or not base.total:
        return "", ""
    layer_rows = []
    for name in sorted(set(gw.layers) | set(base.layers), key=lambda n: -gw.layers[n]):
        ours, theirs = gw.us(gw.layers[name]), base.us(base.layers[name])
        layer_rows.append([name, f"{ours:.0f}", f"{theirs:.0f}", f"{ours - theirs:+.0f}"])
    layer_rows.append(["total (CPU µs/request, measured)", f"{gateway_us:.0f}", f"{base_us:.0f}"])
    layer_rows[-1].append(f"{gateway_us - base_us:+.0f}")
    extra = {
        name: gw.us(gw.self_time[name]) - base.us(base.self_time[name])
        for name in set(gw.self_time) | set(base.self_time)
    }
    top = sorted(extra.items(), key=lambda item: -item[1])[:20]
    function_rows = [
        [name, f"{gw.us(gw.self_time[name]):.0f}", f"{base.us(base.self_time[name]):.0f}", f"{diff:+.0f}"]
        for name, diff in top
    ]
    basis = (
        f"both profiled under the same load (small JSON, 32 connections); µs/request = share of samples x "
        f"each server's measured CPU per request ({gw.total} and {base.total} samples)"
    )
    parts = [
        (
            f"bffgate vs {base_name}, by layer (µs/request)",
            ["layer", "bffgate", base_name, "extra"],
            layer_rows,
        ),
        (
            "Largest extra self time per function (µs/request)",
            ["function", "bffgate", base_name, "extra"],
            function_rows,
        ),
    ]
    return render(f"What bffgate adds to a bare {base_name} proxy", basis, parts, "")


def render(
    title: str, basis: str, parts: Sequence[tuple[str, list[str], list[list[str]]]], label: str
) -> tuple[str, str]:
    text = [f"{title}: {basis}"]
    md = [f"### {title}", "", basis]
    for heading, headers, rows in parts:
        plain, markdown = table(headers, rows)
        text += ["", heading, plain]
        md += ["", f"#### {heading}" + (f" ({label})" if label else ""), "", markdown]
    return "\n".join(text), "\n".join(md)


def main() -> None:
    parser = argparse.ArgumentParser(description="summarise a py-spy raw profile of the gateway")
    parser.add_argument("raw", type=Path)
    parser.add_argument("--cpu-us", type=float, help="gateway CPU µs per request (unprofiled)")
    parser.add_argument("--rps", type=float, default=0.0, help="requests/s during the profiled run")
    parser.add_argument("--label", default="small JSON, 32 connections")
    args = parser.parse_args()
    text, _ = summarise(
        args.raw.read_text(), requests_per_s=args.rps, cpu_us_per_request=args.cpu_us, label=args.label
    )
    print(text)


if __name__ == "__main__":
    main()
