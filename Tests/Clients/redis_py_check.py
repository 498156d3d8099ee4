#!/usr/bin/env python3
"""redis-py, the newest (8.x), against a Redis-protocol server on a Unix socket.

Without --protocol the client is left at its default, RESP3 for redis-py 8: it opens every connection with
HELLO 3, CLIENT SETNAME (client_name=) and CLIENT SETINFO LIB-NAME / LIB-VER. With --protocol 2 it sends no HELLO.
Prints one line per check and exits 1 at the first failure. Run by RedisClientTests.swift with
PYTHONPATH=.build/python-clients (scripts/test.sh installs redis-py there).
"""

import sys
import time

import checks

try:
    import redis
except ImportError as error:
    print(f"FAIL redis-py: cannot import redis ({error}); scripts/test.sh installs it into .build/python-clients, "
          "which must be on PYTHONPATH", flush=True)
    sys.exit(1)

CLIENT_NAME = "expirable-test"


def main():
    p = checks.parser(__doc__.splitlines()[0])
    p.add_argument("--protocol", type=int, choices=[2, 3], default=None, help="RESP version (default: redis-py's)")
    args = p.parse_args()
    protocol = args.protocol or 3
    c = checks.Checks(f"redis-py {redis.__version__} {'RESP' + str(args.protocol) if args.protocol else 'default'}")

    options = dict(unix_socket_path=args.socket, client_name=CLIENT_NAME, db=0, socket_timeout=10,
                   socket_connect_timeout=10)
    if args.protocol:
        options["protocol"] = args.protocol
    c.run(lambda c: check(c, args, options, protocol))


def check(c, args, options, protocol):
    r = redis.Redis(**options)
    c.equal("PING", r.ping(), True)
    connection = r.connection_pool.get_connection()
    handshake = connection.handshake_metadata  # the reply to the HELLO redis-py sent on connect; None without one
    r.connection_pool.release(connection)
    c.equal("protocol negotiated on connect", connection.protocol, protocol)
    if protocol == 3:
        c.equal("HELLO 3 sent on connect: proto in the reply map", handshake.get(b"proto") if handshake else None, 3)
    else:
        c.equal("no HELLO sent on connect", handshake, None)
    hello = r.execute_command("HELLO", protocol)
    if isinstance(hello, list):  # RESP2 has no maps: the reply is a flat list of keys and values
        hello = dict(zip(hello[::2], hello[1::2]))
    c.equal(f"HELLO {protocol}: proto", hello.get(b"proto"), protocol)
    # redis-py decodes this one reply in RESP2 but not in RESP3.
    c.equal("CLIENT GETNAME (client_name= sent CLIENT SETNAME on connect)", text(r.client_getname()), CLIENT_NAME)
    client_id = r.client_id()
    c.true("CLIENT ID", isinstance(client_id, int) and client_id > 0, "a positive integer", client_id)
    if "client-setinfo" not in args.skip:
        c.equal("CLIENT SETINFO LIB-NAME", r.client_setinfo("LIB-NAME", "expirable-check"), True)
    c.equal("SELECT 0 (db=0)", r.execute_command("SELECT", 0), True)
    c.equal("ECHO", r.echo("hello"), b"hello")

    values = {name: value.encode() for name, value in args.value}
    for name, value in values.items():
        c.equal(f"GET {name}", r.get(name), value)
    names = list(values)
    if args.unknown:
        c.equal(f"MGET {' '.join(names)} {args.unknown}", r.mget(names + [args.unknown]), list(values.values()) + [None])
    for name, seconds in args.lifetime:
        seconds = int(seconds)
        ttl = r.ttl(name)
        c.true(f"TTL {name} (seconds)", seconds - 5 <= ttl <= seconds, f"{seconds - 5}..{seconds}", ttl)
        pttl = r.pttl(name)
        c.true(f"PTTL {name} (ms)", (seconds - 5) * 1000 < pttl <= seconds * 1000,
               f"{(seconds - 5) * 1000}..{seconds * 1000}", pttl)
    for name in args.never:
        c.equal(f"TTL {name} (never expires)", r.ttl(name), -1)
        c.equal(f"PTTL {name} (never expires)", r.pttl(name), -1)
    for name in args.unstored:
        c.equal(f"TTL {name} (nothing stored)", r.ttl(name), -2)
        c.equal(f"PTTL {name} (nothing stored)", r.pttl(name), -2)
    for name in names:
        c.equal(f"EXISTS {name}", r.exists(name), 1)
        c.equal(f"TYPE {name}", r.type(name), b"string")
    if args.unknown:
        c.equal(f"EXISTS {args.unknown}", r.exists(args.unknown), 0)
        c.equal(f"TYPE {args.unknown}", r.type(args.unknown), b"none")

    with r.pipeline() as pipe:  # transaction=True by default: MULTI, the GETs, EXEC
        c.equal("pipeline() is a transaction (MULTI/EXEC)", pipe.transaction, True)
        for name in names:
            pipe.get(name)
        pipe.exists(*names)
        c.equal(f"pipeline() GET {' '.join(names)}, EXISTS", pipe.execute(), list(values.values()) + [len(names)])
    with r.pipeline(transaction=False) as pipe:
        for _ in range(50):
            for name in names:
                pipe.get(name)
        c.equal(f"pipeline(transaction=False) 50 x GET {' '.join(names)}", pipe.execute(), list(values.values()) * 50)

    if args.error:
        name, prefix = args.error
        c.raises(f"GET {name} raises ResponseError", lambda: r.get(name), redis.exceptions.ResponseError, prefix)
        if names:
            c.equal(f"GET {names[0]} after the error (connection still usable)", r.get(names[0]), values[names[0]])

    if args.subscribe:
        subscribe(c, args, options)
    r.close()


def text(reply):
    return reply.decode() if isinstance(reply, bytes) else reply


def subscribe(c, args, options):
    name, value = args.subscribe
    pubsub = redis.Redis(**options).pubsub()
    pubsub.subscribe(name)
    confirmation = next_message(pubsub, lambda m: m["type"] == "subscribe")
    c.equal(f"SUBSCRIBE {name}: confirmation", (confirmation["channel"], confirmation["data"]) if confirmation else None,
            (name.encode(), 1))
    other = redis.Redis(**options)
    for command in args.trigger:
        other.execute_command(*command.split())
    other.close()
    message = next_message(pubsub, lambda m: m["type"] == "message")
    c.equal(f"SUBSCRIBE {name}: message after {'; '.join(args.trigger) or 'waiting'}",
            (message["channel"], message["data"]) if message else None, (name.encode(), value.encode()))
    pubsub.unsubscribe(name)
    confirmation = next_message(pubsub, lambda m: m["type"] == "unsubscribe")
    c.equal(f"UNSUBSCRIBE {name}: confirmation", (confirmation["channel"], confirmation["data"]) if confirmation else None,
            (name.encode(), 0))
    pubsub.close()


def next_message(pubsub, wanted, seconds=10):
    """The first message `wanted` accepts within `seconds`, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None and wanted(message):
            return message
    return None


if __name__ == "__main__":
    main()
