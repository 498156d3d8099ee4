#!/usr/bin/env python3
"""A real OAuth 2.0 authorization server for tests: Authlib's framework-independent token endpoint
(authlib.oauth2.rfc6749) on the standard library's http.server, on 127.0.0.1.

POST /token serves two grants through Authlib's AuthorizationServer:
    client_credentials  (RFC 6749 §4.4) ClientCredentialsGrant
    refresh_token       (RFC 6749 §6)   RefreshTokenGrant with rotation: every refresh issues a new refresh token
                        and spends the old one. Presenting a spent refresh token again is a *reuse*: it is counted
                        and revokes the whole family (every token descended from the same first one), as OAuth 2.0
                        Security BCP (RFC 9700 §4.14.2) asks; the answer is invalid_grant.
    token exchange      (RFC 8693 §2) a grant written here on Authlib's BaseGrant, which Authlib does not ship: the
                        subject_token must be one /control/subject_token issued, with subject_token_type
                        ...:token-type:access_token or ...:jwt; requested_token_type, when sent, must be
                        ...:access_token; the answer is an access token with issued_token_type. A subject token the
                        server does not know is invalid_grant, a type it does not take invalid_request.
Clients are given with --client ID:METHOD:SECRET, METHOD being the only client authentication the client may use,
client_secret_basic or client_secret_post, or with --jwt-client ID:PUBLIC_KEY_FILE for private_key_jwt (RFC 7523
§2.2, Authlib's JWTBearerClientAssertion): a JWT signed with the private key of that PEM public key (RSA or EC), its
aud the token endpoint or the issuer (http://127.0.0.1:PORT), its jti never seen before (a reuse is counted and
refused with invalid_client). Access tokens live --expires-in seconds.

Control requests, on the same port:
    POST /control/refresh_token   form client_id=ID [scope=S]: starts a token family; answers {"refresh_token": ...}
    POST /control/subject_token   form subject=NAME: a token token exchange accepts as NAME's; answers {"subject_token": ...}
    POST /control/fail            form status=429|503 [retry_after=VALUE] [count=N]: the next N /token requests (all
                                  of them without count) answer that status, with a Retry-After header when given;
                                  429 with {"error": "slow_down", ...}, 503 with a plain text body
    POST /control/answer          form status=N body=TEXT [count=N]: the next N /token requests (all without count)
                                  answer status N with TEXT as a JSON body, Authlib not asked; {refresh_token},
                                  {client_secret} and {subject_token} in TEXT become the request's own values, {form}
                                  its raw (form-encoded) body and {authorization} its Authorization header (an
                                  endpoint that echoes what it was sent, or answers what no real one should);
                                  {invalid_utf8} becomes the bytes FF FE, which no UTF-8 text holds
    POST /control/ok              back to answering tokens
    POST /control/omit_expires_in form omit=1|0: token answers without expires_in
    POST /control/slow            form seconds=S: each /token request waits S seconds before it is handled
    POST /control/replay          sends the last /token request again, unchanged, and answers {"status", "error",
                                  "error_description"} of Authlib's answer (never its tokens)
    GET  /control/counters        {"arrived" (before the slow wait), "requests", "issued", "refreshes", "reuses", "revoked_families", "jti_reuses"}
    GET  /control/last            the last /token request: its form (client_secret, client_assertion and
                                  refresh_token redacted), the client assertion's header and claims (unverified),
                                  the client authentication Authlib accepted, the subject a token exchange
                                  acted for, and the answer's status

When it listens it prints its port on stdout. It exits on SIGTERM or SIGINT, when its parent process exits, or
after --lifetime seconds.

Usage: oauth_server.py [--client ID:METHOD:SECRET ...] [--jwt-client ID:PUBLIC_KEY_FILE ...] [--expires-in S] [--lifetime S]
"""
import argparse
import base64
import hmac
import itertools
import json
import os
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

try:
    from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request, TokenMixin, grants
    from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, UnauthorizedClientError
    from authlib.oauth2.rfc6750 import BearerTokenGenerator
    from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from joserfc.jwk import import_key
except ImportError as error:
    sys.exit(f"oauth_server.py: Authlib is not installed ({error}); run scripts/test.sh, which installs it into .build/python-clients")

METHODS = ("client_secret_basic", "client_secret_post")
PRIVATE_KEY_JWT = "private_key_jwt"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = (ACCESS_TOKEN_TYPE, "urn:ietf:params:oauth:token-type:jwt")


