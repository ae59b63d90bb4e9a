"""The technicians' console in a real browser (issue 16, "Tests that must exist"): Debian's chromium driven by
Playwright against the live server.

A person signs in with MFA on the real login page; the dashboard's counts equal GET /api/v1/devices/summary for the
same person; a library script runs on three devices through the device list's bulk action; the device page draws a
chart with points; a technician of organization A finds nothing of B on any console page; an alert is acknowledged
from the console. Screenshots of the dashboard, the device list and the device page are written to
var/screenshots/console/ (git-ignored) at 1440 x 900 on every run.

One browser and one world serve the whole module (tests/console/browser.py says why the world is committed); each
test opens its own browser context (its own cookies), so no test depends on another's sign-in. Every page a test
opens is watched for Content-Security-Policy violations and script errors.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command
from django.db import connections

from accounts.models import AuditAction, AuditLog, User
from alerts.models import Alert
from devices.models import Device, DeviceCommand
from rmm import authz
from scripts.models import ScriptRun
from tests.console.browser import (
    CHROMIUM,
    LEAK_MARKER,
    PASSWORD,
    SCREENSHOTS,
    SCRIPT_NAME,
    VIEWPORT,
    ConsoleWorld,
    build_console_world,
    current_totp,
    png_size,
    same_site_links,
    session_cookie,
    without_csrf_tokens,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install -y chromium)"),
]

TIMEOUT_MS = 15_000
# Tables the migrations create in SQL, with no model, so ``flush`` leaves them: the rollups (with the time they are
# rolled up to, which would make a later test read rollups that are gone) and the queues triggers fill.
TABLES_WITHOUT_MODELS = (
    "device_telemetry_rollups",
    "device_telemetry_rollup_state",
    "device_group_refresh_queue",
    "device_inventory_digests",
)
DEVICE_LIST = "/admin/devices/device/"


# --- the harness ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def console(django_db_setup, django_db_blocker) -> Iterator[ConsoleWorld]:
    """The world of tests/console/browser.py, committed for the live server; the database is flushed at the end."""
    with django_db_blocker.unblock():
        try:
            yield build_console_world()
        finally:
            for alias in connections:
                call_command("flush", verbosity=0, interactive=False, database=alias)
            with connections["default"].cursor() as cursor:
                cursor.execute(f"TRUNCATE {', '.join(TABLES_WITHOUT_MODELS)}")


@pytest.fixture(scope="module")
def server(console) -> Iterator[str]:
    """Django's live server on localhost (its own threads and connections), for this module only; its URL."""
    from pytest_django.live_server_helper import LiveServer

    live = LiveServer("localhost")
    live._live_server_modified_settings.enable()  # localhost in ALLOWED_HOSTS, as pytest-django's helper does
    try:
        yield live.url
    finally:
        live._live_server_modified_settings.disable()
        live.stop()


@pytest.fixture(scope="module")
def browser(server) -> Iterator:
    # Playwright's sync API keeps an asyncio loop running in this thread while it is open, and Django then refuses
    # ORM calls from it (SynchronousOnlyOperation) although nothing here is async: the tests' own reads and writes
    # run between Playwright's calls, never inside the loop. pytest-playwright's documented way is this variable.
    with pytest.MonkeyPatch.context() as patch, playwright_api.sync_playwright() as driver:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
            # Django's connections are context-local (asgiref), and the running loop gives this thread a context
            # of its own: the connection the tests used while Playwright was open goes back to the pool only here.
            connections.close_all()


@pytest.fixture(autouse=True)
def db(django_db_setup, django_db_blocker) -> Iterator[None]:
    """pytest-django's ``db``, overridden in this module: the database opens WITHOUT a per-test transaction.

    The live server answers from its own connections, so it must see what the tests see and the tests what it
    wrote; a transaction around each test would also hold the row locks of what the test wrote (a session's
    ``last_login``) until its end, and the server's requests would wait on them. Requesting a fixture named ``db``
    is also what makes pytest-django create the test database when only these tests are selected.
    """
    with django_db_blocker.unblock():
        yield


