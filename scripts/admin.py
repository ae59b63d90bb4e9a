"""Admin pages for the script library (issue 15): scripts with their versions, "Run on…", runs with their
per-device results, and schedules.

Every write goes through the service the API calls, so both doors obey the same rules and write the same audit
rows (``docs/scripts.md`` is what users read):

- scripts: ``Script.clean()`` (``scripts.services.library.clean_script``) runs in the form, so a bad parameter
  definition is shown on the parameters field with its path (``parameters[1].name: …``);
  ``scripts.services.library.save_script`` saves; scripts are archived (``archive_script``, the list's action, with
  ``scripts:delete``), never deleted;
- "Run on…" (a script's page) calls ``scripts.services.runs.start_run`` with trigger ``manual``: the reach checks
  (``scripts:execute`` on the script, ``devices:execute`` on every device), the parameter checks and the skips are
  the service's, shown here as form errors;
- runs are read-only; their progress (``run_progress``, one grouped query for a whole page of runs) and per-device
  results (``run_results``, keyset-paginated, never the whole run at once) are read from their commands;
- schedules: ``scripts.services.schedules.save_schedule`` / ``delete_schedule``.

Everything is scoped by the authorization module (``rmm.admin.ScopedAdminMixin``): the ``scripts`` resource, as in
the API.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import IntegerField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Left, Lower
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from devices.models import Device, DeviceGroup
from orgs.models import Organization
from rmm import authz
from rmm.admin import (
    BigTableAdminMixin,
    CappedTabularInline,
    DomainErrorsAsMessagesMixin,
    ModelErrorsOnTheFormMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    WrittenThroughServicesMixin,
    add_domain_error,
    organizations_holding,
    refuse_unless_allowed,
    single_object_filter,
)
from rmm.console import MISSING, status_badge, time_ago
from rmm.domain_errors import DomainError, Invalid
from rmm.inputs import JSONFormField
from rmm.net import client_ip
from scripts.models import Script, ScriptLanguage, ScriptOsType, ScriptRun, ScriptSchedule, ScriptVersion

EXECUTE_PERMISSION = "scripts:execute"
DEVICES_EXECUTE_PERMISSION = "devices:execute"
# Schedules are read and changed with scripts:write, as in the API (the spec's table).
SCHEDULE_VERBS = {"view": "write", "add": "write", "change": "write", "delete": "write"}
READ_VERBS = {"view": "read", "add": "write", "change": "write", "delete": "delete"}

# Results shown on a run's own page, and per page of its results list.
RESULTS_ON_RUN_PAGE = 20
RESULTS_PAGE_SIZE = 100
# Characters of stdout/stderr read from the database for a result row (the rest is on the command's page).
OUTPUT_SHOWN = 2000
SKIPPED_SHOWN = 50

MONOSPACE = "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; tab-size: 4"

PARAMETERS_HELP = (
    "A JSON list, one object per parameter, e.g. "
    '[{"name": "minFreeGb", "type": "int", "required": false, "default": 10, "description": "Free space wanted"}, '
    '{"name": "logName", "type": "choice", "choices": ["System", "Application"], "required": true}]. '
    "Types: string, int, bool, choice (choices: a list of strings). Names start with a letter (letters, digits, _). "
    "The script reads each value from the environment variable RMM_PARAM_<NAME in capitals>, e.g. "
    "$env:RMM_PARAM_MINFREEGB in PowerShell, $RMM_PARAM_MINFREEGB in bash; values are never pasted into the text."
)
SCHEDULE_PARAMETERS_HELP = (
    'The values of the script\'s parameters by name, e.g. {"minFreeGb": 20}; defaults fill in what is left out.'
)

ScriptFilter = single_object_filter("script")
ScheduleFilter = single_object_filter("schedule")


class PathErrorsOnTheirFieldMixin(ModelErrorsOnTheFormMixin):
    """A model form that puts a ``clean()`` error addressed by path (``parameters[1].name``,
    ``parameters.minFreeGb``) on the form field the path starts with, the path kept in the message."""

    def _update_errors(self, errors: ValidationError) -> None:
        if hasattr(errors, "error_dict"):
            remapped: dict[str, list] = {}
            for name, field_errors in errors.error_dict.items():
                head = re.split(r"[.\[]", name, maxsplit=1)[0]
                if name not in self.fields and head in self.fields:
                    field_errors = [ValidationError(f"{name}: {message}") for e in field_errors for message in e]
                    name = head
                remapped.setdefault(name, []).extend(field_errors)
            errors = ValidationError(remapped)
        super()._update_errors(errors)


def _code_textarea(rows: int = 24) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 110, "style": MONOSPACE, "spellcheck": "false", "wrap": "off"})


def _pre(text: str | None):
    return format_html('<pre style="{}; white-space: pre-wrap; margin: 0">{}</pre>', MONOSPACE, text or "")


# --- Scripts -------------------------------------------------------------------------------------------------------


class ScriptForm(PathErrorsOnTheirFieldMixin):
    """A script's form: the content in a monospace textarea, parameters as JSON. ``Script.clean()`` decides what is
    valid (content size, parameter definitions, OS types, exit codes); the form only decodes what the browser sent.

    Browsers send every line of a textarea ending in CR LF, whatever was typed or pasted. A bash script with CR LF
    line ends fails (``/bin/bash^M: bad interpreter``), so the form gives the content back the line ends it had:
    CR LF when the stored content used them (or a new ``cmd`` script, where they are the convention), LF otherwise.
    """

    content = forms.CharField(strip=False, widget=_code_textarea(), help_text="Stored and delivered as saved.")
    parameters = JSONFormField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 110, "style": MONOSPACE}),
        help_text=PARAMETERS_HELP,
    )
    os_types = forms.MultipleChoiceField(
        choices=ScriptOsType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="OS types",
        help_text="Devices of other OS types are skipped by a run. None ticked: from the language "
        "(PowerShell and cmd: Windows; bash and sh: Linux and macOS; Python: all three).",
    )

    class Meta:
        model = Script
        fields = (
            "partner",
            "org",
            "name",
            "category",
            "description",
            "language",
            "os_types",
            "content",
            "parameters",
            "timeout_seconds",
            "success_exit_codes",
        )

    def clean_parameters(self):
        value = self.cleaned_data.get("parameters")
        return [] if value is None else value

    def clean_content(self):
        content = self.cleaned_data.get("content") or ""
        stored = self.instance.content if self.instance.pk else ""
        keeps_crlf = "\r\n" in stored if stored else self.data.get("language") == ScriptLanguage.CMD
        return content if keeps_crlf else content.replace("\r\n", "\n")


class ScriptVersionInline(CappedTabularInline):
    """The script's versions, newest first; each opens read-only with its content."""

    model = ScriptVersion
    fields = ("version", "language", "timeout_seconds", "success_exit_codes", "created_by", "created_at")
    ordering = ("-version",)
    see_all_param = "script"
    max_rows = 20


