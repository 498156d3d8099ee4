#!/usr/bin/env python3
"""A local OAuth 2.0 style token endpoint that a test or benchmark can make fail (Python 3, standard library only).

Serves POST and GET /token on 127.0.0.1 with HTTP 200 and
    {"access_token": "tok-N", "token_type": "Bearer", "expires_in": S}
N being the request's number (the first /token request is 1, whatever its answer). A second loopback port takes
control requests, and stays up whatever the mode:
    GET  /count       how many /token requests arrived, as a decimal line
    GET  /arrivals    when each arrived, Unix milliseconds, one a line (the last 10,000)
    GET  /mode        the current mode
    POST /mode/MODE   switches mode; answered once the switch is in effect
Modes:
    ok    answer tokens
    500   HTTP 500 with {"error": "temporarily_unavailable", "error_description": ...}
    slow  sleep --slow seconds (longer than the client's timeout), then answer as ok would
    down  stop listening: connections are refused (curl: "Couldn't connect to server"). The port stays reserved,
          and the next mode listens on it again.

When both ports listen it prints "PORT CONTROL_PORT" on stdout. It exits on SIGTERM or SIGINT, when its parent
process exits, or after --lifetime seconds, whichever comes first.

Usage: token_endpoint.py [--expires-in S] [--slow S] [--lifetime S]
"""
import argparse
import collections
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "500", "slow", "down")


class Endpoint:
    """The token server, its mode and its request counter."""

    def __init__(self, expires_in, slow):
        self.expires_in = int(expires_in) if expires_in == int(expires_in) else expires_in
        self.slow = slow
        self.lock = threading.Lock()
        self.mode = "ok"
        self.count = 0
        self.arrivals = collections.deque(maxlen=10000)
        self.server = bind_reserved(token_handler(self))
        self.serving = None
        self.serve()

    def serve(self):
        # A short poll interval: `down` waits for serve_forever to notice its shutdown.
        self.serving = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.serving.start()

    def switch(self, mode):
        """Puts `mode` in effect; callers are serialised by the control server's lock."""
        if mode == self.mode:
            return
        if mode == "down":
            self.server.shutdown()  # serve_forever has returned: nothing accepts any more
            # On Linux a listening socket shut down for reading stops listening (queued and new connections are
            # refused) but keeps its explicitly bound port, and listen() makes it listen again.
            self.server.socket.shutdown(socket.SHUT_RD)
        elif self.mode == "down":
            self.server.socket.listen(self.server.request_queue_size)
            self.serve()
        with self.lock:
            self.mode = mode

    def requests(self):
        with self.lock:
            return self.count

    def next_request(self):
        with self.lock:
            self.count += 1
            self.arrivals.append(time.time() * 1000)
            return self.count, self.mode


def bind_reserved(handler):
    """A threading HTTP server on 127.0.0.1 bound to an explicit port (so that the port survives `down`)."""
    for _ in range(100):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                continue  # taken between the probe and the bind: try another
            raise
        server.daemon_threads = True
        return server
    sys.exit("token_endpoint: no free port on 127.0.0.1")


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a slow answer after curl's --max-time)

    def discard_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 65536:
            self.rfile.read(length)


def token_handler(endpoint):
    class TokenHandler(QuietHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/token":
                self.reply(404, json.dumps({"error": "not_found"}))
                return
            number, mode = endpoint.next_request()
            if mode == "500":
                self.reply(500, json.dumps({"error": "temporarily_unavailable",
                                            "error_description": f"token endpoint in mode 500 (request {number})"}))
                return
            if mode == "slow":
                time.sleep(endpoint.slow)
            self.reply(200, json.dumps({"access_token": f"tok-{number}", "token_type": "Bearer",
                                        "expires_in": endpoint.expires_in}))

        def do_POST(self):
            self.discard_body()
            self.do_GET()

    return TokenHandler


def control_handler(endpoint):
    switching = threading.Lock()

    class ControlHandler(QuietHandler):
        def do_GET(self):
            if self.path == "/count":
                self.reply(200, f"{endpoint.requests()}\n", "text/plain")
            elif self.path == "/arrivals":
                with endpoint.lock:
                    arrivals = list(endpoint.arrivals)
                self.reply(200, "".join(f"{t:.3f}\n" for t in arrivals), "text/plain")
            elif self.path == "/mode":
                self.reply(200, f"{endpoint.mode}\n", "text/plain")
            else:
                self.reply(404, "GET /count, /arrivals or /mode, POST /mode/MODE\n", "text/plain")

        def do_POST(self):
            self.discard_body()
            mode = self.path[len("/mode/"):] if self.path.startswith("/mode/") else None
            if mode not in MODES:
                self.reply(400, f"POST /mode/MODE with MODE one of {', '.join(MODES)}\n", "text/plain")
                return
            with switching:
                endpoint.switch(mode)
            self.reply(200, f"{mode}\n", "text/plain")

    return ControlHandler


def main():
    parser = argparse.ArgumentParser(description="A token endpoint that can be made to fail.")
    parser.add_argument("--expires-in", type=float, default=2.0, help="expires_in of each token, seconds")
    parser.add_argument("--slow", type=float, default=5.0, help="how long mode slow sleeps, seconds")
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    args = parser.parse_args()
    parent = os.getppid()
    if parent == 1:
        sys.exit("token_endpoint: the process that started it has already exited")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    endpoint = Endpoint(args.expires_in, args.slow)
    control = bind_reserved(control_handler(endpoint))
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(f"{endpoint.server.server_address[1]} {control.server_address[1]}", flush=True)
    deadline = time.monotonic() + args.lifetime
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        stop.wait(0.1)
    # Serving threads are daemon threads; nothing to wait for.
    os._exit(0)


if __name__ == "__main__":
    main()
