"""Adding or removing one tag (the device list's bulk tag actions) decides on the row under its lock."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog
from devices.models import Device
from devices.services import status
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_tag_added_to_a_stale_copy_keeps_the_tag_someone_else_added_meanwhile():
    device = factories.device(tags=["server"])
    stale = Device.objects.get(pk=device.pk)
    status.update_device(device=device, tags=["server", "backup"], actor=None)

    assert status.change_tag(device=stale, tag="linux", add=True, actor=None) is True

    assert Device.objects.get(pk=device.pk).tags == ["backup", "linux", "server"]


def test_removing_a_tag_keeps_the_others_as_they_are_now():
    device = factories.device(tags=["server", "old"])
    stale = Device.objects.get(pk=device.pk)
    status.update_device(device=device, tags=["server", "old", "new"], actor=None)

    assert status.change_tag(device=stale, tag="old", add=False, actor=None) is True

    assert Device.objects.get(pk=device.pk).tags == ["new", "server"]


@pytest.mark.parametrize(("tags", "tag", "add"), [(["server"], "server", True), (["server"], "linux", False)])
def test_a_tag_already_there_or_already_gone_changes_nothing_and_writes_no_audit_row(tags, tag, add):
    device = factories.device(tags=tags)
    before = AuditLog.objects.count()

    assert status.change_tag(device=device, tag=tag, add=add, actor=None) is False

    assert Device.objects.get(pk=device.pk).tags == tags
    assert AuditLog.objects.count() == before
