"""``EchoProcess``: a ``python -m pilotfish.echo`` subprocess on a port of its own choosing."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from types import TracebackType
from typing import IO, Any

from harness import http
from harness.processes import read_line, stop_process


class EchoProcess:
    """One echo server in a child process; a context manager that always stops it.

    The server binds port 0 and reports ``READY <port>``, so there is no free-port race.
    Instances are one-shot: ``start`` once, ``stop`` as often as you like.
    """

    def __init__(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        delay: float = 0.0,
        fail_rate: float = 0.0,
        fail_status: int = 503,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.name = name
        self._requested_port = port  # 0: any free port
        self.labels = dict(labels or {})
        self.host = host
        self._args = ["--delay", str(delay), "--fail-rate", str(fail_rate), "--fail-status", str(fail_status)]
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_final = ""
        self._port: int | None = None

    def start(self, timeout: float = 10.0) -> EchoProcess:
        """Spawn the server and wait for its READY line."""
        if self._proc is not None:
            raise RuntimeError(f"echo {self.name!r} already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed in stop()
        self._proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            line = read_line(self._proc, timeout)
            word, _, port = line.partition(" ")
            if word != "READY" or not port.isdigit():
                raise RuntimeError(f"unexpected first line {line!r}")
            self._port = int(port)
        except (RuntimeError, TimeoutError, EOFError) as exc:
            self.stop()
            raise RuntimeError(f"echo {self.name!r} did not start: {exc}\n{self.stderr_text()}") from exc
        return self

    def _command(self) -> list[str]:
        labels = ",".join(f"{key}={value}" for key, value in self.labels.items())
        identity = ["--name", self.name, "--labels", labels]
        return [
            sys.executable,
            "-m",
            "pilotfish.echo",
            *identity,
            "--port",
            str(self._requested_port),
            "--host",
            self.host,
            *self._args,
        ]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"echo {self.name!r} is not running")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"echo {self.name!r} was never started")
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(
        self, *, delay: float | None = None, fail_rate: float | None = None, fail_status: int | None = None
    ) -> dict[str, Any]:
        """Change fault settings at runtime; only the given ones change. Returns the settings in force."""
        changes = {"delay": delay, "fail_rate": fail_rate, "fail_status": fail_status}
        document = {key: value for key, value in changes.items() if value is not None}
        response = http.post_json(f"{self.url}/__echo/config", document)
        if response.status != 200:
            raise RuntimeError(f"echo {self.name!r} rejected {document}: {response.body}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        """``{"requests": N, "by_status": {"200": n, ...}}`` counted by the server itself."""
        return http.get(f"{self.url}/__echo/stats").json()

    def stderr_text(self) -> str:
        """What the server wrote to stderr (tracebacks); still available after ``stop``."""
        if self._stderr is None:
            return self._stderr_final
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def stop(self) -> int | None:
        """Stop and reap the server and release its pipes; safe to call more than once.

        Returns the exit code (0 after a clean SIGTERM), or None if it was never started.
        """
        if self._proc is None:
            return None
        code = stop_process(self._proc)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._stderr is not None:
            self._stderr_final = self.stderr_text()
            self._stderr.close()
            self._stderr = None
        self._port = None
        return code

    def __enter__(self) -> EchoProcess:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EchoProcess(name={self.name!r}, port={self._port})"
