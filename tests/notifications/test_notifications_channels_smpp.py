"""SmppProvider against the SMPP 3.4 peer of peers.py (a real socket server)."""

from __future__ import annotations

import pytest

from services.notifications.channels import (
    PermanentFailure,
    Receipt,
    SmppProvider,
    Sms,
    TemporaryFailure,
)
from services.notifications.channels.smpp import parse_receipt_text

from .peers import ESME_RINVDSTADR, ESME_RTHROTTLED, SmppPeer, free_port, wait_until

PHONE = "+79211234567"
CYRILLIC_2_PARTS = (
    "Опора: направление N-2024-117 просрочено на 3 дня. Откройте карточку: https://opora.test/r/117"
)


def provider(peer: SmppPeer, **kwargs: object) -> SmppProvider:
    options: dict[str, object] = {"system_id": "opora", "password": "secret", "timeout": 2.0}
    options.update(kwargs)
    return SmppProvider(peer.host, peer.port, **options)  # type: ignore[arg-type]


def collect(p: SmppProvider, n: int, timeout: float = 5.0) -> list[Receipt]:
    got: list[Receipt] = []
    wait_until(lambda: got.extend(p.receipts()) or len(got) >= n, timeout=timeout)
    return got


def test_cyrillic_two_part_message_and_its_receipts(smpp_server):
    assert 70 < len(CYRILLIC_2_PARTS) <= 134
    p = provider(smpp_server)
    sent = p.send(Sms("m-1", "8 (921) 123-45-67", CYRILLIC_2_PARTS))

    assert sent.provider == "smpp" and sent.segments == 2
    assert len(sent.provider_message_ids) == 2
    (message,) = smpp_server.messages
    assert message.text == CYRILLIC_2_PARTS
    assert message.destination == "79211234567"
    assert (message.parts, message.data_coding) == (2, 8)
    assert list(sent.provider_message_ids) == message.message_ids
    first, second = smpp_server.parts
    assert first.udh is not None and second.udh is not None
    assert first.udh[0] == second.udh[0] and (first.udh[1:], second.udh[1:]) == ((2, 1), (2, 2))
    assert all(len(part.short_message) <= 140 for part in smpp_server.parts)
    assert all(part.registered_delivery == 1 for part in smpp_server.parts)
    assert first.source == "Opora"

    receipts = collect(p, 2)
    assert sorted(r.provider_message_id for r in receipts) == sorted(sent.provider_message_ids)
    assert {r.state for r in receipts} == {"delivered"} and {r.provider for r in receipts} == {
        "smpp"
    }
    assert wait_until(lambda: smpp_server.deliver_sm_resps == 2)  # every receipt acknowledged
    p.close()
    assert smpp_server.binds == 1


def test_gsm_text_with_extension_characters_goes_as_data_coding_0(smpp_server):
    p = provider(smpp_server)
    text = "Raid {R-12} [tomorrow] ~10:00 €5 | see https://opora.test/raids/12"
    sent = p.send(Sms("m-1", PHONE, text))
    assert sent.segments == 1
    (message,) = smpp_server.messages
    assert (message.text, message.data_coding, message.parts) == (text, 0, 1)
    p.close()


def test_long_gsm_text_parts_follow_the_153_rule(smpp_server):
    p = provider(smpp_server)
    text = "a" * 152 + "€" + "b" * 10  # the escape pair may not be cut
    sent = p.send(Sms("m-1", PHONE, text))
    assert sent.segments == 2
    assert [part.text for part in smpp_server.parts] == ["a" * 152, "€" + "b" * 10]
    assert smpp_server.messages[0].text == text
    p.close()


def test_session_is_reused_for_many_sends(smpp_server):
    p = provider(smpp_server)
    for i in range(5):
        p.send(Sms(f"m-{i}", PHONE, f"hello {i}"))
    assert smpp_server.binds == 1 == p.binds
    assert [m.text for m in smpp_server.messages] == [f"hello {i}" for i in range(5)]
    p.close()


def test_throttling_is_temporary_with_retry_after(smpp_server):
    p = provider(smpp_server)
    smpp_server.fail_next(1, ESME_RTHROTTLED)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.retry_after == 1.0 and "0x58" in failure.value.reason
    p.send(Sms("m-1", PHONE, "hello"))
    assert [m.text for m in smpp_server.messages] == ["hello"] and smpp_server.binds == 1
    p.close()


