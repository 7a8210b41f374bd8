"""Metrics, OpenAPI, health, the page's feeds, the token, the config, a real waitress server
(limits enforced before reading, protocol errors as JSON), `serve` and `bench-http` end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from serverkit import drawn_seven, http, make_config, png_bytes, running_server, write_models
from test_server import check_error

from edge_rbmlp.server import ConfigError, ServerConfig, create_app, load_config
from edge_rbmlp.server.config import is_loopback_host

SEVEN = png_bytes(drawn_seven())


def _granian_skip():
    from edge_rbmlp.server.serve import granian_problem

    problem = granian_problem()
    return pytest.mark.skipif(problem is not None, reason=problem or "")


# the two HTTP servers the service runs on (serve.py): every real-server test runs on both
HTTP_SERVERS = [pytest.param("granian", marks=_granian_skip()), "waitress"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def app(paths):
    return create_app(make_config(paths))


@pytest.fixture
def client(app):
    return app.test_client()


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in the metrics")


def test_metrics(client):
    client.post("/classify/mnist", data=SEVEN, content_type="image/png")
    client.post("/classify/mnist", data=b"junk", content_type="image/png")
    client.post("/v2/models/imdb/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                           "data": ["fine"]}]})
    client.post("/classify/nope", data=b"x")
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    assert metric(text, "edge_rbmlp_requests_total", route="/classify/<model>", model="mnist") >= 2
    assert metric(text, "edge_rbmlp_errors_total", route="/classify/<model>", model="mnist", status="400") >= 1
    assert metric(text, "edge_rbmlp_errors_total", route="/classify/<model>", model="unknown", status="404") >= 1
    assert metric(text, "edge_rbmlp_requests_total", route="/v2/models/<model>/infer", model="imdb") >= 1
    assert metric(text, "edge_rbmlp_inference_seconds_count", model="mnist", backend="reference") >= 1
    assert metric(text, "edge_rbmlp_inference_seconds_bucket", model="imdb", backend="reference", le="+Inf") >= 1
    assert metric(text, "edge_rbmlp_process_resident_memory_bytes") > 1e6
    assert metric(text, "edge_rbmlp_process_peak_resident_memory_bytes") >= \
        metric(text, "edge_rbmlp_process_resident_memory_bytes") * 0.5
    from edge_rbmlp.model_file import load_packed_model
    from edge_rbmlp.size import paper_size_bits

    for name, path in (("mnist", None), ("imdb", None)):
        served = client.application.extensions["edge_rbmlp"].models[name]
        assert metric(text, "edge_rbmlp_model_file_bytes", model=name) == served.path.stat().st_size
        n = 1 if served.model.output_activation == "sigmoid" else served.model.n_classes
        assert metric(text, "edge_rbmlp_model_paper_size_bytes", model=name) == pytest.approx(
            paper_size_bits(served.model.arch, served.model.n_inputs, n) / 8)
    assert "nope" not in text  # unknown names do not become label values


def test_apps_share_nothing(paths):
    a, b = create_app(make_config(paths)), create_app(make_config(paths))
    a.test_client().post("/classify/mnist", data=SEVEN, content_type="image/png")
    text_b = b.test_client().get("/metrics").get_data(as_text=True)
    assert "edge_rbmlp_inference_seconds_count" not in text_b or \
        metric(text_b, "edge_rbmlp_inference_seconds_count", model="mnist") == 0
    assert a.extensions["edge_rbmlp"] is not b.extensions["edge_rbmlp"]


def test_openapi_describes_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = set()
    for path, ops in spec["paths"].items():
        for method in ops:
            documented.add((re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper()))
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<\w+:(\w+)>", r"<\1>", rule.rule)  # drop converters: <name:model> -> <model>
        if rule.endpoint == "web_asset" or "<version>" in path:
            continue  # the page's assets; the version aliases of the documented v1/v2 routes
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {rule.rule} is not in /openapi.json"
    params = spec["paths"]["/classify/{model}"]["post"]["parameters"][0]
    assert params["schema"]["enum"] == ["imdb", "mnist"]


def test_health_status_and_page(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    status = client.get("/api/status").get_json()
    assert {m["name"] for m in status["models"]} == {"mnist", "imdb"}
    assert status["rss_bytes"] > 0 and status["peak_rss_bytes"] >= status["rss_bytes"] * 0.5
    page = client.get("/")
    assert page.status_code == 200 and b'id="pad"' in page.data
    for asset in re.findall(rb'(?:src|href)="(/web/[^"]+)"', page.data):
        r = client.get(asset.decode())
        assert r.status_code == 200, asset
    html = page.get_data(as_text=True) + client.get("/web/app.js").get_data(as_text=True)
    assert not re.search(r"https?://", html.replace("http://localhost", "")), "the page must load nothing from outside"
    check_error(client.get("/web/../server/app.py"), 404)


def test_security_headers_and_no_cors(client):
    resp = client.get("/", headers={"Origin": "http://evil.example"})
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = client.options("/classify/mnist", headers={"Origin": "http://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in resp.headers


# -- the token ---------------------------------------------------------------------------------------------------------
def test_token_protects_everything_but_probes_and_the_page(paths):
    app = create_app(make_config(paths, token="s3cret-token"))
    c = app.test_client()
    for path in ("/classify/mnist",):
        check_error(c.post(path, data=SEVEN, content_type="image/png"), 401, "token")
    for path in ("/metrics", "/openapi.json", "/api/status", "/v2/models/mnist", "/v1/models/mnist"):
        resp = c.get(path)
        check_error(resp, 401, "token")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    check_error(c.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    check_error(c.get("/metrics", headers={"Authorization": "Bearer s3cret-token-and-more"}), 401)
    assert c.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert c.get("/metrics", headers={"X-API-Token": "s3cret-token"}).status_code == 200
    ok = c.post("/classify/mnist", data=SEVEN, content_type="image/png",
                headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    for path in ("/healthz", "/v2/health/live", "/v2/health/ready", "/", "/web/app.js"):
        assert c.get(path).status_code == 200, path
    assert "s3cret-token" not in repr(app.config["EDGE_RBMLP"])  # never printed


def test_exposure_rules():
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("192.168.1.5")
    ServerConfig().check_exposure()
    with pytest.raises(ConfigError, match="--insecure-public"):
        ServerConfig(host="0.0.0.0").check_exposure()
    ServerConfig(host="0.0.0.0", token="t").check_exposure()
    ServerConfig(host="0.0.0.0", insecure_public=True).check_exposure()


def test_serve_refuses_a_public_bind_without_token(paths, monkeypatch):
    from edge_rbmlp.cli import main

    monkeypatch.delenv("EDGE_RBMLP_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["serve", str(paths["mnist"]), "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1 and "without an API token" in result.output


# -- config ----------------------------------------------------------------------------------------------------------------
def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 9000\nmodels = ["a.rbm"]\ntoken = "from-file"\n'
                   '[limits]\nmax_body_bytes = 10000\n[camera]\nenabled = true\ninterval = 2\n')
    config = load_config(cfg, {"port": 9001, "host": None}, environ={})
    assert config.port == 9001 and config.models == ["a.rbm"] and config.token == "from-file"
    assert config.limits.max_body_bytes == 10000 and config.camera.enabled and config.camera.interval == 2.0
    assert load_config(cfg, environ={"EDGE_RBMLP_TOKEN": "from-env"}).token == "from-env"


@pytest.mark.parametrize("text,words", [
    ("[server]\nprot = 1\n", ["unknown config key", "prot"]),
    ("[servr]\n", ["unknown config section"]),
    ("[server]\nport = 'x'\n", ["port", "integer"]),
    ("[server]\nport = 70000\n", ["port", "65535"]),
    ("[limits]\nmax_body_bytes = 10\n", ["max_body_bytes"]),
    ("[camera]\nenabled = 1\n", ["true or false"]),
    ("[server]\nmodels = 'mnist'\n", ["list"]),
    ("server = 5\n", ["table"]),
    ("[server\n", ["TOML"]),
])
def test_bad_config(tmp_path, text, words):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, environ={})
    for w in words:
        assert w in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml", environ={})


# -- a real waitress server -----------------------------------------------------------------------------------------
def _read_until_closed(s) -> bytes:
    """The whole reply of an error answer (waitress closes the connection after it)."""
    reply = b""
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        reply += data
    return reply


def _read_one_response(s) -> bytes:
    """One whole response (head and Content-Length body) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("http_server", HTTP_SERVERS)
