"""The agent protocol (``/api/v1/agents/``, spec: agent-api.md): plain Django views with hand-written validation.

``auth`` authenticates a bearer token against the device of the path, ``validation`` reads request bodies,
``sql`` holds the plain SQL of the heartbeat (measured: see its docstring), ``group_commit`` batches heartbeats of
one process into one transaction, and ``views`` / ``urls`` expose the endpoints.
"""
