"""The One API wire protocol: requests built exactly, answers matched by ``to``, anomalies unknown.

Pure tests, no network. The gateway side is played here by :func:`answer_for`, which reads the
request body the way a gateway would (JSON, not our builder's internals) and answers it with
planned outcomes, in a shuffled order; hypothesis checks the round trip and that every anomaly
leaves the affected recipients unknown, never accepted.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.errors import ConfigError, ErrorClass, GatewayError, ProtocolError, redact
from bulksend.wire import BatchItem, Outcome, Verdict, WireProtocol
from bulksend.wire.one import (
    ERROR_CODES,
    MAX_BATCH,
    ApiKey,
    OneApi,
    OneOptions,
    classify,
    parse_balance,
    parse_callback,
    parse_status,
)

KEY = "k3y-Secret_Abc123=="
NO_HEADERS: dict[str, str] = {}


def one(options: OneOptions | None = None) -> OneApi:
    return OneApi(ApiKey(KEY), options)


def batch_of(*numbers: str, content: str = "hello") -> list[BatchItem]:
    return [BatchItem(row, number, f"{content} {row}") for row, number in enumerate(numbers, 2)]


# -- the gateway, played by the test -------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What the test gateway answers for one message: an id, or an error code."""

    api_msg_id: str = ""
    code: int = 0

    def entry(self, to: str) -> dict[str, Any]:
        if self.api_msg_id:
            return {"apiMessageId": self.api_msg_id, "accepted": True, "to": to, "error": None}
        return {
            "apiMessageId": "",
            "accepted": False,
            "to": to,
            "error": {"code": self.code, "description": f"error {self.code}"},
        }

    def expected(self) -> Outcome:
        if self.api_msg_id:
            return Outcome(Verdict.ACCEPTED, self.api_msg_id)
        return Outcome(
            Verdict.REJECTED,
            "",
            self.code,
            f"error {self.code}",
            classify(self.code, per_recipient=True),
        )


