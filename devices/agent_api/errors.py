"""The refusal every agent view turns into the shared error shape (``rmm.errors``)."""

from __future__ import annotations

from rmm.errors import error_response


class AgentError(Exception):
    """An answer other than success: status, stable code, message for people and (on a 400) the bad fields."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}

    def response(self):
        response = error_response(self.status, self.code, self.message, self.fields)
        if self.status == 401:
            response["WWW-Authenticate"] = "Bearer"  # RFC 9110: a 401 names the scheme that would be accepted
        return response


def invalid_fields(fields: dict[str, list[str]]) -> AgentError:
    return AgentError(400, "validation_error", "The request has invalid fields.", fields)


def too_many_items(field: str, limit: int) -> AgentError:
    return AgentError(413, "too_many_items", f"{field} holds more than {limit:,} items; nothing was stored.")
