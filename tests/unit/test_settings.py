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


def test_roots_take_object_store_urls_and_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIOBS_PATHS__LANDING_ROOT", "s3://exports/aiobs/")
    monkeypatch.setenv("AIOBS_PATHS__FEEDBACK_ROOT", f"file://{tmp_path}/fb")
    monkeypatch.setenv("AIOBS_INGEST__LANDING_LAYOUT", "langfuse")
    settings = load_settings()
    assert settings.landing_root == "s3://exports/aiobs/"
    assert settings.feedback_root == tmp_path / "fb"
    assert settings.ingest.landing_layout == "langfuse"
    assert settings.ingest.feedback_layout_or_default == "langfuse-scores"
    monkeypatch.setenv("AIOBS_INGEST__FEEDBACK_LAYOUT", "%Y/%m/%d/%H")
    assert load_settings().ingest.feedback_layout_or_default == "%Y/%m/%d/%H"
    # Paths given in code still work.
    assert load_settings(paths={"landing_root": tmp_path / "x"}).landing_root == tmp_path / "x"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("AIOBS_PATHS__LANDING_ROOT", "s3://AKIAIOSFODNN7EXAMPLE:hunter2@bucket/x", "embeds credentials"),
    ("AIOBS_PATHS__FEEDBACK_ROOT", "az://c/p?sv=1&sig=hunter2", "carries credentials"),
    ("AIOBS_PATHS__LANDING_ROOT", "ftp://host/x", "unsupported URL scheme"),
    ("AIOBS_INGEST__LANDING_LAYOUT", "%Y/%m/%H", "missing day"),
])
def test_bad_roots_and_layouts_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str,
                                                value: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert message in text
    assert variable.removeprefix("AIOBS_").lower().replace("__", ".") in text
    assert "hunter2" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
