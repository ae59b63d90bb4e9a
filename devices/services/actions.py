"""What technicians do to a device beyond editing it: quarantine, approve, ask for a new agent token.

Each writes one audit-log row. Maintenance on/off is a PATCH of the status (see the device serializer), and
decommissioning is DELETE; both are audited by the API's base class.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts import audit
from devices.models import Device
from rmm.errors import ApiError

_QUARANTINABLE = (Device.Status.ONLINE, Device.Status.OFFLINE, Device.Status.MAINTENANCE)


def quarantine(*, device: Device, reason: str, actor, ip: str | None = None) -> Device:
    """Cut the device off: its agent is refused (403 device_quarantined) except that heartbeats still record
    that it is alive."""
    with transaction.atomic():
        locked = Device.objects.select_for_update().get(pk=device.pk)
        if locked.status == Device.Status.QUARANTINED:
            return locked
        if locked.status not in _QUARANTINABLE:
            raise ApiError(409, "invalid_status", f"A {locked.status} device cannot be quarantined.")
        locked.status = Device.Status.QUARANTINED
        locked.quarantined_at = timezone.now()
        locked.quarantined_reason = reason[:255]
        locked.save(update_fields=["status", "quarantined_at", "quarantined_reason", "updated_at"])
        audit.record(action="device.quarantine", actor_user=actor, target=locked, details={"reason": reason}, ip=ip)
    return locked


def approve(*, device: Device, actor, ip: str | None = None) -> Device:
    """Lift a quarantine: the device is online again."""
    with transaction.atomic():
        locked = Device.objects.select_for_update().get(pk=device.pk)
        if locked.status != Device.Status.QUARANTINED:
            raise ApiError(409, "invalid_status", f"Only a quarantined device can be approved (it is {locked.status}).")
        reason = locked.quarantined_reason
        locked.status = Device.Status.ONLINE
        locked.quarantined_at = None
        locked.quarantined_reason = ""
        locked.save(update_fields=["status", "quarantined_at", "quarantined_reason", "updated_at"])
        audit.record(action="device.approve", actor_user=actor, target=locked, details={"reason": reason}, ip=ip)
    return locked


def request_token_rotation(*, device: Device, actor, ip: str | None = None) -> None:
    """Mark the agent's token as due: its next heartbeat answers ``rotateToken: true`` and the agent fetches a
    new one (the old keeps working five minutes after that). The server never sends a token unasked."""
    if device.status == Device.Status.DECOMMISSIONED:
        raise ApiError(409, "device_decommissioned", "A decommissioned device has no agent to rotate.")
    with transaction.atomic():
        Device.objects.filter(pk=device.pk).update(agent_token_issued_at=None, updated_at=timezone.now())
        audit.record(action="device.request_token_rotation", actor_user=actor, target=device, ip=ip)
