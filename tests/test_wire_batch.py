"""The batch interface's wire protocol without a network: forms, answers, the session state."""

from __future__ import annotations

import re
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.errors import ErrorClass, GatewayError, ProtocolError
from bulksend.gsm import Encoding, decode_ucs2_hex, encode_ucs2_hex
from bulksend.wire import Answer, Batch, RequestError, Step, Verdict
from bulksend.wire.batch import (
    ENDBATCH_PATH,
    SENDITEM_PATH,
    STARTBATCH_PATH,
    BatchInterfaceWire,
    parse_batch_id,
    placeholders,
    positional_template,
    render_template,
)
from bulksend.wire.legacy import Auth, MessageOptions

PASSWORD = "batch-secret-password"
AUTH = Auth(api_id="3000001", user="acme", password=PASSWORD)
TEMPLATE = "Hi #name#, your code is #code#"
FIELDS = ("name", "code", "unused")
GSM_ID = "a" * 32
UCS_ID = "b" * 32
MSG_ID = "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01"
NUMBER = "27821234567"
GATEWAY_FIELD = re.compile(r"#(field[1-9][0-9]*)#")


def wire(**kwargs: object) -> BatchInterfaceWire:
    return BatchInterfaceWire(TEMPLATE, FIELDS, AUTH, **kwargs)  # type: ignore[arg-type]


def row(name: str = "Ann", code: str = "42", number: str = NUMBER) -> Batch:
    values = (name, code, "x")
    text = render_template(TEMPLATE, dict(zip(FIELDS, values, strict=True)))
    return Batch([2], [number], [text], [values])


def form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("ascii"), keep_blank_values=True)


def start(protocol: BatchInterfaceWire, batch: Batch, batch_id: str) -> Step:
    step = protocol.prepare(batch)
    assert step is not None and step.name == "startbatch"
    protocol.prepared(step, 200, {}, f"ID: {batch_id}".encode())
    return step


def gateway_render(template: str, params: dict[str, str]) -> str:
    """What a gateway that fills only the documented ``#fieldN#`` makes of ``template``: one
    left-to-right pass, any other ``#name#`` left as written."""
    return GATEWAY_FIELD.sub(lambda m: params[m.group(1)], template)


def parse(protocol: BatchInterfaceWire, body: bytes, status: int = 200) -> Answer:
    return protocol.parse(status, {}, body, row())


# --- templates ------------------------------------------------------------------------------------


def test_placeholders_are_letters_digits_underscores_between_hashes() -> None:
    assert placeholders("#a# #b_2# #a# ## #no-dash# #é#") == ["a", "b_2"]
    assert render_template("##name##, #x", {"name": "#x#"}) == "##x##, #x"


def test_construction_refuses_what_the_gateway_would_refuse_for_every_item() -> None:
    with pytest.raises(ProtocolError, match="code"):
        BatchInterfaceWire(TEMPLATE, ("name",), AUTH)
    with pytest.raises(ProtocolError, match="empty"):
        BatchInterfaceWire("", (), AUTH)
    with pytest.raises(ProtocolError, match="climsgid"):
        BatchInterfaceWire(TEMPLATE, FIELDS, AUTH, options=MessageOptions("", climsgid="x1"))
    with pytest.raises(ProtocolError, match="unicode"):
        BatchInterfaceWire(TEMPLATE, FIELDS, AUTH, unicode="maybe")


def test_placeholders_become_positional_fields_in_order_of_first_appearance() -> None:
    assert positional_template("#b# and #a#, again #b#; ## #x y# #") == (
        "#field1# and #field2#, again #field1#; ## #x y# #",
        ("b", "a"),
    )
    # Literal #s around placeholders stay where they were: the gateway's scan sees the same.
    assert positional_template("##a##b#c#") == ("##field1##field2#c#", ("a", "b"))


