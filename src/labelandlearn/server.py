"""Run the web application: waitress by default, gunicorn (gthread worker) on request.

The server runs ONE process with several request threads, because the in-process job runner
(training, imports) and the model cache that serves predictions and online updates live in
that process. Several worker processes would each hold their own model cache and job threads,
so an answer's online update would reach only one of them.

``run_server`` blocks until the server stops. Ctrl+C (SIGINT) and SIGTERM stop it gracefully:
the socket closes, requests in flight finish (up to ``GRACEFUL_TIMEOUT_S``), then the job
runner shuts down.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labelandlearn.errors import ValidationError
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)
# Request lines of ``serve --access-log`` under waitress (gunicorn writes its own).
access_logger = logging.getLogger("labelandlearn.access")

Backend = Literal["auto", "gunicorn", "waitress"]
WsgiApp = Callable[..., Any]

# Request threads of the one server process. On SQLite, one thread served the load test
# (20 annotators at 200 answers/s on 2 cores) with the least CPU per answer and the lowest
# p95, because every labelling request writes and more threads only add interpreter-lock
# hand-offs (docs/benchmarks.md). But with one thread a slow request (a dashboard of a
# large project takes over a second) makes every annotator wait, and gunicorn's gthread
# worker parks a request thread for up to 5 s on a new connection that sends nothing. So
# the default is 4, and the labelling gate keeps the labelling requests from contending.
DEFAULT_THREADS = 4
# Seconds gunicorn lets the worker stay silent before restarting it. Request threads never
# run training (jobs do), so this only trips on a hung worker.
WORKER_TIMEOUT_S = 120
GRACEFUL_TIMEOUT_S = 10
WAITRESS_CONNECTION_LIMIT = 1000
LOOPBACK_NAMES = {"localhost"}


@dataclass
class ServerOptions:
    """Listening address, threads and backend of the server, and its callback once loaded."""

    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = DEFAULT_THREADS
    backend: Backend = "auto"
    log_level: str = "INFO"
    access_log: bool = False
    # Called with the URL in the process that serves requests, after the app is built.
    on_ready: Callable[[str], None] | None = field(default=None, repr=False)


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names only this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.casefold() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, accounts: bool = False) -> None:
    """Raise ValidationError when ``host`` is not a loopback address and accounts are off.

    Without accounts every request acts as the local user, who may edit and delete projects,
    so such a server must not be reachable from other machines.
    """
    if not accounts and not is_loopback(host):
        raise ValidationError(
            f"host {host!r} is not a loopback address, and without accounts anyone who reached "
            "the server could edit and delete projects; bind 127.0.0.1 (forward the port over "
            "SSH for remote use) or enable accounts with --accounts"
        )


def server_url(host: str, port: int) -> str:
    """Return the http URL of a server bound to ``host`` and ``port``."""
    url_host = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{url_host}:{port}/"


def check_port_free(host: str, port: int) -> None:
    """Raise ValidationError when ``port`` on ``host`` is already in use."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ValidationError(
                f"cannot listen on {host}:{port} ({exc.strerror}); another program uses the "
                "port, so pick another with --port"
            ) from None


def prepare_database(settings: Settings) -> None:
    """Create or upgrade the schema in this process, before any server process starts.

    Doing it here turns a wrong database URL or a stopped PostgreSQL server into one error
    message, instead of a worker that fails to boot.
    """
    db = Database(settings.resolved_database_url)
    try:
        db.upgrade()
    finally:
        db.dispose()


def build_served_app(settings: Settings) -> Flask:
    """Build the Flask application as a server runs it: gated labelling on SQLite."""
    from labelandlearn.web.app import create_app
    from labelandlearn.web.gate import LabellingGate

    app = create_app(settings)
    if app.extensions["labelandlearn"].db.is_sqlite:
        # PostgreSQL takes concurrent writers, and a request waiting for its round trips
        # would hold the gate idle, so only SQLite gets it.
        app.wsgi_app = LabellingGate(app.wsgi_app)  # type: ignore[method-assign]
    return app


def default_app_factory(settings: Settings) -> Callable[[], WsgiApp]:
    """Return a function that builds the Flask application for ``settings``."""

    def build() -> WsgiApp:
        return build_served_app(settings)

    return build


def choose_backend(requested: Backend) -> Literal["gunicorn", "waitress"]:
    """Return the server to run; "auto" is waitress on every platform.

    waitress reads each request whole in its network thread before a request thread runs it,
    and sends responses from there too. So an idle or slow connection (browsers open spare
    connections ahead of use) never occupies a request thread. gunicorn's gthread worker
    hands each new connection to a request thread, which waits up to 5 s (gunicorn 27) for
    the first bytes. waitress also gave the lower latency in ``benchmarks/load_test.py``
    (docs/benchmarks.md).
    """
    if requested != "auto":
        return requested
    return "waitress"


