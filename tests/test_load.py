"""The bounded load test of the real service (benchmarks/load_test.py, `make soak` runs the big one):
both models at concurrency 1, 8 and 64 through two worker processes, then a short soak; zero errors,
every answer right, and the memory check itself can fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import load_test  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the memory")


def test_bounded_load_levels_and_short_soak(tmp_path, capsys):
    out = tmp_path / "load.json"
    code = load_test.main(["--requests", "400", "--levels", "1,8,64", "--workers", "2", "--soak", "8000",
                           "--soak-chunk", "1000", "--max-growth-mib", "16", "--scaling", "", "--no-engine-threads", "--out", str(out)])
    printed = capsys.readouterr()
    report = json.loads(out.read_text())
    assert code == 0, printed.err
    levels = report["levels"]
    assert [(r["model"], r["concurrency"]) for r in levels] == [
        (m, c) for m in ("mnist", "imdb") for c in (1, 8, 64)]
    for r in levels:
        assert r["errors"] == 0 and r["ok"] == 400
        assert r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"] and r["requests_per_s"] > 0
        assert r["labels"] == {load_test.expected_label("image" if r["model"] == "mnist" else "text"): 400}
    soak = report["soak"]
    assert soak["inferences"] == 8000 and soak["errors"] == 0 and soak["rss_start"] > 0
    assert len(soak["samples"]) == 9
    assert report["summary"]["requests_tried"] == 2400 and report["summary"]["errors"] == 0
    print(f"\nload test summary: {json.dumps(report['summary'])}")


class GrowingService:
    """A stand-in whose memory grows by 1 MiB per reading: the soak must call that a leak."""
    url = "http://127.0.0.1:9"

    def __init__(self):
        self.rss = 100 * 2**20

    def rss_bytes(self):
        self.rss += 2**20
        return self.rss


def test_soak_reports_growing_memory(monkeypatch):
    def fake_run(url, model, kind, requests, concurrency):
        return {"model": model, "concurrency": concurrency, "ok": requests, "errors": 0, "first_error": None,
                "labels": {load_test.expected_label(kind): requests}}

    monkeypatch.setattr(load_test.loadgen, "run", fake_run)
    soak = load_test.run_soak(GrowingService(), {"mnist": "image"}, 40_000, 1000, 8, max_growth_mib=8,
                              progress=lambda line: None)
    assert soak["inferences"] == 40_000 and not soak["flat"] and "a leak?" in soak["problems"][0]
    flat = load_test.run_soak(type("Flat", (), {"url": "", "rss_bytes": lambda self: 50 * 2**20})(),
                              {"mnist": "image"}, 40_000, 1000, 8, max_growth_mib=8, progress=lambda line: None)
    assert flat["flat"] and flat["problems"] == []


def test_wrong_answers_and_errors_are_problems():
    right = load_test.expected_label("image")
    ok = {"model": "mnist", "concurrency": 1, "errors": 0, "first_error": None, "labels": {right: 5}}
    assert load_test.check_answers(ok, "image") == []
    wrong = dict(ok, labels={right: 4, "wrong": 1})
    assert "instead of" in load_test.check_answers(wrong, "image")[0]
    failed = dict(ok, errors=2, first_error="boom")
    assert "2 errors" in load_test.check_answers(failed, "image")[0]


def test_bounded_comparison_with_the_reference_services():
    """Our service (granian or waitress, 1 and 2 workers) beside the reference services (the
    smallest Flask app, Flask + ai-edge-litert int8), a bounded number of requests each: every
    service answers every request, the answers are the right labels, and the comparison reports
    every ratio it promises (the ratios themselves are `make soak`'s business, not a test's)."""
    report = load_test.run_compare(levels=(1, 8), repeats=1, use_wrk=False, requests=60, progress=lambda line: None)
    rows = {(r["service"], r["model"], r["concurrency"]): r for r in report["rows"]}
    expected = {"ours", "ours_waitress", "ours_2_workers", "flask_minimal"}
    if "flask_litert" in report["skipped"]:
        print(f"\nflask_litert skipped: {report['skipped']['flask_litert']}")
    else:
        expected.add("flask_litert")
    assert {k[0] for k in rows} == expected
    for (service, model, c), r in rows.items():
        assert r["non_2xx"] == 0 and r["requests_per_s"] > 0, (service, model, c, r)
        if service.startswith("ours"):  # our answers are checked; the minimal app answers a constant
            assert r["labels"] == {load_test.expected_label("image" if model == "mnist" else "text"): 60}
    if "flask_litert" in expected:  # the tutorial's preprocessing reads the sample digit right too
        assert rows[("flask_litert", "mnist", 8)]["labels"] == {load_test.expected_label("image"): 60}
    ratios = report["ratios"]
    for key in ("ours_vs_flask_minimal_mnist_c1", "ours_vs_flask_minimal_imdb_c8", "two_workers_vs_one_mnist_c8",
                "ours_vs_ours_waitress_mnist_c8"):
        assert ratios[key] is not None and ratios[key] > 0
    assert report["services"]["ours"]["http_server"] in ("granian", "waitress")
    assert report["services"]["ours_waitress"]["http_server"] == "waitress"
    assert report["ready"]["ours"]["ready_s"] > 0 and report["ready"]["ours"]["idle_rss_bytes"] > 0
    ours = report["services"]["ours"]  # RSS = file-backed pages + anonymous ones, PSS between them
    assert 0 < ours["anonymous_bytes"] < ours["rss_bytes"] and 0 < ours["pss_bytes"] <= ours["rss_bytes"]


def test_two_worker_ceiling_counts_the_clients_cores():
    """On 2 cores with wrk beside the services, a second worker can add only the cores the client
    and the first worker leave: (cores - client's cores) / first worker's cores, at most 2."""
    rows = [{"service": "ours", "model": "mnist", "concurrency": 8, "requests_per_s": 1000.0,
             "service_cores_busy": 1.25, "client_cores_busy": 0.3},
            {"service": "ours_2_workers", "model": "mnist", "concurrency": 8, "requests_per_s": 1200.0,
             "service_cores_busy": 1.5, "client_cores_busy": 0.5},
            {"service": "ours", "model": "imdb", "concurrency": 8, "requests_per_s": 900.0,
             "service_cores_busy": 1.0, "client_cores_busy": 0.3}]  # no 2-worker imdb cell: no ceiling
    out = load_test.two_worker_ceilings(rows, (1, 8), cores=2)
    assert out == {"two_workers_ceiling_mnist_c8": 1.2, "two_workers_of_ceiling_mnist_c8": 1.0}
    assert load_test.two_worker_ceilings(rows, (1, 8), cores=16)["two_workers_ceiling_mnist_c8"] == 2.0
