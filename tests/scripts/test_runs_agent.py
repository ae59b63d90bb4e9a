"""A script run end to end through the real agent endpoints: the heartbeat delivers each command with its env and
scriptRunId, the agent posts its result, and the run's progress and results show it."""

from __future__ import annotations

import pytest

from accounts.models import OrganizationUser
from devices.models import DeviceCommand
from scripts.models import Script
from scripts.services.library import save_script
from scripts.services.runs import result_status, run_progress, run_results, start_run
from tests.agent.conftest import Agent, enroll, make_key
from tests.factories import site as make_site

pytestmark = pytest.mark.django_db

HOSTILE = '"; rm -rf / #'


@pytest.fixture(autouse=True)
def _stop_the_heartbeat_writer():
    yield
    from devices.agent_api.heartbeat import heartbeat_writer

    heartbeat_writer.stop()


@pytest.fixture
def site(db):
    return make_site()


@pytest.fixture
def agents(client, site) -> list[Agent]:
    made = []
    for n in range(3):
        raw, _ = make_key(site)
        response = enroll(client, raw, hostname=f"web-{n}", osType="linux")
        assert response.status_code == 201, response.content
        body = response.json()
        made.append(Agent(client=client, agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"]))
    return made


@pytest.fixture
def technician(site, make_user, roles):
    user = make_user("tech@example.com")
    OrganizationUser.objects.create(org=site.org, user=user, role=roles["Org Admin"])
    return user


@pytest.fixture
def script(site, technician) -> Script:
    return save_script(
        script=Script(
            org=site.org,
            name="Clean temp",
            language="bash",
            content='rm -rf -- "$RMM_PARAM_FOLDER"/*\r\n',
            parameters=[{"name": "folder", "type": "string", "required": True}],
            success_exit_codes=[0, 3],
        ),
        actor=technician,
    )


def test_results_flow_from_the_agents_to_the_runs_progress_and_results(agents, script, technician):
    run = start_run(
        script=script,
        actor=technician,
        trigger="api",
        parameters={"folder": HOSTILE},
        device_ids=[agent.device_id for agent in agents],
    )

    delivered = {}
    for agent in agents:
        response = agent.heartbeat()
        assert response.status_code == 200
        (command,) = response.json()["commands"]
        delivered[agent.agent_id] = command
    for command in delivered.values():
        assert command["type"] == "script"
        assert command["payload"] == {
            "language": "bash",
            "content": 'rm -rf -- "$RMM_PARAM_FOLDER"/*\r\n',
            "timeoutSeconds": 300,
            "env": {"RMM_PARAM_FOLDER": HOSTILE},
            "scriptRunId": str(run.pk),
        }
    assert run_progress([run])[run.pk]["sent"] == 3

    exits = [0, 3, 1]  # 3 is a success exit code of this script
    for agent, exit_code in zip(agents, exits, strict=True):
        body = {
            "status": "completed",
            "exitCode": exit_code,
            "stdout": f"exit {exit_code}\n",
            "stderr": "",
            "durationMs": 120,
            "error": None,
        }
        response = agent.post(f"commands/{delivered[agent.agent_id]['id']}/result", body)
        assert response.status_code == 200, response.content

    progress = run_progress([run])[run.pk]
    assert (progress["succeeded"], progress["failed"], progress["sent"], progress["total"]) == (2, 1, 0, 3)
    by_device = {str(command.device_id): command for command in run_results(run)}
    statuses = {device: result_status(command, script.success_exit_codes) for device, command in by_device.items()}
    assert statuses == {
        agents[0].device_id: "succeeded",
        agents[1].device_id: "succeeded",
        agents[2].device_id: "failed",
    }
    assert by_device[agents[1].device_id].result["stdout"] == "exit 3\n"
    assert by_device[agents[2].device_id].status == DeviceCommand.Status.COMPLETED


def test_a_failed_result_counts_as_failed_and_get_commands_delivers_env_too(agents, script, technician):
    run = start_run(
        script=script,
        actor=technician,
        trigger="api",
        parameters={"folder": "/srv/x"},
        device_ids=[agents[0].device_id],
    )
    response = agents[0].get("commands")
    assert response.status_code == 200
    (command,) = response.json()["commands"]
    assert command["payload"]["env"] == {"RMM_PARAM_FOLDER": "/srv/x"}
    assert command["payload"]["scriptRunId"] == str(run.pk)

    body = {"status": "failed", "exitCode": None, "stdout": "", "stderr": "", "durationMs": 5, "error": "no bash"}
    assert agents[0].post(f"commands/{command['id']}/result", body).status_code == 200
    assert run_progress([run])[run.pk]["failed"] == 1
    assert result_status(run_results(run).get(), script.success_exit_codes) == "failed"
