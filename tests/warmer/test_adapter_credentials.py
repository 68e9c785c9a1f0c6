"""The resolved headers of a pool's `auth` become the credentials each adapter kind reads."""

from __future__ import annotations

from mpfn.warm.apply import adapter_credentials

BEARER = {"Authorization": "Bearer inference-secret"}
ADMIN = {"Authorization": "Bearer admin-secret"}


def test_the_pool_protocol_gets_its_token_and_management_token() -> None:
    assert adapter_credentials("ort", BEARER, ADMIN) == {
        "token": "inference-secret",
        "api_key": "inference-secret",
        "admin_token": "admin-secret",
    }


def test_torchserve_gets_its_inference_and_management_keys() -> None:
    creds = adapter_credentials("torchserve", BEARER, ADMIN)
    assert creds["inference_key"] == "inference-secret"
    assert creds["management_key"] == "admin-secret"


def test_triton_gets_the_restricted_api_header_of_a_header_auth() -> None:
    header = {"triton-management-key": "key"}
    assert adapter_credentials("triton", header, header) == {
        "management_header": "triton-management-key",
        "management_key": "key",
    }
    # a bearer gateway in front of Triton is not mistaken for the restricted-API key
    assert "management_key" not in adapter_credentials("triton", BEARER, ADMIN)


def test_no_auth_gives_no_credentials() -> None:
    assert adapter_credentials("openai", {}, {}) == {}