class ArchivedFilter(admin.SimpleListFilter):
    title = "archived"
    parameter_name = "archived"

    def lookups(self, request, model_admin):
        return [("no", "Active"), ("yes", "Archived")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(archived_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(archived_at__isnull=False)
        return queryset


@admin.register(Script)
class ScriptAdmin(DomainErrorsAsMessagesMixin, WrittenThroughServicesMixin, ScopedAdminMixin, admin.ModelAdmin):
    """The script library: an organization's scripts and (for partner-level users) the partner's, usable in all its
    organizations. Saving a change of what runs makes a new version; scripts are archived, never deleted. "Run on…"
    sends the current version to devices."""

    resource = "scripts"
    verbs = READ_VERBS
    form = ScriptForm
    inlines = (ScriptVersionInline,)
    list_display = ("name", "owner", "category", "language", "os", "version", "parameter_names", "status", "run_on")
    list_filter = (ArchivedFilter, "language", "category", "org")
    list_select_related = ("org", "partner")
    search_fields = ("name", "category", "description")
    ordering = ("name", "id")
    actions = ("archive",)
    fieldsets = (
        (None, {"fields": ("name", "category", "description", "run_on")}),
        ("Owner", {"fields": ("partner", "org")}),
        ("What runs", {"fields": ("language", "os_types", "content", "parameters")}),
        ("Outcome", {"fields": ("timeout_seconds", "success_exit_codes")}),
        ("Record", {"classes": ("collapse",), "fields": ("version", "archived_at", "created_by", "id", "updated_at")}),
    )
    readonly_fields = ("run_on", "version", "archived_at", "created_by", "id", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # A script keeps its owner: its runs, versions and audit rows belong to that organization or partner.
        return (*self.readonly_fields, "partner", "org") if obj else self.readonly_fields

    def get_urls(self):
        run = self.admin_site.admin_view(self.run_view)
        return [path("<uuid:object_id>/run/", run, name="scripts_script_run"), *super().get_urls()]

    def has_delete_permission(self, request, obj=None):
        # Archived, never deleted: the runs and the audit log keep pointing at the script.
        return False

    def has_change_permission(self, request, obj=None):
        # An archived script is history: its page is read-only (save_script would refuse the change anyway).
        if obj is not None and obj.archived_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def has_archive_permission(self, request) -> bool:
        return self.holds_anywhere(request, "delete")

    @admin.display(description="owner")
    def owner(self, obj: Script) -> str:
        return f"{obj.partner} (every organization)" if obj.partner_id else str(obj.org)

    @admin.display(description="OS")
    def os(self, obj: Script) -> str:
        return ", ".join(obj.os_types)

    @admin.display(description="parameters")
    def parameter_names(self, obj: Script) -> str:
        definitions = obj.parameters if isinstance(obj.parameters, list) else []
        return ", ".join(str(d.get("name")) for d in definitions if isinstance(d, dict))

    @admin.display(description="status")
    def status(self, obj: Script) -> str:
        return "archived" if obj.archived_at else "active"

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        scripts = list(changelist.result_list)  # evaluated once here; the template iterates the cached rows
        runnable = set(
            authz.visible(request.user, EXECUTE_PERMISSION, Script.objects.filter(pk__in=[s.pk for s in scripts]))
            .order_by()
            .values_list("pk", flat=True)
        )
        for script in scripts:
            script.may_run = script.pk in runnable
        return changelist

    def get_object(self, request, object_id, from_field=None):
        script = super().get_object(request, object_id, from_field)
        if script is not None:
            # "Run on…" is offered to who may run it (on the object: this admin is shared by every request).
            script.may_run = authz.can(request.user, EXECUTE_PERMISSION, script)
        return script

    @admin.display(description="run")
    def run_on(self, obj: Script):
        if obj is None or obj.pk is None or obj._state.adding:
            return "Save the script first."
        if obj.archived_at is not None:
            return "Archived: it cannot run."
        if not getattr(obj, "may_run", False):
            return "—"
        url = reverse("admin:scripts_script_run", args=[obj.pk])
        return format_html('<a class="button" href="{}">Run on…</a>', url)

    @admin.action(
        description="Archive selected scripts (they cannot run any more; history keeps them)", permissions=["archive"]
    )
    def archive(self, request, queryset):
        from scripts.services.library import archive_script

        scripts = list(queryset)
        refuse_unless_allowed(request, self.permission("delete"), scripts)
        for script in scripts:
            archive_script(script=script, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{len(scripts)} script{'s' if len(scripts) != 1 else ''} archived.")

    def save_through_service(self, request, obj, form, change):
        from scripts.services.library import save_script

        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        try:
            return save_script(script=obj, actor=request.user, ip=client_ip(request))
        except ValidationError as error:
            fields = error.message_dict if hasattr(error, "error_dict") else {}
            raise Invalid("The script is not valid.", fields=fields) from None

    def delete_through_service(self, request, obj) -> None:
        raise PermissionDenied("Scripts are archived, not deleted.")

    # "Run on…" ----------------------------------------------------------------------------------------------------

    def run_view(self, request, object_id):
        """The "Run on…" form of a script: a group, or devices of one organization, and the parameter values. The
        run is started by ``start_run`` (trigger ``manual``), which decides everything; its refusals are shown on
        the form and nothing is queued."""
        script = self.get_object(request, str(object_id))
        if script is None:
            raise Http404("No such script.")
        if not authz.can(request.user, EXECUTE_PERMISSION, script):
            raise PermissionDenied
        if request.method == "POST":
            form = RunForm(request.POST, script=script, user=request.user)
            if form.is_valid():
                run = self._start_run(request, script, form)
                if run is not None:
                    self.message_user(request, run_summary(run), messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:scripts_scriptrun_change", args=[run.pk]))
        else:
            form = RunForm(initial=_run_initial(request), script=script, user=request.user)
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run {script.name} (v{script.version})",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "script": script,
            "form": form,
            "has_parameters": bool(form.parameter_fields),
        }
        request.current_app = self.admin_site.name
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(request, "admin/scripts/script/run.html", context, status=status)

    def _start_run(self, request, script: Script, form: RunForm) -> ScriptRun | None:
        return start_run_from_form(request, script, form)


def start_run_from_form(request, script: Script, form: RunForm) -> ScriptRun | None:
    """Start the run a valid ``RunForm`` describes (trigger ``manual``), for the script's "Run on…" and a group's
    "Run on group". ``start_run`` decides everything; its refusals land on the form (None is answered) and nothing
    is queued."""
    from scripts.services.runs import start_run

    target: dict[str, Any] = (
        {"group": form.cleaned_data["group"]}
        if form.cleaned_data.get("group") is not None
        else {"device_ids": form.cleaned_data["device_ids"]}
    )
    try:
        with transaction.atomic():
            return start_run(
                script=script,
                actor=request.user,
                trigger=ScriptRun.Trigger.MANUAL,
                parameters=form.parameter_values(),
                ip=client_ip(request),
                **target,
            )
    except DomainError as error:
        add_domain_error(form, error, field_names=form.error_field_names())
    except ValidationError as error:
        for message in error.messages:
            form.add_error(None, message)
    return None


def _run_initial(request) -> dict[str, Any]:
    """A run form filled in from the link that opened it: ``?devices=<id>,<id>``, ``?group=<id>``, ``?org=<id>``."""
    initial: dict[str, Any] = {}
    if request.GET.get("devices"):
        initial["devices"] = "\n".join(part for part in re.split(r"[\s,]+", request.GET["devices"]) if part)
    for name in ("group", "org"):
        if request.GET.get(name):
            initial[name] = request.GET[name]
    return initial


def run_summary(run: ScriptRun) -> str:
    skipped = run.skipped if isinstance(run.skipped, list) else []
    reasons: dict[str, int] = {}
    for entry in skipped:
        reason = str(entry.get("reason")) if isinstance(entry, dict) else "?"
        reasons[reason] = reasons.get(reason, 0) + 1
    text = f"Queued {run.queued} command{'s' if run.queued != 1 else ''}"
    if reasons:
        text += "; skipped " + ", ".join(f"{count} ({reason})" for reason, count in sorted(reasons.items()))
    return text + "."


class RunForm(forms.Form):
    """Where and with what a script runs. Set up by ``run_form_for`` for one script and user."""

    org = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        required=False,
        label="Organization",
        help_text="The organization whose devices are listed below (not needed for a group).",
    )
    group = forms.ModelChoiceField(
        queryset=DeviceGroup.objects.none(),
        required=False,
        help_text="Every member of the group (a dynamic group's members now). Or list devices below instead.",
    )
    devices = forms.CharField(
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "style": MONOSPACE}),
        help_text="Hostnames or device ids, one per line (or separated by commas or spaces).",
    )

    def __init__(self, *args, script: Script, user, **kwargs) -> None:
        """The form of ``script`` for ``user``: organizations and groups the user may run on among those the
        script is usable in (its own organization, or every organization of its partner), a field per parameter."""
        super().__init__(*args, **kwargs)
        self.script = script
        self.user = user
        if script.org_id is not None:
            usable = Organization.objects.filter(pk=script.org_id)
        else:
            usable = Organization.objects.filter(partner=script.partner)
        org_field = self.fields["org"]
        group_field = self.fields["group"]
        assert isinstance(org_field, forms.ModelChoiceField) and isinstance(group_field, forms.ModelChoiceField)
        org_field.queryset = organizations_holding(user, DEVICES_EXECUTE_PERMISSION, usable).order_by("name")
        group_field.queryset = authz.visible(
            user, DEVICES_EXECUTE_PERMISSION, DeviceGroup.objects.filter(org__in=usable).select_related("org")
        ).order_by("org__name", "name")
        if script.org_id is not None:
            org_field.widget = forms.HiddenInput()
        self.parameter_fields: dict[str, dict] = {}
        definitions = script.parameters if isinstance(script.parameters, list) else []
        for index, definition in enumerate(d for d in definitions if isinstance(d, dict)):
            self.fields[f"param_{index}"] = _parameter_field(definition)
            self.parameter_fields[f"param_{index}"] = definition

    def error_field_names(self) -> dict[str, str]:
        names = {"deviceIds": "devices", "groupId": "group", "group": "group", "target": "devices"}
        names.update({f"parameters.{name}": field for field, name in self._parameter_names().items()})
        return names

    def _parameter_names(self) -> dict[str, str]:
        return {field: str(definition["name"]) for field, definition in self.parameter_fields.items()}

    def parameter_values(self) -> dict[str, Any]:
        """The values typed, by parameter name; a blank field is left out (its default applies, or the service
        says it is required). Booleans are sent as JSON booleans, numbers as the text typed (the service reads
        them)."""
        values: dict[str, Any] = {}
        for field, definition in self.parameter_fields.items():
            value = self.cleaned_data.get(field)
            if value is None or value == "":
                continue
            if definition.get("type") == "bool":
                value = value == "true"
            values[str(definition["name"])] = value
        return values

    def clean(self):
        cleaned = super().clean() or {}
        group = cleaned.get("group")
        text = cleaned.get("devices") or ""
        if group is not None and text:
            raise ValidationError("Pick a group or list devices, not both.")
        if group is None and not text:
            raise ValidationError("Pick a group or list the devices to run on.")
        if text:
            org = cleaned.get("org") or (self.script.org if self.script.org_id else None)
            if org is None:
                self.add_error("org", "Pick the organization of the devices.")
            else:
                cleaned["device_ids"] = self._device_ids(org, text)
        return cleaned

    def _device_ids(self, org: Organization, text: str) -> list[uuid.UUID]:
        """The devices named in ``text`` (ids or hostnames, case-insensitive) among the organization's devices the
        user may see. Whether they may run scripts on them is ``start_run``'s to decide."""
        tokens = list(dict.fromkeys(token for token in re.split(r"[\s,]+", text) if token))
        ids: list[uuid.UUID] = []
        names: list[str] = []
        for token in tokens:
            try:
                ids.append(uuid.UUID(token))
            except ValueError:
                names.append(token)
        visible = authz.visible(self.user, "devices:read", Device.objects.filter(org=org))
        lowered = [name.lower() for name in names]
        found = list(
            visible.annotate(hostname_lower=Lower("hostname"))
            .filter(Q(pk__in=ids) | Q(hostname_lower__in=lowered))
            .values_list("pk", "hostname")
        )
        by_name: dict[str, list[uuid.UUID]] = {}
        for pk, hostname in found:
            by_name.setdefault(hostname.lower(), []).append(pk)
        known_ids = {pk for pk, _ in found}
        problems = [token for token in tokens if _is_uuid(token) and uuid.UUID(token) not in known_ids]
        problems += [name for name in names if name.lower() not in by_name]
        ambiguous = [name for name in names if len(by_name.get(name.lower(), [])) > 1]
        if problems:
            self.add_error("devices", f"No device of {org} is known by: {', '.join(problems[:20])}.")
        if ambiguous:
            self.add_error("devices", f"More than one device is called {', '.join(ambiguous[:20])}: use the ids.")
        picked = [uuid.UUID(token) for token in tokens if _is_uuid(token)]
        picked += [by_name[name.lower()][0] for name in names if len(by_name.get(name.lower(), [])) == 1]
        return list(dict.fromkeys(picked))


def _is_uuid(token: str) -> bool:
    try:
        uuid.UUID(token)
    except ValueError:
        return False
    return True


def _parameter_field(definition: dict) -> forms.Field:
    """A form field for one parameter. It only collects text: the values are checked by the runs service
    (``validate_parameter_values``), whose messages land on this field."""
    kind = definition.get("type")
    label = str(definition.get("name"))
    help_parts = [str(definition.get("description") or ""), f"{kind}", "required" if definition.get("required") else ""]
    if "default" in definition:
        help_parts.append(f"default: {definition['default']}")
    help_parts.append(f"reaches the script as RMM_PARAM_{label.upper()}")
    help_text = " · ".join(part for part in help_parts if part)
    initial = definition.get("default")
    if kind == "bool":
        choices = [("", "—"), ("true", "true"), ("false", "false")]
        initial = {True: "true", False: "false"}.get(initial) if isinstance(initial, bool) else None
        return forms.CharField(
            label=label, required=False, widget=forms.Select(choices=choices), initial=initial, help_text=help_text
        )
    if kind == "choice":
        options = [str(choice) for choice in definition.get("choices") or []]
        return forms.CharField(
            label=label,
            required=False,
            widget=forms.Select(choices=[("", "—"), *((option, option) for option in options)]),
            initial=initial,
            help_text=help_text,
        )
    widget = forms.NumberInput() if kind == "int" else forms.TextInput(attrs={"size": 60})
    return forms.CharField(
        label=label, required=False, strip=False, widget=widget, initial=initial, help_text=help_text
    )


# --- Versions ------------------------------------------------------------------------------------------------------


@admin.register(ScriptVersion)
class ScriptVersionAdmin(ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """What a script was at each version: immutable, and what every run names."""

    resource = "scripts"
    list_display = ("script", "version", "language", "timeout_seconds", "created_by", "created_at")
    list_filter = (ScriptFilter, "language")
    list_select_related = ("script", "created_by")
    ordering = ("script_id", "-version")
    search_fields = ("script__name",)
    fields = (
        "script",
        "version",
        "language",
        "timeout_seconds",
        "success_exit_codes",
        "parameters",
        "script_content",
        "created_by",
        "created_at",
    )

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    @admin.display(description="content")
    def script_content(self, obj: ScriptVersion):
        return _pre(obj.content)


# --- Runs ----------------------------------------------------------------------------------------------------------


def _progress_text(progress: dict | None) -> str:
    if not progress:
        return ""
    order = ("succeeded", "failed", "timedOut", "pending", "sent", "cancelled", "expired", "skipped")
    labels = {"timedOut": "timed out"}
    return ", ".join(f"{progress[key]} {labels.get(key, key)}" for key in order if progress.get(key))


def result_rows(run: ScriptRun, *, after: uuid.UUID | None, limit: int) -> list[dict[str, Any]]:
    """One page of a run's per-device results (``run_results``' order, after the command ``after``), one query
    whatever the run's size: the script text of the payload is never read, and stdout/stderr only up to
    ``OUTPUT_SHOWN`` characters. Each row's status is ``result_status``'s."""
    from scripts.services.runs import result_status, run_results

    success_codes = _success_codes(run)
    queryset = run_results(run).defer("payload", "result")
    if after is not None:
        queryset = queryset.filter(pk__gt=after)
    queryset = queryset.annotate(
        r_exit_code=Cast(KT("result__exitCode"), IntegerField()),
        r_stdout=Left(KT("result__stdout"), OUTPUT_SHOWN + 1),
        r_stderr=Left(KT("result__stderr"), OUTPUT_SHOWN + 1),
        r_error=Left(KT("result__error"), OUTPUT_SHOWN + 1),
        r_duration=Cast(KT("result__durationMs"), IntegerField()),
        r_has_result=Q(result__isnull=False),
    )
    rows = []
    for command in queryset[:limit]:
        # result_status reads the exit code from command.result: give it the one read, not the whole result.
        command.result = {"exitCode": command.r_exit_code} if command.r_has_result else None
        rows.append(
            {
                "command": command,
                "device": command.device,
                "status": result_status(command, success_codes),
                "exit_code": command.r_exit_code,
                "stdout": command.r_stdout,
                "stderr": command.r_stderr,
                "error": command.r_error,
                "duration_ms": command.r_duration,
                "truncated": any(len(text or "") > OUTPUT_SHOWN for text in (command.r_stdout, command.r_stderr)),
            }
        )
    for row in rows:
        for key in ("stdout", "stderr", "error"):
            if row[key] and len(row[key]) > OUTPUT_SHOWN:
                row[key] = row[key][:OUTPUT_SHOWN] + "…"
    return rows


def _success_codes(run: ScriptRun) -> list[int]:
    from scripts.services.runs import success_exit_codes

    return success_exit_codes(run)


@admin.register(ScriptRun)
class ScriptRunAdmin(
    DomainErrorsAsMessagesMixin, BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin
):
    """Runs of scripts, newest first, with their progress; a run's page shows what ran and the per-device results.
    Read-only: runs start from a script's "Run on…" (or the API, or a schedule). "Cancel" withdraws the commands not
    yet sent to their agents."""

    resource = "scripts"
    verbs = READ_VERBS
    list_display = (
        "created_at",
        "script_name",
        "version",
        "org",
        "trigger",
        "requested_by",
        "queued",
        "skipped_count",
        "progress",
    )
    list_filter = ("trigger", "org", ScriptFilter, ScheduleFilter)
    list_select_related = ("script", "org", "requested_by")
    search_fields = ("script__name",)
    ordering = ("-created_at", "-id")
    actions = ("cancel",)
    fields = (
        "script_link",
        "version_link",
        "org",
        "trigger",
        "schedule",
        "requested_by",
        "created_at",
        "parameters",
        "target",
        "queued",
        "progress",
        "skipped_devices",
        "results",
    )

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def get_urls(self):
        results = self.admin_site.admin_view(self.results_view)
        return [path("<uuid:object_id>/results/", results, name="scripts_scriptrun_results"), *super().get_urls()]

    def has_cancel_permission(self, request) -> bool:
        return authz.holds_anywhere(request.user, EXECUTE_PERMISSION)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        from scripts.services.runs import run_progress

        runs = list(changelist.result_list)  # evaluated once here; the template iterates the cached rows
        progress = run_progress(runs) if runs else {}
        for run in runs:
            run.progress_counts = progress.get(run.pk)
        return changelist

    def get_object(self, request, object_id, from_field=None):
        run = super().get_object(request, object_id, from_field)
        if run is not None:
            from scripts.services.runs import run_progress

            run.progress_counts = run_progress([run]).get(run.pk)
        return run

    @admin.display(description="script")
    def script_name(self, obj: ScriptRun) -> str:
        return obj.script.name

    @admin.display(description="script")
    def script_link(self, obj: ScriptRun):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:scripts_script_change", args=[obj.script_id]), obj.script.name
        )

    @admin.display(description="version")
    def version_link(self, obj: ScriptRun):
        version = ScriptVersion.objects.filter(script_id=obj.script_id, version=obj.version).values("pk").first()
        if version is None:
            return str(obj.version)
        url = reverse("admin:scripts_scriptversion_change", args=[version["pk"]])
        return format_html('<a href="{}">v{}</a> (what ran; the script may have changed since)', url, obj.version)

    @admin.display(description="skipped")
    def skipped_count(self, obj: ScriptRun) -> int:
        return len(obj.skipped) if isinstance(obj.skipped, list) else 0

    @admin.display(description="progress")
    def progress(self, obj: ScriptRun) -> str:
        return _progress_text(getattr(obj, "progress_counts", None))

    @admin.display(description="skipped devices")
    def skipped_devices(self, obj: ScriptRun):
        skipped = [entry for entry in (obj.skipped or []) if isinstance(entry, dict)]
        if not skipped:
            return "None."
        shown = skipped[:SKIPPED_SHOWN]
        ids = {str(entry.get("deviceId")): entry for entry in shown}
        hostnames = {
            str(pk): hostname
            for pk, hostname in Device.objects.filter(
                org_id=obj.org_id, pk__in=[i for i in ids if _is_uuid(i)]
            ).values_list("pk", "hostname")
        }
        rows = (
            (hostnames.get(str(entry.get("deviceId")), entry.get("deviceId")), entry.get("reason")) for entry in shown
        )
        items = format_html_join("", "<li>{} — {}</li>", rows)
        more = len(skipped) - len(shown)
        if more > 0:
            return format_html("<ul>{}</ul><p>… and {} more.</p>", items, more)
        return format_html("<ul>{}</ul>", items)

    @admin.display(description="results")
    def results(self, obj: ScriptRun):
        rows = result_rows(obj, after=None, limit=RESULTS_ON_RUN_PAGE)
        table = _results_table(rows)
        link = reverse("admin:scripts_scriptrun_results", args=[obj.pk])
        return format_html('{}<p><a href="{}">All results, {} per page</a></p>', table, link, RESULTS_PAGE_SIZE)

    @admin.action(description="Cancel the commands not yet sent of selected runs", permissions=["cancel"])
    def cancel(self, request, queryset):
        from scripts.services.runs import cancel_run

        runs = list(queryset)
        refuse_unless_allowed(request, EXECUTE_PERMISSION, runs)
        cancelled = sum(cancel_run(run=run, actor=request.user, ip=client_ip(request)) for run in runs)
        self.message_user(request, f"{cancelled} pending command{'s' if cancelled != 1 else ''} cancelled.")

    def results_view(self, request, object_id):
        """A run's per-device results, ``RESULTS_PAGE_SIZE`` a page in the order of the commands' ids (keyset:
        ``?after=<command id>``, never an offset), so the last page of a 10,000-device run costs what the first
        does."""
        run = self.get_object(request, str(object_id))
        if run is None or not self.has_view_permission(request, run):
            raise Http404("No such run.")
        after = None
        if request.GET.get("after"):
            try:
                after = uuid.UUID(request.GET["after"])
            except ValueError as exc:
                raise Http404("Not a page of this run.") from exc
        rows = result_rows(run, after=after, limit=RESULTS_PAGE_SIZE + 1)
        next_url = None
        if len(rows) > RESULTS_PAGE_SIZE:
            rows = rows[:RESULTS_PAGE_SIZE]
            next_url = f"?after={rows[-1]['command'].pk}"
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": f"Results of {run.script.name} v{run.version}",
            "subtitle": None,
            "opts": opts,
            "app_label": opts.app_label,
            "run": run,
            "progress": _progress_text(getattr(run, "progress_counts", None)),
            "table": _results_table(rows),
            "next_url": next_url,
            "first_page": after is None,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/scripts/scriptrun/results.html", context)


RESULT_STATUS_LABELS = {"timedOut": "timed out"}


def _results_table(rows: list[dict[str, Any]]):
    """A run's per-device results, readable: the status as a badge, the exit code, how long it ran, stdout and
    stderr (or the error) as preformatted text cut at ``OUTPUT_SHOWN`` characters with a link to the command's page
    for the rest, and when it finished."""
    from devices.admin.command_results import duration_words

    if not rows:
        return format_html("<p>{}</p>", "No device in this list.")
    body = format_html_join(
        "",
        '<tr data-command-id="{}" data-command-status="{}"><td><a href="{}">{}</a></td><td>{}</td><td>{}</td>'
        '<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>',
        (
            (
                row["command"].pk,
                row["command"].status,
                reverse("admin:devices_device_change", args=[row["device"].pk]),
                row["device"].hostname,
                status_badge(row["status"], RESULT_STATUS_LABELS.get(row["status"], row["status"])),
                MISSING if row["exit_code"] is None else row["exit_code"],
                MISSING if row["duration_ms"] is None else duration_words(row["duration_ms"] / 1000),
                _pre(row["stdout"]),
                _pre(row["stderr"] or row["error"]),
                time_ago(row["command"].completed_at),
                reverse("admin:devices_devicecommand_change", args=[row["command"].pk]),
                "full output" if row["truncated"] else "command",
            )
            for row in rows
        ),
    )
    head = format_html_join(
        "",
        '<th scope="col">{}</th>',
        ((name,) for name in ("device", "status", "exit code", "duration", "stdout", "stderr / error", "finished", "")),
    )
    return format_html('<table class="script-results"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


# --- Schedules -----------------------------------------------------------------------------------------------------


class ScriptScheduleForm(PathErrorsOnTheirFieldMixin):
    """A schedule's form; ``ScriptSchedule.clean()`` checks the cron expression, the parameters against the
    script's current definitions and the target."""

    parameters = JSONFormField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 90, "style": MONOSPACE}),
        help_text=SCHEDULE_PARAMETERS_HELP,
    )

    class Meta:
        model = ScriptSchedule
        fields = ("org", "name", "script", "parameters", "device_group", "site", "cron", "timezone", "enabled")
        help_texts = {
            "cron": "Five fields: minute hour day-of-month month day-of-week, in the time zone below "
            "(e.g. 0 3 * * 0 = Sundays at 03:00). See docs/scripts.md for daylight-saving changes.",
            "device_group": "The group's members at each firing. Leave group and site empty for the whole "
            "organization.",
        }

    def clean_parameters(self):
        value = self.cleaned_data.get("parameters")
        return {} if value is None else value


