"""The agent protocol (``/api/v1/agents/``, spec: agent-api.md).

``schemas`` declares the request bodies (pydantic), ``authentication`` checks an agent's bearer token against the
device of the path, ``views`` / ``urls`` expose the endpoints, ``heartbeat`` reads and writes check-ins with
``group_commit`` batching those of one process into one statement, ``sql`` holds the plain SQL of that path, and
``delivery`` returns claimed commands whose answer could not be delivered. The measurements behind these choices
are in bench/RESULTS.md.
"""
