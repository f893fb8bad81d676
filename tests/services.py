"""Throwaway Redis, PostgreSQL and S3-compatible servers, and `a2v serve` / `a2v worker` processes, for the
distributed deployment's tests and benchmark.

Each server runs from its own temporary directory on a free 127.0.0.1 port and is removed afterwards.
The binaries are Debian's (`redis-server`, PostgreSQL 15's `initdb`/`pg_ctl`/`postgres`/`psql`); the
object storage is moto's S3 server (`python -m moto.server`, a real HTTP endpoint in its own process,
from the `test` extra). Where one is missing or will not start, the fixtures skip with the reason
(`.ci/run` installs redis-server).
PostgreSQL refuses to run as root, so as root every PostgreSQL command runs as the `postgres` user
(`runuser -u postgres --`) on a data directory that user owns.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

START_TIMEOUT_S = 90  # a process must be up within this (imports on a loaded 2-core machine)
ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "fixtures" / "speech_en.wav"
DATABASES = 256  # Redis database numbers: fresh_url() hands out one per deployment


class ServiceUnavailable(RuntimeError):
    """A service binary is missing or would not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- Redis --------------------------------------------------------------------------------------------


class RedisServer:
    """`redis-server` with append-only persistence, so a kill -9 and a restart keep every queued job."""

    def __init__(self, directory: Path, binary: str) -> None:
        self.dir = directory
        self.binary = binary
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "redis.log"
        self._databases = itertools.count(1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start on the same port (and data) as before, or on a free one the first time."""
        for attempt in range(3):
            port = self.port or free_port()
            cmd = [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.dir),
                   "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                   "--logfile", str(self.log_path), "--protected-mode", "yes", "--databases", str(DATABASES)]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd=self.dir)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ping(port):
                    self.port = port
                    return self
                time.sleep(0.05)
            self._reap()
            if self.port or attempt == 2:  # a restart must keep its port; a first start may try another
                break
        raise ServiceUnavailable(f"redis-server did not start on 127.0.0.1:{port}:\n{_tail(self.log_path)}")

    def fresh_url(self) -> str:
        """The URL of a database number no other caller got, so deployments' queues never meet."""
        n = next(self._databases)
        if n >= DATABASES:
            raise RuntimeError(f"more than {DATABASES - 1} Redis databases asked for; raise DATABASES")
        return f"redis://127.0.0.1:{self.port}/{n}"

    @staticmethod
    def _ping(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def ping(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._ping(self.port)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server abruptly (kill -9 by default); its append-only file stays for the next start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        self._reap()

    def restart(self, sig: int = signal.SIGKILL) -> RedisServer:
        """kill -9 (or ``sig``), then start again on the same port from the same append-only file."""
        self.kill(sig)
        return self.start()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def _reap(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def log(self) -> str:
        return _tail(self.log_path)


def start_redis() -> tuple[RedisServer, Path]:
    """A running RedisServer in a new temporary directory; raises ServiceUnavailable with the reason."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server is not installed (apt-get install redis-server; .ci/run does this)")
    directory = Path(tempfile.mkdtemp(prefix="a2v-redis-"))
    try:
        return RedisServer(directory, binary).start(), directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


# --- PostgreSQL ---------------------------------------------------------------------------------------


def _postgres_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl, postgres and psql of one PostgreSQL version."""
    candidates = []
    if found := shutil.which("initdb"):
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres", "psql")):
            return d
    return None


class PostgresServer:
    """One PostgreSQL cluster: trust authentication on 127.0.0.1 and its own socket directory only.

    ``durable=False`` (tests) turns fsync off: the cluster is thrown away, and no test crashes the machine. Commits
    stay synchronous: a test that stops the server with ``immediate`` (a crash of PostgreSQL, not of the machine)
    must find what was committed, and with synchronous_commit off the last 0.6 s of commits were lost (on a fast
    machine, the tokens a front end had just imported).
    """

    def __init__(self, directory: Path, bin_dir: Path, durable: bool = False) -> None:
        self.dir = directory
        self.bin = bin_dir
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.log_path = directory / "postgres.log"
        self.durable = durable
        self.port = 0
        self._names = itertools.count(1)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *cmd: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_postgres, *cmd], capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir, stdin=subprocess.DEVNULL, check=False)

    def start(self) -> PostgresServer:
        if self.as_postgres:  # the data directory must belong to the user postgres runs as
            shutil.chown(self.dir, "postgres", "postgres")
        self.sockets.mkdir(exist_ok=True)
        self.dir.chmod(0o700)
        if self.as_postgres:
            shutil.chown(self.sockets, "postgres", "postgres")
        if not self.data.exists():
            r = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                          "--auth-local=trust", "--auth-host=trust", "--no-sync", "--no-instructions")
            if r.returncode:
                raise ServiceUnavailable(f"initdb failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
            hba = self.data / "pg_hba.conf"  # loopback and the private socket directory, nothing else
            hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
            if self.as_postgres:
                shutil.chown(hba, "postgres", "postgres")
        options = ["-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.sockets}",
                   "-c max_connections=200"]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        for attempt in range(3):
            port = self.port or free_port()
            r = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w",
                          "-t", str(START_TIMEOUT_S), "-o", " ".join([f"-p {port}", *options]), "start",
                          timeout=START_TIMEOUT_S + 10)
            if r.returncode == 0:
                self.port = port
                return self
            if self.port or attempt == 2:
                break
        raise ServiceUnavailable(f"postgres did not start on 127.0.0.1:{port} (exit {r.returncode}): "
                                 f"{r.stderr.strip()[-1000:]}\n{_tail(self.log_path)}")

    def stop(self, mode: str = "fast") -> None:
        if self.port:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command through the socket directory; returns its unaligned output."""
        r = subprocess.run([str(self.bin / "psql"), "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres",
                            "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        if r.returncode:
            raise RuntimeError(f"psql {sql!r} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def fresh_database(self) -> str:
        """A new, empty database; its URL (``postgresql://postgres@127.0.0.1:PORT/NAME``)."""
        name = f"a2v_test_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by fresh_database, closing whatever still holds a connection to it."""
        name = url.rsplit("/", 1)[1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        return _tail(self.log_path)


def start_postgres(durable: bool = False) -> tuple[PostgresServer, Path]:
    """A running PostgresServer in a new temporary directory; raises ServiceUnavailable with the reason."""
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        raise ServiceUnavailable("PostgreSQL's initdb, pg_ctl, postgres and psql were not found "
                                 "(Debian: apt-get install postgresql-15)")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise ServiceUnavailable("running as root, and runuser (to run PostgreSQL as postgres) is missing")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServiceUnavailable("running as root, and there is no postgres user to run PostgreSQL as") from None
    # not under pytest's tmp tree: its folders are 0700 root, which the postgres user cannot enter
    directory = Path(tempfile.mkdtemp(prefix="a2v-pg-"))
    server = PostgresServer(directory, bin_dir, durable)
    try:
        return server.start(), directory
    except BaseException:
        server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
        raise


# --- S3-compatible object storage ---------------------------------------------------------------------


S3_KEYS = {"AWS_ACCESS_KEY_ID": "a2v-test-key-id", "AWS_SECRET_ACCESS_KEY": "a2v-test-secret-0123456789"}


class S3Server:
    """moto's S3 server on 127.0.0.1 in its own process; ``bucket()`` makes a new bucket."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "moto.log"
        self._buckets = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a front end or worker needs to reach it: the standard AWS settings, no argv."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_REGION": "us-east-1", **S3_KEYS}

    def start(self) -> S3Server:
        for attempt in range(3):
            port = self.port or free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             cwd=self.dir)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        self.port = port
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
            if self.port or attempt == 2:
                break
        raise ServiceUnavailable(f"moto's S3 server did not start on 127.0.0.1:{port}:\n{_tail(self.log_path)}")

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.url, region_name="us-east-1",
                                              aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                                              aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"])

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        name = f"a2v-test-{os.getpid()}-{next(self._buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None


def start_s3() -> tuple[S3Server, Path]:
    """A running S3Server in a new temporary directory; raises ServiceUnavailable with the reason."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as e:
        raise ServiceUnavailable(f"{e.name} is not installed (pip install '.[test]')") from None
    directory = Path(tempfile.mkdtemp(prefix="a2v-s3-test-"))
    try:
        return S3Server(directory).start(), directory
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


# --- a2v processes: front ends and workers, each in its own directory --------------------------------------


def child_env(home: Path, tokens: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would give: no proxies, no a2v settings but A2V_HOME (and the tokens
    of a front end; a worker gets none)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("A2V_")}
    env.update(PYTHONPATH=str(ROOT), A2V_HOME=str(home), NO_COLOR="1")
    if tokens:
        env["A2V_SERVER_TOKENS"] = ",".join(f"{k}:{v}" for k, v in tokens.items())
    return env


@dataclass
class Proc:
    """One `a2v` process in its own working directory, its output kept in a log for failure messages."""

    name: str
    workdir: Path
    args: list[str]
    env: dict[str, str]
    prefix: list[str] = field(default_factory=list)  # e.g. taskset -c 0
    proc: subprocess.Popen | None = None
    descendants: list[psutil.Process] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def launch(self) -> Proc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "a2v_cli", *self.args], cwd=self.workdir,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log(1_000_000)):
                return
            assert self.alive(), f"{self.name} exited ({self.proc.returncode}) before {pattern!r}:\n{self.log()}"  # type: ignore[union-attr]
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout} s:\n{self.log()}")

    def kill9(self) -> list[psutil.Process]:
        """kill -9 the process itself (as a crash would); its descendants at that moment are returned."""
        assert self.proc is not None and self.alive(), self.log()
        self.descendants = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.kill()
        self.proc.wait(30)
        return self.descendants

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                p.kill()
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"{self.name} still ran {timeout} s after signal {sig}:\n{self.log()}") from None

    def close(self, grace_s: float = 10) -> None:
        """Stop whatever is left of it, its orphaned descendants too (teardown only)."""
        self.terminate()
        self.reap(time.monotonic() + grace_s)

    def terminate(self) -> None:
        """SIGTERM, remembering the descendants so that reap() can make sure they are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.descendants = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, deadline: float) -> None:
        """Wait for the process until ``deadline`` (monotonic), then kill it and anything it left behind."""
        if self.proc is not None:
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for p in self.descendants:
            try:
                p.kill()
            except psutil.Error:
                pass


@dataclass
class FrontEnd(Proc):
    """`a2v serve`, distributed or embedded; ready when it answers /openapi.json."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> FrontEnd:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5, trust_env=False) as c:
            while time.monotonic() < deadline:
                assert self.alive(), f"{self.name} exited ({self.proc.returncode}):\n{self.log()}"  # type: ignore[union-attr]
                try:
                    if c.get(self.url + "/openapi.json").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")


