"""Tests of onebox_worker: the real module in a real process, driven the way
onebox's master drives it (socket on fd 3, heartbeat pipe, control pipe).

Run: python3 -m unittest -v test_onebox_worker (make unit runs it through
TestPythonWorkerUnittest in appserver)."""

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import onebox_worker

HERE = os.path.dirname(os.path.abspath(__file__))

APP = textwrap.dedent('''
    import json, os, sys, threading, time
    gate = os.environ.get("TEST_IMPORT_GATE")
    if gate:
        # A FIFO: the import cannot finish until the test opens it.
        open(gate).read()
    time.sleep(float(os.environ.get("TEST_IMPORT_DELAY", "0")))
    if os.environ.get("TEST_IMPORT_FAIL"):
        raise ImportError("no module named missing_dependency")
    calls = []

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        calls.append(path)
        if path == "/boom":
            raise ValueError("boom from the app")
        if path.startswith("/sleep/"):
            time.sleep(float(path.split("/")[2]))
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter([b"a", b"b", b"c"])
        if path == "/calls":
            body = json.dumps(calls).encode()
        else:
            body = json.dumps({
                "method": environ["REQUEST_METHOD"], "path": path,
                "query": environ["QUERY_STRING"], "scheme": environ["wsgi.url_scheme"],
                "remote": environ["REMOTE_ADDR"], "host": environ.get("HTTP_HOST"),
                "server_name": environ["SERVER_NAME"], "server_port": environ["SERVER_PORT"],
                "body": environ["wsgi.input"].read().decode(),
                "thread": threading.get_ident(), "pid": os.getpid(),
                "multithread": environ["wsgi.multithread"],
            }).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
''')


def http(sock, raw, read_body=True):
    """Send raw, read one response: (status, headers dict, body)."""
    if raw:
        sock.sendall(raw)
    f = sock.makefile("rb")
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline().rstrip(b"\r\n")
        if not h:
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if not read_body:
        pass
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            n = int(f.readline().strip(), 16)
            if n == 0:
                f.readline()
                break
            body += f.read(n)
            f.readline()
    f.close()
    return status, headers, body


class Worker:
    """One onebox_worker process with the master's side of its pipes."""

    def __init__(self, test, args=(), env=None, app=APP):
        self.dir = tempfile.mkdtemp(prefix="onebox-worker-test-")
        test.addCleanup(self.cleanup)
        with open(os.path.join(self.dir, "testapp.py"), "w") as f:
            f.write(app)
        self.sock_path = os.path.join(self.dir, "app.sock")
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(self.sock_path)
        lsock.listen(64)
        self.lsock = lsock
        hb_r, hb_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        self.hb_r, self.ctl_w = hb_r, ctl_w
        high = fcntl.fcntl(lsock.fileno(), fcntl.F_DUPFD, 20)
        hb_hi = fcntl.fcntl(hb_w, fcntl.F_DUPFD, 20)
        ctl_hi = fcntl.fcntl(ctl_r, fcntl.F_DUPFD, 20)

        def fds():
            os.dup2(high, 3)
            os.dup2(hb_hi, 4)
            os.dup2(ctl_hi, 5)

        e = {k: v for k, v in os.environ.items() if not k.startswith(("ONEBOX_", "LISTEN_"))}
        e.update({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "app", "ONEBOX_HEARTBEAT_FD": "4",
                  "ONEBOX_CONTROL_FD": "5", "ONEBOX_TIMEOUT": "400ms", "ONEBOX_GRACEFUL_TIMEOUT": "5s",
                  "PYTHONPATH": HERE, "PYTHONUNBUFFERED": "1"})
        e.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onebox_worker"] + list(args) + ["testapp:app"],
            cwd=self.dir, env=e, preexec_fn=fds, pass_fds=(3, 4, 5),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for fd in (high, hb_hi, ctl_hi, hb_w, ctl_r):
            os.close(fd)
        self.buf = b""
        self.stderr = []
        self.err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self.err_thread.start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def line(self, timeout=10.0):
        """The next heartbeat line, or None at EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no heartbeat line within %.1fs (stderr: %s)" % (timeout, "".join(self.stderr)))
            r, _, _ = select.select([self.hb_r], [], [], left)
            if r:
                data = os.read(self.hb_r, 4096)
                if not data:
                    return None
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def wait_for(self, pred, timeout=10.0):
        """The first heartbeat line for which pred is true."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(deadline - time.monotonic(), 0.01))
            if line is None:
                raise EOFError("heartbeat pipe closed")
            if pred(line):
                return line

    def ready(self):
        self.wait_for(lambda l: l == "ready")
        return self

    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.sock_path)
        return s

    def get(self, path, headers=b""):
        with self.connect() as s:
            return http(s, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")

    def exit_code(self, timeout=10):
        code = self.proc.wait(timeout)
        self.err_thread.join(2)
        return code

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.lsock.close()
        for fd in (self.hb_r, self.ctl_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc.stdout.close()
        self.err_thread.join(2)
        self.proc.stderr.close()
        for name in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, name)) if not os.path.isdir(os.path.join(self.dir, name)) else None


