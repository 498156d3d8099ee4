"""A stand-in for a Kubernetes API server over HTTPS, for the exec-credential test: records every request's
Authorization header and path, and answers GET /api (and /version) as kubectl expects.

    python3 bearer_endpoint.py SEEN_FILE CERT KEY

Prints the port it listens on (127.0.0.1), then serves until killed.
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN, CERT, KEY = sys.argv[1:4]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(SEEN, "a") as f:
            f.write(f"{self.headers.get('Authorization', 'none')} {self.path.split('?')[0]}\n")
        if self.path.startswith("/version"):
            body = {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
        else:
            body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
