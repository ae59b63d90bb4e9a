"""The device list a technician scans (issue 16, point 2): its columns, filters and search, and its bulk actions —
offered only to people who may, confirmed with the count of devices in reach, carried out by the services."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditLog, OrganizationUser
from alerts.models import Alert
from devices.admin.device_list import BULK_ACTIONS
from devices.models import Device, DeviceCommand, DeviceGroupMembership, DeviceNetworkInterface
from scripts.models import Script, ScriptRun
from scripts.services.library import save_script
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

URL = admin_url(Device, "changelist")


def hostnames(response) -> list[str]:
    assert response.status_code == 200
    return sorted(device.hostname for device in response.context["cl"].result_list)


def offered(response) -> set[str]:
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action at all is offered
    return {value for value, _label in form.fields["action"].choices if value} if form else set()


def add_interface(device: Device, ip: str, *, primary: bool = True, name: str = "eth0") -> None:
    DeviceNetworkInterface.objects.create(
        device=device, org_id=device.org_id, interface_name=name, ip_address=ip, is_primary=primary
    )


def open_alert(device: Device, subject: str = "", status: str = Alert.Status.OPEN) -> Alert:
    return Alert.objects.create(
        org_id=device.org_id, site_id=device.site_id, device=device, subject=subject, severity="warning",
        status=status, title="Disk almost full",
    )  # fmt: skip


def post_action(client, action: str, devices, **fields):
    data = {"action": action, "_selected_action": [str(d.pk) for d in devices], **fields}
    return client.post(URL, data)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- columns -------------------------------------------------------------------------------------------------------


def test_the_list_shows_status_badges_relative_times_lan_ips_tags_and_open_alerts(world, partner_technician):
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(tags=["kiosk"], status=Device.Status.OFFLINE)
    add_interface(device, "10.1.2.3")
    open_alert(device, "C:")
    open_alert(device, "D:", status=Alert.Status.ACKNOWLEDGED)
    open_alert(device, "E:", status=Alert.Status.RESOLVED)

    response = admin_as(partner_technician).get(URL, {"q": device.hostname})

    assert response.status_code == 200
    [row] = response.context["cl"].result_list
    assert (row.open_alerts, row.lan_ip) == (2, "10.1.2.3")
    page = response.content.decode()
    assert '<span class="status status-offline">Offline</span>' in page
    assert '<span class="tag">kiosk</span>' in page
    assert f'?device={device.pk}">2</a>' in page
    assert "Org A<span" in page


def test_a_device_never_seen_shows_a_dash_for_last_seen(world, partner_technician):
    response = admin_as(partner_technician).get(URL)

    assert response.status_code == 200
    assert '<td class="field-last_seen">\N{EN DASH}</td>' in response.content.decode()


# --- filters -------------------------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_os_with_the_dashboards_parameters(world, partner_technician):
    _first, second = world.devices[world.site_a1]
    Device.objects.filter(pk=second.pk).update(status=Device.Status.MAINTENANCE)
    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"status__exact": "maintenance"})) == [second.hostname]
    assert hostnames(client.get(URL, {"os_type__exact": "linux"})) == ["a1-1", "a2-1", "a2m-1"]


def test_the_list_filters_by_tag_and_offers_the_tags_in_reach_only(world, partner_technician):
    Device.objects.filter(hostname__in=["a1-1", "a2m-2"]).update(tags=["kiosk", "vip"])
    Device.objects.filter(hostname="b1-1").update(tags=["secret-of-b"])
    client = admin_as(partner_technician)

    response = client.get(URL, {"tag": "kiosk"})

    assert hostnames(response) == ["a1-1", "a2m-2"]
    tag_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "tag")
    assert [value for value, _ in tag_filter.lookup_choices] == ["kiosk", "vip"]


def test_the_list_filters_by_group_among_the_groups_in_reach(world, org_user):
    group = world.groups["A1 servers"]
    a1_first = world.devices[world.site_a1][0]
    DeviceGroupMembership.objects.create(device=a1_first, group=group, org=a1_first.org)
    client = admin_as(org_user)

    response = client.get(URL, {"group": str(group.pk)})

    assert hostnames(response) == ["a1-1"]
    group_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "group")
    # Org-wide groups need whole-organization reach; B's groups are another tenant's.
    assert [label for _, label in group_filter.lookup_choices] == ["Org A / A1 servers"]


def test_the_list_filters_by_open_alerts(world, partner_technician):
    a1_first, a1_second = world.devices[world.site_a1]
    open_alert(a1_first)
    open_alert(a1_second, status=Alert.Status.RESOLVED)
    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"has_open_alerts": "yes"})) == ["a1-1"]
    assert "a1-1" not in hostnames(client.get(URL, {"has_open_alerts": "no"}))
    assert "a1-2" in hostnames(client.get(URL, {"has_open_alerts": "no"}))


# --- search --------------------------------------------------------------------------------------------------------


def test_search_finds_a_lan_ip_exactly_and_a_subnet_by_its_prefix(world, partner_technician):
    add_interface(world.devices[world.site_a1][0], "192.168.7.10")
    add_interface(world.devices[world.site_a2][0], "192.168.7.100")
    add_interface(world.devices[world.site_b1][0], "192.168.7.11")  # another tenant's
    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"q": "192.168.7.10"})) == ["a1-1"]
    assert hostnames(client.get(URL, {"q": "192.168.7."})) == ["a1-1", "a2-1"]


def test_search_finds_the_address_a_device_was_last_seen_from(world, partner_technician):
    Device.objects.filter(hostname="a2-1").update(last_seen_ip="203.0.113.9")
    Device.objects.filter(hostname="b1-1").update(last_seen_ip="203.0.113.9")  # another tenant's
    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"q": "203.0.113.9"})) == ["a2-1"]


def test_search_finds_an_exact_tag(world, partner_technician):
    Device.objects.filter(hostname="a2-2").update(tags=["front-desk"])

    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"q": "front-desk"})) == ["a2-2"]
    assert hostnames(client.get(URL, {"q": "front-des"})) == []


def test_search_finds_the_devices_of_an_organization_by_its_name(world, partner_technician, outsider):
    assert hostnames(admin_as(partner_technician).get(URL, {"q": "org a2"})) == ["a2m-1", "a2m-2"]
    assert hostnames(admin_as(outsider).get(URL, {"q": "org a2"})) == []


def test_search_still_finds_hostnames_serial_numbers_and_agent_id_prefixes(world, partner_technician):
    device = world.devices[world.site_a2][1]
    client = admin_as(partner_technician)

    assert hostnames(client.get(URL, {"q": "A2-2"})) == ["a2-2"]
    assert hostnames(client.get(URL, {"q": device.agent_id[:12]})) == ["a2-2"]


# --- query count ---------------------------------------------------------------------------------------------------


def test_the_list_runs_as_many_queries_for_many_devices_with_alerts_ips_and_tags_as_for_few(
    world, partner_technician, django_assert_max_num_queries
):
    client = admin_as(partner_technician)
    params = {"q": "bulk", "status__exact": "online"}
    with CaptureQueriesContext(connection) as few:
        assert client.get(URL, params).status_code == 200
    for n in range(30):
        device = Device.objects.create(
            org=world.org_a, site=world.site_a2, agent_id=f"{n:064d}", hostname=f"bulk-{n:02d}", os_type="linux",
            tags=["grown", f"t{n}"],
        )  # fmt: skip
        add_interface(device, f"10.9.0.{n}")
        open_alert(device)

    with django_assert_max_num_queries(len(few)):
        response = client.get(URL, params)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
    assert all(row.open_alerts == 1 for row in response.context["cl"].result_list)


# --- bulk actions: who is offered what -------------------------------------------------------------------------------

# action → (a persona that may, one that may not)
WHO = {
    "run_command": ("partner_technician", "org_user"),
    "run_script": ("partner_technician", "org_user"),
    "add_tag": ("org_user", "partner_technician"),
    "remove_tag": ("org_user", "partner_technician"),
    "start_maintenance": ("org_user", "partner_technician"),
    "end_maintenance": ("org_user", "viewer"),
    "add_to_group": ("org_user", "partner_technician"),
    "quarantine": ("org_user", "viewer"),
    "approve": ("org_user", "partner_technician"),
    "request_token_rotation": ("org_user", "viewer"),
    "decommission": ("partner_admin", "org_user"),
}


def test_every_bulk_action_of_the_contract_is_in_the_table():
    assert set(WHO) == set(BULK_ACTIONS) == {
        "run_command", "run_script", "add_tag", "remove_tag", "start_maintenance", "end_maintenance",
        "add_to_group", "quarantine", "approve", "request_token_rotation", "decommission",
    }  # fmt: skip


@pytest.mark.parametrize("action", sorted(WHO))
def test_a_bulk_action_is_offered_to_a_persona_that_may_and_not_to_one_that_may_not(request, world, action):
    may, may_not = (request.getfixturevalue(persona) for persona in WHO[action])

    assert action in offered(admin_as(may).get(URL))
    assert action not in offered(admin_as(may_not).get(URL))


def inputs_for(action: str, world, script: Script | None = None) -> dict:
    return {
        "run_command": {"type": "reboot"},
        "run_script": {"script": str(script.pk) if script else ""},
        "add_tag": {"tag": "kiosk"},
        "remove_tag": {"tag": "old"},
        "add_to_group": {"group": str(world.groups["A1 servers"].pk)},
        "quarantine": {"reason": "Suspicious logins"},
    }.get(action, {})


def a_library_script(world) -> Script:
    return save_script(
        script=Script(
            partner=world.partner_a, name="Disk cleanup", language="bash", content="echo clean\n",
            os_types=["windows", "linux", "macos"],
        ),
        actor=None,
    )  # fmt: skip


@pytest.mark.parametrize("action", sorted(WHO))
def test_a_bulk_action_posted_by_a_persona_that_may_not_is_refused_and_changes_nothing(request, world, action):
    may_not = request.getfixturevalue(WHO[action][1])
    script = a_library_script(world)
    device = world.devices[world.site_a1][0]
    before = (Device.objects.get(pk=device.pk).status, AuditLog.objects.count(), DeviceCommand.objects.count())

    response = post_action(admin_as(may_not), action, [device], confirm="yes", **inputs_for(action, world, script))

    # Refused as Django refuses an action it does not offer: back to the list (without any action: the list itself).
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert messages_of(response) == ["No action selected."]
    else:
        assert "bulk-confirmation" not in response.content.decode()
    after = (Device.objects.get(pk=device.pk).status, AuditLog.objects.count(), DeviceCommand.objects.count())
    assert after == before


# --- bulk actions end to end -----------------------------------------------------------------------------------------


def confirm(client, action: str, devices, **fields):
    """The confirmation page, then the confirmed post, as a browser does it."""
    page = post_action(client, action, devices, **({"script": fields["script"]} if "script" in fields else {}))
    assert page.status_code == 200
    done = post_action(client, action, devices, confirm="yes", **fields)
    assert done.status_code == 302, done.content.decode()[-3000:]
    return page, done


@pytest.fixture
def a1(world) -> list[Device]:
    return list(world.devices[world.site_a1])


def test_run_command_queues_the_command_on_each_device(world, partner_technician, a1):
    page, done = confirm(admin_as(partner_technician), "run_command", a1, type="reboot")

    assert page.context["title"] == "Run a command on 2 devices"
    commands = DeviceCommand.objects.filter(device__in=a1)
    assert (
        sorted(commands.values_list("type", "status", "created_by"))
        == [("reboot", "pending", partner_technician.pk)] * 2
    )
    assert messages_of(done)[0].startswith("Queued reboot on 2 devices.")


def test_run_command_shows_the_payloads_problems_on_its_fields_and_queues_nothing(world, partner_technician, a1):
    client = admin_as(partner_technician)

    response = post_action(client, "run_command", a1, confirm="yes", type="script", language="bash", content="  ")

    assert response.status_code == 400
    assert response.context["form"].errors["content"] == ["The script to run is required."]
    assert not DeviceCommand.objects.exists()


def test_run_script_on_three_devices_leaves_three_pending_commands(world, partner_technician):
    script = a_library_script(world)
    devices = [*world.devices[world.site_a1], world.devices[world.site_a2][0]]
    client = admin_as(partner_technician)

    picked = post_action(client, "run_script", devices, script=str(script.pk), pick="Choose")
    assert picked.status_code == 200
    assert picked.context["title"] == "Run “Disk cleanup” on 3 devices"
    done = post_action(client, "run_script", devices, script=str(script.pk), confirm="yes")

    assert done.status_code == 302
    run = ScriptRun.objects.get()
    commands = DeviceCommand.objects.filter(script_run=run)
    assert sorted(commands.values_list("status", flat=True)) == ["pending"] * 3
    assert set(commands.values_list("device_id", flat=True)) == {d.pk for d in devices}
    results = admin_url(ScriptRun, "results", run.pk)
    assert messages_of(done) == [
        f'Queued “Disk cleanup” on 3 devices. Results: <a href="{results}">see the results</a>.'
    ]


def test_run_script_starts_one_run_per_organization(world, partner_technician):
    script = a_library_script(world)
    devices = [world.devices[world.site_a1][0], world.devices[world.site_a2_main][0]]

    confirm(admin_as(partner_technician), "run_script", devices, script=str(script.pk))

    assert sorted(ScriptRun.objects.values_list("org__name", "queued")) == [("Org A", 1), ("Org A2", 1)]


def test_run_script_shows_a_bad_parameter_on_its_field_and_queues_nothing(world, partner_technician, a1):
    script = save_script(
        script=Script(
            org=world.org_a, name="Free space", language="bash", content="df\n", os_types=["windows", "linux"],
            parameters=[{"name": "minFreeGb", "type": "int", "required": True}],
        ),
        actor=None,
    )  # fmt: skip
    client = admin_as(partner_technician)

    response = post_action(client, "run_script", a1, script=str(script.pk), confirm="yes", param_0="lots")

    assert response.status_code == 400
    assert response.context["form"].errors["param_0"]
    assert not ScriptRun.objects.exists()
    assert not DeviceCommand.objects.exists()


def test_add_and_remove_a_tag(world, org_user, a1):
    Device.objects.filter(pk=a1[1].pk).update(tags=["old", "kiosk"])
    client = admin_as(org_user)

    confirm(client, "add_tag", a1, tag="kiosk")
    confirm(client, "remove_tag", a1, tag="old")

    assert [Device.objects.get(pk=d.pk).tags for d in a1] == [["kiosk"], ["kiosk"]]
    # a1-2 had the tag already: one device.update row for the add, one for the remove.
    assert AuditLog.objects.filter(action="device.update").count() == 2


def test_maintenance_starts_and_ends_in_bulk(world, org_user, a1):
    client = admin_as(org_user)

    confirm(client, "start_maintenance", a1)
    during = sorted(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True))
    confirm(client, "end_maintenance", a1)

    assert during == ["maintenance", "maintenance"]
    assert sorted(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True)) == ["online"] * 2


def test_add_to_group_adds_the_devices_of_the_groups_site(world, partner_admin, a1):
    a2_first = world.devices[world.site_a2][0]
    group = world.groups["A1 servers"]

    page, done = confirm(admin_as(partner_admin), "add_to_group", [*a1, a2_first], group=str(group.pk))

    # The choices are the static groups of the selected devices' organization (not Org A2's, not B's).
    offered = {g.name for g in page.context["form"].fields["group"].queryset}
    assert offered == {"A1 servers", "A2 servers", "All of A"}
    assert set(group.memberships.values_list("device_id", flat=True)) == {d.pk for d in a1}
    assert "1 device left out: not in the group's site." in messages_of(done)


def test_quarantine_then_approve_in_bulk(world, org_user, a1):
    client = admin_as(org_user)

    confirm(client, "quarantine", a1, reason="Suspicious logins")
    quarantined = [(d.status, d.quarantined_reason) for d in Device.objects.filter(pk__in=[d.pk for d in a1])]
    confirm(client, "approve", a1)

    assert quarantined == [("quarantined", "Suspicious logins")] * 2
    assert set(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True)) == {"online"}


def test_quarantine_needs_a_reason(world, org_user, a1):
    response = post_action(admin_as(org_user), "quarantine", a1, confirm="yes", reason="")

    assert response.status_code == 400
    assert "reason" in response.context["form"].errors
    assert set(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True)) == {"online"}


def test_approve_leaves_a_device_that_is_not_quarantined_and_says_why(world, org_user, a1):
    Device.objects.filter(pk=a1[0].pk).update(status=Device.Status.QUARANTINED)

    _page, done = confirm(admin_as(org_user), "approve", a1)

    assert list(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True)) == ["online"] * 2
    assert messages_of(done) == [
        "Approved 1 device.",
        "Only a quarantined device can be approved (it is online). (1 device not changed)",
    ]


def test_request_token_rotation_in_bulk(world, org_user, a1):
    Device.objects.filter(pk__in=[d.pk for d in a1]).update(agent_token_issued_at="2026-12-01T00:00:00Z")

    confirm(admin_as(org_user), "request_token_rotation", a1)

    assert list(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("agent_token_issued_at", flat=True)) == [
        None,
        None,
    ]
    assert AuditLog.objects.filter(action="device.request_token_rotation").count() == 2


def test_decommission_in_bulk(world, partner_admin, a1):
    confirm(admin_as(partner_admin), "decommission", a1)

    assert set(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("status", flat=True)) == {"decommissioned"}


# --- the confirmation page's count ---------------------------------------------------------------------------------


@pytest.fixture
def reads_all_writes_a1(world, roles, make_partner_member):
    """A partner viewer (reads every organization of partner A) who may also write the devices of site A1."""
    user = make_partner_member("mixed@a.example", world.partner_a, "Partner Viewer")
    membership = OrganizationUser.objects.create(org=world.org_a, user=user, role=roles["Org User"])
    membership.sites.set([world.site_a1])
    return user


def test_the_confirmation_page_counts_the_devices_in_reach_and_names_those_left_out(world, reads_all_writes_a1, a1):
    a2_first = world.devices[world.site_a2][0]
    a2m_first = world.devices[world.site_a2_main][0]
    client = admin_as(reads_all_writes_a1)

    page = post_action(client, "start_maintenance", [*a1, a2_first, a2m_first])

    assert page.status_code == 200
    assert page.context["title"] == "Put 2 devices in maintenance"
    text = page.content.decode()
    assert 'data-bulk-touch="2" data-bulk-left-out="2"' in text
    assert "2 not in your reach for devices:write" in text
    assert [d.hostname for d, _ in page.context["selection"].left_out] == ["a2-1", "a2m-1"]
    assert set(Device.objects.values_list("status", flat=True)) == {"online"}  # nothing yet

    done = post_action(client, "start_maintenance", [*a1, a2_first, a2m_first], confirm="yes")

    assert done.status_code == 302
    statuses = dict(Device.objects.values_list("hostname", "status"))
    assert [statuses[h] for h in ("a1-1", "a1-2", "a2-1", "a2m-1")] == ["maintenance"] * 2 + ["online"] * 2
    assert messages_of(done) == [
        "Put 2 devices in maintenance.",
        "2 devices of your selection left out: not in your reach for devices:write.",
    ]


def test_a_selection_with_nothing_in_reach_offers_no_confirm_button(world, reads_all_writes_a1):
    a2 = world.devices[world.site_a2]
    client = admin_as(reads_all_writes_a1)

    page = post_action(client, "start_maintenance", a2)
    refused = post_action(client, "start_maintenance", a2, confirm="yes")

    assert page.status_code == 200
    assert 'name="confirm"' not in page.content.decode()
    assert refused.status_code == 400
    assert set(Device.objects.values_list("status", flat=True)) == {"online"}


def test_selecting_across_the_filtered_list_acts_on_the_filtered_devices(world, org_user, a1):
    filtered = f"{URL}?status__exact=online"
    Device.objects.filter(pk=a1[1].pk).update(status=Device.Status.OFFLINE)
    client = admin_as(org_user)
    data = {"action": "start_maintenance", "_selected_action": [str(a1[0].pk)], "select_across": "1"}

    page = client.post(filtered, data)
    done = client.post(filtered, {**data, "confirm": "yes"})

    assert page.status_code == 200
    assert [d.hostname for d in page.context["selection"].targets] == ["a1-1"]
    assert done.status_code == 302
    assert dict(Device.objects.filter(pk__in=[d.pk for d in a1]).values_list("hostname", "status")) == {
        "a1-1": "maintenance",
        "a1-2": "offline",
    }


def test_a_bulk_action_refuses_more_devices_than_its_limit(world, partner_admin, monkeypatch):
    monkeypatch.setattr("devices.admin.device_list.BULK_LIMIT", 2)
    client = admin_as(partner_admin)
    data = {"action": "start_maintenance", "_selected_action": [str(world.devices[world.site_a1][0].pk)]}

    response = client.post(URL, {**data, "select_across": "1", "confirm": "yes"})

    assert response.status_code == 302
    assert messages_of(response)[0].startswith("A bulk action acts on at most 2 devices")
    assert set(Device.objects.values_list("status", flat=True)) == {"online"}