class BootTest(unittest.TestCase):
    def test_hello_comes_before_the_app_is_imported(self):
        d = tempfile.mkdtemp(prefix="onebox-gate-")
        gate = os.path.join(d, "gate")
        os.mkfifo(gate)
        self.addCleanup(lambda: (os.remove(gate), os.rmdir(d)))
        w = Worker(self, env={"TEST_IMPORT_GATE": gate})
        # The import is held at the gate, yet hello has come.
        self.assertEqual(w.line(), "hello sync")
        self.assertIsNone(w.proc.poll())
        with open(gate, "w") as f:
            f.write("go")
        self.assertEqual(w.line(), "ready")

    def test_threads_say_plain_hello(self):
        w = Worker(self, args=["--threads", "4"])
        self.assertEqual(w.line(), "hello")
        w.wait_for(lambda l: l == "ready")
        self.assertTrue(json.loads(w.get("/x")[2])["multithread"])

    def test_an_app_that_cannot_be_imported_exits_3(self):
        w = Worker(self, env={"TEST_IMPORT_FAIL": "1"})
        self.assertEqual(w.line(), "hello sync")
        self.assertEqual(w.exit_code(), 3)
        log = "".join(w.stderr)
        self.assertIn("cannot load the app testapp:app", log)
        self.assertIn("missing_dependency", log)

    def test_bad_settings_exit_3_naming_each_variable(self):
        w = Worker(self, env={"ONEBOX_TIMEOUT": "soon", "ONEBOX_MAX_REQUESTS": "-1"})
        self.assertEqual(w.exit_code(), 3)
        log = "".join(w.stderr)
        self.assertIn("ONEBOX_TIMEOUT='soon'", log)
        self.assertIn("ONEBOX_MAX_REQUESTS='-1'", log)


