"""The device-app commands of ``edge-rbmlp``: ``serve``, ``camera``, ``bench-http``
(and ``--http`` on ``bench`` when the engine benchmark exists). Registered on the
click group by :func:`register` at the end of ``edge_rbmlp/cli.py``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


def _user_errors():
    from ..user_errors import user_error_types
    from .camera import CameraUnavailable
    from .config import ConfigError
    from .loadgen import LoadgenError
    from .mqtt import MqttUnavailable

    return user_error_types() + (ConfigError, CameraUnavailable, MqttUnavailable, LoadgenError, ValueError, OSError)


def _run(fn):
    """Run a command; the project's errors become one ``Error:`` line. (The error types are
    imported only when something went wrong: the serve supervisor stays free of numpy.)"""
    try:
        return fn()
    except click.ClickException:
        raise
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            raise click.ClickException(str(exc)) from None
        raise


@click.command("serve")
@click.argument("models", nargs=-1)
@click.option("--host", default=None, help="address to bind  [default: 127.0.0.1, loopback only]")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="[default: 8080; 0 = any free port]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML config file (see device/config.toml)")
@click.option("--backend", default=None, help="inference backend  [default: auto]")
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="request threads per worker process  [default: 1; add --workers for throughput]")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="worker processes sharing the port (one per core for throughput)  [default: 1]")
@click.option("--http-server", type=click.Choice(["auto", "granian", "waitress"]), default=None,
              help="HTTP server under the app  [default: auto = granian when installed, else waitress]")
@click.option("--camera", "camera", is_flag=True, default=None, help="run the camera inside the service")
@click.option("--camera-source", default=None, metavar="SOURCE",
              help="picamera2, v4l2:/dev/videoN, dir:FOLDER or file:VIDEO  [default: picamera2]")
@click.option("--camera-model", default=None, help="image model for the camera  [default: the first one]")
@click.option("--interval", type=click.FloatRange(0, 3600), default=None, help="seconds between camera frames")
@click.option("--max-body-bytes", type=int, default=None, help="request size limit  [default: 4 MiB]")
@click.option("--insecure-public", is_flag=True, default=None,
              help="allow a non-loopback --host without an API token (EDGE_RBMLP_TOKEN or [server] token)")
@click.option("--access-log", is_flag=True, default=None,
              help="log one line per request (client, method, path, status, bytes, ms) to stderr / the journal")
def serve_command(models, host, port, config_path, backend, threads, workers, http_server, camera, camera_source,
                  camera_model, interval, max_body_bytes, insecure_public, access_log):
    """Serve MODELs (default: every bundled model) over HTTP: the web page at /, POST /classify/MODEL,
    the Open Inference Protocol under /v2, TF Serving's /v1, /metrics and /openapi.json."""
    from .config import load_config
    from .serve import serve

    def go():
        overrides = {"models": list(models) or None, "host": host, "port": port, "backend": backend,
                     "threads": threads, "workers": workers, "http_server": http_server,
                     "insecure_public": insecure_public, "access_log": access_log,
                     "camera": {"enabled": camera, "model": camera_model, "interval": interval,
                                "source": camera_source},
                     "limits": {"max_body_bytes": max_body_bytes}}
        config = load_config(config_path, overrides)
        echo = lambda line: click.echo(line)  # noqa: E731
        if config.workers > 1:  # this process supervises worker processes (workers.py)
            from .workers import serve_workers

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
            return serve_workers(config, echo)
        return serve(config, echo=echo)

    code = _run(go)
    if code:
        raise SystemExit(code)


@click.command("camera")
@click.argument("model")
@click.option("--interval", type=click.FloatRange(0, 3600), default=1.0, show_default=True,
              help="seconds between frames")
