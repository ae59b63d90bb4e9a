"""Admin pages for alerting: rules (with a "would alert now" preview), alerts (acknowledge and resolve), maintenance
windows, notification channels (the secret is write-only) and the delivery log.

A first version of the console (issue 14); every write goes through the service the API calls, so both doors obey
the same rules and write the same audit rows:

- rules: ``AlertRule.clean()`` (``alerts.conditions.validate_rule``) runs in the form, so a bad condition is shown
  on its field with the path of the offending key; ``alerts.services.rules.save_rule`` / ``delete_rule`` save;
- alerts: read-only, the list's actions call ``alerts.services.lifecycle.acknowledge`` / ``resolve``;
- windows: ``alerts.services.windows.save_window`` / ``delete_window``;
- channels: ``alerts.services.channels.save_channel`` / ``delete_channel`` / ``send_test``.

Rules, channels and the delivery log are the ``alerts`` resource of the authorization module (read to see them,
write to change them); alerts need ``alerts:acknowledge`` for their actions; maintenance windows are the
``devices`` resource, as in the API (``devices:write`` to change them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpResponseBadRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from alerts.models import Alert, AlertRule, AlertState, MaintenanceWindow, Notification, NotificationChannel
from devices.models import Device
from orgs.admin import SiteFilter
from orgs.models import Organization
from rmm import authz
from rmm.admin import (
    BigTableAdminMixin,
    DomainErrorsAsMessagesMixin,
    ModelErrorsOnTheFormMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    SuperuserOnlyAdminMixin,
    WrittenThroughServicesMixin,
    domain_error_message,
    refuse_unless_allowed,
    single_object_filter,
)
from rmm.console import severity_label, status_badge, time_ago
from rmm.domain_errors import DomainError, Invalid
from rmm.inputs import JSONFormField
from rmm.net import client_ip

# Deleting a rule, a channel or a window is a write, as in the API (the registry has no alerts:delete).
WRITE_VERBS = {"view": "read", "add": "write", "change": "write", "delete": "write"}
ACKNOWLEDGE_PERMISSION = "alerts:acknowledge"
# Devices listed by the "would alert now" preview; the service returns at most 50.
PREVIEW_SAMPLE_SHOWN = 50

CONDITION_HELP = (
    "One condition (docs/alerts.md), e.g. "
    '{"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10} · '
    '{"kind": "offline", "minutes": 15} · {"kind": "disk", "freePercentBelow": 10} · '
    '{"kind": "rule", "filterRules": {"field": "software.notInstalled", "operator": "contains", "value": "sophos"}} · '
    '{"kind": "commandFailed", "withinMinutes": 60}'
)

RuleFilter = single_object_filter("rule")
DeviceFilter = single_object_filter("device")
ChannelFilter = single_object_filter("channel")
AlertFilter = single_object_filter("alert")


def _visible_choices(request, perm: str, queryset):
    """``queryset`` (of an alerts model, which ``rmm.admin.tenant_models`` does not know) narrowed to what the user
    may pick for ``perm``."""
    return authz.visible(request.user, perm, queryset)


@contextmanager
def _validation_errors_as_domain_errors(message: str) -> Iterator[None]:
    """A service's ``ValidationError`` that the form could not foresee (e.g. a secret on an e-mail channel) as a
    domain error, which ``DomainErrorsAsMessagesMixin`` shows as a message after rolling the change back."""
    try:
        yield
    except ValidationError as error:
        fields = error.message_dict if hasattr(error, "error_dict") else {}
        raise Invalid(message if fields else " ".join(error.messages), fields=fields) from None


# --- Rules ---------------------------------------------------------------------------------------------------------


class AlertRuleForm(ModelErrorsOnTheFormMixin):
    """A rule's form. The condition is edited as JSON; ``AlertRule.clean()`` validates it (and the scope) and each
    problem is shown on its field with the path of the offending key (``condition.windowMinutes: …``)."""

    condition = JSONFormField(
        widget=forms.Textarea(attrs={"rows": 10, "cols": 90, "style": "font-family: monospace"}),
        help_text=CONDITION_HELP,
    )

    class Meta:
        model = AlertRule
        fields = (
            "partner",
            "org",
            "site",
            "device_group",
            "name",
            "enabled",
            "severity",
            "condition",
            "for_minutes",
            "resolve_after_minutes",
            "auto_resolve",
            "cooldown_minutes",
            "renotify_minutes",
            "channels",
        )


@admin.register(AlertRule)
class AlertRuleAdmin(DomainErrorsAsMessagesMixin, WrittenThroughServicesMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Alert rules of organizations (and partner-wide rules, for partner-level users). The change page shows how
    many devices the saved rule would alert on now; "Preview" shows it for the condition being edited, unsaved."""

    resource = "alerts"
    verbs = WRITE_VERBS
    form = AlertRuleForm
    change_form_template = "admin/alerts/alertrule/change_form.html"
    list_display = ("name", "owner", "severity", "enabled", "kind", "for_minutes", "open_alerts", "updated_at")
    list_filter = ("enabled", "severity", "org")
    list_select_related = ("org", "partner", "site")
    search_fields = ("name",)
    ordering = ("name", "id")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "severity")}),
        ("Scope", {"fields": ("partner", "org", "site", "device_group")}),
        ("Condition", {"fields": ("condition", "would_alert_now")}),
        (
            "Timing",
            {
                "fields": (
                    "for_minutes",
                    "resolve_after_minutes",
                    "auto_resolve",
                    "cooldown_minutes",
                    "renotify_minutes",
                )
            },
        ),
        ("Notifications", {"fields": ("channels",)}),
        ("Record", {"classes": ("collapse",), "fields": ("id", "created_by", "created_at", "updated_at")}),
    )
    readonly_fields = ("would_alert_now", "id", "created_by", "created_at", "updated_at")
    autocomplete_fields = ("site",)

    def get_readonly_fields(self, request, obj=None):
        # A rule keeps its owner: its alerts, states and audit rows belong to that organization or partner.
        return (*self.readonly_fields, "partner", "org") if obj else self.readonly_fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "channels":
            kwargs["queryset"] = _visible_choices(
                request, self.permission("change"), NotificationChannel.objects.select_related("org", "partner")
            )
            kwargs["widget"] = forms.CheckboxSelectMultiple
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="alerts_alertrule_preview"), *super().get_urls()]

    @admin.display(description="owner")
    def owner(self, obj: AlertRule) -> str:
        if obj.partner_id:
            return f"{obj.partner} (every organization)"
        return f"{obj.org} / {obj.site.name}" if obj.site is not None else str(obj.org)

    @admin.display(description="kind")
    def kind(self, obj: AlertRule) -> str:
        condition = obj.condition if isinstance(obj.condition, dict) else {}
        return str(condition.get("kind", "?"))

    @admin.display(description="open alerts")
    def open_alerts(self, obj: AlertRule):
        url = reverse("admin:alerts_alert_changelist")
        return format_html('<a href="{}?rule={}&status__exact=open">list</a>', url, obj.pk)

    def get_object(self, request, object_id, from_field=None):
        rule = super().get_object(request, object_id, from_field)
        if rule is not None:
            # would_alert_now previews for this user. On the object, not on this admin, which every request shares.
            rule.previewed_by = request.user
        return rule

    @admin.display(description="would alert now")
    def would_alert_now(self, obj: AlertRule):
        user = getattr(obj, "previewed_by", None)
        if obj is None or obj._state.adding or user is None:
            return "Save the rule, or use “Preview” below, to see which devices it would alert on now."
        try:
            count, sample = preview_rule(user=user, rule=obj)
        except ValidationError as error:
            return "; ".join(error.messages)
        return _preview_html(count, sample)

    def preview_view(self, request):
        """Which devices the rule in the posted form would alert on now (the condition held now, ``for_minutes``
        aside), without saving it. The form is the rule's own, so its errors are the ones saving would show."""
        if not self.holds_anywhere(request, "change"):
            raise PermissionDenied
        rule_id = request.GET.get("rule")
        obj = self.get_object(request, rule_id) if rule_id else None
        if rule_id and (obj is None or not self.has_change_permission(request, obj)):
            raise PermissionDenied
        count: int | None = None
        sample: list[tuple[Device, float | None]] = []
        errors: list[str] | None = None
        if request.method == "POST":
            form = self.get_form(request, obj, change=obj is not None)(request.POST, instance=obj)
            if form.is_valid():
                try:
                    count, sample = preview_rule(user=request.user, rule=form.instance)
                except ValidationError as error:
                    errors = error.messages
            else:
                errors = [
                    f"{name}: {message}" if name != NON_FIELD_ERRORS else str(message)
                    for name, field_errors in form.errors.items()
                    for message in field_errors
                ]
        else:
            errors = ["Post the rule's form here (the “Preview” button of a rule's page)."]
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": "Would alert now",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "rule": obj,
            "errors": errors,
            "count": count,
            "rows": [(device, _value(value)) for device, value in sample[:PREVIEW_SAMPLE_SHOWN]],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/alerts/alertrule/preview.html", context, status=400 if errors else 200)

    def save_through_service(self, request, obj, form, change):
        from alerts.services.rules import save_rule

        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        with _validation_errors_as_domain_errors("The rule is not valid."):
            return save_rule(
                rule=obj,
                actor=request.user,
                channels=list(form.cleaned_data.get("channels") or []),
                ip=client_ip(request),
            )

    def save_related(self, request, form, formsets, change):
        # save_rule set the channels (the one home of a rule's writes); the form's save_m2m would set them again.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_through_service(self, request, obj) -> None:
        from alerts.services.rules import delete_rule

        delete_rule(rule=obj, actor=request.user, ip=client_ip(request))


