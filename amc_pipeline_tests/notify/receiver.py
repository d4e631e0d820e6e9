"""A real HTTP receiver on 127.0.0.1 (a free port, a thread) that records every POST it gets."""

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answered: int


class Receiver:
    """`answers`: status codes for the first POSTs (then 200); a 5xx body echoes the request path, as a
    careless endpoint might, so tests can prove the error we store is scrubbed of the URL."""

    def __init__(self, answers: list[int] | None = None, delay: float = 0.0) -> None:
        self.answers = list(answers or [])
        self.delay = delay
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()},
                                               json.loads(raw or b"{}"), status))
                reply = b"ok" if status < 300 else f"upstream error for {self.path}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:  # keep request lines (with the secret path) out of stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, token: str) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0AMC/B0AMC/{token}"

    def delivered(self) -> list[Post]:
        """POSTs this receiver accepted (2xx)."""
        with self._lock:
            return [p for p in self.posts if p.answered < 300]


def dead_url(token: str) -> str:
    """A URL on a port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{token}"