def test_real_server_curl_style_and_limits(paths, http_server):
    config = make_config(paths, limits={"max_body_bytes": 64 * 1024})
    with running_server(config, http_server=http_server) as (url, app):
        # what `curl --data-binary @seven.png URL/classify/mnist` sends
        status, headers, body = http("POST", url + "/classify/mnist", SEVEN,
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and json.loads(body)["model"] == "mnist"
        # Content-Length over the limit: refused before the body is read, as JSON, connection closed
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"POST /classify/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                      b"Content-Length: %d\r\n\r\n" % (65 * 1024))  # and not a byte of the body
            reply = _read_until_closed(s)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
        assert json.loads(body)["error"] == f"request body is larger than the {64 * 1024} byte limit"
        status, headers, body = http("POST", url + "/classify/mnist", b"\0" * (65 * 1024), {"Content-Type": "image/png"})
        assert status == 413 and "limit" in json.loads(body)["error"]
        # a chunked body with no Content-Length is limited while reading
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"POST /classify/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: image/png\r\n\r\n")
            chunk = b"\0" * 8192
            try:
                for _ in range(16):
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may close early; its answer is still readable
            reply = _read_until_closed(s)
        assert reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply
        # a chunked body within the limit is read whole
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"POST /classify/mnist HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: image/png\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(SEVEN), SEVEN))
            reply = _read_until_closed(s)
        assert reply.startswith(b"HTTP/1.1 200") and b'"model":"mnist"' in reply
        # malformed HTTP: a 400 and the connection closed; waitress answers it in JSON, granian
        # (hyper, in Rust) with an empty body: it has no hook for the body of its own errors
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: nonsense\r\n\r\n")
            reply = _read_until_closed(s)
        assert reply.startswith(b"HTTP/1.1 400")
        if http_server == "waitress":
            assert b'"error"' in reply
        else:
            head, _, body = reply.partition(b"\r\n\r\n")
            assert b"connection: close" in head.lower() and body == b""


