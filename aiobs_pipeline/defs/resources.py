"""Resources shared by every domain's assets: the settings object, handed to Dagster as a resource."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from aiobs_pipeline.settings import Settings, load_settings


class AiobsSettings(ConfigurableResource):
    """Loads the aiobs settings (aiobs.toml + environment); non-empty fields here override the file."""

    config_file: str = ""
    landing_root: str = ""
    feedback_root: str = ""
    reports_dir: str = ""

    def get(self) -> Settings:
        """Return the settings with this resource's overrides applied."""
        settings = load_settings(self.config_file or None)
        # Roots go through validation (a URL with credentials is refused); Settings resolves them on use.
        roots = {k: v for k, v in (("landing_root", self.landing_root), ("feedback_root", self.feedback_root)) if v}
        paths = type(settings.paths).model_validate({**settings.paths.model_dump(), **roots})
        if self.reports_dir:
            paths = paths.model_copy(update={"reports_dir": settings.resolve(Path(self.reports_dir))})
        return settings.model_copy(update={"paths": paths})
