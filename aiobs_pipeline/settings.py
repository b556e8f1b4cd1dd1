"""The one typed settings object: every path, threshold, budget and sink, from `aiobs.toml` and environment.

Precedence (highest first): values passed in code, environment variables (`AIOBS_` prefix, `__` between
nested names, e.g. `AIOBS_WAREHOUSE__KIND=postgres`), the TOML file, then the defaults below (which follow
the product brief). The TOML file is `$AIOBS_CONFIG` if set, else `aiobs.toml` in the working directory.
Relative paths are resolved against the folder holding the TOML file (or the working directory).
Secrets (database passwords, API keys, webhook URLs) come only from the environment and are `SecretStr`,
so they never appear in logs or reprs.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aiobs_pipeline.alerting.settings import AlertSettings
from aiobs_pipeline.costs.settings import CostSettings
from aiobs_pipeline.evals.settings import EvalSettings
from aiobs_pipeline.execution import ExecutionSettings
from aiobs_pipeline.feedback.settings import FeedbackSettings
from aiobs_pipeline.governance.settings import GovernanceSettings
from aiobs_pipeline.hallucination.settings import HallucinationSettings
from aiobs_pipeline.llm import LLMSettings
from aiobs_pipeline.reporting.settings import ReportingSettings

CONFIG_ENV = "AIOBS_CONFIG"
DEFAULT_CONFIG_NAME = "aiobs.toml"


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo in aiobs.toml is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


class PathSettings(Section):
    """Where landing files are read from and where files for people are written."""

    # A local folder, or an object store URL (s3://, gs://, az://, abfs://, file://): ingest/storage.py.
    landing_root: str = "var/landing"
    feedback_root: str = "var/feedback"
    reports_dir: Path = Path("var/reports")
    datasets_dir: Path = Path("var/datasets")

    @field_validator("landing_root", "feedback_root", mode="before")
    @classmethod
    def _root(cls, value: Any, info: Any) -> Any:
        """Accept paths and URLs; refuse URLs that embed credentials (they belong in the provider's chain)."""
        from aiobs_pipeline.ingest.storage import check_root_url  # noqa: PLC0415 - keeps startup light

        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, str):
            try:
                return check_root_url(value)
            except ValueError as exc:
                raise ValueError(f"paths.{info.field_name}: {exc}") from None
        return value


class WarehouseSettings(Section):
    """Which warehouse asset tables live in: a DuckDB file (default) or PostgreSQL."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    duckdb_path: Path = Path("var/warehouse.duckdb")
    # Named differently from the DuckDB file on purpose: same names give "ambiguous reference" errors.
    schema_name: str = "aiobs"
    postgres_url: SecretStr | None = Field(
        default=None, description="postgresql://user:password@host:port/db; set AIOBS_WAREHOUSE__POSTGRES_URL"
    )


class IngestSettings(Section):
    """Partitioning, the landing sensor, and optional PII masking before anything is stored."""

    partitions_start: date = date(2025, 1, 1)
    fast_path: bool = True
    # The landing sensor only looks at this many recent hours, so each tick stays short.
    sensor_lookback_hours: int = Field(default=72, ge=1, le=24 * 90)
    sensor_interval_seconds: int = Field(default=60, ge=10)
    # Which objects under the roots belong to which export hour (ingest/layout.py): a preset (aiobs,
    # collector, collector-hourly, langfuse, langfuse-scores, langsmith-bulk) or a strftime pattern.
    landing_layout: str = "%Y/%m/%d/%H"
    # The feedback root's layout; empty: the landing layout (langfuse-scores when that is langfuse).
    feedback_layout: str = ""
    # PII masking at ingest (aiobs_pipeline/ingest/masking.py); off by default, then it costs nothing.
    mask_pii: bool = False
    pii_patterns: list[str] = Field(
        default=["api_key", "bearer_token", "email", "iban", "credit_card", "us_ssn", "ipv4", "ipv6", "phone"],
        description="Built-in patterns to apply (masking.BUILTIN_PATTERN_NAMES).")
    pii_custom_patterns: dict[str, str] = Field(
        default_factory=dict, description="More patterns: name -> Python regular expression (run first).")
    pii_replacement: str = Field(default="[{NAME}]", description="Marker for a masked value; {NAME}/{name} "
                                 "become the pattern's name upper-/lower-case.")
    pii_fields: list[Literal["input_messages", "output", "documents", "error_message", "metadata"]] = Field(
        default=["input_messages", "output", "documents", "error_message", "metadata"],
        description="Span fields to mask; quarantined records are always masked whole.")
    pii_phone_regions: list[str] = Field(default=["US"], description="Regions whose national phone numbers "
                                         "are recognised (international +... numbers always are).")

    @field_validator("partitions_start")
    @classmethod
    def _not_in_future(cls, value: date) -> date:
        if value > date.today():
            raise ValueError(f"ingest.partitions_start {value} is in the future")
        return value

    @field_validator("landing_layout", "feedback_layout")
    @classmethod
    def _layout(cls, value: str, info: Any) -> str:
        from aiobs_pipeline.ingest.layout import parse_layout  # noqa: PLC0415

        if value or info.field_name == "landing_layout":
            parse_layout(value)  # a LayoutError (a ValueError) names the setting and the problem
        return value

    @property
    def feedback_layout_or_default(self) -> str:
        """The feedback root's layout: feedback_layout, else the landing layout (Langfuse: its scores)."""
        if self.feedback_layout:
            return self.feedback_layout
        return "langfuse-scores" if self.landing_layout == "langfuse" else self.landing_layout

    @field_validator("pii_phone_regions")
    @classmethod
    def _masking_is_valid(cls, value: list[str], info: Any) -> list[str]:
        """Check the pii_* settings (declared above) together, so a bad one fails when settings load."""
        from aiobs_pipeline.ingest import masking  # noqa: PLC0415 - only this section needs it

        names = ("pii_patterns", "pii_custom_patterns", "pii_replacement", "pii_fields")
        if not all(name in info.data for name in names):
            return value  # one of them failed its own validation, which pydantic reports
        masking.check_masking_settings(*(info.data[name] for name in names))
        # Region codes need phonenumbers' metadata: checked (and loaded) only when masking is on.
        return masking.check_phone_regions(value) if info.data.get("mask_pii") else value