def run_server(
    settings: Settings,
    options: ServerOptions,
    app_factory: Callable[[], WsgiApp] | None = None,
) -> None:
    """Serve the application until Ctrl+C or SIGTERM; raise ValidationError on a bad bind."""
    check_bind_host(options.host, settings.accounts)
    check_port_free(options.host, options.port)
    if options.threads < 1:
        raise ValidationError(f"threads must be at least 1, got {options.threads}")
    prepare_database(settings)
    factory = app_factory or default_app_factory(settings)
    backend = choose_backend(options.backend)
    logger.info(
        "starting %s on %s with %d threads",
        backend,
        server_url(options.host, options.port),
        options.threads,
    )
    if backend == "gunicorn":
        _run_gunicorn(factory, options)
    else:
        _run_waitress(factory, options)


def freeze_startup_objects() -> None:
    """Move the objects that exist once the app is built out of the garbage collector's view.

    The server process contains a few hundred thousand long-lived objects (modules, the Flask
    app, SQLAlchemy metadata). CPython's full collection walks all of them, which paused
    every request thread for 40 to 120 ms several times per minute under load
    (``benchmarks/load_test.py``). Frozen objects are never walked, and never freed, which
    module-level objects would not be anyway. Objects made later are collected as before.
    """
    # Looking up the cold-start recipe imports the learning modules (and scikit-learn) that
    # the first answer would otherwise import, which took about 170 ms of that request, and
    # puts their objects under the freeze too.
    from labelandlearn.learning.base import get_recipe
    from labelandlearn.learning.online import COLD_START_RECIPE

    get_recipe(COLD_START_RECIPE)
    gc.collect()
    gc.freeze()
    logger.debug("froze %d objects after start-up", gc.get_freeze_count())


def shutdown_app(app: Any) -> None:
    """Stop the job runner and close the database of a Flask app built by ``create_app``."""
    extensions = getattr(app, "extensions", {})
    state = extensions.get("labelandlearn") if isinstance(extensions, dict) else None
    if state is None:
        return
    # A job still running is cut off: the in-process runner ends its child process and marks
    # the job failed (or the next start does).
    state.runner.shutdown(wait=False)
    state.db.dispose()
    logger.info("application stopped")


# --------------------------------------------------------------------------- gunicorn


def _gunicorn_options(options: ServerOptions) -> dict[str, Any]:
    host = f"[{options.host.strip('[]')}]" if ":" in options.host else options.host

    def post_worker_init(worker: Any) -> None:
        # gunicorn's worker quits at once on SIGINT; treat Ctrl+C like SIGTERM instead, so
        # requests in flight finish.
        signal.signal(signal.SIGINT, worker.handle_exit)
        freeze_startup_objects()
        if options.on_ready is not None:
            options.on_ready(server_url(options.host, options.port))

    def worker_exit(_server: Any, worker: Any) -> None:
        shutdown_app(getattr(worker.app, "loaded_app", None))

    values: dict[str, Any] = {
        "bind": [f"{host}:{options.port}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": options.threads,
        "timeout": WORKER_TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 5,
        "loglevel": options.log_level.lower(),
        "accesslog": "-" if options.access_log else None,
        "errorlog": "-",
        "proc_name": "labelandlearn",
        "preload_app": False,
        "control_socket_disable": True,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
    }
    # gunicorn's worker heartbeat file: its documentation advises a memory-backed folder,
    # because updates on a disk-backed /tmp can block the worker.
    shared_memory = "/dev/shm"  # noqa: S108 - gunicorn creates a private file in it
    if os.path.isdir(shared_memory):
        values["worker_tmp_dir"] = shared_memory
    return values


def _run_gunicorn(factory: Callable[[], WsgiApp], options: ServerOptions) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class GracefulArbiter(Arbiter):
        def handle_int(self) -> None:
            # gunicorn's default stops workers at once on SIGINT; SIGTERM's path waits for
            # requests in flight.
            raise StopIteration

    class LabelAndLearnApplication(BaseApplication):
        def __init__(self) -> None:
            self.loaded_app: Any = None
            super().__init__()

        def load_config(self) -> None:
            for key, value in _gunicorn_options(options).items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)
                else:
                    logger.debug("gunicorn %s has no setting %s", _gunicorn_version(), key)

        def load(self) -> WsgiApp:
            # Runs in the worker process after the fork, so job threads start there.
            self.loaded_app = factory()
            return self.loaded_app

        def run(self) -> None:
            GracefulArbiter(self).run()

    flush_standard_streams()
    LabelAndLearnApplication().run()


def _gunicorn_version() -> str:
    import gunicorn

    return str(getattr(gunicorn, "__version__", "?"))


# --------------------------------------------------------------------------- waitress


