//! Errors of loading and starting the proxy, and the reasons a request is refused.
//!
//! [`Deny`] is the closed set of refusal reasons from the spec; the same word
//! goes into the `X-Claude-Bottle-Block` header, the JSON body and the audit
//! event. Turning a `Deny` into a response happens in exactly one place
//! (`server::refuse`).

use std::path::PathBuf;

use http::StatusCode;

/// Failure to load the configuration or start serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: crate::config::ParseError,
    },
    #[error("config: {0}")]
    Invalid(String),
    #[error("token_ref {0}: not set")]
    MissingSecret(String),
    #[error("CA: {0}")]
    Ca(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a request, tunnel or query was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    NoRoute,
    Method,
    Path,
    Port,
    IpLiteral,
    PrivateAddress,
    Dlp,
    HostMismatch,
    Malformed,
    /// A missing, repeated or unreadable `Host` field: `malformed`, but 400
    /// (RFC 9112 section 3.2 requires it; docs/decisions.md).
    HostField,
    TooLarge,
    Timeout,
    DnsRefused,
    UpstreamError,
}

impl Deny {
    /// The reason word used in the header, the body and the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            Deny::NoRoute => "no-route",
            Deny::Method => "method",
            Deny::Path => "path",
            Deny::Port => "port",
            Deny::IpLiteral => "ip-literal",
            Deny::PrivateAddress => "private-address",
            Deny::Dlp => "dlp",
            Deny::HostMismatch => "host-mismatch",
            Deny::Malformed | Deny::HostField => "malformed",
            Deny::TooLarge => "too-large",
            Deny::Timeout => "timeout",
            Deny::DnsRefused => "dns-refused",
            Deny::UpstreamError => "upstream-error",
        }
    }

    /// Refusals are 403, the proxy's own checks of form and bounds
    /// (`malformed`, `too-large`) included, as sidecar.md says; a `Host`
    /// field error is 400 because RFC 9112 requires it; a failing upstream
    /// is a gateway error (502, 504) so clients retry correctly.
    pub fn status(self) -> StatusCode {
        match self {
            Deny::HostField => StatusCode::BAD_REQUEST,
            Deny::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Deny::UpstreamError => StatusCode::BAD_GATEWAY,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// A refusal with the rule that caused it (a route name or a DLP rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub deny: Deny,
    pub rule: Option<String>,
}

impl From<Deny> for Failure {
    fn from(deny: Deny) -> Self {
        Failure { deny, rule: None }
    }
}

impl Failure {
    pub fn with_rule(deny: Deny, rule: impl Into<String>) -> Self {
        Failure {
            deny,
            rule: Some(rule.into()),
        }
    }
}

impl std::fmt::Display for Deny {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
