"""The web console in a real browser: headless Chromium (Debian's ``chromium`` driven through its
``chromium-driver`` by selenium) against ``make demo``'s topology with RBAC on.

The console lists every proxy SYNCED; a config change made during the test shows up without a
reload; a denial made during the test shows up with its policy; a read-only token sees the mesh
and nothing secret. A failing test leaves a screenshot and the page's HTML in
``test-artifacts/console/`` (override with ``PILOTFISH_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import http
from harness.demo import Demo
from harness.plugin import failed_report
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("PILOTFISH_ARTIFACTS", ROOT / "test-artifacts")) / "console"
HTTPBIN = re.compile(r"(http://127\.0\.16\.10:\d+)/healthz")
PROXIES = 7  # five bookinfo sidecars, the ingress gateway, httpbin's sidecar


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo"))
    try:
        running.start()
        yield running
    except BaseException:
        print(running.log_text()[-5000:])
        raise
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), f"{path} missing: `make install` runs scripts/system-packages.sh"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, browser: WebDriver) -> Iterator[None]:
    yield
    if failed_report(request.node) is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = ARTIFACTS / request.node.name
        browser.save_screenshot(str(stem.with_suffix(".png")))
        stem.with_suffix(".html").write_text(browser.page_source)
        print(f"screenshot: {stem.with_suffix('.png')}")


def open_console(browser: WebDriver, demo: Demo, token: str | None) -> None:
    sessionless = f"{demo.admin}/ui/"
    browser.get(sessionless)
    browser.execute_script("sessionStorage.clear()")
    browser.get("about:blank")  # a fresh document: the console reads #token= when it loads
    browser.get(f"{sessionless}#token={token}" if token else sessionless)


def wait(what: str, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # noqa: BLE001 - a stale element while the page redraws
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def text(browser: WebDriver, selector: str) -> str:
    """All text under ``selector``, shown or not (a collapsed <details> included)."""
    return str(browser.find_element(By.CSS_SELECTOR, selector).get_attribute("textContent"))


def proxy_states(browser: WebDriver) -> dict[str, str]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#proxies tbody tr[data-proxy]")
    return {
        str(row.get_attribute("data-proxy")): row.find_element(By.CSS_SELECTOR, "td.state").text
        for row in rows
    }


def admin_get(
    demo: Demo, path: str, token: str | None, method: str = "GET", body: bytes | None = None
) -> Any:
    request = urllib.request.Request(f"{demo.admin}{path}", data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/yaml")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def script_errors(browser: WebDriver) -> list[str]:
    """JavaScript errors (a 401 while no token is given is the page working, not an error)."""
    entries = browser.get_log("browser")
    return [
        e["message"]
        for e in entries
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


# ---- the tests --------------------------------------------------------------------------------


def test_console_lists_every_proxy_as_synced(browser: WebDriver, demo: Demo) -> None:
    open_console(browser, demo, demo.viewer_token)
    states = wait(
        "every proxy SYNCED",
        lambda: (s := proxy_states(browser)) and len(s) == PROXIES and set(s.values()) == {"SYNCED"} and s,
    )
    _, body = admin_get(demo, "/debug/syncz", demo.admin_token)
    assert set(states) == {row["proxy"] for row in json.loads(body)}
    assert any(p.startswith("sidecar~127.0.16.10~httpbin-v1.foo") for p in states)
    # The graph draws services, workloads and the gateway, with mTLS on the mesh's edges.
    edges = text(browser, "#edges")
    assert "svc:reviews.default.svc.cluster.local → wl:WorkloadEntry/default/reviews-v2" in edges
    assert "ISTIO_MUTUAL (auto)" in edges
    assert browser.find_elements(By.CSS_SELECTOR, "#graph g.node.gateway")
    assert "signed in as viewer (read-only)" in browser.find_element(By.ID, "who").text
    assert not script_errors(browser)


def test_config_change_appears_without_reload(browser: WebDriver, demo: Demo) -> None:
    open_console(browser, demo, demo.viewer_token)
    wait("services listed", lambda: browser.find_elements(By.CSS_SELECTOR, "#services li[data-host]"))
    browser.find_element(
        By.CSS_SELECTOR, '#services li[data-host="reviews.default.svc.cluster.local"]'
    ).click()
    wait(
        "the reviews page",
        lambda: "VirtualService default/reviews" in browser.find_element(By.ID, "service").text,
    )
    assert "reviews: v3" not in text(browser, "#edges")
    browser.execute_script("window.sameDocument = 'yes'")
    pushes_before = browser.find_element(By.ID, "chart-pushes").get_attribute("data-latest")

    bookinfo = demo.config / "bookinfo" / "bookinfo.yaml"
    original = bookinfo.read_text()
    changed = re.sub(r"(- route:\n\s+- destination:\n\s+host: reviews\n\s+subset:) v1", r"\1 v3", original)
    assert changed != original, "the reviews VirtualService's default route moved"
    try:
        bookinfo.write_text(changed)
        wait("the new route in the graph", lambda: "reviews: v3" in text(browser, "#edges"))
        wait("the new route on the service page", lambda: '"subset": "v3"' in text(browser, "#service"))
        wait("pushed and ACKed", lambda: set(proxy_states(browser).values()) == {"SYNCED"})
        assert browser.execute_script("return window.sameDocument") == "yes"  # no reload happened
        assert browser.find_element(By.ID, "chart-pushes").get_attribute("data-latest") != pushes_before
    finally:
        bookinfo.write_text(original)
    wait("the route back", lambda: "reviews: v3" not in text(browser, "#edges"))


def test_denial_appears_with_its_policy_name(browser: WebDriver, demo: Demo) -> None:
    open_console(browser, demo, demo.viewer_token)
    wait("the console loaded", lambda: proxy_states(browser))
    base = HTTPBIN.search(demo.banner)
    assert base, demo.banner
    path = f"/headers/console-{secrets.token_hex(4)}"  # this test's request, and no other
    denied = http.get(base.group(1) + path, headers={"host": "httpbin.foo.svc.cluster.local"}, timeout=10)
    assert denied.status == 403
    row = wait(
        "the denial listed",
        lambda: next(
            (r for r in browser.find_elements(By.CSS_SELECTOR, "#denials tbody tr") if path in r.text), None
        ),
    )
    assert "foo/httpbin" in row.text and "403" in row.text and "httpbin-v1" in row.text, row.text
    wait(
        "denials per second charted",
        lambda: browser.find_element(By.ID, "chart-authz").get_attribute("data-latest"),
    )


def test_read_only_token_sees_the_mesh_and_no_secrets(browser: WebDriver, demo: Demo) -> None:
    open_console(browser, demo, demo.viewer_token)
    wait("every proxy listed", lambda: len(proxy_states(browser)) == PROXIES)
    wait("certificates listed", lambda: "spiffe://cluster.local/ns/foo/sa/httpbin" in text(browser, "#certs"))
    assert demo.viewer_token not in browser.current_url  # the token left the address bar
    page = browser.page_source
    responses = [admin_get(demo, f"/ui/api/{p}", demo.viewer_token) for p in ("mesh", "stats", "whoami")]
    for shown in [page, *(body for _, body in responses)]:
        assert "PRIVATE KEY" not in shown
        assert demo.admin_token not in shown and demo.viewer_token not in shown
        assert not re.search(r'"private_?[kK]ey": "(?!\[redacted\])', shown)
    # The same token may not read secrets, nor write, through the admin API.
    assert admin_get(demo, "/apis/Secret/foo/httpbin", demo.viewer_token)[0] == 403
    vs = b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: foo}\n"
    vs += b"spec: {hosts: [x], http: [{route: [{destination: {host: x}}]}]}\n"
    assert admin_get(demo, "/apis", demo.viewer_token, "POST", vs)[0] == 403


def test_without_a_token_the_console_asks_for_one(browser: WebDriver, demo: Demo) -> None:
    open_console(browser, demo, None)
    wait("the token form", lambda: browser.find_element(By.ID, "token-form").is_displayed())
    assert not proxy_states(browser)
    assert admin_get(demo, "/ui/api/mesh", None)[0] == 401
    browser.find_element(By.ID, "token-input").send_keys(demo.viewer_token)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    wait("proxies after signing in", lambda: len(proxy_states(browser)) == PROXIES)


def test_static_files_are_package_data() -> None:
    """Shipped inside the package (pyproject package-data), not fetched from anywhere."""
    import pilotfish.console

    static = Path(pilotfish.console.__file__).parent / "static"
    for name in ("index.html", "console.js", "console.css"):
        content = (static / name).read_text()
        assert (
            "http://" not in content.replace("http://www.w3.org/2000/svg", "") and "https://" not in content
        )
    assert shutil.which("chromium") or os.access(CHROMIUM, os.X_OK)
