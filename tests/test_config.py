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
