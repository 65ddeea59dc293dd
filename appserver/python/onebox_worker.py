"""onebox_worker: serve a WSGI application as a onebox pool worker.

    python3 -m onebox_worker [--threads N] module:app

The Python side of the onebox worker protocol (appserver/worker/protocol.go),
with the standard library only (Python 3.9 or later), in this one file:

- HTTP/1.1 with keep-alive on the inherited app socket (fd 3, LISTEN_FDS=1;
  run alone it listens on :$PORT, default 8000); malformed input gets 400;
- on fd 4 (ONEBOX_HEARTBEAT_FD): "hello" before the app is imported, "ready"
  once it is, "beat SERVED INFLIGHT [AGE_MS METHOD URI]" every
  min(ONEBOX_TIMEOUT/4, 1s), and "retire SERVED" at ONEBOX_MAX_REQUESTS (plus
  a random part of ONEBOX_MAX_REQUESTS_JITTER);
- with one thread (the default, as gunicorn's sync worker) it says
  "hello sync": the master then kills a request that runs longer than
  APP_TIMEOUT (SIGABRT, which faulthandler turns into a Python traceback on
  stderr, then SIGKILL); with --threads N (or ONEBOX_THREADS) above 1 only a
  silent heartbeat is a hang, as gunicorn's gthread worker;
- a graceful drain on SIGTERM, SIGQUIT or SIGINT, and on "drain MS" on the
  control pipe (fd 5, ONEBOX_CONTROL_FD), within ONEBOX_GRACEFUL_TIMEOUT;
- X-Forwarded-Proto, X-Real-IP / X-Forwarded-For and X-Forwarded-Host, which
  onebox sets, become wsgi.url_scheme, REMOTE_ADDR and HTTP_HOST;
- an exception in the app is answered 500 and logged as one JSON line with
  its traceback; an app that cannot be imported exits 3 (a boot failure);
- onebox's probe, "OPTIONS *", is answered here and never reaches the app.
"""

import faulthandler
import importlib
import json
import os
import random
import re
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

__all__ = ["main", "Worker", "Options", "load_app", "parse_duration"]

EXIT_BOOT_ERROR = 3  # gunicorn's WORKER_BOOT_ERROR: the pool halts
MAX_HEAD = 64 * 1024  # request line and headers together
MAX_HEADERS = 100
READ_TIMEOUT = 30.0  # a request onebox began to send must arrive within this

STATUS_TEXT = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
               500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported"}

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text):
    """Seconds in a Go duration such as "30s", "1m30s" or "250ms"."""
    text = text.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError("%r is not a duration such as 30s" % text)
    return total


class Options:
    """The worker's settings, from the protocol's environment (see from_env)."""

    def __init__(self):
        self.listen_fd = None  # inherited socket, else port
        self.port = 8000
        self.heartbeat_fd = None
        self.control_fd = None
        self.timeout = 30.0
        self.interval = 1.0
        self.graceful_timeout = 30.0
        self.max_requests = 0  # jitter applied
        self.threads = 1

    @classmethod
    def from_env(cls, env, threads=None):
        """Options from env (a mapping); raises ValueError naming every bad variable."""
        o, errs = cls(), []

        def num(name, default=0, least=0):
            v = env.get(name, "")
            if v == "":
                return default
            try:
                n = int(v)
            except ValueError:
                n = least - 1
            if n < least:
                errs.append("%s=%r: want a whole number of at least %d" % (name, v, least))
                return default
            return n

        def dur(name, default):
            v = env.get(name, "")
            if v == "":
                return default
            try:
                d = parse_duration(v)
            except ValueError:
                d = 0
            if d <= 0:
                errs.append("%s=%r: want a positive duration such as 30s" % (name, v))
                return default
            return d

        o.timeout = dur("ONEBOX_TIMEOUT", 30.0)
        o.interval = min(max(o.timeout / 4, 0.01), 1.0)
        o.graceful_timeout = dur("ONEBOX_GRACEFUL_TIMEOUT", 30.0)
        limit, jitter = num("ONEBOX_MAX_REQUESTS"), num("ONEBOX_MAX_REQUESTS_JITTER")
        o.max_requests = limit + random.randint(0, jitter) if limit > 0 else 0
        o.threads = threads if threads is not None else num("ONEBOX_THREADS", 1, 1)
        if o.threads < 1:
            errs.append("--threads %d: want 1 or more" % o.threads)
        o.port = num("PORT", 8000, 1)
        if env.get("ONEBOX_HEARTBEAT_FD"):
            o.heartbeat_fd = num("ONEBOX_HEARTBEAT_FD", None, 3)
        if env.get("ONEBOX_CONTROL_FD"):
            o.control_fd = num("ONEBOX_CONTROL_FD", None, 3)
        fds = env.get("LISTEN_FDS", "")
        if fds:
            if num("LISTEN_FDS", 0, 1) >= 1:
                pid = env.get("LISTEN_PID", "")
                if pid and pid != str(os.getpid()):
                    errs.append("LISTEN_PID=%s is not this process (%d): the socket is meant for another"
                                % (pid, os.getpid()))
                o.listen_fd = 3
        if errs:
            raise ValueError("; ".join(errs))
        return o


