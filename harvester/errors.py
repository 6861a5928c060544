"""The exception tree, ordered by what the caller does about each error.

    HarvesterError
    ├── ConfigError          the configuration is wrong: exit 2, fix the file or env
    ├── ApiError             talking to the cloud API failed
    │   ├── ApiUnavailable   transient (transport, timeout, 5xx, throttling): retried
    │   └── ApiRejected      the service said no (signature, unknown gateway, 4xx): final
    │       └── ApiInvalidResponse  an answer of the wrong shape
    └── StoreError           the database failed or is unreachable

The class docstring is the default message. Messages never contain secrets.
"""

from __future__ import annotations


class HarvesterError(Exception):
    """The harvester failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(HarvesterError):
    """The configuration is invalid."""


class ApiError(HarvesterError):
    """The cloud API call failed."""


class ApiUnavailable(ApiError):
    """The cloud API is temporarily unavailable; the call may succeed if retried."""

    def __init__(
        self,
        message: str | None = None,
        *,
        throttled: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.throttled = throttled
        self.retry_after_s = retry_after_s


class ApiRejected(ApiError):
    """The cloud API rejected the request; retrying will not help."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class ApiInvalidResponse(ApiRejected):
    """The cloud API answered with something that is not a valid response."""


class StoreError(HarvesterError):
    """The database operation failed."""
