"""Build bffgate's image with Debian's podman, the way a machine without Docker or registry access can.

The machine's podman cannot pull base images and needs a little configuration, so:

- ``containers.conf`` (via ``CONTAINERS_CONF``): runc, host networking, no default ulimits (setting
  them is refused here);
- the base image is made from Debian packages (``debootstrap`` of the host's release from the mirror
  apt already uses), trimmed and imported; the tarball is cached under ``~/.cache/bffgate/container``
  by a hash of what makes it, and podman keeps the imported image, so only the first run pays;
- pip inside the build cannot reach the package index, so the wheels are fetched on the host for the
  image's Python and platform into ``deploy/wheels`` and installed with ``--no-index``.

Not here: what the image must do (``test_image.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / "deploy" / "wheels"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bffgate" / "container"
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
netns = "host"

[engine]
runtime = "runc"
"""
BASE_PACKAGES = "python3,python3-venv,ca-certificates"  # python3-venv: the Containerfile's venv
# Left out of the base image: package caches and lists, documentation, translations.
TRIMMED = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
)


class PodmanUnavailable(Exception):
    """Podman cannot run containers on this machine; the message says why."""


@dataclass(frozen=True)
class Image:
    tag: str
    size_bytes: int
    build_seconds: float


def podman(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run podman with our containers.conf; ``check`` raises with podman's own error output."""
    result = subprocess.run(
        [shutil.which("podman") or "podman", *args],
        env=podman_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"podman {' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-3000:]}"
        )
    return result


def podman_environment() -> dict[str, str]:
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def check_podman() -> None:
    """Raise ``PodmanUnavailable`` unless podman and debootstrap are installed and podman works."""
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            raise PodmanUnavailable(f"{tool} is not installed (scripts/test-services installs it on Debian)")
    if os.geteuid() != 0:
        raise PodmanUnavailable(
            "debootstrap needs root to make the base image (make test runs as root in CI)"
        )
    _works("info", "--format", "{{.Host.OCIRuntime.Name}}")


def check_runs(image: str) -> None:
    """Raise ``PodmanUnavailable`` when podman cannot start a container of ``image`` at all."""
    _works("run", "--rm", "--entrypoint", "true", image)


def _works(*args: str) -> None:
    result = podman(*args, check=False, timeout=120)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PodmanUnavailable(f"podman cannot run here (podman {args[0]}): {last}")


def base_image() -> str:
    """The Debian base image's tag, made (or re-imported from the cached tarball) when missing."""
    release, mirror = _host_release(), _debian_mirror()
    key = hashlib.sha256(f"{release} {mirror} {BASE_PACKAGES} {TRIMMED}".encode()).hexdigest()[:12]
    tag = f"localhost/bffgate-base:{release}-{key}"
    with _locked(CACHE / "base.lock"):  # parallel test runs share one debootstrap
        if podman("image", "exists", tag, check=False).returncode == 0:
            return tag
        tarball = CACHE / f"base-{release}-{key}.tar"
        if not tarball.exists():
            _debootstrap(release, mirror, tarball)
        podman("import", "--quiet", str(tarball), tag)
    return tag


def _debootstrap(release: str, mirror: str, tarball: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        rootfs = Path(work) / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            release,
            str(rootfs),
            mirror,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        for path in TRIMMED:
            for entry in (rootfs / path).glob("*"):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            [shutil.which("tar") or "tar", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
            timeout=600,
        )
        partial.rename(tarball)  # only a complete tarball is ever found in the cache


def _host_release() -> str:
    fields: dict[str, str] = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    return fields.get("VERSION_CODENAME", "bookworm").strip('"') or "bookworm"


def _debian_mirror() -> str:
    """The Debian archive apt already uses (one-line or deb822 sources), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text(errors="replace") if source.is_file() else ""
        one_line: list[str] = re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        deb822: list[str] = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        for uri in one_line + deb822:
            if uri.rstrip("/").endswith("/debian"):  # the archive, not debian-security or others
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def fill_wheelhouse(base: str) -> None:
    """Wheels of bffgate's dependencies and build backend, for the base image's Python, in deploy/wheels.

    A stamp file records for which base image and requirements the folder is complete: later runs
    skip pip (seconds) until either changes.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    stamp, filled_for = WHEELS / ".filled-for", "\n".join([base, *requirements])
    if stamp.exists() and stamp.read_text() == filled_for:
        return
    target = podman(
        "run",
        "--rm",
        base,
        "python3",
        "-c",
        "import platform; print(platform.python_version(), platform.machine(), platform.libc_ver()[1])",
    ).stdout.split()
    python_version, machine, glibc = target
    options = _download_options(python_version, machine, glibc)
    with _locked(CACHE / "wheels.lock"):
        _pip_download(requirements, options)
        # pip judges markers such as python_full_version < "3.11.3" by the host's Python: add what
        # the image's Python needs on top, until nothing is missing.
        while missing := _missing_for(python_version):
            _pip_download(missing, options)
        stamp.write_text(filled_for)


def _download_options(python_version: str, machine: str, glibc: str) -> list[str]:
    major, minor = (int(part) for part in glibc.split(".")[:2])
    platforms = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    platforms += [f"manylinux{alias}_{machine}" for alias in ("2014", "2010", "1")]
    return [
        "--only-binary", ":all:", "--implementation", "cp", "--python-version", python_version,
        *(option for platform in platforms for option in ("--platform", platform)),
    ]  # fmt: skip


def _pip_download(requirements: Sequence[str], options: Sequence[str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(WHEELS), *options, *requirements],
        check=True,
        timeout=600,
        capture_output=True,
    )


def _missing_for(python_version: str) -> list[str]:
    """Requirements of the wheels in deploy/wheels that hold for ``python_version`` but have no wheel."""
    environment: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "python_version": ".".join(python_version.split(".")[:2]),
        "python_full_version": python_version,
        "extra": "",
    }
    wheels = list(WHEELS.glob("*.whl"))
    present = {canonicalize_name(wheel.name.split("-")[0]) for wheel in wheels}
    missing: dict[str, str] = {}
    for wheel in wheels:
        for requirement in _requires_dist(wheel):
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name not in present:
                requirement.marker = None
                missing[name] = str(requirement)
    return list(missing.values())


def _requires_dist(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [
        Requirement(line.partition(":")[2].strip()) for line in lines if line.startswith("Requires-Dist:")
    ]


def build_image(base: str) -> Image:
    """Build the Containerfile from the repository root with the wheels in deploy/wheels only."""
    tag = f"localhost/bffgate-test:{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"  # one per checkout
    previous = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    started = time.monotonic()
    podman(
        "build", "--quiet", "--format", "docker",  # docker format: OCI images drop HEALTHCHECK
        "--build-arg", f"BASE={base}", "--build-arg", "PIP_OPTIONS=--no-index",
        "--file", str(ROOT / "Containerfile"), "--tag", tag, str(ROOT),
    )  # fmt: skip
    build_seconds = time.monotonic() - started
    built = podman("image", "inspect", "--format", "{{.Id}} {{.Size}}", tag).stdout.split()
    if previous and previous != built[0]:
        podman("rmi", previous, check=False)  # the last build of this checkout, now untagged
    return Image(tag, int(built[1]), build_seconds)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
