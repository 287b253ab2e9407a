"""`stockdrop run` as a real process: started, ready, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from daemon import exitcodes
from tests.helpers import ONE_WAREHOUSE, write_config


def _ready_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(60)
    return sock


def test_the_daemon_starts_notifies_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ONE_WAREHOUSE)
    subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "db", "upgrade"], check=True,
                   capture_output=True)
    sock = _ready_socket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "-c", str(cfg), "run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert proc.returncode == exitcodes.OK, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "stopped" in events and "crashed" not in events
    # On SQLite the log is checkpointed off the writers' path, by the service that stops last.
    assert next(line for line in lines if line["event"] == "starting")["services"][0] == "checkpointer"
    assert events.index("ready") < events.index("stopped")


def test_the_daemon_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[merchants]]\nname = "m"\ncolour = "blue"\n')
    proc = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "run"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == exitcodes.CONFIG
    assert "merchants[0].colour" in proc.stdout + proc.stderr


def test_the_daemon_refuses_to_start_while_a_migration_is_pending(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ONE_WAREHOUSE)
    proc = subprocess.run([sys.executable, "-m", "daemon", "-c", str(cfg), "run"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == exitcodes.DB_NOT_READY
    assert "stockdrop db upgrade" in proc.stdout + proc.stderr
