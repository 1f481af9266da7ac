"""The fault suite's report as text (printed, and kept in pytest's terminal summary) and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def render(report: dict[str, Any]) -> str:
    lines = [f"chaos run, seed {report['seed']} (OPORA_CHAOS_SEED={report['seed']} repeats it)"]
    commands = report["commands"]
    lines.append(
        f"commands: {sum(commands.values())} "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(commands.items()))
    )
    http = report["http"]
    lines.append(
        f"http: {http['calls']} calls in {http['attempts']} attempts; "
        f"{http['commands_retried']} commands retried, {http['answers_replayed']} answers "
        f"replayed by Idempotency-Key ({http['lost_answers_resent']} after a lost answer, "
        f"{http['sent_twice_at_once']} commands sent twice at once), "
        f"{http['not_acknowledged']} not acknowledged; "
        f"{http['commands_per_s_under_faults']} commands/s under faults"
    )
    took = http["command_seconds"]
    lines.append(
        f"  a command took (all its calls, retries included): p50 {took['p50']}s, "
        f"p99 {took['p99']}s, max {took['max']}s"
    )
    if http["troubles"]:
        lines.append(
            "  retried after: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(http["troubles"].items()))
        )
    lines.append("")
    lines.append(f"{'effect':<58} {'expected':>8} {'found':>8} {'twice':>6}")
    for name, tally in report["effects"].items():
        lines.append(
            f"{name:<58} {tally['expected']:>8} {tally['found']:>8} {tally['duplicated']:>6}"
        )
    deliveries = report["deliveries"]
    for channel in ("email", "sms", "webhooks"):
        entry = deliveries[channel]
        if channel == "webhooks":
            again = f"redelivered under the same id: {entry['redelivered_same_id']}"
        else:
            again = (
                f"resent under the same id after a crash: {entry['resent_after_a_crash']}, "
                f"with no crash: {entry['resent_though_the_worker_lived']}"
            )
        lines.append(
            f"{'outside: ' + channel + ' handed over':<58} {entry['expected']:>8} "
            f"{entry['found']:>8} {entry['duplicated']:>6}   ({again})"
        )
    lines.append(
        f"the SMTP server refused {report['smtp_refusals']} times; emails sent after a temporary "
        f"failure: {deliveries['email']['sent_after_a_temporary_failure']}; SMS failed over to "
        f"the next gateway: {deliveries['sms']['failed_over']}"
    )
    sms = deliveries["sms"]
    lines.append(
        "sms per gateway: "
        + ", ".join(f"{k} {v}" for k, v in sorted(sms["accepted_per_gateway"].items()))
        + "; while gw-a was slow: "
        + ", ".join(f"{k} {v}" for k, v in sorted(sms["accepted_while_gw_a_slow"].items()))
        + "; abandoned by the client (timed out): "
        + ", ".join(f"{k} {v}" for k, v in sorted(sms["abandoned_by_the_client"].items()))
    )
    if report["unexpected_messages"]:
        lines.append(f"other messages (rules not driven here): {report['unexpected_messages']}")
    lines.append("")
    lines.append(f"dead letters ({report['poison_published']} poison messages published):")
    for service, reasons in report["dead_letters"].items():
        total = sum(reasons.values())
        lines.append(f"  {service}: {total}")
        for reason, n in sorted(reasons.items()):
            lines.append(f"    {n} x {reason}")
    lines.append("")
    lines.append("faults (seconds after the load started):")
    for fault in report["faults"]:
        target = f" {fault['target']}" if fault["target"] else ""
        lines.append(
            f"  {fault['started_s']:>6} - {fault['ended_s']!s:>6}  {fault['fault']}{target}: "
            f"{fault['detail']}"
        )
    if report["process_exits"]:
        lines.append(
            "processes that exited on their own and were restarted: "
            + ", ".join(
                f"{e['process']} ({e['code']}) at {e['at_s']}s" for e in report["process_exits"]
            )
        )
    timings = report["timings"]
    drained = (
        f"drained {timings['drain_after_last_fault_s']}s after the last fault "
        f"({timings['drain_after_load_s']}s after the load)"
        if timings["drain_after_last_fault_s"] is not None
        else "NOT DRAINED"
    )
    lines.append("")
    lines.append(
        f"setup {timings['setup_s']}s, load {timings['load_s']}s, last fault ended at "
        f"{timings['last_fault_ended_s']}s, {drained}, total {timings['total_s']}s"
    )
    lines.append("drain (seconds after the last fault: what was left):")
    for step in report["drain"][-12:]:
        left = ", ".join(f"{k} {v}" for k, v in step["left"].items()) or "nothing"
        lines.append(f"  {step['after_last_fault_s']:>6}  {left}")
    if report["problems"]:
        lines.append("")
        lines.append("PROBLEMS:")
        lines += [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines)


def write(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
