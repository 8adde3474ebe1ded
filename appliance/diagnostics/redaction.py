"""Redaction by rule, applied to every byte a bundle holds before anyone reviews it.

Each rule names a category; a value it finds is replaced by ``[category-N]``,
the same value by the same placeholder throughout one bundle (as ``sos clean``
does), so the vendor can still follow an address or a key id through the
logs. Secrets the box holds in files (session secret, monitor key, TLS key,
admin names, hashes) are also replaced literally, with their base64 and
URL-encoded forms. The mapping from placeholder to original is written to the
state directory (0600) and never into the bundle.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import quote, quote_plus


class Category(str, Enum):
    PRIVATE_KEY = "private-key"
    API_KEY = "api-key"
    SUPPORT_TOKEN = "support-token"
    PASSWORD_HASH = "password-hash"
    SETUP_CODE = "setup-code"
    SECRET = "secret"  # session ids and secrets, bearer tokens, key=value secrets, planted literals
    EMAIL = "email"
    MAC = "mac"
    IP = "ip"
    HOSTNAME = "hostname"
    USER = "user"
    TEXT = "text"  # prompt or completion text in any JSON-ish field that could carry it


@dataclass(frozen=True)
class Rule:
    category: Category
    pattern: re.Pattern[str]
    describes: str
    group: int = 0  # the part of the match that is replaced


_HEX_TOKEN = r"(?<![A-Za-z0-9_+/=-])[0-9a-fA-F]{32,}(?![A-Za-z0-9_+/=-])"
_B64_TOKEN = (r"(?<![A-Za-z0-9_+/=-])(?=[A-Za-z0-9_+/-]*\d)(?=[A-Za-z0-9_+/-]*[a-z])(?=[A-Za-z0-9_+/-]*[A-Z])"
              r"[A-Za-z0-9_+-][A-Za-z0-9_+/-]{30,}[A-Za-z0-9_+-]={0,2}(?![A-Za-z0-9_+/=-])")
_TLDS = ("local|lan|home|internal|intranet|corp|localdomain|box|arpa|example|test|invalid|com|net|org|io|de|uk|fr|nl|eu|"
         "ch|at|us|info|biz|cloud|dev|app")

RULES: tuple[Rule, ...] = (
    Rule(Category.PRIVATE_KEY, re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
                                          re.S), "PEM private keys"),
    Rule(Category.PRIVATE_KEY, re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+"), "age secret keys"),
    Rule(Category.API_KEY, re.compile(r"sk-appl-[A-Za-z0-9_-]+"), "the box's API keys (sk-appl-...)"),
    Rule(Category.SUPPORT_TOKEN, re.compile(r"sup-appl-[A-Za-z0-9_-]+"), "support tokens (sup-appl-...)"),
    Rule(Category.PASSWORD_HASH, re.compile(r"\$(?:argon2(?:id|i|d)|2[aby]|scrypt|pbkdf2[-_a-z0-9]*|[156])\$[^\s\"',;]+"),
         "password hashes (argon2, bcrypt, scrypt, pbkdf2, crypt)"),
    Rule(Category.SETUP_CODE, re.compile(r"\b[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}\b"),
         "one-time setup codes (XXXX-XXXX-XXXX)"),
    Rule(Category.SECRET, re.compile(r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})"),
         "credentials after Bearer/Basic", group=1),
    Rule(Category.SECRET, re.compile(r"(?i)\b(?:pass(?:word|wd)?|secret|token|api[_-]?key|session(?:[_-]?id)?|cookie|"
                                     r"csrf[_-]?token|authorization|private[_-]?key)[\"']?\s*[=:]\s*[\"']?"
                                     r"(?!(?i:bearer|basic)\s)([^\s\"',;&]{4,})"),
         "values of password, secret, token, key, session and cookie fields", group=1),
    Rule(Category.TEXT, re.compile(r"(?i)\"(?:prompt|messages|content|input|completion|suffix|text|response)\"\s*:\s*"
                                   r"(\"(?:[^\"\\]|\\.)*\"|\[[^\]]*\])"),
         "prompt and completion text in JSON fields (the box never logs it; this is the backstop)", group=1),
    Rule(Category.EMAIL, re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "e-mail addresses"),
    Rule(Category.MAC, re.compile(r"(?i)(?<![0-9a-f:-])(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}(?![0-9a-f:-])"),
         "MAC addresses"),
    Rule(Category.IP, re.compile(r"(?i)(?<![0-9a-z:.])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:%[a-z0-9]+)?"
                                 r"(?![0-9a-z:])"), "IPv6 addresses (except ::1 and ::)"),
    Rule(Category.IP, re.compile(r"(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
                                 r"(?![0-9]|\.\d)"), "IPv4 addresses (except 127.0.0.1 and 0.0.0.0)"),
    Rule(Category.HOSTNAME, re.compile(rf"(?i)\b(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})\b"),
         "host names under common LAN and public domains"),
    Rule(Category.SECRET, re.compile(_HEX_TOKEN), "any other hex string of 32+ digits (session ids, secrets, "
         "hashes), except the store's own sha256 sums"),
    Rule(Category.SECRET, re.compile(_B64_TOKEN), "any base64-looking string of 32+ characters mixing upper and "
         "lower case and digits"),
)

_WHOLE_WORDS = {Category.USER, Category.HOSTNAME}  # names are words: "dev" must not eat "device"
_KEEP = {"127.0.0.1", "0.0.0.0", "::1", "::", "255.255.255.255"}
_NOT_USERS = {"root", "nobody", "appliance", "daemon", "systemd", "admin"}


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        return False
    return True


def encodings(value: str) -> set[str]:
    """The forms a secret may take in what the box writes: plain, base64 (standard and URL-safe), URL-encoded."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode()}
    forms |= {f.rstrip("=") for f in set(forms)}
    return {f for f in forms if len(f) >= 4}


