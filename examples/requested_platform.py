"""Requested platform: both wire forms in an httpx request to a local HTTP server.

The client sends the ``X-Requested-Platform`` header (a JSON OCI platform) and the
``platform=os/arch[/variant]`` query parameter that replaced it; the server decodes both
with libcontainerd and answers what it understood. Malformed input is a clear 400.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

from libcontainerd.errors import InvalidArgument
from libcontainerd.types import Platform
from libcontainerd.types.requested_platform import (
    decode_platform_parameter,
    decode_requested_platform_header,
    encode_platform_parameter,
    encode_requested_platform_header,
)


class Handler(BaseHTTPRequestHandler):
    """Decodes the requested platform from the header or the parameter."""

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        try:
            if "X-Requested-Platform" in self.headers:
                chosen = decode_requested_platform_header(self.headers["X-Requested-Platform"])
                how = "header"
            else:
                chosen = decode_platform_parameter(query["platform"][0])
                how = "parameter"
            status, body = 200, f"{how}: {chosen.format()}"
        except InvalidArgument as error:
            status, body = 400, f"bad request: {error}"
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        """Quiet: the example prints what matters."""


def main() -> int:
    """Send one request per form (and a malformed one) and print the answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/images/create"
    wanted = Platform.parse("linux/arm/v7")
    try:
        with httpx.Client(timeout=10) as http:
            header = encode_requested_platform_header(wanted)
            print(f"X-Requested-Platform: {header}")
            print(http.get(url, headers={"X-Requested-Platform": header}).text)
            print(http.get(url, params={"platform": encode_platform_parameter(wanted)}).text)
            print(http.get(url, headers={"X-Requested-Platform": '{"os": "linux"}'}).status_code)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
