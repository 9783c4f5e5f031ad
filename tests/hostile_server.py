"""A 127.0.0.1 web server with one route for every way a fetch can end, for the crawler tests."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = (
    "<html><head><title>A page</title></head><body><nav>Home | News</nav><article><h1>A page</h1>"
    + "".join(
        f"<p>Paragraph {i} of a perfectly ordinary article about the town library and its books.</p>" for i in range(20)
    )
    + "</article><footer>Copyright</footer></body></html>"
).encode()
MISLABELLED = ARTICLE.replace(b"ordinary article", "ordinary café article, naïve résumé".encode("cp1252"))
MALFORMED = (
    b"<html><body><div><p>Unclosed <b>bold <i>"
    + ARTICLE[ARTICLE.index(b"<article>") :]
    + b"</div></span></td>\x00\xff<<<>>>&&&;"
)
GZIP_BOMB = gzip.compress(b"\0" * (50 * 2**20), compresslevel=9)

# the status a crawl must give each route (tests/test_crawl.py, benchmarks/hostile_crawl.py)
STATUS_OF_PATH = {
    "/ok": "ok",
    "/redirect": "ok",
    "/not-found": "http_error",
    "/server-error": "http_error",
    "/slow": "timeout",
    "/slow-body": "timeout",
    "/loop": "redirect_loop",
    "/big": "too_large",
    "/gzip-bomb": "too_large",
    "/pdf": "not_html",
    "/reset": "connection_error",
    "/private/page": "robots_denied",
    "/retry-after-long": "http_error",
    "/retry-after-short": "ok",
    "/too-many-requests": "ok",
    "/chain/3": "ok",
    "/chain/40": "redirect_loop",  # more distinct hops than max_redirects
    "/many-chunks": "ok",
    "/wrong-charset": "ok",
    "/malformed": "ok",
}


class HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, body: bytes, content_type: str = "text/html; charset=utf-8", status: int = 200, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.server.hits[self.path] += 1
        path = self.path.split("?", 1)[0]  # benchmarks add ?copy=N to make URLs distinct
        if path == "/robots.txt":
            self.send_body(b"User-agent: *\nDisallow: /private/\n", "text/plain")
        elif path in ("/ok", "/private/page"):
            self.send_body(ARTICLE)
        elif path == "/not-found":
            self.send_error(404)
        elif path == "/server-error":
            self.send_error(500)
        elif path == "/slow":
            time.sleep(self.server.slow_seconds)
            self.send_body(ARTICLE)
        elif path == "/slow-body":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(ARTICLE)))
            self.end_headers()
            for i in range(0, len(ARTICLE), 100):
                self.wfile.write(ARTICLE[i : i + 100])
                self.wfile.flush()
                time.sleep(self.server.slow_seconds / 4)
        elif path == "/loop":
            self.redirect("/loop")
        elif path == "/redirect":
            self.redirect("/ok")
        elif path == "/redirect-to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/big":
            self.send_body(b"<html><body>" + b"x" * (10 * 2**20) + b"</body></html>")
        elif path == "/gzip-bomb":
            self.send_body(GZIP_BOMB, headers=[("Content-Encoding", "gzip")])
        elif path == "/retry-after-long":  # a server asking for an hour's pause: not worth waiting for
            self.send_body(b"slow down", "text/plain", 429, [("Retry-After", "3600")])
        elif path == "/retry-after-short":  # 503 once with a 1 s pause, then the page
            if self.server.hits[path] == 1:
                self.send_body(b"busy", "text/plain", 503, [("Retry-After", "1")])
            else:
                self.send_body(ARTICLE)
        elif path == "/too-many-requests":  # 429 once with a 1 s pause, then the page
            if self.server.hits[path] == 1:
                self.send_body(b"slow down", "text/plain", 429, [("Retry-After", "1")])
            else:
                self.send_body(ARTICLE)
        elif path.startswith("/chain/"):  # a chain of distinct redirects, /chain/N -> /chain/N-1 ... -> /ok
            hops = int(path.rsplit("/", 1)[1])
            self.redirect(f"/chain/{hops - 1}" if hops > 1 else "/ok")
        elif path == "/many-chunks":  # the page in thousands of tiny chunked-encoding pieces
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(ARTICLE), 3):
                piece = ARTICLE[i : i + 3]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/wrong-charset":  # cp1252 bytes under a header that says utf-8
            self.send_body(MISLABELLED)
        elif path == "/malformed":
            self.send_body(MALFORMED)
        elif path.startswith("/page/"):
            time.sleep(self.server.page_seconds)
            self.send_body(ARTICLE.replace(b"A page", path.encode()))
        elif path == "/pdf":
            self.send_body(b"%PDF-1.4 " + b"0" * 100_000, "application/pdf")
        elif path == "/reset":
            # linger 0 makes close() send a TCP RST; the file objects hold the socket open until closed
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()
            self.wfile.close()
            self.connection.close()
        else:
            self.send_error(404)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 refuses a crawler's burst of connections


class HostileServer:
    """Context manager: serves HostileHandler on 127.0.0.1 in a daemon thread; `url(path)`, `hits`."""

    def __init__(self, slow_seconds: float = 3.0, host: str = "127.0.0.1", port: int = 0, page_seconds: float = 0.0):
        self.server = _Server((host, port), HostileHandler)
        self.host = host
        self.server.daemon_threads = True
        self.server.hits = Counter()
        self.server.slow_seconds = slow_seconds
        self.server.page_seconds = page_seconds

    @property
    def hits(self) -> Counter:
        return self.server.hits

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.server.server_port}{path}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
