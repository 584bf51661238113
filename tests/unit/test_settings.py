from __future__ import annotations

from pathlib import Path

import pytest

from signer.settings import Settings, SettingsError


def test_secrets_come_from_files_and_never_show_in_repr(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("246810\n")
    (tmp_path / "key").write_text("s" * 40)
    settings = Settings.from_env({"SIGNER_HSM_PIN_FILE": str(tmp_path / "pin"),
                                  "SIGNER_SECRET_KEY_FILE": str(tmp_path / "key")})
    assert settings.require_hsm_pin() == "246810"
    assert settings.require_secret_key() == "s" * 40
    assert "246810" not in repr(settings) and "s" * 40 not in repr(settings)


def test_plain_variable_wins_over_file(tmp_path: Path) -> None:
    (tmp_path / "pin").write_text("from-file")
    settings = Settings.from_env({"SIGNER_HSM_PIN": "from-env", "SIGNER_HSM_PIN_FILE": str(tmp_path / "pin")})
    assert settings.require_hsm_pin() == "from-env"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"DATABASE_URL": "mysql://x", "REDIS_URL": "http://x",
                           "SIGNER_PASSWORD_TIME_COST": "zero"})
    message = str(err.value)
    assert "database_url" in message and "redis_url" in message and "password_time_cost" in message


def test_missing_secret_file_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.from_env({"SIGNER_HSM_PIN_FILE": "/nonexistent/pin"})


def test_web_tier_runs_without_a_pin_but_cannot_ask_for_one() -> None:
    settings = Settings.from_env({})
    with pytest.raises(SettingsError, match="SIGNER_HSM_PIN"):
        settings.require_hsm_pin()
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        settings.require_secret_key()


def test_database_defaults_to_sqlite_in_the_state_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"SIGNER_STATE_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/signer.db"
    pg = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db"})
    assert pg.effective_database_url == "postgresql+psycopg://u@h/db"
