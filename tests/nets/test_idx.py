import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nets.errors import DataError
from nets.idx import read_idx, write_idx

shapes = st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=40, deadline=None)
@given(array=hnp.arrays(np.uint8, shapes), gz=st.booleans())
def test_round_trip_plain_and_gzip(tmp_path_factory, array, gz):
    path = tmp_path_factory.mktemp("idx") / ("x.idx3" + (".gz" if gz else ""))
    write_idx(path, array)
    back = read_idx(path, ndim=3)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)


def test_known_bytes_are_parsed_big_endian(tmp_path):
    # 2 images of 1x3: header 00 00 08 03, dims 2, 1, 3 (big-endian uint32), then 6 bytes.
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    path = tmp_path / "x"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_idx(path, ndim=3), [[[1, 2, 3]], [[4, 5, 6]]])


def test_truncated_data_is_refused_with_counts(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((4, 2, 2), np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"declares shape \(4, 2, 2\) = 16 bytes .* holds 13"):
        read_idx(path, ndim=3)


def test_extra_bytes_are_refused(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.zeros((1, 2, 2), np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path, ndim=3)


@pytest.mark.parametrize(
    "header, match",
    [
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05", "bad IDX magic"),  # a label file read as images
        (b"\x00\x00\x0d\x03", "bad IDX magic"),  # float32 type code
        (b"\x12\x34\x08\x03", "bad IDX magic"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    ],
    ids=["wrong-ndim", "wrong-dtype", "nonzero-prefix", "two-bytes", "cut-header"],
)
def test_bad_headers_are_refused(tmp_path, header, match):
    path = tmp_path / "x"
    path.write_bytes(header)
    with pytest.raises(DataError, match=match):
        read_idx(path, ndim=3)


def test_corrupt_gzip_is_refused(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.ones((3, 4, 4), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path, ndim=3)


def test_not_gzip_under_gz_name(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"plain bytes, not gzip")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path, ndim=3)


def test_gzip_header_matches_plain(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == (tmp_path / "a").read_bytes()
