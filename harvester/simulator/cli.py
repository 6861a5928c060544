"""`harvester simulate`: run the API simulator in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from harvester.simulator.model import DEFAULT_REGION, FAULT_KINDS, FaultKind, SimulatedService
from harvester.simulator.server import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, serve

_LISTED_WORKSPACES = 20


def _parse_fault_rates(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[FaultKind, float]:
    """KIND=RATE pairs, checked here so a typo is a usage error (exit 2), not a crash."""
    rates: dict[FaultKind, float] = {}
    for item in values:
        name, sep, raw_rate = item.partition("=")
        kind = next((k for k in FAULT_KINDS if k == name), None)
        if not sep or kind is None:
            raise click.BadParameter(
                f"{item!r}: expected KIND=RATE with KIND one of {', '.join(FAULT_KINDS)}"
            )
        try:
            rate = float(raw_rate)
        except ValueError:
            raise click.BadParameter(f"{item!r}: RATE must be a number") from None
        if not 0.0 <= rate <= 1.0:
            raise click.BadParameter(f"{item!r}: RATE must be within 0..1")
        rates[kind] = rate
    return rates


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Makes the data repeatable.")
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="Region of the data.")
@click.option("--workspaces", default=2, show_default=True, type=click.IntRange(0))
@click.option("--gateways-per-workspace", default=2, show_default=True, type=click.IntRange(0))
@click.option("--sessions-per-gateway", default=500, show_default=True, type=click.IntRange(0))
@click.option(
    "--empty-gateways",
    default=1,
    show_default=True,
    type=click.IntRange(0),
    help="Extra gateways without sessions.",
)
@click.option(
    "--access-key-id",
    envvar="HARVESTER_SIMULATOR_ACCESS_KEY_ID",
    default=DEMO_ACCESS_KEY_ID,
    show_default=True,
    help="The one AccessKey id the simulator accepts.",
)
@click.option(
    "--access-key-secret",
    envvar="HARVESTER_SIMULATOR_ACCESS_KEY_SECRET",
    default=DEMO_ACCESS_KEY_SECRET,
    help="Its secret (default: the demo secret).",
)
@click.option(
    "--security-token",
    envvar="HARVESTER_SIMULATOR_SECURITY_TOKEN",
    default=None,
    help="Treat the key as STS: requests must carry this token.",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Simulated seconds per real second; 0 freezes time.",
)
@click.option(
    "--new-sessions-per-minute",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Sessions users start per simulated minute.",
)
@click.option(
    "--fault-rate",
    "fault_rates",
    multiple=True,
    metavar="KIND=RATE",
    callback=_parse_fault_rates,
    help=f"Probability per API request of a fault; repeatable. Kinds: {', '.join(FAULT_KINDS)}.",
)
@click.option("--unordered", is_flag=True, help="List sessions in a shuffled order.")
@click.option("--no-quirks", is_flag=True, help="Send only clean records.")
def simulate(
    host: str,
    port: int,
    seed: int,
    region: str,
    workspaces: int,
    gateways_per_workspace: int,
    sessions_per_gateway: int,
    empty_gateways: int,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    speed: float,
    new_sessions_per_minute: float,
    fault_rates: dict[FaultKind, float],
    unordered: bool,
    no_quirks: bool,
) -> None:
    """Serve a simulated EMR Serverless Spark API (Livy Gateway sessions) on HTTP."""
    service = SimulatedService.generate(
        seed,
        workspaces=workspaces,
        gateways_per_workspace=gateways_per_workspace,
        sessions_per_gateway=sessions_per_gateway,
        empty_gateways=empty_gateways,
        region_id=region,
        quirks=not no_quirks,
    )
    service.unordered = unordered
    service.new_sessions_per_minute = new_sessions_per_minute
    for kind, rate in fault_rates.items():
        service.faults.set_rate(kind, rate)
    workspace_ids = service.workspace_ids()
    # Bounded, so a parent that pipes stderr without reading it never blocks us.
    for workspace_id in workspace_ids[:_LISTED_WORKSPACES]:
        gateways = ", ".join(service.gateway_ids(workspace_id)) or "(no gateways)"
        click.echo(f"workspace {workspace_id} ({region}): {gateways}", err=True)
    if len(workspace_ids) > _LISTED_WORKSPACES:
        click.echo(f"... and {len(workspace_ids) - _LISTED_WORKSPACES} more workspaces", err=True)
    tokens = {access_key_id: security_token} if security_token else {}
    try:
        asyncio.run(_run(service, host, port, {access_key_id: access_key_secret}, tokens, speed))
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from error


async def _run(
    service: SimulatedService,
    host: str,
    port: int,
    access_keys: dict[str, str],
    security_tokens: dict[str, str],
    speed: float,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(
        service, host, port, access_keys=access_keys, security_tokens=security_tokens
    ) as url:
        click.echo(f"simulator listening on {url}")
        sys.stdout.flush()
        ticker = asyncio.create_task(_tick(service, speed)) if speed > 0 else None
        await stop.wait()
        if ticker is not None:
            ticker.cancel()
    click.echo("simulator stopped", err=True)


async def _tick(service: SimulatedService, speed: float) -> None:
    """Make simulated time pass: `speed` simulated seconds each real second."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(1.0)
        now = loop.time()
        service.advance((now - last) * speed)
        last = now
