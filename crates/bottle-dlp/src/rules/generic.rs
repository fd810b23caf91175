//! Generic credentials: secrets in URLs, HTTP `Authorization` values, and
//! `password`/`secret`/`token`/`api_key` assignments whose value looks
//! generated.

use super::{Check, RuleDef};

/// The operator and value of an assignment, with the parts the generic check
/// looks at: the operator `p`, an opening quote `q`, and the characters `t`
/// after the value (a type annotation `name: Type = …` is code, not a value).
macro_rules! gassign {
    () => {
        r#"["']?\s*(?P<p>:=|=>|[:=])\s*(?P<q>["'`])?(?P<s>[^\s"'`;,]{10,200})(?P<t>[^\n]{0,2})"#
    };
}

/// `[\w.-]` around the keyword makes the whole name (`DB_PASSWORD_FILE`,
/// `next_page_token`) part of the match, so its check can look at it.
const fn assignment(
    id: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        keywords,
        pattern,
        check: Check::Generic,
        before: 30,
        after: 300,
    }
}

pub(crate) const RULES: &[RuleDef] = &[
    RuleDef {
        id: "url-credentials",
        keywords: &["://"],
        // Anchored at `://`; the scheme before it does not matter.
        pattern: concat!(
            r#"://(?P<u>[^\s:@/?#"'<>\[\]{}$]{0,100}):"#,
            r#"(?P<s>[^\s@/?#"'<>\[\]{}]{1,200})@[A-Za-z0-9_-]"#
        ),
        check: Check::UrlCredentials,
        before: 0,
        after: 400,
    },
    RuleDef {
        id: "http-basic-auth",
        keywords: &["basic"],
        pattern: r"(?i:\bbasic)\s+(?P<s>[A-Za-z0-9+/]{12,}={0,2})(?:[^A-Za-z0-9+/=]|$)",
        check: Check::BasicAuth,
        before: 0,
        after: 600,
    },
    RuleDef {
        id: "http-bearer-token",
        keywords: &["bearer"],
        pattern: r"(?i:\bbearer)\s+(?P<s>[A-Za-z0-9._~+/-]{20,}=*)(?:[^A-Za-z0-9._~+/=-]|$)",
        check: Check::Entropy(3.5),
        before: 0,
        after: 2048,
    },
    assignment(
        "generic-password",
        &["password", "passwd", "passphrase", "pwd"],
        concat!(
            r"(?P<n>(?i:(?:password|passwd|passphrase|pwd)[\w.-]{0,30}?))",
            gassign!()
        ),
    ),
    assignment(
        "generic-secret",
        &[
            "secret",
            "private_key",
            "privatekey",
            "signing_key",
            "encryption_key",
        ],
        concat!(
            r"(?P<n>(?i:(?:secret|private_?key|signing_?key|encryption_?key)[\w.-]{0,30}?))",
            gassign!()
        ),
    ),
    assignment(
        "generic-token",
        &["token"],
        concat!(r"(?P<n>(?i:token[\w.-]{0,30}?))", gassign!()),
    ),
    assignment(
        "generic-api-key",
        &[
            "apikey",
            "api_key",
            "api-key",
            "api.key",
            "access_key",
            "accesskey",
            "access-key",
            "app_key",
            "appkey",
            "api_secret",
        ],
        concat!(
            r"(?P<n>(?i:(?:api[_.-]?key|access[_.-]?key|app[_.-]?key|api[_.-]?secret)[\w.-]{0,30}?))",
            gassign!()
        ),
    ),
];
