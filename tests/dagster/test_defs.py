"""The whole code location loads, and every asset follows the project's conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from aiobs_pipeline.definitions import defs

REPO = Path(__file__).resolve().parents[2]


def test_code_location_loads_with_every_job_resolvable() -> None:
    repo = defs.get_repository_def()
    assert {"hourly_job", "daily_job"} <= {job.name for job in repo.get_all_jobs()}
    assert {s.name for s in repo.schedule_defs} >= {"hourly_ingest_schedule"}
    assert {s.name for s in repo.sensor_defs} >= {"landing_sensor"}


def test_every_asset_has_a_group_kind_description_and_cadence() -> None:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    own_schedule = {key for schedule in repo.schedule_defs if schedule.job_name not in {"hourly_job", "daily_job",
                                                                                          "monthly_job"}
                    for key in repo.get_job(schedule.job_name).asset_layer.executable_asset_keys}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.group_name and node.group_name != "default", f"{name} has no group"
        assert node.description, f"{name} has no description"
        assert node.kinds, f"{name} has no kinds"
        # Unpartitioned housekeeping (retention) runs on a schedule of its own instead of a cadence job.
        assert node.tags.get("aiobs/cadence") in {"hourly", "daily", "monthly"} or key in own_schedule, (
            f"{name} has no cadence tag and no schedule")


def test_dagster_cli_sees_the_workspace() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
