"""Schemathesis against the service's own /openapi.json: generated requests for every
documented operation; none may get a 5xx, and every answer must match the description
(status codes, content types, JSON schemas). Bounded by max_examples per operation."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from serverkit import make_config, write_models  # noqa: E402

from edge_rbmlp.server import create_app  # noqa: E402

_DIR = Path(tempfile.mkdtemp(prefix="edge-rbmlp-schemathesis-"))
atexit.register(shutil.rmtree, _DIR, True)
APP = create_app(make_config(write_models(_DIR), limits={"max_batch": 4}))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)

REQUESTS = {"count": 0}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_description(case):
    REQUESTS["count"] += 1
    # "schema-valid data must be accepted" cannot hold for a service that reads what the bytes mean:
    # a schema-valid PNG of 1x1 pixels or a blank page is still no digit (a documented 400/422)
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_zz_requests_were_made():
    print(f"\nschemathesis: {REQUESTS['count']} generated requests")
    assert REQUESTS["count"] > 50
