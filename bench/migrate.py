#!/usr/bin/env python3
"""Benchmark (not a test): migrate a process with MIB MiB resident over
loopback TCP, beside raw loopback throughput measured in the same run.

    python3 bench/migrate.py [MIB] [RUNS]        (default 1024 MiB, 3 runs)

This script plays the two starters: it runs bench/touch.c (relinked with
rckpt) as the sender with a command stream on fd 3, and when it is ready
writes `migrate_to 127.0.0.1 PORT` + `exit 0` and sends SIGTSTP; it accepts
the connection and starts the receiver, the same program with
`migrate_from 3` on the accepted socket. Times, from the sender's SIGTSTP:

  first instruction  the receiver's "resumed" line (its clock: the restored
                     program's first loop iteration; every page has been
                     read and checksummed by then)
  acknowledged       the sender exits 0 (the receiver's answer arrived)
  all bytes checked  the receiver's own "verify ok" (it reads every byte)

Raw loopback: MIB MiB through one TCP connection between two threads of
this script (recv_into a 1 MiB buffer), best of the runs.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RCKPT = os.path.join(REPO, "target", "release", "rckpt")


def raw_loopback(nbytes):
    """Seconds to move nbytes through a loopback TCP connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    done = {}

    def reader():
        c, _ = srv.accept()
        buf = bytearray(1 << 20)
        n = 0
        while n < nbytes:
            k = c.recv_into(buf)
            if not k:
                break
            n += k
        done["end"] = time.monotonic()
        done["n"] = n
        c.close()

    th = threading.Thread(target=reader)
    th.start()
    cli = socket.create_connection(srv.getsockname())
    chunk = bytes(range(256)) * ((4 << 20) // 256)
    t0 = time.monotonic()
    sent = 0
    while sent < nbytes:
        cli.sendall(chunk[: min(len(chunk), nbytes - sent)])
        sent += min(len(chunk), nbytes - sent)
    cli.close()
    th.join()
    srv.close()
    assert done["n"] == nbytes, done
    return done["end"] - t0


def at_fd3(fd):
    def f():
        os.dup2(fd, 3)
    return f


def migrate_once(touch, work, mib):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    r, w = os.pipe()
    os.write(w, b"end\n")
    sender = subprocess.Popen([touch, str(mib), "3600", "-_condor_cmd_fd", "3"], stdout=subprocess.PIPE, cwd=work,
                              preexec_fn=at_fd3(r), close_fds=False, text=True)
    os.close(r)
    line = sender.stdout.readline()
    assert line.startswith("ready"), line
    os.write(w, f"migrate_to 127.0.0.1 {port}\nexit 0\n".encode())
    t0 = time.time()
    sender.send_signal(signal.SIGTSTP)
    conn, _ = srv.accept()
    cmd = os.path.join(work, "receiver.cmd")
    with open(cmd, "w") as f:
        f.write("migrate_from 3\nend\n")
    receiver = subprocess.Popen([touch, "-_condor_cmd_file", cmd], stdout=subprocess.PIPE, cwd=work,
                                preexec_fn=at_fd3(conn.fileno()), close_fds=False, text=True)
    conn.close()
    srv.close()
    first = None
    for line in receiver.stdout:
        if line.startswith("resumed "):
            first = float(line.split()[1]) - t0
        elif line.startswith("verify"):
            checked = time.time() - t0
            assert line.startswith("verify ok"), line
            break
    assert sender.wait() == 0, "the sender did not exit 0"
    acked = time.time() - t0  # an upper bound: measured after the receiver's verify
    receiver.wait()
    os.close(w)
    return first, checked, acked


def main():
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="rckpt-migrate-bench-")
    touch = os.path.join(work, "touch")
    subprocess.run([RCKPT, "compile", "cc", "-O2", "-o", touch, os.path.join(REPO, "bench", "touch.c")], check=True)
    nbytes = mib << 20
    raw = min(raw_loopback(nbytes) for _ in range(runs))
    results = [migrate_once(touch, work, mib) for _ in range(runs)]
    first = statistics.median(r[0] for r in results)
    checked = statistics.median(r[1] for r in results)
    raw_mbs = nbytes / raw / 1e6
    mig_mbs = nbytes / first / 1e6
    print(f"machine: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs; {mib} MiB resident, {runs} runs (medians)")
    print(f"raw loopback TCP:                 {raw * 1000:8.0f} ms  {raw_mbs:8.0f} MB/s (best run)")
    print(f"migration, SIGTSTP to receiver's first instruction: {first * 1000:8.0f} ms  {mig_mbs:8.0f} MB/s"
          f"  ({100 * mig_mbs / raw_mbs:.0f}% of raw loopback)")
    print(f"migration, to the program's own check of every byte: {checked * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
