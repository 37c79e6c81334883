"""The per-camera login-failure budget: three refusals, then hourly or on a new login."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from camera_registry.logins import LoginBudget, LoginState, login_version

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
V1 = login_version(b"sealed-login-1")
V2 = login_version(b"sealed-login-2")


def test_three_refusals_by_any_protocol_make_the_camera_auth_failed() -> None:
    budget = LoginBudget()
    for n, source in enumerate(("onvif", "rtsp_probe"), start=1):
        assert budget.may_try("cam-1", V1, T0)
        assert budget.refused("cam-1", V1, T0, source).state is LoginState.FAILING
        assert budget.status("cam-1").refusals == n
    status = budget.refused("cam-1", V1, T0 + timedelta(seconds=5), "snapshot")
    assert status.state is LoginState.AUTH_FAILED
    assert status.retry_at == T0 + timedelta(seconds=5, hours=1)
    assert not budget.may_try("cam-1", V1, T0 + timedelta(minutes=59))
    assert budget.may_try("cam-2", V1, T0)  # other cameras are not affected


def test_an_auth_failed_login_is_tried_once_an_hour() -> None:
    budget = LoginBudget()
    for _ in range(3):
        budget.refused("cam-1", V1, T0, "onvif")
    later = T0 + timedelta(hours=1)
    assert budget.may_try("cam-1", V1, later)  # the hourly try, taken by the first caller
    assert not budget.may_try("cam-1", V1, later + timedelta(seconds=1))
    budget.refused("cam-1", V1, later, "rtsp_probe")
    assert budget.status("cam-1").retry_at == later + timedelta(hours=1)


def test_a_changed_login_is_tried_at_once_and_an_accepted_one_clears_the_budget() -> None:
    budget = LoginBudget()
    for _ in range(3):
        budget.refused("cam-1", V1, T0, "onvif")
    assert budget.may_try("cam-1", V2, T0 + timedelta(seconds=1))
    assert budget.status("cam-1").state is LoginState.OK
    budget.refused("cam-1", V2, T0, "onvif")
    assert budget.accepted("cam-1") is True
    assert budget.status("cam-1").state is LoginState.OK and budget.troubled() == []


def test_versions_hide_the_login_and_times_must_be_aware() -> None:
    assert login_version(None) == "none" and V1 != V2 and "sealed" not in V1
    with pytest.raises(ValueError, match="timezone-aware"):
        LoginBudget().may_try("cam-1", V1, T0.replace(tzinfo=None))
