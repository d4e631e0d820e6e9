"""A small threaded TCP proxy on 127.0.0.1 that a test can cut, restore and slow down.

Why a proxy and not a stopped server: PostgreSQL (or the simulator) keeps running with its data;
only the network path between our process and it breaks, which is what an outage looks like from
the pipeline's side (existing connections reset, new ones refused).
"""

import contextlib
import socket
import struct
import threading
import time


class TcpProxy:
    """Forward 127.0.0.1:<port> to `target`. `cut()` resets every connection and refuses new ones until
    `restore()`; `bytes_per_second` throttles the target→client direction (a slow download)."""

    def __init__(self, target_host: str, target_port: int, *, bytes_per_second: float | None = None) -> None:
        self.target = (target_host, target_port)
        self.bytes_per_second = bytes_per_second
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._cut = False
        self._closed = False
        self.refused = 0
        self.reset = 0

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> "TcpProxy":
        thread = threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._drop_all()
        for thread in self._threads:
            thread.join(timeout=5)

    # ----------------------------------------------------------------- control
    def cut(self) -> None:
        """Reset every open connection; refuse (reset) new ones until restore()."""
        self._cut = True
        self.reset += self._drop_all()

    def restore(self) -> None:
        self._cut = False

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _abort(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        with contextlib.suppress(OSError):
            sock.close()

    def _drop_all(self) -> int:
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            self._abort(sock)
        return len(sockets) // 2

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                self.refused += 1
                self._abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._abort(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst, throttle in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(target=self._pump, args=(src, dst, throttle), daemon=True)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, throttle: bool) -> None:
        chunk = 16384
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if throttle and self.bytes_per_second:
                    time.sleep(len(data) / self.bytes_per_second)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