@dataclass
class Redactor:
    """One bundle's redaction: rules, literal secrets, and the consistent placeholder map."""

    literals: dict[str, Category] = field(default_factory=dict)
    keep: set[str] = field(default_factory=set)  # known public values (the store's sha256 sums)
    mapping: dict[tuple[Category, str], str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def add_literal(self, value: str | None, category: Category = Category.SECRET) -> None:
        """A secret known to the box, replaced wherever it appears, in any encoding the box uses."""
        if not value or len(value.strip()) < 4:
            return
        for form in encodings(value.strip()):
            self.literals.setdefault(form, category)

    def placeholder(self, category: Category, original: str) -> str:
        key = (category, original)
        if key not in self.mapping:
            n = sum(1 for c, _ in self.mapping if c == category) + 1
            self.mapping[key] = f"[{category.value}-{n}]"
        self.counts[category.value] += 1
        return self.mapping[key]

    def redact(self, text: str) -> str:
        for literal in sorted(self.literals, key=len, reverse=True):
            if literal not in text:
                continue
            category = self.literals[literal]
            if category in _WHOLE_WORDS:
                pattern = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(literal)}(?![A-Za-z0-9_-])")
                text = pattern.sub(lambda _m, c=category, v=literal: self.placeholder(c, v), text)
            else:
                text = text.replace(literal, self.placeholder(category, literal))
        for rule in RULES:
            text = rule.pattern.sub(lambda m, r=rule: self._replace(r, m), text)
        return text

    def _replace(self, rule: Rule, match: re.Match[str]) -> str:
        value = match.group(rule.group)
        whole = match.group(0)
        if value.startswith("[") and value.endswith("]") and re.fullmatch(r"\[[a-z-]+-\d+\]", value):
            return whole
        if value in self.keep or value.lower() in self.keep:
            return whole
        if rule.category is Category.IP:
            if value in _KEEP or value.split("%")[0] in _KEEP or (":" in value and not _is_ipv6(value)):
                return whole
        if rule.category is Category.TEXT and value in ('""', "[]"):
            return whole
        start = match.start(rule.group) - match.start(0)
        replacement = self.placeholder(rule.category, value)
        if rule.category is Category.TEXT:
            replacement = f'"{replacement}"'  # the JSON around it stays valid
        return whole[:start] + replacement + whole[start + len(value):]

    def write_mapping(self, path: Path) -> None:
        """The placeholder -> original map, 0600 under the state directory: the vendor never sees it."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({placeholder: {"category": c.value, "original": original}
                       for (c, original), placeholder in self.mapping.items()}, fh, indent=1)


def user_literals(names: list[str]) -> list[str]:
    """User names worth replacing literally; system accounts and words that are everywhere are left alone."""
    return [n for n in names if n and len(n) >= 3 and n.lower() not in _NOT_USERS]


def describe_rules() -> list[tuple[str, str]]:
    """(category, what it catches), for docs, the review page and the closing note."""
    return [(r.category.value, r.describes) for r in RULES]