def stable_shuffle(entries: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Entries in a random order, except that each number's entries keep their relative order
    (what the gateway promises and the parser relies on for repeated numbers)."""
    order = list(range(len(entries)))
    rng.shuffle(order)
    slots: dict[str, list[int]] = {}
    for slot, index in enumerate(order):
        slots.setdefault(entries[index]["to"], []).append(slot)
    out: list[dict[str, Any]] = [{}] * len(entries)
    for to, positions in slots.items():
        own = [e for e in entries if e["to"] == to]
        for slot, entry in zip(sorted(positions), own, strict=True):
            out[slot] = entry
    return out


def answer_for(body: bytes, plans: list[Plan], rng: random.Random) -> list[dict[str, Any]]:
    """The ``messages`` entries a gateway would answer to ``body``, shuffled."""
    messages = json.loads(body)["messages"]
    assert len(messages) == len(plans)
    entries = [plan.entry(message["to"]) for message, plan in zip(messages, plans, strict=True)]
    return stable_shuffle(entries, rng)


def encode(entries: list[dict[str, Any]], error: Any = None) -> bytes:
    return json.dumps({"messages": entries, "error": error}).encode()


# -- strategies ------------------------------------------------------------------------------------

NUMBER_POOL = [f"2782{n:07d}" for n in range(12)]
contents = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
plans = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).map(lambda i: Plan(i)),
    st.sampled_from(sorted(ERROR_CODES)).map(lambda c: Plan(code=c)),
)


@st.composite
def batches(draw: st.DrawFn, max_size: int = MAX_BATCH) -> tuple[list[BatchItem], list[Plan]]:
    size = draw(st.integers(1, max_size))
    pool = draw(st.sampled_from([NUMBER_POOL[:2], NUMBER_POOL[:6], NUMBER_POOL]))
    numbers = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    texts = draw(st.lists(contents, min_size=size, max_size=size))
    batch = [BatchItem(row, n, t) for row, (n, t) in enumerate(zip(numbers, texts, strict=True), 1)]
    planned = draw(st.lists(plans, min_size=size, max_size=size))
    return batch, planned


# -- round trips -----------------------------------------------------------------------------------


def test_one_api_is_a_wire_protocol() -> None:
    protocol: WireProtocol = one()
    assert protocol.max_batch == MAX_BATCH == 200


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.randoms(use_true_random=False))
def test_build_then_answer_then_parse_gives_each_item_its_planned_outcome(
    drawn: tuple[list[BatchItem], list[Plan]], rng: random.Random
) -> None:
    batch, planned = drawn
    protocol = one(OneOptions(client_message_id_prefix="c"))
    request = protocol.build(batch)
    sent = json.loads(request.body)["messages"]
    assert [(m["to"], m["content"], m["clientMessageId"]) for m in sent] == [
        (item.msisdn, item.content, f"c{item.row}") for item in batch
    ]
    assert all(m["channel"] == "sms" for m in sent)
    body = encode(answer_for(request.body, planned, rng))
    answer = protocol.parse(202, NO_HEADERS, body, batch)
    assert answer.error is None
    assert answer.anomalies == ()
    assert list(answer.outcomes) == [plan.expected() for plan in planned]


@given(batches(max_size=30), st.randoms(use_true_random=False))
def test_reversed_answer_order_matches_by_to_not_position(
    drawn: tuple[list[BatchItem], list[Plan]], rng: random.Random
) -> None:
    batch, planned = drawn
    # Distinct numbers: any order at all is then unambiguous.
    batch = [item._replace(msisdn=f"2783{i:07d}") for i, item in enumerate(batch)]
    protocol = one()
    entries = answer_for(protocol.build(batch).body, planned, rng)
    entries.reverse()
    answer = protocol.parse(202, NO_HEADERS, encode(entries), batch)
    assert list(answer.outcomes) == [plan.expected() for plan in planned]


def test_repeated_number_kth_entry_belongs_to_kth_occurrence() -> None:
    batch = batch_of("27820000001", "27820000002", "27820000001", "27820000001")
    entries = [
        Plan(code=24).entry("27820000001"),
        Plan("b" * 32).entry("27820000002"),
        Plan("c" * 32).entry("27820000001"),
        Plan("a" * 32).entry("27820000001"),
    ]
    answer = one().parse(202, NO_HEADERS, encode(entries), batch)
    assert [o.verdict for o in answer.outcomes] == [
        Verdict.REJECTED,
        Verdict.ACCEPTED,
        Verdict.ACCEPTED,
        Verdict.ACCEPTED,
    ]
    assert [o.api_msg_id for o in answer.outcomes] == ["", "b" * 32, "c" * 32, "a" * 32]
    assert answer.outcomes[0].error_class is ErrorClass.REQUEST


def test_to_with_a_plus_matches_the_plain_number() -> None:
    batch = batch_of("27820000001")
    answer = one().parse(202, NO_HEADERS, encode([Plan("d" * 32).entry("+27820000001")]), batch)
    assert answer.outcomes[0] == Outcome(Verdict.ACCEPTED, "d" * 32)


# -- anomalies -------------------------------------------------------------------------------------

MUTATIONS = ["drop", "duplicate", "foreign_to", "no_to", "accepted_not_bool", "accepted_no_id"]


def mutate(
    entries: list[dict[str, Any]], how: str, index: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Spoil one entry; return the entries and the number whose occurrences become unknown
    (None: only that entry's own occurrence, found by the caller)."""
    entries = [dict(e) for e in entries]
    target = entries[index]
    number = target["to"]
    if how == "drop":
        del entries[index]
    elif how == "duplicate":
        entries.insert(index, dict(target))
    elif how == "foreign_to":
        target["to"] = "999" + number
    elif how == "no_to":
        del target["to"]
    elif how == "accepted_not_bool":
        target["accepted"] = "true"
        return entries, None
    elif how == "accepted_no_id":
        target["accepted"] = True
        target["apiMessageId"] = ""
        target["error"] = None
        return entries, None
    return entries, number


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches(max_size=40),
    st.randoms(use_true_random=False),
    st.sampled_from(MUTATIONS),
    st.data(),
)
def test_every_anomaly_leaves_the_affected_recipients_unknown_and_no_one_wrongly_accepted(
    drawn: tuple[list[BatchItem], list[Plan]], rng: random.Random, how: str, data: st.DataObject
) -> None:
    batch, planned = drawn
    protocol = one()
    entries = answer_for(protocol.build(batch).body, planned, rng)
    index = data.draw(st.integers(0, len(entries) - 1))
    spoiled_number = entries[index]["to"]
    entries, whole_number = mutate(entries, how, index)
    answer = protocol.parse(202, NO_HEADERS, encode(entries), batch)
    assert len(answer.outcomes) == len(batch)
    assert answer.anomalies
    expected = [plan.expected() for plan in planned]
    for item, outcome, want in zip(batch, answer.outcomes, expected, strict=True):
        # Never a verdict the gateway did not give this very message.
        assert outcome == want or outcome.verdict is Verdict.UNKNOWN
        if whole_number is not None and item.msisdn == whole_number:
            assert outcome.verdict is Verdict.UNKNOWN
    if whole_number is None:
        # The spoiled entry's own occurrence is unknown (and only entries of that number moved).
        unknown = [i for i, o in enumerate(answer.outcomes) if o.verdict is Verdict.UNKNOWN]
        assert len(unknown) == 1
        assert batch[unknown[0]].msisdn == spoiled_number


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b"[]",
        b'{"error": null}',
        b'{"messages": {"to": "1"}, "error": null}',
        b'{"messages": [], "error": "boom"}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
    ids=[
        "empty",
        "html",
        "array",
        "no_messages",
        "messages_not_list",
        "error_not_object",
        "not_utf8",
        "deep",
    ],
)
def test_an_answer_that_is_not_a_send_answer_makes_everyone_unknown(body: bytes) -> None:
    batch = batch_of("27820000001", "27820000002")
    answer = one().parse(202, NO_HEADERS, body, batch)
    assert answer.error is None
    assert all(o.verdict is Verdict.UNKNOWN and o.error_class is None for o in answer.outcomes)
    assert answer.anomalies


