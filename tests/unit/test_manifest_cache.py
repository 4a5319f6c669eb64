"""The remote backend's per-image manifest cache: bounded, least recently used first out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.remote._manifest_cache import ManifestCache
from libcontainerd.remote._manifests import ImageManifest
from libcontainerd.types.descriptor import Descriptor


def _manifest(n: int) -> ImageManifest:
    digest = f"sha256:{n:064x}"
    descriptor = Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json", digest=digest, size=n + 1
    )
    return ImageManifest(descriptor=descriptor, manifest={}, config={"n": n})


def test_get_put_forget() -> None:
    cache = ManifestCache()
    assert cache.get("unix:///a", "ns", "sha256:x") is None
    cache.put("unix:///a", "ns", "sha256:x", _manifest(1))
    assert cache.get("unix:///a", "ns", "sha256:x") == _manifest(1)
    assert cache.get("unix:///a", "other", "sha256:x") is None
    assert cache.get("unix:///b", "ns", "sha256:x") is None
    cache.forget("unix:///a", "ns", "sha256:x")
    assert cache.get("unix:///a", "ns", "sha256:x") is None
    cache.forget("unix:///a", "ns", "sha256:x")  # forgetting twice is fine


def test_least_recently_used_goes_first() -> None:
    cache = ManifestCache(capacity=2)
    cache.put("a", "ns", "1", _manifest(1))
    cache.put("a", "ns", "2", _manifest(2))
    assert cache.get("a", "ns", "1") is not None  # 1 is now the most recently used
    cache.put("a", "ns", "3", _manifest(3))
    assert cache.get("a", "ns", "2") is None
    assert cache.get("a", "ns", "1") == _manifest(1)
    assert cache.get("a", "ns", "3") == _manifest(3)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=200), st.integers(1, 8))
def test_never_exceeds_capacity_and_keeps_the_newest(
    operations: list[tuple[bool, int]], capacity: int
) -> None:
    cache = ManifestCache(capacity=capacity)
    for put, n in operations:
        if put:
            cache.put("a", "ns", str(n), _manifest(n))
            assert cache.get("a", "ns", str(n)) == _manifest(n)
        else:
            cache.forget("a", "ns", str(n))
            assert cache.get("a", "ns", str(n)) is None
        assert len(cache) <= capacity
