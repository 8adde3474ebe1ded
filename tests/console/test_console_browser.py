"""The console in a real browser (Debian's chromium through playwright) against a real box.

Walks what a new admin does: claim the box with the setup code, sign in,
make an API key and use it with the openai client, chat in the playground,
revoke the key, change a setting and revert it. Every page is saved as a
screenshot under test-artifacts/console/, and no request may leave the box.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import REPO, free_port, stop_process
from wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "quiet-harbour-lantern-42"
NEW_PASSWORD = "amber-kettle-orchard-91"
ARTIFACTS = Path(os.environ.get("APPLIANCE_TEST_ARTIFACTS", REPO / "test-artifacts")) / "console"
CODE = re.compile(r"\b[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}\b")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
playwright_api = pytest.importorskip("playwright.sync_api")


class Box:
    """`appliance up` on loopback with TLS: the setup code and first API key read from what it prints."""

    def __init__(self, store: Path, state: Path):
        self.state, self.port = state, free_port()
        self.log = state.parent / f"{state.name}-up.log"
        env = {**os.environ, "APPLIANCE_HEALTH_LIVENESS_PERIOD": "1", "APPLIANCE_HEALTH_READINESS_PERIOD": "1",
               "APPLIANCE_HEALTH_METRICS_PERIOD": "2", "APPLIANCE_HEALTH_GOLDEN_PERIOD": "5"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "up", "--store", str(store), "--state-dir", str(state),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        self.url = f"https://127.0.0.1:{self.port}"
        try:
            text = wait_until(lambda: CODE.search(self.log.read_text()) and self.log.read_text(), 60,
                              "the setup code", details=self.tail)
            self.setup_code = CODE.search(text).group(0)
            self.api_key = re.search(r"API key .*: (sk-appl-\S+)", text).group(1)
            wait_until(lambda: httpx.get(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.api_key}"},
                                         verify=False, timeout=5).status_code == 200,
                       120, "the box to be ready", ignore=(httpx.HTTPError,), details=self.tail)
        except BaseException:
            self.stop()  # never leave a box running behind a failed start
            raise

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def box(default_store, tmp_path_factory):
    b = Box(default_store, tmp_path_factory.mktemp("console") / "state")
    yield b
    b.stop()


@pytest.fixture()
def context(browser, box):
    """A browser context that records every request: none may go anywhere but the box."""
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    yield ctx
    ctx.close()
    foreign = [u for u in requests if urlsplit(u).netloc != f"127.0.0.1:{box.port}" and not u.startswith("data:")]
    assert not foreign, f"the console asked other hosts: {foreign}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def claim(page, box: Box, code: str, password: str = PASSWORD) -> None:
    page.goto(f"{box.url}/")
    page.get_by_label("Setup code").fill(code)
    page.get_by_label("Admin user name").fill("admin")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password again").fill(password)
    page.get_by_role("button", name="Create admin and sign in").click()


@pytest.fixture()
def admin(context, box):
    """A signed-in page: the box is claimed (by this fixture if no test did yet) and the admin signed in."""
    page = context.new_page()
    page.goto(f"{box.url}/console")
    if "/console/setup" in page.url:
        claim(page, box, box.setup_code)
    elif "/console/login" in page.url:
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{box.url}/console")
    return page


def test_setup_needs_the_code_once_then_sign_in_locks_out_after_failures(browser, default_store, tmp_path):
    fresh = Box(default_store, tmp_path / "state")
    try:
        ctx = browser.new_context(ignore_https_errors=True)
        page = ctx.new_page()
        page.goto(f"{fresh.url}/console/keys")
        assert page.url.endswith("/console/setup"), "an unclaimed box leads every page to setup"
        shot(page, "01-setup")
        claim(page, fresh, "AAAA-BBBB-CCCC")
        assert "setup code is not right" in page.locator(".alert-error").inner_text()
        claim(page, fresh, fresh.setup_code, password="password123")
        assert "too easy to guess" in page.locator(".alert-error").inner_text()
        claim(page, fresh, fresh.setup_code.lower())  # typed by hand: case and dashes do not matter
        page.wait_for_url(f"{fresh.url}/console")
        assert page.get_by_role("heading", name="Dashboard").is_visible()

        second = ctx.browser.new_context(ignore_https_errors=True).new_page()  # another signed-in browser
        second.goto(f"{fresh.url}/console/login")
        second.get_by_label("User name").fill("admin")
        second.get_by_label("Password").fill(PASSWORD)
        second.get_by_role("button", name="Sign in").click()
        second.wait_for_url(f"{fresh.url}/console")
        page.goto(f"{fresh.url}/console/settings")
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password (signs out every session)").click()
        page.wait_for_url("**/console/login?changed=1")
        second.goto(f"{fresh.url}/console/keys")
        assert "/console/login" in second.url, "a password change signs out every session"

        other = browser.new_context(ignore_https_errors=True).new_page()
        other.goto(f"{fresh.url}/console/setup")
        assert other.url.endswith("/console/login"), "once claimed, setup is gone"
        r = httpx.post(f"{fresh.url}/console/setup", verify=False, headers={"Origin": fresh.url},
                       data={"code": fresh.setup_code, "username": "mallory", "password": PASSWORD, "confirm": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/console/login", "the used code must not work again"

        shot(other, "02-login")
        for _ in range(5):
            other.get_by_label("User name").fill("admin")
            other.get_by_label("Password").fill("wrong-password-guess")
            other.get_by_role("button", name="Sign in").click()
            assert "do not match" in other.locator(".alert-error").inner_text()
        other.get_by_label("User name").fill("admin")
        other.get_by_label("Password").fill(NEW_PASSWORD)
        other.get_by_role("button", name="Sign in").click()
        assert "Too many failed sign-ins" in other.locator(".alert-error").inner_text(), "locked out, even with the password"
        shot(other, "03-login-locked")
        ctx.close()
    finally:
        fresh.stop()


def test_dashboard_shows_state_models_and_charts(admin, box):
    page = admin
    assert page.locator(".state-text").first.inner_text() in ("ok", "degraded", "failed", "unknown")
    models = page.locator("#models tbody tr th").all_inner_texts()
    assert "smollm2-135m-instruct" in models and "all-minilm-l6-v2" in models
    assert "token agreement" in page.locator("#models").inner_text()
    page.wait_for_selector(".chart .uplot", timeout=60000)  # drawn once the box has two samples
    shot(page, "04-dashboard")


def test_key_made_in_the_console_works_with_openai_until_revoked(admin, box):
    from openai import AuthenticationError, OpenAI

    page = admin
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert secret.startswith("sk-appl-")
    assert secret in page.locator("#snippet-python").inner_text() and box.url in page.locator("#snippet-curl").inner_text()
    shot(page, "05-key-created")
    with page.expect_download() as download:
        page.get_by_role("link", name="download it").click()
    certificate = download.value.path()  # the snippet's way: trust the box's own certificate, no verify=False

    client = OpenAI(base_url=f"{box.url}/v1", api_key=secret, max_retries=0,
                    http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(certificate))))
    reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert reply.choices[0].message.content

    page.goto(f"{box.url}/console/keys")
    row = page.locator("tr", has=page.locator("th", has_text="laptop"))
    assert row.locator("td").nth(3).inner_text() == "1"  # one request counted
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_url(f"{box.url}/console/keys")
    assert "revoked" in page.locator("tr", has=page.locator("th", has_text="laptop")).inner_text()
    shot(page, "06-keys")
    with pytest.raises(AuthenticationError):
        client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])


def test_playground_streams_a_chat_and_compares_texts(admin, box):
    page = admin
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("System prompt").fill("You are a concise assistant.")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("24")
    page.get_by_label("Message").fill("Name three colours.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.assistant .text").last
    wait_until(lambda: "done" in page.locator("#chat-status").inner_text(), 60, "the streamed answer to finish")
    assert answer.inner_text().strip(), "the streamed text appears"
    assert not page.locator(".msg.error").count()
    page.get_by_role("button", name="Compare").click()
    wait_until(lambda: "cosine similarity" in page.locator("#sim-result").inner_text(), 30, "the similarity")
    page.get_by_label("Seed", exact=True).fill("7")
    page.get_by_role("button", name="Generate").click()
    wait_until(lambda: "done" in page.locator("#img-status").inner_text(), 120, "the image",
               details=lambda: page.locator("#img-status").inner_text())
    image = page.locator("#img-out img").first
    size = page.locator("#img-size").input_value()
    assert image.evaluate("i => `${i.naturalWidth}x${i.naturalHeight}`") == size, "a PNG of the size asked for"
    shot(page, "07-playground")


def test_forged_cross_site_post_is_refused(admin, box, browser):
    """A page on another origin posts to the box: no key is made, with the admin's browser or with a stolen cookie."""
    evil_port = free_port()
    html = (f'<form id="f" method="post" action="{box.url}/console/keys"><input name="name" value="forged">'
            f'<input name="csrf_token" value="x"></form><script>document.getElementById("f").submit()</script>')

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", evil_port), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the admin's own browser, signed in to the box (its own context: this page is the one foreign request)
        admins_browser = browser.new_context(ignore_https_errors=True, storage_state=admin.context.storage_state())
        evil = admins_browser.new_page()
        evil.goto(f"http://127.0.0.1:{evil_port}/")
        evil.wait_for_load_state("networkidle")
        admins_browser.close()
    finally:
        server.shutdown()
    cookie = next(c["value"] for c in admin.context.cookies() if c["name"] == "appliance_session")
    forged = httpx.post(f"{box.url}/console/keys", verify=False, data={"name": "forged", "csrf_token": "x"},
                        headers={"Origin": f"http://127.0.0.1:{evil_port}"}, cookies={"appliance_session": cookie})
    assert forged.status_code == 403
    no_token = httpx.post(f"{box.url}/console/keys", verify=False, data={"name": "forged"},
                          headers={"Origin": box.url}, cookies={"appliance_session": cookie})
    assert no_token.status_code == 403
    admin.goto(f"{box.url}/console/keys")
    assert "forged" not in admin.locator("table.keys").inner_text()


