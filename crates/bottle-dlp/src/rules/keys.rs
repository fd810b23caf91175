//! Key material: PEM and OpenSSH private key blocks of every kind (also
//! inside JSON strings with `\n` escapes), PuTTY keys, age keys, JWTs.

use super::{Check, RuleDef, token};

pub(crate) const RULES: &[RuleDef] = &[
    RuleDef {
        id: "private-key",
        keywords: &["PRIVATE KEY"],
        pattern: concat!(
            r"(?P<s>(?:-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
            r"|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----)",
            // Header lines (`Proc-Type: 4,ENCRYPTED`, `Comment: "..."`).
            r"(?:\\[rn]|\s)*(?:[A-Za-z-]+: [^\r\n\\]*(?:\\[rn]|\s)+)*",
            r"(?P<v>[A-Za-z0-9+/=]{20})(?:[A-Za-z0-9+/=\s]|\\[rn])*",
            r"(?:-{4,5} ?END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)? ?-{4,5})?)"
        ),
        check: Check::None,
        before: 45,
        after: 16 * 1024,
    },
    RuleDef {
        id: "putty-private-key",
        keywords: &["PuTTY-User-Key-File-"],
        pattern: concat!(
            r"(?P<s>PuTTY-User-Key-File-[23]: [\w.@-]+\r?\n(?:[^\r\n]*\r?\n){0,8}?",
            r"Private-Lines: \d+\r?\n(?P<v>[A-Za-z0-9+/=]{20})[A-Za-z0-9+/=\r\n]*)"
        ),
        check: Check::None,
        before: 0,
        after: 16 * 1024,
    },
    token(
        "age-secret-key",
        &["AGE-SECRET-KEY-1"],
        r"\b(?P<s>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
    ),
    RuleDef {
        id: "jwt",
        keywords: &["eyJ"],
        pattern: r"\b(?P<s>eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)",
        check: Check::Jwt,
        before: 0,
        after: 8 * 1024,
    },
];