@dataclass
class Tab:
    """A page of one person's browser context, with what went wrong on it: CSP violations and script errors."""

    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    def watch(self, message) -> None:
        url = message.location.get("url", "")
        if url.endswith("/favicon.ico"):  # the admin has none: the browser's 404 for it is no fault of a page
            return
        if "Content Security Policy" in message.text or message.type == "error":
            self.problems.append(f"{message.text} ({url})")

    def open(self, path: str):
        response = self.page.goto(self.base + path, wait_until="domcontentloaded")
        assert response is not None, path
        return response

    def submit(self, selector: str) -> None:
        """Click what ``selector`` finds and wait for the page the form's answer loads."""
        with self.page.expect_navigation():
            self.page.click(selector)

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def html(self) -> str:
        return self.page.content()


@pytest.fixture
def open_tab(browser, server) -> Iterator[Callable[[User | None], Tab]]:
    """``open_tab(user)`` → a Tab in a new 1440 x 900 browser context signed in as ``user`` (None: signed out)."""
    contexts = []

    def open_(user: User | None) -> Tab:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        if user is not None:
            context.add_cookies([session_cookie(user, server)])
        page = context.new_page()
        tab = Tab(page=page, base=server)
        page.on("console", tab.watch)
        page.on("pageerror", lambda error: tab.problems.append(f"script error: {error}"))
        return tab

    yield open_
    for context in contexts:
        context.close()


def change_url(obj) -> str:
    return f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{obj.pk}/change/"


def signed_out(tab: Tab) -> bool:
    return "/admin/login/" in tab.page.url


# --- signing in -----------------------------------------------------------------------------------------------------


def test_a_technician_with_mfa_signs_in_on_the_login_page_with_the_code_of_their_authenticator(console, open_tab):
    tab = open_tab(None)
    tab.open("/admin/")
    assert signed_out(tab)
    page = tab.page

    page.fill("#id_username", console.mfa_technician.email)
    page.fill("#id_password", PASSWORD)
    tab.submit("#login-form [type=submit]")
    assert signed_out(tab)  # the password alone is not enough
    assert "authenticator" in page.locator("#login-form").inner_text().lower()

    page.fill("#id_username", console.mfa_technician.email)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_totp", current_totp(console.mfa_secret))
    tab.submit("#login-form [type=submit]")
    assert page.url == f"{tab.base}/admin/"
    assert console.mfa_technician.email in page.locator("#user-tools").text_content()

    user = User.objects.get(pk=console.mfa_technician.pk)
    assert user.mfa_last_totp_step is not None  # the code was checked and cannot be replayed
    assert AuditLog.objects.filter(action=AuditAction.USER_LOGIN, actor_user=user).count() == 1
    assert tab.problems == []


# --- the dashboard --------------------------------------------------------------------------------------------------


def dashboard_count(tab: Tab, key: str) -> int:
    element = tab.page.locator(f'[data-count="{key}"]')
    assert element.count() == 1, f"the dashboard has {element.count()} elements with data-count={key!r}"
    return int(re.sub(r"[^\d]", "", element.inner_text()))


# A partner's technician reaches partner A's six devices; the org user of org A only site A1's two.
DEVICES_IN_REACH = {"partner_technician": 6, "org_user": 2}


@pytest.mark.parametrize("persona", list(DEVICES_IN_REACH))
def test_the_dashboards_device_counts_equal_the_summary_api_for_the_same_person(console, open_tab, persona):
    tab = open_tab(console.personas[persona])
    response = tab.open("/admin/")
    assert response.status == 200
    assert not signed_out(tab)

    answer = tab.page.request.get(f"{tab.base}/api/v1/devices/summary")  # the same session
    assert answer.status == 200
    summary = answer.json()
    shown = {
        "byStatus": {status: dashboard_count(tab, f"status:{status}") for status in Device.Status.values},
        "byOsType": {os_type: dashboard_count(tab, f"os:{os_type}") for os_type in Device.OsType.values},
        "total": dashboard_count(tab, "devices:total"),
    }
    assert shown == summary
    assert summary["total"] == DEVICES_IN_REACH[persona]  # the person's counts, not the installation's
    assert tab.problems == []


