"""The hub's MQTT connection over TLS with a user name and password, against Mosquitto.

The test broker has a plain listener (for the simulated buttons) and a TLS listener
(for the hub) with a certificate from a CA made here; every client must log in.
The hub must connect only when it trusts the broker's certificate and its password
is right, and must say why it is not connected otherwise.
"""

from __future__ import annotations

import datetime
import gc
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.mqtt import ConnectionState, MqttAdapter
from adapters.sim import PanicButtonSim
from camera_registry.models import DeviceKind
from tests.integration.mqtt_support import FakeWriter, Registry, settings_for, unique_prefix
from tests.peers import free_port, peer_missing
from tests.peers.mosquitto import MosquittoPeer, mosquitto_peer
from tests.tls_support import make_ca
from tests.tls_support import name as _name
from tests.tls_support import pem as _pem

BUTTON = "school-03-btn-1"
USER, PASSWORD = "gridwatch-hub", "Tls-test-pass-9"


@dataclass
class TlsBroker:
    peer: MosquittoPeer
    tls_port: int
    ca_file: Path
    rogue_ca_file: Path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        peer_missing("mosquitto", "mosquitto_passwd (Debian package mosquitto) is not installed")
    ca, ca_key = make_ca("GridWatch test CA")
    rogue, _ = make_ca("Someone else's CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = tmp_path / "tls"
    tls.mkdir()
    ca_file = _pem(tls / "ca.crt", ca)
    cert_file = _pem(tls / "server.crt", server)
    key_file = tls / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    passwords = tls / "passwords"
    subprocess.run([passwd, "-c", "-b", str(passwords), USER, PASSWORD], check=True)
    tls_port = free_port()
    extra = "\n".join(
        [
            f"password_file {passwords}",
            "allow_anonymous false",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {ca_file}",
            f"certfile {cert_file}",
            f"keyfile {key_file}",
        ]
    )
    with mosquitto_peer(tmp_path, extra_conf=extra) as peer:
        yield TlsBroker(peer, tls_port, ca_file, _pem(tls / "rogue.crt", rogue))


def _hub(
    broker: TlsBroker, prefix: str, *, ca_file: Path, password: str
) -> tuple[MqttAdapter, FakeWriter]:
    settings = settings_for(
        "127.0.0.1",
        broker.tls_port,
        prefix,
        username=USER,
        password=password,
        tls={"ca_file": str(ca_file)},
    )
    registry = Registry().add(BUTTON, DeviceKind.ALARM_POINT)
    writer = FakeWriter()
    return MqttAdapter(settings, submit=writer.submit, device_lookup=registry.lookup), writer


async def test_press_arrives_over_tls_with_a_password(tls_broker: TlsBroker) -> None:
    prefix = unique_prefix()
    adapter, writer = _hub(tls_broker, prefix, ca_file=tls_broker.ca_file, password=PASSWORD)
    async with adapter as hub:
        assert await hub.wait_connected(10), hub.state
        assert hub.state.state is ConnectionState.CONNECTED
        with PanicButtonSim(
            BUTTON,
            host=tls_broker.peer.host,
            port=tls_broker.peer.port,
            prefix=prefix,
            username=USER,
            password=PASSWORD,
        ) as button:
            msg_id = button.press()
            await writer.wait_for(lambda: bool(writer.events("panic.press")))
            await writer.wait_for(lambda: hub.metrics.acked >= 1)
    (press,) = writer.events("panic.press")
    assert press.dedup_key == f"mqtt:{BUTTON}:{msg_id}"


# paho-mqtt 2 leaves the socket of a failed TLS handshake to the garbage collector
# (ResourceWarning from inside its loop thread); the hub's own code closes what it opens.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_broker_certificate_from_an_unknown_ca_is_not_trusted(
    tls_broker: TlsBroker,
) -> None:
    adapter, writer = _hub(
        tls_broker, unique_prefix(), ca_file=tls_broker.rogue_ca_file, password=PASSWORD
    )
    async with adapter as hub:
        assert not await hub.wait_connected(3)
        await writer.wait_for(lambda: hub.state.reason is not None)
        assert hub.state.state is not ConnectionState.CONNECTED
        assert hub.metrics.connects == 0
    gc.collect()  # finalise paho's leftover sockets here, not in some later test


async def test_a_wrong_password_over_tls_is_refused(tls_broker: TlsBroker) -> None:
    adapter, writer = _hub(
        tls_broker, unique_prefix(), ca_file=tls_broker.ca_file, password="not-the-password"
    )
    async with adapter as hub:
        assert not await hub.wait_connected(3)
        await writer.wait_for(lambda: hub.metrics.refusals >= 1)
        assert hub.state.state in (ConnectionState.REFUSED, ConnectionState.CONNECTING)
        assert "authori" in (hub.state.reason or "").lower()
        assert hub.metrics.connects == 0
