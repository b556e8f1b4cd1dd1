"""One job per cadence. Assets join a job by their `aiobs/cadence` tag, so a domain adds assets to the
hourly, daily or monthly run without this file knowing them; downstream assets of a cadence run in the
same run as their inputs, in dependency order."""

from dagster import AssetSelection, define_asset_job

from aiobs_pipeline.defs.partitions import daily_partitions, hourly_partitions

CADENCE = "aiobs/cadence"
HOURLY = {CADENCE: "hourly"}
DAILY = {CADENCE: "daily"}
MONTHLY = {CADENCE: "monthly"}

hourly_job = define_asset_job(
    "hourly_job", selection=AssetSelection.tag(CADENCE, "hourly"), partitions_def=hourly_partitions,
    description="Everything computed per export hour: ingest, pricing, hourly aggregates and detectors.",
)
daily_job = define_asset_job(
    "daily_job", selection=AssetSelection.tag(CADENCE, "daily"), partitions_def=daily_partitions,
    description="Daily roll-ups and summaries, after the day's 24 hourly partitions.",
)
