"""A changed kernel source drops the package's cached kernels; an unchanged one keeps them."""

from crypto_nn import kernel_cache


def test_a_changed_kernel_source_drops_every_cached_kernel(tmp_path):
    (tmp_path / "ntt.py").write_text("import numba\n")
    (tmp_path / "plain.py").write_text("x = 1\n")
    sub = tmp_path / "wire"
    sub.mkdir()
    (sub / "seeded.py").write_text("import numba\n")
    caches = [tmp_path / "__pycache__", sub / "__pycache__"]
    for cache in caches:
        cache.mkdir()
        (cache / "k-1.py311.nbi").write_bytes(b"i")
        (cache / "k-1.py311.1.nbc").write_bytes(b"c")
        (cache / "m.cpython-311.pyc").write_bytes(b"p")
    assert kernel_cache.ensure_fresh(tmp_path)  # no stamp yet: dropped, then stamped
    for cache in caches:
        assert not list(cache.glob("*.nbi")) and not list(cache.glob("*.nbc"))
        assert (cache / "m.cpython-311.pyc").exists()  # Python's own cache is not ours
    (caches[0] / "k-1.py311.nbi").write_bytes(b"i")
    assert not kernel_cache.ensure_fresh(tmp_path)  # same sources: kept
    assert (caches[0] / "k-1.py311.nbi").exists()
    (tmp_path / "plain.py").write_text("x = 2\n")  # no kernel in it: no reason to drop
    assert not kernel_cache.ensure_fresh(tmp_path)
    (sub / "seeded.py").write_text("import numba  # changed\n")
    assert kernel_cache.ensure_fresh(tmp_path)
    assert not (caches[0] / "k-1.py311.nbi").exists()
