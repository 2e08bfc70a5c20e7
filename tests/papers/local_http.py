"""A scripted HTTP server on 127.0.0.1 for faults the ``responses`` library cannot
fake: a socket that stalls, or one reset halfway through the body.

Each request takes the next step of the script; the last step repeats.
"""

import socket
import socketserver
import struct
import threading
import time


def reply(status=200, body=b"", headers=None):
    def step(conn):
        conn.sendall(head(status, len(body), headers) + body)

    return step


def stall(seconds):
    def step(conn):
        time.sleep(seconds)

    return step


def reset_halfway(body):
    """Announce the whole body, send half of it, then reset the connection."""

    def step(conn):
        conn.sendall(head(200, len(body)) + body[: len(body) // 2])
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return step


def head(status, length, headers=None):
    lines = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {length}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class ScriptedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, script):
        self.script = list(script)
        self.requests = []  # (request line, headers dict) as received
        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_step(self):
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        reader = self.request.makefile("rb")
        request_line = reader.readline().decode().strip()
        headers = {}
        for line in iter(reader.readline, b"\r\n"):
            if not line:
                break
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        self.server.requests.append((request_line, headers))
        self.server.next_step()(self.request)