@dataclass
class Worker(Proc):
    """`a2v worker`; ready when it prints its ready line."""

    queue: str = "a2v"
    concurrency: int = 1

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> Worker:
        self.wait_for_log(re.escape(f"a2v worker ready (queue={self.queue}, concurrency={self.concurrency})"),
                          timeout)
        return self


class Deployment:
    """The three shared settings, and the front ends and workers started against them."""

    def __init__(self, root: Path, broker: str, database: str, tokens: dict[str, str], queue: str = "a2v",
                 s3: S3Server | None = None) -> None:
        self.root = root
        self.tokens = tokens
        self.broker = broker
        self.database = database
        self.storage = root / "storage"
        self.storage.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.s3 = s3  # the files in a bucket of it (s3://bucket/results), not in ``storage``
        self.bucket = s3.bucket() if s3 is not None else ""
        self.storage_url = f"s3://{self.bucket}/results" if s3 is not None else str(self.storage)
        self.queue = queue
        self.procs: list[Proc] = []

    def settings(self) -> list[str]:
        return ["--broker", self.broker, "--database", self.database, "--storage", self.storage_url]

    def settings_env(self) -> dict[str, str]:
        return {"A2V_BROKER": self.broker, "A2V_DATABASE": self.database, "A2V_STORAGE": self.storage_url}

    def env(self, home: Path, tokens: dict[str, str] | None = None) -> dict[str, str]:
        return {**child_env(home, tokens), **(self.s3.env() if self.s3 is not None else {})}

    def front_end(self, name: str, *extra: str, from_env: bool = False) -> FrontEnd:
        """Launched, not yet waited for (start several, then wait: they import in parallel)."""
        workdir = self.root / name
        env = self.env(workdir / "home", self.tokens)
        settings = self.settings()
        if from_env:  # the same settings through A2V_BROKER / A2V_DATABASE / A2V_STORAGE
            env.update(self.settings_env())
            settings = []
        port = free_port()
        fe = FrontEnd(name, workdir, ["serve", "--port", str(port), "--queue", self.queue, *settings, *extra], env,
                      port=port)
        self.procs.append(fe)
        return fe.launch()  # type: ignore[return-value]

    def worker(self, name: str, *extra: str, concurrency: int = 1, cpus: str | None = None) -> Worker:
        """Launched, not yet waited for; ``cpus`` pins it (and its children) with taskset, e.g. "0"."""
        workdir = self.root / name
        w = Worker(name, workdir, ["worker", *self.settings(), "--queue", self.queue, "--concurrency",
                                   str(concurrency), "--device", "cpu", *extra], self.env(workdir / "home"),
                   queue=self.queue, concurrency=concurrency, prefix=["taskset", "-c", cpus] if cpus else [])
        self.procs.append(w)
        return w.launch()  # type: ignore[return-value]

    def outputs(self, video_id: str) -> list[str]:
        """Every file in the shared storage (or object in the bucket) whose path names the video: its one
        output set, nothing else."""
        if self.s3 is not None:
            return [k for k in self.s3.keys(self.bucket) if video_id in k]
        return sorted(str(p.relative_to(self.storage)) for p in self.storage.rglob("*")
                      if p.is_file() and video_id in str(p.relative_to(self.storage)))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log(3000)}" for p in self.procs)

    def close(self, grace_s: float = 10) -> None:
        """SIGTERM to every process at once; whatever still runs ``grace_s`` later is killed."""
        for p in self.procs:
            p.terminate()
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            p.reap(deadline)


