"""The interner's encoding and weak table: ``Any`` bytes written around the body, versions, and
resources that live exactly as long as some snapshot holds them."""

from __future__ import annotations

import gc
import hashlib

import pytest
import xds_unit_builders as b
from google.protobuf import any_pb2

from pilotfish.xds import resources as rt
from pilotfish.xds.cache import ResourceInterner, any_bytes, content_version


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 300_000])
@pytest.mark.parametrize("type_url", [*rt.ADS_ORDER, "type.googleapis.com/not.Served", "x" * 200])
def test_any_bytes_are_what_protobuf_serializes(type_url: str, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert any_bytes(type_url, body) == any_pb2.Any(type_url=type_url, value=body).SerializeToString()


def test_content_version_is_the_sum_of_one_hash_per_pair() -> None:
    pairs = [("b", "2"), ("a", "1"), ("c", "")]

    def one(name: str, version: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=12).digest(), "big")

    assert content_version(pairs) == f"{sum(one(*p) for p in pairs) % 2**96:024x}"
    assert content_version(reversed(pairs)) == content_version(pairs)
    assert content_version(()) == "0" * 24
    assert content_version([("a", "12")]) != content_version([("a1", "2")])


def test_equal_messages_share_one_resource_while_it_lives() -> None:
    interner = ResourceInterner()
    first = interner.resource(b.cluster("a"))
    assert interner.resource(b.cluster("a")) is first
    assert interner.resource(b.cluster("b")) is not first
    version = first.version
    del first
    gc.collect()
    assert len(interner) == 0
    again = interner.resource(b.cluster("a"))  # built anew once nothing held the old one
    assert again.version == version and len(interner) == 1


def test_a_dead_resource_does_not_evict_its_replacement() -> None:
    interner = ResourceInterner()
    old = interner.resource(b.cluster("a"))
    ref = interner._live[(old.type_url, bytes.fromhex(old.version))]
    interner._live.clear()
    new = interner.resource(b.cluster("a"))
    assert new is not old
    del old  # its callback finds the newer entry under the key and leaves it
    gc.collect()
    assert ref() is None and interner.resource(b.cluster("a")) is new
