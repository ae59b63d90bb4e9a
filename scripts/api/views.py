"""The script library over the technician API (spec: scripts.md, "Technician API"): scripts and their versions,
running a script on devices or a group, the runs with their progress and per-device results, and schedules.

Every write goes through a service of ``scripts.services`` (``library``, ``runs``, ``schedules``), which checks the
rules (the models' ``clean()``) and writes the audit row; the views check access (``ScopedViewSet``) and translate
the request. A run needs ``scripts:execute`` on the script here and ``devices:execute`` on every targeted device,
which ``runs.start_run`` checks (an out-of-reach device: 400, nothing queued).
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from devices.models import Device
from rmm import authz
from rmm.api import ScopedViewSet, model_rules
from rmm.domain_errors import NotFound, Refused
from rmm.net import client_ip
from rmm.openapi import error_answer
from rmm.pagination import KeysetPagination, Ordering, WithinOneValue
from scripts.api import serializers as s
from scripts.api.filters import ScriptFilter, ScriptRunFilter, ScriptScheduleFilter
from scripts.api.pagination import RunResultsPagination
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from scripts.services import library, runs, schedules

_ARCHIVED = error_answer("`script_archived`: an archived script can neither change nor run.")
_CANNOT_RUN = error_answer(
    "`script_archived`: an archived script does not run; `no_devices`: the group has no devices to run on."
)

VERSION_ORDERING = Ordering("version", descending=True)


def _needs_partner_scope(user, script: Script, perm: str) -> None:
    """A partner-library script is usable in every organization of the partner: only partner scope writes it."""
    if script.partner_id is not None and not authz.has_partner_permission(user, script.partner_id, perm):
        raise Refused(f"A script of the partner's library needs partner scope ({perm} at partner level) to change.")


# --- scripts and their versions -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(description="The library in reach, by name; archived scripts only with `archived=true`."),
    partial_update=extend_schema(responses={200: s.ScriptSerializer, 409: _ARCHIVED}),
    destroy=extend_schema(
        description="Archive the script: it can no longer run or change, its schedules are disabled; its versions "
        "and runs stay. Archiving an archived script changes nothing."
    ),
)
class ScriptViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Scripts of organizations' and partners' libraries. DELETE archives (scripts are never deleted)."""

    resource = "scripts"
    queryset = Script.objects.all()
    serializer_class = s.ScriptSerializer
    filterset_class = ScriptFilter
    pagination_class = KeysetPagination

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.defer("content") if self.action == "list" else queryset

    def filter_queryset(self, queryset):
        # The list's filters (archived scripts hidden unless asked for) do not hide a script asked for by id.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def get_serializer_class(self):
        return s.ScriptListSerializer if self.action == "list" else s.ScriptSerializer

    def permission_for(self, action=None):
        action = action or self.action
        if action in ("versions", "version"):
            return "scripts:read"
        if action == "run":
            return "scripts:execute"
        return super().permission_for(action)

    @property
    def orderings(self):
        if self.action == "versions":
            return {"-version": VERSION_ORDERING}
        return {"name": Ordering("name"), "-updatedAt": Ordering("updated_at", descending=True)}

    @property
    def default_ordering(self) -> str:
        return next(iter(self.orderings))

    def perform_create(self, serializer):
        script = Script(**serializer.validated_data, created_by=self.request.user)  # type: ignore[misc]  # signed in
        _needs_partner_scope(self.request.user, script, "scripts:write")
        with model_rules(), transaction.atomic():
            script = library.save_script(script=script, actor=self.request.user, ip=client_ip(self.request))
            self._require(script)  # a script out of the writer's reach rolls back (403)
        serializer.instance = script

    def perform_update(self, serializer):
        script = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(script, name, value)
        _needs_partner_scope(self.request.user, script, "scripts:write")
        with model_rules(), transaction.atomic():
            script = library.save_script(script=script, actor=self.request.user, ip=client_ip(self.request))
            self._require(script)
        serializer.instance = script

    def perform_destroy(self, instance):
        _needs_partner_scope(self.request.user, instance, "scripts:delete")
        library.archive_script(script=instance, actor=self.request.user, ip=client_ip(self.request))

    @extend_schema(responses=s.ScriptVersionListSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], url_path="versions", verb="read")
    def versions(self, request, pk=None):
        """The script's versions, newest first (without their content: GET one version for it)."""
        script = self.get_object()
        page = self.paginate_queryset(ScriptVersion.objects.filter(script_id=script.pk).defer("content"))
        return self.get_paginated_response(s.ScriptVersionListSerializer(page, many=True).data)

    @extend_schema(
        responses=s.ScriptVersionSerializer,
        filters=False,
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, OpenApiParameter.PATH, description="1, 2, …")],
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version>[0-9]{1,9})", verb="read")
    def version(self, request, pk=None, version=None):
        """One version of the script, with its content exactly as it ran."""
        script = self.get_object()
        row = ScriptVersion.objects.filter(script_id=script.pk, version=int(version or 0)).first()
        if row is None:
            raise NotFound("The script has no such version.")
        return Response(s.ScriptVersionSerializer(row).data)

    @extend_schema(request=s.RunScriptSerializer, responses={201: s.ScriptRunSerializer, 409: _CANNOT_RUN})
    @action(detail=True, methods=["post"], url_path="run", verb="execute")
    def run(self, request, pk=None):
        """Run the script's current version on ``deviceIds`` or on the members of ``groupId``: one `script` command
        per device, queued in one transaction (at most 10,000). Devices whose OS the script does not support,
        decommissioned and quarantined ones are skipped and counted. Any device out of your reach (or without
        devices:execute) refuses the whole run: 400, nothing queued."""
        script = self.get_object()
        body = s.RunScriptSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        run = runs.start_run(
            script=script,
            actor=request.user,
            trigger=ScriptRun.Trigger.API,
            parameters=data.get("parameters"),
            device_ids=data.get("device_ids"),
            group=data.get("group"),
            ip=client_ip(request),
        )
        progress = runs.run_progress([run])
        return Response(s.ScriptRunSerializer(run, context={"progress": progress}).data, status=201)


