"""Run the web application: gunicorn with threads on POSIX systems, waitress elsewhere.

The server runs ONE process with several request threads, because the in-process job runner
(training, imports) and the model cache that serves predictions and online updates live in
that process. Several worker processes would each hold their own model cache and job threads,
so an answer's online update would reach only one of them.

``run_server`` blocks until the server stops. Ctrl+C (SIGINT) and SIGTERM stop it gracefully:
the socket closes, requests in flight finish (up to ``GRACEFUL_TIMEOUT_S``), then the job
runner shuts down.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from labelandlearn.errors import ValidationError
from labelandlearn.settings import Settings
from labelandlearn.storage.db import Database

logger = logging.getLogger(__name__)

Backend = Literal["auto", "gunicorn", "waitress"]
WsgiApp = Callable[..., Any]

# Request threads of the one server process. With 20 annotators on 2 cores, 4 threads gave
# the best p95 (benchmarks/load_test.py: 8 and 16 threads were slower, 2 was too few).
DEFAULT_THREADS = 4
# Seconds gunicorn lets the worker stay silent before restarting it. Request threads never
# run training (jobs do), so this only trips on a hung worker.
WORKER_TIMEOUT_S = 120
GRACEFUL_TIMEOUT_S = 10
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


def default_app_factory(settings: Settings) -> Callable[[], WsgiApp]:
    """Return a function that builds the Flask application for ``settings``."""

    def build() -> WsgiApp:
        from labelandlearn.web.app import create_app

        return create_app(settings)

    return build


def choose_backend(requested: Backend) -> Literal["gunicorn", "waitress"]:
    """Return gunicorn where it can run (POSIX with gunicorn installed), else waitress."""
    if requested != "auto":
        return requested
    if os.name == "posix":
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            logger.info("gunicorn is not installed; serving with waitress")
            return "waitress"
        return "gunicorn"
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
    server = create_server(
        app,
        host=options.host.strip("[]"),
        port=options.port,
        threads=options.threads,
        ident="labelandlearn",
    )
    # SIGINT is set too, because a shell starts background jobs with SIGINT ignored.
    previous = {
        signum: signal.signal(signum, _raise_keyboard_interrupt)
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
        logger.info("stopping the server")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.close()
        shutdown_app(app)


def _raise_keyboard_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def flush_standard_streams() -> None:
    """Flush stdout and stderr, so a message printed before a fork is not printed twice."""
    sys.stdout.flush()
    sys.stderr.flush()
