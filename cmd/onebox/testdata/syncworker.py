# A single-threaded HTTP/1.1 keep-alive worker, stdlib only: it serves one
# connection at a time, to its end, before it accepts the next, so one slow
# client holds it whole unless the proxy buffers, and so does an idle
# kept-alive connection unless the proxy opens no more connections than
# there are workers (APP_WORKER_CONNECTIONS=1).
import http.server
import os
import socket

assert os.environ.get("LISTEN_FDS") == "1", "onebox passes one socket"

BIG = b"x" * (4 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.requests += 1
        if self.path == "/stats":  # this worker's connections and requests
            self.reply(b"%d %d\n" % (self.server.connections, self.server.requests))
            return
        self.reply(BIG if self.path == "/big" else b"hello\n")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.reply(b"got %d\n" % len(self.rfile.read(n)))

    def log_message(self, *args):
        pass


class Server(http.server.HTTPServer):
    connections = 0
    requests = 0

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)


server = Server(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
