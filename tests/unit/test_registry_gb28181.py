"""GB/T 28181 device codes: structure rules, parts, kinds, free-id generation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camera_registry import DeviceKind, GbId, GbTypeCategory, is_gb_id, next_free_id

# Written out here, independently of the module, from GB/T 2260.
PROVINCES = (
    *("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"),
    *("41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64"),
    *("65", "71", "81", "82"),
)


def structure_holds(code: str) -> bool:
    """The rules as a maintainer would state them, for comparison."""
    if len(code) != 20 or not all(c in "0123456789" for c in code):
        return False
    province, city, county = code[0:2], code[2:4], code[4:6]
    if province not in PROVINCES:
        return False
    if not (int(city) <= 70 or city == "90"):
        return False
    if city == "00" and county != "00":
        return False
    return int(code[10:13]) >= 111


def two_digits(low: int = 0, high: int = 99) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


@st.composite
def valid_codes(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(PROVINCES))
    city = draw(st.one_of(two_digits(0, 70), st.just("90")))
    county = "00" if city == "00" else draw(two_digits())
    grassroots = draw(two_digits())
    industry = draw(two_digits())
    type_code = draw(st.integers(111, 999))
    network = draw(st.integers(0, 9))
    serial = draw(st.integers(0, 999_999))
    return f"{province}{city}{county}{grassroots}{industry}{type_code:03d}{network}{serial:06d}"


digits20 = st.text(alphabet="0123456789", min_size=20, max_size=20)


@given(valid_codes())
def test_every_valid_code_round_trips(code: str) -> None:
    gb = GbId(code)
    assert str(gb) == code
    assert str(GbId(str(gb))) == code
    assert gb == GbId(code)
    again = GbId.compose(
        gb.center_code, gb.industry_code, gb.type_code, gb.network_code, gb.serial_number
    )
    assert again == gb


@given(digits20)
def test_random_digits_validate_iff_structure_holds(code: str) -> None:
    assert is_gb_id(code) == structure_holds(code)
    if structure_holds(code):
        assert str(GbId(code)) == code
    else:
        with pytest.raises(ValueError, match="invalid GB/T 28181 code"):
            GbId(code)


@given(st.text(max_size=25).filter(lambda s: not (len(s) == 20 and s.isdigit())))
def test_anything_but_twenty_digits_is_refused(value: str) -> None:
    assert not is_gb_id(value)
    with pytest.raises(ValueError):
        GbId(value)


def test_parts_of_a_hohhot_camera_code() -> None:
    gb = GbId("15010200001320000017")
    assert gb.center_code == "15010200"
    assert gb.admin_division_code == "150102"
    assert gb.province_code == "15"
    assert gb.province_name == "内蒙古自治区"
    assert gb.city_code == "01"
    assert gb.county_code == "02"
    assert gb.grassroots_code == "00"
    assert gb.industry_code == "00"
    assert gb.type_code == 132
    assert gb.network_code == 0
    assert gb.serial == "000017"
    assert gb.serial_number == 17
    assert gb.prefix == "15010200001320"
    assert gb.type_name == "IP camera"
    assert gb.type_category is GbTypeCategory.FRONT_END_PERIPHERAL
    assert gb.device_kind is DeviceKind.CAMERA


@pytest.mark.parametrize(
    ("type_code", "kind"),
    [
        (111, DeviceKind.NVR),
        (118, DeviceKind.NVR),
        (131, DeviceKind.CAMERA),
        (132, DeviceKind.CAMERA),
        (134, DeviceKind.ALARM_POINT),
        (135, DeviceKind.BROADCAST_UNIT),
        (137, DeviceKind.BROADCAST_UNIT),
        (200, DeviceKind.PLATFORM),
        (215, None),  # business group: a directory node, not a device
        (216, None),  # virtual organisation
        (133, None),  # display
    ],
)
def test_type_codes_map_to_kinds(type_code: int, kind: DeviceKind | None) -> None:
    assert GbId.compose("15010200", "00", type_code, 0, 1).device_kind == kind


@pytest.mark.parametrize(
    ("type_code", "category"),
    [
        (111, GbTypeCategory.FRONT_END_MAIN),
        (130, GbTypeCategory.FRONT_END_MAIN),
        (131, GbTypeCategory.FRONT_END_PERIPHERAL),
        (199, GbTypeCategory.FRONT_END_PERIPHERAL),
        (200, GbTypeCategory.PLATFORM),
        (299, GbTypeCategory.PLATFORM),
        (300, GbTypeCategory.CENTER_USER),
        (400, GbTypeCategory.TERMINAL_USER),
        (500, GbTypeCategory.OTHER),
    ],
)
def test_type_ranges(type_code: int, category: GbTypeCategory) -> None:
    assert GbId.compose("34020000", "00", type_code, 0, 1).type_category is category


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("99010200001320000001", "province code 99"),
        ("15750200001320000001", "city code 75"),
        ("15000200001320000001", "county code 02"),
        ("15010200001100000001", "type code 110"),
        ("1501020000132000001", "20 digits"),
        ("15010200001320000001 ", "20 digits"),
        ("１５010200001320000001", "20 digits"),  # full-width digits
    ],
)
def test_refusals_say_which_part_is_wrong(code: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        GbId(code)


def test_province_level_and_province_direct_county_codes_are_valid() -> None:
    assert is_gb_id("34000000002000000001")  # province-level platform
    assert is_gb_id("46900100001320000001")  # Hainan, province-administered county


def test_gb_id_is_frozen() -> None:
    gb = GbId("15010200001320000001")
    with pytest.raises(AttributeError):
        gb.value = "15010200001320000002"  # type: ignore[misc]


@given(
    center=st.sampled_from(["15010200", "34020000", "11000000"]),
    type_code=st.sampled_from([118, 132, 134, 137, 200]),
    network=st.integers(0, 9),
    serials=st.sets(st.integers(1, 60), max_size=40),
    noise=st.lists(st.text(max_size=22), max_size=5),
)
def test_next_free_id_is_the_lowest_untaken_serial(
    center: str, type_code: int, network: int, serials: set[int], noise: list[str]
) -> None:
    taken = [str(GbId.compose(center, "00", type_code, network, s)) for s in serials]
    # Same serials under another type must not block this type.
    other_type = 131 if type_code != 131 else 132
    taken += [str(GbId.compose(center, "00", other_type, network, s + 100)) for s in serials]
    result = next_free_id(center, "00", type_code, network, [*taken, *noise])
    assert is_gb_id(str(result))
    assert str(result) not in taken
    assert result.type_code == type_code
    assert result.center_code == center
    assert result.network_code == network
    assert all(s in serials for s in range(1, result.serial_number))


def test_next_free_id_fills_gaps_and_starts_at_one() -> None:
    assert str(next_free_id("15010200", "00", 132, 0, [])) == "15010200001320000001"
    taken = ["15010200001320000001", "15010200001320000002", "15010200001320000004"]
    assert str(next_free_id("15010200", "00", 132, 0, taken)) == "15010200001320000003"


def test_next_free_id_refuses_bad_parts_and_a_full_range() -> None:
    with pytest.raises(ValueError, match="province"):
        next_free_id("99010200", "00", 132, 0, [])
    with pytest.raises(ValueError, match="industry"):
        next_free_id("15010200", "0", 132, 0, [])
    with pytest.raises(ValueError, match="type code"):
        next_free_id("15010200", "00", 42, 0, [])
    full = (f"15010200001320{n:06d}" for n in range(1, 1_000_000))
    with pytest.raises(ValueError, match="no free serial"):
        next_free_id("15010200", "00", 132, 0, full)
