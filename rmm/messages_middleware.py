"""``django.contrib.messages``' middleware, with the message storage made only when a request uses it.

Django's ``MessageMiddleware`` builds the storage (a cookie storage and a session storage behind a fallback) for
every request, and on the way out asks it to save. Only admin pages ever add or show a message; an agent's heartbeat
or an API call never does, yet paid for both: 9 % of a gunicorn worker's samples in a heartbeat benchmark were the
storage being made and updated (bench/RESULTS.md, issue 13). Here ``request._messages`` is a lazy object: built on
first use, exactly as Django would have built it, and saved only if it was built. Nothing else changes (the admin,
``messages.add_message`` and the context processor read it as before).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.messages import middleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty


class MessageMiddleware(middleware.MessageMiddleware):
    """A subclass, so the admin's check for the messages middleware (admin.E409) still finds it; synchronous only,
    as the server is (WSGI)."""

    def __call__(self, request):
        storage = SimpleLazyObject(lambda: default_storage(request))
        request._messages = storage
        response = self.get_response(request)
        messages = request.__dict__.get("_messages")
        if messages is None or (messages is storage and storage._wrapped is empty):  # type: ignore[attr-defined]
            return response  # never used, or a layer below took it away: nothing to save
        unstored_messages = messages.update(response)
        if unstored_messages and settings.DEBUG:
            raise ValueError("Not all temporary messages could be stored.")
        return response
