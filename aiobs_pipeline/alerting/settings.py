"""Alert settings: the rules' thresholds and minimum counts, the state store, the sinks and their routing.

A plain pydantic model; the project's settings object composes `AlertSettings` under `alerts`, so every value
can come from `[alerts]` (and `[alerts.error_rate]`, `[alerts.slack]`, ...) in aiobs.toml, or from
`AIOBS_ALERTS__...` environment variables. Defaults follow the product brief (error rate 5%, cost spike 3x,
quality drop 10%/20%, p95 latency 5 s, satisfaction 70%, one notification per alert per hour).

Secrets never live here: the Slack webhook URLs, the PagerDuty routing key, the generic webhook's URL and
signing secret are read from the environment variables these settings *name*, at delivery time only. The
state URL may hold a password, so it is a `SecretStr` (set it with `AIOBS_ALERTS__STATE_URL`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Severity = Literal["critical", "warning", "info"]
SinkName = Literal["pagerduty", "slack", "webhook"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")  # in increasing order


class _Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo in aiobs.toml is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


class RuleSettings(_Section):
    """What every rule has: an on/off switch."""

    enabled: bool = True


class NoDataRule(RuleSettings):
    """Silent export failure: a due landing hour with no files or far fewer spans than usual (ingest_audit)."""

    min_ratio: float = Field(default=0.2, gt=0, lt=1, description="Fire when spans written < this x baseline.")
    baseline_days: int = Field(default=7, ge=1, le=60, description="Baseline: same hour of this many days.")
    min_baseline_points: int = Field(
        default=3, ge=1, description="Baseline days with files an hour needs before it is judged.")
    min_expected_spans: int = Field(
        default=20, ge=1, description="Hours whose baseline median is below this are never judged (quiet).")
    grace_minutes: int = Field(
        default=30, ge=0, le=24 * 60, description="An hour is judged this long after it closes (late files).")
    lookback_hours: int = Field(
        default=6, ge=1, le=7 * 24, description="Due hours re-checked on each new clock hour.")
    no_files_severity: Severity = "critical"
    low_volume_severity: Severity = "warning"


class ErrorRateRule(RuleSettings):
    """Error LLM spans / LLM spans per export hour (spans)."""

    threshold: float = Field(default=0.05, ge=0, lt=1, description="Fire when the error rate is above this.")
    min_spans: int = Field(default=20, ge=1, description="LLM spans a subject needs in the hour to be judged.")
    # At a 1% base rate, 2 errors in 30 calls is 6.7% by chance alone: fire only when the rate is above the
    # threshold with this confidence (lower bound of the Wilson interval); 0 compares the raw rate.
    confidence: float = Field(default=0.9, ge=0, lt=1,
                              description="Confidence that the error rate exceeds the threshold (0 = raw rate).")
    scopes: list[Literal["total", "feature", "model", "endpoint"]] = Field(
        default_factory=lambda: ["total", "feature"], description="Subjects judged: all spans, per feature, ...")
    severity: Severity = "critical"


class LatencyRule(RuleSettings):
    """p95 latency of LLM spans per export hour (spans)."""

    threshold_ms: float = Field(default=5000.0, gt=0, description="Fire when p95 latency is above this.")
    min_spans: int = Field(default=20, ge=1, description="LLM spans with a latency a subject needs.")
    scopes: list[Literal["total", "feature", "model", "endpoint"]] = Field(
        default_factory=lambda: ["total", "model"])
    severity: Severity = "warning"


class CostSpikeRule(RuleSettings):
    """Cost spikes as judged by the cost_anomalies asset (its thresholds live in [costs])."""

    critical_statuses: list[str] = Field(default_factory=lambda: ["critical"])
    warning_statuses: list[str] = Field(default_factory=lambda: ["warning"])
    # A subject spending below the minimum, or without spend, has no spike going on.
    ok_statuses: list[str] = Field(default_factory=lambda: ["ok", "below_min_spend"])


class BudgetRule(RuleSettings):
    """Budget breaches as written by the budget_breaches asset."""

    user_severity: Severity = "warning"
    total_severity: Severity = "critical"


class QualityDropRule(RuleSettings):
    """(baseline - current) / baseline of the mean trust score; baseline = the previous 7 days."""

    warning_drop: float = Field(default=0.10, gt=0, lt=1)
    critical_drop: float = Field(default=0.20, gt=0, lt=1)
    baseline_days: int = Field(default=7, ge=1, le=60)
    min_responses: int = Field(default=20, ge=1, description="Scored responses the hour needs.")
    min_baseline_responses: int = Field(default=100, ge=1, description="Scored responses the baseline needs.")

    @model_validator(mode="after")
    def _ordered(self) -> QualityDropRule:
        if self.warning_drop >= self.critical_drop:
            raise ValueError(f"alerts.quality_drop.warning_drop ({self.warning_drop}) must be below "
                             f"critical_drop ({self.critical_drop})")
        return self


class SatisfactionRule(RuleSettings):
    """Mean satisfaction of responses with feedback over a trailing window."""

    target: float = Field(default=0.70, gt=0, le=1, description="Fire when mean satisfaction is below this.")
    window_hours: int = Field(default=24, ge=1, le=24 * 14, description="Trailing window ending at the hour.")
    min_responses: int = Field(default=20, ge=1, description="Responses with feedback the window needs.")
    severity: Severity = "warning"


class WeekOverWeekRule(RuleSettings):
    """A metric's mean over the last 7 days against the 7 days before."""

    max_drop: float = Field(default=0.10, gt=0, lt=1, description="Fire when the metric fell by more.")
    metrics: list[Literal["quality_score", "satisfaction"]] = Field(
        default_factory=lambda: ["quality_score", "satisfaction"])
    min_count: int = Field(default=50, ge=1, description="Responses each week needs.")
    severity: Severity = "warning"


