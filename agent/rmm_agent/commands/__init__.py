"""Running the commands technicians send (agent-api.md, "Commands"): ``script`` with the interpreter of its
language, ``reboot`` and ``shutdown`` when the local configuration allows power actions, ``update`` through the
configured update command, and ``refresh_inventory``.

``executor`` accepts commands and keeps their results; ``scripts`` checks a script's payload, finds its interpreter
and writes its file; ``process`` runs a process tree with a timeout and a bounded capture of its output.
"""

from __future__ import annotations

from rmm_agent.commands.executor import (
    POWER_ACTIONS_DISABLED,
    POWER_COMMANDS,
    UPDATES_DISABLED,
    CommandExecutor,
    command_result,
)

__all__ = ["POWER_ACTIONS_DISABLED", "POWER_COMMANDS", "UPDATES_DISABLED", "CommandExecutor", "command_result"]