@click.option("--count", type=click.IntRange(1), default=None, help="stop after this many frames")
@click.option("--width", type=click.IntRange(16, 8192), default=640, show_default=True)
@click.option("--height", type=click.IntRange(16, 8192), default=480, show_default=True)
@click.option("--backend", default="auto", show_default=True)
@click.option("--camera-source", "source", default="picamera2", show_default=True, metavar="SOURCE",
              help="picamera2, v4l2:/dev/videoN, dir:FOLDER (image files in name order, looped) or file:VIDEO")
@click.option("--publish", "publish_url", default=None,
              help="also send every frame to a running service (e.g. http://127.0.0.1:8080), shown on its page")
def camera_command(model, interval, count, width, height, backend, source, publish_url):
    """Classify what the camera sees with MODEL, one JSON line per frame."""
    from ..engines import create
    from ..models import load_model
    from .camera import CameraLoop, open_camera

    def go():
        engine = create(load_model(model), backend)
        if engine.model.input_spec.kind != "image":
            raise click.ClickException(f"model {model!r} takes {engine.model.input_spec.kind}, not images")
        publisher = _publisher(publish_url, model) if publish_url else None
        camera = open_camera(width, height, source)
        loop = CameraLoop(camera, engine, interval=interval, max_frames=count,
                          on_result=publisher, echo=lambda rec: click.echo(json.dumps(rec)))
        try:
            loop.run()
        except KeyboardInterrupt:
            pass
        finally:
            camera.close()

    _run(go)


