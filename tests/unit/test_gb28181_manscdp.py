"""MANSCDP bodies (2016 and 2022, GB18030 and UTF-8), SDP and RTP/PS reassembly."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.gb28181.manscdp import (
    AlarmNotify,
    CatalogAssembler,
    CatalogPage,
    ControlResult,
    DeviceInfo,
    DeviceStatus,
    Keepalive,
    ManscdpError,
    Unknown,
    alarm_response,
    catalog_query,
    decode,
    set_guard,
)
from adapters.gb28181.rtp import PsReassembler, Rfc4571Decoder, RtpPacket, frame_rtp, parse_rtp
from adapters.gb28181.sdp import SdpError, live_ssrc, parse_sdp, play_offer

NVR = "15020700001180000001"


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def catalog_page(sn: int, sum_num: int, first: int, count: int, *, notify: bool = False) -> bytes:
    items = "".join(
        f"<Item><DeviceID>150207000013100{n:05d}</DeviceID><Name>沙河镇 通道{n}</Name>"
        f"<Manufacturer>Hikvision</Manufacturer><Model>DS-2CD</Model><Owner>0</Owner>"
        f"<CivilCode>150207</CivilCode><Address>建设路{n}号</Address><Parental>0</Parental>"
        f"<ParentID>{NVR}</ParentID><SafetyWay>0</SafetyWay><RegisterWay>1</RegisterWay>"
        f"<Secrecy>0</Secrecy><Status>{'ON' if n % 2 else 'OFF'}</Status>"
        f"<Longitude>109.8{n:02d}</Longitude><Latitude>40.6</Latitude>"
        f"<Info><PTZType>{1 + n % 3}</PTZType><Resolution>6/3</Resolution></Info></Item>"
        for n in range(first, first + count)
    )
    root = "Notify" if notify else "Response"
    return gb(
        f'<?xml version="1.0" encoding="GB2312"?><{root}><CmdType>Catalog</CmdType><SN>{sn}</SN>'
        f"<DeviceID>{NVR}</DeviceID><SumNum>{sum_num}</SumNum>"
        f'<DeviceList Num="{count}">{items}</DeviceList></{root}>'
    )


def test_keepalive_in_gb2312() -> None:
    body = gb(
        '<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>Keepalive</CmdType>'
        f"<SN>43</SN><DeviceID>{NVR}</DeviceID><Status>OK</Status></Notify>"
    )
    assert decode(body) == Keepalive(NVR, 43, "OK")


def test_catalog_page_fields_and_2022_ptz_under_info() -> None:
    page = decode(catalog_page(7, 3, 1, 2))
    assert isinstance(page, CatalogPage)
    assert (page.sn, page.sum_num, len(page.items)) == (7, 3, 2)
    first = page.items[0]
    assert first.name == "沙河镇 通道1"
    assert first.civil_code == "150207"
    assert first.parent_id == NVR
    assert first.online is True and page.items[1].online is False
    assert first.ptz_type == 2
    assert first.longitude == pytest.approx(109.801)
    assert first.extra["Resolution"] == "6/3"


def test_catalog_assembled_from_many_messages_in_any_order() -> None:
    assembler = CatalogAssembler()
    now = datetime(2026, 12, 6, tzinfo=UTC)
    pages = [decode(catalog_page(9, 250, start, 50)) for start in (200, 0, 100, 50, 150)]
    done = [assembler.add(p, now) for p in pages if isinstance(p, CatalogPage)]
    assert done[:-1] == [None] * 4
    catalog = done[-1]
    assert catalog is not None and len(catalog.items) == 250
    assert assembler.pending == 0


def test_catalog_assembly_is_bounded() -> None:
    assembler = CatalogAssembler(max_pending=2, max_age=timedelta(seconds=10))
    now = datetime(2026, 12, 6, tzinfo=UTC)
    for sn in range(10):
        page = decode(catalog_page(sn, 100, 0, 1))
        assert isinstance(page, CatalogPage)
        assembler.add(page, now)
    assert assembler.pending == 2
    later = decode(catalog_page(99, 100, 0, 1))
    assert isinstance(later, CatalogPage)
    assembler.add(later, now + timedelta(seconds=11))
    assert assembler.pending == 1
    with pytest.raises(ManscdpError, match="exceeds"):
        huge = decode(catalog_page(5, 90_000, 0, 1))
        assert isinstance(huge, CatalogPage)
        assembler.add(huge, now)


def test_alarm_2016_video_motion_in_utf8() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Notify><CmdType>Alarm</CmdType><SN>5</SN>'
        "<DeviceID>15020700001340000003</DeviceID><AlarmPriority>2</AlarmPriority>"
        "<AlarmMethod>5</AlarmMethod><AlarmTime>2026-12-06T10:00:00</AlarmTime>"
        "<AlarmDescription>移动侦测</AlarmDescription><Longitude>109.8</Longitude>"
        "<Latitude>40.6</Latitude><Info><AlarmType>2</AlarmType></Info></Notify>"
    ).encode()
    alarm = decode(body)
    assert isinstance(alarm, AlarmNotify)
    assert (alarm.priority, alarm.method, alarm.alarm_type) == (2, 5, 2)
    assert alarm.kind.slug == "motion"
    assert alarm.time == datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # Beijing time
    assert alarm.description == "移动侦测"


def test_alarm_2022_intrusion_with_event_type_and_lying_declaration() -> None:
    # Declares UTF-8 but is GB18030: devices do this; the text must still come through.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Notify><CmdType>Alarm</CmdType><SN>6</SN>'
        f"<DeviceID>{NVR}</DeviceID><AlarmPriority>1</AlarmPriority><AlarmMethod>5</AlarmMethod>"
        "<AlarmDescription>区域入侵</AlarmDescription><Info><AlarmType>6</AlarmType>"
        "<AlarmTypeParam><EventType>1</EventType></AlarmTypeParam></Info></Notify>"
    ).encode("gb18030")
    alarm = decode(body)
    assert isinstance(alarm, AlarmNotify)
    assert alarm.kind.slug == "intrusion" and alarm.event_type == 1
    assert alarm.description == "区域入侵"


@pytest.mark.parametrize(
    ("method", "alarm_type", "slug"),
    [
        (2, 1, "video_loss"),
        (2, 2, "tamper"),
        (2, 3, "disk_full"),
        (5, 8, "loitering"),
        (5, 10, "crowd_density"),
        (6, 1, "disk_fault"),
        (1, None, "phone"),
        (5, 99, "video"),
    ],
)
def test_alarm_method_and_type_table(method: int, alarm_type: int | None, slug: str) -> None:
    info = f"<Info><AlarmType>{alarm_type}</AlarmType></Info>" if alarm_type else ""
    body = (
        f"<Notify><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>{NVR}</DeviceID>"
        f"<AlarmPriority>3</AlarmPriority><AlarmMethod>{method}</AlarmMethod>{info}</Notify>"
    ).encode()
    alarm = decode(body)
    assert isinstance(alarm, AlarmNotify) and alarm.kind.slug == slug


def test_device_info_status_and_control_answers() -> None:
    info = decode(
        gb(
            f"<Response><CmdType>DeviceInfo</CmdType><SN>2</SN><DeviceID>{NVR}</DeviceID>"
            "<DeviceName>九原NVR</DeviceName><Result>OK</Result><Manufacturer>Dahua</Manufacturer>"
            "<Model>NVR4216</Model><Firmware>V4.0</Firmware><Channel>16</Channel></Response>"
        )
    )
    assert isinstance(info, DeviceInfo) and info.channels == 16 and info.name == "九原NVR"
    status = decode(
        f"<Response><CmdType>DeviceStatus</CmdType><SN>3</SN><DeviceID>{NVR}</DeviceID>"
        "<Result>OK</Result><Online>ONLINE</Online><Status>OK</Status><Record>OFF</Record>"
        '<Alarmstatus Num="1"><Item><DeviceID>15020700001340000001</DeviceID>'
        "<DutyStatus>ONDUTY</DutyStatus></Item></Alarmstatus></Response>".encode()
    )
    assert isinstance(status, DeviceStatus)
    assert status.online is True and status.recording is False
    assert status.alarm_inputs == {"15020700001340000001": "ONDUTY"}
    control = decode(
        f"<Response><CmdType>DeviceControl</CmdType><SN>4</SN><DeviceID>{NVR}</DeviceID>"
        "<Result>OK</Result></Response>".encode()
    )
    assert control == ControlResult(NVR, 4, True)
    other = decode(
        f"<Notify><CmdType>MobilePosition</CmdType><DeviceID>{NVR}</DeviceID></Notify>".encode()
    )
    assert isinstance(other, Unknown) and other.cmd_type == "MobilePosition"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"<Notify><CmdType>Keepalive", "malformed"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><Notify/>', "refused"),
        (b"<Other><CmdType>Keepalive</CmdType></Other>", "not a MANSCDP"),
        (b"<Notify><CmdType>Keepalive</CmdType><DeviceID>a b</DeviceID></Notify>", "DeviceID"),
        (b"<Notify><CmdType>Keepalive</CmdType><SN>x</SN></Notify>", "not a number"),
        (b"<Notify>" + b"x" * 70_000 + b"</Notify>", "exceeds"),
        (b"\xff\xfe\xfd<Notify/>", "neither"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ManscdpError, match=reason):
        decode(body)


@given(st.binary(max_size=512))
def test_arbitrary_bodies_raise_only_manscdp_errors(body: bytes) -> None:
    with contextlib.suppress(ManscdpError):
        decode(body)


def test_platform_messages_round_trip_through_the_decoder() -> None:
    assert b'encoding="GB2312"' in catalog_query(1, NVR)
    control = decode(set_guard(8, NVR))
    assert isinstance(control, Unknown) and control.cmd_type == "DeviceControl"
    response = decode(alarm_response(9, NVR))
    assert isinstance(response, Unknown) and response.root == "Response"


# ---------------------------------------------------------------------------- SDP


def test_play_offer_udp_and_tcp_passive() -> None:
    ssrc = live_ssrc("1502070000", 12)
    assert ssrc == "0207000012"  # 0, domain digits 4-8, serial
    udp = parse_sdp(
        play_offer(
            platform_id="15020700002000000001",
            channel_id=NVR,
            media_host="10.0.0.5",
            media_port=30000,
            ssrc=ssrc,
        )
    )
    assert (udp.session, udp.host, udp.port, udp.tcp, udp.ssrc) == (
        "Play",
        "10.0.0.5",
        30000,
        False,
        ssrc,
    )
    assert udp.payload_types[96] == "PS"
    tcp = parse_sdp(
        play_offer(
            platform_id="15020700002000000001",
            channel_id=NVR,
            media_host="10.0.0.5",
            media_port=30002,
            ssrc=ssrc,
            tcp=True,
        )
    )
    assert tcp.tcp and tcp.setup == "passive"


def test_bad_sdp_is_refused() -> None:
    with pytest.raises(SdpError):
        parse_sdp(b"v=0\r\ns=Play\r\n")


# ---------------------------------------------------------------------------- RTP / PS

SSRC = 70000012
PACK = b"\x00\x00\x01\xba" + b"\x44" * 10


def packets(
    frames: list[bytes], *, ssrc: int = SSRC, start: int = 0, ts: int = 0, size: int = 1400
) -> list[bytes]:
    out: list[bytes] = []
    sequence = start
    for index, frame in enumerate(frames):
        chunks = [frame[i : i + size] for i in range(0, len(frame), size)]
        for number, chunk in enumerate(chunks):
            last = number == len(chunks) - 1
            packet = RtpPacket(96, sequence & 0xFFFF, (ts + index) * 3600, ssrc, last, chunk)
            out.append(bytes(packet))
            sequence += 1
    return out


def test_rtp_round_trip() -> None:
    raw = bytes(RtpPacket(96, 65535, 90000, SSRC, True, b"abc"))
    assert bytes(parse_rtp(raw)) == raw


def test_frames_are_reassembled_across_packets_and_sequence_wrap() -> None:
    frames = [PACK + bytes([n]) * 5000 for n in range(3)]
    reassembler = PsReassembler(SSRC)
    out = [f.data for p in packets(frames, start=65533) for f in reassembler.feed(p)]
    assert out == frames


def test_hostile_packets_are_dropped_with_bounded_memory() -> None:
    reassembler = PsReassembler(SSRC, max_frame_bytes=64 * 1024)
    good = PACK + b"g" * 3000
    stream = packets([good], start=0)
    stream += [b"garbage", b"\x00" * 40]
    stream += packets([PACK + b"x" * 3000], ssrc=12345, start=3, ts=1)
    stream += packets([PACK + b"h" * 1_000_000], start=3, ts=2)  # far larger than any frame
    stream += packets([b"no start code" * 200], start=3 + 715, ts=3)
    ok = PACK + b"k" * 2000
    stream += packets([ok], start=3 + 715 + 2, ts=4)
    seen: list[bytes] = []
    biggest = 0
    for packet in stream:
        seen.extend(f.data for f in reassembler.feed(packet))
        biggest = max(biggest, reassembler.buffered)
    assert good in seen and ok in seen
    assert all(len(frame) <= 64 * 1024 for frame in seen)
    assert biggest <= 64 * 1024
    counters = reassembler.counters
    assert counters.not_rtp == 2 and counters.wrong_ssrc == 3
    assert counters.oversized >= 1 and counters.no_start_code >= 1


def test_a_lost_packet_drops_only_its_frame() -> None:
    frames = [PACK + bytes([n]) * 3000 for n in range(3)]
    stream = packets(frames)
    del stream[4]  # the middle packet of frame 1
    reassembler = PsReassembler(SSRC)
    out = [f.data for p in stream for f in reassembler.feed(p)]
    assert out == [frames[0], frames[2]]


def test_rfc4571_framing_over_tcp() -> None:
    raw = packets([PACK + b"z" * 3000])
    stream = b"".join(frame_rtp(p) for p in raw)
    decoder = Rfc4571Decoder()
    got = decoder.feed(stream[:7]) + decoder.feed(stream[7:])
    assert got == raw
    assert struct.unpack("!H", stream[:2])[0] == len(raw[0])
