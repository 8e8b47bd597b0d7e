"""Settings: precedence CLI > env > profile > file > default, the password's sources, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bulksend.config import CampaignSettings, load_settings
from bulksend.errors import ConfigError

CONFIG = """
endpoint = "http://file.example"
user = "file-user"
concurrency = 4
password_env = "MY_SECRET"

[profile.fast]
concurrency = 64
from = "ACME"
rate = 500
"""

BASE = {"input_path": Path("in.csv"), "text": "hi"}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "bulksend.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def test_precedence_cli_over_env_over_profile_over_file(config_file: Path) -> None:
    env = {"MY_SECRET": "pw-from-named-var", "BULKSEND_USER": "env-user"}
    s = load_settings(BASE, env=env, config_path=config_file, profile="fast")
    assert s.endpoint == "http://file.example"  # file top level
    assert s.concurrency == 64 and s.sender == "ACME" and s.rate == 500  # profile
    assert s.user == "env-user"  # env beats file
    assert s.password == "pw-from-named-var"  # password_env
    s = load_settings(
        {**BASE, "user": "cli-user", "concurrency": 8},
        env=env,
        config_path=config_file,
        profile="fast",
    )
    assert s.user == "cli-user" and s.concurrency == 8


def test_bulksend_password_env_wins(config_file: Path) -> None:
    env = {"MY_SECRET": "named", "BULKSEND_PASSWORD": "direct"}
    assert load_settings(BASE, env=env, config_path=config_file).password == "direct"


def test_named_password_variable_missing_is_an_error(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="MY_SECRET"):
        load_settings(BASE, env={}, config_path=config_file)


def test_unknown_profile_lists_the_known_ones(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="fast"):
        load_settings(BASE, env={"MY_SECRET": "x"}, config_path=config_file, profile="nope")


def test_unknown_key_and_wrong_type_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("concurrancy = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'concurrancy'"):
        load_settings(BASE, env={}, config_path=bad)
    bad.write_text('concurrency = "many"\n')
    with pytest.raises(ConfigError, match="wrong type"):
        load_settings(BASE, env={}, config_path=bad)
    bad.write_text("concurrency = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(BASE, env={}, config_path=bad)


def test_readable_config_with_password_warns(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('password = "in-the-file"\n')
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        s = load_settings(BASE, env={}, config_path=path)
    assert s.password == "in-the-file"


def test_settings_repr_hides_the_password() -> None:
    s = CampaignSettings(input_path=Path("x"), text="t", password="topsecret-123")
    assert "topsecret-123" not in repr(s)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "get", "batch_size": 301}, "1..300"),
        ({"batch_size": 601}, "1..600"),
        ({"concurrency": 0}, "concurrency"),
        ({"callback": 9}, "callback"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"unicode": "maybe"}, "unicode"),
    ],
)
def test_invalid_settings_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CampaignSettings(input_path=Path("x"), text="t", **change)  # type: ignore[arg-type]


def test_default_paths_sit_beside_the_input() -> None:
    s = CampaignSettings(input_path=Path("/data/recipients.csv"), text="t")
    assert s.results_path == Path("/data/recipients.results.csv")
    assert s.rejects_path == Path("/data/recipients.rejects.csv")
    s = CampaignSettings(input_path=Path("/data/r.csv"), text="t", out=Path("/o/run1.csv"))
    assert s.rejects_path == Path("/o/run1.rejects.csv")


@pytest.mark.parametrize("profile", [None, "production", "simulator"])
def test_the_documented_example_config_loads(profile: str | None) -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "bulksend.example.toml"
    settings = load_settings(
        {"input_path": Path("in.csv"), "text": "hi"},
        env={"CLICKATELL_PASSWORD": "x", "BULKSEND_SIM_PASSWORD": "y"},
        config_path=example,
        profile=profile,
    )
    assert settings.allow_partial is False


def test_message_options_and_lists_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'flash = true\nvalidity = 60\nmax_credits = 2\nexclude = ["a.csv", "b.txt"]\n'
        'record_opt_outs = "a.csv"\n'
    )
    settings = load_settings(
        {"input_path": Path("in.csv"), "text": "hi"}, env={}, config_path=config
    )
    assert settings.flash and settings.validity == 60 and settings.max_credits == 2.0
    assert settings.exclude == (Path("a.csv"), Path("b.txt"))
    assert settings.record_opt_outs == Path("a.csv")


def test_text_file_and_binary_data_file(tmp_path: Path) -> None:
    (tmp_path / "msg.txt").write_text("Grüße\n", encoding="utf-8")
    settings = load_settings(
        {"input_path": Path("in.csv"), "text_file": tmp_path / "msg.txt"}, env={}
    )
    assert settings.text == "Grüße"
    (tmp_path / "logo.bin").write_bytes(b"\x01\x02\xff")
    settings = load_settings(
        {"input_path": Path("in.csv"), "data_file": tmp_path / "logo.bin", "udh": "0605040B8423F0"},
        env={},
    )
    assert settings.data == "0102FF" and settings.text == ""
    with pytest.raises(ConfigError, match="exclude each other"):
        load_settings({"input_path": Path("in.csv"), "text": "a", "text_file": "x"}, env={})
    with pytest.raises(ConfigError, match="--deliver-in"):
        load_settings({"input_path": Path("in.csv"), "text": "a", "deliver_in": 20000}, env={})
