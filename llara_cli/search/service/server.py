"""Running the service: :func:`run_server` (``llara serve``: uvicorn in the foreground, SIGTERM/SIGINT drain
in-flight requests, then exit 0) and :class:`ServerThread` (uvicorn on a background thread, an ephemeral port
on loopback: tests and the load benchmark); :func:`start_serve_process` (``llara serve`` in a child process, its URL
read from the line it prints once listening: the SIGTERM tests and the load benchmark).

Graceful shutdown is uvicorn's: on SIGTERM it stops accepting connections, lets every request already
admitted finish (up to the per-request timeout plus a margin), then the app's lifespan closes the service,
whose batchers finish what is queued. The service refuses new requests (503) from the first signal on.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from llara_cli.errors import LlaraError
from llara_cli.search.service.service import SearchService

logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN_S = 5.0  # beyond the per-request timeout, how long shutdown waits for in-flight requests
STARTUP_TIMEOUT_S = 60.0
SERVING_PREFIX = "serving on "  # `llara serve`'s first line on stdout: "serving on http://HOST:PORT ..."
STDERR_SHOWN_CHARS = 2000


def start_serve_process(args: Sequence[str], *, env: Mapping[str, str] | None = None,
                        timeout_s: float = STARTUP_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """``llara serve ARGS`` in a child process of this interpreter, and its base URL once it listens; a server that
    exits or does not print its address within ``timeout_s`` is killed, and the error holds the end of its stderr."""
    process = subprocess.Popen([sys.executable, "-m", "llara_cli", "serve", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=dict(env if env is not None else os.environ))
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        if line.startswith(SERVING_PREFIX):
            return process, line.split()[2]
        if time.monotonic() > deadline:
            break
    process.kill()
    raise LlaraError(f"llara serve did not start: {process.stderr.read()[-STDERR_SHOWN_CHARS:]}")


def _server_class():
    try:
        import uvicorn
    except ImportError:
        raise LlaraError("llara serve needs FastAPI and uvicorn: pip install 'llara[serve]'") from None

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, telling the service to refuse new requests as soon as a signal arrives."""

        service: SearchService | None = None

        def handle_exit(self, sig, frame) -> None:
            if self.service is not None:
                self.service.begin_shutdown()
            super().handle_exit(sig, frame)

    return uvicorn, DrainingServer


def _uvicorn_config(uvicorn, app, service: SearchService, host: str, port: int, log_level: str):
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", access_log=False,
                          timeout_graceful_shutdown=int(service.config.timeout_s + SHUTDOWN_MARGIN_S),
                          backlog=max(2048, service.config.max_pending))


def run_server(service: SearchService, *, log_level: str = "warning",
               on_started=None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and close the service (the caller built it: loading errors
    surface before a port is bound)."""
    from llara_cli.search.service.app import create_app

    uvicorn, server_class = _server_class()
    config = service.config
    server = server_class(_uvicorn_config(uvicorn, create_app(service), service, config.host, config.port,
                                          log_level))
    server.service = service
    if on_started is not None:
        threading.Thread(target=_report_started, args=(server, on_started), daemon=True).start()
    # uvicorn re-raises the signal it drained on, after restoring the handlers it found: these make that a
    # clean exit (status 0) instead of a death by SIGTERM or a KeyboardInterrupt.
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise LlaraError(f"could not serve on {config.host}:{config.port} (in use, or not an address of this machine?)")


def _drained(signum, frame) -> None:
    logger.info("stopped on signal %d after draining", signum)


def _report_started(server, on_started) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started and not server.should_exit and time.monotonic() < deadline:
        time.sleep(0.02)
    if server.started:
        on_started(*bound_address(server))


def bound_address(server) -> tuple[str, int]:
    sockets = [sock for listener in server.servers for sock in listener.sockets]
    host, port = sockets[0].getsockname()[:2]
    return host, port


class ServerThread:
    """``with ServerThread(service) as base_url:`` uvicorn on a background thread, on loopback (an ephemeral
    port unless the config names one); leaving the block shuts it down gracefully and closes the service."""

    def __init__(self, service: SearchService, *, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        from llara_cli.search.service.app import create_app

        uvicorn, server_class = _server_class()
        self.service = service
        self.server = server_class(_uvicorn_config(uvicorn, create_app(service), service, host, port, log_level))
        self.server.install_signal_handlers = lambda: None
        self.server.service = service
        self.thread = threading.Thread(target=self.server.run, name="llara-serve", daemon=True)
        self.base_url = ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LlaraError("the server thread did not start")
            time.sleep(0.01)
        host, port = bound_address(self.server)
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    def __exit__(self, *exc) -> None:
        self.service.begin_shutdown()
        self.server.should_exit = True
        self.thread.join(timeout=self.service.config.timeout_s + SHUTDOWN_MARGIN_S + 10)
        self.service.close()