# --- runs -----------------------------------------------------------------------------------------------------------


class ScriptRunViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Runs in reach (an organization's, and the ones you started), newest first, each with its progress."""

    resource = "scripts"
    queryset = ScriptRun.objects.select_related("script").defer(
        "script__content", "script__parameters", "script__description"
    )
    serializer_class = s.ScriptRunSerializer
    filterset_class = ScriptRunFilter
    pagination_class = KeysetPagination

    def permission_for(self, action=None):
        action = action or self.action
        if action == "cancel":
            return "scripts:execute"
        if action == "results":
            return "scripts:read"
        return super().permission_for(action)

    @property
    def orderings(self):
        if self.action == "results":
            # Queue order, sorted as the (script_run_id, id) index is: sorting by id alone let PostgreSQL walk the
            # primary key and filter, which, once ANALYZE had seen a run's 10,000 commands, skipped every older
            # run's commands first (32 ms instead of 0.05 ms a page; bench/scripts_bench.py).
            return {"device": WithinOneValue("script_run_id")}
        return {"-createdAt": Ordering("created_at", descending=True)}

    @property
    def default_ordering(self) -> str:
        return next(iter(self.orderings))

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = RunResultsPagination() if self.action == "results" else KeysetPagination()
        return self._paginator

    def get_serializer(self, *args, **kwargs):
        # Progress for a whole page (or one run) in one grouped query over the runs' commands.
        instance = args[0] if args else kwargs.get("instance")
        if instance is not None:  # None: the OpenAPI generator asking for the class
            listed = list(instance) if kwargs.get("many") else [instance]
            kwargs.setdefault("context", {**self.get_serializer_context(), "progress": runs.run_progress(listed)})
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        responses=s.RunResultSerializer(many=True),
        filters=False,
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=list(runs.RESULT_STATUSES),
                description="Only the devices with this status (e.g. `failed`, `skipped`).",
            )
        ],
    )
    @action(detail=True, methods=["get"], url_path="results", verb="read")
    def results(self, request, pk=None):
        """Per targeted device: the command's status (``succeeded`` when its exit code is a success exit code of
        the version that ran), exit code, output and timings; then the skipped devices with their reason.
        Keyset pages of the commands in the order they were queued, the skipped devices after them; ``status``
        keeps the devices of one status."""
        run = self.get_object()
        status = request.query_params.get("status") or None
        success_exit_codes = runs.success_exit_codes(run)
        commands = runs.run_results(run, status=status, success_exit_codes=success_exit_codes)
        skipped = list(run.skipped or []) if status in (None, "skipped") else []
        page, skipped = self.paginator.paginate_results(commands, skipped, request, self)
        rows = [_command_result(command, success_exit_codes) for command in page]
        if skipped:
            names = _device_names([entry.get("deviceId") for entry in skipped], org_id=run.org_id)
            rows += [_skipped_result(entry, names) for entry in skipped]
        return self.paginator.get_paginated_response(s.RunResultSerializer(rows, many=True).data)

    @extend_schema(request=None, responses=s.CancelRunResultSerializer)
    @action(detail=True, methods=["post"], url_path="cancel", verb="execute")
    def cancel(self, request, pk=None):
        """Withdraw the run's commands that no agent has fetched yet; the ones sent run to their end."""
        run = self.get_object()
        cancelled = runs.cancel_run(run=run, actor=request.user, ip=client_ip(request))
        run.cancelled_commands = cancelled
        context = {**self.get_serializer_context(), "progress": runs.run_progress([run])}
        return Response(s.CancelRunResultSerializer(run, context=context).data)


