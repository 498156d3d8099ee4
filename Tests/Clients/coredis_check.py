#!/usr/bin/env python3
"""coredis (asyncio/anyio, not derived from redis-py) against a Redis-protocol server on a Unix socket.

coredis speaks only RESP3. On connect it sends HELLO 3 and reads `proto` (must be 3), `version` and `id` from the
reply map; when `version` >= "7.2" (a string comparison) it sends CLIENT SETINFO LIB-NAME / LIB-VER, then
CLIENT SETNAME for client_name=. Prints one line per check and exits 1 at the first failure. Run by
RedisClientTests.swift with PYTHONPATH=.build/python-clients (scripts/test.sh installs coredis there).
"""

import sys

import checks

try:
    import anyio
    import coredis
    import coredis.exceptions
    import coredis.parser
except ImportError as error:
    print(f"FAIL coredis: cannot import coredis ({error}); scripts/test.sh installs it into .build/python-clients, "
          "which must be on PYTHONPATH", flush=True)
    sys.exit(1)

CLIENT_NAME = "expirable-coredis"


def main():
    args = checks.parser(__doc__.splitlines()[0]).parse_args()
    c = checks.Checks(f"coredis {coredis.__version__}")
    c.run(lambda c: anyio.run(check, c, args))


async def check(c, args):
    client = coredis.Redis(unix_socket_path=args.socket, client_name=CLIENT_NAME, connect_timeout=10,
                           stream_timeout=10)
    async with client:
        c.equal("PING", await client.ping(), b"PONG")
        c.equal("CLIENT GETNAME (client_name= sent CLIENT SETNAME after HELLO 3)", await client.client_getname(),
                CLIENT_NAME.encode())
        info = await client.info()
        c.true("INFO: fields coredis reads (those after a '# Section' line)", len(info) > 0, "some fields", info)
        version = client.server_version
        c.true("HELLO 3 reply: a server version coredis can parse", version is not None, "a version", str(version))

        values = {name: value.encode() for name, value in args.value}
        names = list(values)
        for name, value in values.items():
            c.equal(f"GET {name}", await client.get(name), value)
        if args.unknown:
            c.equal(f"MGET {' '.join(names)} {args.unknown}", list(await client.mget(names + [args.unknown])),
                    list(values.values()) + [None])
        for name, seconds in args.lifetime:
            seconds = int(seconds)
            ttl = await client.ttl(name)
            c.true(f"TTL {name} (seconds)", seconds - 5 <= ttl <= seconds, f"{seconds - 5}..{seconds}", ttl)

        for transaction in (False, True):
            async with client.pipeline(transaction=transaction) as pipe:
                gets = [pipe.get(name) for _ in range(20) for name in names]
                exists = pipe.exists(names)
            c.equal(f"pipeline(transaction={transaction}) 20 x GET {' '.join(names)}",
                    [await get for get in gets], list(values.values()) * 20)
            c.equal(f"pipeline(transaction={transaction}) EXISTS {' '.join(names)}", await exists, len(names))

        if args.error:
            name, prefix = args.error
            await raises(c, f"GET {name} raises ResponseError", client.get(name), prefix)
            if names:
                c.equal(f"GET {names[0]} after the error (connection still usable)", await client.get(names[0]),
                        values[names[0]])


async def raises(c, what, call, prefix):
    """coredis turns the error words it knows into exception classes and drops them from the message
    (WRONGTYPE -> WrongTypeError); others (NOTFOUND, FETCH, TIMEOUT) stay at the start of a ResponseError's."""
    known = coredis.parser.Parser.EXCEPTION_CLASSES.get(prefix)
    try:
        got = await call
    except coredis.exceptions.ResponseError as error:
        message = str(error)
        if message.startswith(prefix) or (isinstance(known, type) and isinstance(error, known)):
            c.passed(what, f"{type(error).__name__}: {message}")
            return
        c.fail(what, f"expected a ResponseError starting {prefix!r}, got {type(error).__name__}: {message!r}")
    c.fail(what, f"expected a ResponseError starting {prefix!r}, got the reply {got!r}")


if __name__ == "__main__":
    main()
