//! Whether a match of a rule's expression is a finding: the per-rule checks
//! that an expression cannot say (entropy, placeholders, names of fields that
//! are not secrets, what a `Basic` value or a JWT header decodes to).

use crate::decode::base64_decode;
use crate::entropy::{class_count, contains, distinct, is_placeholder, looks_like_code, shannon};
use crate::rules::Check;

/// The captured parts of one match.
pub(crate) struct Groups<'h> {
    pub secret: &'h [u8],
    pub name: Option<&'h [u8]>,
    pub user: Option<&'h [u8]>,
    /// For assignments: the operator, whether the value was quoted, and the
    /// bytes right after the value.
    pub operator: Option<&'h [u8]>,
    pub quoted: bool,
    pub after: Option<&'h [u8]>,
}

pub(crate) fn accept(check: Check, g: &Groups<'_>) -> bool {
    match check {
        Check::None => true,
        Check::Token => token_ok(g.secret),
        Check::Entropy(min) => {
            token_ok(g.secret) && !is_placeholder(g.secret) && shannon(g.secret) >= f64::from(min)
        }
        Check::Generic => g.name.is_none_or(name_ok) && generic_value_ok(g.secret) && literal_ok(g),
        Check::UrlCredentials => url_password_ok(g.user.unwrap_or_default(), g.secret),
        Check::BasicAuth => basic_ok(g.secret),
        Check::Jwt => jwt_ok(g.secret),
    }
}

/// Rejects only obvious stand-ins: `ghp_xxxxxxxx…`, `sk-ant-api03-0000…`.
/// A key-shaped documentation example (`AKIAIOSFODNN7EXAMPLE`) is still a
/// finding: the proxy cannot know it is harmless.
fn token_ok(secret: &[u8]) -> bool {
    distinct(secret) >= 6 && longest_run(secret) < 8
}

fn longest_run(s: &[u8]) -> usize {
    let (mut best, mut cur) = (0, 0);
    for (i, &b) in s.iter().enumerate() {
        cur = if i > 0 && s[i - 1] == b { cur + 1 } else { 1 };
        best = best.max(cur);
    }
    best
}

/// Parts of a field name that mean its value is not a secret even though the
/// name says `token` or `password` (`next_page_token`, `password_min_length`,
/// `max_tokens`, `token_type`).
const NON_SECRET_NAME_PARTS: &[&str] = &[
    "page",
    "cursor",
    "next",
    "csrf",
    "xsrf",
    "continuation",
    "sync",
    "type",
    "count",
    "length",
    "size",
    "max",
    "min",
    "expir",
    "url",
    "uri",
    "endpoint",
    "file",
    "path",
    "name",
    "hash",
    "digest",
    "checksum",
    "policy",
    "prompt",
    "label",
    "hint",
    "field",
    "format",
    "mode",
    "header",
    "limit",
    "timeout",
    "ttl",
    "usage",
    "tokenizer",
    "tokens",
    "_ref",
    "env",
    "var",
    "key_id",
    "keyid",
    "method",
    "provider",
    "regex",
    "pattern",
    "reset",
    "strength",
    "rotation",
    "placeholder",
    "prefix",
    "version",
    "status",
    "_at",
    "date",
    "time",
    "id_",
];

fn name_ok(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    !NON_SECRET_NAME_PARTS
        .iter()
        .any(|p| contains(&lower, p.as_bytes()))
}

/// An unquoted value is a literal only where config files put one: after
/// `=`, or after `:` at the end of its line (YAML). `name: Type = …`,
/// `name: Type,` and `field: other.field` are code.
fn literal_ok(g: &Groups<'_>) -> bool {
    let v = g.secret;
    // Letters only usually read as words or names (`Whitespace`,
    // `CamelCaseType`); only a long, quoted, random-looking one is a value.
    if v.iter().all(u8::is_ascii_alphabetic) {
        return g.quoted && v.len() >= 16 && shannon(v) >= 3.5;
    }
    if g.quoted {
        return true;
    }
    let identifier = v
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(b));
    let dotted = identifier && v.contains(&b'.') && !v.starts_with(b".");
    if dotted || v.windows(2).any(|w| w == b"::") {
        return false;
    }
    if g.operator == Some(b":") {
        let after = g.after.unwrap_or_default();
        return after.is_empty() || after[0] == b'\r' || after.starts_with(b" #");
    }
    true
}

/// A literal that looks generated: long enough, mixed classes, high entropy,
/// and not code, a reference, a URL, a path or a placeholder.
fn generic_value_ok(v: &[u8]) -> bool {
    v.len() >= 10
        && v.iter().any(u8::is_ascii_alphabetic)
        && !looks_like_code(v)
        && !is_placeholder(v)
        && !contains(v, b"://")
        && !v.starts_with(b"/")
        && !v.starts_with(b".")
        && !v.starts_with(b"~")
        && !v.starts_with(b"-")
        && !is_identifier(v)
        && class_count(v) >= 2
        && shannon(v) >= 3.0
}

/// `MLKEM512_SECRET_KEY_BYTES` or `secret_key_from_env`: a constant or a
/// variable, which is code naming a secret, not the secret. Generated
/// values are not made of underscore-separated words.
fn is_identifier(v: &[u8]) -> bool {
    let word_chars = v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let upper = v
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    let lower = v
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    let segments: Vec<&[u8]> = v.split(|&b| b == b'_').collect();
    word_chars
        && (upper || lower)
        && segments.len() >= 2
        && segments
            .iter()
            .all(|s| s.len() >= 2 && s.iter().any(u8::is_ascii_alphabetic) && is_word(s))
}

