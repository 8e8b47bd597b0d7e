"""Protocol core: request forms and every answer shape, without a network."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.errors import ErrorClass, GatewayError, ProtocolError, register_secret
from bulksend.wire.legacy import (
    ERROR_CODES,
    MAX_NUMBERS_GET,
    Auth,
    MessageOptions,
    SendmsgTemplate,
    Verdict,
    classify,
    parse_auth,
    parse_getbalance,
    parse_getmsgcharge,
    parse_ping,
    parse_querymsg,
    parse_sendmsg,
)

ID1 = "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01"
ID2 = "5b2c9e0a7f4d4c8e9a1b3c5d7e9f1a2b"
PASSWORD = "hunter2-very-secret"
USER_AUTH = Auth(api_id="3000001", user="acme", password=PASSWORD)


# --- requests -------------------------------------------------------------------------------------


def test_post_body_carries_auth_options_and_comma_separated_numbers() -> None:
    template = SendmsgTemplate(
        MessageOptions(
            text="Hello & welcome",
            sender="ACME",
            callback=3,
            climsgid="abc123",
            concat=2,
            max_credits=2,
            deliv_time=30,
            validity=60,
            extra=(("req_feat", "48"),),
        )
    )
    form = parse_qs(template.body(USER_AUTH, ["27821234567", "27831234567"]).decode())
    assert form["to"] == ["27821234567,27831234567"]
    assert form["text"] == ["Hello & welcome"]
    assert form["from"] == ["ACME"]
    assert form["callback"] == ["3"]
    assert form["climsgid"] == ["abc123"]
    assert form["concat"] == ["2"]
    assert form["max_credits"] == ["2"]
    assert form["deliv_time"] == ["30"]
    assert form["validity"] == ["60"]
    assert form["req_feat"] == ["48"]
    assert form["user"] == ["acme"] and form["api_id"] == ["3000001"]
    assert form["password"] == [PASSWORD]
    assert "unicode" not in form and "mo" not in form


def test_session_auth_replaces_user_and_password() -> None:
    template = SendmsgTemplate(MessageOptions(text="hi", unicode=True))
    form = parse_qs(template.body(USER_AUTH.with_session("f" * 32), ["27821234567"]).decode())
    assert form["session_id"] == ["f" * 32]
    assert "password" not in form and "user" not in form
    assert form["unicode"] == ["1"]


def test_get_query_refuses_more_than_300_numbers() -> None:
    template = SendmsgTemplate(MessageOptions(text="hi"))
    numbers = [f"2782{i:07d}" for i in range(MAX_NUMBERS_GET + 1)]
    template.query(USER_AUTH, numbers[:MAX_NUMBERS_GET])
    with pytest.raises(ProtocolError, match="at most 300"):
        template.query(USER_AUTH, numbers)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MessageOptions(text=""), "empty"),
        (MessageOptions(text="x", callback=8), "callback"),
        (MessageOptions(text="x", concat=0), "concat"),
        (MessageOptions(text="x", mo=True), "mo=1"),
        (MessageOptions(text="x", climsgid="not valid!"), "climsgid"),
        (MessageOptions(text="x", deliv_time=10081), "deliv_time"),
    ],
)
def test_invalid_options_are_refused_before_sending(options: MessageOptions, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        SendmsgTemplate(options)


def test_auth_repr_hides_secrets() -> None:
    auth = USER_AUTH.with_session("deadbeef" * 4)
    assert PASSWORD not in repr(auth) and "deadbeef" not in repr(auth)
    assert PASSWORD not in repr(USER_AUTH)


# --- sendmsg answers ------------------------------------------------------------------------------


def test_single_recipient_id_answer() -> None:
    answer = parse_sendmsg(f"ID: {ID1}", ["27821234567"])
    assert answer.error is None
    assert answer.results[0].verdict is Verdict.ACCEPTED
    assert answer.results[0].api_msg_id == ID1


def test_single_recipient_error_is_per_recipient() -> None:
    answer = parse_sendmsg("ERR: 114, Cannot route message\n", ["27821234567"])
    assert answer.error is None
    assert answer.results[0].verdict is Verdict.REJECTED
    assert answer.results[0].code == 114
    assert answer.results[0].description == "Cannot route message"


def test_multi_answer_is_matched_by_to_not_by_position() -> None:
    body = (
        f"ID: {ID2} To: 27831234567\r\n"
        "ERR: 105, Invalid destination address To: 2782\r\n"
        f"ID: {ID1} To: 27821234567\r\n\r\n\r\n"
    )
    answer = parse_sendmsg(body, ["27821234567", "2782", "27831234567"])
    assert [r.verdict for r in answer.results] == [
        Verdict.ACCEPTED,
        Verdict.REJECTED,
        Verdict.ACCEPTED,
    ]
    assert answer.results[0].api_msg_id == ID1
    assert answer.results[2].api_msg_id == ID2
    assert answer.results[1].code == 105
    assert answer.anomalies == []


def test_surrounding_whitespace_and_lowercase_keywords_are_tolerated() -> None:
    body = f"   id:   {ID1}    to:  27821234567   \n\n  ERR:121,Blocked   To:27831234567 \n"
    answer = parse_sendmsg(body, ["27821234567", "27831234567"])
    assert answer.results[0].api_msg_id == ID1
    assert answer.results[1].code == 121


@pytest.mark.parametrize("numbers", [["27821234567"], ["27821234567", "27831234567"]])
def test_whole_request_error_without_to(numbers: list[str]) -> None:
    answer = parse_sendmsg("ERR: 001, Authentication failed\n", numbers)
    assert answer.results == []
    assert isinstance(answer.error, GatewayError)
    assert answer.error.code == 1
    assert answer.error.error_class is ErrorClass.FATAL


def test_session_expiry_is_its_own_class() -> None:
    answer = parse_sendmsg("ERR: 003, Session ID expired", ["27821234567", "27831234567"])
    assert answer.error is not None and answer.error.error_class is ErrorClass.SESSION


def test_number_missing_from_answer_is_unknown_not_accepted() -> None:
    answer = parse_sendmsg(f"ID: {ID1} To: 27821234567", ["27821234567", "27831234567"])
    assert answer.results[0].verdict is Verdict.ACCEPTED
    assert answer.results[1].verdict is Verdict.UNKNOWN
    assert any("missing" in a for a in answer.anomalies)


def test_duplicated_line_makes_that_number_unknown_and_keeps_both_ids() -> None:
    body = f"ID: {ID1} To: 27821234567\nID: {ID2} To: 27821234567\nID: {ID1} To: 27831234567"
    answer = parse_sendmsg(body, ["27821234567", "27831234567"])
    assert answer.results[0].verdict is Verdict.UNKNOWN
    assert ID1 in answer.results[0].description and ID2 in answer.results[0].description
    assert answer.results[1].verdict is Verdict.ACCEPTED


def test_number_requested_twice_gets_both_answers() -> None:
    body = f"ID: {ID1} To: 27821234567\nID: {ID2} To: 27821234567"
    answer = parse_sendmsg(body, ["27821234567", "27821234567"])
    assert {r.api_msg_id for r in answer.results} == {ID1, ID2}


def test_answer_for_unrequested_number_is_an_anomaly_not_attached() -> None:
    body = f"ID: {ID1} To: 27999999999\nID: {ID2} To: 27821234567"
    answer = parse_sendmsg(body, ["27821234567", "27831234567"])
    assert answer.results[0].api_msg_id == ID2
    assert answer.results[1].verdict is Verdict.UNKNOWN
    assert any("27999999999" in a for a in answer.anomalies)


def test_junk_lines_are_anomalies() -> None:
    body = f"ID: {ID1} To: 27821234567\nsomething odd\n"
    answer = parse_sendmsg(body, ["27821234567", "27831234567"])
    assert any("something odd" in a for a in answer.anomalies)
    assert answer.results[1].verdict is Verdict.UNKNOWN


def test_line_without_to_in_multi_answer_is_not_attached_by_position() -> None:
    answer = parse_sendmsg(f"ID: {ID1}\nID: {ID2}", ["27821234567", "27831234567"])
    assert all(r.verdict is Verdict.UNKNOWN for r in answer.results)


@pytest.mark.parametrize("body", ["", "\r\n\n  \n", "<html><body>502 Bad Gateway</body></html>"])
def test_not_a_sendmsg_answer_raises_protocol_error_quoting_it(body: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_sendmsg(body, ["27821234567"])
    if body.strip():
        assert "<html>" in str(info.value)


def test_protocol_error_truncates_long_lines() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_sendmsg("x" * 5000, ["27821234567"])
    assert len(str(info.value)) < 300


# --- other answers --------------------------------------------------------------------------------


def test_auth_ok_and_errors() -> None:
    assert parse_auth("OK: " + "a" * 32 + "\r\n") == "a" * 32
    with pytest.raises(GatewayError) as info:
        parse_auth("ERR: 001, Authentication failed")
    assert info.value.code == 1 and info.value.fatal
    with pytest.raises(ProtocolError):
        parse_auth("OK:")


def test_ping_accepts_ok_with_trailing_space() -> None:
    parse_ping("OK: \n")
    parse_ping("OK:")
    with pytest.raises(GatewayError):
        parse_ping("ERR: 003, Session ID expired")
    with pytest.raises(ProtocolError):
        parse_ping("KO")


def test_querymsg_getmsgcharge_getbalance() -> None:
    assert parse_querymsg(f"ID: {ID1} Status: 004") == (ID1, "004")
    assert parse_getmsgcharge(f"ID: {ID1} Charge: 1.5 Status: 003") == (ID1, 1.5, "003")
    assert parse_getmsgcharge(f"apiMsgId: {ID1} charge: 0.8 status: 004") == (ID1, 0.8, "004")
    assert parse_getbalance("Credit: 1234.500\n") == 1234.5
    with pytest.raises(GatewayError) as info:
        parse_querymsg("ERR: 103, Unknown API message ID")
    assert info.value.error_class is ErrorClass.QUERY
    for bad in (parse_querymsg, parse_getbalance, parse_getmsgcharge):
        with pytest.raises(ProtocolError):
            bad("Credit: lots")


def test_multi_line_answer_to_single_line_command_is_refused() -> None:
    with pytest.raises(ProtocolError, match="2 lines"):
        parse_getbalance("Credit: 1\nCredit: 2")


# --- error classes --------------------------------------------------------------------------------


def test_every_spec_code_is_classified() -> None:
    fatal = {1, 2, 4, 7, 108, 130, 301}
    recipient = {105, 114, 115, 121, 122, 128}
    request = {5, 101, 102, 106, 107, 113, 116, 120, 123}
    query = {103, 104, 109, 201, 202}
    assert {c for c, (_, k) in ERROR_CODES.items() if k is ErrorClass.FATAL} == fatal
    assert {c for c, (_, k) in ERROR_CODES.items() if k is ErrorClass.RECIPIENT} == recipient
    assert {c for c, (_, k) in ERROR_CODES.items() if k is ErrorClass.REQUEST} == request
    assert {c for c, (_, k) in ERROR_CODES.items() if k is ErrorClass.QUERY} == query
    assert classify(3) is ErrorClass.SESSION
    assert classify(901) is ErrorClass.TRANSIENT


def test_unknown_code_is_fatal_for_a_request_and_recipient_on_a_to_line() -> None:
    assert classify(555) is ErrorClass.FATAL
    assert classify(555, per_recipient=True) is ErrorClass.RECIPIENT
    answer = parse_sendmsg("ERR: 555, Something new To: 27821234567", ["27821234567"])
    assert answer.results[0].verdict is Verdict.REJECTED


def test_gateway_error_message_never_carries_a_password() -> None:
    register_secret(PASSWORD)
    err = GatewayError(1, f"bad password=hunter3 for {PASSWORD}", ErrorClass.FATAL)
    assert "hunter3" not in str(err) and PASSWORD not in str(err)
    assert "hunter3" not in str(ProtocolError("odd", f"password={PASSWORD}&x"))


# --- properties -----------------------------------------------------------------------------------

msisdns = st.lists(
    st.text(alphabet="0123456789", min_size=8, max_size=15), min_size=1, max_size=50, unique=True
)
api_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@given(
    numbers=msisdns,
    data=st.data(),
    crlf=st.booleans(),
)
def test_render_then_parse_recovers_every_outcome_in_any_order(
    numbers: list[str], data: st.DataObject, crlf: bool
) -> None:
    outcomes = {
        n: data.draw(st.one_of(api_ids, st.sampled_from([105, 114, 121, 122, 128])))
        for n in numbers
    }
    lines = [
        f"ID: {o} To: {n}" if isinstance(o, str) else f"ERR: {o:03d}, reason To: {n}"
        for n, o in outcomes.items()
    ]
    lines = data.draw(st.permutations(lines))
    body = ("\r\n" if crlf else "\n").join(lines) + "\n\n"
    answer = parse_sendmsg(body, numbers)
    assert answer.error is None and answer.anomalies == []
    for number, result in zip(numbers, answer.results, strict=True):
        expected = outcomes[number]
        if isinstance(expected, str):
            assert result.verdict is Verdict.ACCEPTED and result.api_msg_id == expected
        else:
            assert result.verdict is Verdict.REJECTED and result.code == expected


@given(body=st.text(max_size=400), numbers=msisdns)
def test_parser_raises_nothing_but_protocol_error_and_accounts_every_number(
    body: str, numbers: list[str]
) -> None:
    try:
        answer = parse_sendmsg(body, numbers)
    except ProtocolError:
        return
    assert answer.error is not None or len(answer.results) == len(numbers)