@admin.register(ScriptSchedule)
class ScriptScheduleAdmin(DomainErrorsAsMessagesMixin, WrittenThroughServicesMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Scripts run by the server on a cron schedule in a time zone: on a group's members at firing time, a site, or
    the whole organization. Each firing is a run (listed under runs, trigger ``schedule``)."""

    resource = "scripts"
    verbs = SCHEDULE_VERBS
    form = ScriptScheduleForm
    list_display = (
        "__str__",
        "script",
        "org",
        "target",
        "cron",
        "timezone",
        "enabled",
        "next_run_at",
        "last_run_at",
        "runs",
    )
    list_filter = ("enabled", "org", ScriptFilter)
    list_select_related = ("script", "org", "site", "device_group")
    search_fields = ("name", "script__name")
    readonly_fields = ("next_run_at", "last_run_at", "created_by", "id", "created_at", "updated_at")
    autocomplete_fields = ("site",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "org") if obj else self.readonly_fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "script":
            # Scripts this user may run, not archived; save_schedule decides whether it fits the organization.
            kwargs["queryset"] = authz.visible(
                request.user,
                EXECUTE_PERMISSION,
                Script.objects.filter(archived_at__isnull=True).select_related("org", "partner"),
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="target")
    def target(self, obj: ScriptSchedule) -> str:
        if obj.device_group is not None:
            return f"group {obj.device_group.name}"
        if obj.site is not None:
            return f"site {obj.site.name}"
        return "the whole organization"

    @admin.display(description="runs")
    def runs(self, obj: ScriptSchedule):
        return format_html('<a href="{}?schedule={}">runs</a>', reverse("admin:scripts_scriptrun_changelist"), obj.pk)

    def save_through_service(self, request, obj, form, change):
        from scripts.services.schedules import save_schedule

        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        try:
            return save_schedule(schedule=obj, actor=request.user, ip=client_ip(request))
        except ValidationError as error:
            fields = error.message_dict if hasattr(error, "error_dict") else {}
            raise Invalid("The schedule is not valid.", fields=fields) from None

    def delete_through_service(self, request, obj) -> None:
        from scripts.services.schedules import delete_schedule

        delete_schedule(schedule=obj, actor=request.user, ip=client_ip(request))
