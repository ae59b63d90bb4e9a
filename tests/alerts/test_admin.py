"""The alerting admin: rules with their preview, alerts with acknowledge/resolve, windows, channels (secret
write-only) and the delivery log, each showing only what the authorization module lets the user reach."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog
from alerts.models import Alert, AlertRule, AlertState, MaintenanceWindow, Notification, NotificationChannel
from rmm.admin import ScopedAdminMixin, SuperuserOnlyAdminMixin
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

SECRET = "whsec-never-shown-again-0123456789"
OFFLINE = {"kind": "offline", "minutes": 15}


def open_alert(device, *, status=Alert.Status.OPEN, rule=None, title=None) -> Alert:
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        rule=rule,
        severity="warning",
        status=status,
        title=title or f"Offline for 15 minutes on {device.hostname}",
        resolved_at=timezone.now() if status == Alert.Status.RESOLVED else None,
    )


@pytest.fixture
def alerts(world) -> dict[str, Alert]:
    """One open alert per device of the world, by hostname."""
    return {device.hostname: open_alert(device) for device in world.all_devices}


def listed(response) -> set[str]:
    assert response.status_code == 200
    return {obj.device.hostname for obj in response.context["cl"].result_list}


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Every model has a scoped page ---------------------------------------------------------------------------------


def test_every_alerts_model_has_an_admin_that_is_scoped_or_for_operators_only():
    for model in apps.get_app_config("alerts").get_models():
        model_admin = admin.site._registry.get(model)
        assert model_admin is not None, model.__name__
        assert isinstance(model_admin, ScopedAdminMixin | SuperuserOnlyAdminMixin), model.__name__


@pytest.mark.parametrize("model", [AlertRule, Alert, MaintenanceWindow, NotificationChannel, Notification, AlertState])
def test_every_list_and_add_page_answers_200_to_an_operator(superuser, alerts, model):
    client = admin_as(superuser)

    assert client.get(admin_url(model, "changelist")).status_code == 200
    if admin.site._registry[model].has_add_permission(client.get(admin_url(model, "changelist")).wsgi_request):
        assert client.get(admin_url(model, "add")).status_code == 200


# --- Alerts: scoping -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "sites"),
    [
        ("superuser", ["site_a1", "site_a2", "site_a2_main", "site_b1"]),
        ("partner_technician", ["site_a1", "site_a2", "site_a2_main"]),
        ("viewer", ["site_a1", "site_a2", "site_a2_main"]),
        ("org_admin", ["site_a1", "site_a2"]),
        ("org_user", ["site_a1"]),
        ("outsider", ["site_b1"]),
    ],
)
def test_the_alert_list_shows_only_alerts_of_devices_in_reach(request, world, alerts, persona, sites):
    client = admin_as(request.getfixturevalue(persona))

    response = client.get(admin_url(Alert, "changelist"))

    expected = {device.hostname for device in world.devices_in(*(getattr(world, site) for site in sites))}
    assert listed(response) == expected


def test_a_technician_of_partner_a_cannot_open_an_alert_of_org_b(world, alerts, partner_technician):
    client = admin_as(partner_technician)

    response = client.get(admin_url(Alert, "change", alerts["b1-1"].pk))

    # Django's answer for an object that is not in the admin's queryset: back to the index, "does not exist".
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_a_filter_for_org_b_shows_a_technician_of_org_a_nothing(world, alerts, org_admin):
    client = admin_as(org_admin)

    response = client.get(admin_url(Alert, "changelist"), {"org__id__exact": str(world.org_b.pk)})

    assert listed(response) == set()


# --- Alerts: acknowledge and resolve -------------------------------------------------------------------------------


def act(client, action: str, *selected: Alert):
    return client.post(
        admin_url(Alert, "changelist"),
        {"action": action, "_selected_action": [str(alert.pk) for alert in selected]},
        follow=True,
    )


def test_a_technician_acknowledges_an_alert_and_it_is_audited(alerts, partner_technician):
    client = admin_as(partner_technician)
    alert = alerts["a1-1"]

    response = act(client, "acknowledge", alert)

    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by == partner_technician
    assert alert.acknowledged_at is not None
    audit = AuditLog.objects.get(action="alert.acknowledge")
    assert audit.actor_user == partner_technician
    assert audit.target_id == str(alert.pk)
    assert "1 alert acknowledged." in messages_of(response)


def test_resolving_says_what_happened_to_each_alert(world, alerts, partner_technician):
    client = admin_as(partner_technician)
    done = open_alert(world.devices[world.site_a1][0], status=Alert.Status.RESOLVED, title="Already resolved")

    response = act(client, "resolve", alerts["a2-1"], done)

    assert response.status_code == 200
    alerts["a2-1"].refresh_from_db()
    assert alerts["a2-1"].status == Alert.Status.RESOLVED
    assert alerts["a2-1"].resolve_reason == Alert.ResolveReason.MANUAL
    assert alerts["a2-1"].resolved_by == partner_technician
    shown = messages_of(response)
    assert "1 alert resolved." in shown
    assert any(message.startswith("Not resolved: Already resolved") for message in shown), shown
    assert AuditLog.objects.filter(action="alert.resolve").count() == 1


def test_a_viewer_is_not_offered_the_acknowledge_action(alerts, viewer):
    client = admin_as(viewer)

    response = client.get(admin_url(Alert, "changelist"))

    assert response.status_code == 200
    assert response.context["action_form"] is None  # no action the viewer may run: no action bar at all
    act(client, "acknowledge", alerts["a1-1"])
    alerts["a1-1"].refresh_from_db()
    assert alerts["a1-1"].status == Alert.Status.OPEN


def test_an_outsider_cannot_acknowledge_an_alert_of_partner_a_by_posting_its_id(alerts, outsider):
    client = admin_as(outsider)

    act(client, "acknowledge", alerts["a1-1"])

    alerts["a1-1"].refresh_from_db()
    assert alerts["a1-1"].status == Alert.Status.OPEN
    assert not AuditLog.objects.filter(action="alert.acknowledge").exists()


def transition_url(alert: Alert) -> str:
    return reverse("admin:alerts_alert_transition", args=[alert.pk])


def test_a_technician_acknowledges_one_alert_from_its_page_with_a_note(alerts, partner_technician):
    client = admin_as(partner_technician)
    alert = alerts["a1-1"]
    page = client.get(admin_url(Alert, "change", alert.pk))
    assert page.status_code == 200
    assert b'value="acknowledge"' in page.content and transition_url(alert).encode() in page.content

    response = client.post(transition_url(alert), {"transition": "acknowledge", "note": "on it"}, follow=True)

    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    assert alert.acknowledged_by == partner_technician
    assert AuditLog.objects.get(action="alert.acknowledge").details["note"] == "on it"
    assert "The alert was acknowledged." in messages_of(response)
    assert b'value="acknowledge"' not in response.content  # acknowledged: only "Resolve" is left
    assert b'value="resolve"' in response.content


def test_resolving_a_resolved_alert_from_its_page_says_why_and_changes_nothing(world, partner_technician):
    client = admin_as(partner_technician)
    done = open_alert(world.devices[world.site_a1][0], status=Alert.Status.RESOLVED, title="Already resolved")
    page = client.get(admin_url(Alert, "change", done.pk))
    assert page.status_code == 200
    assert b'value="resolve"' not in page.content

    response = client.post(transition_url(done), {"transition": "resolve"}, follow=True)

    assert response.status_code == 200
    assert any(message.startswith("Not resolved:") for message in messages_of(response))
    assert not AuditLog.objects.filter(action="alert.resolve").exists()


def test_a_viewer_sees_no_buttons_and_is_refused_when_posting(alerts, viewer):
    client = admin_as(viewer)
    alert = alerts["a1-1"]
    page = client.get(admin_url(Alert, "change", alert.pk))
    assert page.status_code == 200
    assert b'value="acknowledge"' not in page.content

    assert client.post(transition_url(alert), {"transition": "acknowledge"}).status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


def test_an_outsider_posting_to_an_alert_page_of_partner_a_gets_404(alerts, outsider):
    client = admin_as(outsider)

    response = client.post(transition_url(alerts["a1-1"]), {"transition": "resolve"})

    assert response.status_code == 404
    alerts["a1-1"].refresh_from_db()
    assert alerts["a1-1"].status == Alert.Status.OPEN


def test_the_transition_page_refuses_get_and_unknown_transitions(alerts, partner_technician):
    client = admin_as(partner_technician)
    alert = alerts["a1-1"]

    assert client.get(transition_url(alert)).status_code == 405
    assert client.post(transition_url(alert), {"transition": "delete"}).status_code == 400
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN


def test_alerts_cannot_be_added_changed_or_deleted_in_the_admin(alerts, superuser):
    client = admin_as(superuser)

    assert client.get(admin_url(Alert, "add")).status_code == 403
    assert client.post(admin_url(Alert, "delete", alerts["a1-1"].pk), {"post": "yes"}).status_code == 403
    assert Alert.objects.filter(pk=alerts["a1-1"].pk).exists()


# --- Rules ---------------------------------------------------------------------------------------------------------


def rule_form(org, **changes) -> dict:
    data = {
        "org": str(org.pk),
        "name": "Servers offline",
        "enabled": "on",
        "severity": "warning",
        "condition": '{"kind": "offline", "minutes": 15}',
        "for_minutes": "0",
        "resolve_after_minutes": "0",
        "auto_resolve": "on",
        "cooldown_minutes": "5",
        "renotify_minutes": "",
    }
    return data | changes


def test_a_rule_added_in_the_admin_is_saved_through_the_service_and_audited(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(admin_url(AlertRule, "add"), rule_form(world.org_a))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    rule = AlertRule.objects.get(name="Servers offline")
    assert rule.org == world.org_a and rule.condition == OFFLINE
    assert AuditLog.objects.filter(action="alert_rule.create", target_id=str(rule.pk)).count() == 1


def test_a_bad_condition_is_shown_on_the_condition_field_with_its_path(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(AlertRule, "add"),
        rule_form(
            world.org_a,
            condition='{"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", '
            '"op": ">", "value": 90, "windowMinutes": 0}',
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "windowMinutes" in " ".join(errors["condition"])
    assert not AlertRule.objects.exists()


def test_the_rule_page_shows_how_many_devices_would_alert_now(world, make_rule, partner_admin):
    long_ago = timezone.now() - dt.timedelta(hours=2)
    for device in world.devices[world.site_a1]:
        type(device).objects.filter(pk=device.pk).update(last_seen_at=long_ago)
    rule = make_rule(world.org_a, OFFLINE, name="Offline")
    client = admin_as(partner_admin)

    response = client.get(admin_url(AlertRule, "change", rule.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "2 devices would alert now" in html
    assert "a1-1" in html and "a1-2" in html


def test_the_preview_button_previews_the_edited_condition_without_saving(world, make_rule, partner_admin):
    seen = timezone.now() - dt.timedelta(minutes=30)
    device = world.devices[world.site_a2][0]
    type(device).objects.filter(pk=device.pk).update(last_seen_at=seen)
    rule = make_rule(world.org_a, {"kind": "offline", "minutes": 60}, name="Offline an hour")
    client = admin_as(partner_admin)
    page = client.get(admin_url(AlertRule, "change", rule.pk))
    assert reverse("admin:alerts_alertrule_preview") in page.content.decode()

    form = rule_form(world.org_a, name="Offline an hour", condition='{"kind": "offline", "minutes": 20}')
    response = client.post(reverse("admin:alerts_alertrule_preview") + f"?rule={rule.pk}", form)

    assert response.status_code == 200
    assert response.context["count"] == 1
    assert "a2-1" in response.content.decode()
    rule.refresh_from_db()
    assert rule.condition == {"kind": "offline", "minutes": 60}


def test_the_preview_of_a_bad_condition_names_the_problem(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(reverse("admin:alerts_alertrule_preview"), rule_form(world.org_a, condition='{"kind": "x"}'))

    assert response.status_code == 400
    assert any(error.startswith("condition") for error in response.context["errors"]), response.context["errors"]


def test_the_preview_is_closed_to_users_who_cannot_write_rules(world, partner_technician):
    client = admin_as(partner_technician)

    response = client.post(reverse("admin:alerts_alertrule_preview"), rule_form(world.org_a))

    assert response.status_code == 403


def test_an_outsider_cannot_preview_a_rule_of_partner_a(world, make_rule, outsider):
    rule = make_rule(world.org_a, OFFLINE, name="Offline")
    client = admin_as(outsider)

    response = client.post(reverse("admin:alerts_alertrule_preview") + f"?rule={rule.pk}", rule_form(world.org_a))

    assert response.status_code == 403


def test_rules_of_org_b_are_not_listed_for_org_a(world, make_rule, org_admin):
    make_rule(world.org_a, OFFLINE, name="A offline")
    make_rule(world.org_b, OFFLINE, name="B offline")
    client = admin_as(org_admin)

    response = client.get(admin_url(AlertRule, "changelist"))

    assert response.status_code == 200
    assert [rule.name for rule in response.context["cl"].result_list] == ["A offline"]


# --- Channels: the secret is write-only ----------------------------------------------------------------------------


@pytest.fixture
def webhook(world) -> NotificationChannel:
    return NotificationChannel.objects.create(
        org=world.org_a, name="Ops hook", kind="webhook", config={"url": "https://hooks.example.com/rmm"}, secret=SECRET
    )


def channel_form(channel: NotificationChannel, **changes) -> dict:
    data = {"name": channel.name, "kind": channel.kind, "config": '{"url": "https://hooks.example.com/rmm"}'}
    return data | {"enabled": "on", "secret": ""} | changes


def test_the_channel_secret_is_never_rendered(webhook, partner_admin):
    client = admin_as(partner_admin)

    for url in (admin_url(NotificationChannel, "changelist"), admin_url(NotificationChannel, "change", webhook.pk)):
        response = client.get(url)
        assert response.status_code == 200
        assert SECRET not in response.content.decode(), url


def test_saving_a_channel_with_a_blank_secret_keeps_the_current_one(webhook, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(admin_url(NotificationChannel, "change", webhook.pk), channel_form(webhook, name="Ops"))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    webhook.refresh_from_db()
    assert webhook.name == "Ops"
    assert webhook.secret == SECRET
    assert AuditLog.objects.filter(action="notification_channel.update").count() == 1


def test_a_new_secret_replaces_the_old_one_and_is_not_shown_back(webhook, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(NotificationChannel, "change", webhook.pk), channel_form(webhook, secret="a-brand-new-secret-42")
    )

    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.secret == "a-brand-new-secret-42"
    page = client.get(admin_url(NotificationChannel, "change", webhook.pk))
    assert "a-brand-new-secret-42" not in page.content.decode()


def test_a_channel_of_org_a_is_not_reached_by_an_outsider(webhook, outsider):
    client = admin_as(outsider)

    assert client.get(admin_url(NotificationChannel, "change", webhook.pk)).status_code == 302
    assert list(client.get(admin_url(NotificationChannel, "changelist")).context["cl"].result_list) == []


# --- Windows and the delivery log ----------------------------------------------------------------------------------


def test_a_window_added_in_the_admin_is_saved_through_the_service_and_audited(world, org_admin):
    client = admin_as(org_admin)

    response = client.post(
        admin_url(MaintenanceWindow, "add"),
        {
            "org": str(world.org_a.pk),
            "name": "Patch night",
            "starts_at_0": "2026-03-07",
            "starts_at_1": "22:00:00",
            "ends_at_0": "2026-03-08",
            "ends_at_1": "02:00:00",
            "recurrence": "weekly",
            "weekdays": ["5"],
            "timezone": "Europe/Berlin",
            "suppress_alerts": "on",
        },
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    window = MaintenanceWindow.objects.get(name="Patch night")
    assert window.weekdays == [5]
    assert AuditLog.objects.filter(action="maintenance_window.create", target_id=str(window.pk)).count() == 1


def test_the_delivery_log_is_read_only_and_scoped(world, webhook, alerts, partner_admin, outsider):
    Notification.objects.create(
        channel=webhook, org=world.org_a, alert=alerts["a1-1"], event="alert.opened", payload={"event": "x"}
    )
    client = admin_as(partner_admin)

    response = client.get(admin_url(Notification, "changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1
    assert client.get(admin_url(Notification, "add")).status_code == 403
    other = admin_as(outsider)
    assert list(other.get(admin_url(Notification, "changelist")).context["cl"].result_list) == []


def test_the_evaluators_state_is_for_operators_only(world, partner_admin):
    client = admin_as(partner_admin)

    assert client.get(admin_url(AlertState, "changelist")).status_code == 403


def test_a_secret_for_an_email_channel_is_refused_with_a_message_not_a_500(world, partner_admin):
    channel = NotificationChannel.objects.create(
        org=world.org_a, name="On call", kind="email", config={"to": ["oncall@example.com"]}
    )
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(NotificationChannel, "change", channel.pk),
        {"name": "On call", "kind": "email", "config": '{"to": ["oncall@example.com"]}', "secret": "x" * 20},
        follow=True,
    )

    assert response.status_code == 200
    assert any("webhook" in message for message in messages_of(response)), messages_of(response)
    channel.refresh_from_db()
    assert channel.secret == ""
    assert not AuditLog.objects.filter(action="notification_channel.update").exists()


def test_a_partner_wide_rule_previews_every_organization_of_the_partner_in_reach(world, make_rule, partner_admin):
    long_ago = timezone.now() - dt.timedelta(hours=2)
    for site in (world.site_a1, world.site_a2_main, world.site_b1):
        for device in world.devices[site]:
            type(device).objects.filter(pk=device.pk).update(last_seen_at=long_ago)
    rule = make_rule(world.partner_a, OFFLINE, name="Partner offline")
    client = admin_as(partner_admin)

    response = client.get(admin_url(AlertRule, "change", rule.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "4 devices would alert now" in html  # a1-* and a2m-*; org B is another partner's
    assert "b1-1" not in html


@pytest.mark.parametrize("model", [Alert, AlertRule, Notification])
def test_a_list_costs_the_same_number_of_queries_with_more_rows(world, webhook, make_rule, partner_admin, model):
    client = admin_as(partner_admin)
    url = admin_url(model, "changelist")

    def add_rows(count: int) -> None:
        for n in range(count):
            device = world.devices[world.site_a1][n % 2]
            rule = make_rule(world.org_a, {"kind": "offline", "minutes": 15 + n}, name=f"Offline {n} {count}")
            alert = open_alert(device, rule=rule)
            Notification.objects.create(channel=webhook, org=world.org_a, alert=alert, event="alert.opened", payload={})

    add_rows(2)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    add_rows(20)
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200

    assert len(many) == len(few)
