"""A child that speaks sd_notify, for procsup's real-process tests.

usage: sdnotify.py MODE [ARGS]
  ready-after MS          READY=1 after MS milliseconds, then idle
  never                   never ready
  ping N EVERY_MS USEC    READY=1, N watchdog pings EVERY_MS apart, then
                          silence; exits 3 unless WATCHDOG_USEC == USEC,
                          4 unless WATCHDOG_PID is its pid
  on-usr1                 READY=1 when it gets SIGUSR1
  reload                  READY=1; on SIGHUP, RELOADING=1, then READY=1
                          100 ms later
  garbage N               N malformed or oversized datagrams, then
                          STATUS=done and READY=1
  send TEXT               one datagram (from whatever process runs it)
"""
import os
import signal
import socket
import sys
import time


def connect():
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(addr)
    return s


def idle():
    while True:
        time.sleep(3600)


def main():
    mode = sys.argv[1]
    if mode == "ready-after":
        time.sleep(int(sys.argv[2]) / 1000)
        connect().send(b"READY=1\nSTATUS=serving")
        idle()
    elif mode == "never":
        idle()
    elif mode == "ping":
        n, every, usec = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        if os.environ.get("WATCHDOG_USEC") != usec:
            sys.exit(3)
        if os.environ.get("WATCHDOG_PID") != str(os.getpid()):
            sys.exit(4)
        s = connect()
        s.send(b"READY=1")
        for _ in range(n):
            time.sleep(every / 1000)
            s.send(b"WATCHDOG=1")
        idle()
    elif mode == "on-usr1":
        s = connect()
        signal.signal(signal.SIGUSR1, lambda *_: s.send(b"READY=1"))
        idle()
    elif mode == "reload":
        s = connect()

        def reload(*_):
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            s.send(b"RELOADING=1\nMONOTONIC_USEC=%d" % usec)
            time.sleep(0.1)
            s.send(b"READY=1")

        signal.signal(signal.SIGHUP, reload)
        s.send(b"READY=1")
        idle()
    elif mode == "garbage":
        s = connect()
        junk = [b"\xff\x00\x01", b"READY", b"=1", b"ready=1", b"READY=1\0", b"X" * 5000, b"\n\n\n"]
        for i in range(int(sys.argv[2])):
            s.send(junk[i % len(junk)])
        s.send(b"STATUS=done\nREADY=1")
        idle()
    elif mode == "send":
        connect().send(sys.argv[2].encode())
    else:
        sys.exit(2)


main()