def preview_rule(*, user, rule: AlertRule) -> tuple[int, list[tuple[Device, float | None]]]:
    """``alerts.services.evaluate.preview`` for ``rule`` (saved or not): its organization, or, for a partner-wide
    rule, each organization of the partner the user may read alerts of (counts added up, samples concatenated)."""
    from alerts.services.evaluate import preview

    if rule.org is not None:
        result = preview(org=rule.org, site=rule.site, device_group=rule.device_group, condition=rule.condition)
        return result.count, list(result.sample)
    orgs = authz.visible(user, "alerts:read", Organization.objects.filter(partner=rule.partner))
    count, sample = 0, list[tuple[Device, float | None]]()
    for org in orgs.order_by("name", "id"):
        result = preview(org=org, condition=rule.condition)
        count += result.count
        sample.extend(result.sample[: max(0, PREVIEW_SAMPLE_SHOWN - len(sample))])
    return count, sample


def _value(value: float | None) -> str:
    return "\N{EN DASH}" if value is None else f"{value:,.1f}"


def _preview_html(count: int, sample: list[tuple[Device, float | None]]):
    items = format_html_join(
        "",
        '<li><a href="{}">{}</a> {}</li>',
        (
            (reverse("admin:devices_device_change", args=[device.pk]), device.hostname, _value(value))
            for device, value in sample[:20]
        ),
    )
    more = count - min(count, 20)
    return format_html(
        "{} device{} would alert now (before for_minutes).<ul>{}</ul>{}",
        count,
        "" if count == 1 else "s",
        items,
        f"… and {more} more." if more else "",
    )


