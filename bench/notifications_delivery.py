"""Notification delivery benchmark: our channels against raw smtplib / smpplib, same peers, same run.

    python -m bench.notifications_delivery [--emails N] [--sms N] [--tls] [--json PATH]

Phases (the why is in bench/NOTIFICATIONS.md):

1. email: a local aiosmtpd server (tests/notifications/peers.py, in this process);
   baseline = one smtplib connection sending the same pre-built MIME bytes N times;
   ours = ``SmtpSender.send(Email)`` N times (building the MIME each time, as in production).
   The baseline runs before and after ours; emails/s and the ratio ours/baseline (target >= 0.5);
2. sms: the local SMPP peer; baseline = a bound smpplib client doing submit_sm and reading its
   submit_sm_resp, N times; ours = ``SmppProvider.send(Sms)`` N times (number normalised,
   segments counted, rate limit off). Latency of each call, p50/p99, for the same 1-part
   Cyrillic text.

``run_transport_benchmarks`` is the transport part; the full pipeline (event -> message ->
provider) is to be added next to it as ``run_pipeline_benchmarks``.
Exit status is 0 even below target: this is a report, not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import smtplib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 0.5
SENDER = "opora@opora.test"
RECIPIENT = "coordinator@agency.test"
PHONE = "+79211234567"
SMS_TEXT = "Опора: рейд R-12 завтра в 10:00. https://opora.test/r/12"  # 1 UCS-2 segment
ICS = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Opora//raids//EN\r\nMETHOD:REQUEST\r\n"
    b"BEGIN:VEVENT\r\nUID:raid-12@opora\r\nDTSTAMP:20250101T080000Z\r\n"
    b"DTSTART:20250102T100000Z\r\nDTEND:20250102T120000Z\r\nSUMMARY:Raid R-12\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _peers() -> Any:
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.notifications import peers

    return peers


def _email(i: int) -> Any:
    from services.notifications.channels import Attachment, Email

    return Email(
        message_id=f"bench-{i}",
        to=RECIPIENT,
        subject="Opora: рейд R-12 завтра",
        text="Рейд R-12 завтра в 10:00.\nКарточка: https://opora.test/raids/12\n" * 3,
        html="<p>Рейд <a href='https://opora.test/raids/12'>R-12</a> завтра в 10:00.</p>" * 3,
        attachments=(Attachment("raid.ics", "text/calendar", ICS),),
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


# --- email ------------------------------------------------------------------------------------


def _smtp_connect(peer: Any, tls: bool) -> smtplib.SMTP:
    client = smtplib.SMTP(peer.host, peer.port, timeout=30)
    client.ehlo()
    if tls:
        client.starttls(context=_peers().client_ssl_context())
        client.ehlo()
        client.login(peer.user, peer.password)
    return client


def email_baseline(peer: Any, n: int, tls: bool) -> float:
    """Raw smtplib: one connection, the same pre-built bytes each time; emails/s."""
    from services.notifications.channels.email import build_mime, wire_bytes

    data = wire_bytes(build_mime(_email(0), SENDER))  # the very bytes SmtpSender would send
    client = _smtp_connect(peer, tls)
    start = time.perf_counter()
    for _ in range(n):
        client.sendmail(SENDER, [RECIPIENT], data)
    elapsed = time.perf_counter() - start
    client.quit()
    return n / elapsed


def email_ours(peer: Any, n: int, tls: bool) -> tuple[float, int]:
    """SmtpSender.send(Email) n times; (emails/s, SMTP sessions opened)."""
    from services.notifications.channels import SmtpSender

    sender = SmtpSender(
        peer.host,
        peer.port,
        SENDER,
        user=peer.user if tls else None,
        password=peer.password if tls else None,
        security="starttls" if tls else "none",
        ssl_context=_peers().client_ssl_context() if tls else None,
    )
    emails = [_email(i) for i in range(n)]
    sender.send(_email(-1))  # the session is open before the clock starts, as for the baseline
    start = time.perf_counter()
    for mail in emails:
        sender.send(mail)
    elapsed = time.perf_counter() - start
    sender.close()
    return n / elapsed, sender.connections


# --- sms --------------------------------------------------------------------------------------


def sms_baseline(peer: Any, n: int) -> list[float]:
    """Raw smpplib: bound transceiver, submit_sm + read submit_sm_resp; seconds per call."""
    import smpplib.client
    import smpplib.consts as c

    client = smpplib.client.Client(peer.host, peer.port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    client.bind_transceiver(system_id=peer.system_id, password=peer.password)
    payload = SMS_TEXT.encode("utf-16-be")
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.send_message(
            source_addr_ton=c.SMPP_TON_ALNUM,
            source_addr_npi=c.SMPP_NPI_UNK,
            source_addr="Opora",
            dest_addr_ton=c.SMPP_TON_INTL,
            dest_addr_npi=c.SMPP_NPI_ISDN,
            destination_addr=PHONE.lstrip("+"),
            short_message=payload,
            data_coding=c.SMPP_ENCODING_ISO10646,
            esm_class=c.SMPP_MSGTYPE_DEFAULT,
            registered_delivery=0,
        )
        while client.read_pdu().command != "submit_sm_resp":
            pass
        latencies.append(time.perf_counter() - t0)
    client.unbind()
    client.disconnect()
    return latencies


def sms_ours(peer: Any, n: int) -> list[float]:
    from services.notifications.channels import SmppProvider, Sms

    provider = SmppProvider(
        peer.host,
        peer.port,
        system_id=peer.system_id,
        password=peer.password,
        registered_delivery=False,
    )
    provider.send(Sms("warm-up", PHONE, SMS_TEXT))  # bound before the clock starts
    latencies = []
    for i in range(n):
        sms = Sms(f"bench-{i}", PHONE, SMS_TEXT)
        t0 = time.perf_counter()
        provider.send(sms)
        latencies.append(time.perf_counter() - t0)
    provider.close()
    return latencies


# --- the runs ---------------------------------------------------------------------------------


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "per_s": round(len(values) / sum(values), 1),
    }


def run_transport_benchmarks(emails: int, sms: int, tls: bool) -> dict[str, Any]:
    """Channels only: what our senders add on top of the raw protocol clients."""
    peers = _peers()
    result: dict[str, Any] = {
        "emails_per_run": emails,
        "sms_per_run": sms,
        "tls": tls,
        "cpus": os.cpu_count(),
    }
    with peers.SmtpPeer(tls="starttls" if tls else None, auth=tls) as smtp:
        before = email_baseline(smtp, emails, tls)
        ours, sessions = email_ours(smtp, emails, tls)
        after = email_baseline(smtp, emails, tls)
        received = len(smtp.received)
    baseline = (before + after) / 2
    result["email"] = {
        "baseline_per_s": [round(before, 1), round(after, 1)],
        "ours_per_s": round(ours, 1),
        "ratio": round(ours / baseline, 3),
        "noisy": abs(before - after) / baseline > 0.3,
        "ours_sessions": sessions,
        "received": received,
        "expected": 3 * emails + 1,
    }
    with peers.SmppPeer() as smsc:
        raw_before = sms_baseline(smsc, sms)
        mine = sms_ours(smsc, sms)
        raw_after = sms_baseline(smsc, sms)
        submitted = len(smsc.messages)
    raw = raw_before + raw_after
    result["sms"] = {
        "baseline": _ms(raw),
        "ours": _ms(mine),
        "p50_ratio": round(percentile(raw, 50) / percentile(mine, 50), 3),
        "received": submitted,
        "expected": 3 * sms + 1,
    }
    return result


def report(result: dict[str, Any], out: Callable[[str], None] = print) -> None:
    e, s = result["email"], result["sms"]
    mode = "STARTTLS+AUTH" if result["tls"] else "plain"
    out(f"## Email ({result['emails_per_run']} per run, {mode}, aiosmtpd in-process)\n")
    out("| run | emails/s |")
    out("| --- | --- |")
    out(f"| raw smtplib, before | {e['baseline_per_s'][0]:,.0f} |")
    out(f"| SmtpSender | {e['ours_per_s']:,.0f} |")
    out(f"| raw smtplib, after | {e['baseline_per_s'][1]:,.0f} |")
    flag = " NOISY" if e["noisy"] else ""
    verdict = "meets target" if e["ratio"] >= TARGET else "BELOW TARGET"
    out(f"\nratio ours/baseline: **{e['ratio']}** (target >= {TARGET}: {verdict}){flag}; ")
    out(f"SMTP sessions opened by SmtpSender: {e['ours_sessions']}; ")
    out(f"received {e['received']} of {e['expected']}\n")
    out(f"## SMS submit over SMPP ({result['sms_per_run']} per run, 1 UCS-2 segment)\n")
    out("| client | p50 ms | p99 ms | mean ms | submits/s |")
    out("| --- | --- | --- | --- | --- |")
    for label, key in (("raw smpplib (before+after)", "baseline"), ("SmppProvider", "ours")):
        v = s[key]
        out(f"| {label} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} | {v['per_s']:,.0f} |")
    out(f"\np50 ratio raw/ours: {s['p50_ratio']}; received {s['received']} of {s['expected']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=2000, help="emails per run (default 2000)")
    parser.add_argument("--sms", type=int, default=2000, help="SMS per run (default 2000)")
    parser.add_argument("--tls", action="store_true", help="STARTTLS + AUTH on the SMTP peer")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = run_transport_benchmarks(args.emails, args.sms, args.tls)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
