"""Pytest fixtures ``echo_factory`` and ``envoy_factory``, and failure diagnostics for both.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); other pytest runs can load it with
``-p harness.plugin`` when ``tests/`` is on ``sys.path``.

When a test fails (in setup or call), the teardown of these fixtures appends, for every process
the test created, a section to the failing report: Envoy's config_dump summary and the last 200
log lines; an echo server's stderr when it wrote any. pytest prints the sections under the failure.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from harness.echo import EchoProcess
from harness.envoy import EnvoyProcess
from harness.pilotfish import PilotfishProcess

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixture teardown can tell whether the test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def failed_report(item: pytest.Item) -> pytest.TestReport | None:
    """The report of the phase that failed (setup or call), or None when the test passed so far."""
    reports = item.stash.get(PHASE_REPORTS, {})
    for when in ("call", "setup"):
        report = reports.get(when)
        if report is not None and report.failed:
            return report
    return None


EchoFactory = Callable[..., EchoProcess]
EnvoyFactory = Callable[..., EnvoyProcess]


@pytest.fixture
def echo_factory(request: pytest.FixtureRequest) -> Iterator[EchoFactory]:
    """``echo_factory(name, labels=, delay=, fail_rate=, fail_status=)`` → a started ``EchoProcess``.

    Every echo created is stopped at teardown, pass or fail.
    """
    created: list[EchoProcess] = []

    def make(name: str, **options: Any) -> EchoProcess:
        echo = EchoProcess(name, **options)
        created.append(echo)
        return echo.start()

    yield make
    _report_and_stop(request.node, created, _echo_section)


@pytest.fixture
def envoy_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EnvoyFactory]:
    """``envoy_factory(bootstrap, ports=None, wait=True, **EnvoyProcess options)`` → a started Envoy.

    ``bootstrap`` is a dict or YAML text with ``{name}`` placeholders (see ``harness.envoy``).
    With ``wait`` (the default) it returns once ``/ready`` says LIVE. Each Envoy gets its own
    directory under ``tmp_path`` (bootstrap.yaml, envoy.log), kept after the test for inspection.
    Every Envoy created is stopped and reaped at teardown, pass or fail.
    """
    created: list[EnvoyProcess] = []

    def make(
        bootstrap: Mapping[str, Any] | str,
        *,
        ports: Mapping[str, object] | None = None,
        wait: bool = True,
        **options: Any,
    ) -> EnvoyProcess:
        name = options.pop("name", f"envoy{len(created)}")
        envoy = EnvoyProcess(bootstrap, ports=ports, workdir=tmp_path / name, name=name, **options)
        created.append(envoy)
        return envoy.start(wait=wait)

    yield make
    _report_and_stop(request.node, created, _envoy_section)


def _report_and_stop(
    item: pytest.Item, processes: list[Any], section: Callable[[Any], tuple[str, str] | None]
) -> None:
    """Attach diagnostics while the processes still run (config_dump needs Envoy), then stop them all."""
    with ExitStack() as stops:  # every stop runs even if diagnostics or another stop raises
        for process in processes:
            stops.callback(process.stop)
        report = failed_report(item)
        if report is not None:
            report.sections.extend(filter(None, (section(process) for process in processes)))


def _envoy_section(envoy: EnvoyProcess) -> tuple[str, str]:
    return f"envoy {envoy.name}", envoy.diagnostics()


def _echo_section(echo: EchoProcess) -> tuple[str, str] | None:
    """Only an echo that wrote to stderr (a traceback) has something to say."""
    text = echo.stderr_text()
    return (f"echo {echo.name} stderr", text) if text else None


PilotfishFactory = Callable[..., PilotfishProcess]


@pytest.fixture
def pilotfish_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PilotfishFactory]:
    """``pilotfish_factory(config_dir, xds_port=0, extra_args=())`` → a started ``pilotfish serve``.

    Each gets its own directory under ``tmp_path`` (pilotfish.log). Every process is stopped at
    teardown, pass or fail; a failing test gets the log tail in its report.
    """
    created: list[PilotfishProcess] = []

    def make(config_dir: Path, **options: Any) -> PilotfishProcess:
        process = PilotfishProcess(config_dir, tmp_path / f"pilotfish{len(created)}", **options)
        created.append(process)
        return process.start()

    yield make
    _report_and_stop(request.node, created, _pilotfish_section)


def _pilotfish_section(process: PilotfishProcess) -> tuple[str, str]:
    return "pilotfish log", "\n".join(process.log_text().splitlines()[-200:])