# --- Alerts --------------------------------------------------------------------------------------------------------


@admin.register(Alert)
class AlertAdmin(
    DomainErrorsAsMessagesMixin, BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin
):
    """Alerts of the devices and sites in reach, newest first. Alerts are opened and resolved by the evaluator;
    people acknowledge or resolve them with the list's actions (``alerts:acknowledge``), as in the API."""

    resource = "alerts"
    list_display = (
        "title",
        "status_label",
        "severity_level",
        "device_hostname",
        "site_name",
        "org",
        "rule",
        "value",
        "opened",
        "acknowledged_at",
        "resolved_at",
    )
    list_filter = ("status", "severity", "org", SiteFilter, RuleFilter, DeviceFilter)
    list_select_related = ("org", "site", "device", "rule")
    search_fields = ("title", "device__hostname", "subject")
    ordering = ("-opened_at", "-id")
    date_hierarchy = None
    actions = ("acknowledge", "resolve")
    fields = (
        "title",
        "message",
        "status_label",
        "severity_level",
        "org",
        "site",
        "device_hostname",
        "rule",
        "subject",
        "value",
        "opened_at",
        "last_evaluated_at",
        "last_notified_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "resolve_reason",
        "id",
    )

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_acknowledge_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, ACKNOWLEDGE_PERMISSION)

    def get_urls(self):
        transition = self.admin_site.admin_view(self.transition_view)
        return [
            path("<path:object_id>/transition/", transition, name="alerts_alert_transition"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        alert = self.get_object(request, object_id)
        can_transition = (
            alert is not None
            and alert.status != Alert.Status.RESOLVED
            and authz.can(request.user, ACKNOWLEDGE_PERMISSION, alert)
        )
        extra_context = {**(extra_context or {}), "can_transition": can_transition}
        return super().change_view(request, object_id, form_url, extra_context)

    def transition_view(self, request, object_id):
        """The alert page's "Acknowledge" and "Resolve" buttons (with an optional note, kept in the audit row), as
        ``POST alerts/{id}/acknowledge|resolve`` do in the API: the same lifecycle functions."""
        from alerts.services import lifecycle

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        alert = self.get_object(request, object_id)
        if alert is None:
            raise Http404("No such alert in your reach.")
        if not authz.can(request.user, ACKNOWLEDGE_PERMISSION, alert):
            raise PermissionDenied
        action = request.POST.get("transition")
        transitions = {
            "acknowledge": (lifecycle.acknowledge, "acknowledged"),
            "resolve": (lifecycle.resolve, "resolved"),
        }
        if action not in transitions:
            return HttpResponseBadRequest("Choose acknowledge or resolve.")
        transition, done = transitions[action]
        try:
            transition(alert=alert, actor=request.user, note=request.POST.get("note", ""), ip=client_ip(request))
        except DomainError as error:
            self.message_user(request, f"Not {done}: {domain_error_message(error)}", messages.WARNING)
        else:
            self.message_user(request, f"The alert was {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:alerts_alert_change", args=[alert.pk]))

    @admin.display(description="site", ordering="site__name")
    def site_name(self, obj: Alert) -> str:
        return obj.site.name

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: Alert):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="severity", ordering="severity")
    def severity_level(self, obj: Alert):
        return severity_label(obj.severity, obj.get_severity_display())

    @admin.display(description="device", ordering="device__hostname")
    def device_hostname(self, obj: Alert):
        device = obj.device
        if device is None:
            return "(the whole site)"
        url = reverse("admin:devices_device_change", args=[device.pk])
        return format_html('<a href="{}">{}</a>', url, device.hostname)

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj: Alert):
        return time_ago(obj.opened_at)

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        from alerts.services import lifecycle

        self._transition(request, queryset, lifecycle.acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["acknowledge"])
    def resolve(self, request, queryset):
        from alerts.services import lifecycle

        self._transition(request, queryset, lifecycle.resolve, "resolved")

    def _transition(self, request, queryset, transition: Callable[..., Any], done: str) -> None:
        """Run ``transition`` on each selected alert; one refused (already resolved, …) does not undo the others,
        and every outcome is reported."""
        alerts = list(queryset.select_related("device", "site"))
        refuse_unless_allowed(request, ACKNOWLEDGE_PERMISSION, alerts)
        changed, refused = 0, []
        for alert in alerts:
            try:
                with transaction.atomic():
                    transition(alert=alert, actor=request.user, ip=client_ip(request))
            except DomainError as error:
                refused.append(f"{alert.title}: {domain_error_message(error)}")
            else:
                changed += 1
        if changed:
            self.message_user(request, f"{changed} alert{'' if changed == 1 else 's'} {done}.", messages.SUCCESS)
        for problem in refused:
            self.message_user(request, f"Not {done}: {problem}", messages.WARNING)