def test_a_column_named_like_a_position_is_just_a_name() -> None:
    protocol = BatchInterfaceWire(
        "#field2# owes #amount#, #field1#", ("field1", "amount", "field2"), AUTH
    )
    assert protocol.wire_template == "#field1# owes #field2#, #field3#"
    values = ("Ann", "R50", "Mr")
    text = render_template(protocol.template, dict(zip(protocol.fields, values, strict=True)))
    batch = Batch([2], [NUMBER], [text], [values])
    step = start(protocol, batch, GSM_ID)
    started = form(step.request.body)
    sent = form(protocol.build(batch).body)
    assert (sent["field1"], sent["field2"], sent["field3"]) == (["Mr"], ["R50"], ["Ann"])
    params = {k: v[0] for k, v in sent.items()}
    assert gateway_render(started["template"][0], params) == "Mr owes R50, Ann" == text


def test_names_that_are_request_parameters_or_differ_in_case_are_fine_on_the_wire() -> None:
    protocol = BatchInterfaceWire("#to# #Name# #name#", ("to", "Name", "name"), AUTH)
    start(protocol, row(), GSM_ID)
    values = ("x", "Y", "z")
    sent = form(protocol.build(Batch([2], [NUMBER], ["x Y z"], [values])).body)
    assert sent["to"] == [NUMBER]
    assert (sent["field1"], sent["field2"], sent["field3"]) == (["x"], ["Y"], ["z"])


# --- startbatch -----------------------------------------------------------------------------------


def test_startbatch_carries_the_template_and_the_campaign_options_once() -> None:
    protocol = wire(
        options=MessageOptions(
            "ignored",
            sender="ACME",
            callback=7,
            msg_type="SMS_FLASH",
            validity=60,
            deliv_time=5,
            max_credits=3,
        ),
        max_parts=3,
    )
    step = protocol.prepare(row())
    assert step is not None
    assert (step.request.method, step.request.path) == ("POST", STARTBATCH_PATH)
    sent = form(step.request.body)
    assert sent["template"] == ["Hi #field1#, your code is #field2#"]
    assert "text" not in sent and "unicode" not in sent
    assert sent["from"] == ["ACME"]
    assert sent["callback"] == ["7"]
    assert sent["msg_type"] == ["SMS_FLASH"]
    assert sent["validity"] == ["60"]
    assert sent["deliv_time"] == ["5"]
    assert sent["max_credits"] == ["3"]
    assert sent["concat"] == ["3"]
    assert sent["password"] == [PASSWORD]
    assert PASSWORD not in repr(step.request) and PASSWORD not in repr(protocol)


def test_a_ucs2_row_starts_a_unicode_batch_with_the_template_as_utf16_hex() -> None:
    protocol = wire()
    step = protocol.prepare(row(name="王芳"))
    assert step is not None
    sent = form(step.request.body)
    assert sent["unicode"] == ["1"]
    assert decode_ucs2_hex(sent["template"][0]) == "Hi #field1#, your code is #field2#"


@pytest.mark.parametrize(
    "body",
    [
        b"ID: " + GSM_ID.encode(),
        b"id:" + GSM_ID.encode() + b"\r\n\r\n",
        b"  ID:   " + GSM_ID.encode(),
    ],
)
def test_the_batch_id_answer_is_read_leniently(body: bytes) -> None:
    assert parse_batch_id(200, body) == GSM_ID


@pytest.mark.parametrize(
    ("body", "code", "error_class"),
    [
        (b"ERR: 001, Authentication failed", 1, ErrorClass.FATAL),
        (b"ERR: 202, No batch template", 202, ErrorClass.REQUEST),
        (b"ERR: 116, Invalid Unicode data", 116, ErrorClass.REQUEST),
        (b"ERR: 901, Internal error", 901, ErrorClass.TRANSIENT),
    ],
)
def test_a_refused_startbatch_is_a_gateway_error_with_its_class(
    body: bytes, code: int, error_class: ErrorClass
) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_batch_id(200, body)
    assert (caught.value.code, caught.value.error_class) == (code, error_class)


@pytest.mark.parametrize(
    "body", [b"", b"<html>oops</html>", b"OK", b"ID: x To: 2782", b"ID: a\nID: b"]
)
def test_an_unreadable_startbatch_answer_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_batch_id(200, body)


def test_a_startbatch_http_error_is_a_gateway_error() -> None:
    with pytest.raises(GatewayError) as caught:
        parse_batch_id(503, b"")
    assert caught.value.error_class is ErrorClass.TRANSIENT
    with pytest.raises(GatewayError) as caught:
        parse_batch_id(500, b"")
    assert caught.value.error_class is ErrorClass.FATAL


