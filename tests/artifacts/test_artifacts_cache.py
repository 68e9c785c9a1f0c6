"""`fetch_cached`: one verified copy per blob digest, re-verified when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpfn.artifacts import DigestMismatch, fetch_cached, push_model
from mpfn.store.local import LocalStore


def test_same_path_twice_and_served_from_cache(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    cache = tmp_path / "cache"
    first = fetch_cached(store, ref, cache)
    assert first == cache / "sha256" / ref.blob_digest.split(":", 1)[1]
    assert first.read_bytes() == model_file.read_bytes()
    assert fetch_cached(store, ref, cache) == first
    # With the artifact gone from the store, the verified cached copy still serves.
    store.delete(f"oci/blobs/sha256/{ref.blob_digest.split(':', 1)[1]}")
    assert fetch_cached(store, ref, cache) == first
    assert first.read_bytes() == model_file.read_bytes()


def test_truncated_cache_file_is_pulled_again(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    cached = fetch_cached(store, ref, tmp_path / "cache")
    with cached.open("r+b") as fh:
        fh.truncate(100)
    assert fetch_cached(store, ref, tmp_path / "cache") == cached
    assert cached.read_bytes() == model_file.read_bytes()


def test_replaced_cache_file_is_pulled_again(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    cached = fetch_cached(store, ref, tmp_path / "cache")
    bogus = cached.with_name("bogus")
    bogus.write_bytes(os.urandom(ref.size))  # same size, different content, new inode
    os.replace(bogus, cached)
    assert fetch_cached(store, ref, tmp_path / "cache") == cached
    assert cached.read_bytes() == model_file.read_bytes()


def test_corrupt_cache_and_tampered_store_raise(
    store: LocalStore, model_file: Path, tmp_path: Path
) -> None:
    ref = push_model(store, model_file, name="demo", version="1")
    cached = fetch_cached(store, ref, tmp_path / "cache")
    cached.write_bytes(b"corrupt")
    (store.root / "oci" / "blobs" / "sha256" / ref.blob_digest.split(":", 1)[1]).write_bytes(
        b"evil"
    )
    with pytest.raises(DigestMismatch, match=ref.blob_digest):
        fetch_cached(store, ref, tmp_path / "cache")
    assert cached.read_bytes() == b"corrupt"  # never replaced by unverified content
    assert not cached.with_name(cached.name + ".verified").exists()
