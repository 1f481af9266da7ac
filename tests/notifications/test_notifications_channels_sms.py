"""SMS rules without network: segments, phone numbers, fit, the rate limit, test mode, config."""

from __future__ import annotations

import json
import threading

import pytest

from services.notifications.channels import (
    HttpGatewayProvider,
    PermanentFailure,
    SmppProvider,
    Sms,
    TemporaryFailure,
    TestModeProvider,
    build_sms_providers,
)
from services.notifications.channels.ratelimit import TokenBucket
from services.notifications.channels.sms import (
    GSM7,
    UCS2,
    encode_gsm7,
    fit,
    normalise_phone,
    segments,
    split_segments,
)
from shared.config import ConfigError, load_settings

from .peers import GSM_BASIC, GSM_EXTENSION, HttpGatewayPeer, SmppPeer, decode_gsm7

CYR = "я"


@pytest.mark.parametrize(
    ("text", "encoding", "parts", "length"),
    [
        ("", GSM7, 1, 0),
        ("a" * 160, GSM7, 1, 160),
        ("a" * 161, GSM7, 2, 161),
        ("a" * 306, GSM7, 2, 306),
        ("a" * 307, GSM7, 3, 307),
        ("{" * 80, GSM7, 1, 160),  # extension characters count two
        ("{" * 81, GSM7, 2, 162),
        ("€" + "a" * 158, GSM7, 1, 160),
        ("€" + "a" * 159, GSM7, 2, 161),
        ("§¿ÄÖÑÜ@£$¥", GSM7, 1, 10),
        (CYR * 70, UCS2, 1, 70),
        (CYR * 71, UCS2, 2, 71),
        (CYR * 134, UCS2, 2, 134),
        (CYR * 135, UCS2, 3, 135),
        ("a" * 69 + CYR, UCS2, 1, 70),  # one Cyrillic letter switches the whole text
        ("a" * 70 + CYR, UCS2, 2, 71),
        ("`" * 70, UCS2, 1, 70),  # the backtick is not in GSM 03.38
        ("😀" * 35, UCS2, 1, 70),  # astral characters are two UTF-16 units
        ("😀" * 36, UCS2, 2, 72),
    ],
)
def test_segments_table(text, encoding, parts, length):
    assert segments(text) == (segments(text).__class__(encoding, parts, length))


def test_parts_never_cut_an_escape_pair_or_a_surrogate_pair():
    encoding, parts = split_segments("a" * 152 + "€" + "a" * 10)
    assert encoding == GSM7 and parts == ["a" * 152, "€" + "a" * 10]
    encoding, parts = split_segments("😀" * 36)
    assert encoding == UCS2 and parts == ["😀" * 33, "😀" * 3]
    encoding, parts = split_segments(CYR * 135)
    assert [len(p) for p in parts] == [67, 67, 1]


def test_gsm7_encoding_agrees_with_the_peers_independent_table():
    alphabet = "".join(ch for ch in GSM_BASIC if ch != "\x1b") + "".join(GSM_EXTENSION.values())
    assert decode_gsm7(encode_gsm7(alphabet)) == alphabet
    assert len(encode_gsm7(alphabet)) == 127 + 2 * len(GSM_EXTENSION)


@pytest.mark.parametrize(
    "raw",
    ["8 921 123-45-67", "+7 (921) 123 45 67", "8(921)1234567", "9211234567", " +79211234567 "],
)
def test_russian_numbers_normalise_to_e164(raw):
    assert normalise_phone(raw) == "+79211234567"


def test_foreign_number_with_country_code():
    assert normalise_phone("+44 7911 123456") == "+447911123456"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("abc", "cannot be read"),
        ("123", "not a valid number"),
        ("+7 921 123", "not a valid number"),
        ("8 (495) 123-45-67", "cannot take SMS"),  # a Moscow landline
        ("8 800 555-35-35", "cannot take SMS"),  # toll-free
    ],
)
def test_invalid_numbers_are_refused_without_repeating_them(raw, why):
    with pytest.raises(ValueError) as error:
        normalise_phone(raw)
    assert why in str(error.value)
    digits = "".join(ch for ch in raw if ch.isdigit())
    assert not digits or digits not in str(error.value).replace(" ", "")


