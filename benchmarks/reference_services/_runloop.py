"""The run-loop boilerplate every reference service shares (arguments, waitress, the line that
says where it listens); what each service does per request stays in its own file."""

from __future__ import annotations

import argparse

WAITRESS_THREADS = 4


def arguments(doc: str, port: int) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=port, help="0: a free one (printed)")
    # waitress's own default (4): what a tutorial's ``waitress.serve(app)`` runs. One thread would
    # make every reference service collapse at 8 connections (measured: 2,021 -> 533 req/s).
    ap.add_argument("--threads", type=int, default=WAITRESS_THREADS)
    return ap


def serve_waitress(app, host: str, port: int, threads: int = WAITRESS_THREADS) -> int:
    """Serve ``app`` on waitress until interrupted; first prints ``listening on http://HOST:PORT/``."""
    from waitress.server import create_server

    server = create_server(app, host=host, port=port, threads=threads)
    print(f"listening on http://{host}:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0