def test_request_level_error_with_entries_is_contradictory_unknown_and_fatal() -> None:
    batch = batch_of("27820000001", "27820000002")
    entries = [Plan("e" * 32).entry("27820000001"), Plan("f" * 32).entry("27820000002")]
    body = encode(entries, error={"code": 19, "description": "Internal error - please retry"})
    answer = one().parse(202, NO_HEADERS, body, batch)
    assert answer.error is not None
    assert answer.error.error_class is ErrorClass.FATAL  # never TRANSIENT: some may be sent
    assert all(o.verdict is Verdict.UNKNOWN for o in answer.outcomes)


def test_an_accepted_entry_that_also_carries_an_error_is_unknown() -> None:
    batch = batch_of("27820000001")
    entry = Plan("a" * 32).entry("27820000001")
    entry["error"] = {"code": 25, "description": "Invalid recipient address"}
    answer = one().parse(202, NO_HEADERS, encode([entry]), batch)
    assert answer.outcomes[0].verdict is Verdict.UNKNOWN


# -- the statuses of the reference: 202, 207, 400 ------------------------------------------------


def test_a_400_with_entries_and_a_null_error_refuses_each_recipient_with_its_own_code() -> None:
    """The reference's "none accepted": each recipient certainly not sent, rejected with its
    code; a recipient code's class lets the campaign go on."""
    batch = batch_of("27820000001", "27820000002", "27820000001")
    entries = [
        Plan(code=26).entry("27820000001"),
        Plan(code=25).entry("27820000002"),
        Plan(code=27).entry("+27820000001"),
    ]
    answer = one().parse(400, NO_HEADERS, encode(entries), batch)
    assert answer.error is None and not answer.anomalies
    assert [(o.verdict, o.code, o.error_class) for o in answer.outcomes] == [
        (Verdict.REJECTED, 26, ErrorClass.RECIPIENT),
        (Verdict.REJECTED, 25, ErrorClass.RECIPIENT),
        (Verdict.REJECTED, 27, ErrorClass.RECIPIENT),
    ]
    # Without the "error" member at all it reads the same.
    bare = json.dumps({"messages": entries}).encode()
    assert one().parse(400, NO_HEADERS, bare, batch).outcomes == answer.outcomes


