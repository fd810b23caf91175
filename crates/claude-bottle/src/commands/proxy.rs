//! `proxy --config FILE [--listen ADDR]`: the egress proxy on its own.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use bottle_egress::Error;

use crate::report::UsageError;

pub fn run(config: &Path, listen: Option<SocketAddr>) -> Result<ExitCode> {
    bottle_egress::run_standalone(config, listen).map_err(|e| explain(config, e))?;
    Ok(ExitCode::SUCCESS)
}

/// A config that cannot be used is bad usage (exit 2): said once, with the
/// file and what to fix. The library's errors carry their cause both in the
/// message and as the source, so passed on as they are the cause is printed
/// twice; its parse errors add the parser's snippet, which repeats the
/// message again. Failures to serve (binding, the runtime) pass unchanged.
fn explain(config: &Path, e: Error) -> anyhow::Error {
    let file = config.display();
    let (message, hint) = match e {
        Error::Read { path, source } => (
            format!("cannot read `{}`: {source}", path.display()),
            "check the path given to `--config` and the files it names (relative to its \
             folder), and their permissions"
                .to_string(),
        ),
        Error::Parse { path, message } => (
            format!("`{}`: {}", path.display(), first_line(&message)),
            "fix the file at that line; it is YAML or JSON".to_string(),
        ),
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
        other => return other.into(),
    };
    UsageError::new(message).with_hint(hint).into()
}

/// The parser's first line, without its own `error: ` (ours is printed).
fn first_line(message: &str) -> &str {
    let first = message.lines().next().unwrap_or(message).trim();
    first.strip_prefix("error: ").unwrap_or(first)
}