class HTTPTest(unittest.TestCase):
    def setUp(self):
        self.w = Worker(self).ready()

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        with self.w.connect() as s:
            pids = set()
            for i in range(3):
                st, h, body = http(s, b"GET /k?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                self.assertEqual(st, 200)
                self.assertEqual(h["connection"], "keep-alive")
                got = json.loads(body)
                self.assertEqual(got["query"], "i=%d" % i)
                pids.add(got["pid"])
            self.assertEqual(pids, {self.w.proc.pid})

    def test_http10_closes(self):
        with self.w.connect() as s:
            st, h, _ = http(s, b"GET / HTTP/1.0\r\n\r\n")
            self.assertEqual((st, h["connection"]), (200, "close"))
            self.assertEqual(s.recv(1), b"")

    def test_post_body_by_length_and_chunked(self):
        with self.w.connect() as s:
            st, _, body = http(s, b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            self.assertEqual((st, json.loads(body)["body"]), (200, "hello"))
            st, _, body = http(s, b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            self.assertEqual((st, json.loads(body)["body"]), (200, "abcde"))

    def test_streamed_response_is_chunked(self):
        st, h, body = self.w.get("/stream")
        self.assertEqual((st, h.get("transfer-encoding"), body), (200, "chunked", b"abc"))

    def test_head_has_no_body(self):
        with self.w.connect() as s:
            st, h, _ = http(s, b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n", read_body=False)
            self.assertEqual(st, 200)
            # The connection is still in sync: the next response follows at once.
            st, _, body = http(s, b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(json.loads(body)["path"], "/after")

    def test_malformed_input_gets_400(self):
        for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
                    b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"):
            with self.subTest(raw=raw), self.w.connect() as s:
                st, h, _ = http(s, raw)
                self.assertEqual((st, h["connection"]), (400, "close"))

    def test_options_star_never_reaches_the_app(self):
        with self.w.connect() as s:
            st, _, _ = http(s, b"OPTIONS * HTTP/1.0\r\n\r\n")
            self.assertEqual(st, 200)
        calls = json.loads(self.w.get("/calls")[2])
        self.assertNotIn("*", calls)
        self.assertEqual(calls, ["/calls"])

    def test_forwarded_headers_become_scheme_remote_addr_and_host(self):
        _, _, body = self.w.get("/f", b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
                                      b"X-Forwarded-Host: shop.example:8443\r\n")
        got = json.loads(body)
        self.assertEqual(got["scheme"], "https")
        self.assertEqual(got["remote"], "192.0.2.7")
        self.assertEqual((got["host"], got["server_name"], got["server_port"]), ("shop.example:8443", "shop.example", "8443"))
        _, _, body = self.w.get("/f", b"X-Real-IP: 198.51.100.9\r\nX-Forwarded-For: 10.1.1.1\r\n")
        self.assertEqual(json.loads(body)["remote"], "198.51.100.9")

    def test_an_exception_in_the_app_is_500_and_one_json_line(self):
        st, h, _ = self.w.get("/boom")
        self.assertEqual((st, h["connection"]), (500, "close"))
        self.assertEqual(self.w.get("/still-up")[0], 200)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = [json.loads(l) for l in self.w.stderr if l.startswith("{")]
            errs = [l for l in lines if l.get("uri") == "/boom"]
            if errs:
                break
            time.sleep(0.02)
        self.assertEqual(len(errs), 1, self.w.stderr)
        self.assertEqual(errs[0]["level"], "error")
        self.assertIn("ValueError: boom from the app", errs[0]["traceback"])


class ProtocolTest(unittest.TestCase):
    def test_beat_names_the_oldest_request_in_flight(self):
        w = Worker(self).ready()
        t = threading.Thread(target=w.get, args=("/sleep/1.5?q=1",))
        t.start()
        line = w.wait_for(lambda l: l.startswith("beat ") and len(l.split()) == 6)
        f = line.split()
        self.assertEqual((f[1], f[2], f[4], f[5]), ("0", "1", "GET", "/sleep/1.5?q=1"))
        t.join()
        w.wait_for(lambda l: l == "beat 1 0")

    def test_retire_at_max_requests_and_keep_serving(self):
        w = Worker(self, env={"ONEBOX_MAX_REQUESTS": "3"}).ready()
        for _ in range(3):
            self.assertEqual(w.get("/r")[0], 200)
        w.wait_for(lambda l: l.startswith("retire"))
        self.assertEqual(w.get("/after-retire")[0], 200)
        self.assertIsNone(w.proc.poll())

    def test_term_drains_a_request_in_flight_then_exits_0(self):
        w = Worker(self).ready()
        got = {}
        t = threading.Thread(target=lambda: got.update(r=w.get("/sleep/0.8")))
        t.start()
        w.wait_for(lambda l: len(l.split()) == 6)  # the request is in flight
        w.proc.send_signal(signal.SIGTERM)
        t.join()
        self.assertEqual(got["r"][0], 200)
        self.assertEqual(got["r"][1]["connection"], "close")
        self.assertEqual(w.exit_code(), 0)

    def test_drain_line_on_the_control_pipe_bounds_the_drain(self):
        w = Worker(self).ready()
        t = threading.Thread(target=lambda: self.assertRaises(Exception, w.get, "/sleep/30"), daemon=True)
        t.start()
        w.wait_for(lambda l: len(l.split()) == 6)
        os.write(w.ctl_w, b"drain 300\n")
        start = time.monotonic()
        # The drain ends when the budget does, in flight or not: exit 1.
        self.assertEqual(w.exit_code(), 1)
        self.assertLess(time.monotonic() - start, 5)

    def test_idle_keep_alive_connections_are_closed_on_drain(self):
        w = Worker(self).ready()
        s = w.connect()
        self.addCleanup(s.close)
        self.assertEqual(http(s, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")[0], 200)
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.exit_code(), 0)
        self.assertEqual(s.recv(1), b"")

    def test_abrt_dumps_a_python_traceback(self):
        w = Worker(self).ready()
        t = threading.Thread(target=lambda: self.assertRaises(Exception, w.get, "/sleep/30"), daemon=True)
        t.start()
        w.wait_for(lambda l: len(l.split()) == 6)
        w.proc.send_signal(signal.SIGABRT)
        self.assertEqual(w.exit_code(), -signal.SIGABRT)
        log = "".join(w.stderr)
        self.assertIn("Fatal Python error: Aborted", log)
        self.assertIn("testapp.py", log)

    def test_threads_serve_requests_concurrently(self):
        w = Worker(self, args=["--threads=3"]).ready()
        results = []
        ts = [threading.Thread(target=lambda: results.append(json.loads(w.get("/sleep/0.6")[2])))
              for _ in range(3)]
        start = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(len({r["thread"] for r in results}), 3)
        self.assertLess(time.monotonic() - start, 1.7)


class UnitTest(unittest.TestCase):
    def test_parse_duration(self):
        for text, want in (("30s", 30.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h0m0s", 3600.0), ("0", 0.0)):
            self.assertAlmostEqual(onebox_worker.parse_duration(text), want)
        for bad in ("", "30", "s", "3x", "1m 2s"):
            with self.assertRaises(ValueError):
                onebox_worker.parse_duration(bad)

    def test_options_from_env(self):
        o = onebox_worker.Options.from_env({"ONEBOX_TIMEOUT": "2s", "ONEBOX_MAX_REQUESTS": "10",
                                            "ONEBOX_MAX_REQUESTS_JITTER": "5", "ONEBOX_THREADS": "4"})
        self.assertEqual((o.interval, o.threads), (0.5, 4))
        self.assertTrue(10 <= o.max_requests <= 15)
        with self.assertRaises(ValueError) as cm:
            onebox_worker.Options.from_env({"LISTEN_FDS": "1", "LISTEN_PID": "1", "ONEBOX_THREADS": "0"})
        self.assertIn("LISTEN_PID=1", str(cm.exception))
        self.assertIn("ONEBOX_THREADS='0'", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
