"""Bodies and answers of the scripts API (spec: scripts.md, "Technician API"), with camelCase field names.

Serializers only shape requests and answers: the rules of a script, a run and a schedule are their models'
``clean()`` and the services of ``scripts.services`` (library, runs, schedules). References to other objects are
``ScopedRelatedField``s: an id out of the caller's reach "does not exist" (400).
"""

from __future__ import annotations

from collections import Counter

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices.models import DeviceGroup
from orgs.models import Organization, Partner, Site
from rmm.api import CamelCaseModelSerializer, CamelCaseSerializer, OwnerFixedMixin, ScopedRelatedField
from rmm.inputs import JSONField
from rmm.names import camel
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from scripts.services.runs import RESULT_STATUSES as RESULT_STATUSES_OF_RUNS

# A reference is looked up among what the caller may read; the write itself is checked on the saved object
# (ScopedViewSet._require), so "in reach but not yours to write" is a 403, not a 400.
READ = "scripts:read"

SKIP_REASONS = ["os_not_supported", "decommissioned", "quarantined"]
RESULT_STATUSES = list(RESULT_STATUSES_OF_RUNS)


def _reference(model, source: str, *, perm: str = READ, required: bool = False):
    return ScopedRelatedField(
        perm=perm, source=source, queryset=model.objects.all(), required=required, allow_null=not required
    )


# --- scripts and their versions -------------------------------------------------------------------------------------

PARAMETERS_HELP = (
    'The script\'s parameters, each `{"name", "type": "string"|"int"|"bool"|"choice", "required", "default"?, '
    '"choices"?, "description"?}`; a run passes their values as environment variables `RMM_PARAM_<NAME>`.'
)

SCRIPT_FIELDS = [
    "id", "partner_id", "org_id", "name", "description", "category", "language", "os_types", "content", "parameters",
    "timeout_seconds", "success_exit_codes", "version", "archived_at", "created_by_id", "created_at", "updated_at",
]  # fmt: skip


class ScriptSerializer(OwnerFixedMixin, CamelCaseModelSerializer):
    """A script of the library: of one organization (``orgId``) or of a partner's library (``partnerId``, usable in
    all its organizations; partner scope writes it). ``content`` is stored and delivered byte for byte (at most
    256 KiB); ``osTypes`` left empty is derived from ``language``. Changing content, parameters, language, timeout
    or success exit codes makes a new ``version``."""

    partner_id = _reference(Partner, "partner")
    org_id = _reference(Organization, "org")
    content = serializers.CharField(
        trim_whitespace=False, allow_blank=True, help_text="The script's text, kept byte for byte (at most 256 KiB)."
    )
    parameters = JSONField(required=False, help_text=PARAMETERS_HELP)
    created_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Script
        fields = SCRIPT_FIELDS
        read_only_fields = ["id", "version", "archived_at", "created_by_id", "created_at", "updated_at"]
        # The rules of a script (one owner, a unique name per owner, content limits, parameter definitions, …) are
        # its clean()'s (scripts.services.library.clean_script), which save_script runs: not decided again here.
        validators: list = []
        extra_kwargs = {"description": {"trim_whitespace": False}}


class ScriptListSerializer(ScriptSerializer):
    """A script in a list: everything but its ``content`` (GET scripts/{id} has it)."""

    class Meta(ScriptSerializer.Meta):
        fields = [name for name in SCRIPT_FIELDS if name != "content"]
        read_only_fields = fields


VERSION_FIELDS = [
    "version", "script_id", "language", "content", "parameters", "timeout_seconds", "success_exit_codes",
    "created_by_id", "created_at",
]  # fmt: skip


class ScriptVersionSerializer(CamelCaseModelSerializer):
    """What the script was at one version; never changes once written. Every run names the version it ran."""

    script_id = serializers.UUIDField(read_only=True)
    created_by_id = serializers.UUIDField(read_only=True, allow_null=True)
    parameters = JSONField(read_only=True)

    class Meta:
        model = ScriptVersion
        fields = VERSION_FIELDS
        read_only_fields = fields


class ScriptVersionListSerializer(ScriptVersionSerializer):
    """A version in a list: everything but its ``content`` (GET scripts/{id}/versions/{version} has it)."""

    class Meta(ScriptVersionSerializer.Meta):
        fields = [name for name in VERSION_FIELDS if name != "content"]
        read_only_fields = fields


# --- runs -----------------------------------------------------------------------------------------------------------


class RunScriptSerializer(CamelCaseSerializer):
    """``POST scripts/{id}/run``: exactly one target, ``deviceIds`` (at most 10,000) or ``groupId`` (its members
    now), and the parameter values."""

    device_ids = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_empty=False,
        help_text="The devices to run on; each must be in your reach with devices:execute, or nothing is queued.",
    )
    group_id = _reference(DeviceGroup, "group", perm="devices:read")
    parameters = JSONField(required=False, help_text="The parameter values, by parameter name.")


class SkippedByReasonSerializer(CamelCaseSerializer):
    """The devices a run skipped, by reason (every reason present, 0 included; the results list each device with
    its ``skipReason``, e.g. ``os_not_supported``)."""

    os_not_supported = serializers.IntegerField(min_value=0, help_text="The script does not run on its OS.")
    decommissioned = serializers.IntegerField(min_value=0)
    quarantined = serializers.IntegerField(min_value=0)