def test_fit_returns_the_text_when_it_fits():
    assert fit(CYR * 134, max_parts=2, policy="refuse") == [CYR * 134]


def test_fit_refuses_above_max_parts():
    with pytest.raises(PermanentFailure) as failure:
        fit(CYR * 135, max_parts=2, policy="refuse")
    assert "3 SMS parts" in failure.value.reason


def test_fit_splits_at_words_into_messages_that_each_fit():
    words = [f"слово{i}" for i in range(60)]
    text = " ".join(words)
    messages = fit(text, max_parts=1, policy="split")
    assert len(messages) > 1
    assert all(segments(m).parts == 1 for m in messages)
    assert " ".join(messages).split() == words  # nothing lost, no word cut


def test_fit_cuts_a_word_longer_than_a_message():
    messages = fit("x" * 400, max_parts=1, policy="split")
    assert [len(m) for m in messages] == [160, 160, 80]


def test_fit_validates_its_arguments():
    with pytest.raises(ValueError):
        fit("a", max_parts=0)
    with pytest.raises(ValueError):
        fit("a", max_parts=1, policy="truncate")  # type: ignore[arg-type]


# --- the rate limit: counted with a clock we move, never timed ------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_bucket_of_five_gives_five_then_refuses_with_retry_after():
    clock = FakeClock()
    bucket = TokenBucket(5, max_wait=0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    with pytest.raises(TemporaryFailure) as failure:
        bucket.acquire()
    assert failure.value.retry_after == pytest.approx(0.2)
    clock.now = 0.4  # two tokens back
    bucket.acquire()
    bucket.acquire()
    with pytest.raises(TemporaryFailure):
        bucket.acquire()
    clock.now = 100.0  # refills to the burst, not beyond
    assert bucket.available == 5
    assert clock.slept == []


def test_bucket_waits_up_to_max_wait_then_refuses():
    clock = FakeClock()
    bucket = TokenBucket(5, max_wait=0.5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert bucket.acquire() == pytest.approx(0.2)  # reserved, waited outside the lock
    assert bucket.acquire() == pytest.approx(0.4)
    with pytest.raises(TemporaryFailure) as failure:
        bucket.acquire()
    assert failure.value.retry_after == pytest.approx(0.6)
    assert clock.slept == [pytest.approx(0.2), pytest.approx(0.4)]


def test_bucket_is_thread_safe():
    clock = FakeClock()
    bucket = TokenBucket(5, max_wait=0, clock=clock, sleep=clock.sleep)
    granted: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(20)

    def take(i: int) -> None:
        start.wait()
        try:
            bucket.acquire()
            granted.append(i)
        except TemporaryFailure:
            refused.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(granted), len(refused)) == (5, 15)


def test_provider_rate_limit_applies_per_send(tmp_path):
    provider = TestModeProvider("t", tmp_path, rate=2)
    assert provider.bucket is not None
    provider.bucket.max_wait = 0
    provider.send(Sms("1", "+79211234567", "a"))
    provider.send(Sms("2", "+79211234567", "b"))
    with pytest.raises(TemporaryFailure):
        provider.send(Sms("3", "+79211234567", "c"))
    assert len(provider.recorded()) == 2


# --- test mode and configuration ------------------------------------------------------------


def test_test_mode_records_sends_nothing_and_reports_delivery(tmp_path):
    with SmppPeer() as smsc, HttpGatewayPeer() as gateway:
        env = {
            "NOTIFICATIONS_SMS_PROVIDERS": (
                f"smpp://opora:secret@{smsc.host}:{smsc.port}?mode=test&name=main,"
                f"{gateway.url}?mode=test&name=backup"
            )
        }
        settings = load_settings("notifications", {"OPORA_DATA_DIR": str(tmp_path)})
        main, backup = build_sms_providers(settings, env)
        assert isinstance(main, TestModeProvider) and isinstance(backup, TestModeProvider)
        sent = main.send(Sms("m-1", "8 921 123-45-67", CYR * 100, urgent=True))
        backup.send(Sms("m-2", "+79211234567", "hello"))
        assert smsc.parts == [] and smsc.binds == 0
        assert gateway.requests == [] and gateway.connections == 0

    assert sent.segments == 2 and sent.provider == "main"
    lines = [json.loads(x) for x in (tmp_path / "sms" / "main.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["to"] == "+79211234567" and lines[0]["text"] == CYR * 100
    assert lines[0]["encoding"] == UCS2 and lines[0]["segments"] == 2 and lines[0]["urgent"]
    assert lines[0]["provider_message_id"] == sent.provider_message_ids[0]
    receipts = main.receipts()
    assert [(r.provider_message_id, r.state) for r in receipts] == [
        (sent.provider_message_ids[0], "delivered")
    ]
    assert main.receipts() == []
    assert (tmp_path / "sms" / "backup.jsonl").exists()


def test_test_mode_checks_like_a_real_provider(tmp_path):
    provider = TestModeProvider("t", tmp_path, max_parts=2)
    with pytest.raises(PermanentFailure):
        provider.send(Sms("1", "not a number", "text"))
    with pytest.raises(PermanentFailure):
        provider.send(Sms("2", "+79211234567", CYR * 135))
    assert provider.recorded() == []


def test_no_provider_configured_means_one_test_mode_provider(tmp_path):
    settings = load_settings("notifications", {"OPORA_DATA_DIR": str(tmp_path)})
    (provider,) = build_sms_providers(settings, env={})
    assert isinstance(provider, TestModeProvider) and provider.name == "test"
    assert provider.path == tmp_path / "sms" / "test.jsonl"


def test_provider_urls_in_failover_order(tmp_path):
    settings = load_settings("notifications", {"OPORA_DATA_DIR": str(tmp_path)})
    env = {
        "NOTIFICATIONS_SMS_PROVIDERS": (
            "smpp://user%40x:p%3Aw@smsc.example:2776?source=Opora&rate=20&timeout=3, "
            "https://gw.example/api/send?token=abc&rate=5&sender=OPORA&callback=https://o.test/cb,"
            "test://training"
        )
    }
    smpp, http, test = build_sms_providers(settings, env)
    assert isinstance(smpp, SmppProvider)
    assert (smpp.name, smpp.host, smpp.port, smpp.system_id, smpp.timeout) == (
        "smpp-smsc.example",
        "smsc.example",
        2776,
        "user@x",
        3.0,
    )
    assert smpp.bucket is not None and smpp.bucket.rate == 20
    assert isinstance(http, HttpGatewayProvider)
    assert http.name == "http-gw.example"
    assert http.url == "https://gw.example/api/send?sender=OPORA"  # token moved to a header
    assert http._headers["Authorization"] == "Bearer abc"
    assert http.callback_url == "https://o.test/cb"
    assert isinstance(test, TestModeProvider) and test.name == "training"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://x", "scheme"),
        ("smpp://smsc.example", "user:password"),
        ("smpp://u:p@a?rate=fast", "rate must be a number"),
        ("https://a/send,https://a/send", "repeats the name"),
        ("https://a/send?mode=dry", "mode must be"),
    ],
)
def test_bad_provider_urls_are_config_errors(tmp_path, value, message):
    settings = load_settings("notifications", {"OPORA_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError) as error:
        build_sms_providers(settings, {"NOTIFICATIONS_SMS_PROVIDERS": value})
    assert message in str(error.value)
    assert "p@" not in str(error.value)
