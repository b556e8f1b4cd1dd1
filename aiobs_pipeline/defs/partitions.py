"""Partition definitions shared by every domain: hourly export hours, days and months, all UTC."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition, HourlyPartitionsDefinition, MonthlyPartitionsDefinition

from aiobs_pipeline.settings import get_settings

_START = get_settings().ingest.partitions_start

hourly_partitions = HourlyPartitionsDefinition(start_date=f"{_START:%Y-%m-%d}-00:00", timezone="UTC")
daily_partitions = DailyPartitionsDefinition(start_date=f"{_START:%Y-%m-%d}", timezone="UTC")
monthly_partitions = MonthlyPartitionsDefinition(start_date=f"{_START:%Y-%m-01}", timezone="UTC")
