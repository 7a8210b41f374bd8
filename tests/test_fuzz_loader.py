"""The model loader under the atheris coverage-guided fuzzer, for a bounded time."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_model_loader.py"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (it is in the test extra: pip install -e '.[test]')")
def test_atheris_finds_nothing_in_bounded_run(tmp_path):
    sys.path.insert(0, str(FUZZ.parent))
    try:
        from fuzz_model_loader import write_seed_corpus
    finally:
        sys.path.pop(0)
    corpus = tmp_path / "corpus"
    assert write_seed_corpus(corpus) >= 4
    proc = subprocess.run(
        [sys.executable, str(FUZZ), str(corpus), "-max_total_time=25", "-rss_limit_mb=2048",
         "-max_len=200000", "-timeout=20", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert "Done" in tail  # libFuzzer's closing line: it really ran
    assert not list(tmp_path.glob("crash-*")), tail