def test_settings_change_is_applied_and_reverted(admin, box):
    page = admin
    page.get_by_role("link", name="Settings").click()
    before = page.locator(".brand-name").inner_text().strip()
    page.get_by_label("Box name").fill("Lab box 7")
    page.get_by_label("Log level").select_option("debug")
    page.get_by_role("button", name="Save and apply").click()
    assert "Saved and applied" in page.locator(".alert-ok").inner_text()
    assert page.locator(".brand-name").inner_text().strip() == "Lab box 7"
    shot(page, "08-settings")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revert to the previous settings").click()
    assert "Reverted" in page.locator(".alert-ok").inner_text()
    assert page.locator(".brand-name").inner_text().strip() == before
    assert page.get_by_label("Log level").input_value() == "info"


def test_update_upload_shows_progress_and_the_reason_it_was_refused(admin, box, tmp_path):
    """The settings page sends the file itself (no form post), and the box's one-line refusal reaches the admin;
    nothing is left in the state for the apply service."""
    page = admin
    page.get_by_role("link", name="Settings").click()
    not_a_bundle = tmp_path / "release-0.9.bundle"
    not_a_bundle.write_bytes(os.urandom(3 << 20))
    page.get_by_label("Update bundle (.bundle)").set_input_files(str(not_a_bundle))
    page.get_by_label("Reboot into it when it is written").uncheck()
    page.get_by_role("button", name="Upload and apply").click()
    message = page.locator("#update-message")
    wait_until(lambda: page.locator("#update-progress").get_attribute("data-state") == "failed", 60,
               "the upload's answer", details=message.inner_text)
    assert message.inner_text().startswith("update refused: the uploaded file: not an update bundle")
    assert page.get_by_role("button", name="Upload and apply").is_enabled()
    shot(page, "08-settings-update-refused")
    assert list((box.state / "updates").iterdir()) == []


