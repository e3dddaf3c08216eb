"""Named data sets: local folders, the cache folder, and download with checksum verification (exercised
with file:// URLs, so no network is needed)."""

import hashlib

import pytest

from rnnlab.data import sources
from rnnlab.errors import DataError


def _source(tmp_path, content: bytes, sha: str | None):
    origin = tmp_path / "origin.txt"
    origin.write_bytes(content)
    return sources.Source("demo", {"input.txt": (origin.as_uri(), sha)})


def test_download_into_data_dir_and_verify(tmp_path):
    content = b"to be or not to be\n"
    src = _source(tmp_path, content, hashlib.sha256(content).hexdigest())
    folder = sources.locate(src, None, str(tmp_path / "cache"))
    assert (folder / "input.txt").read_bytes() == content
    assert sources.locate(src, None, str(tmp_path / "cache")) == folder  # found, not fetched again


def test_checksum_mismatch_is_refused(tmp_path):
    src = _source(tmp_path, b"tampered\n", "0" * 64)
    with pytest.raises(DataError, match=r"has sha256 .* expected 0{64}; not used"):
        sources.locate(src, None, str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "demo" / "input.txt").exists()


def test_unreachable_download_says_where_to_put_the_file(tmp_path):
    src = sources.Source("demo", {"input.txt": ((tmp_path / "missing.txt").as_uri(), None)})
    with pytest.raises(DataError, match=r"could not download .*put input.txt in .*or set data.path"):
        sources.locate(src, None, str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "demo").exists()


def test_local_path_must_hold_the_files(tmp_path):
    with pytest.raises(DataError, match=r"lacks input.txt. Set data.path to a folder holding input.txt"):
        sources.locate(sources.SOURCES["tinyshakespeare"], str(tmp_path), None)


def test_every_downloadable_source_has_a_checksum():
    for src in sources.SOURCES.values():
        for name, (url, sha) in src.files.items():
            assert (url is None) == (sha is None), f"{src.name}/{name}"
            assert sha is None or len(sha) == 64
