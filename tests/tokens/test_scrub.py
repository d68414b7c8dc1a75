"""The scrubber: every common encoding of a secret is removed from third-party text."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus, urlencode

import pytest

from backend.services.integrations.provider_calls import MAX_REASON
from backend.services.integrations.records import HIDDEN
from backend.services.integrations.scrub import safe_line, scrub

TOKEN = "ya29.a0Af/H6+SMBx=Qz9~kLm"  # '/', '+' and '=' change under every encoding
WEIRD = 'p/q+r=s"t\\u é v'  # JSON specials, a backslash, a non-ASCII letter and a space


def lower_hex(text: str) -> str:
    """Percent escapes in lower-case hex (urllib writes upper case)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def json_unicode(text: str, upper: bool = False) -> str:
    """Every character as a JSON ``\\uXXXX`` escape."""
    return "".join(f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}" for c in text)


def base64_cores(secret: str) -> list[str]:
    """For each alignment in a larger blob, the characters whose bits are all the secret's."""
    data, cores = secret.encode(), []
    for skip in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(bytes(skip) + data).decode()
            cores.append(blob[-(-8 * skip // 6) : (8 * skip + 8 * len(data)) // 6])
    return cores


def leaked_forms(secret: str) -> list[str]:
    """Every form of ``secret`` this suite checks outside text for."""
    percent = quote(secret, safe="")
    dumped = json.dumps(secret)[1:-1]
    forms = [
        secret,
        percent,
        lower_hex(percent),
        quote(percent, safe=""),
        quote_plus(secret),
        dumped,
        dumped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json_unicode(secret),
        json_unicode(secret, upper=True),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode(),
        *base64_cores(secret),
    ]
    return list(dict.fromkeys(forms))


def assert_no_form(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in leaked_forms(secret):
            assert form not in text, f"{form!r} of a secret is in {text!r}"


# --------------------------------------------------------------------------- encodings


def test_raw_secret_is_replaced_and_the_rest_kept() -> None:
    assert scrub(f"bad token {TOKEN}, try again", [TOKEN]) == f"bad token {HIDDEN}, try again"
    assert scrub(f"{TOKEN}{TOKEN}", [TOKEN]) == HIDDEN * 2  # back to back: each replaced
    assert scrub("abcabcab", ["abcab"]) == HIDDEN  # two overlapping occurrences: no fragment
    assert scrub("nothing secret here", [TOKEN]) == "nothing secret here"


def test_no_secrets_none_and_empty_are_skipped() -> None:
    assert scrub("text", []) == "text"
    assert scrub("text", [None, ""]) == "text"
    assert scrub(f"a={TOKEN} r=refresh-1", [None, TOKEN, "", "refresh-1"]) == (
        f"a={HIDDEN} r={HIDDEN}"
    )


@pytest.mark.parametrize("case", ["upper", "lower"])
def test_percent_encoded_in_either_hex_case(case: str) -> None:
    encoded = quote(TOKEN, safe="")
    assert "%2F" in encoded and encoded != TOKEN
    if case == "lower":
        encoded = lower_hex(encoded)
        assert "%2f" in encoded
    text = f"GET https://api.example/x?access_token={encoded}&v=2 returned 401"
    assert (
        scrub(text, [TOKEN]) == f"GET https://api.example/x?access_token={HIDDEN}&v=2 returned 401"
    )


def test_partially_percent_encoded() -> None:
    only_plus = quote(TOKEN, safe="/=")  # '/' and '=' left as they are
    every_other = "".join(
        quote(c, safe="") if i % 2 else f"%{ord(c):02x}" for i, c in enumerate(TOKEN)
    )  # every other character encoded, letters too, in both hex cases
    for encoded in (only_plus, every_other):
        assert scrub(f"url=/x?t={encoded}&y", [TOKEN]) == f"url=/x?t={HIDDEN}&y"


def test_double_percent_encoded() -> None:
    twice = quote(quote(TOKEN, safe=""), safe="")
    assert "%252F" in twice
    assert scrub(f"next={twice}", [TOKEN]) == f"next={HIDDEN}"
    assert scrub(f"next={lower_hex(twice)}", [TOKEN]) == f"next={HIDDEN}"


def test_form_encoded_space_as_plus() -> None:
    body = urlencode({"grant_type": "refresh_token", "refresh_token": WEIRD})
    assert "+%C3%A9+v" in body
    assert scrub(f"POST /token {body}", [WEIRD]) == (
        f"POST /token grant_type=refresh_token&refresh_token={HIDDEN}"
    )


def test_json_escaped() -> None:
    slash = json.dumps({"token": TOKEN}).replace("/", "\\/")  # PHP's and Go's style
    assert "\\/" in slash
    assert scrub(slash, [TOKEN]) == f'{{"token": "{HIDDEN}"}}'
    for unicode in (json_unicode(TOKEN), json_unicode(TOKEN, upper=True)):
        assert scrub(f'{{"t": "{unicode}"}}', [TOKEN]) == f'{{"t": "{HIDDEN}"}}'
    # \" \\ \u00e9: the quote, backslash and non-ASCII letter of WEIRD, escaped
    for dumped in (json.dumps(WEIRD), json.dumps(WEIRD, ensure_ascii=False)):
        assert scrub(f'{{"error": {dumped}}}', [WEIRD]) == f'{{"error": "{HIDDEN}"}}'
    assert "\\u00e9" in json.dumps(WEIRD)
    upper = json.dumps(WEIRD).replace("\\u00e9", "\\u00E9")
    assert scrub(upper, [WEIRD]) == f'"{HIDDEN}"'
    nested = json.dumps({"body": json.dumps({"t": TOKEN}).replace("/", "\\/")})
    assert TOKEN not in scrub(nested, [TOKEN]) and HIDDEN in scrub(nested, [TOKEN])


@pytest.mark.parametrize("alphabet", ["standard", "url-safe"])
@pytest.mark.parametrize("padded", [True, False])
def test_base64_of_the_secret(alphabet: str, padded: bool) -> None:
    for secret in (TOKEN, TOKEN + "x", TOKEN + "xy"):  # each of the three padding lengths
        encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
        encoded = encode(secret.encode()).decode()
        if not padded:
            encoded = encoded.rstrip("=")
        assert scrub(f"token {encoded} rejected", [secret]) == f"token {HIDDEN} rejected"


def assert_blob_cut_at_the_secret(blob: str, scrubbed: str, before: int, size: int) -> None:
    """No character holding any of the secret's bits remains around HIDDEN: the core, and
    the partial characters on either side that carry a few of its bits."""
    left, right = scrubbed.split(HIDDEN)
    assert blob.startswith(left) and blob.endswith(right)
    assert 6 * len(left) <= 8 * before  # what is left ends before the secret's first bit
    if right.rstrip("="):  # what is right starts after the secret's last bit
        assert 6 * (len(blob) - len(right)) >= 8 * (before + size)


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        ("user:", ""),  # Basic credentials: the secret starts at byte 5, alignment 2
        ("client-id:", ""),  # byte 10: alignment 1
        ("ab:", ""),  # byte 3: alignment 0
        ("", "z"),  # and inside the blob, at alignments 0, 1 and 2
        ("x", "z"),
        ("xy", "z"),
    ],
)
def test_base64_of_the_secret_inside_a_blob(
    encode: Callable[[bytes], bytes], prefix: str, suffix: str
) -> None:
    for secret in (TOKEN, WEIRD):
        blob = encode(f"{prefix}{secret}{suffix}".encode()).decode()
        scrubbed = scrub(blob, [secret])
        assert_blob_cut_at_the_secret(blob, scrubbed, len(prefix.encode()), len(secret.encode()))
        assert_no_form(scrubbed, secret)
        header = f"echoed Authorization: Basic {blob} (401)"
        assert scrub(header, [secret]) == f"echoed Authorization: Basic {scrubbed} (401)"


def test_base64_at_all_three_alignments_of_user_and_xy() -> None:
    for blob_of in (lambda s: f"user:{s}", lambda s: f"xy{s}z"):
        for pad in ("", "a", "ab"):  # shifts the secret by 0, 1 and 2 bytes
            text = blob_of(pad + TOKEN)
            blob = base64.b64encode(text.encode()).decode()
            scrubbed = scrub(blob, [TOKEN])
            assert HIDDEN in scrubbed
            assert_blob_cut_at_the_secret(blob, scrubbed, text.index(TOKEN), len(TOKEN))


def test_a_secret_of_special_characters_in_every_form() -> None:
    secret = WEIRD
    forms = leaked_forms(secret)
    assert len(forms) > 10
    for form in forms:
        assert scrub(f"<{form}>", [secret]) == f"<{HIDDEN}>", form
    together = " | ".join(forms)
    assert_no_form(scrub(together, [secret]), secret)


def test_a_one_character_secret_does_not_destroy_ordinary_text() -> None:
    text = "invalid_grant: the 6 keys UQ eg were given, AHo= AAB6"  # 'z' in base64 pieces
    assert scrub(text, ["z"]) == text
    assert scrub("a zoo", ["z"]) == f"a {HIDDEN}oo"  # the secret itself always goes
    assert scrub("q=%7A", ["z"]) == f"q={HIDDEN}"
    assert scrub("invalid_grant", ["é"]) == "invalid_grant"


# --------------------------------------------------------------------------- one line


def test_provider_text_becomes_one_escaped_line() -> None:
    text = "bad\x1b[2J request\r\nfake row\x07\tend\u202e"
    line = safe_line(text, [TOKEN], MAX_REASON)
    assert line == "bad\\x1b[2J request fake row\\x07 end\\u202e"
    assert line.isprintable() and "\n" not in line and "\r" not in line


def test_the_line_is_bounded_and_scrubbed_before_the_cut() -> None:
    assert safe_line("x " * 1000, [], MAX_REASON) == ("x " * 1000)[: MAX_REASON - 3] + "..."
    assert len(safe_line("y" * 5000, [], MAX_REASON)) == MAX_REASON
    # The token would straddle the cut: scrubbing first leaves none of it.
    for start in range(MAX_REASON - 30, MAX_REASON + 3):
        text = "x" * start + quote(TOKEN, safe="") + " tail"
        line = safe_line(text, [TOKEN], MAX_REASON)
        assert len(line) <= MAX_REASON
        assert TOKEN[:5] not in line and "ya29" not in line


def test_joining_or_escaping_cannot_spell_a_secret() -> None:
    escape = "ab\\x1bcd-secret"  # a backslash then "x1b": what escaping makes of ESC
    assert safe_line("x ab\x1bcd-secret y", [escape], MAX_REASON) == f"x {HIDDEN} y"
    spaced = "two words-secret"
    assert safe_line("x two \t words-secret", [spaced], MAX_REASON) == f"x {HIDDEN}"