def test_bench_http_against_a_real_server(paths):
    from edge_rbmlp.cli import main
    from edge_rbmlp.server.loadgen import bench_http

    with running_server(make_config(paths, threads=2)) as (url, app):
        results = bench_http(url, requests=40, concurrency=2)
        assert {r["model"] for r in results} == {"mnist", "imdb"}
        for r in results:
            assert r["errors"] == 0 and r["ok"] == 40
            assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"] and r["requests_per_s"] > 0
        print(f"\nbench-http (reference engine, loopback, concurrency 2): {results}")
        result = CliRunner().invoke(main, ["bench-http", url, "--requests", "10", "--model", "mnist", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["errors"] == 0
        result = CliRunner().invoke(main, ["bench-http", url, "--requests", "5"])
        assert result.exit_code == 0 and "req/s" in result.output and "p50 ms" in result.output
        result = CliRunner().invoke(main, ["bench-http", url, "--model", "nope"])
        assert result.exit_code == 1 and "does not serve" in result.output
    result = CliRunner().invoke(main, ["bench-http", "http://127.0.0.1:9", "--requests", "1"])
    assert result.exit_code == 1 and "cannot reach" in result.output
    assert "EDGE_RBMLP_TOKEN" in CliRunner().invoke(main, ["bench-http", "--help"]).output


def test_sighup_reloads_a_replaced_model_and_refuses_a_corrupt_one(tmp_path):
    from edge_rbmlp.arch import parse
    from edge_rbmlp.random_model import random_packed_model

    paths = write_models(tmp_path / "models")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("EDGE_RBMLP_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge_rbmlp.cli", "serve", str(paths["mnist"]), "--port", "0",
                             "--backend", "reference"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line).group(1)

        def probs():
            status, _, body = http("POST", url + "/classify/mnist", SEVEN, {"Content-Type": "image/png"})
            assert status == 200
            return json.loads(body)["probabilities"]

        def wait_for(condition):
            import time

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if condition():
                    return True
                time.sleep(0.05)
            return False

        before = probs()
        random_packed_model(parse("B-D128N,D88N,PN"), 784, 10, seed=99, input_kind="image").save(paths["mnist"])
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: probs() != before), "the replaced model was not picked up on SIGHUP"
        after = probs()
        tmp = paths["mnist"].with_suffix(".tmp")
        tmp.write_bytes(b"corrupt" * 100)
        os.replace(tmp, paths["mnist"])
        proc.send_signal(signal.SIGHUP)
        # the refusal is logged (checked below); the old model keeps serving
        for _ in range(5):
            assert probs() == after
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "reload refused" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_bench_command_has_http_option(paths):
    from edge_rbmlp.cli import main

    if "bench" not in main.commands:
        pytest.skip("the engine's `bench` command is not in this build; `bench-http` covers the HTTP benchmark")
    with running_server(make_config(paths)) as (url, app):
        result = CliRunner().invoke(main, ["bench", "--http", url, "--requests", "5", "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert {r["model"] for r in rows} == {"mnist", "imdb"} and all(r["errors"] == 0 for r in rows)
        result = CliRunner().invoke(main, ["bench", "mnist", "--http", url, "--requests", "3", "--json"])
        assert result.exit_code == 0 and [r["model"] for r in json.loads(result.output)] == ["mnist"]
    result = CliRunner().invoke(main, ["bench"])
    assert result.exit_code == 2 and "--http" in result.output


def test_parallel_requests_get_the_sequential_answers(paths):
    """Requests on all of waitress's threads at once answer exactly what they answer one by one."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    rng = np.random.default_rng(7)
    bodies = [json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "UINT8",
                                      "data": rng.integers(0, 256, 784).tolist()}]}).encode() for _ in range(24)]
    with running_server(make_config(paths, threads=4)) as (url, app):
        def ask(body):
            status, _, data = http("POST", url + "/v2/models/mnist/infer", body, {"Content-Type": "application/json"})
            assert status == 200
            return json.loads(data)["outputs"][0]["data"]

        sequential = [ask(b) for b in bodies]
        with ThreadPoolExecutor(8) as pool:
            parallel = list(pool.map(ask, bodies * 3))
    assert parallel == sequential * 3


def test_serve_camera_without_picamera2_is_a_clear_error(paths, monkeypatch):
    import builtins

    from edge_rbmlp.cli import main

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(
        ImportError("no picamera2")) if name.startswith("picamera2") else real_import(name, *a, **k))
    monkeypatch.delenv("EDGE_RBMLP_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["serve", str(paths["mnist"]), "--port", "0", "--backend", "reference",
                                       "--camera"])
    assert result.exit_code == 1 and "sudo apt install python3-picamera2" in result.output


@pytest.mark.parametrize("http_server", HTTP_SERVERS)
def test_bound_port_with_one_or_several_listeners(paths, http_server):
    """``localhost`` may resolve to 127.0.0.1 and ::1: the server then listens on both, one port."""
    from edge_rbmlp.server.serve import bind_sockets, bound_port, build_server

    app, server = build_server(replace(make_config(paths), host="127.0.0.1", port=0), http_server=http_server)
    try:
        assert bound_port(server) == server.port > 0 and server.name == http_server
    finally:
        server.close()
    try:
        socks = bind_sockets("localhost", 0)
    except OSError as exc:  # no IPv6 loopback here
        pytest.skip(f"cannot bind localhost: {exc}")
    try:
        assert len({s.getsockname()[1] for s in socks}) == 1
    finally:
        for s in socks:
            s.close()


def test_http_server_choice(tmp_path, monkeypatch):
    from edge_rbmlp.server import serve as serve_mod

    path = tmp_path / "c.toml"
    path.write_text('[server]\nhttp_server = "waitress"\n')
    assert load_config(path, environ={}).http_server == "waitress"
    assert load_config(None, {"http_server": "granian"}, environ={}).http_server == "granian"
    path.write_text('[server]\nhttp_server = "gunicorn"\n')
    with pytest.raises(ConfigError, match="http_server must be one of auto, granian, waitress"):
        load_config(path, environ={})
    assert serve_mod.resolve_http_server("waitress") == "waitress"
    # granian missing: auto falls back to waitress, an explicit granian is a clear error
    monkeypatch.setattr(serve_mod, "granian_problem", lambda: "granian is not installed (test): pip install granian")
    assert serve_mod.resolve_http_server("auto") == "waitress"
    with pytest.raises(ConfigError, match="pip install granian"):
        serve_mod.resolve_http_server("granian")
    monkeypatch.setattr(serve_mod, "granian_problem", lambda: None)
    assert serve_mod.resolve_http_server("auto") == "granian"


def test_bench_http_against_a_reference_service(paths):
    """`bench-http URL --against REF`: the same requests to both services, side by side, with the
    ratio to the first; the reference is the smallest Flask app (benchmarks/reference_services/)."""
    from edge_rbmlp.cli import main

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from load_test import Reference

    with running_server(make_config(paths)) as (url, app), Reference("flask_minimal") as ref:
        result = CliRunner().invoke(main, ["bench-http", url, "--requests", "20", "--concurrency", "2", "--model",
                                           "mnist", "--against", ref.url, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert [(r["model"], r["url"]) for r in rows] == [("mnist", url), ("mnist", ref.url)]
        assert all(r["errors"] == 0 and r["ok"] == 20 and len(r["all_requests_per_s"]) == 3 for r in rows)
        assert rows[0]["vs_first"] == 1.0 and rows[1]["vs_first"] > 0
        result = CliRunner().invoke(main, ["bench-http", url, "--requests", "5", "--against", ref.url])
        assert result.exit_code == 0 and "side by side" in result.output and ref.url.split("//")[1] in result.output


@pytest.mark.parametrize("http_server", HTTP_SERVERS)
def test_max_connections_is_honoured_and_idle_connections_time_out(paths, http_server):
    """[limits] max_connections open connections at most (granian: its backpressure; waitress: its
    connection limit): one more waits in the backlog, unanswered, until one of them goes; a
    connection that sends nothing is closed after idle_timeout_s."""
    config = make_config(paths, limits={"max_connections": 3, "idle_timeout_s": 2})
    with running_server(config, http_server=http_server) as (url, app):
        host, port = url.split("//")[1].split(":")
        holders = []
        for _ in range(3):  # each holds a connection with a complete request answered, kept alive
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _read_one_response(s).startswith(b"HTTP/1.1 200")
            holders.append(s)
        extra = socket.create_connection((host, int(port)), timeout=30)  # the kernel accepts it into the backlog
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        extra.settimeout(0.5)
        with pytest.raises(socket.timeout):
            extra.recv(1)  # not served while three connections are open
        extra.settimeout(30)
        # the held connections are idle: closed by the server after idle_timeout_s, then the
        # waiting request is answered
        for s in holders:
            assert _read_until_closed(s) == b""
            s.close()
        reply = _read_until_closed(extra)
        extra.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


@_granian_skip()
def test_granian_closes_a_connection_that_trickles_header_lines(paths):
    """Under granian idle_timeout_s bounds the whole request head (hyper's header read timeout):
    a client sending one header line at a time, each well within the timeout, is still cut off
    (under waitress only silence is timed out)."""
    import time

    config = make_config(paths, limits={"idle_timeout_s": 1})
    with running_server(config, http_server="granian") as (url, app):
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            cut_off_after = None
            for line in range(1, 60):  # 59 lines 0.25 s apart: 15 s, far past the 1 s head deadline
                time.sleep(0.25)
                try:
                    s.sendall(b"X-Slow-%d: y\r\n" % line)
                except OSError:  # reset: the server has closed it
                    cut_off_after = line
                    break
        assert cut_off_after is not None, "a connection trickling header lines stayed open for 15 s"


def test_capped_input_limits_a_body_without_content_length():
    """The front's wsgi.input for chunked bodies: up to the limit is read whole (exactly the
    limit too), one byte more is a 413, in every way werkzeug reads."""
    import io

    from werkzeug.exceptions import RequestEntityTooLarge

    from edge_rbmlp.server.app import CappedInput

    for body in (b"", b"x" * 99, b"y" * 100):
        assert CappedInput(io.BytesIO(body), 100).read() == body
        assert CappedInput(io.BytesIO(body), 100).read(1000) == body
        capped = CappedInput(io.BytesIO(body), 100)
        assert b"".join(iter(lambda: capped.read(7), b"")) == body
    for reader in (lambda c: c.read(), lambda c: c.read(101), lambda c: [c.read(10) for _ in range(11)],
                   lambda c: list(c), lambda c: c.readline()):
        with pytest.raises(RequestEntityTooLarge):
            reader(CappedInput(io.BytesIO(b"z" * 101), 100))
    lines = CappedInput(io.BytesIO(b"a\nb\n"), 100)
    assert list(lines) == [b"a\n", b"b\n"]


@_granian_skip()
def test_embedded_granian_leaves_asyncio_alone(paths):
    """granian embedded in this process registers nothing in asyncio's global task set (Playwright,
    or any asyncio code beside the service, calls asyncio.all_tasks())."""
    import asyncio

    with running_server(make_config(paths), http_server="granian") as (url, app):
        assert http("GET", url + "/healthz")[0] == 200
        loop = asyncio.new_event_loop()
        try:
            assert asyncio.all_tasks(loop) == set()
        finally:
            loop.close()


@pytest.mark.parametrize("http_server", HTTP_SERVERS)
def test_request_heads_and_framing_on_both_servers(paths, http_server):
    """What a proxy could read differently, on granian and waitress alike: a head sent one line at
    a time is cut at idle_timeout_s in all (not reset by every line); a body with both
    Content-Length and Transfer-Encoding never gets what follows it answered and the connection
    closes; HTTP/1.1 without Host is a 400 and the connection closes; Content-Encoding is a 415."""
    import time as time_

    config = make_config(paths, limits={"idle_timeout_s": 2})
    with running_server(config, http_server=http_server) as (url, app):
        host, port = url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0, lines, closed = time_.monotonic(), 0, False
            while time_.monotonic() - t0 < 12 and not closed:
                time_.sleep(0.5)
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % lines)
                    lines += 1
                    s.settimeout(0.05)
                    closed = s.recv(65536) == b""
                except socket.timeout:
                    pass
                except OSError:
                    closed = True
            held = time_.monotonic() - t0
        assert closed and held < 2 + 3, (closed, held, lines)
        smuggle = (b"POST /classify/imdb HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for request_bytes, status in ((smuggle, None), (b"GET /healthz HTTP/1.1\r\n\r\n", b"400"),
                                      (b"POST /classify/imdb HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: gzip\r\n"
                                       b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", b"415")):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(request_bytes)
                reply = _read_until_closed(s)
            assert len(re.findall(rb"(?:^|\r\n)HTTP/1\.1 \d{3}", reply)) == 1 and b'"pid"' not in reply, reply[:300]
            assert b"connection: close" in reply.lower(), reply[:300]
            if status:
                assert reply.startswith(b"HTTP/1.1 " + status) and b'"error"' in reply, reply[:300]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_names_a_port_in_use(paths, workers):
    """A port someone else listens on: one line naming the address and --port, exit 1 (one worker
    and the supervisor alike), not an errno traceback."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "edge_rbmlp.cli", "serve", str(paths["mnist"]),
                              "--host", "127.0.0.1", "--port", str(port), "--workers", workers],
                             capture_output=True, text=True, timeout=120)
    finally:
        held.close()
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"cannot listen on 127.0.0.1 port {port}: the port is in use" in run.stderr, run.stderr
    assert "--port" in run.stderr and "Traceback" not in run.stderr


