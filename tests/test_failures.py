"""Failures reported as what they are (bug, storage, bad input), the error budget, and examples of drops,
through the real CLI and real Ray."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cleaning.extract import EXTRACT
from tests.conftest import S3_PORT, free_ports
from webtext import pipeline
from webtext.cli import main

PARAGRAPH = "<p>The quiet river ran past the old mill every morning of the year.</p>"
ARTICLE = "<html><body><article>" + PARAGRAPH * 20 + "</article></body></html>"


def write_pages(path, n=200):
    urls = [f"https://example.com/a/{i}" for i in range(n)]
    pq.write_table(pa.table({"url": urls, "html": pa.array([ARTICLE.encode()] * n, pa.binary())}), path)
    return path


def broken_setup(config):
    """A stage whose setup has a bug: the kind of error that must not read as bad input."""
    return {}["model"]


def raising_setup(config):
    def batch_fn(batch):
        return 1 / 0

    return batch_fn


@pytest.mark.slow
def test_a_bug_exits_1_with_its_traceback_in_the_errors_log(tmp_path, local_ray, monkeypatch, capsys):
    monkeypatch.setitem(pipeline.STAGES, "extract", replace(EXTRACT, setup=broken_setup))
    out = tmp_path / "docs"
    assert main(["-v", "extract", str(write_pages(tmp_path / "pages.parquet")), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("webtext extract: "))
    assert line.startswith("webtext extract: bug: extract: ") and "KeyError: 'model'" in line and "_errors.log" in line
    log = (out / "_errors.log").read_text()
    assert (
        "stage: extract" in log and "pages.parquet" in log and "in broken_setup" in log and "KeyError: 'model'" in log
    )
    assert "in broken_setup" in err  # -v prints it too
    assert not (out / "_COMPLETE.json").exists()


@pytest.mark.slow
def test_a_stage_in_which_every_row_raises_fails_without_its_marker(tmp_path, local_ray, monkeypatch, capsys):
    monkeypatch.setitem(pipeline.STAGES, "extract", replace(EXTRACT, setup=raising_setup))
    out = tmp_path / "docs"
    assert main(["extract", str(write_pages(tmp_path / "pages.parquet")), "--out", str(out)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("webtext extract: failed: extract: 200 of 200 pages (100.0%) dropped because code raised")
    assert "200 x ZeroDivisionError: division by zero (e.g. row https://example.com/a/" in line
    assert not (out / "_COMPLETE.json").exists()
    assert "in batch_fn" in (out / "_errors.log").read_text()
    sample = pq.read_table(out / "_dropped" / "extract_error.parquet")
    assert sample.num_rows == 200 and set(sample.column("drop_reason").to_pylist()) == {"extract_error"}
    # the default sample is bounded and the same rows every time: the 200 with the smallest key hashes
    assert main(["extract", str(write_pages(tmp_path / "more.parquet", 500)), "--out", str(out)]) == 1
    again = pq.read_table(out / "_dropped" / "extract_error.parquet")
    assert again.num_rows == 200 and again.column("key").to_pylist() == sorted(again.column("key").to_pylist())


class FlakyS3(BaseHTTPRequestHandler):
    """A proxy in front of the S3 test server that answers the first `failures` writes with 503 SlowDown."""

    protocol_version = "HTTP/1.1"
    failures = 0
    failed = 0
    lock = threading.Lock()

    def _body(self) -> bytes:
        """The request body, un-chunked (the AWS SDK streams uploads with Transfer-Encoding: chunked)."""
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return body

    def _forward(self):
        body = self._body()
        with self.lock:
            fail = self.command in ("PUT", "POST") and FlakyS3.failed < FlakyS3.failures
            FlakyS3.failed += fail
        if fail:
            error = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        connection = http.client.HTTPConnection("127.0.0.1", S3_PORT, timeout=30)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding", "content-length")
        }
        connection.request(self.command, self.path, body, headers | {"Content-Length": str(len(body))})
        response = connection.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        # a HEAD answer has no body but the object's length
        self.send_header(
            "Content-Length", response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        )
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_writes_that_fail_transiently_are_retried_to_a_complete_stage(tmp_path, s3_server):
    port = free_ports(1)[0]
    FlakyS3.failures, FlakyS3.failed = 4, 0
    proxy = ThreadingHTTPServer(("127.0.0.1", port), FlakyS3)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    out = f"{s3_server}/flaky/docs"
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "RAY_ADDRESS": "local"}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "webtext.cli",
                "extract",
                str(write_pages(tmp_path / "pages.parquet", 20)),
                "--out",
                out,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        proxy.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    assert FlakyS3.failed == 4
    import boto3

    keys = [
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="webtext-test", Prefix="flaky/docs/")["Contents"]
    ]
    assert "flaky/docs/_COMPLETE.json" in keys and any(k.endswith(".parquet") and "/part-" in k for k in keys)
