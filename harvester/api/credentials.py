"""Where AccessKeys come from: the standard Alibaba Cloud credentials chain, or fixed ones."""

from __future__ import annotations

import logging
import os
from typing import Protocol

from harvester.api.signing import Credentials
from harvester.errors import ConfigError

log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "no Alibaba Cloud credentials found: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET (plus ALIBABA_CLOUD_SECURITY_TOKEN for STS), "
    "or configure a credentials profile, RRSA/OIDC or an ECS RAM role"
)


class CredentialsProvider(Protocol):
    """Gives the credentials to sign the next request with (they may rotate)."""

    async def get(self) -> Credentials: ...


class StaticCredentials:
    """Fixed credentials, for tests and for callers that already hold a key pair."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def get(self) -> Credentials:
        return self._credentials


class ChainCredentials:
    """The default chain of `alibabacloud_credentials`: env, OIDC/RRSA, profiles, ECS role.

    The library caches and refreshes temporary credentials itself, so asking per request
    is cheap and always gives valid STS tokens. When the environment holds a key pair, the
    chain's first link answers with it on every call: it is taken from there directly,
    without loading the library (tens of ms and MB at start-up, for nothing).
    """

    def __init__(self) -> None:
        key_id = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
        secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        self._from_env: Credentials | None = None
        if key_id and secret:
            token = os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None
            self._from_env = Credentials(key_id, secret, token)
            return
        from alibabacloud_credentials.client import Client

        self._client = Client()

    async def get(self) -> Credentials:
        if self._from_env is not None:
            return self._from_env
        try:
            model = await self._client.get_credential_async()
        except Exception as exc:
            # The chain's own message may quote profile contents; keep only the kind.
            log.debug("credentials chain failed: %s", type(exc).__name__)
            raise ConfigError(NO_CREDENTIALS) from None
        if not model.access_key_id or not model.access_key_secret:
            raise ConfigError(NO_CREDENTIALS)
        return Credentials(
            access_key_id=model.access_key_id,
            access_key_secret=model.access_key_secret,
            security_token=model.security_token or None,
        )
