"""A tiny verifying webhook receiver for trying the local platform.

    python -m meshanics_local.receiver --port 9000 --secret-file .local/receiver-secret

It checks every delivery's `X-Meshanics-Signature` with `meshanics.signing.verify` against the
secret in the file (read on each request, so it can be started before the endpoint exists and
follows a rotation), prints what arrived, and answers 204, or 401 when the signature is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from meshanics.signing import SIGNATURE_HEADER, SignatureVerificationError, verify


def make_handler(secret_file: Path) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                secret = secret_file.read_text().strip()
                verify(body, self.headers.get(SIGNATURE_HEADER, ""), secret)
            except (OSError, SignatureVerificationError) as problem:
                print(f"REJECTED {self.headers.get('X-Meshanics-Delivery', '?')}: {problem}", flush=True)
                self._answer(401)
                return
            envelope = json.loads(body)
            print(
                f"verified {envelope['type']} sequence={envelope['sequence']} "
                f"key={envelope['idempotency_key']} data={json.dumps(envelope['data'])}",
                flush=True,
            )
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Receiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receive and verify Meshanics webhooks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret-file", type=Path, default=Path(".local/receiver-secret"))
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.secret_file))
    print(f"receiving on http://{args.host}:{server.server_address[1]}/ (secret from {args.secret_file})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
