#!/usr/bin/python3
"""A misbehaving HTTP/1.0 server on 127.0.0.1 for tests/test_fetch.c.

Serves files from --dir. The first path component picks a behaviour; counters are kept
per full path (query included), so a test gets a fresh counter by adding ?k=...:
  /ok/NAME           the file; Range requests answered 206 with Content-Range
  /drop/NAME         1st request: full headers, half the body, then the connection closes;
                     later: like /ok (so a client can resume with Range)
  /dropnorange/NAME  1st like /drop; later: ignores Range and always sends 200 + whole file
  /wrongrange/NAME   1st like /drop; 2nd: 206 whose Content-Range starts at 0 (wrong); later: /ok
  /range416/NAME     1st like /drop; later: 416 to any Range request, else 200 + whole file
  /flaky/NAME        1st request 500, later /ok
  /busy/NAME         1st request 429 with Retry-After: 1, later /ok
  /stall/NAME        1st request: headers and a quarter of the body, then silence; later /ok
  /stallforever/NAME always stalls like the 1st /stall request
anything else is 404. Prints the port on stdout, appends one line per request to --log
("PATH range=HEADER code=N"), and exits after --lifetime seconds, or as soon as the
process that started it is gone.
"""
import argparse
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def note(self, code):
        with open(self.server.logpath, "a") as f:
            f.write("%s range=%s code=%d\n" % (self.path, self.headers.get("Range", "-"), code))

    def send_error_code(self, code, extra=None):
        self.note(code)
        body = b"error\n"
        self.send_response(code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            n = counts.get(self.path, 0) + 1
            counts[self.path] = n
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 2:
            return self.send_error_code(404)
        mode, name = parts
        path = os.path.join(self.server.dir, name)
        if not os.path.isfile(path):
            return self.send_error_code(404)
        with open(path, "rb") as f:
            data = f.read()
        first = n == 1
        if mode == "ok":
            return self.serve(data, True)
        if mode in ("drop", "dropnorange", "wrongrange", "range416") and first:
            return self.partial(data, len(data) // 2, stall=False)
        if mode == "drop":
            return self.serve(data, True)
        if mode == "dropnorange":
            return self.serve(data, False)
        if mode == "wrongrange":
            if n == 2 and self.headers.get("Range"):
                self.note(206)
                self.send_response(206)
                self.send_header("Content-Range", "bytes 0-%d/%d" % (len(data) - 1, len(data)))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            return self.serve(data, True)
        if mode == "range416":
            return self.send_error_code(416) if self.headers.get("Range") else self.serve(data, False)
        if mode == "flaky":
            return self.send_error_code(500) if first else self.serve(data, True)
        if mode == "busy":
            return self.send_error_code(429, {"Retry-After": "1"}) if first else self.serve(data, True)
        if mode == "stall":
            return self.partial(data, len(data) // 4, stall=True) if first else self.serve(data, True)
        if mode == "stallforever":
            return self.partial(data, len(data) // 4, stall=True)
        return self.send_error_code(404)

    def etag(self, data):
        return '"v1-%d"' % len(data)

    def partial(self, data, upto, stall):
        self.note(200)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", self.etag(data))
        self.end_headers()
        self.wfile.write(data[:upto])
        self.wfile.flush()
        if stall:
            # Silence until the client gives up (a write then fails) or the server's lifetime ends.
            for _ in range(600):
                r, _, _ = select.select([self.connection], [], [], 0.1)
                try:
                    if r and not self.connection.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return
        self.close_connection = True

    def serve(self, data, ranges):
        rng = self.headers.get("Range")
        if ranges and rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            ifr = self.headers.get("If-Range")
            if start < len(data) and (ifr is None or ifr == self.etag(data)):
                self.note(206)
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", self.etag(data))
                self.end_headers()
                self.wfile.write(data[start:])
                return
        self.note(200)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", self.etag(data))
        self.end_headers()
        self.wfile.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--lifetime", type=float, default=120)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.dir = a.dir
    srv.logpath = a.log
    parent = os.getppid()
    deadline = time.monotonic() + a.lifetime

    def watchdog():
        # Exit when the lifetime ends or the test that started us is gone.
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    sys.stdout.write("%d\n" % srv.server_address[1])
    sys.stdout.flush()
    srv.serve_forever()


if __name__ == "__main__":
    main()