/// A word as names use them: letters with at most a number inside or at an
/// end (`MLKEM512`, `sha256`, `v2`), not letters and digits alternating.
fn is_word(s: &[u8]) -> bool {
    s.windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count()
        <= 2
}

/// Passwords in URLs that are stand-ins in docs and compose files.
const TRIVIAL_PASSWORDS: &[&str] = &[
    "password", "passwd", "pass", "pwd", "pw", "secret", "changeme", "example", "test", "dummy",
];

fn url_password_ok(user: &[u8], pass: &[u8]) -> bool {
    let lower = pass.to_ascii_lowercase();
    // One character (`spiffe://x:x@host`, `u:p@`) is a stand-in, not a password.
    if pass.len() < 2 || pass == user || TRIVIAL_PASSWORDS.iter().any(|t| lower == t.as_bytes()) {
        return false;
    }
    // `host:8080@…` is a port, `%s`/`%(pw)s` a format string.
    if pass.len() <= 5 && pass.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let reference = [&b"$"[..], b"{", b"<", b"*", b"%("]
        .iter()
        .any(|p| pass.starts_with(p))
        || pass == b"%s";
    !reference
        && !contains(&lower, b"your")
        && !contains(&lower, b"xxx")
        && !contains(&lower, b"placeholder")
}

fn basic_ok(value: &[u8]) -> bool {
    let decoded = base64_decode(value);
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    decoded.iter().all(|b| (0x20..0x7f).contains(b))
        && !user.is_empty()
        && !pass.is_empty()
        && url_password_ok(user, pass)
}

fn jwt_ok(token: &[u8]) -> bool {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    let json = |p: &[u8]| {
        let d = base64_decode(p);
        d.first() == Some(&b'{') && d.iter().all(|&b| b >= 0x20 || b == b'\n' || b == b'\t')
    };
    json(header) && json(payload) && contains(&base64_decode(header), b"\"alg\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rejects_stand_ins_only() {
        assert!(token_ok(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(!token_ok(b"ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(!token_ok(b"ghp_0000000000000000000000000000000000a1"));
    }

    #[test]
    fn generic_values() {
        assert!(generic_value_ok(b"Zr8#kP2!vQ9x"));
        assert!(generic_value_ok(b"8f3kZq0pL1mN7vB2"));
        assert!(
            generic_value_ok(b"Kx9_pQ2mZ7_vB4nL"),
            "mixed case with underscores is generated"
        );
        assert!(
            generic_value_ok(b"a9f3k2q0p1m7v_b2"),
            "a lone digit-letter run is not a word list"
        );
        for v in [
            &b"hunter2"[..],
            b"authentication",
            b"${DB_PASSWORD}",
            b"os.environ.get(",
            b"your-token-here",
            b"https://example.com/a",
            b"1234567890",
            b"/etc/secret/path",
            b"MLKEM512_SECRET_KEY_BYTES",
            b"secret_key_from_env",
            b"AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(!generic_value_ok(v), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn type_annotations_and_field_copies_are_code() {
        let g = |secret: &'static [u8], op: &'static [u8], quoted, after: &'static [u8]| Groups {
            secret,
            name: None,
            user: None,
            operator: Some(op),
            quoted,
            after: Some(after),
        };
        assert!(!literal_ok(&g(b"X509CertificateFlag", b":", false, b" =")));
        assert!(!literal_ok(&g(b"node.colon2_token", b":", false, b",")));
        assert!(!literal_ok(&g(
            b"_bindgen_ty_5::IFLA_TOKEN",
            b":",
            false,
            b" ="
        )));
        assert!(!literal_ok(&g(b"Whitespace", b"=", false, b" +")));
        assert!(literal_ok(&g(b"Zr8kP2vQ9xLm", b":", false, b"")));
        assert!(literal_ok(&g(b"Zr8kP2vQ9xLm", b"=", false, b" #")));
        assert!(literal_ok(&g(b"IJzgfxgOlXBLaXcYPh", b"=", true, b"\"")));
    }

    #[test]
    fn names() {
        assert!(name_ok(b"DB_PASSWORD"));
        assert!(name_ok(b"github_token"));
        assert!(!name_ok(b"nextPageToken"));
        assert!(!name_ok(b"max_tokens"));
        assert!(!name_ok(b"token_type"));
    }

    #[test]
    fn url_passwords() {
        assert!(url_password_ok(b"admin", b"Zr8kP2vQ9x"));
        assert!(!url_password_ok(b"postgres", b"postgres"));
        assert!(!url_password_ok(b"user", b"password"));
        assert!(!url_password_ok(b"user", b"${PASSWORD}"));
        assert!(!url_password_ok(b"host", b"8080"));
    }

    #[test]
    fn basic_and_jwt() {
        assert!(basic_ok(b"YWxhZGRpbjpvcGVuc2VzYW1l")); // aladdin:opensesame
        assert!(!basic_ok(b"authentication"));
        assert!(!basic_ok(b"dXNlcjpwYXNzd29yZA==")); // user:password
        assert!(jwt_ok(
            b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
        ));
        assert!(!jwt_ok(b"eyJzzzzzzzzzzzzz.eyJzzzzzzz.abc"));
    }
}
