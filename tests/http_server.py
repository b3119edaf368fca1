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
  /slow/NAME         like /ok, but the body trickles: 8 KiB every 50 ms
  /slow1/NAME        1st request like /slow, later like /ok (a later fetch may resume)
  /slownov/NAME      1st like /slow, later like /ok, but never an ETag or Last-Modified
  /dropnov/NAME      1st like /drop, later like /ok, but never an ETag or Last-Modified
  /changed/NAME      1st like /slow (ETag "v1-N"); later the file has changed: every byte
                     XOR 0x5a, ETag "v2-N", and Range is answered 206 whatever If-Range says
  /changedlm/NAME    like /changed with Last-Modified (v1: 2001, v2: 2002) and no ETag
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
LM1 = "Mon, 01 Jan 2001 00:00:00 GMT"
LM2 = "Tue, 01 Jan 2002 00:00:00 GMT"


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
        if mode == "slow" or (mode in ("slow1", "slownov", "changed", "changedlm") and first):
            v = {"changedlm": {"Last-Modified": LM1}, "slownov": {}}.get(mode)
            return self.serve(data, True, slow=True, validators=v)
        if mode == "slow1":
            return self.serve(data, True)
        if mode in ("slownov", "dropnov"):
            return self.partial(data, len(data) // 2, False, {}) if first else self.serve(data, True, validators={})
        if mode in ("changed", "changedlm"):
            v2 = bytes(b ^ 0x5A for b in data)
            v = {"ETag": '"v2-%d"' % len(data)} if mode == "changed" else {"Last-Modified": LM2}
            return self.serve(v2, True, validators=v, if_range=False)
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

    def partial(self, data, upto, stall, validators=None):
        self.note(200)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (self.validators(data) if validators is None else validators).items():
            self.send_header(k, v)
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

    def validators(self, data):
        return {"ETag": self.etag(data)}

    def serve(self, data, ranges, slow=False, validators=None, if_range=True):
        """The file, or with ranges a 206 for "Range: bytes=N-" (unless an If-Range names
        another version, when if_range is set); validators: headers to send (default ETag)."""
        v = self.validators(data) if validators is None else validators
        rng = self.headers.get("Range")
        ifr = self.headers.get("If-Range")
        body, code = data, 200
        if ranges and rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start < len(data) and (not if_range or ifr is None or ifr in v.values()):
                body, code = data[start:], 206
        self.note(code)
        self.send_response(code)
        if code == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (len(data) - len(body), len(data) - 1, len(data)))
        self.send_header("Content-Length", str(len(body)))
        for k, val in v.items():
            self.send_header(k, val)
        self.end_headers()
        try:
            step = 8192 if slow else len(body) + 1
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                if slow:
                    self.wfile.flush()
                    time.sleep(0.05)
        except OSError:  # the client went away (killed, or it gave up)
            self.close_connection = True


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
