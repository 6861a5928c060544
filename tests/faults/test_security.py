"""Security: secrets never printed or stored, masked database URLs, TLS verification
always on (a CA bundle is the only knob), loopback by default, parameterised SQL only."""

from __future__ import annotations

import ast
import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faultkit import make_service, postgres_dsn
from simkit import REGION, cli_env
from sqlalchemy.engine import make_url

from harvester.api.client import ApiClient
from harvester.api.credentials import StaticCredentials
from harvester.api.signing import Credentials
from harvester.errors import ApiUnavailable, ConfigError
from harvester.settings import ApiSettings, DatabaseSettings, load_settings, mask_database_url
from harvester.simulator import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, build_app, serve
from harvester.simulator.cli import simulate

ROOT = Path(__file__).parents[2]
AK_ID = "STS.harvester-test"
AK_SECRET = "ak-secret-7f3a9c1e5b2d4f60"
STS_TOKEN = "sts-token-CAIS9wJ1q6Ft5B2yfSjIr5bN"
DB_PASSWORD = "db-pw-4c1d8e2f0a9b"
SECRETS = (AK_SECRET, STS_TOKEN, DB_PASSWORD)


async def harvester(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI (without blocking the in-process simulator); (status, stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harvester", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(errors="replace") + stderr.decode(errors="replace")


def assert_secret_free(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} leaks a secret"
        assert secret[4:-4] not in text, f"{where} leaks part of a secret"


async def test_secrets_never_appear_in_output_help_or_the_database(postgres_url: str) -> None:
    service = make_service(seed=41, sessions_per_gateway=30)
    database_url = make_url(postgres_url).set(password=DB_PASSWORD)  # trust auth: accepted
    database = database_url.render_as_string(hide_password=False)
    outputs: dict[str, str] = {}
    async with serve(
        service, access_keys={AK_ID: AK_SECRET}, security_tokens={AK_ID: STS_TOKEN}
    ) as endpoint:
        env = cli_env(
            ALIBABA_CLOUD_ACCESS_KEY_ID=AK_ID,
            ALIBABA_CLOUD_ACCESS_KEY_SECRET=AK_SECRET,
            ALIBABA_CLOUD_SECURITY_TOKEN=STS_TOKEN,
            HARVESTER_SIMULATOR_ACCESS_KEY_SECRET=AK_SECRET,
            HARVESTER_SIMULATOR_SECURITY_TOKEN=STS_TOKEN,
            HARVESTER_API__ENDPOINT=endpoint,
            HARVESTER_API__READ_TIMEOUT="0.5",
            HARVESTER_API__MAX_ATTEMPTS="3",
            HARVESTER_API__RETRY_BUDGET="5",
            HARVESTER_DATABASE_URL=database,
        )
        status, outputs["migrate"] = await harvester("migrate", "--log-level", "DEBUG", env=env)
        assert status == 0, outputs["migrate"]
        status, outputs["sync json debug"] = await harvester(
            "sync", "--log-format", "json", "--log-level", "DEBUG", env=env
        )
        assert status == 0, outputs["sync json debug"]

        # Failing harvests: retries and errors logged, a gateway that does not exist.
        workspace_id = service.workspace_ids(REGION)[0]
        failing = {
            **env,
            "HARVESTER_TARGETS": json.dumps([
                {"region_id": REGION},
                {"region_id": REGION, "workspace_id": workspace_id, "livy_compute_id": "lc-gone"},
            ]),
        }  # fmt: skip
        for kind in ("http_500", "throttle_400", "slow", "malformed_json", "disconnect"):
            service.faults.force(kind)  # type: ignore[arg-type]
        status, outputs["sync failing text debug"] = await harvester(
            "sync", "--log-level", "DEBUG", env=failing
        )
        assert status == 1, outputs["sync failing text debug"]
        status, outputs["sync failing json"] = await harvester(
            "sync", "--log-format", "json", "--log-level", "DEBUG", env=failing
        )
        assert status == 1
        # Rejected credentials: the token and the secret are sent, never echoed.
        wrong_token = {**env, "ALIBABA_CLOUD_SECURITY_TOKEN": STS_TOKEN + "x"}
        status, outputs["sync rejected"] = await harvester("sync", "--log-level", "DEBUG",
                                                           env=wrong_token)  # fmt: skip
        assert status == 1
        assert "InvalidSecurityToken" in outputs["sync rejected"]
        # The database unreachable, with the password in its URL.
        unreachable = {
            **env,
            "HARVESTER_DATABASE_URL": database_url.set(port=9).render_as_string(False),
        }
        status, outputs["sync no database"] = await harvester("sync", env=unreachable)
        assert status == 1
        assert "***" in outputs["sync no database"]
    for command in ([], ["migrate"], ["sync"], ["run"], ["simulate"]):
        status, outputs[f"{command} --help"] = await harvester(*command, "--help", env=env)
        assert status == 0

    for where, text in outputs.items():
        assert_secret_free(text, where)
    conn = await asyncpg.connect(postgres_dsn(postgres_url), timeout=5)
    try:
        errors = [row[0] for row in await conn.fetch("SELECT error FROM harvest_runs")]
        stored = await conn.fetch(
            "SELECT raw::text FROM livy_sessions UNION ALL SELECT checkpoint::text FROM "
            "harvest_targets"
        )
    finally:
        await conn.close()
    assert any(errors), "the failing runs recorded their errors"
    assert_secret_free(" ".join(e or "" for e in errors), "harvest_runs.error")
    assert_secret_free(" ".join(str(tuple(r)) for r in stored), "stored rows")


def test_database_urls_are_shown_masked() -> None:
    url = f"postgresql+asyncpg://harvester:{DB_PASSWORD}@db.internal:5432/harvester"
    assert mask_database_url(url) == "postgresql+asyncpg://harvester:***@db.internal:5432/harvester"
    settings = DatabaseSettings(url=url)
    for shown in (repr(settings), str(settings)):
        assert DB_PASSWORD not in shown
        assert "***" in shown
    loaded = load_settings(None, {"HARVESTER_DATABASE_URL": url})
    assert DB_PASSWORD not in repr(loaded)
    assert mask_database_url("::not a url::") == "<unparseable database URL>"


# -- TLS ------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harvester-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_is_verified_and_a_ca_bundle_is_the_only_way_to_trust_a_server(
    tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    runner = web.AppRunner(build_app(make_service(seed=42, sessions_per_gateway=1)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    port = runner.addresses[0][1]
    demo = StaticCredentials(Credentials(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET))
    endpoint = f"https://127.0.0.1:{port}"
    try:
        untrusted = ApiSettings(endpoint=endpoint, max_attempts=1)
        async with ApiClient.open(untrusted, demo) as client:
            with pytest.raises(ApiUnavailable, match="Certificate"):
                await client.list_workspaces(REGION)
        trusted = ApiSettings(endpoint=endpoint, max_attempts=1, ca_bundle=cert)
        async with ApiClient.open(trusted, demo) as client:
            assert len(await client.list_workspaces(REGION)) == 2
    finally:
        await runner.cleanup()
    # No setting can turn verification off.
    assert not {"verify", "verify_tls", "insecure", "ssl", "tls_verify"} & set(
        ApiSettings.model_fields
    )
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(None, {"HARVESTER_API__VERIFY_TLS": "false"})


# -- loopback and SQL ---------------------------------------------------------------------


async def test_the_simulator_binds_loopback_unless_told_otherwise() -> None:
    async with serve(make_service(seed=43, sessions_per_gateway=1)) as url:
        assert url.startswith("http://127.0.0.1:")
    host = next(p for p in simulate.params if p.name == "host")
    assert host.default == "127.0.0.1"


def sql_calls_with_built_text(source: str) -> list[str]:
    """Calls that send SQL made by formatting at the call site (f-string, %, + or .format)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in {"text", "execute", "exec_driver_sql", "fetch", "fetchval", "executemany"}:
            continue
        first = node.args[0]
        built = isinstance(first, ast.JoinedStr | ast.BinOp) or (
            isinstance(first, ast.Call)
            and isinstance(first.func, ast.Attribute)
            and first.func.attr == "format"
        )
        if built:
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_sql_is_parameterised_only() -> None:
    """Values reach SQL as bind parameters; statement text is never formatted with values.

    store.py assembles its page statements once, at import, from the fixed column list
    (module constants, reviewed); every value goes through `:name` parameters.
    """
    offenders = {}
    for path in sorted((ROOT / "harvester").rglob("*.py")):
        found = sql_calls_with_built_text(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}
    assert sql_calls_with_built_text('conn.execute(text(f"SELECT {x}"))')  # the check works