def start_all(*procs: FrontEnd | Worker) -> None:
    for p in procs:
        p.wait_ready()



class Balancer:
    """A round-robin TCP proxy on 127.0.0.1, the load balancer in front of the front ends: every front end
    hands out links on its address (``--public-url``), and a front end that is down is skipped."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.backends: list[int] = []
        self.turn = 0
        self.threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._loop, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for _ in range(len(self.backends)):
                self.turn += 1
                try:
                    up = socket.create_connection(("127.0.0.1", self.backends[self.turn % len(self.backends)]), 5)
                except OSError:
                    continue
                with up:
                    back = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
                    back.start()
                    _pipe(conn, up)
                    back.join(60)
                return

    def close(self) -> None:
        self.sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


# --- a deployment of two front ends and two workers, for the tests that do not break it -----------------


def speech(seconds: float) -> bytes:
    """``seconds`` of the speech fixture (repeated as needed) as a 16-bit WAV file."""
    import io

    import numpy as np
    import soundfile as sf

    data, rate = sf.read(str(SPEECH), dtype="int16")
    n = int(seconds * rate)
    data = np.tile(data, math.ceil(n / len(data)))[:n]
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# --- pytest fixtures (registered in tests/conftest.py) ---------------------------------------------------


@contextmanager
def running(start: Callable[[], tuple[Any, Path]], what: str) -> Iterator[Any]:
    """A service from ``start`` (start_redis, start_postgres) for a fixture: skipped with the reason where it
    cannot start, stopped and its directory removed afterwards."""
    try:
        server, directory = start()
    except ServiceUnavailable as e:
        pytest.skip(f"no {what} for the distributed tests: {e}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the session (each deployment takes its own database number: fresh_url())."""
    with running(start_redis, "Redis") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; ``fresh_database()`` gives each test its own database."""
    with running(start_postgres, "PostgreSQL") as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3-compatible server (moto's) for the session; ``bucket()`` gives each deployment its own bucket."""
    with running(start_s3, "S3-compatible server") as server:
        yield server


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty database for one test, dropped after it."""
    url = postgres_server.fresh_database()
    yield url
    postgres_server.drop_database(url)


def processes_named(pid: int, word: str) -> list[psutil.Process]:
    """The processes under ``pid`` whose command line holds ``word``; one that ends while it is looked at (an ffmpeg
    child of a render, on a fast machine) is skipped."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if word in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found
