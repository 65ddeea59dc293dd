# The sync worker's app as WSGI, stdlib only, for gunicorn behind nginx in
# the slow-client comparison (TestSlowClientsBehindNginx): the same answers
# as syncworker.py gives behind onebox.
BIG = b"x" * (4 << 20)


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = b"got %d\n" % len(environ["wsgi.input"].read(n))
    elif environ["PATH_INFO"] == "/big":
        body = BIG
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
