"""API keys: issued once, stored hashed, scoped, revocable; constant-time verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpfn.auth import (
    ApiKey,
    AuthError,
    TokenBucket,
    authorize,
    issue_key,
    key_id_of,
    parse_bearer,
    take,
)


def test_issued_key_verifies_and_secret_is_not_stored() -> None:
    plaintext, doc = issue_key("ci", models=["demo"])
    key_id, secret = key_id_of(plaintext)
    assert key_id == doc.id
    assert secret not in doc.model_dump_json()
    assert authorize(doc, secret, "demo").name == "ci"


def test_wrong_secret_unknown_key_revoked_and_scope() -> None:
    plaintext, doc = issue_key("ci", models=["demo"])
    _, secret = key_id_of(plaintext)
    with pytest.raises(AuthError) as exc:
        authorize(doc, secret[:-1] + ("A" if secret[-1] != "A" else "B"), "demo")
    assert exc.value.status == 401
    with pytest.raises(AuthError, match="invalid API key"):
        authorize(None, secret, "demo")
    revoked = doc.model_copy(update={"revoked_at": datetime.now(UTC)})
    with pytest.raises(AuthError, match="revoked"):
        authorize(revoked, secret, "demo")
    with pytest.raises(AuthError) as exc:
        authorize(doc, secret, "other")
    assert exc.value.status == 403 and "other" in str(exc.value)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer    ", "mpfn_x"])
def test_malformed_authorization(header: str) -> None:
    with pytest.raises(AuthError):
        presented = parse_bearer(header)
        assert presented is not None
        key_id_of(presented)


def test_absent_authorization_is_none() -> None:
    assert parse_bearer(None) is None and parse_bearer("") is None


@given(st.text(max_size=80))
def test_key_parser_never_crashes(text: str) -> None:
    try:
        key_id_of(text)
    except AuthError as exc:
        assert exc.status == 401


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_token_bucket_never_exceeds_rate_plus_burst(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket: TokenBucket | None = None
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        ok, bucket, wait = take(bucket, now, rate, burst)
        allowed += ok
        assert ok or wait > 0
    assert allowed <= burst + rate * now + 1e-6


def test_unlimited_rate() -> None:
    assert all(take(None, float(i), 0.0, 0)[0] for i in range(100))


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPFN_STATE"}
    mpfn = [sys.executable, "-m", "mpfn", "--state", str(tmp_path / "s")]

    def run(*args: str) -> str:
        proc = subprocess.run([*mpfn, *args], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    created = json.loads(run("keys", "create", "ci", "--models", "demo", "--json"))
    assert created["key"].startswith("mpfn_") and "secret_sha256" not in created
    stored = (tmp_path / "s" / "keys" / f"{created['id']}.json").read_text()
    assert created["key"].split("_", 2)[2] not in stored
    run("keys", "revoke", created["id"])
    listed = json.loads(run("keys", "list", "--json"))
    assert listed[0]["revoked_at"] is not None
    doc = ApiKey.model_validate_json(stored)
    assert doc.revoked_at is None  # the earlier read; the store now holds the revoked one
