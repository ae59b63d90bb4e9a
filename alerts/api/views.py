"""Alerting over the technician API (spec: alerts.md, "Technician API"): alert rules and their preview, alerts with
acknowledge / resolve and a summary, maintenance windows, notification channels with a test send, and the outbox.

Every write goes through a service of ``alerts.services`` (``rules``, ``lifecycle``, ``windows``, ``channels``),
which checks the rules (the models' ``clean()``) and writes the audit row; the views check access
(``ScopedViewSet``) and translate the request. A ``ValidationError`` from a model's ``clean()`` becomes the API's
400 with one entry per field, and per path inside a JSON field (``condition.windowMinutes``).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from alerts.api import serializers as s
from alerts.api.filters import (
    AlertFilter,
    AlertRuleFilter,
    MaintenanceWindowFilter,
    NotificationChannelFilter,
    NotificationFilter,
)
from alerts.models import (
    Alert,
    AlertRule,
    AlertStatus,
    MaintenanceWindow,
    Notification,
    NotificationChannel,
    Severity,
)
from alerts.services import channels, evaluate, lifecycle, rules, windows
from rmm import authz
from rmm.api import ScopedViewSet, model_rules
from rmm.domain_errors import Refused
from rmm.net import client_ip
from rmm.openapi import error_answer
from rmm.pagination import KeysetPagination, Ordering


def _needs_partner_scope(user, owner) -> None:
    """A partner-wide rule or channel applies to every organization of the partner: only partner scope writes it."""
    if owner.partner_id is not None and not authz.has_partner_permission(user, owner.partner_id, "alerts:write"):
        raise Refused("A partner-wide rule or channel needs partner scope (alerts:write at partner level) to write.")


_ALREADY_RESOLVED = error_answer("`alert_resolved`: the alert is resolved already.")


# --- alert rules ----------------------------------------------------------------------------------------------------


@extend_schema_view(destroy=extend_schema(description="Delete the rule; its open alerts are resolved first."))
class AlertRuleViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Alert rules of organizations and (partner-wide) of partners. Changing a rule's condition, scope or
    ``enabled`` resolves its open alerts (``rule_changed``); the evaluator starts afresh."""

    resource = "alerts"
    queryset = AlertRule.objects.prefetch_related("channels")
    serializer_class = s.AlertRuleSerializer
    filterset_class = AlertRuleFilter
    pagination_class = KeysetPagination
    orderings = {"name": Ordering("name"), "-createdAt": Ordering("created_at", descending=True)}
    default_ordering = "name"

    def permission_for(self, action=None):
        action = action or self.action
        if action == "destroy":
            return "alerts:write"  # the permission registry has no alerts:delete
        if action == "preview":
            return "alerts:read"
        return super().permission_for(action)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        rule_channels = data.pop("channels", None)
        rule = AlertRule(**data, created_by=self.request.user)  # type: ignore[misc]  # signed in: never anonymous
        _needs_partner_scope(self.request.user, rule)
        with model_rules(), transaction.atomic():
            rule = rules.save_rule(
                rule=rule, actor=self.request.user, channels=rule_channels, ip=client_ip(self.request)
            )
            self._require(rule)  # a rule out of the writer's reach rolls back (403)
        serializer.instance = rule

    def perform_update(self, serializer):
        rule = serializer.instance
        data = dict(serializer.validated_data)
        rule_channels = data.pop("channels", None)
        for name, value in data.items():
            setattr(rule, name, value)
        _needs_partner_scope(self.request.user, rule)
        with model_rules(), transaction.atomic():
            rule = rules.save_rule(
                rule=rule, actor=self.request.user, channels=rule_channels, ip=client_ip(self.request)
            )
            self._require(rule)
        serializer.instance = rule

    def perform_destroy(self, instance):
        _needs_partner_scope(self.request.user, instance)
        rules.delete_rule(rule=instance, actor=self.request.user, ip=client_ip(self.request))

    @extend_schema(request=s.RulePreviewSerializer, responses=s.RulePreviewResultSerializer, filters=False)
    @action(detail=False, methods=["post"], url_path="preview")
    def preview(self, request):
        """Which devices would the condition alert for now (``forMinutes`` aside)? The count and the first 50
        devices with their observed value. Taken as reading a rule of that scope: a caller who could not read
        such a rule gets 403."""
        body = s.RulePreviewSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        scope = {name: body.validated_data.get(name) for name in ("org", "site", "device_group")}
        rule = AlertRule(**scope, name="preview", condition=body.validated_data["condition"])
        if not authz.can(request.user, "alerts:read", rule):
            raise Refused("You may not read this organization's alert rules.")
        with model_rules():  # the condition, and a site or group of another organization, are refused here
            result = evaluate.preview(**scope, condition=rule.condition)
        sample = [{"device": device, "value": value} for device, value in result.sample]
        return Response({"count": result.count, "sample": s.PreviewSampleSerializer(sample, many=True).data})


