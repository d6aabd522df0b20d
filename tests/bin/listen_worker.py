"""An HTTP worker for the pool tests.

Serves on the socket passed at fd 3 (systemd's LISTEN_FDS protocol), after
checking that LISTEN_PID is its own pid, and answers every GET with
`pid instance marker`. The marker is argv[1]; the marker `fail` exits 1 at
once (a spec that cannot start). SIGTERM finishes the request in hand, then
exits 0.
"""
import http.server
import os
import signal
import socket
import sys
import threading

if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
    sys.stderr.write("bad LISTEN_PID or LISTEN_FDS\n")
    sys.exit(3)
marker = sys.argv[1] if len(sys.argv) > 1 else "-"
if marker == "fail":
    sys.exit(1)

sock = socket.socket(fileno=3)
# Every worker polls the same socket: the one that loses the race to a
# connection must not block in accept.
sock.setblocking(False)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%d %s %s\n" % (os.getpid(), os.environ.get("PROCSUP_INSTANCE", "-"), marker)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
server.socket.close()
server.socket = sock
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