def test_the_dashboards_alert_counts_are_the_open_alerts_in_the_technicians_reach(console, open_tab):
    technician = console.personas["partner_technician"]
    tab = open_tab(technician)
    assert tab.open("/admin/").status == 200

    open_alerts = authz.visible(
        User.objects.get(pk=technician.pk), "alerts:read", Alert.objects.filter(status=Alert.Status.OPEN)
    )
    expected = Counter(open_alerts.values_list("severity", flat=True))
    shown = {severity: dashboard_count(tab, f"alerts:{severity}") for severity in ("critical", "warning", "info")}
    assert shown == {severity: expected.get(severity, 0) for severity in shown}
    assert tab.problems == []


def test_each_status_and_os_count_on_the_dashboard_links_to_the_device_list_showing_that_many(console, open_tab):
    tab = open_tab(console.personas["partner_technician"])
    assert tab.open("/admin/").status == 200
    keys = [f"status:{status}" for status in Device.Status.values] + [f"os:{os}" for os in Device.OsType.values]
    counts = {key: dashboard_count(tab, key) for key in keys}
    links = {
        key: tab.page.locator(f'a:has([data-count="{key}"]), a[data-count="{key}"]').first.get_attribute("href")
        for key in keys
    }

    for key, href in links.items():
        assert href is not None and href.startswith(DEVICE_LIST), f"{key} links to {href}"
        assert tab.open(href).status == 200
        rows = tab.page.locator("#result_list tbody tr")
        assert rows.count() == counts[key], f"{key}: the dashboard says {counts[key]}, its list shows {rows.count()}"
        if key == "status:offline":
            assert "a2-1" in rows.first.inner_text()  # partner A's one offline device
    assert tab.problems == []


# --- bulk action: run a library script ------------------------------------------------------------------------------


def test_running_a_library_script_on_three_devices_from_the_device_list_queues_three_pending_commands(
    console, open_tab
):
    technician = console.personas["partner_technician"]
    chosen = [console.devices[hostname] for hostname in ("a1-1", "a1-2", "a2-1")]  # org A: one run
    tab = open_tab(technician)
    page = tab.page
    assert tab.open(DEVICE_LIST).status == 200

    for device in chosen:
        page.check(f'input.action-select[value="{device.pk}"]')
    page.select_option('select[name="action"]', "run_script")
    tab.submit('button[name="index"]')  # "Go": the confirmation page asks for the script
    assert page.locator("[data-bulk-touch]").get_attribute("data-bulk-touch") == "3"
    option = page.locator('select[name="script"] option', has_text=SCRIPT_NAME)
    assert option.get_attribute("value") == str(console.script.pk)
    page.select_option('select[name="script"]', str(console.script.pk))
    tab.submit('input[name="pick"]')
    confirm = '[data-console-confirm="run_script"]'
    assert page.locator(confirm).inner_text() == f"Run “{SCRIPT_NAME}” on 3 devices"  # the count it will touch
    tab.submit(confirm)
    assert page.url.split("?")[0] == tab.base + DEVICE_LIST  # back on the list, with the outcome in a message
    assert page.locator("ul.messagelist").count() == 1

    run = ScriptRun.objects.get(script=console.script)
    assert run.requested_by_id == technician.pk
    assert run.queued == 3
    commands = DeviceCommand.objects.filter(script_run=run)
    assert {command.device_id for command in commands} == {device.pk for device in chosen}
    assert {command.status for command in commands} == {DeviceCommand.Status.PENDING}

    for command in commands:  # each device page lists its pending command
        assert tab.open(change_url(command.device)).status == 200
        row = f'[data-command-id="{command.pk}"][data-command-status="pending"]'
        assert tab.count(row) == 1, f"no pending row for {command.device.hostname}"
    assert tab.problems == []


