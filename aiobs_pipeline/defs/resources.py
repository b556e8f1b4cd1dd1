"""Resources shared by every domain's assets: the settings object, handed to Dagster as a resource."""

from __future__ import annotations

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
        paths = settings.paths.model_copy(update={
            key: settings.resolve(type(settings.paths.landing_root)(value))
            for key, value in (
                ("landing_root", self.landing_root),
                ("feedback_root", self.feedback_root),
                ("reports_dir", self.reports_dir),
            )
            if value
        })
        return settings.model_copy(update={"paths": paths})
