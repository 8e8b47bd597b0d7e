"""The campaign registry: the same list and message under another results file is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bulksend.errors import CampaignRepeated
from bulksend.registry import (
    REGISTRY_NAME,
    CampaignIdentity,
    Registry,
    RunEntry,
    campaign_identity,
    default_state_dir,
    key_fingerprint,
    repeats_of,
)

ROOT = os.geteuid() == 0


def identity(**overrides: object) -> CampaignIdentity:
    values: dict[str, object] = {
        "input_sha256": "ab" * 32,
        "column": None,
        "message": "fingerprint-of-text",
        "sender": "ACME",
        "api": "legacy",
        "endpoint": "https://api.example.test/",
        "user": "alice",
        "api_id": "123",
    }
    values.update(overrides)
    return campaign_identity(**values)  # type: ignore[arg-type]


def test_state_dir_is_bulksend_state_dir_then_xdg_then_home() -> None:
    assert default_state_dir({"BULKSEND_STATE_DIR": "/s", "XDG_STATE_HOME": "/x"}) == Path("/s")
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/bulksend")
    assert default_state_dir({}) == Path("~/.local/state/bulksend").expanduser()


def test_identity_is_the_content_message_sender_and_account() -> None:
    base = identity()
    assert identity(endpoint="https://api.example.test") == base  # a trailing slash is the same
    for change in (
        {"input_sha256": "cd" * 32},
        {"message": "another text"},
        {"sender": "OTHER"},
        {"user": "bob"},
        {"api_id": "999"},
        {"endpoint": "https://other.test"},
        {"column": "mobile"},
    ):
        assert identity(**change).digest != base.digest, change


def test_one_api_identity_holds_a_key_fingerprint_never_the_key() -> None:
    key = "SECRET-KEY-0123456789abcdef"
    one = identity(api="one", api_key=key, user="", api_id="")
    assert key not in one.account and key not in one.digest
    assert key_fingerprint(key) in one.account
    assert identity(api="one", api_key="another-key-000000", user="", api_id="") != one


def test_first_run_is_recorded_durably_with_mode_0600(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    admission = registry.admit(identity(), results="out.csv", input_path="list.csv")
    assert admission.recorded and not admission.repeats and not admission.warning
    assert (registry.path.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in registry.directory.iterdir()) == [
        REGISTRY_NAME,
        REGISTRY_NAME + ".lock",
    ]  # no temporary file left behind
    (run,) = registry.runs()
    assert run.results == os.path.realpath("out.csv") and run.state == "running"


def test_same_campaign_under_another_results_file_is_refused_naming_the_earlier_run(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "state")
    first = registry.admit(identity(), results=str(tmp_path / "a.csv"), input_path="list.csv")
    registry.finish(first.entry, state="finished", counts={"accepted": 9, "rejected": 1})
    with pytest.raises(CampaignRepeated) as refused:
        registry.admit(identity(), results=str(tmp_path / "b.csv"), input_path="copy.csv")
    message = str(refused.value)
    assert str(tmp_path / "a.csv") in message and "no longer there" in message
    assert first.entry.started in message
    assert "9 accepted, 1 rejected, 0 unknown" in message
    assert "Nothing was sent" in message and "--again" in message
    assert f"--out {tmp_path / 'a.csv'}" in message
    assert refused.value.results == str(tmp_path / "a.csv")
    assert len(registry.runs()) == 1  # the refused run left no entry


def test_again_sends_anyway_and_records_it(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    registry.admit(identity(), results="a.csv", input_path="list.csv")
    admission = registry.admit(identity(), results="b.csv", input_path="list.csv", again=True)
    assert [r.results for r in admission.repeats] == [os.path.realpath("a.csv")]
    assert admission.entry.again
    assert {r.results for r in registry.runs()} == {os.path.realpath(p) for p in ("a.csv", "b.csv")}
    with pytest.raises(CampaignRepeated, match="and 1 earlier run"):
        registry.admit(identity(), results="c.csv", input_path="list.csv")


def test_the_same_results_file_is_a_resume_not_a_repeat(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    first = registry.admit(identity(), results="a.csv", input_path="list.csv")
    again = registry.admit(identity(), results="./a.csv", input_path="list.csv")
    assert not again.repeats and again.entry.started == first.entry.started
    assert len(registry.runs()) == 1


def test_other_campaigns_and_runs_that_sent_nothing_do_not_count(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    registry.admit(identity(message="other"), results="a.csv", input_path="list.csv")
    stopped = registry.admit(identity(), results="b.csv", input_path="list.csv")
    registry.finish(stopped.entry, state="stopped", counts={"accepted": 0, "pending": 50})
    assert registry.admit(identity(), results="c.csv", input_path="list.csv").recorded


def test_a_run_that_died_counts_as_having_sent(tmp_path: Path) -> None:
    entries = [RunEntry(identity="x", results="/a.csv", input="i", account="a", started="t")]
    assert repeats_of(entries, "x", "/b.csv") == entries
    assert repeats_of(entries, "x", "/a.csv") == []
    assert "not recorded as finished" in entries[0].holds()


def test_a_damaged_registry_refuses_unless_again_and_is_left_alone(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    registry.directory.mkdir()
    registry.path.write_text("{not json")
    with pytest.raises(CampaignRepeated) as refused:
        registry.admit(identity(), results="a.csv", input_path="list.csv")
    assert str(registry.path) in str(refused.value) and "--again" in str(refused.value)
    admission = registry.admit(identity(), results="a.csv", input_path="list.csv", again=True)
    assert not admission.recorded and str(registry.path) in admission.warning
    assert registry.path.read_text() == "{not json"


@pytest.mark.skipif(ROOT, reason="root ignores file permissions")
def test_an_unreadable_registry_refuses(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.path.chmod(0)
    try:
        with pytest.raises(CampaignRepeated, match="cannot read the campaign registry"):
            registry.admit(identity(), results="b.csv", input_path="list.csv")
    finally:
        registry.path.chmod(0o600)


@pytest.mark.skipif(ROOT, reason="root ignores file permissions")
def test_an_unwritable_state_dir_warns_naming_it_and_still_checks(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    first = registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.finish(first.entry, state="finished", counts={"accepted": 3})
    registry.directory.chmod(0o500)
    try:
        with pytest.raises(CampaignRepeated, match="already went out"):
            registry.admit(identity(), results="b.csv", input_path="list.csv")
        admission = registry.admit(identity(message="new"), results="c.csv", input_path="l.csv")
        assert not admission.recorded
        assert str(registry.directory) in admission.warning
        assert "will not be caught" in admission.warning
    finally:
        registry.directory.chmod(0o700)


@pytest.mark.skipif(ROOT, reason="root ignores file permissions")
def test_a_state_dir_that_cannot_be_created_warns(tmp_path: Path) -> None:
    tmp_path.joinpath("ro").mkdir(mode=0o500)
    try:
        admission = Registry(tmp_path / "ro" / "state").admit(
            identity(), results="a.csv", input_path="list.csv"
        )
        assert not admission.recorded and str(tmp_path / "ro" / "state") in admission.warning
    finally:
        tmp_path.joinpath("ro").chmod(0o700)


_RACER = """
import sys
from bulksend.errors import CampaignRepeated
from bulksend.registry import Registry, campaign_identity
ident = campaign_identity(input_sha256="ab" * 32, column=None, message="m", sender="S",
                          api="legacy", endpoint="https://e", user="u", api_id="1")
