"""How answers are classified: retry, give up, and what the message says (pure)."""

from __future__ import annotations

import orjson

from harvester.api.client import classify_error, endpoint_for
from harvester.errors import ApiRejected, ApiUnavailable

T = "gateway w-1/lc-1 (cn-hangzhou)"


def body(code: str, message: str = "m", request_id: str = "rid-1") -> bytes:
    return orjson.dumps({"Code": code, "Message": message, "RequestId": request_id})


def test_throttling_400_is_retried_after_the_hint() -> None:
    error = classify_error(400, {"x-acs-retry-after": "1500"}, body("Throttling.User"), target=T)
    assert isinstance(error, ApiUnavailable)
    assert error.throttled
    assert error.retry_after_s == 1.5


def test_429_with_retry_after_seconds() -> None:
    error = classify_error(429, {"Retry-After": "3"}, b"", target=T)
    assert isinstance(error, ApiUnavailable)
    assert error.throttled
    assert error.retry_after_s == 3.0


def test_5xx_with_html_body_is_retried() -> None:
    error = classify_error(502, {}, b"<html>bad gateway</html>", target=T)
    assert isinstance(error, ApiUnavailable)
    assert not error.throttled
    assert "HTTP 502" in error.message


def test_signature_rejected_says_so() -> None:
    error = classify_error(400, {}, body("SignatureDoesNotMatch", "nope"), target=T)
    assert isinstance(error, ApiRejected)
    assert not isinstance(error, ApiUnavailable)
    assert "signature or credentials" in error.message
    assert error.code == "SignatureDoesNotMatch"
    assert error.request_id == "rid-1"
    assert T in error.message


def test_unknown_gateway_and_lowercase_keys() -> None:
    lower = orjson.dumps({"code": "NotFound", "message": "no such gateway", "requestId": "r9"})
    error = classify_error(404, {}, lower, target=T)
    assert isinstance(error, ApiRejected)
    assert "not found" in error.message
    assert "no such gateway" in error.message
    assert error.request_id == "r9"


def test_other_4xx_carries_code_message_request_id() -> None:
    error = classify_error(400, {}, body("InvalidParameter", "pageSize"), target=T)
    assert isinstance(error, ApiRejected)
    assert "HTTP 400 InvalidParameter: pageSize (RequestId rid-1)" in error.message


def test_endpoints() -> None:
    assert endpoint_for("cn-hangzhou") == "https://emr-serverless-spark.cn-hangzhou.aliyuncs.com"
    assert endpoint_for("cn-shanghai", vpc=True) == (
        "https://emr-serverless-spark-vpc.cn-shanghai.aliyuncs.com"
    )


def test_reused_nonce_is_a_transport_resend_and_retried() -> None:
    error = classify_error(400, {}, body("SignatureNonceUsed"), target=T)
    assert isinstance(error, ApiUnavailable)
    assert not error.throttled