class CacheHitRule(RuleSettings):
    """Share of input tokens read from the prompt cache against the same hour of previous days."""

    min_change: float = Field(default=0.15, gt=0, lt=1, description="Absolute change (0.15 = 15 points).")
    baseline_days: int = Field(default=7, ge=1, le=60)
    min_baseline_points: int = Field(default=3, ge=1)
    # Below ~100k input tokens an hour, a handful of long cached prompts swings the share by 15 points.
    min_input_tokens: int = Field(default=100_000, ge=1, description="Input tokens the hour and baseline need.")
    severity: Severity = "info"


class DistributionShiftRule(RuleSettings):
    """Share of billable calls per feature (or model) against the same hour of previous days."""

    min_distance: float = Field(
        default=0.25, gt=0, le=1, description="Total variation distance of the shares (0-1) that fires.")
    baseline_days: int = Field(default=7, ge=1, le=60)
    min_baseline_points: int = Field(default=3, ge=1)
    # With fewer calls, an ordinary quiet hour's mix alone moves the distance past 0.25.
    min_calls: int = Field(default=200, ge=1, description="Billable calls the hour (and baseline) need.")
    severity: Severity = "info"


class RunFailureRule(RuleSettings):
    """A run of the pipeline failed (run-failure sensor); resolved by the job's next successful run."""

    severity: Severity = "warning"


class QualityTable(_Section):
    """Where quality scores are read from (the hallucination_scores asset)."""

    table: str = "hallucination_scores"
    hour_column: str = "export_hour"
    score_column: str = Field(default="trust_score", description="0-1, higher = safer.")


class SatisfactionTable(_Section):
    """Where per-response satisfaction is read from (the satisfaction_scores asset)."""

    table: str = "satisfaction_scores"
    hour_column: str = "response_hour"
    score_column: str = Field(default="satisfaction", description="0-1 per response with feedback.")


class DeliverySettings(_Section):
    """Bounded HTTP delivery: timeouts, retries with backoff and jitter, and a deadline for the whole run."""

    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    read_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_attempts: int = Field(default=4, ge=1, le=10, description="Attempts per request, the first included.")
    backoff_initial_seconds: float = Field(default=0.5, ge=0, le=60)
    backoff_max_seconds: float = Field(default=8.0, ge=0, le=300)
    retry_after_max_seconds: float = Field(default=30.0, ge=0, le=600, description="Cap on a 429 Retry-After.")
    deadline_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="No retry starts after this long into a delivery run.")
    max_items_per_message: int = Field(default=10, ge=1, le=100, description="Alerts listed per Slack message.")


class SlackSettings(_Section):
    """Slack incoming webhooks: one per channel. The URLs are secrets, read from the named variables."""

    enabled: bool = True
    webhook_url_env: str = Field(default="SLACK_WEBHOOK_URL", description="Default webhook for every severity.")
    severity_webhook_url_envs: dict[Severity, str] = Field(
        default_factory=lambda: {"critical": "SLACK_WEBHOOK_URL_INCIDENTS",
                                 "warning": "SLACK_WEBHOOK_URL_AI_MONITORING"},
        description="Per-severity webhooks (their channel), falling back to webhook_url_env when unset.")
    channels: dict[Severity, str] = Field(
        default_factory=lambda: {"critical": "#incidents", "warning": "#ai-monitoring", "info": "#ai-monitoring"},
        description="Channel names shown in messages and logs (a webhook posts to its own channel).")
    base_url: str | None = Field(
        default=None, description="Replaces scheme, host and port of the webhook URL (proxy, test receiver); "
                                  "the secret path is kept.")


class PagerDutySettings(_Section):
    """PagerDuty Events API v2."""

    enabled: bool = True
    base_url: str = "https://events.pagerduty.com"
    path: str = "/v2/enqueue"
    routing_key_env: str = "PAGERDUTY_ROUTING_KEY"