# --- the device page's charts ---------------------------------------------------------------------------------------


def chart_points(tab: Tab, metric: str) -> list[int]:
    series = tab.page.locator(
        f'svg.chart[data-metric="{metric}"] polyline[data-points], svg.chart[data-metric="{metric}"] path[data-points]'
    )
    return [int(points) for points in series.evaluate_all("els => els.map(e => e.dataset.points)")]


def test_the_device_page_draws_its_telemetry_charts_with_points(console, open_tab):
    tab = open_tab(console.personas["partner_technician"])
    assert tab.open(change_url(console.device)).status == 200

    assert tab.page.locator('svg.chart[data-metric="cpu"]').first.is_visible()
    cpu = chart_points(tab, "cpu")
    assert cpu and max(cpu) > 0, f"the CPU chart has series with points {cpu}"
    for metric in ("ram", "disk", "network"):
        assert max(chart_points(tab, metric), default=0) > 0, f"the {metric} chart has no points"

    assert tab.open(change_url(console.device) + "?range=7d").status == 200  # hourly rollups
    assert max(chart_points(tab, "cpu"), default=0) > 0
    assert tab.problems == []


# --- tenant isolation -----------------------------------------------------------------------------------------------

# What each crawler must never meet: B's marker; the org admin of org A also nothing of org A2 (same partner).
FORBIDDEN = {
    "partner_technician": [LEAK_MARKER],
    "org_admin": [LEAK_MARKER, "a2m-", "Org A2", "A2 main"],
}
# Pages of one shape (the path with its ids masked; the query left out) opened at most this often: each list, add
# page and object page once meets every template and every admin's queryset, and keeps the crawl near 10 s.
PER_SHAPE = 1
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def links_in(tab: Tab, selector: str) -> list[str]:
    hrefs = tab.page.locator(selector).evaluate_all("els => els.map(e => e.getAttribute('href'))")
    return same_site_links(tab.base, tab.page.url, hrefs)


def crawl(tab: Tab) -> dict[str, str]:
    """Every page reachable from the dashboard's links and the sidebar's, with a row of each list: path → HTML.

    The dashboard and the lists are opened in the browser (their scripts run; their links are followed); the pages
    of single objects, add forms and the like are fetched with the browser's session (``page.request``), the same
    HTML at half the time of a navigation, so the crawl of ~60 pages stays near 10 s.
    """
    pages: dict[str, str] = {}
    shapes: Counter[str] = Counter()
    queue = ["/admin/", DEVICE_LIST]
    while queue:
        path = queue.pop(0).removeprefix(tab.base)
        shape = UUID.sub("<id>", path.split("?")[0])
        if path in pages or shapes[shape] >= PER_SHAPE:
            continue
        shapes[shape] += 1
        if "<id>" in shape or shape.endswith("/add/"):
            answer = tab.page.request.get(tab.base + path)
            assert answer.status == 200, f"{path} answered {answer.status}"
            assert "/admin/login/" not in answer.url, f"{path} sent the person to the login page"
            pages[path] = answer.text()
            continue
        response = tab.open(path)
        assert response.status == 200, f"{path} answered {response.status}"
        assert not signed_out(tab), f"{path} sent the person to the login page"
        pages[path] = tab.html()
        if path == "/admin/":
            queue += links_in(tab, "#content a[href]")  # the dashboard: everything it links to
        if path == DEVICE_LIST:
            queue += links_in(tab, "#nav-sidebar a[href]")  # the sidebar (on every page but the dashboard)
        queue += links_in(tab, "#result_list a[href]")  # a list's rows
    return pages


