"""Configuration: file + env precedence, validation messages that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.errors import ConfigError
from harvester.settings import (
    load_settings,
    mask_database_url,
    parse_duration_s,
    resolve_config_path,
)

EXAMPLE = Path(__file__).parents[2] / "config" / "harvester.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harvester.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(None, {})
    assert settings.database.url == "sqlite+aiosqlite:///harvester.db"
    assert settings.api.page_size == 100
    assert settings.targets == ()


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE, {})
    assert len(settings.targets) == 2
    assert settings.targets[0].livy_compute_id == "lc-zm4dzdiubu73w2yx"
    assert settings.api.retry_budget == 120.0
    assert settings.targets[0].interval == 60.0
    assert settings.server.address == ("127.0.0.1", 9464)


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[api]\npage_size = 50\nendpoint = "http://127.0.0.1:1/"\n')
    env = {
        "HARVESTER_API__PAGE_SIZE": "20",
        "HARVESTER_DATABASE_URL": "postgres://u:pw@db/h",
        "HARVESTER_LOGGING__LEVEL": "debug",
        "HARVESTER_TARGETS": '[{"region_id": "cn-beijing", "workspace_id": "w-9"}]',
        "HARVESTER_SIMULATOR_ACCESS_KEY_ID": "ignored: not a section override",
    }
    settings = load_settings(path, env)
    assert settings.api.page_size == 20
    assert settings.api.endpoint == "http://127.0.0.1:1"
    assert settings.database.url == "postgresql+asyncpg://u:pw@db/h"
    assert settings.logging.level == "DEBUG"
    assert settings.targets[0].workspace_id == "w-9"
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "[api]\npage_size = 101\n",
            {},
            "api.page_size: Input should be less than or equal to 100",
        ),
        ("[api]\npage_size = 0\n", {}, "api.page_size"),
        ("[api]\npagesize = 10\n", {}, "api.pagesize: unknown key"),
        ("[nope]\nx = 1\n", {}, "nope: unknown key"),
        ('[api]\npage_size = "many"\n', {}, "api.page_size: Input should be a valid integer"),
        ('[api]\nendpoint = "emr.example.com"\n', {}, "api.endpoint: 'emr.example.com' is not"),
        ('[database]\nurl = "mysql://x/y"\n', {}, "database.url: unsupported database 'mysql'"),
        ('[database]\nurl = "not a url"\n', {}, "database.url: not a database URL"),
        ('[[targets]]\nworkspace_id = "w-1"\n', {}, "targets[0].region_id: Field required"),
        (
            '[[targets]]\nregion_id = "cn"\nlivy_compute_id = "lc-1"\n',
            {},
            "livy_compute_id needs workspace_id",
        ),
        ('[api]\nread_timeout = "soon"\n', {}, "api.read_timeout: 'soon' is not a duration"),
        ("", {"HARVESTER_API__PAGE_SIZE": "500"}, "HARVESTER_API__PAGE_SIZE: api.page_size"),
        ("", {"HARVESTER_BOGUS__X": "1"}, "HARVESTER_BOGUS__X: unknown section 'bogus'"),
        ("", {"HARVESTER_TARGETS": "[oops"}, "HARVESTER_TARGETS: must be a JSON list"),
    ],
)
def test_mistakes_name_the_source_and_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    message = caught.value.message
    assert expected in message
    if not any(key in expected for key in env):
        assert str(path) in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[api\n"), {})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.toml", {})


def test_password_never_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "mysql://user:hunter22@x/y"\n[api]\npage_size = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert "hunter22" not in caught.value.message
    assert mask_database_url("postgresql+asyncpg://u:hunter22@h/d") == (
        "postgresql+asyncpg://u:***@h/d"
    )


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {}) is None
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "harvester.toml").write_text("")
    assert resolve_config_path(None, {}) == Path("config/harvester.toml")
    assert resolve_config_path(None, {"HARVESTER_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert resolve_config_path(Path("a.toml"), {"HARVESTER_CONFIG": "/x.toml"}) == Path("a.toml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), (7, 7), ("1.5", 1.5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration_s(value) == seconds


@pytest.mark.parametrize("value", ["", "5x", "m5", "-1", True, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is tested through load_settings
        parse_duration_s(value)
