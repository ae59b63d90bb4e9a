"""The RMM agent: enrolls the machine it runs on, heartbeats with its metrics, uploads its inventory and runs the
commands technicians send (the wire protocol is docs/agent-api.md of the server)."""

__version__ = "0.1.0"