def log(level, message, **fields):
    """One JSON line on stderr: the master embeds it in its own log line."""
    fields.update(level=level, message=message)
    try:
        sys.stderr.write(json.dumps(fields) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def load_app(spec):
    """The WSGI callable named by "module:attribute" (default attribute: app)."""
    module, _, attr = spec.partition(":")
    if not module:
        raise ValueError("%r: want module:app" % spec)
    obj = importlib.import_module(module)
    for name in (attr or "application").split("."):
        if attr == "" and not hasattr(obj, name):
            name = "app"
        obj = getattr(obj, name)
    if not callable(obj):
        raise TypeError("%s is not callable: want a WSGI application" % spec)
    return obj


class BadRequest(Exception):
    """Input that is not HTTP/1.x: answered with status, then the connection closes."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status


class Gone(Exception):
    """onebox closed the connection, or a read or write on it failed."""


class Conn:
    """One connection from onebox, with its own read buffer."""

    __slots__ = ("sock", "buf", "peer", "fd")

    def __init__(self, sock, peer):
        self.sock, self.buf, self.peer = sock, bytearray(), peer
        self.fd = sock.fileno()

    def fill(self):
        try:
            data = self.sock.recv(65536)
        except OSError as e:
            raise Gone(str(e))
        if not data:
            raise EOFError
        self.buf += data

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Gone(str(e))

    def read_head(self):
        """The request line and headers up to the blank line; None at a clean EOF."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[:end + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, "request head too large")
            try:
                self.fill()
            except EOFError:
                if self.buf.strip():
                    raise BadRequest(400, "connection closed inside the request head")
                return None

    def read(self, n):
        """Up to n bytes (at least one), from the buffer first."""
        if not self.buf:
            self.fill()
        chunk = bytes(self.buf[:n])
        del self.buf[:n]
        return chunk

    def readline(self, limit):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0 or len(self.buf) >= limit:
                n = i + 1 if 0 <= i < limit else limit
                line = bytes(self.buf[:n])
                del self.buf[:n]
                return line
            self.fill()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Input:
    """wsgi.input: the request body, at most length bytes of it (PEP 3333)."""

    def __init__(self, conn, length):
        self.conn, self.left = conn, length

    def read(self, size=-1):
        if size is None or size < 0:
            size = self.left
        out = []
        while size > 0 and self.left > 0:
            try:
                chunk = self.conn.read(min(size, self.left))
            except EOFError:
                raise BadRequest(400, "body shorter than Content-Length")
            out.append(chunk)
            size -= len(chunk)
            self.left -= len(chunk)
        return b"".join(out)

    def readline(self, size=-1):
        if self.left <= 0:
            return b""
        limit = self.left if size is None or size < 0 else min(size, self.left)
        try:
            line = self.conn.readline(limit)
        except EOFError:
            raise BadRequest(400, "body shorter than Content-Length")
        self.left -= len(line)
        return line

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


def read_chunked(conn, limit=1 << 30):
    """A chunked request body, whole."""
    body = bytearray()
    while True:
        line = conn.readline(1024)
        size = line.split(b";", 1)[0].strip()
        try:
            n = int(size, 16)
        except ValueError:
            raise BadRequest(400, "bad chunk size")
        if n == 0:
            while conn.readline(8192).strip():  # trailers
                pass
            return bytes(body)
        while n > 0:
            chunk = conn.read(n)
            body += chunk
            n -= len(chunk)
        if len(body) > limit:
            raise BadRequest(413, "body too large")
        if conn.readline(2).strip():
            raise BadRequest(400, "bad chunk end")


class Request:
    """One parsed request head."""

    __slots__ = ("method", "target", "version", "headers", "started", "keep_alive")

    def __init__(self, head):
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest(400, "malformed request line")
        if not version.startswith("HTTP/1."):
            raise BadRequest(505 if version.startswith("HTTP/") else 400, "not HTTP/1.x")
        if not method.isalpha() or not target:
            raise BadRequest(400, "malformed request line")
        if len(lines) > MAX_HEADERS + 1:
            raise BadRequest(431, "too many headers")
        headers = []
        for raw in lines[1:]:
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise BadRequest(400, "malformed header line")
            headers.append((name.lower(), value.strip()))
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.started = time.monotonic()
        conn = ",".join(v for k, v in headers if k == "connection").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in conn
        else:
            self.keep_alive = "close" not in conn

    def get(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default


class Worker:
    """The worker: a selector over the socket, idle connections and the pipes."""

    def __init__(self, app, opts, listener):
        self.app, self.opts, self.listener = app, opts, listener
        self.served = 0
        self.inflight = {}  # id(request) -> request
        self.lock = threading.Lock()
        self.draining = False
        self.drain_deadline = None
        self.retired = False
        self.exit_code = 0
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.done = []  # connections handed back by the threads
        self.busy = 0  # connections being served
        self.pool = ThreadPoolExecutor(opts.threads) if opts.threads > 1 else None
        self.stop_beat = threading.Event()
        self.date = (0, b"")

    # --- the heartbeat pipe -------------------------------------------------

    def say(self, line):
        if self.opts.heartbeat_fd is None:
            return
        try:
            os.write(self.opts.heartbeat_fd, line.encode("latin-1", "replace") + b"\n")
        except OSError:
            self.opts.heartbeat_fd = None  # the master is gone, or closed it

    def beat_line(self):
        with self.lock:
            served, reqs = self.served, list(self.inflight.values())
        line = "beat %d %d" % (served, len(reqs))
        if reqs:
            oldest = min(reqs, key=lambda r: r.started)
            age = int((time.monotonic() - oldest.started) * 1000)
            uri = oldest.target.replace(" ", "%20")[:512]
            line += " %d %s %s" % (age, oldest.method, uri)
        return line

    def beat_loop(self):
        while not self.stop_beat.wait(self.opts.interval):
            self.say(self.beat_line())

    # --- the loop -------------------------------------------------------------

    def wake(self):
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def on_signal(self, signum, frame):
        self.start_drain(self.opts.graceful_timeout)

    def start_drain(self, budget):
        deadline = time.monotonic() + budget
        if self.drain_deadline is None or deadline < self.drain_deadline:
            self.drain_deadline = deadline
            # The loop ends the drain in time unless a request holds it (a
            # sync worker runs the app on the loop's thread): this does.
            t = threading.Timer(budget, self.drain_ran_out)
            t.daemon = True
            t.start()
        if not self.draining:
            self.draining = True
            self.wake()

    def drain_ran_out(self):
        if time.monotonic() < self.drain_deadline:
            return  # an earlier timer, of a longer budget
        with self.lock:
            reqs = list(self.inflight.values())
        log("error", "drain ran out of time with requests in flight; exiting", in_flight=len(reqs),
            requests=["%s %s" % (r.method, r.target) for r in reqs])
        os._exit(1)

    def serve(self):
        """Serve until drained; the process's exit code."""
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        if self.opts.control_fd is not None:
            # A thread of its own: a sync worker's loop is inside the app
            # while a request runs, and "drain MS" must bound that too.
            threading.Thread(target=self.control_loop, name="onebox-control", daemon=True).start()
        threading.Thread(target=self.beat_loop, name="onebox-heartbeat", daemon=True).start()
        self.say("ready")
        idle_until = None
        while True:
            if self.draining and self.listener is not None:
                self.sel.unregister(self.listener)
                self.listener.close()  # the other workers keep accepting
                self.listener = None
                grace = min(self.opts.graceful_timeout / 10, 1.0)
                idle_until = time.monotonic() + min(grace, max(self.drain_deadline - time.monotonic(), 0) / 2)
            timeout = None
            if self.draining:
                now = time.monotonic()
                if self.busy == 0 and (now >= idle_until or self.idle_count() == 0):
                    break
                if now >= self.drain_deadline:
                    log("error", "drain ran out of time with requests in flight", in_flight=self.busy)
                    self.exit_code = 1
                    break
                timeout = max(min(idle_until if now < idle_until else self.drain_deadline, self.drain_deadline) - now, 0)
            for key, _ in self.sel.select(timeout):
                self.dispatch(key)
        self.stop_beat.set()
        for key in list(self.sel.get_map().values()):
            if isinstance(key.data, Conn):
                key.data.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
        return self.exit_code

    def idle_count(self):
        return sum(1 for k in self.sel.get_map().values() if isinstance(k.data, Conn))

    def dispatch(self, key):
        if key.data == "accept":
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(True)
            sock.settimeout(READ_TIMEOUT)
            self.sel.register(sock, selectors.EVENT_READ, Conn(sock, peer))
        elif key.data == "wake":
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                pass
            with self.lock:
                done, self.done = self.done, []
            for conn, keep in done:
                self.busy -= 1
                self.finished(conn, keep)
        else:
            conn = key.data
            self.sel.unregister(conn.sock)
            self.busy += 1
            if self.pool is None:
                self.finished(conn, self.handle(conn))
                self.busy -= 1
            else:
                self.pool.submit(self.handle_in_thread, conn)

    def handle_in_thread(self, conn):
        keep = self.handle(conn)
        with self.lock:
            self.done.append((conn, keep))
        self.wake()

    def finished(self, conn, keep):
        if not keep:
            conn.close()
            return
        if conn.buf:  # a pipelined request is already here
            self.busy += 1
            if self.pool is None:
                self.finished(conn, self.handle(conn))
                self.busy -= 1
            else:
                self.pool.submit(self.handle_in_thread, conn)
            return
        self.sel.register(conn.sock, selectors.EVENT_READ, conn)

    def control_loop(self):
        buf = b""
        while True:
            try:
                data = os.read(self.opts.control_fd, 4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                f = line.split()
                if len(f) == 2 and f[0] == b"drain" and f[1].isdigit():
                    self.start_drain(int(f[1]) / 1000)

    # --- one request ----------------------------------------------------------

    def handle(self, conn):
        """Serve one request on conn; whether the connection stays open."""
        req = None
        try:
            head = conn.read_head()
            if head is None:
                return False
            req = Request(head)
            if req.method == "OPTIONS" and req.target == "*":
                return self.reply(conn, req, 200, b"", [("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")])
            return self.run_app(conn, req)
        except BadRequest as e:
            log("info", "bad request: %s" % e, status=e.status)
            try:
                self.reply(conn, None, e.status, (str(e) + "\n").encode(), [("Content-Type", "text/plain")])
            except Gone:
                pass
            return False
        except (Gone, EOFError):
            return False  # onebox went away; nothing to answer

    def reply(self, conn, req, status, body, headers):
        keep = req is not None and req.keep_alive and not self.draining
        head = ["HTTP/1.1 %d %s" % (status, STATUS_TEXT.get(status, "OK"))]
        head += ["%s: %s" % h for h in headers]
        head.append("Content-Length: %d" % len(body))
        head.append("Connection: " + ("keep-alive" if keep else "close"))
        conn.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return keep

    def http_date(self):
        now = int(time.time())
        if self.date[0] != now:
            self.date = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode())
        return self.date[1]

    def environ(self, conn, req, body):
        path, _, query = req.target.partition("?")
        if "://" in path[:8]:  # absolute-form
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        env = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _unquote(path),
            "QUERY_STRING": query,
            "RAW_URI": req.target,
            "REQUEST_URI": req.target,
            "SERVER_PROTOCOL": req.version,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "0",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.pool is not None,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }
        if isinstance(conn.peer, tuple) and conn.peer:
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(conn.peer[0]), str(conn.peer[1])
        for name, value in req.headers:
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                env[key] = value
                continue
            key = "HTTP_" + key
            env[key] = env[key] + "," + value if key in env else value
        proto = env.get("HTTP_X_FORWARDED_PROTO", "").lower()
        if proto in ("http", "https"):
            env["wsgi.url_scheme"] = proto
            env["SERVER_PORT"] = "443" if proto == "https" else "80"
        client = env.get("HTTP_X_REAL_IP") or env.get("HTTP_X_FORWARDED_FOR", "").rpartition(",")[2].strip()
        if client:
            env["REMOTE_ADDR"] = client
        host = env.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip() or env.get("HTTP_HOST", "")
        if host:
            env["HTTP_HOST"] = host
            name, sep, port = host.rpartition(":")
            if sep and port.isdigit() and not name.endswith("]") or sep and port.isdigit() and name.startswith("["):
                env["SERVER_NAME"], env["SERVER_PORT"] = name, port
            else:
                env["SERVER_NAME"] = host
        return env

    def request_body(self, conn, req):
        te = req.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise BadRequest(501, "unsupported Transfer-Encoding")
            if req.get("expect", "").lower() == "100-continue":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = read_chunked(conn)
            req.headers = [(k, v) for k, v in req.headers if k != "transfer-encoding"]
            req.headers.append(("content-length", str(len(data))))
            return _bytes_input(data)
        cl = req.get("content-length")
        length = 0
        if cl is not None:
            if not cl.isdigit():
                raise BadRequest(400, "bad Content-Length")
            length = int(cl)
        if length and req.get("expect", "").lower() == "100-continue":
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        return Input(conn, length)

    def run_app(self, conn, req):
        body = self.request_body(conn, req)
        env = self.environ(conn, req, body)
        rid = id(req)
        with self.lock:
            self.inflight[rid] = req
        resp = Response(conn, req, self)
        try:
            result = None
            try:
                result = self.app(env, resp.start_response)
                if type(result) is list and len(result) == 1:
                    resp.whole = len(result[0])  # Content-Length for free
                for chunk in result:
                    if chunk:
                        resp.write(chunk)
                resp.finish()
            finally:
                if hasattr(result, "close"):
                    result.close()
        except (Gone, BadRequest):
            raise
        except Exception:
            self.app_error(conn, req, resp)
            return False
        finally:
            with self.lock:
                del self.inflight[rid]
                self.served += 1
                served = self.served
            self.count(served)
        if body.left > 0:
            # The app left part of the body unread: skip it, or close.
            if body.left > 1 << 20:
                return False
            body.read()
        return resp.keep_alive

    def app_error(self, conn, req, resp):
        log("error", "exception in the app; answered 500", method=req.method, uri=req.target,
            traceback=traceback.format_exc())
        if not resp.started_sending:
            try:
                self.reply(conn, None, 500, b"Internal Server Error\n", [("Content-Type", "text/plain")])
            except Gone:
                pass

    def count(self, served):
        limit = self.opts.max_requests
        if limit and served >= limit and not self.retired:
            self.retired = True
            if self.opts.heartbeat_fd is None:
                self.start_drain(self.opts.graceful_timeout)
            else:
                self.say("retire %d" % served)


def _bytes_input(data):
    class _Buf:
        pass
    c = _Buf()
    c.buf = bytearray(data)

    def fill():
        raise EOFError
    c.fill = fill
    c.read = lambda n: Conn.read(c, n)
    c.readline = lambda limit: Conn.readline(c, limit)
    return Input(c, len(data))


def _unquote(path):
    if "%" not in path:
        return path
    from urllib.parse import unquote_to_bytes
    return unquote_to_bytes(path).decode("latin-1")


class Response:
    """start_response and the response's framing on the connection."""

    def __init__(self, conn, req, worker):
        self.conn, self.req, self.worker = conn, req, worker
        self.status = None
        self.headers = None
        self.started_sending = False
        self.chunked = False
        self.length = None
        self.sent = 0
        self.keep_alive = req.keep_alive and not worker.draining
        self.head_only = req.method == "HEAD"
        self.whole = None  # the body's length when the app returned it whole

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.started_sending:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit():
            raise ValueError("bad status %r" % (status,))
        self.status, self.headers = status, list(headers)
        return self.write

    def head(self, first):
        if self.status is None:
            raise AssertionError("the app returned before calling start_response")
        code = int(self.status[:3])
        out = ["HTTP/1.1 " + self.status]
        has_date = False
        for name, value in self.headers:
            low = name.lower()
            if low == "content-length":
                self.length = int(value)
                continue
            elif low == "connection":
                if value.lower() == "close":
                    self.keep_alive = False
                continue
            elif low == "transfer-encoding":
                continue  # this framing is ours
            elif low == "date":
                has_date = True
            out.append("%s: %s" % (name, value))
        bodiless = self.head_only or code in (204, 304) or code < 200
        if self.length is None and not bodiless and self.whole is not None:
            self.length = self.whole
            out.append("Content-Length: %d" % self.length)
        elif self.length is None and not bodiless:
            if first is None:
                self.length = 0
                out.append("Content-Length: 0")
            elif self.req.version == "HTTP/1.1":
                self.chunked = True
                out.append("Transfer-Encoding: chunked")
            else:
                self.keep_alive = False
        elif self.length is not None:
            out.append("Content-Length: %d" % self.length)
        if self.worker.draining:
            self.keep_alive = False
        out.append("Connection: " + ("keep-alive" if self.keep_alive else "close"))
        data = ("\r\n".join(out) + "\r\n").encode("latin-1")
        if not has_date:
            data += b"Date: " + self.worker.http_date() + b"\r\n"
        return data + b"\r\n"

    def write(self, data):
        if not self.started_sending:
            self.started_sending = True
            self.conn.send(self.head(data) + self.frame(data))
        elif data:
            self.conn.send(self.frame(data))

    def frame(self, data):
        if self.head_only or not data:
            return b""
        if self.length is not None:
            self.sent += len(data)
            if self.sent > self.length:
                self.keep_alive = False
                raise RuntimeError("the app wrote more than its Content-Length (%d)" % self.length)
        if self.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def finish(self):
        if not self.started_sending:
            self.started_sending = True
            self.conn.send(self.head(None))
            return
        if self.chunked and not self.head_only:
            self.conn.send(b"0\r\n\r\n")
        if self.length is not None and self.sent < self.length and not self.head_only:
            self.keep_alive = False  # the client would wait for the rest


def listener_for(opts):
    if opts.listen_fd is not None:
        sock = socket.socket(fileno=opts.listen_fd)
    else:
        sock = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("", opts.port))
        sock.listen(128)
    # Non-blocking for accept only: the kernel wakes every worker of the pool
    # for a new connection and all but one get EAGAIN.
    sock.setblocking(False)
    return sock


