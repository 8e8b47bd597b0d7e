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


# ---- the One API: --api, the key's sources, one-only rules --------------------------------------

KEY = "one-api-key-Qw83zz"


def test_api_precedence_cli_over_env_over_profile(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('api = "legacy"\n[profile.one]\napi = "one"\n')
    config.chmod(0o600)
    env = {"BULKSEND_API_KEY": KEY}
    assert load_settings(BASE, env=env, config_path=config).api == "legacy"
    assert load_settings(BASE, env=env, config_path=config, profile="one").api == "one"
    s = load_settings(
        BASE, env={**env, "BULKSEND_API": "legacy"}, config_path=config, profile="one"
    )
    assert s.api == "legacy" and s.api_key == ""  # legacy ignores a set key
    s = load_settings({**BASE, "api": "one"}, env={**env, "BULKSEND_API": "legacy"})
    assert s.api == "one" and s.api_key == KEY


def test_one_api_defaults_to_the_platform_endpoint_and_needs_no_password() -> None:
    s = load_settings({**BASE, "api": "one"}, env={"BULKSEND_API_KEY": KEY})
    assert s.endpoint == "https://platform.clickatell.com"
    assert s.password == "" and s.user == "" and s.api_id == ""
    assert load_settings(BASE, env={}).endpoint == "https://api.clickatell.com"
    s = load_settings(
        {**BASE, "api": "one", "endpoint": "http://127.0.0.1:9"}, env={"BULKSEND_API_KEY": KEY}
    )
    assert s.endpoint == "http://127.0.0.1:9"


def test_one_api_key_sources_in_order(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('api = "one"\napi_key_env = "MY_ONE_KEY"\npassword_env = "UNSET_PW"\n')
    config.chmod(0o600)
    s = load_settings(BASE, env={"MY_ONE_KEY": "named-var-key"}, config_path=config)
    assert s.api_key == "named-var-key" and s.password == ""  # password_env not read for one
    env = {"MY_ONE_KEY": "named-var-key", "BULKSEND_API_KEY": "direct-key"}
    assert load_settings(BASE, env=env, config_path=config).api_key == "direct-key"
    with pytest.raises(ConfigError, match="MY_ONE_KEY"):
        load_settings(BASE, env={}, config_path=config)


def test_one_api_key_in_a_readable_file_warns(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'api = "one"\napi_key = "{KEY}"\n')
    os.chmod(config, 0o644)
    with pytest.warns(UserWarning, match="chmod 600") as caught:
        s = load_settings(BASE, env={}, config_path=config)
    assert s.api_key == KEY
    assert all(KEY not in str(w.message) for w in caught)


def test_missing_one_api_key_names_where_to_put_it() -> None:
    with pytest.raises(ConfigError, match="BULKSEND_API_KEY") as info:
        load_settings({**BASE, "api": "one"}, env={})
    assert "api_key_env" in str(info.value)
    assert load_settings({**BASE, "api": "one", "dry_run": True}, env={}).api_key == ""


def test_one_api_key_never_in_repr_str_or_exceptions(tmp_path: Path) -> None:
    from bulksend.config import load_account
    from bulksend.errors import redact

    s = load_settings({**BASE, "api": "one"}, env={"BULKSEND_API_KEY": KEY})
    assert s.api_key == KEY
    assert KEY not in repr(s) and KEY not in str(s) and "api_key=***" in repr(s)
    assert redact(f"echoed {KEY}") == "echoed ***"
    account = load_account({}, env={"BULKSEND_API": "one", "BULKSEND_API_KEY": KEY})
    assert account.api_key == KEY and KEY not in repr(account)
    bad = "bad key with spaces"
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, "api": "one"}, env={"BULKSEND_API_KEY": bad})
    assert bad not in str(info.value) and "key" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "get"}, "--method get"),
        ({"auth": "session"}, "session"),
        ({"api": "two"}, "'legacy' or 'one'"),
        ({"batch_size": 0}, "at least 1"),
    ],
)
def test_legacy_only_settings_are_refused_with_the_one_api(
    change: dict[str, object], message: str
) -> None:
    fields = {"api": "one", "api_key": KEY, **change}
    with pytest.raises(ConfigError, match=message):
        CampaignSettings(input_path=Path("x"), text="t", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requested", "effective"), [(None, 200), (50, 50), (100, 100), (200, 200), (600, 200)]
)
def test_one_api_batch_size_is_at_most_200_and_defaults_to_it(
    requested: int | None, effective: int
) -> None:
    s = CampaignSettings(
        input_path=Path("x"), text="t", api="one", api_key=KEY, batch_size=requested
    )
    assert s.effective_batch_size == effective
    legacy = CampaignSettings(input_path=Path("x"), text="t", batch_size=requested)
    assert legacy.effective_batch_size == (requested or 600)


def test_example_config_one_api_profile_loads() -> None:
    example = Path(__file__).resolve().parent.parent / "config" / "bulksend.example.toml"
    s = load_settings(BASE, env={"CLICKATELL_API_KEY": KEY}, config_path=example, profile="one")
    assert s.api == "one" and s.api_key == KEY
    assert s.endpoint == "https://platform.clickatell.com" and s.effective_batch_size == 200


def test_api_key_is_never_taken_from_argv(capsys: pytest.CaptureFixture[str]) -> None:
    from bulksend.cli import main

    assert main(["send", "in.csv", "--text", "hi", "--api", "one", f"--api-key={KEY}"]) == 1
    err = capsys.readouterr().err
    assert "BULKSEND_API_KEY" in err and KEY not in err


async def test_cancel_refuses_a_one_api_account(tmp_path: Path) -> None:
    from bulksend.cancel import cancel_campaign
    from bulksend.config import AccountSettings

    with pytest.raises(ConfigError, match="not supported with the One API"):
        await cancel_campaign(tmp_path / "r.csv", AccountSettings(api="one", api_key=KEY))


def test_cancel_cli_refuses_a_one_api_campaign_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bulksend.cli import main

    monkeypatch.setenv("BULKSEND_API", "one")
    monkeypatch.setenv("BULKSEND_API_KEY", KEY)
    monkeypatch.delenv("BULKSEND_PASSWORD", raising=False)
    monkeypatch.delenv("BULKSEND_CONFIG", raising=False)
    assert main(["cancel", str(tmp_path / "r.results.csv")]) == 1
    err = capsys.readouterr().err
    assert "not supported with the One API" in err and KEY not in err