class Settings(BaseSettings):
    """All aiobs settings."""

    model_config = SettingsConfigDict(
        env_prefix="AIOBS_", env_nested_delimiter="__", extra="forbid", toml_file=DEFAULT_CONFIG_NAME
    )

    paths: PathSettings = PathSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    ingest: IngestSettings = IngestSettings()
    costs: CostSettings = CostSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    llm: LLMSettings = LLMSettings()
    hallucination: HallucinationSettings = HallucinationSettings()
    alerts: AlertSettings = AlertSettings()
    reporting: ReportingSettings = ReportingSettings()
    evals: EvalSettings = EvalSettings()
    governance: GovernanceSettings = GovernanceSettings()
    execution: ExecutionSettings = ExecutionSettings()
    base_dir: Path = Field(default=Path("."), description="Folder relative paths are resolved against.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Code, then environment, then the TOML file named by AIOBS_CONFIG (or ./aiobs.toml)."""
        toml_file = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    def resolve(self, path: Path) -> Path:
        """Resolve a configured path against base_dir (absolute paths are kept)."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def resolve_root(self, root: str) -> Path | str:
        """A landing or feedback root: an absolute local Path (also for file:// URLs), else the URL as is."""
        from aiobs_pipeline.ingest.storage import is_url  # noqa: PLC0415

        if root.lower().startswith("file://"):
            from urllib.parse import unquote, urlsplit  # noqa: PLC0415

            return self.resolve(Path(unquote(urlsplit(root).path)))
        return root if is_url(root) else self.resolve(Path(root))

    @property
    def landing_root(self) -> Path | str:
        """Absolute landing root (a Path), or its object-store URL."""
        return self.resolve_root(self.paths.landing_root)

    @property
    def feedback_root(self) -> Path | str:
        """Absolute feedback landing root (a Path), or its object-store URL."""
        return self.resolve_root(self.paths.feedback_root)

    @property
    def duckdb_path(self) -> Path:
        """Absolute DuckDB warehouse file."""
        return self.resolve(self.warehouse.duckdb_path)


class SettingsError(Exception):
    """Settings could not be loaded; the message names the file and the setting."""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from a TOML file (or the default lookup) plus environment, with keyword overrides."""
    previous = os.environ.get(CONFIG_ENV)
    try:
        if config_file:
            config_path = Path(config_file)
            if not config_path.is_file():
                raise SettingsError(f"settings file {config_path} does not exist")
            os.environ[CONFIG_ENV] = str(config_path)
        toml_path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))
        base_dir = toml_path.resolve().parent if toml_path.is_file() else Path.cwd()
        overrides.setdefault("base_dir", base_dir)
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings (file {toml_path}, environment AIOBS_*): {problems}") from exc
    finally:
        if config_file:
            if previous is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = previous


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call load_settings directly)."""
    return load_settings()