class RunProgressSerializer(CamelCaseSerializer):
    """What the run's commands are now, derived from them: ``succeeded`` when the exit code is one of the
    version's success exit codes; ``skipped`` counts the devices that got no command."""

    pending = serializers.IntegerField(min_value=0)
    sent = serializers.IntegerField(min_value=0)
    succeeded = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    timed_out = serializers.IntegerField(min_value=0)
    cancelled = serializers.IntegerField(min_value=0)
    expired = serializers.IntegerField(min_value=0)
    skipped = serializers.IntegerField(min_value=0)
    total = serializers.IntegerField(min_value=0)


RUN_FIELDS = [
    "id", "org_id", "script_id", "script_name", "version", "parameters", "target", "trigger", "schedule_id",
    "requested_by_id", "queued", "skipped_by_reason", "progress", "created_at",
]  # fmt: skip


class ScriptRunSerializer(CamelCaseModelSerializer):
    """One run of one script version: ``queued`` commands, the devices skipped by reason, and the ``progress`` of
    its commands (the view computes it for a whole page in one query and hands it in ``context["progress"]``)."""

    org_id = serializers.UUIDField(read_only=True)
    script_id = serializers.UUIDField(read_only=True)
    script_name = serializers.CharField(source="script.name", read_only=True)
    parameters = JSONField(read_only=True, help_text="The validated parameter values the run was queued with.")
    target = JSONField(read_only=True, help_text='As requested: `{"deviceIds": [...]}`, `{"groupId": …}`, ….')
    schedule_id = serializers.UUIDField(read_only=True, allow_null=True)
    requested_by_id = serializers.UUIDField(read_only=True, allow_null=True)
    skipped_by_reason = serializers.SerializerMethodField(method_name="get_skipped_by_reason")
    progress = serializers.SerializerMethodField(method_name="get_progress")

    class Meta:
        model = ScriptRun
        fields = RUN_FIELDS
        read_only_fields = fields

    @extend_schema_field(SkippedByReasonSerializer)
    def get_skipped_by_reason(self, run: ScriptRun) -> dict[str, int]:
        by_reason = Counter(entry.get("reason") for entry in run.skipped or [])
        return {camel(reason): by_reason.get(reason, 0) for reason in SKIP_REASONS}

    @extend_schema_field(RunProgressSerializer)
    def get_progress(self, run: ScriptRun) -> dict:
        return self.context["progress"][run.pk]


class RunResultSerializer(CamelCaseSerializer):
    """One targeted device of a run: its command's status and outcome, or ``skipped`` with the reason."""

    device_id = serializers.UUIDField()
    device_name = serializers.CharField(allow_null=True, help_text="The device's display name, else its hostname.")
    command_id = serializers.UUIDField(allow_null=True, help_text="Null for a skipped device.")
    status = serializers.ChoiceField(choices=RESULT_STATUSES)
    skip_reason = serializers.ChoiceField(choices=SKIP_REASONS, allow_null=True)
    exit_code = serializers.IntegerField(allow_null=True)
    stdout = serializers.CharField(allow_null=True, allow_blank=True)
    stderr = serializers.CharField(allow_null=True, allow_blank=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True, allow_blank=True, help_text="The agent's error, if it gave one.")
    sent_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)


class CancelRunResultSerializer(ScriptRunSerializer):
    """The run after cancelling, with how many pending commands were withdrawn."""

    cancelled_commands = serializers.IntegerField(min_value=0, read_only=True)

    class Meta(ScriptRunSerializer.Meta):
        fields = [*RUN_FIELDS, "cancelled_commands"]
        read_only_fields = fields


# --- schedules ------------------------------------------------------------------------------------------------------

SCHEDULE_FIELDS = [
    "id", "org_id", "script_id", "name", "parameters", "device_group_id", "site_id", "cron", "timezone", "enabled",
    "next_run_at", "last_run_at", "created_by_id", "created_at", "updated_at",
]  # fmt: skip


class ScriptScheduleSerializer(OwnerFixedMixin, CamelCaseModelSerializer):
    """Runs a script's current version at every slot of ``cron`` (5 fields) in local time of ``timezone``: on a
    group's members at firing time (``deviceGroupId``), a site (``siteId``), or neither: the whole organization.
    ``orgId`` may be left out when the site, the group or an organization's script names it."""

    owner_fields = ("org",)

    org_id = _reference(Organization, "org", perm="scripts:write")
    script_id = _reference(Script, "script", required=True)
    site_id = _reference(Site, "site", perm="sites:read")
    device_group_id = _reference(DeviceGroup, "device_group", perm="devices:read")
    parameters = JSONField(required=False, help_text="The parameter values of every firing, by parameter name.")
    created_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = ScriptSchedule
        fields = SCHEDULE_FIELDS
        read_only_fields = ["id", "next_run_at", "last_run_at", "created_by_id", "created_at", "updated_at"]
        validators: list = []  # the schedule's rules are its clean()'s (scripts.services.schedules.clean_schedule)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if self.instance is None and attrs.get("org") is None:
            named_by = attrs.get("site") or attrs.get("device_group") or attrs.get("script")
            if named_by is None or named_by.org_id is None:
                raise serializers.ValidationError({"org_id": ["Give orgId, siteId or deviceGroupId."]})
            attrs["org"] = named_by.org
        return attrs
