"""An inventory upload is written as the difference from what is stored (devices.services.ingest): the stored rows
always equal the upload, rows that did not change are left alone, and the group refresh queue hears of an upload
only when it changed something."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections import Counter

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from devices.models import DeviceRegistryEntry, DeviceSoftware
from devices.services import groups, ingest

pytestmark = pytest.mark.django_db

SOFTWARE = [
    {"name": "Mozilla Firefox", "version": "133.0", "publisher": "Mozilla", "installDate": "2024-11-02"},
    {"name": "7-Zip", "version": "24.08", "publisher": "Igor Pavlov", "installLocation": "C:\\Program Files\\7-Zip"},
    {"name": "Git", "version": "2.47.1"},
    {"name": "Git", "version": "2.47.1"},  # a program listed twice (two installs) is two rows
]
FIELDS = ("name", "version", "publisher", "install_date", "install_location")


def _stored(device_id: str) -> Counter:
    return Counter(DeviceSoftware.objects.filter(device_id=device_id).values_list(*FIELDS))


def _ids(device_id: str) -> dict[uuid.UUID, tuple]:
    return dict(DeviceSoftware.objects.filter(device_id=device_id).values_list("id", "updated_at"))


def _queued(device_id: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT changed FROM device_group_refresh_queue WHERE device_id = %s ORDER BY id", [device_id])
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def drained(db):
    groups.process_refresh_queue()


def test_an_unchanged_upload_writes_nothing_and_queues_no_refresh(agent, drained):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    before = _ids(agent.device_id)
    groups.process_refresh_queue()

    response = agent.put("software", {"software": list(reversed(SOFTWARE))})  # the order of a list is not a change

    assert response.status_code == 204
    assert _ids(agent.device_id) == before  # the same rows, not deleted and written again
    assert _queued(agent.device_id) == []


def test_a_changed_upload_stores_exactly_the_new_list_and_queues_the_refresh(agent, drained):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    kept = {id_ for (id_,) in DeviceSoftware.objects.filter(device_id=agent.device_id, name="7-Zip").values_list("id")}
    groups.process_refresh_queue()
    upload = [
        SOFTWARE[0] | {"version": "134.0"},  # a new version: the old row goes, the new one comes
        SOFTWARE[1],  # unchanged: stays as it was
        SOFTWARE[2],  # one of the two Git rows goes
        {"name": "Notepad++", "version": "8.7"},  # new
        {"name": "Notepad++", "version": "8.7"},
    ]

    assert agent.put("software", {"software": upload}).status_code == 204

    assert _stored(agent.device_id) == Counter(
        {
            ("Mozilla Firefox", "134.0", "Mozilla", dt.date(2024, 11, 2), ""): 1,
            ("7-Zip", "24.08", "Igor Pavlov", None, "C:\\Program Files\\7-Zip"): 1,
            ("Git", "2.47.1", "", None, ""): 1,
            ("Notepad++", "8.7", "", None, ""): 2,
        }
    )
    assert kept <= set(_ids(agent.device_id))
    assert _queued(agent.device_id) and all(changed == ["software"] for changed in _queued(agent.device_id))


@pytest.mark.parametrize("copies", [1, 3, 0, 2])
def test_repeated_items_are_stored_as_often_as_they_are_sent(agent, copies):
    assert agent.put("software", {"software": SOFTWARE[:2] * 2}).status_code == 204

    assert agent.put("software", {"software": SOFTWARE[:1] + SOFTWARE[1:2] * copies}).status_code == 204

    assert DeviceSoftware.objects.filter(device_id=agent.device_id, name="Mozilla Firefox").count() == 1
    assert DeviceSoftware.objects.filter(device_id=agent.device_id, name="7-Zip").count() == copies


def test_an_empty_upload_removes_every_row_and_queues_the_refresh(agent, drained):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    groups.process_refresh_queue()

    assert agent.put("software", {"software": []}).status_code == 204

    assert not DeviceSoftware.objects.filter(device_id=agent.device_id).exists()
    assert _queued(agent.device_id) == [["software"]]


def test_entries_sent_without_their_time_are_stamped_again_and_those_with_it_are_kept(agent):
    timed = {
        "registryPath": "HKLM\\SOFTWARE\\A",
        "valueName": "x",
        "valueData": "1",
        "collectedAt": "2026-11-25T09:00:00Z",
    }
    untimed = {"registryPath": "HKLM\\SOFTWARE\\B", "valueName": "y", "valueData": "2"}
    assert agent.put("registry-state", {"entries": [timed, untimed]}).status_code == 204
    first = dict(DeviceRegistryEntry.objects.filter(device_id=agent.device_id).values_list("value_name", "id"))
    stamped = DeviceRegistryEntry.objects.get(device_id=agent.device_id, value_name="y").collected_at

    assert agent.put("registry-state", {"entries": [timed, untimed]}).status_code == 204

    rows = {row.value_name: row for row in DeviceRegistryEntry.objects.filter(device_id=agent.device_id)}
    assert rows["x"].id == first["x"]
    assert rows["y"].id != first["y"] and rows["y"].collected_at > stamped  # the time of this upload


def test_a_failed_write_leaves_the_stored_rows_as_they_were(agent):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    before = _ids(agent.device_id)
    rows = [("Git", "2.48.0", "", None, ""), ("Vim", "9.1", "", None, "")]

    # Another organization's id: the composite foreign key refuses the new rows after the old ones were deleted.
    with pytest.raises(psycopg.IntegrityError):  # raised by COPY, which Django does not wrap
        ingest.replace_inventory(
            device_id=uuid.UUID(agent.device_id), org_id=uuid.uuid4(), kind="software", rows=rows, now=timezone.now()
        )

    assert _ids(agent.device_id) == before


def test_new_rows_get_version_7_ids_of_the_upload_time(agent):
    started = timezone.now()
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    ids = list(_ids(agent.device_id))
    assert len(set(ids)) == len(SOFTWARE)
    assert all(id_.version == 7 and id_.variant == uuid.RFC_4122 for id_ in ids)
    millis = {id_.int >> 80 for id_ in ids}  # the first 48 bits: Unix time in milliseconds
    assert all(abs(ms - started.timestamp() * 1000) < 60_000 for ms in millis)


def test_an_unchanged_upload_is_one_read(agent, django_assert_num_queries):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    rows = [
        ("Git", "2.47.1", "", None, ""),
        ("Mozilla Firefox", "133.0", "Mozilla", dt.date(2024, 11, 2), ""),
        ("Git", "2.47.1", "", None, ""),
        ("7-Zip", "24.08", "Igor Pavlov", None, "C:\\Program Files\\7-Zip"),
    ]
    device = agent.device

    with django_assert_num_queries(1):  # no transaction, no lock, no write
        written = ingest.replace_inventory(
            device_id=device.pk, org_id=device.org_id, kind="software", rows=rows, now=timezone.now()
        )

    assert written == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_one_device_leave_exactly_one_of_them(agent):
    device = agent.device
    lists = [[(f"Program {n}", f"{version}.0", "", None, "") for n in range(60)] for version in range(3)]
    lists[1] = lists[0][:30] + lists[1][30:]  # overlapping lists, as two scans a minute apart would be

    def upload(rows: list[tuple], barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            ingest.replace_inventory(
                device_id=device.pk, org_id=device.org_id, kind="software", rows=rows, now=timezone.now()
            )
        finally:
            connection.close()

    for _ in range(8):
        barrier = threading.Barrier(len(lists))
        threads = [threading.Thread(target=upload, args=(rows, barrier)) for rows in lists]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _stored(agent.device_id) in [Counter(rows) for rows in lists]


# --- re-sent bytes: answered from the digest of the last written upload --------------------------------------------


def _statements_during(call) -> list[str]:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = call()
    assert response.status_code == 204
    return [query["sql"] for query in queries.captured_queries]


def test_the_same_bytes_sent_again_are_answered_without_reading_the_rows(agent):
    body = json.dumps({"software": SOFTWARE})
    assert agent.put("software", raw=body).status_code == 204
    before = _ids(agent.device_id)

    statements = _statements_during(lambda: agent.put("software", raw=body))

    assert not [sql for sql in statements if "device_software" in sql]  # not read, not written
    assert len([sql for sql in statements if "device_inventory_digests" in sql]) == 1
    assert _ids(agent.device_id) == before


def test_the_same_list_in_other_bytes_is_compared_once_then_answered_from_its_digest(agent):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    before = _ids(agent.device_id)
    reordered = json.dumps({"software": list(reversed(SOFTWARE))})

    first = _statements_during(lambda: agent.put("software", raw=reordered))
    again = _statements_during(lambda: agent.put("software", raw=reordered))

    assert [sql for sql in first if "device_software" in sql]  # compared with the stored rows
    assert not [sql for sql in again if "device_software" in sql]
    assert _ids(agent.device_id) == before


def test_bytes_sent_before_a_change_are_written_again_when_they_come_back(agent):
    old = json.dumps({"software": SOFTWARE})
    new = json.dumps({"software": SOFTWARE[:1]})
    assert agent.put("software", raw=old).status_code == 204
    assert agent.put("software", raw=new).status_code == 204
    assert sum(_stored(agent.device_id).values()) == 1

    assert agent.put("software", raw=old).status_code == 204

    assert sum(_stored(agent.device_id).values()) == len(SOFTWARE)


def test_a_digest_is_kept_per_kind(agent):
    body = json.dumps({"software": SOFTWARE})
    assert agent.put("software", raw=body).status_code == 204
    device = agent.device
    digest = ingest.upload_digest("software", body.encode())

    assert ingest.upload_is_stored(device_id=device.pk, kind="software", digest=digest)
    assert not ingest.upload_is_stored(device_id=device.pk, kind="disks", digest=digest)
    assert not ingest.upload_is_stored(
        device_id=device.pk, kind="software", digest=ingest.upload_digest("disks", body.encode())
    )


def test_a_failed_write_forgets_nothing_and_remembers_nothing(agent):
    body = json.dumps({"software": SOFTWARE})
    assert agent.put("software", raw=body).status_code == 204
    device = agent.device
    other = ingest.upload_digest("software", b"another body")

    with pytest.raises(psycopg.IntegrityError):
        ingest.replace_inventory(
            device_id=device.pk,
            org_id=uuid.uuid4(),
            kind="software",
            rows=[("Vim", "9.1", "", None, "")],
            now=timezone.now(),
            digest=other,
        )

    assert not ingest.upload_is_stored(device_id=device.pk, kind="software", digest=other)
    assert ingest.upload_is_stored(
        device_id=device.pk, kind="software", digest=ingest.upload_digest("software", body.encode())
    )


def test_a_bad_body_sent_twice_is_refused_twice(agent):
    bad = json.dumps({"software": [{"version": "1.0"}]})  # no name

    assert agent.put("software", raw=bad).status_code == 400
    assert agent.put("software", raw=bad).status_code == 400