class Client(ClientMixin):
    def __init__(self, client_id, method, secret, public_key=None):
        self.client_id = client_id
        self.method = method
        self.secret = secret
        self.public_key = public_key  # a joserfc key, for private_key_jwt

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return hmac.compare_digest(self.secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint == "token" and method == self.method

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type in ("client_credentials", "refresh_token", TOKEN_EXCHANGE)


class RefreshToken(TokenMixin):
    """One refresh token: its client, scope and family; `spent` once it was exchanged."""

    def __init__(self, client_id, scope, family):
        self.client_id = client_id
        self.scope = scope
        self.family = family
        self.spent = False

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return 0

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.spent


class Store:
    """Clients, refresh tokens, families and counters; every request runs under `lock`."""

    def __init__(self, clients, expires_in):
        self.lock = threading.Lock()
        self.clients = clients
        self.expires_in = expires_in
        self.refresh_tokens = {}
        self.revoked_families = set()
        self.families = itertools.count(1)
        self.counters = {"arrived": 0, "requests": 0, "issued": 0, "refreshes": 0, "reuses": 0, "jti_reuses": 0}
        self.audiences = []  # what a client assertion's aud may be, once the port is known
        self.jtis = set()  # (client_id, jti) of every client assertion accepted
        self.last_lists = None  # the last /token request's form, for /control/replay
        self.subject_tokens = {}  # subject token -> the subject it stands for
        self.fail = None  # (status, retry_after or None, remaining or None)
        self.answer = None  # (status, body, remaining or None)
        self.omit_expires_in = False
        self.slow = 0.0
        self.last = {}

    def start_family(self, client_id, scope):
        token = "rt-" + secrets.token_urlsafe(24)
        self.refresh_tokens[token] = RefreshToken(client_id, scope, next(self.families))
        return token


class Request(OAuth2Request):
    """An http.server request as Authlib sees it."""

    class Payload(OAuth2Payload):
        def __init__(self, lists):
            self._lists = lists
            self._data = {key: values[0] for key, values in lists.items()}

        @property
        def data(self):
            return self._data

        @property
        def datalist(self):
            return self._lists

    def __init__(self, uri, headers, lists):
        super().__init__("POST", uri, headers=headers)
        self.payload = Request.Payload(lists)

    @property
    def form(self):
        return self.payload.data

    @property
    def args(self):
        return {}


def make_server(store):
    class PrivateKeyJWT(JWTBearerClientAssertion):
        """private_key_jwt as OpenID Connect Core §9 names it; Authlib verifies signature, iss = sub, aud and exp."""

        CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

        def get_audiences(self):
            return store.audiences

        def resolve_client_public_key(self, client):
            return client.public_key

        def validate_jti(self, claims, jti):
            seen = (claims["sub"], jti)
            if seen in store.jtis:
                store.counters["jti_reuses"] += 1
                return False
            store.jtis.add(seen)
            return True

    class ClientCredentialsGrant(grants.ClientCredentialsGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS) + [PRIVATE_KEY_JWT]

    class RefreshTokenGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS) + [PRIVATE_KEY_JWT]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

        def authenticate_refresh_token(self, refresh_token):
            token = store.refresh_tokens.get(refresh_token)
            if token is None:
                raise InvalidGrantError("unknown refresh token")
            if token.family in store.revoked_families:
                raise InvalidGrantError("refresh token revoked: its family was revoked after a reuse")
            if token.spent:
                store.counters["reuses"] += 1
                store.revoked_families.add(token.family)
                raise InvalidGrantError("refresh token reused: it was already exchanged, so its whole family is revoked")
            return token

        def authenticate_user(self, refresh_token):
            return f"family-{refresh_token.family}"

        def revoke_old_credential(self, refresh_token):
            refresh_token.spent = True

    class TokenExchangeGrant(grants.BaseGrant, grants.TokenEndpointMixin):
        """RFC 8693 §2.1–2.2: a subject token for an access token."""

        GRANT_TYPE = TOKEN_EXCHANGE
        TOKEN_ENDPOINT_AUTH_METHODS = list(METHODS) + [PRIVATE_KEY_JWT]

        def validate_token_request(self):
            client = self.authenticate_token_endpoint_client()
            if not client.check_grant_type(self.GRANT_TYPE):
                raise UnauthorizedClientError(f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'")
            form = self.request.payload.data
            subject_token, subject_token_type = form.get("subject_token"), form.get("subject_token_type")
            if not subject_token or not subject_token_type:
                raise InvalidRequestError("subject_token and subject_token_type are required")
            if subject_token_type not in SUBJECT_TOKEN_TYPES:
                raise InvalidRequestError(f"unsupported subject_token_type {subject_token_type}")
            if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
                raise InvalidRequestError("only access tokens are issued")
            subject = store.subject_tokens.get(subject_token)
            if subject is None:
                raise InvalidGrantError("subject_token is not valid")
            self.request.client = client
            self.request.user = subject
            store.last["subject"] = subject
            self.validate_requested_scope()

        def create_token_response(self):
            token = self.generate_token(user=self.request.user, scope=self.request.payload.scope, include_refresh_token=False)
            token["issued_token_type"] = ACCESS_TOKEN_TYPE
            self.save_token(token)
            return 200, token, self.TOKEN_RESPONSE_HEADER

    class Server(AuthorizationServer):
        def query_client(self, client_id):
            return store.clients.get(client_id)

        def save_token(self, token, request):
            store.counters["issued"] += 1
            if request.refresh_token is not None:
                store.counters["refreshes"] += 1
            if "refresh_token" in token:
                parent = request.refresh_token
                store.refresh_tokens[token["refresh_token"]] = RefreshToken(
                    request.client.get_client_id(), token.get("scope", ""), parent.family)
            if store.omit_expires_in:
                token.pop("expires_in", None)

        def send_signal(self, name, *args, **kwargs):
            pass

        def create_oauth2_request(self, request):
            return request

        def handle_response(self, status, body, headers):
            return status, body, headers

    counter = itertools.count(1)
    server = Server()
    server.register_token_generator("default", BearerTokenGenerator(
        access_token_generator=lambda **_: f"at-{next(counter)}-{secrets.token_urlsafe(8)}",
        refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(24),
        expires_generator=lambda client, grant_type: store.expires_in,
    ))
    server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWT())
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(TokenExchangeGrant)
    return server


