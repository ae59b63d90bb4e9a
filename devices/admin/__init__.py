"""Admin pages for devices and everything agents report about them.

The device page shows the device with its inventory, group memberships, recent commands and latest telemetry,
each capped (a device may have 10,000 software rows) with a link to the full, filtered list. Inventory, commands
and memberships are read-only here: agents replace inventory on upload, and commands and memberships are made
through the API. Device telemetry has a composite primary key, which the Django admin cannot register; it gets its
own read-only page (``telemetry_page``).

Every write here calls the service the API calls (``devices.services.status`` for a device's edits and lifecycle,
``devices.services.groups`` for groups), so both doors obey the same rules and write the same audit rows: a form's
``clean()`` runs the service's check and shows its refusal as form errors (``rmm.admin.add_domain_error``), and
``save_model`` and the actions call the service, whose audit row replaces ``AuditedAdminMixin``'s.

Everything here is the ``devices`` resource of the authorization module: lists and pages show the devices (and
their rows) the user reaches with ``devices:read``, and changing a device or a group needs ``devices:write``.
"""

# Each module registers its admins with admin.site when imported.
from devices.admin import commands, device, groups, inventory, telemetry  # noqa: F401