def _publisher(url: str, model: str):
    import http.client
    import os
    from urllib.parse import urlsplit

    from .camera import _png

    parts = urlsplit(url if "://" in url else "http://" + url)
    name = Path(model).stem if model.endswith(".rbm") else model
    token = os.environ.get("EDGE_RBMLP_TOKEN")

    def publish(frame, pred):
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        try:
            headers = {"Content-Type": "image/png", **({"Authorization": f"Bearer {token}"} if token else {})}
            conn.request("POST", f"{parts.path.rstrip('/')}/api/camera/publish/{name}", body=_png(frame, 640),
                         headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                click.echo(f"edge-rbmlp: publishing to {url} failed: HTTP {resp.status}", err=True)
        except OSError as exc:
            click.echo(f"edge-rbmlp: publishing to {url} failed: {exc}", err=True)
        finally:
            conn.close()

    return publish


def _ms(us) -> str:
    """Microseconds as milliseconds for a table (HTTP round trips are ms; --json keeps the us)."""
    return "-" if us is None else f"{us / 1000:.2f}"


def _bench_http(url, models, requests, concurrency, as_json, against=()):
    import os

    from .loadgen import bench_http

    token = os.environ.get("EDGE_RBMLP_TOKEN")
    if against:
        return _bench_against(url, list(against), models, requests, concurrency, as_json, token)

    def go():
        if as_json:
            results = bench_http(url, list(models) or None, requests, concurrency, token)
            click.echo(json.dumps(results, indent=2))
            return results
        from rich.console import Console
        from rich.progress import Progress
        from rich.table import Table

        console = Console()
        with Progress(console=console, transient=True) as progress:
            def factory(name, total):
                task = progress.add_task(f"{name}", total=total)
                return lambda: progress.advance(task)

            results = bench_http(url, list(models) or None, requests, concurrency, token, factory)
        table = Table(title=f"HTTP end to end: {url} (concurrency {concurrency})")
        for col in ("model", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in results:
            table.add_row(r["model"], str(r["requests"]), str(r["errors"]), *(
                _ms(r[k]) for k in ("p50_us", "p90_us", "p99_us", "max_us")),
                "-" if r["requests_per_s"] is None else f"{r['requests_per_s']:.0f}")
        console.print(table)
        for r in results:
            if r["errors"]:
                console.print(f"{r['model']}: {r['errors']} errors, first: {r['first_error']}", style="red",
                              markup=False, highlight=False)
        return results

    results = _run(go)
    if any(r["errors"] for r in results):
        raise SystemExit(1)


@click.command("bench-http")
@click.argument("url")
@click.option("--model", "models", multiple=True, help="model to load (repeatable)  [default: every served model]")
@click.option("--requests", type=click.IntRange(1, 10_000_000), default=500, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--against", multiple=True, metavar="URL",
              help="also run the same requests against this service (repeatable; e.g. a reference service of "
                   "benchmarks/reference_services/), in turn, 3 rounds: requests/s side by side")
def bench_http_command(url, models, requests, concurrency, as_json, against):
    """Measure a running service at URL end to end: latency percentiles and requests/s over
    a fixed number of POST /classify requests (stops by itself).

    A service with an API token: set EDGE_RBMLP_TOKEN in the environment (sent as the bearer
    token). The table shows milliseconds; --json gives microseconds (``*_us``)."""
    _bench_http(url, models, requests, concurrency, as_json, against)


def _bench_against(url, against, models, requests, concurrency, as_json, token):
    from .loadgen import compare

    results = _run(lambda: compare(url, against, list(models) or None, requests, concurrency, token))
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"HTTP end to end, side by side (concurrency {concurrency}, median of 3 rounds)")
        for col in ("model", "service", "errors", "p50 ms", "p99 ms", "req/s", "vs first"):
            table.add_column(col, justify="left" if col in ("model", "service") else "right")
        for r in results:
            table.add_row(r["model"], r["url"], str(r["errors"]), _ms(r["p50_us"]), _ms(r["p99_us"]),
                          "-" if r["requests_per_s"] is None else f"{r['requests_per_s']:.0f}",
                          "-" if r["vs_first"] is None else f"{r['vs_first']:.2f}x")
        Console().print(table)
    if any(r["errors"] for r in results):
        raise SystemExit(1)
    return results


def _add_http_to_bench(bench: click.Command) -> None:
    """Give the engine's ``bench`` command ``--http URL`` (then its MODEL argument is optional)."""
    if any(p.name == "http_url" for p in bench.params):
        return
    for p in bench.params:
        if isinstance(p, click.Argument):
            p.required = False
            if p.nargs == -1:
                continue
    bench.params.append(click.Option(["--http", "http_url"], default=None, metavar="URL",
                                     help="benchmark a running service end to end instead (see bench-http)"))
    taken = {opt for p in bench.params for opt in getattr(p, "opts", [])}
    requests_flag = "--requests" if "--requests" not in taken else "--http-requests"
    concurrency_flag = "--concurrency" if "--concurrency" not in taken else "--http-concurrency"
    bench.params.append(click.Option([requests_flag, "http_requests"], type=click.IntRange(1, 10_000_000),
                                     default=500, show_default=True, help="with --http: requests per model"))
    bench.params.append(click.Option([concurrency_flag, "http_concurrency"], type=click.IntRange(1, 1024),
                                     default=1, show_default=True, help="with --http: parallel connections"))
    original = bench.callback

    def callback(http_url=None, http_requests=500, http_concurrency=1, **kwargs):
        if http_url:
            models = [v for v in (kwargs.get("model"), kwargs.get("models")) if v]
            flat = []
            for v in models:
                flat.extend(v if isinstance(v, (list, tuple)) else [v])
            return _bench_http(http_url, flat, http_requests, http_concurrency, bool(kwargs.get("as_json")))
        missing = [p.name for p in bench.params if isinstance(p, click.Argument) and p.nargs != -1
                   and kwargs.get(p.name) is None]
        if missing:
            raise click.UsageError(f"give {missing[0].upper()} (or --http URL to benchmark a running service)")
        ctx = click.get_current_context()
        return ctx.invoke(original, **kwargs)

    bench.callback = callback


def register(group: click.Group) -> None:
    group.add_command(serve_command)
    group.add_command(camera_command)
    group.add_command(bench_http_command)
    bench = group.commands.get("bench")
    if bench is not None:
        try:
            _add_http_to_bench(bench)
        except Exception as exc:  # never break the CLI over the optional option
            click.echo(f"edge-rbmlp: warning: cannot add --http to bench: {exc}", err=True)
