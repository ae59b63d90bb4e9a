"""The technician API's doors for untrusted input, each a thin wrapper over rmm.parsing:

- ``JSONParser`` reads every request body (``DEFAULT_PARSER_CLASSES``) and refuses one nested deeper than
  ``MAX_JSON_DEPTH`` before ``json.loads`` recurses into it (a 5,000-level body would raise RecursionError, a 500);
- ``JSONField`` is every serializer's JSON field (``CamelCaseModelSerializer`` maps model JSON fields to it): it
  refuses what jsonb cannot store (NUL, lone surrogates) and nesting beyond the limit; ``JSONFormField`` is the
  same for the admin's forms (``rmm.admin.JSON_FORM_FIELDS``);
- ``DateTimeField`` (request bodies), ``QueryDateTimeField`` (query strings: django-filter and admin forms) and
  ``DateTimeFilter`` read every datetime through ``parse_datetime``, so an offset PostgreSQL refuses or a moment
  outside years 1-9999 is a 400, not a database error;
- ``JSONRenderer`` writes every answer, and still writes one that echoes a lone surrogate from the request.

Text fields need nothing here: DRF's CharField and Django's forms.CharField already refuse NUL (and DRF lone
surrogates); a query string cannot carry a lone surrogate (Django decodes invalid UTF-8 to U+FFFD).
"""

from __future__ import annotations

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import parsers, renderers, serializers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from rmm.parsing import MAX_JSON_DEPTH, json_depth_exceeds, json_problem, parse_datetime


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing a body nested deeper than ``MAX_JSON_DEPTH`` before it is decoded."""

    def parse(self, stream, media_type=None, parser_context=None):
        # get_encoding (DRF 3.18.2) is newer than djangorestframework-stubs 3.16, the last for django-stubs 5.2.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = stream.read().decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"JSON parse error - the body is not valid {encoding} text.") from None
        if json_depth_exceeds(text):
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.")
        try:
            return json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class JSONField(serializers.JSONField):
    """A JSON value PostgreSQL's jsonb will store: no NUL or lone surrogate in any key or string, no nesting
    beyond ``MAX_JSON_DEPTH``. The message names where in the value the problem is (``env.PATH: …``)."""

    def to_internal_value(self, data):
        problem = json_problem(data)
        if problem:
            path, message = problem
            raise serializers.ValidationError(f"{path}: {message}" if path else message)
        return super().to_internal_value(data)


class JSONFormField(forms.JSONField):
    """A JSON form field (the admin) with the same limits as ``JSONField``; the depth is checked on the text before
    ``json.loads`` recurses into it."""

    def to_python(self, value):
        if isinstance(value, str) and json_depth_exceeds(value):
            raise DjangoValidationError(f"Nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid")
        converted = super().to_python(value)
        problem = json_problem(converted)
        if problem:
            path, message = problem
            raise DjangoValidationError(f"{path}: {message}" if path else message, code="invalid")
        return converted

    def bound_data(self, data, initial):
        # A refused value is shown again as it was typed: decoding it to redisplay it would recurse (deep nesting)
        # or put a lone surrogate into the page, which cannot be encoded.
        if isinstance(data, str) and json_depth_exceeds(data):
            return forms.fields.InvalidJSONInput(data)
        value = super().bound_data(data, initial)
        if isinstance(data, str) and json_problem(value):
            return forms.fields.InvalidJSONInput(data)
        return value


class DateTimeField(serializers.DateTimeField):
    """A datetime in a request body, read by ``parse_datetime`` (a value without an offset is UTC)."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                value = parse_datetime(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None
        return super().to_internal_value(value)


class QueryDateTimeField(forms.Field):
    """A datetime in a query string, read by ``parse_datetime`` (a '+' that arrived as a space is a '+')."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_datetime(value, from_query=True)
        except ValueError as exc:
            raise DjangoValidationError(str(exc), code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """Every datetime filter of the API (``lastSeenAfter``, the audit log's ``from``/``to``)."""

    # Not an IsoDateTimeField, as the base class declares: the field parses the value itself. The base class is
    # kept for what it tells the OpenAPI document (a date-time).
    field_class = QueryDateTimeField  # type: ignore[assignment]


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer (UTF-8, non-ASCII as itself), falling back to ASCII escapes for an answer that holds a
    lone surrogate — an error message quoting the request (``"\\ud800" is not a valid choice``) — which UTF-8
    cannot encode: the client gets its 400, not a 500."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _AsciiJSONRenderer().render(data, accepted_media_type, renderer_context)


class _AsciiJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True