def hello(env, sync):
    """Say hello on the heartbeat pipe, before the app is imported."""
    v = env.get("ONEBOX_HEARTBEAT_FD", "")
    if not v.isdigit() or int(v) < 3:
        return
    fd = int(v)
    try:
        os.set_inheritable(fd, False)  # the app's own children must not hold it
        os.write(fd, b"hello sync\n" if sync else b"hello\n")
    except OSError:
        pass


USAGE = "usage: python3 -m onebox_worker [--threads N] module:app"


def main(argv=None, env=None):
    """Run the worker; returns its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    threads, spec = None, None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            print(USAGE)
            return 0
        if a in ("-t", "--threads") and args:
            a = "--threads=" + args.pop(0)
        if a.startswith("--threads="):
            try:
                threads = int(a.split("=", 1)[1])
            except ValueError:
                threads = 0
        elif spec is None and not a.startswith("-"):
            spec = a
        else:
            print(USAGE, file=sys.stderr)
            return 2
    if spec is None:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        opts = Options.from_env(env, threads)
    except ValueError as e:
        log("error", "onebox_worker: %s" % e)
        hello(env, True)  # so the master counts a boot failure, not a crash
        return EXIT_BOOT_ERROR
    hello(env, opts.threads == 1)
    faulthandler.enable()  # SIGABRT from the master: a traceback on stderr
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "ONEBOX_HEARTBEAT_FD", "ONEBOX_CONTROL_FD"):
        os.environ.pop(k, None)  # the app's children must not take the socket
    for fd in (opts.heartbeat_fd, opts.control_fd):
        if fd is not None:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
    try:
        listener = listener_for(opts)
    except OSError as e:
        log("error", "onebox_worker: cannot use the app socket: %s" % e)
        return EXIT_BOOT_ERROR
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = load_app(spec)
    except BaseException as e:  # SystemExit from an app's import too
        log("error", "onebox_worker: cannot load the app %s: %s" % (spec, e), traceback=traceback.format_exc())
        return EXIT_BOOT_ERROR
    w = Worker(app, opts, listener)
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        signal.signal(sig, w.on_signal)
    return w.serve()


if __name__ == "__main__":
    sys.exit(main())
