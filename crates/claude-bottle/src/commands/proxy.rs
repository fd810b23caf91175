//! `proxy --config FILE [--listen ADDR]`: the egress proxy on its own.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use bottle_egress::Error;
use bottle_egress::config::ParseError;
use bottle_manifest::node::{YamlError, describe, syntax_hint};

use crate::report::UsageError;

pub fn run(config: &Path, listen: Option<SocketAddr>) -> Result<ExitCode> {
    // It reads tokens from its environment and holds them: as the sidecar,
    // its memory is no other same-uid process's to read.
    super::sidecar::not_dumpable()?;
    bottle_egress::run_standalone(config, listen).map_err(|e| explain(config, e))?;
    Ok(ExitCode::SUCCESS)
}

/// A config that cannot be used is bad usage (exit 2): said once, with the
/// file and what to fix. The library's errors carry their cause both in the
/// message and as the source, so passed on as they are the cause is printed
/// twice; its parse errors add the parser's snippet, which repeats the
/// message again. An address that cannot be listened on is bad usage too:
/// it comes from `--listen` or the file, and the user picks another.
/// Failures while serving (the runtime) pass unchanged.
fn explain(config: &Path, e: Error) -> anyhow::Error {
    let file = config.display();
    let (message, hint) = match e {
        Error::Read { path, source } => (
            format!("cannot read `{}`: {source}", path.display()),
            "check the path given to `--config` and the files it names (relative to its \
             folder), and their permissions"
                .to_string(),
        ),
        Error::Parse { path, source } => {
            let e = parse_failure(&source);
            let at = match (e.line, e.column) {
                (Some(l), Some(c)) => format!(":{l}:{c}"),
                (Some(l), None) => format!(":{l}"),
                _ => String::new(),
            };
            let hint = if e.syntax {
                e.hint
            } else {
                value_hint(&e.message)
            };
            (
                format!("`{}`{at}: {}", path.display(), e.message),
                hint.to_string(),
            )
        }
        Error::Invalid(m) => (
            format!("`{file}`: {m}"),
            "fix that key in the config file".to_string(),
        ),
        Error::MissingSecret(name) => (
            format!("`{file}`: the environment variable `{name}` it names is not set"),
            format!("export `{name}` in this environment before starting the proxy"),
        ),
        Error::Ca(m) => (
            format!("`{file}`: `ca`: {m}"),
            "`ca` names a PEM certificate and its private key; omit it for a fresh CA".to_string(),
        ),
        Error::Tls(m) => (
            format!("`{file}`: TLS setup: {m}"),
            "check `upstream_ca`: it names a file of PEM certificates".to_string(),
        ),
        Error::Listen { addr, source } => listen_failure(&addr, &source),
        other => return other.into(),
    };
    UsageError::new(message).with_hint(hint).into()
}

/// Why `addr` cannot be listened on, and what to do, by the kind of the
/// failure: the OS's own text ("Address already in use (os error 98)")
/// says what but not what next.
fn listen_failure(addr: &str, e: &std::io::Error) -> (String, String) {
    let port = addr.rsplit(':').next().unwrap_or(addr);
    let other = "pass another address with `--listen ADDR:PORT`, or change `listen` in the \
                 config file";
    let (what, hint) = match e.kind() {
        ErrorKind::AddrInUse => (
            "the address is already in use".to_string(),
            format!(
                "another program listens on port {port} (`ss -ltnp 'sport = :{port}'` shows \
                 which); stop it, or {other}"
            ),
        ),
        ErrorKind::PermissionDenied => (
            "permission denied".to_string(),
            format!("ports below 1024 need privileges; use a port of 1024 or more: {other}"),
        ),
        ErrorKind::AddrNotAvailable => (
            "no network interface of this machine has that address".to_string(),
            format!("listen on `127.0.0.1:{port}` (this machine only) or `0.0.0.0:{port}`"),
        ),
        _ => (e.to_string(), other.to_string()),
    };
    (format!("cannot listen on `{addr}`: {what}"), hint)
}

/// A parse error of the config in the manifest's form: YAML through the
/// manifest's own rendering (our words, the place, a hint), JSON with its
/// place taken out of serde_json's text.
fn parse_failure(e: &ParseError) -> YamlError {
    match e {
        ParseError::Yaml(e) => describe(e, 0),
        ParseError::Json(e) => {
            // serde_json's text ends with its own " at line L column C".
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full);
            let message: String = message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let hint = syntax_hint(&message);
            YamlError {
                message,
                line: u32::try_from(e.line()).ok().filter(|&n| n > 0),
                column: u32::try_from(e.column()).ok().filter(|&n| n > 0),
                hint,
                syntax: e.is_syntax() || e.is_eof(),
            }
        }
    }
}

/// What to do about a value the config's types do not take: a key or
/// value it does not know, or a value of the wrong kind.
fn value_hint(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "fix the key's spelling, or remove it; the keys allowed there are listed above"
    } else if message.starts_with("unknown variant") {
        "use one of the values listed above"
    } else {
        "the value there is not of the kind its key takes: `allow`, `tokens`, \
         `known_secret_env`, `host_addresses` and a route's `methods`, `paths` and `ports` are \
         lists, `ca` and `resolve` are mappings, the other keys single values"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The place is kept apart from the message (which then has no "at
    /// line" of its own), and a syntax error is told from a value that does
    /// not fit, for YAML and JSON alike.
    #[test]
    fn parse_errors_keep_their_place_apart() {
        let cases = [
            ("dlp: block\nallow: [{host: a.com}\n", 2, 8, true),
            ("dlp: block\nallow: {host: a.com}\n", 2, 8, false),
            ("dlp: block\ndlp: off\n", 2, 1, true),
            ("dlp: sometimes\n", 1, 6, false),
            ("{\"allow\": [}", 1, 12, true),
            ("{\"allow\": 5}", 1, 11, false),
            ("{\"allow\": [", 1, 11, true),
        ];
        for (text, line, column, syntax) in cases {
            let Err(e) = bottle_egress::config::parse_text(text) else {
                panic!("{text:?} parsed");
            };
            let e = parse_failure(&e);
            assert_eq!(
                (e.line, e.column, e.syntax),
                (Some(line), Some(column), syntax),
                "{text:?}: {}",
                e.message
            );
            assert!(!e.message.contains("line"), "{text:?}: {}", e.message);
            assert!(!e.message.is_empty(), "{text:?}");
        }
    }

    /// Each failure to listen says what, with the address, and what next;
    /// the OS's `(os error N)` text is not the message.
    #[test]
    fn listen_failures_say_why_and_what_next() {
        let cases = [
            (
                ErrorKind::AddrInUse,
                "already in use",
                "`ss -ltnp 'sport = :80'`",
            ),
            (
                ErrorKind::PermissionDenied,
                "permission denied",
                "below 1024",
            ),
            (
                ErrorKind::AddrNotAvailable,
                "no network interface",
                "`127.0.0.1:80`",
            ),
        ];
        for (kind, what, hint) in cases {
            let e = explain(
                Path::new("p.yaml"),
                Error::Listen {
                    addr: "10.9.9.9:80".into(),
                    source: std::io::Error::from(kind),
                },
            );
            let usage = e.downcast_ref::<UsageError>().expect("a usage error");
            let shown = usage.to_string();
            assert!(
                shown.starts_with("cannot listen on `10.9.9.9:80`: "),
                "{shown}"
            );
            assert!(
                shown.contains(what) && !shown.contains("os error"),
                "{shown}"
            );
            assert!(usage.hint().is_some_and(|h| h.contains(hint)), "{kind:?}");
        }
    }
}