# --- alerts ---------------------------------------------------------------------------------------------------------


class AlertViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Alerts of the devices and sites in reach, newest first. Acknowledging says "someone is on it" (no more
    re-notifications); resolving by hand ends it (``resolveReason`` ``manual``)."""

    resource = "alerts"
    queryset = Alert.objects.select_related("device", "rule")
    serializer_class = s.AlertSerializer
    filterset_class = AlertFilter
    pagination_class = KeysetPagination
    orderings = {"-openedAt": Ordering("opened_at", descending=True)}
    default_ordering = "-openedAt"

    def permission_for(self, action=None):
        if (action or self.action) in ("acknowledge", "resolve"):
            return "alerts:acknowledge"
        return super().permission_for(action)

    @extend_schema(responses=s.AlertSummarySerializer, filters=True)
    @action(detail=False, methods=["get"], url_path="summary", verb="read")
    def summary(self, request):
        """Counts of the alerts in reach (after the list's filters) by status, by severity, and of the active ones
        (open or acknowledged) by severity: one grouped count, no rows."""
        alerts = self.filter_queryset(self.get_queryset())
        counts = alerts.order_by().values_list("status", "severity").annotate(n=Count("id"))
        by_status = dict.fromkeys(AlertStatus.values, 0)
        by_severity = dict.fromkeys(Severity.values, 0)
        active_by_severity = dict.fromkeys(Severity.values, 0)
        for status, severity, n in counts:
            by_status[status] += n
            by_severity[severity] += n
            if status != AlertStatus.RESOLVED:
                active_by_severity[severity] += n
        return Response(
            {
                "byStatus": by_status,
                "bySeverity": by_severity,
                "activeBySeverity": active_by_severity,
                "total": sum(by_status.values()),
            }
        )

    @extend_schema(request=s.AlertNoteSerializer, responses={200: s.AlertSerializer, 409: _ALREADY_RESOLVED})
    @action(detail=True, methods=["post"], url_path="acknowledge")
    def acknowledge(self, request, pk=None):
        """Acknowledge an open alert: someone is on it (no re-notification from now on)."""
        return self._transition(request, lifecycle.acknowledge)

    @extend_schema(request=s.AlertNoteSerializer, responses={200: s.AlertSerializer, 409: _ALREADY_RESOLVED})
    @action(detail=True, methods=["post"], url_path="resolve")
    def resolve(self, request, pk=None):
        """Resolve an open or acknowledged alert by hand; the rule's channels are told."""
        return self._transition(request, lifecycle.resolve)

    def _transition(self, request, change):
        alert = self.get_object()
        body = s.AlertNoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = change(alert=alert, actor=request.user, note=body.validated_data["note"], ip=client_ip(request))
        return Response(s.AlertSerializer(alert).data)


# --- maintenance windows --------------------------------------------------------------------------------------------


class MaintenanceWindowViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Maintenance windows: covered devices raise no alerts (``suppressAlerts``) and/or get no commands
    (``suppressCommands``) while an occurrence lasts. Read with devices:read, written with devices:write."""

    resource = "devices"
    queryset = MaintenanceWindow.objects.all()
    serializer_class = s.MaintenanceWindowSerializer
    filterset_class = MaintenanceWindowFilter
    pagination_class = KeysetPagination
    orderings = {"startsAt": Ordering("starts_at"), "name": Ordering("name")}
    default_ordering = "startsAt"

    def permission_for(self, action=None):
        if (action or self.action) == "destroy":
            return "devices:write"  # the spec's table puts every window write under devices:write
        return super().permission_for(action)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}  # one moment for every row's activeNow

    def perform_create(self, serializer):
        window = MaintenanceWindow(**serializer.validated_data)
        with model_rules(), transaction.atomic():
            window = windows.save_window(window=window, actor=self.request.user, ip=client_ip(self.request))
            self._require(window)  # a window out of the writer's reach rolls back (403)
        serializer.instance = window

    def perform_update(self, serializer):
        window = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(window, name, value)
        with model_rules(), transaction.atomic():
            window = windows.save_window(window=window, actor=self.request.user, ip=client_ip(self.request))
            self._require(window)
        serializer.instance = window

    def perform_destroy(self, instance):
        windows.delete_window(window=instance, actor=self.request.user, ip=client_ip(self.request))


# --- notification channels and the outbox ---------------------------------------------------------------------------


class NotificationChannelViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Notification channels (alerts:write throughout, listing included: they hold addresses and URLs). The
    ``secret`` is write-only; PATCH without it keeps the one set."""

    resource = "alerts"
    view_verb = "write"  # the spec's table puts every channel call under alerts:write
    queryset = NotificationChannel.objects.all()
    serializer_class = s.NotificationChannelSerializer
    filterset_class = NotificationChannelFilter
    pagination_class = KeysetPagination
    orderings = {"name": Ordering("name")}
    default_ordering = "name"

    def permission_for(self, action=None):
        return "alerts:write"

    def create(self, request, *args, **kwargs):
        """The answer that creates a webhook without a ``secret`` holds the generated one, once: the receiver needs
        it to verify signatures, and no later answer shows it (the spec: "never returned after creation")."""
        self._generated_secret = None
        response = super().create(request, *args, **kwargs)
        if self._generated_secret:
            response.data["secret"] = self._generated_secret
        return response

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        secret = data.pop("secret", None)
        channel = NotificationChannel(**data)
        _needs_partner_scope(self.request.user, channel)
        with model_rules(), transaction.atomic():
            channel = channels.save_channel(
                channel=channel, actor=self.request.user, secret=secret, ip=client_ip(self.request)
            )
            self._require(channel)  # a channel out of the writer's reach rolls back (403)
        serializer.instance = channel
        if secret is None and channel.secret:
            self._generated_secret = channel.secret

    def perform_update(self, serializer):
        channel = serializer.instance
        data = dict(serializer.validated_data)
        secret = data.pop("secret", None)
        for name, value in data.items():
            setattr(channel, name, value)
        _needs_partner_scope(self.request.user, channel)
        with model_rules(), transaction.atomic():
            channel = channels.save_channel(
                channel=channel, actor=self.request.user, secret=secret, ip=client_ip(self.request)
            )
            self._require(channel)
        serializer.instance = channel

    def perform_destroy(self, instance):
        _needs_partner_scope(self.request.user, instance)
        channels.delete_channel(channel=instance, actor=self.request.user, ip=client_ip(self.request))

    @extend_schema(request=None, responses={200: s.NotificationSerializer})
    @action(detail=True, methods=["post"], url_path="test")
    def send_test(self, request, pk=None):
        """Send a ``channel.test`` notification now and answer its outcome (``sent``, or ``failed`` / ``dead``
        with ``lastError``). It is kept in the outbox like any other."""
        channel = self.get_object()
        _needs_partner_scope(request.user, channel)
        notification = channels.send_test(channel=channel, actor=request.user, ip=client_ip(request))
        return Response(s.NotificationSerializer(notification).data)


class NotificationViewSet(ScopedViewSet, mixins.ListModelMixin):
    """The outbox, newest first: every notification written, its delivery status, attempts and last error."""

    resource = "alerts"
    queryset = Notification.objects.all()
    serializer_class = s.NotificationSerializer
    filterset_class = NotificationFilter
    pagination_class = KeysetPagination
    orderings = {"-createdAt": Ordering("created_at", descending=True)}
    default_ordering = "-createdAt"