def test_health_page_reruns_the_checks(admin, box):
    page = admin
    page.get_by_role("link", name="Health").click()
    wait_until(lambda: page.reload() or page.locator("table tbody tr th").count() >= 5, 60, "the monitor's checks")
    page.get_by_role("button", name="Re-run all checks").click()
    assert "re-runs every check" in page.locator(".alert-ok").inner_text()
    wait_until(lambda: page.reload() or "checks re-run at the admin's request" in page.locator("body").inner_text(),
               30, "the monitor to take the request")
    shot(page, "09-health")
    page.get_by_role("link", name="Diagnostics & support").click()
    assert "Vendor access is off" in page.locator(".alert-ok").inner_text()
    shot(page, "10-support")


def test_pages_fit_a_phone_and_every_control_is_labelled(admin, box, browser):
    page = admin
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("", "/playground", "/keys", "/health", "/settings", "/support"):
        page.goto(f"{box.url}/console{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"/console{path} scrolls sideways on a phone by {overflow}px"
        unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id)""")
        assert not unlabelled, f"/console{path} has controls without a label: {unlabelled}"
        shot(page, f"11-phone{path.replace('/', '-') or '-dashboard'}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip", "the first Tab reaches 'Skip to content'"


def test_security_headers_and_cookie_flags(admin, box):
    r = httpx.get(f"{box.url}/console/login", verify=False)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"
    cookie = next(c for c in admin.context.cookies() if c["name"] == "appliance_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
