"""The device page in a real browser (Debian's chromium, tests/console/browser.py's harness): a technician runs a
library script from the page and watches its result arrive without reloading (rmm/static/console/device_page.js
asks for the recent commands while one is pending or sent), and cancels a pending command through its confirmation
page. Every page is watched for Content-Security-Policy violations and script errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import DeviceCommand
from devices.services import commands
from scripts.models import ScriptRun
from tests.console.browser import CHROMIUM, SCRIPT_NAME
from tests.console.test_browser import (  # noqa: F401 (the harness's fixtures, used by name)
    browser,
    change_url,
    console,
    db,
    open_tab,
    server,
)

pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install -y chromium)"),
]

REFRESHED_WITHIN_MS = 15_000


def test_a_technician_runs_a_script_from_the_device_page_and_sees_its_result_arrive(console, open_tab):  # noqa: F811
    technician = console.personas["partner_technician"]
    device = console.device
    tab = open_tab(technician)
    page = tab.page
    assert tab.open(change_url(device)).status == 200

    page.click('[data-console-action="run_script"]')
    page.click(f'text="{SCRIPT_NAME}"')
    page.click('input[type="submit"][data-console-action="run_script"]')
    page.wait_for_load_state()

    assert page.url.endswith(change_url(device))
    run = ScriptRun.objects.get(script=console.script, requested_by=technician)
    command = DeviceCommand.objects.get(script_run=run, device=device)
    row = page.locator(f'tr[data-command-id="{command.pk}"]')
    assert row.get_attribute("data-command-status") == "pending"

    # The agent fetches it and reports; the page was not reloaded.
    DeviceCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=timezone.now())
    commands.record_result(
        device_id=device.pk,
        command_id=command.pk,
        status="completed",
        result={"exitCode": 0, "stdout": "freed 2.1 GB\n", "stderr": "", "durationMs": 900},
    )
    page.wait_for_selector(
        f'tr[data-command-id="{command.pk}"][data-command-status="completed"]', timeout=REFRESHED_WITHIN_MS
    )

    output = page.locator(f'tr[data-command-id="{command.pk}"] pre').first.inner_text()
    assert output.strip() == "freed 2.1 GB"
    assert page.locator(".command-refreshing").count() == 0  # nothing under way: the page stops asking
    assert tab.problems == []


def test_a_technician_cancels_a_pending_command_through_its_confirmation_page(console, open_tab):  # noqa: F811
    technician = console.personas["partner_technician"]
    device = console.device
    command = commands.queue_command(device=device, type="reboot", payload={})
    tab = open_tab(technician)
    page = tab.page
    assert tab.open(change_url(device)).status == 200

    page.click(f'tr[data-command-id="{command.pk}"] [data-console-action="cancel_command"]')
    assert re.search(r"Cancel this command", page.content())
    page.click('input[type="submit"][data-console-action="cancel_command"]')
    page.wait_for_load_state()

    assert page.url.endswith(change_url(device))
    assert page.locator(f'tr[data-command-id="{command.pk}"]').get_attribute("data-command-status") == "cancelled"
    assert AuditLog.objects.filter(action="command.cancel", target_id=str(command.pk), actor_user=technician).exists()
    assert tab.problems == []