# --- Maintenance windows -------------------------------------------------------------------------------------------

WEEKDAYS = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]


class MaintenanceWindowForm(ModelErrorsOnTheFormMixin):
    """A window's form; ``MaintenanceWindow.clean()`` (``alerts.services.windows.validate_window``) checks it."""

    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Weekly windows only: the days the window starts on, in its time zone.",
    )

    class Meta:
        model = MaintenanceWindow
        fields = (
            "org",
            "site",
            "device_group",
            "name",
            "starts_at",
            "ends_at",
            "recurrence",
            "weekdays",
            "timezone",
            "suppress_alerts",
            "suppress_commands",
        )


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(
    DomainErrorsAsMessagesMixin, WrittenThroughServicesMixin, ScopedAdminMixin, admin.ModelAdmin
):
    """Planned maintenance: no alert opens (and no command is handed out, if chosen) for the devices covered.
    A window covers a site, a device group, or (neither) the whole organization."""

    resource = "devices"
    verbs = WRITE_VERBS
    form = MaintenanceWindowForm
    list_display = (
        "name",
        "org",
        "site",
        "device_group",
        "recurrence",
        "starts_at",
        "ends_at",
        "timezone",
        "suppress_alerts",
        "suppress_commands",
        "occurring_now",
    )
    list_filter = ("recurrence", "suppress_alerts", "suppress_commands", "org", SiteFilter)
    list_select_related = ("org", "site", "device_group")
    search_fields = ("name",)
    readonly_fields = ("occurring_now", "id", "created_at", "updated_at")
    autocomplete_fields = ("site",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "org") if obj else self.readonly_fields

    @admin.display(description="occurring now", boolean=True)
    def occurring_now(self, obj: MaintenanceWindow) -> bool | None:
        from alerts.services.windows import is_occurring

        if obj is None or obj._state.adding:
            return None
        return is_occurring(obj, timezone.now())

    def save_through_service(self, request, obj, form, change):
        from alerts.services.windows import save_window

        return save_window(window=obj, actor=request.user, ip=client_ip(request))

    def delete_through_service(self, request, obj) -> None:
        from alerts.services.windows import delete_window

        delete_window(window=obj, actor=request.user, ip=client_ip(request))