def test_invalid_destination_is_permanent(smpp_server):
    p = provider(smpp_server)
    smpp_server.fail_next(1, ESME_RINVDSTADR)
    with pytest.raises(PermanentFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert "921" not in failure.value.reason
    p.close()


def test_invalid_number_is_permanent_before_any_connection(smpp_server):
    p = provider(smpp_server)
    with pytest.raises(PermanentFailure):
        p.send(Sms("m-1", "12", "hello"))
    with pytest.raises(PermanentFailure):
        p.send(Sms("m-2", PHONE, "я" * 700))  # 11 parts > max_parts 10
    assert smpp_server.binds == 0


def test_reconnects_after_the_centre_dropped_the_session(smpp_server):
    p = provider(smpp_server)
    p.send(Sms("m-1", PHONE, "before"))
    smpp_server.drop_sessions()
    assert wait_until(lambda: smpp_server.sessions == 0)
    sent = p.send(Sms("m-2", PHONE, "after"))
    assert sent.provider_message_ids
    assert [m.text for m in smpp_server.messages] == ["before", "after"]
    assert smpp_server.binds == 2 == p.binds
    p.close()


def test_receipts_of_a_dropped_session_arrive_on_the_next_one():
    with SmppPeer(receipt_delay=0.3) as smsc:
        p = provider(smsc)
        sent = p.send(Sms("m-1", PHONE, "hello"))
        smsc.drop_sessions()  # before the receipt is due
        receipts = collect(p, 1)  # receipts() binds again because a receipt is owed
        assert [r.provider_message_id for r in receipts] == list(sent.provider_message_ids)
        assert smsc.binds == 2
        p.close()


def test_centre_down_is_temporary():
    p = SmppProvider("127.0.0.1", free_port(), system_id="opora", password="secret", timeout=1)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert failure.value.reason == "SMPP centre unreachable"


def test_bind_refused_is_temporary(smpp_server):
    p = provider(smpp_server, password="wrong")
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-1", PHONE, "hello"))
    assert "bind refused" in failure.value.reason and "wrong" not in failure.value.reason


def test_slow_centre_times_out_and_the_next_send_binds_afresh(smpp_server):
    p = provider(smpp_server, timeout=0.3)
    p.send(Sms("m-1", PHONE, "one"))
    smpp_server.slow(1.0)
    with pytest.raises(TemporaryFailure) as failure:
        p.send(Sms("m-2", PHONE, "two"))
    assert failure.value.reason == "SMPP submit timed out"
    smpp_server.slow(0)
    p.send(Sms("m-3", PHONE, "three"))
    assert p.binds == 2
    # "two" did reach the centre after we gave up on it: a retry would send it again, which
    # is why the delivery loop treats a timeout as temporary and keeps the message id
    assert wait_until(
        lambda: sorted(m.text for m in smpp_server.messages) == ["one", "three", "two"]
    )
    p.close()


def test_undeliverable_receipt_is_bounced():
    with SmppPeer(receipt_stat="UNDELIV") as smsc:
        p = provider(smsc)
        sent = p.send(Sms("m-1", PHONE, "hello"))
        (receipt,) = collect(p, 1)
        assert (receipt.provider_message_id, receipt.state) == (
            sent.provider_message_ids[0],
            "bounced",
        )
        assert receipt.error == "UNDELIV err:001"
        p.close()


def test_keepalive_enquire_link_after_idle(smpp_server):
    now = [0.0]
    p = provider(smpp_server, enquire_every=30, clock=lambda: now[0])
    p.send(Sms("m-1", PHONE, "hello"))
    p.receipts()
    assert smpp_server.enquire_links == 0
    now[0] = 31.0
    p.receipts()
    assert smpp_server.enquire_links == 1
    p.close()


def test_enquire_link_from_the_centre_is_answered(smpp_server):
    p = provider(smpp_server)
    p.send(Sms("m-1", PHONE, "hello"))
    smpp_server.enquire_all()
    assert wait_until(lambda: p.receipts() is not None and smpp_server.enquire_link_resps == 1)
    p.close()


def test_unsupported_command_gets_generic_nack_from_the_peer(smpp_server):
    import socket
    import struct

    from .peers import pdu

    with socket.create_connection((smpp_server.host, smpp_server.port), timeout=2) as s:
        s.sendall(pdu(0x00000103, 7))  # data_sm: not spoken by this peer
        _length, command, status, sequence = struct.unpack(">IIII", s.recv(16))
    assert (command, status, sequence) == (0x80000000, 0x03, 7)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        (
            "id:ABC sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:",
            "delivered",
        ),
        ("id:ABC sub:001 dlvrd:000 stat:UNDELIV err:001", "bounced"),
        ("id:ABC stat:REJECTD err:002", "bounced"),
        ("id:ABC stat:EXPIRED err:000", "failed"),
        ("id:ABC stat:ENROUTE err:000", None),
        ("no receipt here", None),
    ],
)
def test_receipt_text_parsing(text, state):
    receipt = parse_receipt_text("smpp", text)
    assert (receipt.state if receipt else None) == state
    if receipt:
        assert receipt.provider_message_id == "ABC"


def test_receipt_tlvs_win_over_the_text():
    receipt = parse_receipt_text("smpp", "id:1 stat:DELIVRD", receipted_id="0A", message_state=5)
    assert receipt is not None and (receipt.provider_message_id, receipt.state) == ("0A", "bounced")