def _run_waitress(factory: Callable[[], WsgiApp], options: ServerOptions) -> None:
    from waitress import create_server

    app = factory()
    served: WsgiApp = app
    if options.access_log:
        access_logger.setLevel(logging.INFO)
        served = AccessLog(app)
    freeze_startup_objects()
    # waitress warns each time a request waits for a free request thread. Under load that
    # happened several times a second, because labelling requests wait at the gate by design.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = create_server(
        served,
        host=options.host.strip("[]"),
        port=options.port,
        threads=options.threads,
        ident="labelandlearn",
        # waitress refuses connections beyond 100 by default, which 16 browsers reach at 6
        # connections each. poll() has no limit on descriptor numbers, unlike select().
        connection_limit=WAITRESS_CONNECTION_LIMIT,
        asyncore_use_poll=True,
    )
    # SIGINT is set too, because a shell starts background jobs with SIGINT ignored.
    stop = _WaitressStop(server)
    previous = {
        signum: signal.signal(signum, stop.handle_signal)
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        if options.on_ready is not None:
            options.on_ready(server_url(options.host, options.port))
        # waitress returns from run() on KeyboardInterrupt after stopping its threads.
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.stopped = True
        logger.info("stopping the server")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.close()
        shutdown_app(app)


class _WaitressStop:
    """Stop waitress gracefully: finish and send what was received, then stop.

    waitress itself, on KeyboardInterrupt, gives running requests 5 s and closes every
    connection without sending their responses or running the requests still queued. Here
    the first SIGINT or SIGTERM stops accepting connections. The request threads then finish
    the queue and the network thread sends the responses, for up to ``GRACEFUL_TIMEOUT_S``,
    before a KeyboardInterrupt stops the loop. A second signal stops it at once.

    The drain reads waitress internals (3.0: the socket map, the task queue, the channels'
    pending requests and output). If a later waitress lacks them, the server logs a warning
    and stops the way waitress does by itself.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.draining = False
        # Set once the loop has ended, so a late drain thread sends no signal.
        self.stopped = False

    def handle_signal(self, _signum: int, _frame: Any) -> None:
        if self.draining:
            raise KeyboardInterrupt
        self.draining = True
        logger.info("stopping: finishing the requests already received")
        from waitress.server import BaseWSGIServer

        # Runs in the main thread, between turns of waitress's loop, so no lock is needed.
        try:
            for dispatcher in self._dispatchers():
                if isinstance(dispatcher, BaseWSGIServer):
                    dispatcher.accepting = False
        except AttributeError as error:
            logger.warning("stopping without waiting for requests (waitress changed): %s", error)
            raise KeyboardInterrupt from None
        threading.Thread(target=self._interrupt_when_idle, daemon=True).start()

    def _interrupt_when_idle(self) -> None:
        deadline = time.monotonic() + GRACEFUL_TIMEOUT_S
        try:
            while time.monotonic() < deadline and not self._idle():
                time.sleep(0.05)
        except AttributeError as error:
            logger.warning("stopping without waiting for requests (waitress changed): %s", error)
        if not self.stopped:
            # A real signal wakes the loop out of poll(); handle_signal then raises.
            os.kill(os.getpid(), signal.SIGINT)

    def _dispatchers(self) -> list[Any]:
        """Return the listening sockets and connections of waitress's socket map."""
        # A server with one listening socket keeps the map as ``_map`` (waitress 3.0), the
        # server for several sockets as ``map``.
        socket_map = getattr(self.server, "map", None)
        if socket_map is None:
            socket_map = self.server._map
        return list(socket_map.values())

    def _idle(self) -> bool:
        from waitress.channel import HTTPChannel

        tasks = self.server.task_dispatcher
        with tasks.lock:
            if tasks.queue or tasks.active_count:
                return False
        return not any(
            channel.requests or channel.total_outbufs_len
            for channel in self._dispatchers()
            if isinstance(channel, HTTPChannel)
        )


class AccessLog:
    """WSGI middleware that logs one line per request, as gunicorn's access log does.

    waitress writes no access log of its own. The line contains the client address, method,
    path with query, status and the application's time in milliseconds. It is written when
    the application returns, before the body is sent.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        statuses: list[str] = []

        def recording_start_response(status: str, *args: Any) -> Any:
            statuses.append(status)
            return start_response(status, *args)

        try:
            return self.app(environ, recording_start_response)
        finally:
            query = environ.get("QUERY_STRING", "")
            path = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
            access_logger.info(
                '%s "%s %s %s" %s %.1f ms',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                path,
                environ.get("SERVER_PROTOCOL", "-"),
                statuses[-1].split(" ", 1)[0] if statuses else "-",
                (time.perf_counter() - started) * 1000,
            )


def flush_standard_streams() -> None:
    """Flush stdout and stderr, so a message printed before a fork is not printed twice."""
    sys.stdout.flush()
    sys.stderr.flush()
