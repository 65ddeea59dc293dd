# A single-threaded worker, stdlib only: it serves one connection at a time
# and closes it after the response, as a sync gunicorn worker does, so one
# slow client holds it whole unless the proxy buffers. (Keep-alive would
# make an idle pooled connection hold the worker too: see docs/proxy.md.)
import http.server
import os
import socket

assert os.environ.get("LISTEN_FDS") == "1", "onebox passes one socket"

BIG = b"x" * (4 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(BIG if self.path == "/big" else b"hello\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(b"got %d\n" % len(self.rfile.read(n)))

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