# --- the state machine ----------------------------------------------------------------------------


def test_with_a_session_the_steps_are_auth_then_startbatch_then_nothing() -> None:
    protocol = wire(use_session=True)
    assert protocol.prepare(None) is not None
    step = protocol.prepare(row())
    assert step is not None and step.name == "auth"
    protocol.prepared(step, 200, {}, b"OK: " + b"5" * 32)
    assert protocol.prepare(None) is None
    step = start(protocol, row(), GSM_ID)
    assert form(step.request.body)["session_id"] == ["5" * 32]
    assert protocol.prepare(row()) is None
    assert protocol.batch_ids == {Encoding.GSM7: GSM_ID}


def test_prepare_asks_the_same_step_until_it_is_answered() -> None:
    protocol = wire()
    assert protocol.prepare(row()) is protocol.prepare(row(name="Bob"))


def test_each_encoding_gets_its_own_batch_started_lazily() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    assert protocol.prepare(row(name="Müller")) is None  # ü is GSM-7
    start(protocol, row(name="Σωκράτης"), UCS_ID)  # lower-case Greek is not
    assert protocol.batch_ids == {Encoding.GSM7: GSM_ID, Encoding.UCS2: UCS_ID}
    assert form(protocol.build(row()).body)["batch_id"] == [GSM_ID]
    assert form(protocol.build(row(name="Σωκράτης")).body)["batch_id"] == [UCS_ID]


def test_unicode_on_sends_every_row_through_the_ucs2_batch() -> None:
    protocol = wire(unicode="on")
    step = protocol.prepare(row())
    assert step is not None and form(step.request.body)["unicode"] == ["1"]


def test_unicode_off_refuses_a_row_that_is_not_gsm7() -> None:
    protocol = wire(unicode="off")
    with pytest.raises(ProtocolError, match="GSM"):
        protocol.prepare(row(name="王芳"))


def test_an_expired_batch_id_drops_both_batches_and_keeps_the_session() -> None:
    protocol = wire(use_session=True)
    auth = protocol.prepare(None)
    assert auth is not None
    protocol.prepared(auth, 200, {}, b"OK: " + b"5" * 32)
    start(protocol, row(), GSM_ID)
    start(protocol, row(name="王芳"), UCS_ID)
    answer = parse(protocol, b"ERR: 201, Invalid batch ID")
    assert answer.error is not None
    protocol.invalidate(answer.error)
    assert protocol.batch_ids == {}
    assert protocol.session.auth.session_id == "5" * 32
    step = protocol.prepare(row())
    assert step is not None and step.name == "startbatch"


def test_an_expired_session_drops_the_session_and_both_batches() -> None:
    protocol = wire(use_session=True)
    auth = protocol.prepare(None)
    assert auth is not None
    protocol.prepared(auth, 200, {}, b"OK: " + b"5" * 32)
    start(protocol, row(), GSM_ID)
    start(protocol, row(name="王芳"), UCS_ID)
    answer = parse(protocol, b"ERR: 003, Session ID expired")
    assert answer.error is not None and answer.error.error_class is ErrorClass.SESSION
    protocol.invalidate(answer.error)
    assert protocol.batch_ids == {}
    step = protocol.prepare(row())
    assert step is not None and step.name == "auth"
    protocol.prepared(step, 200, {}, b"OK: " + b"6" * 32)
    step = start(protocol, row(), "c" * 32)
    assert form(step.request.body)["session_id"] == ["6" * 32]


def test_a_session_expiring_at_startbatch_logs_in_again_instead_of_failing() -> None:
    protocol = wire(use_session=True)
    auth = protocol.prepare(None)
    assert auth is not None
    protocol.prepared(auth, 200, {}, b"OK: " + b"5" * 32)
    step = protocol.prepare(row())
    assert step is not None
    protocol.prepared(step, 200, {}, b"ERR: 003, Session ID expired")
    again = protocol.prepare(row())
    assert again is not None and again.name == "auth"


