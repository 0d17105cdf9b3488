"""A real S3 protocol server on loopback for tests and benchmarks: moto's server in a child process.

The child listens on ``127.0.0.1`` at a free port and keeps its buckets in memory for its whole life;
:meth:`MotoServer.stop` closes the listening socket (clients get "connection refused") and
:meth:`MotoServer.start` listens again on the same port with the same data, so a test can take the
server away mid-read and bring it back. :meth:`pause`/:meth:`resume` freeze the process instead
(SIGSTOP: connections hang until the client's timeout). Never a public endpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["MotoServer", "free_port", "s3_env"]

_CHILD = r"""
import logging
import sys
import time
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
latency = [0.0]


class Server(ThreadedMotoServer):
    def _server_entry(self):  # moto's own, with an optional delay per request (object-store latency)
        app = DomainDispatcherApplication(create_backend_app)

        def delayed(environ, start_response):
            if latency[0]:
                time.sleep(latency[0])
            return app(environ, start_response)

        self._server = make_server(self._ip_address, self._port, delayed, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


port = int(sys.argv[1])
server = None
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command.startswith("latency "):
        latency[0] = float(command.split()[1])
    if command == "start" and server is None:
        server = Server(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    elif command == "stop" and server is not None:
        server.stop()
        server._server.server_close()  # stop listening: clients are refused, not left hanging
        server = None
    elif command == "exit":
        break
    print("ok", command, flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_env(home: Path) -> dict[str, str]:
    """Fake credentials and no user AWS config: nothing leaks in from the machine."""
    return {
        "AWS_ACCESS_KEY_ID": "hcsfs-test",
        "AWS_SECRET_ACCESS_KEY": "hcsfs-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


class MotoServer:
    """moto's S3 server on 127.0.0.1 in a child process (see the module docstring)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.port)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._expect("ready")
        self.start()

    def _command(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        self._expect(f"ok {command}")

    def _expect(self, line: str) -> None:
        assert self._proc.stdout is not None
        got = self._proc.stdout.readline().strip()
        if got != line:
            raise RuntimeError(f"moto server: expected {line!r}, got {got!r}")

    def start(self) -> None:
        self._command("start")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"moto server did not listen on {self.port}")

    def stop(self) -> None:
        self._command("stop")

    def set_latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` (a remote object store's round trip)."""
        self._command(f"latency {seconds}")

    def pause(self) -> None:
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        try:
            self._command("exit")
        except (OSError, RuntimeError):
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
