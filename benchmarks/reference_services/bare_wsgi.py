"""A bare WSGI callable (no framework) on waitress or granian: the floor of the server itself.

    python benchmarks/reference_services/bare_wsgi.py --port 0 [--server granian]
"""

from __future__ import annotations

import argparse
import sys

BODY = b'{"model":"mnist","label":"7","class_index":7}'


def app(environ, start_response):
    stream = environ.get("wsgi.input")
    if stream is not None and environ.get("CONTENT_LENGTH"):
        stream.read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8083)
    ap.add_argument("--server", choices=("waitress", "granian"), default="waitress")
    args = ap.parse_args(argv)
    if args.server == "granian":
        import socket

        from granian.constants import Interfaces
        from granian.server import Server

        if args.port == 0:
            with socket.socket() as s:
                s.bind((args.host, 0))
                args.port = s.getsockname()[1]
        print(f"listening on http://{args.host}:{args.port}/", flush=True)
        Server(f"{__name__}:app", address=args.host, port=args.port, interface=Interfaces.WSGI, workers=1,
               blocking_threads=1, log_enabled=False).serve(target_loader=lambda *a, **k: app)
        return 0
    from waitress.server import create_server

    server = create_server(app, host=args.host, port=args.port, threads=1)
    print(f"listening on http://{args.host}:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
