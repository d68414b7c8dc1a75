"""Known secrets removed from third-party text, in the encodings that text echoes them in.

A provider's error message may quote the request it refused, and with it a token: as
is, percent-encoded in a URL (partly, in either hex case, even twice), form-encoded,
JSON-escaped, or base64-encoded alone or inside a larger blob such as the
``Authorization: Basic base64(user:token)`` header. Replacing only the exact string
leaks all of those, so ``scrub`` matches every form of each secret and replaces it with
``<hidden>``; ``safe_line`` then makes the result one bounded, escaped line that is safe
to store, log, raise and print.

Each secret becomes one regular expression in which every character may appear in any
of its forms; each base64 alignment of a secret becomes another. Every match, at every
position, is replaced, overlapping matches as one, so a form found inside another is
never left half visible. The patterns are built per call and kept nowhere by this module.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from backend.services.integrations.records import HIDDEN
from utils.render import printable

# Shorter base64 pieces are two-letter syllables of ordinary text: a 1-byte secret's
# would delete "eA" from every word. The secret itself is always scrubbed.
MIN_BASE64 = 8

_STANDARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL_SAFE = _STANDARD[:62] + "-_"
# JSON's short escapes; any character may also be written \uXXXX.
_JSON_SHORT = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
}


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every known form of each secret (None and "" skipped) as ``<hidden>``."""
    return _replace(text, _patterns(secrets))


def safe_line(text: str, secrets: Iterable[str | None], limit: int) -> str:
    """Third-party text made safe to keep and show: secrets scrubbed, one escaped line.

    Whitespace runs become one space, every other non-printable character is shown as an
    escape (``\\x1b``), and the line is cut to ``limit`` characters, ending in "...".
    Scrubbing comes first, so a cut never leaves part of a secret behind; it is repeated
    after escaping, which could spell a secret that holds backslashes or spaces.
    """
    patterns = _patterns(secrets)
    line = printable(" ".join(_replace(text, patterns).split()))
    line = _replace(line, patterns)
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------- matching


def _replace(text: str, patterns: list[re.Pattern[str]]) -> str:
    """Every match of every pattern, overlapping or not, replaced (merged) by HIDDEN."""
    spans = sorted(
        (match.start(1), match.end(1))
        for pattern in patterns
        for match in pattern.finditer(text)
        if match.end(1) > match.start(1)
    )
    if not spans:
        return text
    parts: list[str] = []
    done = 0  # text[:done] is already in parts
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start < end:
            end = max(end, next_end)
            continue
        parts += [text[done:start], HIDDEN]
        done, (start, end) = end, (next_start, next_end)
    parts += [text[done:start], HIDDEN, text[end:]]
    return "".join(parts)


def _patterns(secrets: Iterable[str | None]) -> list[re.Pattern[str]]:
    """Per secret: its character-level forms, and its base64 forms at each alignment.

    Each is a lookahead around a group, so ``finditer`` tries every position and finds
    overlapping occurrences too.
    """
    sources: list[str] = []
    for secret in dict.fromkeys(s for s in secrets if s):
        sources.append("".join(_character(char) for char in secret))
        sources += _base64_sources(secret.encode("utf-8"))
    return [re.compile(f"(?=({source}))") for source in sources]


def _hex(value: int, digits: int) -> str:
    """``value`` in hex, each letter matching either case (``%2f`` and ``%2F``)."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{digits}x}")


def _character(char: str) -> str:
    """One character of a secret in any of its forms, longest first so matches are whole.

    Percent-encoded per UTF-8 byte (``%25`` before it: encoded twice), JSON-escaped
    (after any number of backslashes: JSON inside JSON), ``+`` for a space (forms), raw.
    """
    forms = ["".join(f"%(?:25)?{_hex(byte, 2)}" for byte in char.encode("utf-8"))]
    code = ord(char)
    units = (
        [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)]
    )
    forms.append("".join(rf"\\+u{_hex(unit, 4)}" for unit in units))
    if char in _JSON_SHORT:
        forms.append(r"\\+" + re.escape(_JSON_SHORT[char]))
    if char == " ":
        forms.append(r"\+")
    forms.append(re.escape(char))
    return f"(?:{'|'.join(forms)})"


def _base64_character(char: str) -> str:
    """A base64 character as is, or percent- or JSON-escaped where a URL or JSON would."""
    if char == "+":
        return r"(?:%2[bB]|\+)"
    if char == "/":
        return r"(?:%2[fF]|\\+/|/)"
    return char  # letters, digits, '-' and '_' are never escaped


def _base64_sources(data: bytes) -> list[str]:
    """The secret's base64 forms: after 0, 1 or 2 bytes of a blob, both alphabets.

    The core is the characters whose 6 bits all come from the secret, the same whatever
    surrounds it; the character on each side holds a few of its bits too and matches any
    character that agrees with them. Padding may follow if the secret ends the blob.
    """
    size, bits = 8 * len(data), int.from_bytes(data, "big")
    sources: list[str] = []
    for skip in range(3):
        begin, end = 8 * skip, 8 * skip + size  # the secret's bits in the encoded blob
        first, last = -(-begin // 6), end // 6  # characters entirely inside them
        if last - first < MIN_BASE64:
            continue
        core = base64.b64encode(bytes(skip) + data).decode("ascii")[first:last]
        lead_bits, tail_bits = 6 * first - begin, end - 6 * last
        top, bottom = bits >> (size - lead_bits), bits & ((1 << tail_bits) - 1)
        lead = [(p << lead_bits) | top for p in range(1 << (6 - lead_bits))] if lead_bits else []
        tail = [(bottom << (6 - tail_bits)) | q for q in range(1 << (6 - tail_bits))]
        for alphabet in (_STANDARD, _URL_SAFE):
            encoded = core.translate(str.maketrans(_STANDARD, alphabet))
            pieces = [_base64_character(char) for char in encoded]
            if lead:
                pieces.insert(0, _one_of(alphabet[value] for value in lead) + "?")
            if tail_bits:
                pieces.append(_one_of(alphabet[value] for value in tail) + "?")
            pieces.append("(?:=|%3[dD]){0,2}")
            sources.append("".join(pieces))
    return sources


def _one_of(chars: Iterable[str]) -> str:
    return "[" + "".join(re.escape(char) for char in chars) + "]"
