"""A real mosquitto broker for the MQTT tests: Debian's ``mosquitto`` (``make mqtt-broker`` installs it),
started on a free loopback port with a temporary config, and a plain subscriber that records messages."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HINT = "mosquitto is not installed: `make mqtt-broker` (apt-get install mosquitto mosquitto-clients)"
WAIT_S = 30  # bound on every wait for the broker or a message


def have_mosquitto() -> bool:
    return Path(MOSQUITTO).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """``mosquitto -c CONF`` on 127.0.0.1:``port``; anonymous, or ``users`` {name: password} only."""

    def __init__(self, directory: Path, port: Optional[int] = None, users: Optional[dict] = None,
                 tls: Optional[dict] = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users = users
        self.tls = tls  # {"cafile", "certfile", "keyfile"}: a second listener, with TLS, on tls_port
        self.tls_port = free_port() if tls else None
        self.log = self.dir / "mosquitto.log"
        self.proc: Optional[subprocess.Popen] = None

    def _config(self) -> Path:
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true"]
        if os.geteuid() == 0:  # mosquitto run as root drops to the `mosquitto` user, who cannot read our tmp dir
            lines.append("user root")
        if self.users:
            pwfile = self.dir / "passwd"
            pwfile.write_text("")
            for user, password in self.users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", str(pwfile),
                                user, password], check=True, capture_output=True, timeout=WAIT_S)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.tls['cafile']}",
                      f"certfile {self.tls['certfile']}", f"keyfile {self.tls['keyfile']}"]
        conf = self.dir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> "Broker":
        conf = self._config()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode(errors='replace')} "
                                   f"{self.log.read_text() if self.log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {WAIT_S} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT_S)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Message:
    def __init__(self, topic: str, payload: bytes, retain: bool):
        self.topic, self.payload, self.retain = topic, payload, retain

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    def json(self):
        import json

        return json.loads(self.payload)

    def __repr__(self):
        return f"Message({self.topic!r}, {self.payload[:80]!r}, retain={self.retain})"


class Subscriber:
    """A plain paho client subscribed to ``topics`` (default everything) that records what arrives."""

    def __init__(self, port: int, topics=("#",), client_id: str = "test-subscriber"):
        import paho.mqtt.client as mqtt

        self.messages: List[Message] = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.closed = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(WAIT_S):
            self.close()
            raise RuntimeError(f"the test subscriber could not connect to 127.0.0.1:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = WAIT_S, after: int = 0) -> Message:
        """The first message (from index ``after``) for which ``predicate(msg)`` holds; waits (bounded)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages[after:]:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching MQTT message within {timeout} s; got "
                                         f"{[(m.topic, m.text[:60]) for m in self.messages[-20:]]}")
                self.cond.wait(left)

    def count(self) -> int:
        with self.cond:
            return len(self.messages)

    def publish(self, topic: str, payload, retain: bool = False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)

    def close(self) -> None:
        """Disconnect and stop the network thread; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        self.client.disconnect()
        self.client.loop_stop()


def make_certificates(directory: Path) -> dict:
    """A private CA and a server certificate for 127.0.0.1 signed by it (openssl); paths by role."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl")
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")
    for args in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
             "-subj", "/CN=edge-rbmlp test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
             "-extfile", ext]):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=WAIT_S)
    return {"cafile": str(ca), "certfile": str(cert), "keyfile": str(key)}


def wait_until(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")