def test_a_senditem_built_after_its_batch_was_dropped_carries_the_stale_id() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    protocol.invalidate(RequestError(201, "Invalid batch ID", ErrorClass.SESSION, 200))
    assert form(protocol.build(row()).body)["batch_id"] == [GSM_ID]  # so the gateway says 201


def test_build_before_any_startbatch_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="prepare"):
        wire().build(row())


def test_finish_ends_every_live_batch_once() -> None:
    protocol = wire()
    assert protocol.finish() == []
    start(protocol, row(), GSM_ID)
    start(protocol, row(name="王芳"), UCS_ID)
    requests = protocol.finish()
    assert [r.path for r in requests] == [ENDBATCH_PATH] * 2
    assert sorted(form(r.body)["batch_id"][0] for r in requests) == [GSM_ID, UCS_ID]
    assert protocol.finish() == []


# --- senditem -------------------------------------------------------------------------------------


def test_senditem_carries_one_number_and_the_used_fields_url_encoded() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    request = protocol.build(row(name="A&B = 100%", code="+1 2"))
    assert (request.method, request.path) == ("POST", SENDITEM_PATH)
    sent = form(request.body)
    assert sent["to"] == [NUMBER]
    assert sent["batch_id"] == [GSM_ID]
    assert sent["field1"] == ["A&B = 100%"]
    assert sent["field2"] == ["+1 2"]
    assert not {"name", "code", "unused", "field3"} & sent.keys()


def test_senditem_into_the_ucs2_batch_carries_hex_values() -> None:
    protocol = wire()
    start(protocol, row(name="王芳"), UCS_ID)
    sent = form(protocol.build(row(name="王芳", code="7")).body)
    assert sent["field1"] == [encode_ucs2_hex("王芳")]
    assert sent["field2"] == ["0037"]


def test_build_refuses_more_than_one_number() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    with pytest.raises(ProtocolError):
        protocol.build(Batch([1, 2], ["27821", "27822"], ["a", "b"], [("a", "b", "c")] * 2))


@pytest.mark.parametrize(
    "body",
    [
        f"ID: {MSG_ID}".encode(),
        f"ID: {MSG_ID}\r\n\r\n".encode(),
        f"id:{MSG_ID}  To: {NUMBER}\n".encode(),
        f"ID: {MSG_ID} To: +{NUMBER}".encode(),
    ],
)
def test_an_id_answer_accepts_the_message(body: bytes) -> None:
    answer = parse(wire(), body)
    assert answer.error is None and answer.unknown_reason == ""
    assert answer.outcomes[0].verdict is Verdict.ACCEPTED
    assert answer.outcomes[0].api_msg_id == MSG_ID


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\r\n\r\n",
        b"<html><body>502 Bad Gateway</body></html>",
        b"OK",
        f"ID: {MSG_ID} To: 27830000000".encode(),
        f"ID: {MSG_ID}\nID: {MSG_ID}".encode(),
        b"ERR: 114, Cannot route message To: 27830000000",
        b"ERR: banana",
    ],
)
def test_anything_else_leaves_the_recipient_unknown(body: bytes) -> None:
    answer = parse(wire(), body)
    assert answer.error is None
    assert answer.unknown_reason
    assert answer.outcomes[0].verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("code", [3, 201, 202])
def test_stale_session_state_is_a_session_refusal(code: int) -> None:
    answer = parse(wire(), f"ERR: {code:03d}, whatever".encode())
    assert answer.error is not None
    assert (answer.error.code, answer.error.error_class) == (code, ErrorClass.SESSION)
    assert answer.outcomes[0].verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("code", [105, 114, 121, 122, 128])
