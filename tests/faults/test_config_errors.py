"""Configuration and CLI errors as a user meets them (subprocesses): exit 2 for the
configuration, 1 for runtime failures, a message naming the cause, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from simkit import cli_env

HARVESTER = [sys.executable, "-m", "harvester"]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; an env value of "" removes that variable."""
    merged = {k: v for k, v in {**cli_env(), **env}.items() if v}
    return subprocess.run(
        HARVESTER + args, env=merged, cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


CONFIGS = {
    "invalid_toml": ("[api\npage_size = 1\n", "invalid TOML"),
    "unknown_key": ("[api]\npage_sise = 10\n", "api.page_sise: unknown key"),
    "unknown_section": ("[apis]\npage_size = 10\n", "apis: unknown key"),
    "wrong_type": ('[api]\nmax_attempts = "many"\n', "api.max_attempts"),
    "wrong_type_targets": ("targets = 5\n", "targets"),
    "bad_endpoint": ('[api]\nendpoint = "emr.example.com"\n', "api.endpoint"),
    "bad_endpoint_port": ('[api]\nendpoint = "http://127.0.0.1:99999"\n', "invalid port"),
    "bad_database_url": ('[database]\nurl = "mysql://u@h/db"\n', "unsupported database"),
    "not_a_database_url": ('[database]\nurl = "not a url"\n', "not a database URL"),
    "bad_duration": ('[api]\nread_timeout = "soon"\n', "not a duration"),
    "bad_target_id": ('[[targets]]\nregion_id = "cn hangzhou; drop"\n', "targets[0].region_id"),
}


def test_bad_config_files_exit_2_naming_the_cause(tmp_path: Path) -> None:
    def check(name: str) -> tuple[str, int, str]:
        config = tmp_path / f"{name}.toml"
        config.write_text(CONFIGS[name][0])
        result = run(["sync", "--config", str(config)], tmp_path, HARVESTER_TARGETS="")
        return name, result.returncode, result.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:  # subprocesses: mostly interpreter start
        outcomes = list(pool.map(check, sorted(CONFIGS)))
    for name, status, stderr in outcomes:
        assert status == 2, (name, stderr)
        assert CONFIGS[name][1] in stderr, (name, stderr)
        assert f"{name}.toml" in stderr, (name, stderr)
        assert "Traceback" not in stderr, (name, stderr)


def test_unreadable_config_files_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[api]\x00")
    result = run(["migrate", "--config", str(binary)], tmp_path)
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    result = run(["sync"], tmp_path, HARVESTER_CONFIG=str(folder))
    assert result.returncode == 2
    assert str(folder) in result.stderr
    for result in (run(["sync", "--config", str(tmp_path / "nope.toml")], tmp_path),):
        assert result.returncode == 2
        assert "not found" in result.stderr
        assert "Traceback" not in result.stderr


def test_bad_environment_exits_2_naming_the_variable(tmp_path: Path) -> None:
    cases = [
        ({"HARVESTER_APII__PAGE_SIZE": "5"}, "HARVESTER_APII__PAGE_SIZE: unknown section"),
        ({"HARVESTER_TARGETS": "[{region"}, "HARVESTER_TARGETS: must be a JSON list"),
        ({"HARVESTER_API__ENDPOINT": "ftp://x"}, "HARVESTER_API__ENDPOINT"),
        ({"HARVESTER_DATABASE_URL": "oracle://x/y"}, "HARVESTER_DATABASE_URL"),
        ({"HARVESTER_LOGGING__LEVEL": "LOUD"}, "HARVESTER_LOGGING__LEVEL"),
    ]
    for env, expected in cases:
        result = run(["sync"], tmp_path, **env)
        assert result.returncode == 2, (env, result.stderr)
        assert expected in result.stderr, (env, result.stderr)
        assert "Traceback" not in result.stderr


def test_unreachable_database_exits_1_for_sync_and_migrate(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://harvester:pw-never-shown@127.0.0.1:9/harvester"
    for command in ("sync", "migrate"):
        result = run([command], tmp_path, HARVESTER_DATABASE_URL=url)
        assert result.returncode == 1, (command, result.stderr)
        assert "127.0.0.1:9/harvester" in result.stderr
        assert "pw-never-shown" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    sqlite_dir = tmp_path / "no" / "such" / "dir" / "h.db"
    result = run(["migrate"], tmp_path, HARVESTER_DATABASE_URL=f"sqlite:///{sqlite_dir}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (
        ["sync", "--log-level", "LOUD"],
        ["sync", "--bogus"],
        ["nope"],
        ["simulate", "--fault-rate", "http_999=0.5"],
        ["simulate", "--fault-rate", "http_500=2"],
    ):
        result = run(args, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