def _device_name(device) -> str | None:
    if device is None:
        return None
    return device.display_name or device.hostname


def _command_result(command, success_exit_codes) -> dict:
    result = command.result if isinstance(command.result, dict) else {}
    return {
        "device_id": command.device_id,
        "device_name": _device_name(command.device),
        "command_id": command.pk,
        "status": runs.result_status(command, success_exit_codes),
        "skip_reason": None,
        "exit_code": result.get("exitCode"),
        "stdout": result.get("stdout"),
        "stderr": result.get("stderr"),
        "duration_ms": result.get("durationMs"),
        "error": result.get("error"),
        "sent_at": command.sent_at,
        "completed_at": command.completed_at,
    }


def _device_names(device_ids, *, org_id) -> dict[str, str]:
    devices = Device.objects.filter(org_id=org_id, pk__in=[pk for pk in device_ids if pk])
    return {
        str(pk): display or hostname for pk, display, hostname in devices.values_list("pk", "display_name", "hostname")
    }


def _skipped_result(entry: dict, names: dict[str, str]) -> dict:
    device_id = entry.get("deviceId")
    return {
        "device_id": device_id,
        "device_name": names.get(str(device_id)),
        "command_id": None,
        "status": "skipped",
        "skip_reason": entry.get("reason"),
        "exit_code": None,
        "stdout": None,
        "stderr": None,
        "duration_ms": None,
        "error": None,
        "sent_at": None,
        "completed_at": None,
    }


# --- schedules ------------------------------------------------------------------------------------------------------


class ScriptScheduleViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Schedules of scripts (scripts:write throughout, as the spec's table says). Saving one also needs
    scripts:execute on its script and devices:execute over its target (``schedules.save_schedule``)."""

    resource = "scripts"
    view_verb = "write"
    queryset = ScriptSchedule.objects.all()
    serializer_class = s.ScriptScheduleSerializer
    filterset_class = ScriptScheduleFilter
    pagination_class = KeysetPagination
    orderings = {"name": Ordering("name"), "nextRunAt": Ordering("next_run_at")}
    default_ordering = "name"

    def permission_for(self, action=None):
        return "scripts:write"

    def perform_create(self, serializer):
        schedule = ScriptSchedule(**serializer.validated_data, created_by=self.request.user)  # type: ignore[misc]
        with model_rules(), transaction.atomic():
            schedule = schedules.save_schedule(schedule=schedule, actor=self.request.user, ip=client_ip(self.request))
            self._require(schedule)  # a schedule out of the writer's reach rolls back (403)
        serializer.instance = schedule

    def perform_update(self, serializer):
        schedule = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(schedule, name, value)
        with model_rules(), transaction.atomic():
            schedule = schedules.save_schedule(schedule=schedule, actor=self.request.user, ip=client_ip(self.request))
            self._require(schedule)
        serializer.instance = schedule

    def perform_destroy(self, instance):
        schedules.delete_schedule(schedule=instance, actor=self.request.user, ip=client_ip(self.request))