# --- Notification channels and the delivery log --------------------------------------------------------------------


class NotificationChannelForm(ModelErrorsOnTheFormMixin):
    """A channel's form. The secret is write-only: its field is never filled in from the stored value, and left
    blank it keeps the current secret."""

    config = JSONFormField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 90, "style": "font-family: monospace"}),
        help_text='email: {"to": ["oncall@example.com"]} · webhook: {"url": "https://hooks.example.com/rmm"}',
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhooks: the key that signs each body (X-RMM-Signature). Write-only: it is never shown again; "
        "leave blank to keep the current one.",
    )

    class Meta:
        model = NotificationChannel
        fields = ("partner", "org", "name", "kind", "config", "enabled")

    def _post_clean(self):
        # The model form copies every field it has onto the channel, "secret" too: blank would erase the stored key.
        # The stored one stays on the instance; a new one is handed to save_channel, which checks and sets it.
        stored = self.instance.secret
        super()._post_clean()  # type: ignore[misc]  # Django's, undeclared in django-stubs
        self.instance.secret = stored


@admin.register(NotificationChannel)
class NotificationChannelAdmin(
    DomainErrorsAsMessagesMixin, WrittenThroughServicesMixin, ScopedAdminMixin, admin.ModelAdmin
):
    """Where notifications go: e-mail addresses or a signed webhook. The secret is never shown; the list's
    "Send a test" action delivers a ``channel.test`` notification at once and reports its outcome."""

    resource = "alerts"
    verbs = WRITE_VERBS
    form = NotificationChannelForm
    list_display = ("name", "kind", "owner", "target", "enabled", "has_secret", "updated_at")
    list_filter = ("kind", "enabled", "org")
    list_select_related = ("org", "partner")
    search_fields = ("name",)
    ordering = ("name", "id")
    fields = ("partner", "org", "name", "kind", "config", "secret", "enabled", "has_secret", "id", "updated_at")
    readonly_fields = ("has_secret", "id", "updated_at")
    actions = ("send_test",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "partner", "org") if obj else self.readonly_fields

    def has_send_test_permission(self, request) -> bool:
        return self.holds_anywhere(request, "change")

    @admin.display(description="owner")
    def owner(self, obj: NotificationChannel) -> str:
        return f"{obj.partner} (partner-wide)" if obj.partner_id else str(obj.org)

    @admin.display(description="target")
    def target(self, obj: NotificationChannel) -> str:
        config = obj.config if isinstance(obj.config, dict) else {}
        if obj.kind == NotificationChannel.Kind.EMAIL:
            return ", ".join(str(address) for address in config.get("to") or [])
        return str(config.get("url", ""))

    @admin.display(description="secret set", boolean=True)
    def has_secret(self, obj: NotificationChannel) -> bool:
        return bool(obj.secret)

    @admin.action(description="Send a test notification to selected channels", permissions=["send_test"])
    def send_test(self, request, queryset):
        from alerts.services.channels import send_test

        channels = list(queryset)
        refuse_unless_allowed(request, self.permission("change"), channels)
        for channel in channels:
            notification = send_test(channel=channel, actor=request.user, ip=client_ip(request))
            level = messages.SUCCESS if notification.status == Notification.Status.SENT else messages.WARNING
            outcome = notification.status + (f": {notification.last_error}" if notification.last_error else "")
            self.message_user(request, f"Test to {channel.name}: {outcome}.", level)

    def save_through_service(self, request, obj, form, change):
        from alerts.services.channels import save_channel

        with _validation_errors_as_domain_errors("The channel is not valid."):
            return save_channel(
                channel=obj, actor=request.user, secret=form.cleaned_data.get("secret") or None, ip=client_ip(request)
            )

    def delete_through_service(self, request, obj) -> None:
        from alerts.services.channels import delete_channel

        delete_channel(channel=obj, actor=request.user, ip=client_ip(request))