def test_access_log_one_line_per_request_and_off_by_default(paths, caplog):
    import logging

    from edge_rbmlp.server.app import ACCESS_LOGGER

    quiet = create_app(make_config(paths)).test_client()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        assert quiet.get("/healthz").status_code == 200
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]

    client = create_app(make_config(paths, access_log=True)).test_client()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        assert client.post("/classify/mnist", data=png_bytes(drawn_seven()), content_type="image/png").status_code == 200
        assert client.get('/no such "path"\n?x=1').status_code == 404
        assert client.post("/classify/mnist", data=b"x" * 10, content_type="image/png").status_code in (400, 415, 422)
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 3, lines
    assert re.fullmatch(r'\S+ "POST /classify/mnist" 200 \d+ \d+\.\d\d ms', lines[0]), lines[0]
    # a client's spaces, quotes and newlines are escaped: one line, fields still split on spaces
    assert "\n" not in lines[1] and lines[1].split(" ")[2].startswith("/no\\x20such\\x20\\x22path\\x22"), lines[1]
    assert " 404 " in lines[1] and " 4" in lines[2]


def test_access_log_from_the_config_file_and_the_command_line(tmp_path):
    from edge_rbmlp.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\naccess_log = true\n")
    assert load_config(cfg).access_log is True and load_config(None).access_log is False
    cfg.write_text('[server]\naccess_log = "yes"\n')
    with pytest.raises(ConfigError, match="true or false"):
        load_config(cfg)
    assert "--access-log" in CliRunner().invoke(main, ["serve", "--help"]).output


def test_waitress_queue_depth_is_info_not_a_warning(caplog):
    import logging

    from edge_rbmlp.server.serve import quiet_waitress_queue

    quiet_waitress_queue()
    quiet_waitress_queue()  # idempotent: one filter
    with caplog.at_level(logging.DEBUG, logger="waitress.queue"):
        logging.getLogger("waitress.queue").warning("Task queue depth is %d", 3)
        logging.getLogger("waitress.queue").warning("something else")
    levels = {r.getMessage(): r.levelname for r in caplog.records if r.name == "waitress.queue"}
    assert levels == {"Task queue depth is 3": "INFO", "something else": "WARNING"}
    assert len(logging.getLogger("waitress.queue").filters) == 1


def test_bench_http_says_an_error_answer_as_text():
    from edge_rbmlp.server.loadgen import error_text

    assert error_text(422, "Unprocessable Entity", b'{"error": "no digit in the picture", "label": null}') == \
        "422 Unprocessable Entity: no digit in the picture"
    assert error_text(502, "Bad Gateway", b"<html>upstream down</html>") == "502 Bad Gateway: <html>upstream down</html>"
    assert error_text(400, "Bad Request", b"") == "400 Bad Request"
