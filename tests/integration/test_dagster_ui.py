"""The Dagster UI, used as a person uses it: `dagster dev` (webserver and daemon) on a small demo instance,
driven by Playwright through Debian's chromium.

The test opens the asset graph and finds every aiobs asset group there, launches a backfill of three hourly
partitions of the ingest assets from the Materialize dialog, waits in the UI until the backfill has succeeded
(and confirms through the instance and the warehouse that its runs did), then opens the `spans_valid` check
results and the monthly report's Markdown metadata. Screenshots of each step go to test-artifacts/
(gitignored); with AIOBS_UPDATE_SCREENSHOTS=1 the asset graph is also saved as docs/img/dagster-ui.png.

Skips with the reason when Playwright or chromium is missing; fails instead when AIOBS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration import dagster_ui_instance as ui_instance
from tests.integration.test_reports_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, playwright_or_skip

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "img" / "dagster-ui.png"
GENERATED_HOURS, MATERIALISED_HOURS = 6, 3
# Dagster's UI shares 2 cores with the daemon, a run worker and other test jobs: wait generously.
UI_TIMEOUT_MS = 90_000
BUILD_TIMEOUT_S = 400
STARTUP_TIMEOUT_S = 240
BACKFILL_TIMEOUT_S = 360
# Wide enough that the fitted asset graph draws group nodes with their status badges (smaller: names only).
VIEWPORT = {"width": 1600, "height": 1000}
PLAYWRIGHT_EXPECT_TIMEOUT_MS = 5_000  # Playwright's default for expect(), restored after the module


@dataclass
class DagsterUI:
    """The running UI on the demo instance, one browser page on it, and what the instance was built with."""

    dev: ui_instance.DagsterDev
    page: Any
    workdir: Path
    manifest: dict[str, list[str]]

    @property
    def url(self) -> str:
        """The webserver's base URL."""
        return self.dev.url

    def screenshot(self, name: str) -> Path:
        """Save what is on screen as test-artifacts/dagster-ui-<name>.png."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"dagster-ui-{name}.png"
        self.page.screenshot(path=str(path))
        return path


def asset_groups() -> dict[str, set[str]]:
    """The asset groups of the code location and their asset names, from `aiobs_pipeline.definitions.defs`."""
    from aiobs_pipeline.definitions import defs  # noqa: PLC0415

    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    return groups


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """Build the demo instance, start `dagster dev` on it, open chromium; stop every process afterwards."""
    sync_playwright = playwright_or_skip()
    workdir = tmp_path_factory.mktemp("dagster-ui")
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "true"}
    env.pop("AIOBS_CONFIG", None)
    built = subprocess.run(
        [sys.executable, ui_instance.__file__, "--workdir", str(workdir), "--hours", str(GENERATED_HOURS),
         "--materialise", str(MATERIALISED_HOURS), "--scale", "0.2"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, check=False)
    assert built.returncode == 0, (f"building the demo instance in {workdir} failed:\n"
                                   f"{built.stdout[-3000:]}\n{built.stderr[-5000:]}")
    manifest = json.loads((workdir / ui_instance.MANIFEST).read_text())
    marker = uuid.uuid4().hex
    dev = ui_instance.start_dagster_dev(workdir, REPO_ROOT / "workspace.yaml", marker, workdir / "dagster-dev.log")
    try:
        dev.wait_until_up(STARTUP_TIMEOUT_S)
        from playwright.sync_api import expect  # noqa: PLC0415

        # expect() does not follow the page's default timeout; it has a process-wide one of its own.
        expect.set_options(timeout=UI_TIMEOUT_MS)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(UI_TIMEOUT_MS)
                # A first visit may show the "Join the Dagster community" dialog over anything: dismiss it.
                page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True),
                                         lambda skip: skip.click())
                yield DagsterUI(dev=dev, page=page, workdir=workdir, manifest=manifest)
            finally:
                browser.close()
                expect.set_options(timeout=PLAYWRIGHT_EXPECT_TIMEOUT_MS)
    finally:
        left = dev.stop(timeout_s=45)  # SIGTERM, a grace period, then SIGKILL for anything left
        ARTIFACTS.mkdir(exist_ok=True)
        if dev.log_path.exists():
            shutil.copyfile(dev.log_path, ARTIFACTS / "dagster-ui-dagster-dev.log")
        assert dev.process.returncode is not None, "dagster dev is still running after stop()"
        assert left == [], f"processes of dagster dev still alive after stopping its group: {left}"


def _group_node(ui: DagsterUI, group: str) -> Any:
    """The node of an asset group in the (collapsed) asset graph."""
    return ui.page.locator("svg foreignObject").filter(has=ui.page.get_by_text(group, exact=True))


def test_asset_graph_shows_every_aiobs_group(ui: DagsterUI) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    groups = asset_groups()
    assert groups and None not in groups, f"every asset needs a group in the definitions: {groups}"
    page = ui.page
    page.goto(f"{ui.url}/asset-groups", wait_until="domcontentloaded")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in sorted(groups):
        # A group node reads "<group>", then "<group>N assets (fetching statuses)", then "<group>" followed by
        # its status badges (counts of assets per status) once the asset health has loaded.
        expect(_group_node(ui, group), f"group {group} in the graph, with statuses").to_have_text(
            re.compile(rf"^\s*{re.escape(group)}[\d\s]+$"))
        expect(page.locator(f'[title="{group}"]'), f"group {group} in the side list").to_be_visible()
    # The side list holds one entry per group of the code location, no more.
    expect(page.locator('[role="img"][aria-label="asset_group"]')).to_have_count(len(groups))
    page.wait_for_timeout(500)  # let the graph's fit-to-screen animation finish before the picture
    ui.screenshot("01-asset-graph")
    if os.environ.get("AIOBS_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOT))


def test_backfill_of_three_hours_launched_from_the_ui(ui: DagsterUI) -> None:
    from dagster import AssetCheckKey, AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter  # noqa: PLC0415
    from dagster._core.execution.backfill import BulkActionStatus  # noqa: PLC0415
    from dagster._core.storage.asset_check_execution_record import (  # noqa: PLC0415
        AssetCheckExecutionRecordStatus,
    )
    from playwright.sync_api import expect  # noqa: PLC0415

    from aiobs_pipeline.settings import get_settings  # noqa: PLC0415
    from aiobs_pipeline.warehouse import read_table  # noqa: PLC0415

    hours = [h for h in ui.manifest["generated"] if h not in ui.manifest["materialised"]][:3]
    assert len(hours) == 3, f"the instance needs three generated, unmaterialised hours: {ui.manifest}"
    ingest_assets = asset_groups()["ingest"]
    page = ui.page
    page.goto(f"{ui.url}/locations/aiobs/asset-groups/ingest", wait_until="domcontentloaded")
    for name in ingest_assets:
        expect(page.locator("svg foreignObject").get_by_text(name, exact=True)).to_be_visible()
    page.get_by_role("button", name="Materialize all").click()

    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Launch runs to materialize {len(ingest_assets)} assets")).to_be_visible()
    selection = dialog.get_by_placeholder("No matching partitions")
    selection.fill(f"[{hours[0]}...{hours[-1]}]")
    selection.press("Enter")
    expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
    ui.screenshot("02-backfill-dialog")
    dialog.get_by_role("button", name="Launch backfill").click()

    created = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(created).to_be_visible()
    backfill_id = re.search(r"Created backfill (\w+)", created.inner_text()).group(1)
    ui.screenshot("03-backfill-created")
    # The toast's "View" link vanishes after a few seconds (sooner than a loaded machine takes a screenshot):
    # open the backfill's page by its id instead, as a person would from the Runs list.
    page.goto(f"{ui.url}/runs/b/{backfill_id}", wait_until="domcontentloaded")
    expect(page.get_by_text(f"{hours[0]}...{hours[-1]}")).to_be_visible()

    # The backfill page refreshes itself; its status tag sits under the "Status" label.
    status = page.get_by_text("Status", exact=True).locator("xpath=following-sibling::div[1]")
    expect(status).to_have_text(re.compile(r"Succeeded|Fail|Cancel"), timeout=BACKFILL_TIMEOUT_S * 1000)
    ui.screenshot("04-backfill-done")
    assert status.inner_text().strip() == "Succeeded", (
        f"backfill {backfill_id} ended as {status.inner_text()!r}; dagster dev log:\n{ui.dev.log_tail(60)}")
    for name in ingest_assets:  # each asset's link reads "<name> <name>" (icon label and text)
        expect(page.get_by_role("link", name=re.compile(rf"^{re.escape(name)}( |$)"))).to_be_visible()
    expect(page.get_by_text("100% completed")).to_have_count(len(ingest_assets))
    page.get_by_role("tab", name="Runs").click()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    ui.screenshot("05-backfill-runs")

    instance = DagsterInstance.from_config(str(ui.workdir / ".dagster_home"))
    try:
        assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
        runs = instance.get_runs(filters=RunsFilter.for_backfill(backfill_id))
        assert runs, f"backfill {backfill_id} launched no run"
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs), [(r.run_id, r.status) for r in runs]
        for name in ingest_assets:
            assert set(hours) <= instance.get_materialized_partitions(AssetKey(name)), name
        # The GX check ran in the backfill's run and passed: that is the result the checks page shows next.
        latest = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("spans"), "spans_valid"), limit=1)
        assert latest and latest[0].run_id in {run.run_id for run in runs}, latest
        assert latest[0].status == AssetCheckExecutionRecordStatus.SUCCEEDED, latest[0]
        assert latest[0].event.asset_check_evaluation.passed, latest[0]
    finally:
        instance.dispose()

    # The runs wrote the tmp workdir's warehouse (settings resolved there): one audit row per landing file.
    landing = ui.workdir / "var" / "landing"
    files = {p.relative_to(landing).as_posix() for h in hours
             for p in (landing / h[:10].replace("-", "/") / h[11:13]).glob("*") if p.is_file()}
    assert files, f"the generator wrote no landing files for {hours}"
    audit = read_table("duckdb", duckdb_path=str(ui.workdir / "var" / "warehouse.duckdb"),
                       schema=get_settings().warehouse.schema_name, table="ingest_audit",
                       columns=["export_hour", "source_file"])
    keys = audit["export_hour"].dt.strftime(ui_instance.PARTITION_FORMAT)
    assert set(audit.loc[keys.isin(hours), "source_file"]) == files


def test_check_results_and_report_markdown(ui: DagsterUI) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    page = ui.page
    page.goto(f"{ui.url}/assets/spans", wait_until="domcontentloaded")
    page.get_by_role("tab", name="Checks").click()
    page.get_by_text("spans_valid", exact=True).first.click()
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"All \d+ expectations passed on \d+ rows"))).to_be_visible()
    ui.screenshot("06-check-spans-valid")
    page.get_by_text("[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("table")).to_be_visible()
    expect(dialog.get_by_text("column exists").first).to_be_visible()
    ui.screenshot("07-check-report")
    dialog.get_by_role("button", name="Close").click()

    reports = sorted((ui.workdir / "var" / "reports" / "monthly").glob("*.md"))
    assert len(reports) == 1, f"expected the demo's one monthly report, found {reports}"
    headings = [line.lstrip("#").strip() for line in reports[0].read_text().splitlines() if line.startswith("#")]
    assert len(headings) >= 3, f"{reports[0]} has too few headings: {headings}"
    page.goto(f"{ui.url}/assets/monthly_report", wait_until="domcontentloaded")
    row = page.get_by_role("row").filter(has=page.get_by_text("report", exact=True))
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    for heading in headings:
        expect(dialog.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    ui.screenshot("08-report-markdown")
    dialog.get_by_role("button", name="Close").click()
