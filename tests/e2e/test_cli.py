"""The `harvester` command as a user runs it: subprocesses, exit statuses, output."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from simkit import cli_env

ROOT = Path(__file__).parents[2]
HARVESTER = [sys.executable, "-m", "harvester"]


def run(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 60
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        HARVESTER + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
        check=False,
    )  # fmt: skip


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [*HARVESTER, "simulate", "--port", "0", "--seed", "3", "--workspaces", "2",
         "--gateways-per-workspace", "2", "--sessions-per-gateway", "150", "--speed", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, line
    yield match.group(1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    process.stdout.close()


@pytest.fixture
def env(tmp_path: Path, simulator: str) -> dict[str, str]:
    return cli_env(
        HARVESTER_API__ENDPOINT=simulator,
        HARVESTER_SERVER__LISTEN="",  # no fixed port: tests run side by side
    )


def test_migrate_then_sync_into_the_default_sqlite(tmp_path: Path, env: dict[str, str]) -> None:
    migrated = run(["migrate"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "revision" in migrated.stdout
    synced = run(["sync"], env, tmp_path)
    assert synced.returncode == 0, synced.stderr
    lines = synced.stdout.strip().splitlines()
    assert len(lines) == 5  # parseable: one logfmt line per gateway when not on a terminal
    assert all(re.match(r"target=\S+ status=succeeded mode=full pages=\d+", x) for x in lines)
    with sqlite3.connect(tmp_path / "harvester.db") as db:
        assert db.execute("select count(*) from livy_sessions").fetchone() == (600,)
    db.close()
    again = run(["sync", "--target", lines[0].split()[0].removeprefix("target=")], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.strip().splitlines()) == 1
    # Incremental: the first page already holds stored sessions, so nothing lies beyond.
    assert " mode=incremental pages=1 requests=1 new=0 updated=0 unchanged=100 " in again.stdout


def test_sync_before_migrate_says_what_to_do(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(["sync"], env, tmp_path)
    assert result.returncode == 2
    assert "harvester migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[api]\npage_size = 500\n")
    result = run(["sync", "--config", str(config)], env, tmp_path)
    assert result.returncode == 2
    assert f"{config}: api.page_size" in result.stderr
    assert "Traceback" not in result.stderr
    result = run(["migrate"], {**env, "HARVESTER_API__PAGE_SIZE": "x"}, tmp_path)
    assert result.returncode == 2
    assert "HARVESTER_API__PAGE_SIZE" in result.stderr
    result = run(["sync", "--config", str(tmp_path / "missing.toml")], env, tmp_path)
    assert result.returncode == 2
    assert "not found" in result.stderr


def test_wrong_secret_exits_1_and_never_prints_it(tmp_path: Path, env: dict[str, str]) -> None:
    secret = "Sup3r-Secret-Value-That-Must-Not-Leak"
    env = {**env, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret}
    assert run(["migrate"], env, tmp_path).returncode == 0
    result = run(["sync", "--log-level", "DEBUG"], env, tmp_path)
    assert result.returncode == 1
    assert "signature" in result.stderr
    assert secret not in result.stdout + result.stderr
    db = sqlite3.connect(tmp_path / "harvester.db")
    errors = " ".join(e or "" for (e,) in db.execute("select error from harvest_runs"))
    db.close()
    assert secret not in errors


def test_unknown_target_and_missing_credentials(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(["migrate"], env, tmp_path).returncode == 0
    result = run(["sync", "--target", "lc-nope"], env, tmp_path)
    assert result.returncode == 2
    assert "unknown target lc-nope" in result.stderr
    no_keys = {k: v for k, v in env.items() if not k.startswith("ALIBABA_CLOUD_ACCESS")}
    no_keys["HOME"] = str(tmp_path)  # no profile files either
    result = run(["sync"], no_keys, tmp_path)
    assert result.returncode == 2
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.stderr


def test_postgres_database_unreachable_exits_1_with_masked_url(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "HARVESTER_DATABASE_URL": "postgresql://u:pw-hidden-42@127.0.0.1:1/db"}
    result = run(["sync"], env, tmp_path)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "pw-hidden-42" not in result.stderr
    assert "***" in result.stderr


def test_help_lists_the_commands(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(["--help"], env, tmp_path)
    assert result.returncode == 0
    for command in ("migrate", "sync", "simulate"):
        assert command in result.stdout


def test_docker_compose_is_valid() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "migrate", "harvester"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert "harvester migrate" in " ".join(services["migrate"]["command"])
    assert "harvester run" in " ".join(services["harvester"]["command"])
    assert services["harvester"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "healthcheck" in services["postgres"]
    harvester = services["harvester"]
    assert harvester["command"][-1].endswith("harvester run")
    assert harvester["environment"]["HARVESTER_SERVER__LISTEN"] == "0.0.0.0:9464"
    assert harvester["environment"]["HARVESTER_DATABASE_URL"].startswith("postgresql")
    assert harvester["stop_grace_period"] == "20s"
    check = harvester["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:9464/healthz" in check[3]
    compile(check[3], "healthcheck", "exec")  # valid Python, no curl needed
    assert "HARVESTER_SERVER__LISTEN" not in services["migrate"]["environment"]


def test_daemon_harvests_on_schedule_and_stops_on_sigterm(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "HARVESTER_SCHEDULE__INTERVAL": "1s", "HARVESTER_SCHEDULE__JITTER": "0"}
    assert run(["migrate"], env, tmp_path).returncode == 0
    daemon = subprocess.Popen(
        [*HARVESTER, "run", "--log-format", "json"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        runs = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with sqlite3.connect(tmp_path / "harvester.db") as db:
                runs = db.execute(
                    "select count(*) from harvest_runs where status = 'succeeded'"
                ).fetchone()[0]
            db.close()
            if runs >= 10:  # every gateway harvested at least twice
                break
        assert runs >= 10
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, stderr
    assert all(line.startswith("{") for line in stderr.strip().splitlines())
    with sqlite3.connect(tmp_path / "harvester.db") as db:
        assert db.execute("select count(*) from livy_sessions").fetchone() == (600,)
        assert db.execute(
            "select count(*) from harvest_runs where status = 'running'"
        ).fetchone() == (0,)
    db.close()
