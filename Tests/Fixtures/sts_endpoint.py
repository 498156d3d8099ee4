"""A tiny STS-like endpoint for the credential_process tests: answers GetCallerIdentity only for requests signed
(AWS Signature Version 4, checked in full) with credentials the test issued, and carrying their session token.

    python3 sts_endpoint.py ISSUED_FILE SEEN_FILE

ISSUED_FILE holds one issued credential per line: "ACCESS_KEY_ID SECRET_ACCESS_KEY SESSION_TOKEN" (the test's
fake `aws sts` appends to it). Every request's access key id is appended to SEEN_FILE, accepted or not. Prints
the port it listens on (127.0.0.1), then serves until killed.
"""
import hashlib
import hmac
import re
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ISSUED, SEEN = sys.argv[1], sys.argv[2]
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), *SignedHeaders=(?P<signed>[^,]+), *Signature=(?P<signature>[0-9a-f]+)$"
)


def issued():
    with open(ISSUED) as f:
        return {parts[0]: parts[1:] for parts in (line.split() for line in f) if len(parts) == 3}


def sign(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(secret, scope, amz_date, method, path, query, headers, signed, body):
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed.split(";"))
    canonical_query = "&".join(
        sorted(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True))
    )
    canonical = "\n".join([method, path or "/", canonical_query, canonical_headers, signed, hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = sign(sign(sign(sign(("AWS4" + secret).encode(), date), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, code, message):
        self.answer(403, f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                         f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>test</RequestId></ErrorResponse>")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        match = AUTHORIZATION.match(self.headers.get("Authorization", ""))
        if not match:
            return self.refuse("MissingAuthenticationToken", "no SigV4 Authorization header")
        key = match["key"]
        with open(SEEN, "a") as f:
            f.write(key + "\n")
        credentials = issued().get(key)
        if credentials is None:
            return self.refuse("InvalidClientTokenId", f"unknown access key id {key}")
        secret, token = credentials
        if self.headers.get("X-Amz-Security-Token") != token:
            return self.refuse("InvalidClientTokenId", "the session token does not go with the access key id")
        headers = {name.lower(): value for name, value in self.headers.items()}
        path, _, query = self.path.partition("?")
        wanted = expected_signature(secret, match["scope"], headers.get("x-amz-date", ""), "POST", path, query, headers, match["signed"], body)
        if not hmac.compare_digest(wanted, match["signature"]):
            return self.refuse("SignatureDoesNotMatch", "the signature is not made with the secret access key")
        if urllib.parse.parse_qs(body.decode()).get("Action") != ["GetCallerIdentity"]:
            return self.refuse("InvalidAction", "only GetCallerIdentity")
        self.answer(200, '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
                         f"<Arn>arn:aws:sts::123456789012:assumed-role/app/{key}</Arn><UserId>AROATEST:{key}</UserId>"
                         "<Account>123456789012</Account></GetCallerIdentityResult>"
                         "<ResponseMetadata><RequestId>test</RequestId></ResponseMetadata></GetCallerIdentityResponse>")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
