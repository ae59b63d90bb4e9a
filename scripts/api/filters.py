"""Filters of the scripts API's lists. Each narrows a queryset that authz has already scoped to the caller's reach."""

from __future__ import annotations

import django_filters

from scripts.models import Script, ScriptLanguage, ScriptOsType, ScriptRun, ScriptRunTrigger, ScriptSchedule


class ScriptFilter(django_filters.FilterSet):
    """``archived``: left out, only scripts in use (archived ones are history); ``true`` the archived ones only,
    ``false`` the ones in use. ``search``: a part of the name, any case. ``osType``: scripts that run on it."""

    orgId = django_filters.UUIDFilter(field_name="org_id")
    partnerId = django_filters.UUIDFilter(field_name="partner_id")
    category = django_filters.CharFilter(field_name="category", lookup_expr="iexact")
    language = django_filters.MultipleChoiceFilter(choices=ScriptLanguage.choices)
    osType = django_filters.ChoiceFilter(choices=ScriptOsType.choices, method="filter_os_type")
    archived = django_filters.BooleanFilter(method="filter_archived")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains", max_length=200)

    class Meta:
        model = Script
        fields: list[str] = []

    def filter_queryset(self, queryset):
        if self.form.cleaned_data.get("archived") is None:
            queryset = queryset.filter(archived_at__isnull=True)
        return super().filter_queryset(queryset)

    def filter_os_type(self, queryset, name, value):
        return queryset.filter(os_types__contains=[value]) if value else queryset

    def filter_archived(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.filter(archived_at__isnull=not value)


class ScriptRunFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    scriptId = django_filters.UUIDFilter(field_name="script_id")
    scheduleId = django_filters.UUIDFilter(field_name="schedule_id")
    trigger = django_filters.MultipleChoiceFilter(choices=ScriptRunTrigger.choices)

    class Meta:
        model = ScriptRun
        fields: list[str] = []


class ScriptScheduleFilter(django_filters.FilterSet):
    orgId = django_filters.UUIDFilter(field_name="org_id")
    scriptId = django_filters.UUIDFilter(field_name="script_id")
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = ScriptSchedule
        fields: list[str] = []
