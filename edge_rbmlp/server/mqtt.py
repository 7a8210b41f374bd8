"""MQTT with Home Assistant discovery: the readings of ``[[readers]]`` go to a broker (``[mqtt]``).

paho-mqtt is imported only when ``[mqtt]`` is configured (``pip install 'edge-rbmlp[mqtt]'``).
Topics (``P`` = ``topic_prefix``, default ``edge-rbmlp/<hostname>``; ``D`` = ``discovery_prefix``):

* ``P/status``: ``online`` (retained) once connected; ``offline`` is the last will (and is sent on a
  clean stop);
* ``P/<reader>/state``: a valid reading as JSON (``value``, ``valid``, ``confidence``, ``digits``,
  ``latency_us``, ``ts``), retained (Home Assistant has the value as soon as it subscribes; the
  availability topic says whether it is current); ``P/<reader>/error``: an invalid one (with
  ``reason``), not retained. A reading is sent when its value (or error) changes, when
  ``republish_s`` passed, after a reconnect and on demand;
* ``D/sensor/<node_id>/<reader>/config``: the Home Assistant discovery payload (retained), sent after
  every (re)connect and when Home Assistant announces ``D/status`` = ``online``;
* ``P/cmd/read`` (subscribed): take a reading now; it is answered on the state/error topics.

paho's own network thread connects, and reconnects with back-off (1 s doubling up to 30 s) when the
broker goes away or is not there yet. The camera loop only puts readings into a bounded queue
(:meth:`MqttPublisher.submit` never waits), so nothing on the camera or HTTP side blocks on the
broker. Connection problems are logged once per kind of failure, not once per retry. The password is
never logged.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from typing import Callable, Dict, Optional, Sequence

log = logging.getLogger("edge_rbmlp.mqtt")

PAHO_HINT = ("[mqtt] needs paho-mqtt, which is not installed: `pip install 'edge-rbmlp[mqtt]'` "
             "(or `pip install paho-mqtt`)")
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30


class MqttUnavailable(RuntimeError):
    """paho-mqtt is missing (the message says what to install)."""


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MqttUnavailable(f"{PAHO_HINT} ({exc})") from None
    return mqtt


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text) or "edge-rbmlp"


def topic_prefix(config, hostname: Optional[str] = None) -> str:
    return config.topic_prefix or f"edge-rbmlp/{_slug(hostname or socket.gethostname())}"


def client_id(config, hostname: Optional[str] = None) -> str:
    return config.client_id or f"edge-rbmlp-{_slug(hostname or socket.gethostname())}"


def discovery_topic(config, reader: str, hostname: Optional[str] = None) -> str:
    return f"{config.discovery_prefix}/sensor/{_slug(client_id(config, hostname))}/{reader}/config"


def discovery_payload(config, reader, hostname: Optional[str] = None) -> dict:
    """Home Assistant's MQTT discovery message for one ``[[readers]]`` entry (a sensor)."""
    from .. import __version__

    host = hostname or socket.gethostname()
    prefix, node = topic_prefix(config, host), _slug(client_id(config, host))
    payload = {
        "name": reader.name,
        "unique_id": f"{node}_{reader.name}",
        "state_topic": f"{prefix}/{reader.name}/state",
        "value_template": "{{ value_json.value }}",
        "json_attributes_topic": f"{prefix}/{reader.name}/state",
        "availability_topic": f"{prefix}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:counter",
        "device": {"identifiers": [node], "name": f"edge-rbmlp {host}", "model": "edge-rbmlp camera reader",
                   "manufacturer": "edge-rbmlp", "sw_version": __version__},
    }
    if reader.monotonic:
        payload["state_class"] = "total_increasing"
    return payload


