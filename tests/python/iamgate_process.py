"""`iamgate serve` as a process for the Python suites: the binary, a free loopback port, and a
server that is healthy before the test runs and stopped after it."""

import contextlib
import os
import socket
import subprocess
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("IAMGATE_BIN", os.path.join(ROOT, "target", "debug", "iamgate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(data, **env_extra):
    """Runs `iamgate serve` on `data` (a data directory) with `env_extra` added to its
    environment; yields its base URL once `/-/healthz` answers (30 s at most)."""
    port = free_port()
    env = dict(os.environ, IAMGATE_DATA_DIR=str(data), IAMGATE_LISTEN=f"127.0.0.1:{port}",
               IAMGATE_LOG_LEVEL="warn", **env_extra)
    env.pop("IAMGATE_CONFIG", None)
    proc = subprocess.Popen([BIN, "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/-/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "iamgate exited during start-up"
            assert time.time() < deadline, "iamgate did not become healthy"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