def test_a_400_that_names_an_accepted_entry_leaves_it_unknown_and_misses_stay_unknown() -> None:
    batch = batch_of("27820000001", "27820000002", "27820000003")
    entries = [Plan("a" * 32).entry("27820000001"), Plan(code=26).entry("27820000002")]
    answer = one().parse(400, NO_HEADERS, encode(entries), batch)
    first, second, third = answer.outcomes
    assert first.verdict is Verdict.UNKNOWN and "a" * 32 in first.description
    assert (second.verdict, second.code) == (Verdict.REJECTED, 26)
    assert third.verdict is Verdict.UNKNOWN  # missing from the answer
    assert len(answer.anomalies) == 2


@pytest.mark.parametrize("status", [202, 207])
def test_202_and_207_are_read_entry_by_entry(status: int) -> None:
    batch = batch_of("27820000001", "27820000002")
    entries = [Plan("b" * 32).entry("27820000002"), Plan(code=26).entry("27820000001")]
    answer = one().parse(status, NO_HEADERS, encode(entries), batch)
    assert answer.error is None
    assert [(o.verdict, o.api_msg_id, o.code) for o in answer.outcomes] == [
        (Verdict.REJECTED, "", 26),
        (Verdict.ACCEPTED, "b" * 32, 0),
    ]


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>Bad Request</html>", b'{"messages": []}', b'{"messages": null, "error": null}'],
)
def test_a_400_without_entries_or_error_is_still_ambiguous(body: bytes) -> None:
    answer = one().parse(400, NO_HEADERS, body, batch_of("27820000001"))
    assert answer.error is None and answer.anomalies
    assert answer.outcomes[0].verdict is Verdict.UNKNOWN


# -- request-level errors and classes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(c, ErrorClass.FATAL) for c in (1, 2, 3, 7, 20, 44, 45, 46)]
    + [(19, ErrorClass.TRANSIENT), (43, ErrorClass.TRANSIENT)]
    + [(c, ErrorClass.REQUEST) for c in (21, 22, 23, 24, 40, 100)]
    + [(c, ErrorClass.RECIPIENT) for c in (25, 26, 27, 28, 101)],
)
def test_error_codes_have_the_classes_of_the_shared_notes(
    code: int, error_class: ErrorClass
) -> None:
    assert classify(code) is error_class
    assert classify(code, per_recipient=True) is error_class


def test_unknown_codes_stop_a_request_but_refuse_only_a_recipient() -> None:
    assert classify(9999) is ErrorClass.FATAL
    assert classify(9999, per_recipient=True) is ErrorClass.RECIPIENT


@pytest.mark.parametrize("code", [1, 2, 3, 7, 20, 21, 22, 23, 24, 40, 44, 45, 46, 100])
def test_request_level_error_refuses_every_recipient_with_its_class(code: int) -> None:
    batch = batch_of("27820000001", "27820000002", "27820000003")
    body = json.dumps({"messages": [], "error": {"code": code, "description": "x"}}).encode()
    for status in (202, 400, 401, 402, 403, 404):
        answer = one().parse(status, NO_HEADERS, body, batch)
        assert answer.error is not None
        assert answer.error.code == code
        assert answer.error.error_class is classify(code)
        assert answer.error.http_status == status
        assert all(
            o.verdict is Verdict.UNKNOWN and o.code == code and o.error_class is classify(code)
            for o in answer.outcomes
        )


