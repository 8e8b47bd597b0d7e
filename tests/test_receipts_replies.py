"""Reply (MO) callbacks at the receiver, over loopback: both formats stored once, STOP replies
appended to the opt-out list once, credentials required off loopback."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bulksend.errors import ConfigError
from bulksend.inbox import replies_path_for
from bulksend.numbers import NumberPolicy
from bulksend.optout import load_opt_outs
from bulksend.receipts import ReceiptServer, collect_receipts, is_loopback, serve
from bulksend.replies import REPLIES_HEADER, OptOutKeywords

MO_ID = "d2b66016178dda7c3b4a701056797755"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def legacy_reply(**overrides: str) -> dict[str, str]:
    form = {
        "api_id": "3523864",
        "moMsgId": MO_ID,
        "from": "27821234567",
        "to": "447860024227",
        "timestamp": "2015-02-04 09:30:36",
        "text": "STOP",
        "charset": "ISO-8859-1",
        "udh": "",
    }
    form.update(overrides)
    return form


def one_reply(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "integrationId": "abc123",
        "messageId": "a1b2c3d4e5f6",
        "replyMessageId": "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01",
        "apiKey": "the-integration-key",
        "fromNumber": "27831234567",
        "toNumber": "27820000000",
        "timestamp": 1423035036000,
        "text": "unsubscribe",
        "charset": "UTF-8",
        "udh": "",
        "network": "MTN",
        "keyword": "",
    }
    body.update(overrides)
    return body


def basic(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def read_replies(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def test_legacy_replies_get_and_post_are_stored_once_and_stop_is_recorded(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "c.receipts.csv"
    opt_outs = tmp_path / "optouts.txt"
    async with ReceiptServer(out, opt_out_path=opt_outs) as server:
        assert server.replies_path == tmp_path / "c.replies.csv"
        for _ in range(3):  # the gateway repeats a callback it thinks failed
            async with http.post(server.url, data=legacy_reply()) as response:
                assert response.status == 200
                # durable before the answer: both lines are already in the files
                assert MO_ID in server.replies_path.read_text()
                assert opt_outs.read_text() == "+27821234567\n"
        async with http.get(
            server.url, params=legacy_reply(moMsgId="b" * 32, text="Stopwatch broken?")
        ) as response:
            assert response.status == 200
        async with http.get(
            server.url, params=legacy_reply(moMsgId="c" * 32, text="stop.")
        ) as response:
            assert response.status == 200  # a second STOP from the same number
        stats = server.stats
        assert (stats.replies, stats.reply_duplicates, stats.opt_outs) == (3, 2, 1)
        assert stats.stored == 0, "a reply is not a receipt"
    rows = read_replies(server.replies_path)
    assert [(r["mo_msg_id"], r["opt_out"], r["keyword"]) for r in rows] == [
        (MO_ID, "1", "STOP"),
        ("b" * 32, "0", ""),
        ("c" * 32, "1", "STOP"),
    ]
    assert rows[0]["from"] == "27821234567" and rows[0]["sent_at"] == "2015-02-04T07:30:36Z"
    assert rows[1]["text"] == "Stopwatch broken?"
    assert server.replies_path.read_text().splitlines()[0] == REPLIES_HEADER
    assert opt_outs.read_text() == "+27821234567\n"
    assert stat.S_IMODE(os.stat(server.replies_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(opt_outs).st_mode) == 0o600
    assert out.read_text().count("\n") == 1, "the receipts file holds its header only"


async def test_one_api_json_replies_are_stored_once_without_the_api_key(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "r.csv"
    opt_outs = tmp_path / "optouts.txt"
    async with ReceiptServer(out, opt_out_path=opt_outs) as server:
        answers = await asyncio.gather(
            *(http.post(server.url, json=one_reply()) for _ in range(4)),
            http.post(server.url, json=one_reply(messageId="other", text="Thanks!")),
            http.post(server.url, json=one_reply(messageId="kw", text="", keyword="STOP")),
        )
        assert [a.status for a in answers] == [200] * 6
        for answer in answers:
            answer.release()
        # a delivery callback still goes to the receipts file
        status = {"messageId": "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01", "statusCode": 4, "timestamp": 1}
        async with http.post(server.url, json=status) as response:
            assert response.status == 200
        assert (server.stats.replies, server.stats.reply_duplicates) == (3, 3)
        assert server.stats.stored == 1
    rows = read_replies(tmp_path / "r.replies.csv")
    assert [(r["mo_msg_id"], r["opt_out"]) for r in rows] == [
        ("a1b2c3d4e5f6", "1"),
        ("other", "0"),
        ("kw", "1"),
    ]
    assert rows[0]["reply_to_msg_id"] == "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01"
    assert rows[0]["network"] == "MTN" and rows[0]["keyword"] == "UNSUBSCRIBE"
    assert "the-integration-key" not in (tmp_path / "r.replies.csv").read_text()
    assert opt_outs.read_text() == "+27831234567\n"


async def test_malformed_replies_get_400_and_are_not_stored(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with ReceiptServer(tmp_path / "r.csv") as server:
        for form in (legacy_reply(moMsgId="a b"), legacy_reply(**{"from": "nobody"})):
            async with http.post(server.url, data=form) as response:
                assert response.status == 400
        async with http.post(server.url, json=one_reply(fromNumber="x")) as response:
            assert response.status == 400
        assert server.stats.invalid == 3 and server.stats.replies == 0
    assert read_replies(tmp_path / "r.replies.csv") == []


async def test_configured_keywords_replace_the_defaults(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    opt_outs = tmp_path / "optouts.txt"
    keywords = OptOutKeywords.parse("BASTA")
    async with ReceiptServer(tmp_path / "r.csv", opt_out_path=opt_outs, keywords=keywords) as s:
        async with http.post(s.url, data=legacy_reply(text="STOP")) as response:
            assert response.status == 200
        async with http.post(
            s.url, data=legacy_reply(moMsgId="e" * 32, text="Basta!", **{"from": "27829999999"})
        ) as response:
            assert response.status == 200
    assert opt_outs.read_text() == "+27829999999\n"


async def test_a_restarted_receiver_remembers_replies_and_catches_up_on_opt_outs(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "r.csv"
    replies = replies_path_for(out)
    opt_outs = tmp_path / "optouts.txt"
    async with (
        ReceiptServer(out) as server,  # first run: no opt-out file asked for
        http.post(server.url, data=legacy_reply()) as response,
    ):
        assert response.status == 200
    with replies.open("a", encoding="utf-8") as f:
        f.write('2026-01-01T00:00:00.000Z,x,,2782,,,1,STOP,,,,"torn')  # a kill mid-line
    opt_outs.write_text("number\n27831234567\n")  # a list kept by hand, in another format
    async with ReceiptServer(out, opt_out_path=opt_outs) as server:
        assert server.stats.replies_on_file == 1
        assert server.stats.opt_outs == 1, "the STOP of the first run reaches the list"
        async with http.post(server.url, data=legacy_reply()) as response:
            assert response.status == 200
        async with http.post(
            server.url, data=legacy_reply(moMsgId="f" * 32, **{"from": "+27831234567"})
        ) as response:
            assert response.status == 200
        assert (server.stats.replies, server.stats.reply_duplicates) == (1, 1)
        assert server.stats.opt_outs == 1, "27831234567 was on the list already"
    assert opt_outs.read_text() == "number\n27831234567\n+27821234567\n"
    assert len(read_replies(replies)) == 2
    excluded = load_opt_outs([opt_outs], NumberPolicy())
    assert excluded.list_of(27821234567) == str(opt_outs)
    assert excluded.list_of(27831234567) == str(opt_outs)


async def test_basic_auth_is_required_when_configured(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with ReceiptServer(tmp_path / "r.csv", basic_auth=("clickatell", "s3cret!")) as server:
        async with http.post(server.url, data=legacy_reply()) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
        wrong = basic("clickatell", "guess")
        async with http.post(server.url, data=legacy_reply(), headers=wrong) as response:
            assert response.status == 401
        right = basic("clickatell", "s3cret!")
        async with http.post(server.url, data=legacy_reply(), headers=right) as response:
            assert response.status == 200
        assert server.stats.forbidden == 2 and server.stats.replies == 1
        assert "s3cret" not in repr(server)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_a_receiver_off_loopback_refuses_to_start_without_credentials(
    tmp_path: Path, host: str
) -> None:
    listen = f"[{host}]:0" if ":" in host else f"{host}:0"
    with pytest.raises(ConfigError, match="without --token or basic auth"):
        serve(listen, tmp_path / "r.csv")
    assert not (tmp_path / "r.csv").exists(), "refused before anything was created"


async def test_a_campaign_receiver_off_loopback_refuses_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without --token"):
        async with collect_receipts("0.0.0.0:0", tmp_path / "c.results.csv"):
            pass


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.1", "::1", "localhost", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org", ""]))


def _receipts_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulksend", "receipts", "--out", str(tmp_path / "r.csv"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_cli_refuses_a_public_address_without_credentials(tmp_path: Path) -> None:
    proc = _receipts_cli(tmp_path, "--listen", "0.0.0.0:0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "without --token or basic auth" in err and "Traceback" not in err
    proc = _receipts_cli(tmp_path, "--listen", "0.0.0.0:0", "--auth-user", "clickatell")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "BULKSEND_RECEIPTS_PASSWORD" in err


async def test_cli_with_basic_auth_on_a_public_address_serves_and_records_opt_outs(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    opt_outs = tmp_path / "optouts.txt"
    proc = _receipts_cli(
        tmp_path,
        "--listen",
        "0.0.0.0:0",
        "--auth-user",
        "clickatell",
        "--record-opt-outs",
        str(opt_outs),
        env={"BULKSEND_RECEIPTS_PASSWORD": "pw-of-the-receiver"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        port = line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/"
        async with http.post(url, data=legacy_reply()) as response:
            assert response.status == 401
        auth = basic("clickatell", "pw-of-the-receiver")
        async with http.post(url, data=legacy_reply(), headers=auth) as response:
            assert response.status == 200
        async with http.post(url, data=json.dumps(one_reply()), headers=auth) as response:
            assert response.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "pw-of-the-receiver" not in err
    assert "replies=2" in err and "opt_outs=2" in err
    assert opt_outs.read_text() == "+27821234567\n+27831234567\n"
    assert base64.b64encode(b"clickatell:pw-of-the-receiver").decode() not in err