def handler(store, authorization_server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def reply(self, status, body, headers=(("Content-Type", "application/json"),)):
            data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up

        def form(self):
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode() if 0 < length <= 1 << 20 else ""
            self.raw_form = text
            return parse_qs(text, keep_blank_values=True)

        def do_GET(self):
            with store.lock:
                if self.path == "/control/counters":
                    self.reply(200, dict(store.counters, revoked_families=len(store.revoked_families)))
                elif self.path == "/control/last":
                    self.reply(200, store.last)
                else:
                    self.reply(404, {"error": "not_found"})

        def do_POST(self):
            lists = self.form()
            if self.path == "/token":
                with store.lock:
                    delay = store.slow
                    store.counters["arrived"] += 1
                time.sleep(delay)  # outside the lock: control requests are answered meanwhile
            with store.lock:
                if self.path == "/token":
                    self.token(lists)
                elif self.path == "/control/refresh_token":
                    client_id = lists.get("client_id", [""])[0]
                    if client_id not in store.clients:
                        self.reply(400, {"error": "unknown client"})
                        return
                    self.reply(200, {"refresh_token": store.start_family(client_id, lists.get("scope", [""])[0])})
                elif self.path == "/control/fail":
                    status = int(lists.get("status", ["503"])[0])
                    count = int(lists["count"][0]) if "count" in lists else None
                    store.fail = (status, lists.get("retry_after", [None])[0], count)
                    self.reply(200, {"fail": status})
                elif self.path == "/control/answer":
                    count = int(lists["count"][0]) if "count" in lists else None
                    store.answer = (int(lists.get("status", ["200"])[0]), lists.get("body", [""])[0], count)
                    self.reply(200, {"answer": store.answer[0]})
                elif self.path == "/control/subject_token":
                    token = "st-" + secrets.token_urlsafe(24)
                    store.subject_tokens[token] = lists.get("subject", ["someone"])[0]
                    self.reply(200, {"subject_token": token})
                elif self.path == "/control/replay":
                    self.replay()
                elif self.path == "/control/ok":
                    store.fail = None
                    store.answer = None
                    self.reply(200, {"fail": None})
                elif self.path == "/control/slow":
                    store.slow = float(lists.get("seconds", ["0"])[0])
                    self.reply(200, {"slow": store.slow})
                elif self.path == "/control/omit_expires_in":
                    store.omit_expires_in = lists.get("omit", ["1"])[0] == "1"
                    self.reply(200, {"omit_expires_in": store.omit_expires_in})
                else:
                    self.reply(404, {"error": "not_found"})

        def token(self, lists):
            store.counters["requests"] += 1
            store.last_lists = lists
            redacted = {key: ["<redacted>" if key in ("client_secret", "client_assertion", "refresh_token", "subject_token") else v for v in values]
                        for key, values in lists.items()}
            store.last = {"form": redacted, "assertion": unverified_assertion(lists), "auth_method": None, "subject": None, "status": None}
            if store.fail is not None:
                status, retry_after, remaining = store.fail
                if remaining is not None:
                    store.fail = (status, retry_after, remaining - 1) if remaining > 1 else None
                headers = [("Retry-After", retry_after)] if retry_after else []
                store.last["status"] = status
                if status == 429:
                    self.reply(status, {"error": "slow_down", "error_description": "too many token requests"},
                               [("Content-Type", "application/json")] + headers)
                else:
                    self.reply(status, "the token service is unavailable\n", [("Content-Type", "text/plain")] + headers)
                return
            if store.answer is not None:
                status, body, remaining = store.answer
                if remaining is not None:
                    store.answer = (status, body, remaining - 1) if remaining > 1 else None
                for key in ("refresh_token", "client_secret", "subject_token"):
                    body = body.replace("{" + key + "}", lists.get(key, [""])[0])
                body = body.replace("{form}", self.raw_form).replace("{authorization}", self.headers.get("Authorization", ""))
                store.last["status"] = status
                self.reply(status, body.encode().replace(b"{invalid_utf8}", b"\xff\xfe"), [("Content-Type", "application/json")])
                return
            request = Request(f"http://127.0.0.1:{self.server.server_address[1]}/token", self.headers, lists)
            status, body, headers = authorization_server.create_token_response(request)
            store.last["auth_method"] = request.auth_method
            store.last["status"] = status
            self.reply(status, body, headers)

        def replay(self):
            if store.last_lists is None:
                self.reply(409, {"error": "no token request yet"})
                return
            request = Request(f"http://127.0.0.1:{self.server.server_address[1]}/token", self.headers, store.last_lists)
            status, body, _ = authorization_server.create_token_response(request)
            self.reply(200, {"status": status, "error": body.get("error"), "error_description": body.get("error_description")})

    return Handler


def unverified_assertion(lists):
    """The header and claims of the request's client assertion, decoded without checking anything, or None."""
    try:
        header, claims = lists["client_assertion"][0].split(".")[:2]
        decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return {"header": decode(header), "claims": decode(claims)}
    except (KeyError, ValueError):
        return None


def public_key(path):
    """The joserfc key in the PEM file `path`, typed by what it holds (RSA or EC)."""
    with open(path, "rb") as file:
        data = file.read()
    return import_key(data, "RSA" if isinstance(load_pem_public_key(data), rsa.RSAPublicKey) else "EC")


def main():
    parser = argparse.ArgumentParser(description="An OAuth 2.0 authorization server for tests, built on Authlib.")
    parser.add_argument("--client", action="append", default=[], help="ID:METHOD:SECRET, METHOD one of " + ", ".join(METHODS))
    parser.add_argument("--jwt-client", action="append", default=[], help="ID:PUBLIC_KEY_FILE, a client using private_key_jwt")
    parser.add_argument("--expires-in", type=int, default=60, help="expires_in of each access token, seconds")
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    args = parser.parse_args()
    parent = os.getppid()
    if parent == 1:
        sys.exit("oauth_server.py: the process that started it has already exited")
    clients = {}
    for spec in args.client:
        client_id, method, secret = (spec.split(":", 2) + ["", ""])[:3]
        if not client_id or method not in METHODS or not secret:
            sys.exit(f"oauth_server.py: --client {spec!r}: expected ID:METHOD:SECRET with METHOD one of {', '.join(METHODS)}")
        clients[client_id] = Client(client_id, method, secret)
    for spec in args.jwt_client:
        client_id, _, path = spec.partition(":")
        if not client_id or not path:
            sys.exit(f"oauth_server.py: --jwt-client {spec!r}: expected ID:PUBLIC_KEY_FILE")
        clients[client_id] = Client(client_id, PRIVATE_KEY_JWT, "", public_key(path))
    store = Store(clients, args.expires_in)
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler(store, make_server(store)))
    http.daemon_threads = True
    port = http.server_address[1]
    store.audiences = [f"http://127.0.0.1:{port}/token", f"http://127.0.0.1:{port}"]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
    print(http.server_address[1], flush=True)
    deadline = time.monotonic() + args.lifetime
    while not stop.is_set() and os.getppid() == parent and time.monotonic() < deadline:
        stop.wait(0.1)
    os._exit(0)


if __name__ == "__main__":
    main()