sys.stdin.readline()  # start together
try:
    Registry(sys.argv[1]).admit(ident, results=sys.argv[2], input_path="list.csv")
    print("admitted")
except CampaignRepeated:
    print("refused")
"""


def test_two_runs_at_once_only_one_is_admitted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(state), str(tmp_path / f"out{i}.csv")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [r.communicate("go\n", timeout=60)[0].strip() for r in racers]
    assert sorted(outputs) == ["admitted", "refused", "refused", "refused"]
    data = json.loads((state / REGISTRY_NAME).read_text())
    assert len(data["campaigns"]) == 1


def test_a_registry_that_cannot_be_read_refuses_even_as_root(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    registry.path.mkdir(parents=True)  # something that is not a file stands in its place
    with pytest.raises(CampaignRepeated, match="cannot read the campaign registry"):
        registry.admit(identity(), results="a.csv", input_path="list.csv")


def test_a_state_dir_that_is_a_file_warns_naming_it(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    admission = Registry(tmp_path / "state").admit(identity(), results="a.csv", input_path="l.csv")
    assert not admission.recorded and str(tmp_path / "state") in admission.warning


def test_a_run_that_never_sent_is_withdrawn_and_the_earlier_entry_put_back(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "state")
    fresh = registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.withdraw(fresh)  # e.g. its journal refused: nothing was sent
    assert registry.runs() == []
    first = registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.finish(first.entry, state="finished", counts={"accepted": 5})
    resumed = registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.withdraw(resumed)
    (run,) = registry.runs()
    assert run.state == "finished" and run.counts == {"accepted": 5}


def test_resuming_its_own_results_file_is_never_a_repeat(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    monday = registry.admit(identity(), results="monday.csv", input_path="list.csv")
    registry.finish(monday.entry, state="finished", counts={"accepted": 9})
    registry.admit(identity(), results="tuesday.csv", input_path="list.csv", again=True)
    # Monday's campaign resumed (or rerun) after it also went out as tuesday.csv with --again.
    assert not registry.admit(identity(), results="monday.csv", input_path="list.csv").repeats
    # A results file that already holds the campaign, unknown to the registry (begun before it).
    assert registry.admit(
        identity(), results="older.csv", input_path="list.csv", resuming=True
    ).recorded


def test_a_read_only_state_dir_is_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path / "state")
    first = registry.admit(identity(), results="a.csv", input_path="list.csv")
    registry.finish(first.entry, state="finished", counts={"accepted": 3})
    real_open = os.open

    def read_only(path: object, flags: int, *args: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(CampaignRepeated, match="already went out"):
        registry.admit(identity(), results="b.csv", input_path="list.csv")
    admission = registry.admit(identity(message="other"), results="c.csv", input_path="l.csv")
    assert not admission.recorded and "Read-only file system" in admission.warning
    assert str(registry.path) in admission.warning