def test_a_recipient_code_rejects_the_one_recipient(code: int) -> None:
    answer = parse(wire(), f"ERR: {code}, refused".encode())
    assert answer.error is None
    outcome = answer.outcomes[0]
    assert (outcome.verdict, outcome.code, outcome.error_class) == (
        Verdict.REJECTED,
        code,
        ErrorClass.RECIPIENT,
    )
    answer = parse(wire(), f"ERR: {code}, refused To: {NUMBER}".encode())
    assert answer.outcomes[0].verdict is Verdict.REJECTED


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (901, ErrorClass.TRANSIENT),
        (1, ErrorClass.FATAL),
        (301, ErrorClass.FATAL),
        (101, ErrorClass.REQUEST),
        (113, ErrorClass.REQUEST),
        (999, ErrorClass.FATAL),
    ],
)
def test_other_codes_refuse_the_request_with_their_class(
    code: int, error_class: ErrorClass
) -> None:
    answer = parse(wire(), f"ERR: {code:03d}, no".encode())
    assert answer.error is not None
    assert (answer.error.code, answer.error.error_class) == (code, error_class)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(429, ErrorClass.TRANSIENT), (503, ErrorClass.TRANSIENT), (404, ErrorClass.REQUEST)],
)
def test_http_statuses_are_read_as_on_sendmsg(status: int, error_class: ErrorClass) -> None:
    answer = wire().parse(status, {"Retry-After": "2"}, b"", row())
    assert answer.error is not None and answer.error.error_class is error_class


def test_an_unexpected_http_status_leaves_the_recipient_unknown() -> None:
    answer = wire().parse(500, {}, f"ID: {MSG_ID}".encode(), row())
    assert answer.unknown_reason and answer.outcomes[0].verdict is Verdict.UNKNOWN


# --- round trip -----------------------------------------------------------------------------------

_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)


@given(name=_values, code=_values)
def test_a_built_senditem_renders_back_to_the_rows_content(name: str, code: str) -> None:
    """What the gateway renders from the form (decoding hex in a unicode batch) is the row's
    content, whatever the values hold (``#``, ``&``, ``=``, emoji, newlines)."""
    protocol = wire()
    batch = row(name=name, code=code)
    encoding = protocol.encoding(batch)
    step = protocol.prepare(batch)
    assert step is not None
    started = form(step.request.body)
    protocol.prepared(step, 200, {}, f"ID: {GSM_ID}".encode())
    sent = form(protocol.build(batch).body)
    hexed = encoding is Encoding.UCS2
    template = decode_ucs2_hex(started["template"][0]) if hexed else started["template"][0]
    values = {
        field: decode_ucs2_hex(sent[field][0]) if hexed else sent[field][0]
        for field in ("field1", "field2")
    }
    assert gateway_render(template, values) == batch.contents[0]  # type: ignore[index]


def test_finish_also_ends_the_batches_a_session_expiry_dropped() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    protocol.invalidate(RequestError(3, "Session ID expired", ErrorClass.SESSION, 200))
    start(protocol, row(), UCS_ID.replace("b", "c"))
    ended = [form(r.body)["batch_id"][0] for r in protocol.finish()]
    assert ended == [GSM_ID, "c" * 32]


def test_a_201_drops_only_the_batch_its_request_used_as_it_is_parsed() -> None:
    protocol = wire()
    start(protocol, row(), GSM_ID)
    start(protocol, row(name="王芳"), UCS_ID)
    stale = row()
    protocol.build(stale)
    answer = protocol.parse(200, {}, b"ERR: 201, Invalid batch ID", stale)
    assert protocol.batch_ids == {Encoding.UCS2: UCS_ID}  # dropped at once, the other kept
    assert answer.error is not None and GSM_ID in answer.error.description
    start(protocol, row(), "c" * 32)
    protocol.invalidate(answer.error)  # late: the batch started since is kept
    assert protocol.batch_ids == {Encoding.GSM7: "c" * 32, Encoding.UCS2: UCS_ID}


def test_a_003_drops_the_session_at_once_unless_a_new_one_came_since() -> None:
    protocol = wire(use_session=True)
    auth = protocol.prepare(None)
    assert auth is not None
    protocol.prepared(auth, 200, {}, b"OK: " + b"5" * 32)
    start(protocol, row(), GSM_ID)
    first, second = row(), row(name="Bob")
    protocol.build(first)
    protocol.build(second)
    protocol.parse(200, {}, b"ERR: 003, Session ID expired", first)
    assert protocol.session.auth.session_id == "" and protocol.batch_ids == {}
    auth = protocol.prepare(None)
    assert auth is not None
    protocol.prepared(auth, 200, {}, b"OK: " + b"6" * 32)
    protocol.parse(200, {}, b"ERR: 003, Session ID expired", second)
    assert protocol.session.auth.session_id == "6" * 32