def test_http_429_is_transient_code_43_with_retry_after() -> None:
    batch = batch_of("27820000001")
    body = b'{"messages": [], "error": {"code": 43, "description": "Rate limit"}}'
    answer = one().parse(429, {"retry-after": "3"}, body, batch)
    assert answer.error is not None
    assert (answer.error.code, answer.error.error_class) == (43, ErrorClass.TRANSIENT)
    assert answer.error.retry_after == 3.0
    bare = one().parse(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, b"", batch)
    assert bare.error is not None and bare.error.code == 43 and bare.error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_not_processed_whatever_the_body(status: int) -> None:
    batch = batch_of("27820000001")
    for body in (b"", b"<html/>", b'{"messages": [], "error": {"code": 19}}'):
        answer = one().parse(status, {"Retry-After": "1"}, body, batch)
        assert answer.error is not None
        assert answer.error.error_class is ErrorClass.TRANSIENT
        assert answer.error.retry_after == 1.0
        assert answer.outcomes[0].verdict is Verdict.UNKNOWN


@pytest.mark.parametrize(("status", "fatal"), [(401, True), (403, True), (404, True), (409, False)])
def test_bare_http_errors(status: int, fatal: bool) -> None:
    answer = one().parse(status, NO_HEADERS, b"nope", batch_of("27820000001"))
    if fatal:
        assert answer.error is not None and answer.error.error_class is ErrorClass.FATAL
    else:
        assert answer.error is None and answer.anomalies
    assert answer.outcomes[0].verdict is Verdict.UNKNOWN


# -- building --------------------------------------------------------------------------------------