class _OncePerKind:
    """Log a connection problem once while it lasts: the same kind again goes to debug."""

    def __init__(self):
        self.kind: Optional[str] = None

    def report(self, kind: str, message: str, level=logging.WARNING) -> None:
        if kind == self.kind:
            log.debug("%s", message)
            return
        self.kind = kind
        log.log(level, "%s", message)

    def clear(self) -> None:
        self.kind = None


class MqttPublisher:
    """Publishes readings and discovery to the broker of ``config`` (an ``MqttConfig``) for ``readers``
    (``ReaderConfig``s); ``on_command()`` is called (from paho's thread) on ``cmd/read``."""

    def __init__(self, config, readers: Sequence, on_command: Optional[Callable[[], None]] = None,
                 hostname: Optional[str] = None):
        self.config = config
        self.readers = list(readers)
        self.on_command = on_command
        self.hostname = hostname or socket.gethostname()
        self.prefix = topic_prefix(config, self.hostname)
        self.status_topic = f"{self.prefix}/status"
        self.cmd_topic = f"{self.prefix}/cmd/read"
        self.ha_status_topic = f"{config.discovery_prefix}/status"
        self.broker = f"{config.host}:{config.port}"
        self.connected = threading.Event()
        self.connects = 0  # successful connections
        self.attempts = 0  # connection attempts that got an answer or failed (for the status and tests)
        self.refusals = 0  # CONNACKs refusing us (wrong password, ...)
        self.published = 0
        self.discoveries = 0
        self.commands = 0
        self.last_error: Optional[str] = None
        self._queue: "queue.Queue" = queue.Queue(maxsize=64)
        self._sent: Dict[str, tuple] = {}  # reader -> (topic, value or reason, monotonic time)
        self._latest: Dict[str, object] = {}  # reader -> its latest Reading (re-sent after a reconnect)
        self._once = _OncePerKind()
        self._connect_error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._mqtt = _import_paho()
        self.client = self._make_client()

    # -- setting up --------------------------------------------------------------------------------------
    def _make_client(self):
        mqtt, c = self._mqtt, self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(c, self.hostname),
                             clean_session=True)
        if c.username:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            try:
                client.tls_set(ca_certs=c.ca_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise MqttUnavailable(f"[mqtt] tls: cannot use ca_file {c.ca_file!r}: {exc}") from None
        client.will_set(self.status_topic, "offline", qos=max(1, c.qos), retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # paho's network thread drops the exception of a failed connection attempt before it calls
        # on_connect_fail: keep it, so that the log says why (refused, unknown host, TLS certificate, ...)
        reconnect = client.reconnect

        def reconnect_keeping_the_error():
            try:
                return reconnect()
            except Exception as exc:
                self._connect_error = exc
                raise

        client.reconnect = reconnect_keeping_the_error
        return client

    def start(self) -> "MqttPublisher":
        """Connect in the background (a broker that is not there yet is retried) and start publishing."""
        log.info("MQTT: publishing %d reader(s) to %s under %s (discovery: %s)", len(self.readers), self.broker,
                 self.prefix, self.config.discovery_prefix)
        try:
            self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        except (OSError, ValueError) as exc:  # e.g. a host name that does not resolve: retried by the loop
            self._once.report("connect", f"MQTT: cannot reach the broker {self.broker}: {exc}; retrying")
        self.client.loop_start()
        self._thread = threading.Thread(target=self._publish_loop, name="edge-rbmlp-mqtt", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained) if connected, disconnect, stop the threads."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
        if self.connected.is_set():
            try:
                info = self.client.publish(self.status_topic, "offline", qos=max(1, self.config.qos), retain=True)
                info.wait_for_publish(timeout)
            except Exception as exc:  # the broker went away meanwhile
                log.debug("MQTT: offline not sent: %s", exc)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # -- paho callbacks (its network thread) ---------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self.attempts += 1
        if reason_code.is_failure:
            self.refusals += 1
            self.last_error = f"refused: {reason_code}"
            hint = (" (check [mqtt] username and password, or EDGE_RBMLP_MQTT_PASSWORD)"
                    if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower() else "")
            self._once.report(f"refused {reason_code}", f"MQTT: the broker {self.broker} refused the connection: "
                              f"{reason_code}{hint}; retrying every {RECONNECT_MAX_S} s at most", logging.ERROR)
            return
        self.connects += 1
        self.last_error = None
        self._once.clear()
        log.info("MQTT: connected to %s", self.broker)
        c = self.config
        client.subscribe([(self.cmd_topic, c.qos), (self.ha_status_topic, c.qos)])
        client.publish(self.status_topic, "online", qos=max(1, c.qos), retain=True)
        self._publish_discovery()
        self.connected.set()
        self._sent.clear()  # everything is sent again after a reconnect
        try:
            self._queue.put_nowait(("resend", None, False))
        except queue.Full:
            pass

    def _on_connect_fail(self, client, userdata):
        self.attempts += 1
        exc = self._connect_error
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "no answer"
        self.last_error = f"cannot connect: {why}"
        self._once.report(f"unreachable {type(exc).__name__}", f"MQTT: cannot reach the broker {self.broker} ({why}); "
                          f"retrying with back-off (up to {RECONNECT_MAX_S} s); the camera and HTTP side keep working")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._stop.is_set():
            self.last_error = f"disconnected: {reason_code}"
            self._once.report("lost", f"MQTT: lost the connection to {self.broker} ({reason_code}); reconnecting "
                              f"with back-off")

    def _on_message(self, client, userdata, message):
        topic = message.topic
        if topic == self.cmd_topic:
            self.commands += 1
            log.info("MQTT: %s: taking a reading now", topic)
            if self.on_command is not None:
                try:
                    self.on_command()
                except Exception as exc:  # never take paho's thread down
                    log.warning("MQTT: cmd/read failed: %s", exc)
        elif topic == self.ha_status_topic and message.payload.strip().lower() == b"online":
            log.info("MQTT: Home Assistant is back online: discovery sent again")
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        for reader in self.readers:
            payload = json.dumps(discovery_payload(self.config, reader, self.hostname))
            self.client.publish(discovery_topic(self.config, reader.name, self.hostname), payload,
                                qos=max(1, self.config.qos), retain=True)
        self.discoveries += 1

    # -- readings --------------------------------------------------------------------------------------------
    def submit(self, readings: Sequence, forced: bool = False) -> None:
        """Hand over a frame's readings; never waits (when the queue is full the oldest is dropped)."""
        item = ("readings", list(readings), forced)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            kind, readings, forced = item
            try:
                if kind == "resend":
                    for reading in list(self._latest.values()):
                        self._maybe_publish(reading, True)
                    continue
                for reading in readings:
                    self._latest[reading.reader] = reading
                    self._maybe_publish(reading, forced)
            except Exception as exc:  # a broken reading must not stop publishing
                log.warning("MQTT: publishing failed: %s", exc)

    def _maybe_publish(self, reading, forced: bool) -> None:
        if not self.connected.is_set():
            return  # the latest reading is sent after the reconnect
        topic = f"{self.prefix}/{reading.reader}/{'state' if reading.valid else 'error'}"
        key = reading.value if reading.valid else reading.reason
        now = time.monotonic()
        last = self._sent.get(reading.reader)
        if not forced and last is not None and last[0] == topic and last[1] == key \
                and now - last[2] < self.config.republish_s:
            return
        info = self.client.publish(topic, json.dumps(reading.state_payload()), qos=self.config.qos,
                                   retain=bool(reading.valid))
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self._sent[reading.reader] = (topic, key, now)
            self.published += 1

    def status(self) -> dict:
        return {"broker": self.broker, "connected": self.connected.is_set(), "topic_prefix": self.prefix,
                "discovery_prefix": self.config.discovery_prefix, "connects": self.connects,
                "published": self.published, "commands": self.commands, "last_error": self.last_error}
