//! The built-in credential rules: what each format looks like and which
//! keywords announce it.
//!
//! A rule is a regular expression over bytes (ASCII classes, no Unicode) with a
//! named group `s` for the secret itself (the range a finding reports and a
//! redaction replaces); optional groups are `n` (the name in a `name = value`
//! assignment), `u` (the user in a URL) and `v` (the part to preview, when the
//! secret starts with a fixed header); generic assignments also capture `p`,
//! `q` and `t` (see `rules/generic.rs`). Every rule has at least one keyword:
//! the prefilter runs a rule's expression only near one of them, so clean
//! input costs one multi-pattern pass. The families live in `rules/`.

/// The operator between a name and its value in code and config:
/// `name = v`, `"name": "v"`, `name := v`, `name => v`, with optional quotes.
macro_rules! assign {
    () => {
        r#"["']?\s*(?::=|=>|[:=])\s*["']?"#
    };
}

mod ai;
mod chat;
mod cloud;
mod generic;
mod infra;
mod keys;
mod registry;
mod vcs;

/// What must also hold for a match of the expression to be a finding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Check {
    /// A fixed-format token: only reject obvious stand-ins (`ghp_xxxx…`).
    Token,
    /// No extra check (private key blocks).
    None,
    /// A value found through context (`heroku_key = …`): it must look random,
    /// with at least this Shannon entropy in bits per byte.
    Entropy(f32),
    /// A `name = value` assignment: the name must not be a non-secret field
    /// (page tokens, token types) and the value must look like a generated
    /// secret, not code, a reference or a placeholder.
    Generic,
    /// `scheme://user:password@host`.
    UrlCredentials,
    /// `Basic <base64>` that decodes to `user:password`.
    BasicAuth,
    /// `header.payload.signature` whose header decodes to a JSON object.
    Jwt,
}

/// One rule as written in the tables.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleDef {
    pub id: &'static str,
    /// Matched ASCII-case-insensitively by the prefilter.
    pub keywords: &'static [&'static str],
    pub pattern: &'static str,
    pub check: Check,
    /// How far before a keyword hit a match can start.
    pub before: usize,
    /// How far after the end of a keyword hit a match can end.
    pub after: usize,
}

/// A fixed-prefix token: the keyword starts the match.
pub(crate) const fn token(
    id: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
) -> RuleDef {
    RuleDef {
        id,
        keywords,
        pattern,
        check: Check::Token,
        before: 0,
        after: 300,
    }
}

/// A value announced by a name (`heroku_api_key = …`), checked for entropy.
pub(crate) const fn context(
    id: &'static str,
    keywords: &'static [&'static str],
    pattern: &'static str,
    min_entropy: f32,
) -> RuleDef {
    RuleDef {
        id,
        keywords,
        pattern,
        check: Check::Entropy(min_entropy),
        before: 30,
        after: 300,
    }
}

/// Every built-in rule.
pub(crate) fn all() -> Vec<RuleDef> {
    [
        cloud::RULES,
        vcs::RULES,
        ai::RULES,
        registry::RULES,
        chat::RULES,
        infra::RULES,
        keys::RULES,
        generic::RULES,
    ]
    .concat()
}
