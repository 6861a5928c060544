"""The credentials chain: a key pair in the environment is used without the library."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harvester.api.credentials import ChainCredentials
from harvester.api.signing import Credentials


@pytest.mark.parametrize("token", [None, "", "sts-token"])
async def test_a_key_pair_in_the_environment_is_what_the_chain_gives(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "key-secret")
    if token is None:
        monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", token)
    expected = Credentials("key-id", "key-secret", token or None)
    assert await ChainCredentials().get() == expected

    # The library's chain, whose first link reads the same variables, agrees.
    from alibabacloud_credentials.provider.env import EnvironmentVariableCredentialsProvider
    from alibabacloud_credentials.utils import auth_util

    monkeypatch.setattr(auth_util, "environment_access_key_id", "key-id")
    monkeypatch.setattr(auth_util, "environment_access_key_secret", "key-secret")
    monkeypatch.setattr(auth_util, "environment_security_token", token)
    model = EnvironmentVariableCredentialsProvider().get_credentials()
    assert (
        model.get_access_key_id(),
        model.get_access_key_secret(),
        model.get_security_token() or None,
    ) == (
        expected.access_key_id,
        expected.access_key_secret,
        expected.security_token,
    )


def test_a_key_pair_in_the_environment_does_not_load_the_library() -> None:
    # A fresh interpreter: this one may have loaded the library for other tests.
    code = (
        "import asyncio, sys\n"
        "from harvester.api.credentials import ChainCredentials\n"
        "asyncio.run(ChainCredentials().get())\n"
        "assert 'alibabacloud_credentials' not in sys.modules, 'loaded'\n"
    )
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "key-secret",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
