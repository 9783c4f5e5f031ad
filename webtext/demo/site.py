"""A generated website on 127.0.0.1 with a page for every case the pipeline must handle.

Three servers stand for three sites (news, blog, mirror). Articles come wrapped in navigation, ads,
cookie banners and footers; some are served twice (exact copies), copied with small edits onto the
mirror (near copies), or carry a passage of an eval set (contamination). Foreign-language, too-short,
missing, broken, redirecting, looping, non-HTML, slow and robots-disallowed pages complete the set.
"""

from __future__ import annotations

import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webtext.demo.text import FOREIGN, ArticleWriter

SITES = ("news", "blog", "mirror")
ROBOTS = b"User-agent: *\nDisallow: /private/\n"


def render(site: str, title: str, paragraphs: list[str], printable: bool = False) -> bytes:
    """An article page with the boilerplate real pages have (or the plainer print version)."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if printable:
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)} (print)</title></head>"
            f"<body><div class='print-header'>Printed from The {site.title()} Daily</div>"
            f"<article><h1>{html.escape(title)}</h1>{body}</article>"
            "<p class='print-footer'>Copyright The Daily. Reproduction prohibited.</p></body></html>"
        ).encode()
    nav = "".join(
        f"<li><a href='/section/{s}'>{s.title()}</a></li>"
        for s in ("world", "local", "business", "sports", "culture", "opinion")
    )
    related = "".join(f"<li><a href='/news/related-{i}'>Related story number {i}</a></li>" for i in range(1, 6))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} | The {site.title()} Daily</title></head><body>"
        "<div id='cookie-banner'>We use cookies to improve your experience. <button>Accept all cookies</button></div>"
        f"<header><a href='/'>The {site.title()} Daily</a><nav><ul>{nav}</ul></nav>"
        "<form><input name='q' placeholder='Search'></form></header>"
        "<div class='ad'>Advertisement: Summer sale! Save 50% on garden furniture this weekend only.</div>"
        f"<main><article><h1>{html.escape(title)}</h1><p class='byline'>By Staff Reporter</p>{body}"
        "<div class='share'>Share on social media | Email | Print</div></article>"
        f"<aside><h2>Related stories</h2><ul>{related}</ul>"
        "<div class='ad'>Sponsored: The best credit cards of the year, compared.</div></aside></main>"
        "<footer><p>Copyright 2017 The Daily Media Group. All rights reserved.</p>"
        "<ul><li><a href='/about'>About us</a></li><li><a href='/privacy'>Privacy policy</a></li>"
        "<li><a href='/contact'>Contact</a></li></ul></footer></body></html>"
    ).encode()


class DemoSite:
    """Serves the generated pages; `links()` lists the (url, kind) pairs meant to be posted to Reddit."""

    def __init__(self, seed: int = 0, n_articles: int = 200, eval_passages: list[str] = (), slow_seconds: float = 8.0):
        self.slow_seconds = slow_seconds
        self.servers = {site: self._server() for site in SITES}
        self.pages: dict[tuple[str, str], tuple[int, str, bytes]] = {}  # (site, path) -> (status, type, body)
        self.redirects: dict[tuple[str, str], str] = {}
        self._links: list[tuple[str, str]] = []
        self._generate(ArticleWriter(seed), n_articles, list(eval_passages))

    # -- content --------------------------------------------------------------------------------

    def _add(
        self,
        site: str,
        path: str,
        body: bytes,
        kind: str | None,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
    ):
        self.pages[(site, path)] = (status, content_type, body)
        if kind:
            self._links.append((self.url(site, path), kind))

    def _generate(self, writer: ArticleWriter, n_articles: int, eval_passages: list[str]) -> None:
        n_exact = max(1, n_articles // 20)
        n_near = max(1, n_articles // 20)
        for i in range(n_articles):
            site = SITES[i % 2]
            title, paragraphs = writer.article()
            path = f"/news/{i}"
            self._add(site, path, render(site, title, paragraphs), "article")
            if i < n_exact:
                self._add(site, f"/print/{i}", render(site, title, paragraphs, printable=True), "exact_copy")
            elif i < n_exact + n_near:
                self._add("mirror", f"/copy/{i}", render("mirror", title, writer.edit(paragraphs)), "near_copy")
        for j, passage in enumerate(eval_passages):
            title, paragraphs = writer.article()
            paragraphs.insert(len(paragraphs) // 2, passage)
            self._add("blog", f"/essay/{j}", render("blog", title, paragraphs), "contaminated")
        for lang, sentences in FOREIGN.items():
            paragraphs = [" ".join(sentences[k:] + sentences[:k]) for k in range(len(sentences))]
            self._add("news", f"/intl/{lang}", render("news", sentences[0][:40], paragraphs), "non_english")
        for k in range(2):
            self._add(
                "blog",
                f"/brief/{k}",
                render(
                    "blog", "Brief", ["Road closed on Main Street until Friday due to repairs, officials said today."]
                ),
                "too_short",
            )
        title, paragraphs = writer.article()
        self._add("news", "/news/moved-target", render("news", title, paragraphs), None)
        self.redirects[("news", "/news/moved")] = "/news/moved-target"
        self._links.append((self.url("news", "/news/moved"), "redirect"))
        self.redirects[("blog", "/loop")] = "/loop"
        self._links.append((self.url("blog", "/loop"), "redirect_loop"))
        self._links += [
            (self.url("news", "/news/gone-1"), "not_found"),
            (self.url("blog", "/news/gone-2"), "not_found"),
        ]
        self._add("news", "/broken", b"<html><body>Internal error</body></html>", "server_error", status=500)
        self._add(
            "blog", "/files/annual-report", b"%PDF-1.4\n" + b"0" * 20_000, "non_html", content_type="application/pdf"
        )
        self._add("news", "/slow", render("news", "Slow", ["This page answers too late."]), "slow")
        title, paragraphs = writer.article()
        self._add("news", "/private/memo", render("news", title, paragraphs), "robots_denied")

    # -- serving --------------------------------------------------------------------------------

    def _server(self) -> ThreadingHTTPServer:
        site_ref = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                site = next(s for s, server in site_ref.servers.items() if server is self.server)
                site_ref.respond(self, site)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server

    def respond(self, handler: BaseHTTPRequestHandler, site: str) -> None:
        path = handler.path.split("?")[0]
        if path == "/robots.txt":
            status, content_type, body = 200, "text/plain", ROBOTS
        elif (site, path) in self.redirects:
            handler.send_response(301)
            handler.send_header("Location", self.redirects[(site, path)])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        elif (site, path) in self.pages:
            status, content_type, body = self.pages[(site, path)]
            if path == "/slow":
                time.sleep(self.slow_seconds)
        else:
            status, content_type, body = 404, "text/html", b"<html><body><h1>Not found</h1></body></html>"
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the crawler gave up on a slow page

    def url(self, site: str, path: str) -> str:
        return f"http://127.0.0.1:{self.servers[site].server_port}{path}"

    def links(self) -> list[tuple[str, str]]:
        return list(self._links)

    def start(self) -> DemoSite:
        for server in self.servers.values():
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> DemoSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
