"""The errors of the domain: what a service raises when a rule says no.

Services never raise HTTP errors. They raise one of these, and each door turns it into its own language exactly
once: ``rmm.errors.exception_handler`` into the API's error shape (the status comes from the class), and
``rmm.admin`` into a form error or a message in the admin. A management command prints ``str(error)``.

Every error carries a stable snake_case ``code`` (the API's ``error`` key), a ``message`` for people, and, when the
problem lies in named input fields, ``fields``: ``{"parentId": ["A group cannot be its own ancestor."]}`` with the
API's camelCase names (the admin maps them back to its form fields). ``extra`` holds further keys of the API's
answer beside those three (the ``setupToken`` of a sign-in that must first set up its second factor).
"""

from __future__ import annotations


class DomainError(Exception):
    """A rule refused an operation. Subclasses say which kind of refusal it is (and so which HTTP status)."""

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        extra: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = fields or {}
        self.extra = extra or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, fields={self.fields!r})"


class Invalid(DomainError):
    """The input breaks a rule (a group its own ancestor, organizations listed with ``org_access = all``). 400."""

    default_code = "validation_error"

    @classmethod
    def field(cls, name: str, message: str, *, code: str | None = None) -> Invalid:
        """The common case: one named field with one problem."""
        return cls(message, code=code, fields={name: [message]})


class Unauthenticated(DomainError):
    """The credentials presented (a password, a second factor, an enrollment key, a token) are wrong, missing or no
    longer valid. 401."""

    default_code = "not_authenticated"


class StepRequired(DomainError):
    """The caller must take another step first (set up the second factor its role requires), then try again. 428."""

    default_code = "step_required"


class NotFound(DomainError):
    """The object does not exist, or is outside what the caller may see (the two are not told apart). 404."""

    default_code = "not_found"


class Refused(DomainError):
    """The caller may not do this (no permission, an escalation of their own access). 403."""

    default_code = "permission_denied"


class Conflict(DomainError):
    """The object's state forbids the change (a decommissioned device, a command that already finished). 409."""

    default_code = "conflict"


class LimitReached(DomainError):
    """A tenant's limit would be exceeded (its organizations, its devices). 403, as the API has always answered."""

    default_code = "limit_reached"
