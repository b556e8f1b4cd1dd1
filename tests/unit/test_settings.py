"""Settings: defaults from the brief, TOML file, environment precedence, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiobs_pipeline.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.warehouse.kind == "duckdb"
    assert settings.warehouse.postgres_url is None
    assert settings.landing_root == (tmp_path / "var/landing").resolve()
    assert settings.duckdb_path.name == "warehouse.duckdb"


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "aiobs.toml"
    config.parent.mkdir()
    config.write_text('[paths]\nlanding_root = "exports"\n[ingest]\nsensor_lookback_hours = 5\n')
    monkeypatch.setenv("AIOBS_WAREHOUSE__KIND", "postgres")
    monkeypatch.setenv("AIOBS_WAREHOUSE__POSTGRES_URL", "postgresql://u:hunter2@db/x")
    settings = load_settings(config)
    assert settings.landing_root == (config.parent / "exports").resolve()
    assert settings.ingest.sensor_lookback_hours == 5
    assert settings.warehouse.kind == "postgres"
    assert "hunter2" not in repr(settings)
    assert settings.warehouse.postgres_url.get_secret_value().endswith("@db/x")


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "aiobs.toml"
    config.write_text('[warehouse]\nkind = "oracle"\n')
    with pytest.raises(SettingsError, match="warehouse.kind"):
        load_settings(config)


def test_unknown_setting_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "aiobs.toml"
    config.write_text('[ingest]\nfast_pth = true\n')
    with pytest.raises(SettingsError, match="ingest.fast_pth"):
        load_settings(config)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="nope.toml"):
        load_settings(tmp_path / "nope.toml")
