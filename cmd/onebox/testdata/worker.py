# A worker in another language: accepts HTTP on the inherited socket, fd 3
# (LISTEN_FDS=1), with the standard library only.
import http.server
import os
import socket
import socketserver

assert os.environ.get("LISTEN_FDS") == "1", "onebox passes one socket"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("python worker %s pid %d path %s\n" % (
            os.environ.get("ONEBOX_WORKER_ID"), os.getpid(), self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("", 0), Handler, bind_and_activate=False)
server.socket = socket.socket(fileno=3)
server.serve_forever()
