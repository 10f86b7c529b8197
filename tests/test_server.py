"""The real server in a subprocess: `labelandlearn serve` and `labelandlearn demo`."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from labelandlearn.errors import ValidationError
from labelandlearn.server import check_bind_host, is_loopback, server_url

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningServer:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "is running at" in line:
                self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.ready.wait(0.2):
                return
            if self.process.poll() is not None:
                break
        raise AssertionError(f"server did not start; its output:\n{self.output()}")

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as response:
            return response.status, response.read()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server ignored SIGINT; its output:\n{self.output()}") from None


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("LABELANDLEARN_")
    }
    env["LABELANDLEARN_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


@contextmanager
def labelandlearn(data_dir: Path, *args: str, port: int) -> Iterator[RunningServer]:
    process = subprocess.Popen(
        [sys.executable, "-m", "labelandlearn.cli", *args, "--port", str(port)],
        env=cli_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = RunningServer(process, port)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def listening_addresses(pid: int, port: int) -> set[str]:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    addresses = set()
    for process in processes:
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                addresses.add(connection.laddr.ip)
    return addresses


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["gunicorn", "waitress"])
def test_serve_answers_on_loopback(tmp_path: Path, backend: str) -> None:
    port = free_port()
    with labelandlearn(tmp_path, "serve", "--server", backend, port=port) as server:
        server.wait_ready()

        status, body = server.get("/")
        assert status == 200
        assert b"<html" in body.lower()
        status, body = server.get("/api/v1/projects")
        assert status == 200
        assert json.loads(body) == {"projects": []}
        assert listening_addresses(server.process.pid, port) == {"127.0.0.1"}

        assert server.stop() == 0
    assert (tmp_path / "labelandlearn.db").exists()


def test_serve_rejects_public_host(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "labelandlearn.cli", "serve", "--host", "0.0.0.0"],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: host '0.0.0.0'")


def test_serve_reports_busy_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "labelandlearn.cli", "serve", "--port", str(port)],
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_check_bind_host_rejects_all_interfaces() -> None:
    with pytest.raises(ValidationError, match="not a loopback address"):
        check_bind_host("0.0.0.0")


def test_check_bind_host_allows_any_with_accounts() -> None:
    check_bind_host("0.0.0.0", accounts=True)
    check_bind_host("127.0.0.1", accounts=False)


def test_server_url_brackets_ipv6() -> None:
    assert server_url("::1", 8000) == "http://[::1]:8000/"
    assert server_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"


def write_demo_file(path: Path, rows: int = 80) -> None:
    """Write tweets with the demo columns: useful ones about prices, useless ones about memes."""
    rng = random.Random(7)
    topics = {
        "1": ["price", "rally", "breakout", "bullish", "gains", "upgrade"],
        "0": ["meme", "giveaway", "follow", "airdrop", "retweet", "lol"],
        "-1": ["crash", "dump", "hack", "bearish", "losses", "scam"],
    }
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "date", "rating"])
        for index in range(rows):
            rating = ["1", "0", "-1"][index % 3]
            words = rng.choices(topics[rating], k=5)
            writer.writerow([f"ethereum {' '.join(words)} #{index}", "2018-01-01", rating])


@pytest.mark.slow
def test_demo_loads_project_and_serves(tmp_path: Path) -> None:
    data_file = tmp_path / "tweets.csv"
    write_demo_file(data_file)
    data_dir = tmp_path / "data"
    port = free_port()

    with labelandlearn(
        data_dir, "demo", "--data", str(data_file), "--no-open", port=port
    ) as server:
        server.wait_ready()
        assert f"is running at http://127.0.0.1:{port}/" in server.output()

        status, body = server.get("/api/v1/projects")
        assert status == 200
        projects = json.loads(body)["projects"]
        assert len(projects) == 1
        assert projects[0]["items_total"] == 80
        assert 0 < projects[0]["items_labelled"] < 80
        assert {label["name"] for label in projects[0]["labels"]} == {
            "negative",
            "useless",
            "positive",
        }
        assert projects[0]["current_model_id"] is not None

        status, body = server.get(f"/api/v1/projects/{projects[0]['id']}/items/next?limit=1")
        assert status == 200
        assert len(json.loads(body)["items"]) == 1
        label_page = f"projects/{projects[0]['id']}/label"
        assert f"Label the demo tweets at {server.url}{label_page}" in server.output()
        status, _body = server.get(label_page)
        assert status == 200

        assert server.stop() == 0


@pytest.mark.slow
def test_serve_access_log_on_waitress(tmp_path: Path) -> None:
    port = free_port()
    with labelandlearn(tmp_path, "serve", "--access-log", port=port) as server:
        server.wait_ready()
        status, _body = server.get("/api/v1/projects?page=1")
        assert status == 200
        assert server.stop() == 0
    output = server.output()
    assert "starting waitress" in output
    assert '"GET /api/v1/projects?page=1 HTTP/1.1" 200' in output


SLOW_SERVER = """
import sys, time
from pathlib import Path
from labelandlearn.server import ServerOptions, run_server
from labelandlearn.settings import Settings

def slow_app(environ, start_response):
    time.sleep(0.8)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]

settings = Settings(data_dir=Path(sys.argv[1]))
options = ServerOptions(
    port=int(sys.argv[2]), threads=1, backend="waitress",
    on_ready=lambda url: print("ready", flush=True),
)
run_server(settings, options, app_factory=lambda: slow_app)
print("stopped", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_waitress_stop_sends_queued_responses(tmp_path: Path, signum: int) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(tmp_path), str(port)],
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        results: dict[str, object] = {}

        def fetch(path: str) -> None:
            url = f"http://127.0.0.1:{port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=20) as response:
                    results[path] = response.read().decode()
            except OSError as error:
                results[path] = error

        # One request thread: the first request runs, the other two wait in the queue.
        clients = [threading.Thread(target=fetch, args=(f"/r{i}",)) for i in range(3)]
        for client in clients:
            client.start()
            time.sleep(0.05)
        # The first request runs for 0.8 s, so it is still running when the signal comes.
        time.sleep(0.4)
        process.send_signal(signum)
        for client in clients:
            client.join(timeout=20)
        assert results == {"/r0": "/r0", "/r1": "/r1", "/r2": "/r2"}
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0
        output = process.stdout.read()
        assert "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