class WebhookSettings(_Section):
    """A generic JSON webhook signed with HMAC-SHA256 over the timestamp and the raw body."""

    enabled: bool = True
    url_env: str = "AIOBS_WEBHOOK_URL"
    secret_env: str = "AIOBS_WEBHOOK_SECRET"
    base_url: str | None = Field(default=None, description="Replaces scheme, host and port of the URL.")
    signature_header: str = "X-Aiobs-Signature"
    timestamp_header: str = "X-Aiobs-Timestamp"


class AlertSettings(BaseModel):
    """Everything alerting needs; each rule's section is named by its rule id."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # --- state
    state_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL of the alert state store (PostgreSQL in production: "
                                  "AIOBS_ALERTS__STATE_URL); unset = the SQLite file state_path.")
    state_path: Path = Field(default=Path("var/alerts.sqlite"), description="Relative to the settings' base_dir.")
    state_schema: str | None = Field(default=None, description="Database schema of the state tables.")
    # --- fatigue control
    dedupe_window_minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="At most one notification per alert key per window.")
    max_alert_age_hours: int = Field(
        default=48, ge=1, le=24 * 90, description="Evidence about hours older than this never notifies "
                                                  "(backfills of old partitions stay quiet).")
    expire_after_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="An open alert without a verdict for this long is resolved "
                                                  "as expired (its subject went quiet).")
    # --- links
    source: str = Field(default="aiobs", description="PagerDuty payload source / the name in messages.")
    dagster_ui_url: str | None = Field(default=None, description="e.g. http://localhost:3000: partition and run "
                                                                 "links point at the Dagster UI.")
    runbook_base_url: str | None = Field(
        default=None, description="e.g. https://github.com/org/aiobs/blob/main/docs/runbooks; unset = repo path.")
    trace_url_template: str | None = Field(default=None, description="e.g. https://langfuse.example/trace/{trace_id}")
    user_url_template: str | None = Field(default=None, description="e.g. https://admin.example/users/{user_id}")
    # --- sensors
    sensor_interval_seconds: int = Field(default=60, ge=10, le=3600)
    max_records_per_tick: int = Field(default=500, ge=10, le=10_000,
                                      description="Materialisation records read per asset and tick.")
    max_observations_per_run: int = Field(default=200, ge=1, le=2000)
    # --- routing and sinks
    routes: dict[Severity, list[SinkName]] = Field(
        default_factory=lambda: {"critical": ["pagerduty", "slack", "webhook"], "warning": ["slack", "webhook"],
                                 "info": []},
        description="Sinks per severity; the log (Dagster log + alert_events) always receives every alert.")
    delivery: DeliverySettings = DeliverySettings()
    slack: SlackSettings = SlackSettings()
    pagerduty: PagerDutySettings = PagerDutySettings()
    webhook: WebhookSettings = WebhookSettings()
    # --- rules (section name = rule id)
    no_data: NoDataRule = NoDataRule()
    error_rate: ErrorRateRule = ErrorRateRule()
    latency_p95: LatencyRule = LatencyRule()
    cost_spike: CostSpikeRule = CostSpikeRule()
    budget_breach: BudgetRule = BudgetRule()
    quality_drop: QualityDropRule = QualityDropRule()
    satisfaction_low: SatisfactionRule = SatisfactionRule()
    week_over_week: WeekOverWeekRule = WeekOverWeekRule()
    cache_hit_rate: CacheHitRule = CacheHitRule()
    feature_usage_shift: DistributionShiftRule = DistributionShiftRule()
    model_distribution_shift: DistributionShiftRule = DistributionShiftRule()
    pipeline_run_failure: RunFailureRule = RunFailureRule()
    # --- where the quality tables are (they are written by other assets)
    quality_scores: QualityTable = QualityTable()
    satisfaction_scores: SatisfactionTable = SatisfactionTable()

    @field_validator("dagster_ui_url", "runbook_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value

    def rule(self, rule_id: str) -> RuleSettings:
        """The settings section of one rule."""
        section = getattr(self, rule_id, None)
        if not isinstance(section, RuleSettings):
            raise KeyError(f"no alert rule {rule_id!r}")
        return section


def alert_settings_of(settings: object) -> AlertSettings:
    """The `alerts` section of the project settings (defaults while the project settings lack it)."""
    section = getattr(settings, "alerts", None)
    return section if isinstance(section, AlertSettings) else AlertSettings()


def state_url_of(settings: object) -> str:
    """The alert state store URL: `alerts.state_url`, else a SQLite file under the settings' base_dir."""
    alerts = alert_settings_of(settings)
    if alerts.state_url is not None:
        return alerts.state_url.get_secret_value()
    resolve = getattr(settings, "resolve", None)
    path = resolve(alerts.state_path) if callable(resolve) else alerts.state_path.resolve()
    return f"sqlite:///{Path(path)}"