@admin.register(Notification)
class NotificationAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """The delivery log: every notification written to the outbox, what was sent (``payload``) and what came of it.
    Read-only: the scheduler delivers and retries."""

    resource = "alerts"
    list_display = (
        "created_at",
        "event",
        "status",
        "channel",
        "alert",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "error",
    )
    list_filter = ("status", "event", ChannelFilter, AlertFilter)
    list_select_related = ("channel", "alert")
    search_fields = ("=id",)
    # Newest first by primary key (a time-ordered UUIDv7), as the outbox grows with every alert.
    ordering = ("-pk",)
    fields = (
        "id",
        "channel",
        "alert",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
        "created_at",
        "payload",
    )

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    @admin.display(description="last error")
    def error(self, obj: Notification) -> str:
        return Truncator(obj.last_error).chars(80)


@admin.register(AlertState)
class AlertStateAdmin(SuperuserOnlyAdminMixin, admin.ModelAdmin):
    """The evaluator's memory between passes (pending and resolving conditions): for operators, to see why an alert
    has not opened or resolved yet. Not tenant-scoped on its own (it has no organization), so operators only."""

    list_display = ("rule", "device", "subject", "holding_since", "clear_since", "value", "updated_at")
    list_select_related = ("rule", "device")
    list_filter = (RuleFilter, DeviceFilter)
    ordering = ("rule_id", "device_id", "subject")
    fields = ("rule", "device", "subject", "holding_since", "clear_since", "value", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
