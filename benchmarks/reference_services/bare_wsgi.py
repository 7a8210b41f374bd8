"""A bare WSGI callable (no framework) on waitress or granian: the floor of the server itself.

    python benchmarks/reference_services/bare_wsgi.py --port 0 [--server granian]
"""

from __future__ import annotations

import sys

from _runloop import arguments, serve_waitress

BODY = b'{"model":"mnist","label":"7","class_index":7}'


def app(environ, start_response):
    stream = environ.get("wsgi.input")
    if stream is not None and environ.get("CONTENT_LENGTH"):
        stream.read(int(environ["CONTENT_LENGTH"]))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def main(argv=None) -> int:
    ap = arguments(__doc__, 8083)
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
               blocking_threads=args.threads, log_enabled=False).serve(target_loader=lambda *a, **k: app)
        return 0
    return serve_waitress(app, args.host, args.port, args.threads)


if __name__ == "__main__":
    sys.exit(main())