def test_the_leak_checks_skip_csrf_tokens_and_nothing_else():
    page = '<form><input type="hidden" name="csrfmiddlewaretoken" value="x9ZuLu3k"></form><td>Zulu Holdings</td>'

    assert LEAK_MARKER not in without_csrf_tokens(page.replace("Zulu Holdings", "Org A")).lower()
    assert LEAK_MARKER in without_csrf_tokens(page).lower()  # a name on the page is still found


@pytest.mark.parametrize("persona", list(FORBIDDEN))
def test_a_person_of_organization_a_meets_nothing_of_b_on_any_console_page(console, open_tab, persona):
    tab = open_tab(console.personas[persona])
    pages = crawl(tab)

    leaks = [
        f"{path}: {text!r}"
        for path, html in pages.items()
        for text in FORBIDDEN[persona]
        if text.lower() in without_csrf_tokens(html).lower()
    ]
    assert leaks == []
    assert len(pages) >= 20, sorted(pages)  # the crawl went somewhere: the sidebar alone has more
    assert "a1-1" in pages[DEVICE_LIST]  # and saw A's devices: it was not looking at empty pages

    for obj in (console.zulu_device, console.alerts["zulu"], console.world.org_b, console.world.site_b1):
        response = tab.open(change_url(obj))  # B's pages by their URLs: refused, or sent elsewhere
        assert response.status in (403, 404) or change_url(obj) not in tab.page.url, change_url(obj)
        assert LEAK_MARKER not in without_csrf_tokens(tab.html()).lower()
    assert tab.problems == []


# --- acknowledging alerts -------------------------------------------------------------------------------------------


def test_a_technician_acknowledges_an_alert_with_the_button_on_its_page(console, open_tab):
    technician = console.personas["partner_technician"]
    alert = console.alerts["page"]
    tab = open_tab(technician)
    assert tab.open(change_url(alert)).status == 200

    tab.submit('[data-console-action="acknowledge"]')
    assert "acknowledged" in tab.page.locator("ul.messagelist").inner_text()

    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by_id == technician.pk
    assert tab.problems == []


def test_a_technician_acknowledges_an_alert_with_the_alert_lists_bulk_action(console, open_tab):
    technician = console.personas["partner_technician"]
    alert, untouched = console.alerts["list"], console.alerts["info"]
    tab = open_tab(technician)
    page = tab.page
    assert tab.open("/admin/alerts/alert/").status == 200

    page.check(f'input.action-select[value="{alert.pk}"]')
    page.select_option('select[name="action"]', "acknowledge")
    tab.submit('button[name="index"]')
    assert not signed_out(tab)

    alert.refresh_from_db()
    untouched.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by_id == technician.pk
    assert untouched.status == Alert.Status.OPEN  # only the selected alert
    assert tab.problems == []


# --- screenshots ----------------------------------------------------------------------------------------------------


def test_screenshots_of_the_dashboard_device_list_and_device_page_are_written_at_1440_by_900(console, open_tab):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    started = time.time() - 1
    tab = open_tab(console.personas["partner_technician"])
    pages = {"dashboard": "/admin/", "device-list": DEVICE_LIST, "device-page": change_url(console.device)}
    for name, path in pages.items():
        assert tab.open(path).status == 200
        assert not signed_out(tab)
        tab.page.wait_for_load_state("networkidle")
        tab.page.screenshot(path=SCREENSHOTS / f"{name}.png")

    for name in pages:
        shot = SCREENSHOTS / f"{name}.png"
        assert shot.stat().st_mtime >= started
        assert png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"])
    assert tab.problems == []


def test_the_world_is_as_the_tests_assume(console):
    # The crawl's marker is only worth something if B's rows carry it and A's never do.
    assert Device.objects.filter(org=console.world.org_b, hostname__icontains=LEAK_MARKER).count() == 2
    assert not Device.objects.filter(hostname__icontains=LEAK_MARKER).exclude(org=console.world.org_b).exists()
