"""``pilotfish serve`` as a subprocess: started on free ports, READY line parsed, always reaped."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.processes import read_line, stop_process

_READY = re.compile(r"READY xds=([\d.]+):(\d+) admin=([\d.]+):(\d+) authz=([\d.]+):(\d+)")
_SECURE_XDS = re.compile(r"secure-xds=([\d.]+):(\d+)")
_CA_TOKEN = re.compile(r"ca-token=([\d.]+):(\d+)")
_KONG_ADMIN = re.compile(r"kong-admin=([\d.]+):(\d+)")


class PilotfishProcess:
    def __init__(
        self, config_dir: Path, workdir: Path, *, xds_port: int = 0, extra_args: Sequence[str] = ()
    ) -> None:
        self.config_dir = config_dir
        self.workdir = workdir
        self.xds_port = xds_port
        self.admin_port = 0
        self.authz_port = 0
        self.secure_xds_port = 0
        self.ca_token_port = 0  # only with --ca-token-port
        self.kong_admin_port = 0  # Kong's Admin API: a free port (serve's 8001 would be shared)
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "pilotfish.log"

    def start(self, timeout: float = 20.0) -> PilotfishProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pilotfish",
            "serve",
            "--config",
            str(self.config_dir),
            "--host",
            "127.0.0.1",
            "--xds-port",
            str(self.xds_port),
            "--admin-port",
            str(self.admin_port),  # 0 at first, then the same after a restart (clients point at it)
            *self._store_args(),
            *self._authz_args(),
            *self._ca_args(),
            *(
                []
                if "--kong-admin-port" in self.extra_args
                else ["--kong-admin-port", str(self.kong_admin_port)]
            ),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log)
        try:
            line = read_line(self._proc, timeout)
        except BaseException:
            self.stop()
            raise
        m = _READY.search(line)
        assert m, f"unexpected first line from pilotfish: {line!r}\n{self.log_text()}"
        self.xds_port, self.admin_port, self.authz_port = int(m.group(2)), int(m.group(4)), int(m.group(6))
        secure = _SECURE_XDS.search(line)
        self.secure_xds_port = int(secure.group(2)) if secure else 0
        token = _CA_TOKEN.search(line)
        self.ca_token_port = int(token.group(2)) if token else 0
        kong = _KONG_ADMIN.search(line)
        self.kong_admin_port = int(kong.group(2)) if kong else 0
        self.starts += 1
        return self

    def _authz_args(self) -> list[str]:
        """The Check server on a free port (``serve``'s default 9191 would be shared, via
        SO_REUSEPORT, by every pilotfish a test runs), and the same port after a restart."""
        if "--authz-port" in self.extra_args:
            return []
        return ["--authz-port", str(self.authz_port)]

    def _ca_args(self) -> list[str]:
        """The CA in the work directory (kept across restarts: proxies keep trusting its root)
        and the mTLS xDS port on a free port, then the same one after a restart; ``serve``'s
        defaults (~/.local/state, 15012) would be shared by every test."""
        ca = [] if "--ca-dir" in self.extra_args else ["--ca-dir", str(self.ca_dir)]
        secure = str(self.secure_xds_port)
        port = [] if "--secure-xds-port" in self.extra_args else ["--secure-xds-port", secure]
        return ca + port

    @property
    def ca_dir(self) -> Path:
        return self.workdir.resolve() / "ca"

    @property
    def root_cert_path(self) -> Path:
        """The mesh root the CA wrote (``certs.store.DirectoryStorage`` layout)."""
        return self.ca_dir / "ca" / "root-cert.pem"

    def _store_args(self) -> list[str]:
        """A store of its own in the work directory (kept across restarts), unless the test
        names one: ``serve``'s default, ./pilotfish.db, would be shared by every test."""
        if "--store" in self.extra_args:
            return []
        return ["--store", f"sqlite:///{self.workdir.resolve() / 'pilotfish.db'}"]

    def stop(self) -> int | None:
        if self._proc is None:
            return None
        code = stop_process(self._proc)
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def restart(self) -> PilotfishProcess:
        """Stop and start again on the same xDS and admin ports (proxies and clients point at them)."""
        self.stop()
        return self.start()

    @property
    def pid(self) -> int:
        assert self._proc is not None, "pilotfish is not running"
        return self._proc.pid

    @property
    def admin(self) -> str:
        return f"127.0.0.1:{self.admin_port}"

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return json.loads(response.read())

    def syncz(self) -> list[dict[str, Any]]:
        rows = self.get_json("/debug/syncz")
        assert isinstance(rows, list)
        return rows

    def type_status(self, proxy_id: str, type_name: str) -> dict[str, Any]:
        for row in self.syncz():
            if row["proxy"] == proxy_id:
                status = row["types"].get(type_name, {})
                return status if isinstance(status, dict) else {}
        return {}

    def wait_synced(
        self, proxy_id: str, types: Sequence[str] = ("CDS", "EDS"), timeout: float = 10.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self.type_status(proxy_id, t).get("state") == "SYNCED" for t in types):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"{proxy_id} not SYNCED for {types} within {timeout}s: {self.syncz()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
