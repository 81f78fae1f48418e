"""``make demo`` as a test runs it: examples/demo.py on free ports (``--free-ports``), with the
admin API's RBAC on (an admin and a read-only viewer token), read through its printed banner.

The demo keeps bookinfo's fixed loopback addresses (127.0.0.10-31, 127.0.1.x) and httpbin's
127.0.16.10: run tests that use it under ``flock /work/wt/e2e.lock`` next to other bookinfo tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.processes import stop_process

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
BANNER_END = "Ctrl-C stops everything."


@dataclass
class Demo:
    workdir: Path
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    viewer_token: str = field(default_factory=lambda: secrets.token_hex(16))
    banner: str = ""
    admin_port: int = 0
    config: Path = Path()
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "demo.log"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def tokens_file(self) -> Path:
        path = self.workdir / "admin-tokens.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "tokens": [
                        {"token": self.admin_token, "subject": "admin"},
                        {"token": self.viewer_token, "subject": "viewer"},
                    ],
                    "roles": [
                        {"name": "admin", "rules": [{"verbs": ["*"], "kinds": ["*"]}]},
                        {"name": "viewer", "rules": [{"verbs": ["get", "list"], "kinds": ["*"]}]},
                    ],
                    "bindings": [
                        {"subject": "admin", "role": "admin"},
                        {"subject": "viewer", "role": "viewer"},
                    ],
                }
            )
        )
        return path

    def start(self, timeout: float = 120.0) -> Demo:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(DEMO), "--free-ports", "--admin-tokens", str(self.tokens_file())]
        with self.log_path.open("ab") as log:
            # A session of its own: stop() can sweep the whole group should the demo not clean up.
            self._proc = subprocess.Popen(
                [*cmd, "--token", self.admin_token],
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.banner = self._read_banner(timeout)
        except BaseException:
            self.stop()
            raise
        admin = re.search(r"admin http://127\.0\.0\.1:(\d+)", self.banner)
        config = re.search(r"^Edit (\S+)/bookinfo/bookinfo\.yaml", self.banner, re.M)
        assert admin and config, self.banner
        self.admin_port, self.config = int(admin.group(1)), Path(config.group(1))
        return self

    def _read_banner(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd, text = self._proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while BANNER_END.encode() not in text:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no demo banner within {timeout}s:\n{text.decode()}\n{self.log_text()}"
                    )
                if selector.select(remaining):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise EOFError(f"the demo exited:\n{text.decode()}\n{self.log_text()}")
                    text += chunk
        return text.decode()

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, grace=15)
        with contextlib.suppress(ProcessLookupError):  # anything the demo failed to stop
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def commands(self) -> list[tuple[str, str]]:
        """The banner's curl lines that promise a status code: (command, code)."""
        found = re.findall(r"^  (curl .*?)\s+# (\d{3})\b", self.banner, re.M)
        return [(command, code) for command, code in found]

    def mint_command(self) -> str:
        found = re.search(r"^  (curl .*?)\s+# mint a demo token", self.banner, re.M)
        assert found, self.banner
        return found.group(1)
