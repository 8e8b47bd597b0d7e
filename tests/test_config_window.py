"""Quiet hours and the receiver's credentials in the settings: validated before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bulksend.config import CampaignSettings, load_settings
from bulksend.errors import ConfigError

BASE: dict[str, Any] = {"input_path": Path("in.csv"), "text": "hi", "password": "pw"}


def settings(**overrides: Any) -> CampaignSettings:
    return CampaignSettings(**{**BASE, **overrides})


def test_a_window_is_parsed_once_and_checked() -> None:
    s = settings(send_window="20:00-08:00", send_days="Mon-Fri", default_timezone="Europe/Paris")
    assert str(s.window) == "20:00-08:00 Mon,Tue,Wed,Thu,Fri"
    assert settings().window is None
    for bad in ({"send_window": "8-21"}, {"send_window": "08:00-21:00", "send_days": "Funday"}):
        with pytest.raises(ConfigError, match="send-"):
            settings(**bad)
    with pytest.raises(ConfigError, match="unknown time zone"):
        settings(send_window="08:00-21:00", default_timezone="Mars/Base")


@pytest.mark.parametrize(
    ("option", "value"),
    [("send_days", "Mon-Fri"), ("timezone_column", "tz"), ("wait", True)],
)
def test_window_options_need_a_window(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match="needs --send-window"):
        settings(**{option: value})


def test_a_delayed_delivery_and_a_window_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="deliver-in"):
        settings(send_window="08:00-21:00", deliver_in=60)


def test_a_profile_holds_the_window(tmp_path: Path) -> None:
    config = tmp_path / "bulksend.toml"
    config.write_text(
        '[profile.us]\nsend_window = "08:00-21:00"\nsend_days = "Mon-Sat"\n'
        'default_timezone = "America/New_York"\ntimezone_column = "tz"\nwait = true\n'
        'opt_out_keywords = ["STOP", "BASTA"]\n'
    )
    s = load_settings(
        {"input_path": Path("in.csv"), "text": "hi"},
        env={"BULKSEND_PASSWORD": "pw"},
        config_path=config,
        profile="us",
    )
    assert (s.send_window, s.send_days, s.default_timezone) == (
        "08:00-21:00",
        "Mon-Sat",
        "America/New_York",
    )
    assert s.timezone_column == "tz" and s.wait is True
    assert s.opt_out_keywords == ("STOP", "BASTA")
    cli = load_settings(
        {"input_path": Path("in.csv"), "text": "hi", "send_window": "09:00-17:00"},
        env={"BULKSEND_PASSWORD": "pw"},
        config_path=config,
        profile="us",
    )
    assert cli.send_window == "09:00-17:00", "the command line wins"


def test_a_public_receiver_needs_a_token_or_basic_auth() -> None:
    with pytest.raises(ConfigError, match="without --token or basic auth"):
        settings(receipts_listen="0.0.0.0:8080")
    settings(receipts_listen="127.0.0.1:8080")
    settings(receipts_listen="0.0.0.0:8080", dry_run=True)  # nothing is received
    s = load_settings(
        {**BASE, "receipts_listen": "0.0.0.0:8080"},
        env={"BULKSEND_PASSWORD": "pw", "BULKSEND_RECEIPTS_TOKEN": "Tok3n"},
    )
    assert s.receipts_token == "Tok3n" and "Tok3n" not in repr(s)
    s = load_settings(
        {**BASE, "receipts_listen": "0.0.0.0:8080", "receipts_auth_user": "clickatell"},
        env={"BULKSEND_PASSWORD": "pw", "BULKSEND_RECEIPTS_PASSWORD": "s3cret"},
    )
    assert s.receipts_basic_auth == ("clickatell", "s3cret") and "s3cret" not in repr(s)
    with pytest.raises(ConfigError, match="BULKSEND_RECEIPTS_PASSWORD"):
        settings(receipts_listen="127.0.0.1:8080", receipts_auth_user="clickatell")


def test_opt_out_keywords_are_checked() -> None:
    with pytest.raises(ConfigError, match="opt_out_keywords"):
        settings(opt_out_keywords=("!!",))
