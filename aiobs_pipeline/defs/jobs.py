"""One job per cadence. Assets join a job by their `aiobs/cadence` tag, so a domain adds assets to the
hourly, daily or monthly run without this file knowing them; downstream assets of a cadence run in the
same run as their inputs, in dependency order."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from aiobs_pipeline.defs.partitions import daily_partitions, hourly_partitions, monthly_partitions

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
monthly_job = define_asset_job(
    "monthly_job", selection=AssetSelection.tag(CADENCE, "monthly"), partitions_def=monthly_partitions,
    description="The monthly stakeholder report, after the month's daily partitions.",
)

# The daily and monthly runs start after their period closes, late enough for late feedback to land.
scheduled_jobs = [
    build_schedule_from_partitioned_job(daily_job, hour_of_day=3, minute_of_hour=30, name="daily_schedule"),
    build_schedule_from_partitioned_job(monthly_job, day_of_month=2, hour_of_day=6, name="monthly_schedule"),
]
