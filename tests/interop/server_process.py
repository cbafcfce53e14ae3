"""A real API server (gunicorn, node, ...) as a child process on an ephemeral loopback port.

The server is told to bind port 0 and the port is read from the line it logs once it listens, so no
port is guessed and nothing is polled. Its output is kept in a log file (pytest's tmp dir) for when a
test fails, and it is stopped by its own PID.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

START_TIMEOUT = 60.0


def require_program(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{why} need {name} on PATH (scripts/test-services installs it)")
    return path


def npm_ci(directory: Path, package: str) -> None:
    """Install the pinned lock file of ``directory`` (into its ignored node_modules) unless done."""
    if not (directory / "node_modules" / package).is_dir():
        npm = require_program("npm", "the Node.js interop peers")
        subprocess.run(  # fixed arguments, the pinned lock file
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory, check=True
        )


class ServerProcess:
    """``argv`` run in ``cwd`` with ``env`` added to a clean copy of ours; ``listening`` is a pattern
    whose first group is the port, matched against each line the server writes (stdout or stderr)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        listening: str,
        log_path: Path,
    ) -> None:
        self._argv = list(argv)
        self._cwd = cwd
        self._env = {**_clean_environment(), **env}
        self._listening = re.compile(listening)
        self.log_path = log_path
        self._process: subprocess.Popen[str] | None = None
        self._copy: threading.Thread | None = None
        self._log: IO[str] | None = None

    def start(self) -> str:
        """Start the server; its base URL (``http://127.0.0.1:PORT``) once it listens."""
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(  # fixed arguments chosen by the peer
            self._argv,
            cwd=self._cwd,
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            port = self._read_port()
        except BaseException:
            self.stop()
            raise
        # Keep copying what it prints, so that a full pipe never blocks it and the log stays complete.
        self._copy = threading.Thread(target=self._copy_output, daemon=True)
        self._copy.start()
        return f"http://127.0.0.1:{port}"

    def _read_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None and self._log is not None
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self._process.stdout.readline()
                if not line:  # it exited
                    break
                self._log.write(line)
                if match := self._listening.search(line):
                    self._log.flush()
                    return int(match.group(1))
        raise RuntimeError(f"{self._argv[0]} did not start listening; see {self.log_path}")

    def _copy_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if self._log is not None:
                self._log.write(line)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if self._copy is not None:
                self._copy.join(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


def _clean_environment() -> dict[str, str]:
    """Our environment without the gateway's settings (a peer must not see them)."""
    prefixes = ("BFF_", "ETLS_", "REMOTE_", "REDIS_", "OIDC_")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
