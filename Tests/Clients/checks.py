"""What the Python client checks share: one line per check, exit 1 at the first failure with what was expected
and what came back, and the command-line description of what the server holds.

The same scripts run against expirabled (from Tests/ExpirableDaemonTests/RedisClientTests.swift) and against a
real redis-server (Tests/Clients/validate-against-redis-server.sh), so they know nothing of either: the caller
says which names hold which values, how long they live, which name is unknown and which command produces a new
value for a subscriber.
"""

import argparse
import os
import traceback


class Checks:
    """Prints `ok   <what>` per passed check; on the first failure prints `FAIL <what>: expected …, got …` and
    exits 1 at once."""

    def __init__(self, client):
        self.client = client
        self.count = 0

    def equal(self, what, got, expected):
        if got != expected:
            self.fail(what, f"expected {expected!r}, got {got!r}")
        self.passed(what, got)

    def true(self, what, condition, expected, got):
        if not condition:
            self.fail(what, f"expected {expected}, got {got!r}")
        self.passed(what, got)

    def passed(self, what, got):
        self.count += 1
        shown = repr(got)
        print(f"ok   {self.client}: {what}: {shown if len(shown) <= 120 else shown[:117] + '...'}", flush=True)

    def fail(self, what, detail):
        print(f"FAIL {self.client}: {what}: {detail}", flush=True)
        # At once, from any depth: sys.exit inside an event loop's task group would be wrapped, not obeyed.
        os._exit(1)

    def raises(self, what, call, exception_type, prefix):
        """`call()` must raise `exception_type` whose message starts with `prefix`."""
        try:
            got = call()
        except exception_type as error:
            message = str(error)
            if not message.startswith(prefix):
                self.fail(what, f"expected {exception_type.__name__} starting {prefix!r}, got {message!r}")
            self.passed(what, f"{exception_type.__name__}: {message}")
            return
        except Exception as error:  # noqa: BLE001 - the point is to say which exception came instead
            self.fail(what, f"expected {exception_type.__name__} starting {prefix!r}, got {type(error).__name__}: {error}")
        self.fail(what, f"expected {exception_type.__name__} starting {prefix!r}, got the reply {got!r}")

    def done(self):
        print(f"{self.client}: all {self.count} checks passed", flush=True)

    def run(self, body):
        """Runs `body(self)`; an exception no check expected is a failure that names it (traceback on stderr)."""
        try:
            body(self)
        except BaseException as error:  # noqa: BLE001 - including an event loop's exception groups
            traceback.print_exc()
            while isinstance(error, BaseExceptionGroup) and error.exceptions:
                error = error.exceptions[0]
            self.fail(f"after {self.count} checks", f"unexpected {type(error).__name__}: {error}")
        self.done()


def pair(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parser(description):
    """The options every client script takes; each describes what the server holds, not how to check it."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--socket", required=True, help="the server's Unix socket")
    p.add_argument("--value", type=pair, action="append", default=[], metavar="NAME=VALUE",
                   help="GET NAME answers VALUE (the first GET may fetch it)")
    p.add_argument("--lifetime", type=pair, action="append", default=[], metavar="NAME=SECONDS",
                   help="NAME (also given with --value) expires SECONDS after it was fetched")
    p.add_argument("--never", action="append", default=[], metavar="NAME",
                   help="NAME (also given with --value) never expires: TTL and PTTL are -1")
    p.add_argument("--unstored", action="append", default=[], metavar="NAME",
                   help="NAME holds nothing yet: TTL and PTTL are -2")
    p.add_argument("--unknown", default=None, metavar="NAME", help="a name the server does not know: MGET gives nil")
    p.add_argument("--error", type=pair, default=None, metavar="NAME=PREFIX",
                   help="GET NAME is an error reply starting with PREFIX")
    p.add_argument("--subscribe", type=pair, default=None, metavar="NAME=VALUE",
                   help="a subscriber to NAME receives VALUE once the --trigger commands have run")
    p.add_argument("--trigger", action="append", default=[], metavar="COMMAND",
                   help="a command (words split on spaces) sent on another connection to produce the new value")
    p.add_argument("--skip", action="append", default=[], metavar="CHECK",
                   help="leave out a check the server cannot pass (client-setinfo: Redis before 7.2)")
    return p
