"""The guestbook of examples/guestbook, in Flask on PyMySQL: the same page and
the same JSON API, run by onebox_worker under onebox.

    python3 guestbook.py migrate            create the table (APP_PRESTART)
    python3 -m onebox_worker guestbook:app  serve (APP_COMMAND)

Settings are the MYSQL_* variables onebox's database gate reads too.
"""

import os
import sys
import time
import unicodedata

import pymysql
from flask import Flask, jsonify, request, send_from_directory

MAX_BODY = 16 << 10
MAX_NAME, MAX_MESSAGE, PAGE_SIZE = 64, 1000, 50

SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(64) NOT NULL,
    message VARCHAR(1000) NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""


def connect():
    """A connection from the MYSQL_* variables (MYSQL_PASSWORD_FILE too)."""
    env = os.environ
    password = env.get("MYSQL_PASSWORD", "")
    if env.get("MYSQL_PASSWORD_FILE"):
        with open(env["MYSQL_PASSWORD_FILE"]) as f:
            password = f.read().strip()
    return pymysql.connect(host=env["MYSQL_HOST"], port=int(env.get("MYSQL_PORT") or 3306),
                           user=env.get("MYSQL_USER", ""), password=password,
                           database=env["MYSQL_DATABASE"], charset="utf8mb4", autocommit=True,
                           connect_timeout=3, read_timeout=3, write_timeout=3)


app = Flask(__name__, static_folder=None)
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
_db = None


def db():
    """This worker's connection, reconnected when it was lost."""
    global _db
    if _db is None:
        _db = connect()
    else:
        _db.ping(reconnect=True)
    return _db


def error(status, message, field=None):
    body = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


@app.after_request
def no_store(resp):
    if request.path.startswith("/api/"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


@app.errorhandler(pymysql.MySQLError)
def database_error(e):
    global _db
    _db = None
    app.logger.error("database: %s", e)
    return error(503, "the database is unavailable; try again shortly")


@app.errorhandler(413)
def too_large(e):
    return error(413, "the body is larger than %d bytes" % MAX_BODY)


@app.get("/api/health")
def health():
    try:
        db()
    except pymysql.MySQLError:
        return jsonify(status="unavailable", database="down"), 503
    return jsonify(status="ok", database="up")


def row(r):
    return {"id": r[0], "name": r[1], "message": r[2],
            "created_at": r[3].isoformat(timespec="milliseconds") + "Z"}


@app.get("/api/messages")
def list_messages():
    limit = PAGE_SIZE
    if "limit" in request.args:
        v = request.args["limit"]
        if not v.isdigit() or not 1 <= int(v) <= PAGE_SIZE:
            return error(400, "limit must be a number from 1 to %d" % PAGE_SIZE, "limit")
        limit = int(v)
    with db().cursor() as c:
        c.execute("SELECT id, name, message, created_at FROM messages ORDER BY id DESC LIMIT %s", (limit,))
        return jsonify(messages=[row(r) for r in c.fetchall()])


def forbidden(ch):
    if ch in "\n\t":
        return False
    return unicodedata.category(ch) == "Cc" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"


def validate(name, message):
    for field, value, most in (("name", name, MAX_NAME), ("message", message, MAX_MESSAGE)):
        if not value:
            return field, "%s is required" % field
        if len(value) > most:
            return field, "%s is longer than %d characters" % (field, most)
        if any(forbidden(ch) for ch in value) or field == "name" and ("\n" in value or "\t" in value):
            return field, "%s may not contain control or text-direction characters" % field
    return None, None


@app.post("/api/messages")
def post_message():
    if request.mimetype != "application/json":
        return error(415, "send the message as Content-Type: application/json")
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or set(data) - {"name", "message"} or \
            not all(isinstance(data.get(k, ""), str) for k in ("name", "message")):
        return error(400, 'want one JSON object: {"name": "...", "message": "..."}')
    name, message = data.get("name", "").strip(), data.get("message", "").strip()
    field, problem = validate(name, message)
    if problem:
        return error(400, problem, field)
    with db().cursor() as c:
        c.execute("INSERT INTO messages (name, message) VALUES (%s, %s)", (name, message))
        c.execute("SELECT id, name, message, created_at FROM messages WHERE id = %s", (c.lastrowid,))
        return jsonify(row(c.fetchone())), 201


@app.get("/")
def page():
    # Under onebox the proxy serves static/ from PROXY_ROOT; this is for running alone.
    return send_from_directory(os.path.join(os.path.dirname(os.path.abspath(__file__)), "static"), "index.html")


# Test-only routes, off unless GUESTBOOK_TEST_ROUTES=1 (the compose suite sets
# it in its override, never compose.yaml): a slow request for a graceful stop, a
# hung one for APP_TIMEOUT, and a leak for APP_MAX_WORKER_MEMORY. They are not
# part of the guestbook; do not set the variable in production.
_leak = []


def test_routes():
    @app.get("/test/slow")
    def slow():
        seconds = float(request.args.get("s", "2"))
        time.sleep(min(seconds, 30))
        return jsonify(slept=seconds, pid=os.getpid())

    # POST: the proxy retries an idempotent request once when its worker
    # connection fails, which would hang a second worker.
    @app.post("/test/hang")
    def hang():
        while True:
            time.sleep(1)

    @app.get("/test/grow")
    def grow():
        mib = min(int(request.args.get("mib", "64")), 512)
        # Written bytes, so the pages are resident (a calloc'd buffer is not).
        _leak.append(b"\x01" * (mib << 20))
        return jsonify(held_mib=sum(len(b) for b in _leak) >> 20, pid=os.getpid())


if os.environ.get("GUESTBOOK_TEST_ROUTES") == "1":
    test_routes()


def migrate():
    conn = connect()
    with conn.cursor() as c:
        c.execute(SCHEMA)
    conn.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        migrate()
    else:
        sys.exit("usage: python3 guestbook.py migrate (serve with: python3 -m onebox_worker guestbook:app)")
