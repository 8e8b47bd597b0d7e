"""Replies (MO) and opt-out keywords: the pure rules of bulksend.replies, without a network."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.replies import (
    DEFAULT_OPT_OUT_KEYWORDS,
    REPLIES_HEADER,
    OptOutKeywords,
    Reply,
    is_json_reply,
    parse_form_reply,
    parse_json_reply,
    reply_line,
    split_reply_line,
)

MO_ID = "d2b66016178dda7c3b4a701056797755"
DOC_BODY = (
    "api_id=3523864&from=919676026708&timestamp=2015-02-04+09%3A30%3A36&text=STOP"
    "&charset=ISO-8859-1&udh=&moMsgId=d2b66016178dda7c3b4a701056797755&to=447860024227"
)


def form(body: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return {k.lower(): v for k, v in parse_qsl(body, keep_blank_values=True)}


# -- keywords -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("STOP", "STOP"),
        ("stop", "STOP"),
        ("Stop.", "STOP"),
        ("  stop please  ", "STOP"),
        ("STOP!!!", "STOP"),
        ("stopall", "STOPALL"),
        ("Unsubscribe me", "UNSUBSCRIBE"),
        ("cancel", "CANCEL"),
        ("END", "END"),
        ("quit", "QUIT"),
        ("Revoke", "REVOKE"),
        ("OPTOUT", "OPTOUT"),
        ("opt out", "OPT OUT"),
        ("Opt-Out", "OPT OUT"),
        ("opt   out!", "OPT OUT"),
        ("*STOP*", "STOP"),
        ("\u00abStop\u00bb", "STOP"),
    ],
)
def test_opt_out_keywords_match_the_first_words(text: str, keyword: str) -> None:
    assert OptOutKeywords().match(text) == keyword


@pytest.mark.parametrize(
    "text",
    ["Stopwatch", "please stop", "", "   ", "opt", "optional", "ending soon", "s t o p", "STO P"],
)
def test_words_that_only_look_like_keywords_do_not_opt_out(text: str) -> None:
    assert OptOutKeywords().match(text) is None


def test_keywords_are_configurable() -> None:
    keywords = OptOutKeywords.parse("BASTA, halt now")
    assert keywords.match("basta!") == "BASTA"
    assert keywords.match("Halt now please") == "halt now"
    assert keywords.match("halt") is None
    assert keywords.match("STOP") is None
    with pytest.raises(ValueError):
        OptOutKeywords.parse(" , ,")
    with pytest.raises(ValueError):
        OptOutKeywords(["STOP", "!!"])


def test_a_one_api_reply_without_text_is_judged_by_its_keyword() -> None:
    reply = Reply(MO_ID, "", "27821234567", "", "", "", "", "", "", "STOP")
    assert OptOutKeywords().opts_out(reply) == "STOP"
    assert OptOutKeywords().opts_out(reply._replace(text="thanks")) is None


@given(st.sampled_from(DEFAULT_OPT_OUT_KEYWORDS), st.text(max_size=30), st.data())
def test_any_keyword_with_any_casing_and_a_tail_opts_out(
    keyword: str, tail: str, data: st.DataObject
) -> None:
    cased = "".join(c.upper() if data.draw(st.booleans()) else c.lower() for c in keyword)
    punct = data.draw(st.sampled_from(["", ".", "!", " ", "?!", ","]))
    text = f"{punct}{cased}{punct} {tail}"
    assert OptOutKeywords().match(text) is not None


@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=10))
def test_a_keyword_glued_to_more_letters_is_not_one(suffix: str) -> None:
    keywords = OptOutKeywords(["STOP"])
    assert keywords.match("STOP" + suffix) is None or suffix.casefold() == ""


# -- legacy form ----------------------------------------------------------------------------------


def test_the_documented_legacy_reply_is_read() -> None:
    reply = parse_form_reply(form(DOC_BODY), (DOC_BODY,))
    assert reply == Reply(
        mo_msg_id=MO_ID,
        reply_to_msg_id="",
        sender="919676026708",
        to="447860024227",
        sent_at="2015-02-04T07:30:36Z",  # the gateway's GMT+2, in UTC
        text="STOP",
        charset="ISO-8859-1",
        udh="",
        network="",
        keyword="",
    )


def test_legacy_text_is_decoded_with_its_charset() -> None:
    body = f"moMsgId={MO_ID}&from=27821234567&text=Caf%E9+stop&charset=ISO-8859-1"
    reply = parse_form_reply(form(body), (body,))
    assert isinstance(reply, Reply)
    assert reply.text == "Café stop"
    body = f"moMsgId={MO_ID}&from=27821234567&text=Caf%C3%A9&charset=UTF-8"
    reply = parse_form_reply(form(body), (body,))
    assert isinstance(reply, Reply) and reply.text == "Café"
    body = f"moMsgId={MO_ID}&from=27821234567&text=00530054004F0050&charset=UCS-2"
    reply = parse_form_reply(form(body), (body,))
    assert isinstance(reply, Reply) and reply.text == "STOP"


def test_legacy_timestamps_are_read_leniently() -> None:
    for stamp, expected in [
        ("2015-02-04 09:30:36", "2015-02-04T07:30:36Z"),
        ("1423035036", "2015-02-04T07:30:36Z"),
        ("2015-02-04T07:30:36Z", "2015-02-04T07:30:36Z"),
        ("", ""),
    ]:
        reply = parse_form_reply({"momsgid": MO_ID, "from": "+27821234567", "timestamp": stamp})
        assert isinstance(reply, Reply), stamp
        assert reply.sent_at == expected
        assert reply.sender == "27821234567"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"momsgid": "", "from": "27821234567"}, "moMsgId"),
        ({"momsgid": "x" * 65, "from": "27821234567"}, "moMsgId"),
        ({"momsgid": "a b", "from": "27821234567"}, "moMsgId"),
        ({"momsgid": MO_ID, "from": ""}, "from"),
        ({"momsgid": MO_ID, "from": "hello"}, "from"),
        ({"momsgid": MO_ID, "from": "0821234567"}, "from"),
        ({"momsgid": MO_ID, "from": "27821234567", "to": "abc"}, "to"),
        ({"momsgid": MO_ID, "from": "27821234567", "timestamp": "yesterday"}, "timestamp"),
        ({"momsgid": MO_ID, "from": "27821234567", "udh": "zz"}, "udh"),
    ],
)
def test_bad_legacy_replies_are_refused_naming_the_field(
    params: dict[str, str], field: str
) -> None:
    reason = parse_form_reply(params)
    assert isinstance(reason, str) and reason.startswith(field)


# -- One API JSON ---------------------------------------------------------------------------------


def one_reply(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "integrationId": "abc123",
        "messageId": "mo-1",
        "replyMessageId": "e7f2c1a4b5",
        "apiKey": "secret-key",
        "fromNumber": "27821234567",
        "toNumber": "27820000000",
        "timestamp": 1423035036000,
        "text": "Stop",
        "charset": "UTF-8",
        "udh": "",
        "network": "Vodacom",
        "keyword": "STOP",
    }
    body.update(overrides)
    return json.dumps(body).encode()


def test_the_one_api_reply_is_read_and_its_api_key_dropped() -> None:
    body = one_reply()
    assert is_json_reply(body)
    reply = parse_json_reply(body)
    assert reply == Reply(
        "mo-1",
        "e7f2c1a4b5",
        "27821234567",
        "27820000000",
        "2015-02-04T07:30:36Z",
        "Stop",
        "UTF-8",
        "",
        "Vodacom",
        "STOP",
    )
    assert "secret-key" not in repr(reply)


def test_a_delivery_callback_is_not_a_reply() -> None:
    assert not is_json_reply(b'{"messageId":"x","statusCode":4,"to":"27821234567"}')


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", "malformed"),
        (b"[1]", "malformed"),
        (one_reply(messageId=""), "messageId"),
        (one_reply(messageId=5.5), "messageId"),
        (one_reply(fromNumber="nobody"), "fromNumber"),
        (one_reply(text=["STOP"]), "text"),
        (one_reply(timestamp="soon"), "timestamp"),
        (one_reply(timestamp=True), "timestamp"),
        (one_reply(replyMessageId="a b"), "replyMessageId"),
    ],
)
def test_bad_one_api_replies_are_refused_naming_the_field(body: bytes, field: str) -> None:
    reason = parse_json_reply(body)
    assert isinstance(reason, str) and reason.startswith(field)


def test_a_number_given_as_a_json_number_is_read() -> None:
    reply = parse_json_reply(one_reply(fromNumber=27821234567, timestamp=None))
    assert isinstance(reply, Reply)
    assert reply.sender == "27821234567" and reply.sent_at == ""


# -- the replies file -----------------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200
)  # any text an SMS can hold


@given(texts, st.sampled_from(["STOP", None]))
def test_a_reply_line_is_one_line_and_reads_back(text: str, opt_out: str | None) -> None:
    reply = Reply(MO_ID, "", "27821234567", "27820000000", "", text, "UTF-8", "", "", "")
    line = reply_line("2026-01-01T00:00:00.000Z", reply, opt_out)
    assert line.endswith("\n") and line.count("\n") == 1 and "\r" not in line
    fields = split_reply_line(line)
    assert fields is not None
    assert dict(zip(REPLIES_HEADER.split(","), fields, strict=True)) == {
        "received_at": "2026-01-01T00:00:00.000Z",
        "mo_msg_id": MO_ID,
        "reply_to_msg_id": "",
        "from": "27821234567",
        "to": "27820000000",
        "sent_at": "",
        "opt_out": "1" if opt_out else "0",
        "keyword": opt_out or "",
        "network": "",
        "charset": "UTF-8",
        "udh": "",
        "text": text,
    }


def test_a_torn_or_foreign_line_is_not_a_reply() -> None:
    reply = Reply(MO_ID, "", "27821234567", "", "", "hi, there", "", "", "", "")
    line = reply_line("t", reply, None)
    assert split_reply_line(line[:-8]) is None
    assert split_reply_line("a,b,c\n") is None
