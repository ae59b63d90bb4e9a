"""/api/v1/agents/…: every path answers with and without a trailing slash (never a redirect)."""

from devices.agent_api import views
from rmm.api import route

AGENT = r"(?P<agent_id>[^/]+)"

urlpatterns = [
    route("enroll", views.enroll, "agent-enroll"),
    route(rf"{AGENT}/heartbeat", views.heartbeat, "agent-heartbeat"),
    route(rf"{AGENT}/commands", views.claim_commands, "agent-commands"),
    route(rf"{AGENT}/commands/(?P<command_id>[^/]+)/result", views.command_result, "agent-command-result"),
    route(rf"{AGENT}/rotate-token", views.rotate_token, "agent-rotate-token"),
    route(rf"{AGENT}/config", views.config, "agent-config"),
    route(rf"{AGENT}/(?P<kind>[^/]+)", views.inventory, "agent-inventory"),
    route(r".*", views.unknown, "agent-unknown"),
]
