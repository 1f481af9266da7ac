"""SMS text rules: phone numbers in E.164, GSM-7 vs UCS-2 segments, splitting or refusing.

One SMS segment carries 140 bytes. In the GSM 03.38 default alphabet that is 160 characters
(153 in a concatenated message, whose header takes 7), and the extension characters
``^{}\\[~]|€`` and form feed take two. Any character outside the alphabet (any Cyrillic
letter, for one) switches the whole text to UCS-2: 70 UTF-16 units, 67 in a concatenated
message. Parts never cut an escape pair or a surrogate pair, so ``segments`` counts exactly
the parts the providers send.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from services.notifications.channels.base import PermanentFailure

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 default alphabet, by code (0x1B is the escape to the extension table).
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128
_GSM_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM_CODES: dict[str, int] = {ch: i for i, ch in enumerate(_GSM_BASIC) if ch != "\x1b"}

SINGLE = {GSM7: 160, UCS2: 70}
MULTI = {GSM7: 153, UCS2: 67}
_T = phonenumbers.PhoneNumberType
_NO_SMS = {_T.FIXED_LINE, _T.TOLL_FREE, _T.PREMIUM_RATE, _T.SHARED_COST, _T.UAN, _T.VOICEMAIL}


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "GSM-7" | "UCS-2"
    parts: int
    length: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def normalise_phone(raw: str, region: str = "RU") -> str:
    """E.164 (``+79211234567``) from what people type: ``8 (921) 123-45-67``, ``+7 921 ...``.

    Raises ValueError with a message that does not repeat the number.
    """
    if not raw or not raw.strip():
        raise ValueError("phone number is empty")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("phone number cannot be read as a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"phone number is not a valid number (default region {region})")
    if phonenumbers.number_type(number) in _NO_SMS:
        raise ValueError("phone number cannot take SMS (a landline or a service number)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_gsm7(text: str) -> bool:
    return all(ch in GSM_CODES or ch in _GSM_EXTENSION for ch in text)


def _units(text: str, encoding: str) -> list[int]:
    """The size of each character in the units of ``encoding``."""
    if encoding == GSM7:
        return [2 if ch in _GSM_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _chunks(text: str, encoding: str, size: int) -> list[str]:
    parts: list[str] = []
    start = used = 0
    for i, unit in enumerate(_units(text, encoding)):
        if used + unit > size:
            parts.append(text[start:i])
            start, used = i, 0
        used += unit
    parts.append(text[start:])
    return parts


def split_segments(text: str) -> tuple[str, list[str]]:
    """The encoding and the text of each segment as the provider will send it."""
    encoding = GSM7 if is_gsm7(text) else UCS2
    length = sum(_units(text, encoding))
    if length <= SINGLE[encoding]:
        return encoding, [text]
    return encoding, _chunks(text, encoding, MULTI[encoding])


def segments(text: str) -> SegmentInfo:
    encoding, parts = split_segments(text)
    return SegmentInfo(encoding, len(parts), sum(_units(text, encoding)))


def fit(text: str, max_parts: int, policy: Literal["split", "refuse"] = "refuse") -> list[str]:
    """The texts to send as separate SMS, each at most ``max_parts`` segments.

    ``refuse``: the text itself, or PermanentFailure when it needs more parts.
    ``split``: cut into several messages, at whitespace where possible.
    """
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    if policy not in ("split", "refuse"):
        raise ValueError("policy must be 'split' or 'refuse'")
    info = segments(text)
    if info.parts <= max_parts:
        return [text]
    if policy == "refuse":
        raise PermanentFailure(
            f"text needs {info.parts} SMS parts ({info.encoding}), more than {max_parts}"
        )

    def fits(candidate: str) -> bool:
        return segments(candidate).parts <= max_parts

    messages: list[str] = []
    current = ""
    for token in re.findall(r"\s*\S+", text):
        if fits(current + token):
            current += token
            continue
        if current.strip():
            messages.append(current.strip())
        token = token.lstrip()
        while not fits(token):  # one word longer than a message: cut it
            cut = _longest_prefix(token, fits)
            messages.append(token[:cut])
            token = token[cut:]
        current = token
    if current.strip():
        messages.append(current.strip())
    return messages


def _longest_prefix(token: str, fits: Callable[[str], bool]) -> int:
    low, high = 1, len(token)
    while low < high:  # binary search on the prefix length that still fits
        mid = math.ceil((low + high) / 2)
        if fits(token[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM 03.38 septets, one a byte, escape pairs for the extension table."""
    out = bytearray()
    for ch in text:
        if ch in GSM_CODES:
            out.append(GSM_CODES[ch])
        elif ch in _GSM_EXTENSION:
            out += bytes((0x1B, _GSM_EXTENSION[ch]))
        else:
            raise ValueError("character outside the GSM 03.38 alphabet")
    return bytes(out)


def encode(text: str, encoding: str) -> bytes:
    return encode_gsm7(text) if encoding == GSM7 else text.encode("utf-16-be")