def test_request_carries_key_json_headers_and_every_option() -> None:
    options = OneOptions(
        sender="ACME",
        client_message_id_prefix="camp7-",
        validity_period=90,
        charset="UTF-8",
    )
    request = one(options).build(batch_of("27820000001", content="Hi Thandi ✓"))
    assert (request.method, request.path) == ("POST", "/v1/message")
    assert request.header_map() == {
        "Authorization": KEY,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert json.loads(request.body) == {
        "messages": [
            {
                "channel": "sms",
                "to": "27820000001",
                "content": "Hi Thandi ✓ 2",
                "clientMessageId": "camp7-2",
                "from": "ACME",
                "validityPeriod": 90,
                "charset": "UTF-8",
            }
        ]
    }


def test_binary_messages_carry_hex_content_and_udh() -> None:
    request = one(OneOptions(binary=True, udh="050003cc0201")).build(
        [BatchItem(1, "27820000001", "48656c6c6f")]
    )
    [message] = json.loads(request.body)["messages"]
    assert message["binary"] is True and message["udh"] == "050003cc0201"
    with pytest.raises(ProtocolError, match="row 1"):
        one(OneOptions(binary=True)).build([BatchItem(1, "27820000001", "hello")])


def test_build_refuses_what_the_gateway_would_refuse() -> None:
    protocol = one()
    with pytest.raises(ProtocolError, match="1-200"):
        protocol.build([BatchItem(i, "27820000001", "x") for i in range(MAX_BATCH + 1)])
    with pytest.raises(ProtocolError, match="1-200"):
        protocol.build([])
    with pytest.raises(ProtocolError, match="row 7: the number"):
        protocol.build([BatchItem(7, "+27820000001", "x")])
    with pytest.raises(ProtocolError, match="row 8: the content is empty"):
        protocol.build([BatchItem(8, "27820000001", "")])
    with pytest.raises(ProtocolError, match="row 9: the content is not valid"):
        protocol.build([BatchItem(5, "27820000001", "ok"), BatchItem(9, "27820000001", "\ud800")])
    assert len(json.loads(protocol.build([BatchItem(1, "1", "x")] * 100).body)["messages"]) == 100


@pytest.mark.parametrize(
    "options",
    [
        OneOptions(sender="a-b"),
        OneOptions(sender="TwelveLetter"),
        OneOptions(client_message_id_prefix="has space"),
        OneOptions(validity_period=0),
        OneOptions(udh="0500"),
        OneOptions(binary=True, udh="xyz"),
        OneOptions(charset="UTF 8"),
    ],
)
def test_bad_options_are_refused_before_sending(options: OneOptions) -> None:
    with pytest.raises(ProtocolError):
        one(options)


# -- the API key -----------------------------------------------------------------------------------


def test_the_key_never_appears_in_reprs_and_is_redacted_everywhere() -> None:
    protocol = one(OneOptions(sender="ACME"))
    request = protocol.build(batch_of("27820000001"))
    for text in (repr(ApiKey(KEY)), str(ApiKey(KEY)), repr(protocol), repr(request)):
        assert KEY not in text
    assert "Authorization" in repr(request)
    assert redact(f"oops {KEY} leaked") == "oops *** leaked"


@pytest.mark.parametrize("bad", ["", "has space", "line\nbreak", "ключ"])
def test_a_bad_key_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ApiKey(bad)
    if bad:
        assert bad not in str(caught.value)


# -- balance, status, callbacks --------------------------------------------------------------------


def test_balance_requests_and_answers() -> None:
    request = one().balance_request()
    assert (request.method, request.path, request.body) == ("GET", "/v1/balance", b"")
    assert request.header_map()["Authorization"] == KEY
    assert parse_balance(200, b'{"balance": 12.5, "currency": "ZAR"}') == (12.5, "ZAR")
    with pytest.raises(GatewayError) as caught:
        parse_balance(401, b'{"error": {"code": 1, "description": "Invalid API key"}}')
    assert caught.value.code == 1 and caught.value.error_class is ErrorClass.FATAL
    for status, body in ((200, b'{"balance": "lots"}'), (200, b"x"), (500, b"")):
        with pytest.raises(ProtocolError):
            parse_balance(status, body)


def test_status_request_and_answer() -> None:
    request = one().status_request("abc123")
    assert (request.method, request.path) == ("GET", "/v1/message/abc123")
    with pytest.raises(ProtocolError):
        one().status_request("../balance")
    report = parse_status(
        200,
        json.dumps(
            {
                "apiMessageId": "abc123",
                "clientMessageId": "c7",
                "to": "27820000001",
                "statusCode": 4,
                "status": "RECEIVED_BY_RECIPIENT",
                "timestamp": 1_790_000_000_123,
                "error": None,
            }
        ).encode(),
    )
    assert report == (
        "abc123",
        "c7",
        "27820000001",
        "004",
        "RECEIVED_BY_RECIPIENT",
        1_790_000_000.123,
    )
    with pytest.raises(GatewayError):
        parse_status(404, b'{"error": {"code": 23, "description": "Invalid or missing parameter"}}')


def test_callbacks_parse_and_malformed_ones_are_refused() -> None:
    body = {
        "integrationName": "bulksend",
        "messageId": "abc123",
        "clientMessageId": "",
        "to": "27820000001",
        "from": "ACME",
        "statusCode": 3,
        "status": "DELIVERED_TO_GATEWAY",
        "timestamp": 1_790_000_000_000,
    }
    report = parse_callback(json.dumps(body).encode())
    assert (report.api_msg_id, report.status_code, report.timestamp) == (
        "abc123",
        "003",
        1_790_000_000.0,
    )
    assert parse_callback(json.dumps({**body, "statusCode": "004"}).encode()).status_code == "004"
    for spoiled in (
        {k: v for k, v in body.items() if k != "messageId"},
        {**body, "statusCode": True},
        {**body, "statusCode": 1000},
        {**body, "timestamp": "yesterday"},
    ):
        with pytest.raises(ProtocolError):
            parse_callback(json.dumps(spoiled).encode())
    with pytest.raises(ProtocolError):
        parse_callback(b"apiMsgId=1&status=004")


# -- purity ----------------------------------------------------------------------------------------


def test_the_wire_module_imports_neither_the_simulator_nor_any_io_library() -> None:
    code = (
        "import sys, bulksend.wire.one; "
        "bad = [m for m in sys.modules if m.startswith(('bulksend.simulator', 'bulksend.client', "
        "'aiohttp', 'asyncio'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
