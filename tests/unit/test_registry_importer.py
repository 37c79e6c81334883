"""Device sheet import and export: encodings, Chinese headers, bad rows, formulas, XLSX."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from camera_registry import (
    COLUMNS,
    DeviceIn,
    DeviceKind,
    ImportReport,
    RowError,
    export_csv,
    export_xlsx,
    import_devices,
    neutralize_cell,
    parse_csv,
    parse_xlsx,
    template_csv,
    template_xlsx,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
KNOWN = {"150102", "150102001", "150102002", "150102001001"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def errors_by_row(report: ImportReport) -> dict[int, list[RowError]]:
    grouped: dict[int, list[RowError]] = {}
    for error in report.errors:
        grouped.setdefault(error.row, []).append(error)
    return grouped


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# The Chinese-header fixture with deliberate errors


def test_chinese_header_file_explains_every_bad_row() -> None:
    report = import_devices(fixture("devices_zh_errors.csv"), known_jurisdictions=KNOWN)
    assert report.format == "csv"
    assert report.encoding == "UTF-8"
    assert [(row, device.id) for row, device in report.rows] == [
        (2, "15010200001320000001"),
        (3, "15010200001320000002"),
        (4, "15010200001340000001"),
    ]
    by_row = errors_by_row(report)
    assert sorted(by_row) == list(range(5, 17))
    assert report.bad_rows == list(range(5, 17))

    def one(row: int) -> RowError:
        assert len(by_row[row]) == 1, by_row[row]
        return by_row[row][0]

    assert one(5) == RowError(
        5, "设备编码", "15010200001320000001", "duplicate id: already used on row 2"
    )
    assert one(6).column == "设备编码" and "province code 99" in one(6).reason
    assert one(7) == RowError(
        7, "纬度", "95.5", "latitude out of range: must be between -90 and 90"
    )
    assert one(8) == RowError(8, "所属辖区", "150199999", "unknown jurisdiction code")
    assert one(9).column == "RTSP地址"
    assert one(9).value == "rtsp://10.15.1.30/live"
    assert "must not carry credentials" in one(9).reason
    assert one(10).column == "设备名称" and "formula" in one(10).reason
    assert one(11) == RowError(11, "密码", None, "a username needs a password")
    assert one(12) == RowError(12, "用户名", None, "a password needs a username")
    assert one(13).column == "设备类型" and "type code means camera, not nvr" in one(13).reason
    assert one(14).column == "设备类型" and one(14).value == "卫星"
    assert one(15) == RowError(15, "启用", "也许", "use 是/否, true/false or 1/0")
    assert one(16).column == "经度" and "not a number" in one(16).reason


def test_passwords_never_appear_in_errors() -> None:
    report = import_devices(fixture("devices_zh_errors.csv"), known_jurisdictions=KNOWN)
    text = repr(report.errors)
    for secret in ("Hk@2024pass", "Leak3dPw", "OnlyPw99"):
        assert secret not in text
    # Rows that imported keep their credentials for the store to encrypt.
    first = report.rows[0][1]
    assert first.credentials is not None
    assert first.credentials.password.get_secret_value() == "Hk@2024pass"


def test_a_password_may_start_like_a_formula() -> None:
    report = import_devices(
        "id,name,kind,username,password\ncam-1,东门,camera,admin,@dmin+1\n".encode()
    )
    assert report.ok, report.errors
    credentials = report.rows[0][1].credentials
    assert credentials is not None
    assert credentials.password.get_secret_value() == "@dmin+1"


def test_chinese_values_are_understood() -> None:
    report = import_devices(fixture("devices_zh_errors.csv"), known_jurisdictions=KNOWN)
    first, second, alarm = (device for _, device in report.rows)
    assert first.project == "sharp_eyes"
    assert first.tags == ["路口", "重点"]
    assert first.enabled is True
    assert second.kind is DeviceKind.CAMERA  # inferred from type code 132
    assert second.project == "cloud_eye"
    assert alarm.kind is DeviceKind.ALARM_POINT
    assert alarm.project == "school_alarm"
    assert alarm.linked_cameras == ["15010200001320000001", "15010200001320000002"]


def test_without_a_jurisdiction_list_codes_are_only_checked_for_form() -> None:
    report = import_devices(fixture("devices_zh_errors.csv"))
    assert 8 not in errors_by_row(report)


# ---------------------------------------------------------------------------
# Encodings


def test_gbk_file_is_detected() -> None:
    report = import_devices(fixture("devices_gbk.csv"), known_jurisdictions=KNOWN)
    assert report.ok, report.errors
    assert report.encoding == "GBK"
    names = [device.name for _, device in report.rows]
    assert names == ["锡林南路与新华大街路口", "人民公园广播"]
    assert report.rows[1][1].kind is DeviceKind.BROADCAST_UNIT


def test_utf8_bom_file_with_english_headers() -> None:
    data = fixture("devices_bom_en.csv")
    assert data.startswith(b"\xef\xbb\xbf")
    report = import_devices(data, known_jurisdictions=KNOWN)
    assert report.ok, report.errors
    camera, speaker = (device for _, device in report.rows)
    assert camera.id == "15010200001320000101"  # the BOM is not part of the first header
    assert camera.rtsp_urls == [
        "rtsp://10.15.2.11:554/Streaming/Channels/101",
        "rtsp://10.15.2.11:554/Streaming/Channels/102",
    ]
    assert camera.firmware == "V5.6.3"
    assert camera.credentials is not None
    assert speaker.enabled is False
    assert speaker.mqtt_device_id == "spk-hd-01"
    assert speaker.tags == ["community", "广场"]


def test_same_rows_in_every_encoding() -> None:
    text = fixture("devices_gbk.csv").decode("gbk")
    reports = [
        import_devices(text.encode("utf-8")),
        import_devices(b"\xef\xbb\xbf" + text.encode("utf-8")),
        import_devices(text.encode("gbk")),
        import_devices(text.encode("gb18030")),
        import_devices(text.encode("utf-16")),  # Excel "Unicode text" has a BOM
    ]
    for report in reports:
        assert report.ok, report.errors
        assert report.rows == reports[0].rows


def test_undecodable_bytes_are_reported_on_their_row() -> None:
    report = import_devices(fixture("devices_bad_bytes.csv"))
    assert [device.id for _, device in report.rows] == ["cam-1", "cam-3"]
    assert len(report.errors) == 1
    error = report.errors[0]
    assert (error.row, error.column) == (3, "address")
    assert "not valid UTF-8" in error.reason
    assert error.value == "\\xff\\xfe\\xfd西门"


def test_binary_garbage_is_refused_cleanly() -> None:
    report = import_devices(bytes(range(256)) * 4)
    assert not report.rows
    assert report.errors


# ---------------------------------------------------------------------------
# Formula injection


def test_formula_cells_are_refused_unless_marked_as_text() -> None:
    report = import_devices(fixture("formula_injection.csv"))
    imported = {device.id: device for _, device in report.rows}
    assert imported["f1"].name == '=HYPERLINK("http://evil.example/","click")'
    assert imported["f5"].name == "-2号杆"
    assert imported["f5"].address == "-1层停车场"
    refused = {error.row: error for error in report.errors}
    assert sorted(refused) == [3, 4, 5, 7]
    assert all("formula" in error.reason for error in refused.values())


def test_formula_injection_round_trip_through_csv_and_xlsx() -> None:
    hostile = DeviceIn(
        id="cam-x",
        name='=HYPERLINK("http://evil.example/","点我")',
        kind=DeviceKind.CAMERA,
        address="@SUM(1+1)",
        vendor="+cmd|' /C calc'!A0",
        model="-2+3",
        firmware="'quoted",
        tags=["=1+1"],
    )
    csv_bytes = export_csv([hostile], "en")
    text = csv_bytes.decode("utf-8-sig")
    assert ",\"'=HYPERLINK(" in text
    assert ",'@SUM(1+1)," in text
    assert "''quoted" in text
    xlsx = export_xlsx([hostile], "en")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).worksheets[0]
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type != "f"  # nothing a spreadsheet would evaluate
            if isinstance(cell.value, str):
                assert cell.value[0] not in "=+-@\t\r"
    for data in (csv_bytes, xlsx):
        report = import_devices(data)
        assert report.ok, report.errors
        assert report.rows[0][1] == hostile


@pytest.mark.parametrize(
    ("text", "neutral"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'x", "''x"),
        ("x=1", "x=1"),
        ("", ""),
    ],
)
def test_neutralize_cell(text: str, neutral: str) -> None:
    assert neutralize_cell(text) == neutral


# ---------------------------------------------------------------------------
# XLSX


def test_xlsx_with_chinese_headers_numbers_and_a_blank_row() -> None:
    data = xlsx_bytes(
        [
            ["设备编码", "设备名称", "设备类型", "所属辖区", "经度", "纬度", "启用"],
            ["15010200001320000001", "东门", "摄像机", 150102001, 111.6702, 40.8151, True],
            [],
            ["cam-2", "西门", "camera", 150102002, None, None, "否"],
            [34020000001320000001, "数字编码", "摄像机", None, None, None, None],
            ["cam-4", '=HYPERLINK("http://x")', "camera", None, None, None, None],
        ]
    )
    report = import_devices(data, known_jurisdictions=KNOWN)
    assert report.format == "xlsx"
    assert [(row, device.id) for row, device in report.rows] == [
        (2, "15010200001320000001"),
        (4, "cam-2"),
    ]
    first = report.rows[0][1]
    assert first.jurisdiction == "150102001"
    assert (first.longitude, first.latitude) == (111.6702, 40.8151)
    assert report.rows[1][1].enabled is False
    by_row = errors_by_row(report)
    assert "format the column as text" in by_row[5][0].reason  # 20 digits as a number
    assert "formula" in by_row[6][0].reason


def test_xlsx_round_trip_keeps_every_field() -> None:
    devices = [
        DeviceIn(
            id="15010200001320000001",
            name="新华大街与中山路口东北角",
            kind=DeviceKind.CAMERA,
            project="sharp_eyes",
            jurisdiction="150102001",
            latitude=40.8151,
            longitude=111.6702,
            address="新华大街1号",
            vendor="海康威视",
            model="DS-2CD3T46",
            firmware="V5.5.0 build 190101",
            serial="DS-2CD3T4620190101",
            onvif_url="http://10.15.1.21/onvif/device_service",
            rtsp_urls=["rtsp://10.15.1.21/Streaming/Channels/101", "rtsp://10.15.1.21/ch2"],
            tags=["路口", "重点"],
        ),
        DeviceIn(
            id="spk-01",
            name="社区广播",
            kind=DeviceKind.BROADCAST_UNIT,
            project="老旧小区改造",
            mqtt_device_id="spk-01",
            enabled=False,
            linked_cameras=["15010200001320000001"],
        ),
    ]
    for lang in ("zh", "en"):
        for export in (export_csv, export_xlsx):
            report = import_devices(export(devices, lang))
            assert report.ok, (lang, export, report.errors)
            assert [device for _, device in report.rows] == devices


def test_export_never_contains_credentials() -> None:
    device = DeviceIn(
        id="cam-1",
        name="东门",
        kind=DeviceKind.CAMERA,
        credentials={"username": "operator7", "password": "Export-Must-Not-Leak"},
    )
    for lang in ("zh", "en"):
        csv_text = export_csv([device], lang).decode("utf-8-sig")
        assert "Export-Must-Not-Leak" not in csv_text
        assert "operator7" not in csv_text
        assert "密码" not in csv_text and "password" not in csv_text
        xlsx = export_xlsx([device], lang)
        with zipfile.ZipFile(io.BytesIO(xlsx)) as archive:
            for name in archive.namelist():
                body = archive.read(name)
                assert b"Export-Must-Not-Leak" not in body
                assert b"operator7" not in body


def test_corrupt_and_legacy_workbooks_are_refused() -> None:
    corrupt = parse_xlsx(b"PK\x03\x04 this is not really a zip")
    assert corrupt.errors[0].row == 0 and "XLSX" in corrupt.errors[0].reason
    zip_without_workbook = io.BytesIO()
    with zipfile.ZipFile(zip_without_workbook, "w") as archive:
        archive.writestr("hello.txt", "hi")
    broken = import_devices(zip_without_workbook.getvalue())
    assert broken.errors[0].row == 0 and "XLSX workbook" in broken.errors[0].reason
    legacy = import_devices(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    assert "xls" in legacy.errors[0].reason


def test_zip_bomb_is_refused_before_parsing() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * 30_000_000)
    report = parse_xlsx(buffer.getvalue(), max_bytes=1_000_000)
    assert "unpacks to" in report.errors[0].reason


# ---------------------------------------------------------------------------
# Headers, templates, limits


def test_templates_have_every_column_and_import_to_nothing() -> None:
    for lang in ("zh", "en"):
        csv_template = template_csv(lang)
        assert csv_template.startswith(b"\xef\xbb\xbf")
        header = csv_template.decode("utf-8-sig").strip().split(",")
        assert header == [column.header(lang) for column in COLUMNS]
        xlsx_template = template_xlsx(lang)
        workbook = openpyxl.load_workbook(io.BytesIO(xlsx_template))
        assert len(workbook.worksheets) == 2  # devices, then instructions
        assert [c.value for c in workbook.worksheets[0][1]] == header
        for data in (csv_template, xlsx_template):
            report = import_devices(data)
            assert report.ok and report.rows == []
    assert template_csv("zh").decode("utf-8-sig").startswith("设备编码,设备名称,设备类型")


def test_headers_may_mix_languages_and_carry_notes() -> None:
    data = "设备编码（必填）,Name,KIND,经度 (WGS-84),lat,序号\ncam-1,东门,camera,111.7,40.8,1\n"
    report = import_devices(data.encode())
    assert report.ok, report.errors
    assert report.rows[0][1].longitude == 111.7


def test_unknown_and_missing_columns_are_reported_on_the_header_row() -> None:
    report = import_devices("设备编码,颜色\ncam-1,红\n".encode())
    reasons = {(e.row, e.column): e.reason for e in report.errors}
    assert reasons[(1, "颜色")].startswith("unknown column")
    assert "missing required column 设备名称 / name" in reasons[(1, None)]
    assert report.rows == []


def test_duplicate_header_is_reported() -> None:
    report = import_devices("id,name,设备名称,kind\ncam-1,a,b,camera\n".encode())
    assert any(e.column == "设备名称" and "same column" in e.reason for e in report.errors)


def test_semicolon_and_tab_separated_files() -> None:
    for sep in (";", "\t"):
        data = sep.join(["id", "name", "kind"]) + "\n" + sep.join(["cam-1", "东门", "camera"])
        report = import_devices(data.encode())
        assert report.ok, report.errors
        assert report.rows[0][1].name == "东门"


def test_empty_file() -> None:
    report = import_devices(b"")
    assert report.errors == [RowError(0, None, None, "the file has no header row and no data")]


def test_size_cap_default_refuses_a_50_mb_file() -> None:
    report = import_devices(b"id,name,kind\n" + b"x" * 50_000_000)
    assert not report.rows
    assert report.errors[0].row == 0
    assert "imports must be smaller than 50 MB" in report.errors[0].reason
    small_cap = parse_csv(b"id,name,kind\ncam-1,a,camera\n", max_bytes=10)
    assert "smaller than" in small_cap.errors[0].reason


def test_row_cap_and_progress() -> None:
    lines = ["id,name,kind"] + [f"cam-{n},点位{n},camera" for n in range(2500)]
    seen: list[int] = []
    report = import_devices("\n".join(lines).encode(), progress=seen.append)
    assert report.ok and len(report.rows) == 2500
    assert seen == [1000, 2000, 2500]
    capped = import_devices("\n".join(lines).encode(), max_rows=100)
    assert capped.errors[-1].reason == "too many rows: the limit is 100 per file"


def test_quoted_multiline_cell_keeps_row_numbers_as_a_spreadsheet_shows_them() -> None:
    data = 'id,name,kind,address\ncam-1,东门,camera,"一楼\n二楼"\ncam-2,西门,cam,\n'
    report = import_devices(data.encode())
    assert report.rows[0][0] == 2
    assert report.rows[0][1].address == "一楼 二楼"  # Alt+Enter line break kept as a space
    assert report.errors[0].row == 3


def test_a_school_panic_button_needs_its_address_and_coordinates() -> None:
    report = import_devices(
        (
            "id,name,kind,project,longitude,latitude,address\n"
            "btn-1,第一小学一键报警,alarm_point,school_alarm,109.84,40.60,建华南路1号\n"
            "btn-2,第二小学一键报警,alarm_point,school_alarm,,,\n"
            "btn-3,第三小学一键报警,报警点,校园一键报警,109.85,40.61,\n"
            "door-1,仓库门磁,alarm_point,,,,\n"
        ).encode()
    )
    assert [device.id for _, device in report.rows] == ["btn-1", "door-1"]
    problems = {(e.row, e.column, e.reason) for e in report.errors}
    assert problems == {
        (3, "address", "a school panic button needs its address (DB15/T 3968)"),
        (3, "longitude", "a school panic button needs its coordinates (DB15/T 3968)"),
        (4, "address", "a school panic button needs its address (DB15/T 3968)"),
    }
