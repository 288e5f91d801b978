"""The artifact cache: hits, remembered failures, and concurrent writers."""

import json
import multiprocessing
import time

import pytest

from hpi_triton.core.cache import ArtifactCache, cache_key
from hpi_triton.errors import ConversionError


def test_hit_after_create(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def create(out):
        calls.append(out)
        (out / "model.bin").write_bytes(b"abc")
        return {"ok": 1}

    first = cache.get_or_create("k", create)
    second = cache.get_or_create("k", create)
    assert not first.hit and second.hit and len(calls) == 1
    assert (second.directory / "model.bin").read_bytes() == b"abc"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_failures_are_remembered_and_disabled_cache_retries(tmp_path):
    cache = ArtifactCache(tmp_path)

    def fail(out):
        (out / "half").write_text("x")
        raise ConversionError("converter said no")

    with pytest.raises(ConversionError, match="converter said no"):
        cache.get_or_create("k", fail)
    with pytest.raises(ConversionError, match="cached failure"):
        cache.get_or_create("k", lambda out: {"never": "called"})
    assert not (tmp_path / "artifacts" / "k").exists()
    fresh = ArtifactCache(tmp_path, enabled=False).get_or_create("k", lambda out: {"v": 2})
    assert fresh.meta == {"v": 2}


def _writer(root, index, results):
    cache = ArtifactCache(root)

    def create(out):
        payload = bytes([index]) * 200_000
        (out / "artifact").write_bytes(payload)
        time.sleep(0.2)  # widen the race window
        return {"writer": index}

    entry = cache.get_or_create(cache_key(model="same"), create)
    results.put((entry.meta["writer"], (entry.directory / "artifact").read_bytes()))


def test_concurrent_builds_do_not_corrupt(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(tmp_path, i, results)) for i in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    winner = json.loads((tmp_path / "artifacts" / cache_key(model="same") / "meta.json")
                        .read_text())["writer"]
    for writer, payload in outcomes:
        # Every process sees one complete entry, and it is the same one for all.
        assert writer == winner
        assert payload == bytes([winner]) * 200_000
    assert list((tmp_path / "tmp").iterdir()) == []
