//! The DLP engine: finds credentials in bytes, without doing any I/O.
//!
//! One [`Engine`] is built once (rules compiled, known secrets loaded) and then
//! shared by the egress proxy, the git gate and `claude-bottle scan`. It looks
//! for:
//!
//! - credential formats ([`rules`]): vendor key shapes found through a keyword
//!   prefilter, private key blocks, JWTs, credentials in URLs, and generic
//!   `password=`/`token:` assignments whose value has high entropy;
//! - known secrets ([`known`]): the bottle's own token values, also in their
//!   base64, base64url, hex, percent-encoded and reversed forms;
//! - the same after decoding ([`pipeline`], [`decode`], [`normalize`],
//!   [`unescape`]): percent, base64 and hex layers (also wrapped over lines,
//!   and the printable stretches of binary), NFKC and invisible characters,
//!   JSON `\u` escapes, numeric character references, UTF-16 and
//!   quoted-printable, to a bounded depth;
//! - exfiltration through host names ([`host`]).
//!
//! Binary data gets the known secrets alone ([`Engine::scan_known`],
//! [`Engine::known_stream`]): their forms are exact bytes, the rules there
//! would only match noise.
//!
//! Findings name the rule and the byte range in the caller's input, and show
//! at most the first four characters of the secret.

mod binary;
mod decode;
mod entropy;
mod finding;
mod host;
mod known;
mod normalize;
mod pipeline;
mod prefilter;
mod rules;
mod stream;
mod unescape;
mod validate;

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod tests;

use std::fmt;

pub use binary::KnownStream;
pub use decode::{
    base32_encode, base64_decode, base64_encode, hex_decode, hex_encode, percent_decode,
    percent_encode,
};
pub use finding::{Finding, Sink};
pub use normalize::is_invisible;
pub use stream::{LOOKBACK as STREAM_LOOKBACK, StreamScanner};

use bottle_secret::Secret;
use known::KnownSet;
use prefilter::RuleSet;

/// The shortest known secret accepted: shorter values would match ordinary
/// text by chance.
pub const MIN_KNOWN_SECRET_LEN: usize = 8;

/// The rule id of a match on one of the engine's known secrets.
pub const KNOWN_SECRET_RULE: &str = "known-secret";

/// The rule id of input whose encodings decode to more than the engine
/// reads for one scan (twice the input and 1 MiB): layers past that bound
/// go unread, so the input is reported whole rather than passed as clean.
pub const ENCODING_TOO_DEEP_RULE: &str = "encoding-too-deep";

/// Why an engine could not be built. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A known secret is shorter than [`MIN_KNOWN_SECRET_LEN`] bytes.
    KnownSecretTooShort { index: usize, len: usize },
    /// A built-in rule failed to compile (a bug in this crate).
    Rule { rule: &'static str, message: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KnownSecretTooShort { index, len } => write!(
                f,
                "known secret #{index} is {len} bytes long; at least {MIN_KNOWN_SECRET_LEN} \
                 are needed so it does not match ordinary text"
            ),
            Error::Rule { rule, message } => write!(f, "DLP rule `{rule}` is invalid: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Builds an [`Engine`]; see [`Engine::builder`].
#[derive(Default)]
pub struct EngineBuilder {
    known: Vec<Secret>,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("known_secrets", &self.known.len())
            .finish()
    }
}

impl EngineBuilder {
    /// Adds a value that must never leave: matched exactly and in its
    /// encoded forms. The value is copied into zeroizing storage.
    pub fn known_secret(mut self, value: &str) -> Self {
        self.known.push(Secret::new(value));
        self
    }

    /// Same as [`EngineBuilder::known_secret`] for a value already held as a
    /// [`Secret`].
    pub fn known_secret_value(mut self, value: Secret) -> Self {
        self.known.push(value);
        self
    }

    pub fn build(self) -> Result<Engine, Error> {
        for (index, s) in self.known.iter().enumerate() {
            if s.len() < MIN_KNOWN_SECRET_LEN {
                return Err(Error::KnownSecretTooShort {
                    index,
                    len: s.len(),
                });
            }
        }
        Ok(Engine {
            rules: RuleSet::new()?,
            known: KnownSet::new(&self.known),
        })
    }
}

/// The compiled engine. `Send + Sync`; share it behind an `Arc`.
pub struct Engine {
    rules: RuleSet,
    known: KnownSet,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only counts: the known secrets must never reach a log line.
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .field("known_secrets", &self.known.secret_count())
            .finish()
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine with the built-in rules and no known secrets.
    pub fn new() -> Result<Engine, Error> {
        Engine::builder().build()
    }

    /// The ids of all built-in rules, for documentation and tests.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        self.rules.ids()
    }

    /// Whether a finding of rule `id` is a value its rule found after a
    /// name (`aws_secret_access_key: …`, `password = …`): the finding's
    /// range is the value alone, and the name may be lines before it.
    pub fn rule_reads_a_name(&self, id: &str) -> bool {
        self.rules.reads_a_name(id)
    }

    /// Scans a whole buffer. Findings are sorted by start offset.
    pub fn scan(&self, input: &[u8]) -> Vec<Finding> {
        pipeline::scan(self, input)
    }

    /// Scans a whole buffer and pushes each finding into `sink`, in order,
    /// until the sink asks to stop.
    pub fn scan_to(&self, input: &[u8], sink: &mut impl Sink) {
        for f in self.scan(input) {
            if !sink.finding(f) {
                break;
            }
        }
    }

    /// A scanner for a stream of chunks (a request body) with bounded
    /// look-back; see [`StreamScanner`].
    pub fn stream(&self) -> StreamScanner<&Engine> {
        StreamScanner::new(self, stream::DEFAULT_LOOKBACK, stream::DEFAULT_STEP)
    }

    /// [`Engine::stream`] holding a share of the engine, for a scanner that
    /// lives as long as a request body rather than a borrow.
    pub fn stream_shared(self: std::sync::Arc<Self>) -> StreamScanner<std::sync::Arc<Engine>> {
        StreamScanner::new(self, stream::DEFAULT_LOOKBACK, stream::DEFAULT_STEP)
    }

    /// Like [`Engine::stream`], scanning each time `step` new bytes have
    /// arrived: a small step reports sooner, a large one (a file scanner)
    /// rescans less of the look-back.
    pub fn stream_with_step(&self, step: usize) -> StreamScanner<&Engine> {
        StreamScanner::new(self, stream::DEFAULT_LOOKBACK, step)
    }

    /// Whether any known secret was given: without one,
    /// [`Engine::scan_known`] finds nothing and a caller can skip reading
    /// the data at all.
    pub fn has_known_secrets(&self) -> bool {
        self.known.secret_count() > 0
    }

    /// Searches bytes for the known secrets only, in every form the engine
    /// matches them (as is, base64, base64url, hex, percent-encoded,
    /// reversed), with no rules and no decoding: for binary data, where the
    /// rules would match noise. Findings use [`KNOWN_SECRET_RULE`], are
    /// redacted to `****` and sorted by offset.
    pub fn scan_known(&self, input: &[u8]) -> Vec<Finding> {
        binary::scan(&self.known, input)
    }

    /// [`Engine::scan_known`] over a stream of chunks of any size, with
    /// memory bounded by the longest form of a known secret; see
    /// [`KnownStream`].
    pub fn known_stream(&self) -> KnownStream<'_> {
        KnownStream::new(&self.known)
    }

    /// Checks a host name for exfiltration: long or random-looking labels and
    /// known secrets inside labels.
    pub fn scan_host(&self, host: &str) -> Vec<Finding> {
        host::scan_host(self, host)
    }

    /// Checks a name that arrives in lower case whatever was sent (an HTTP
    /// header name, as hyper keeps it): the rules, and the known secrets in
    /// any case and in their base32 forms, as in host names, since the
    /// sender's case is lost and a form without lower-case letters would
    /// otherwise pass.
    pub fn scan_name(&self, name: &str) -> Vec<Finding> {
        let mut out = self.scan(name.as_bytes());
        if !out.iter().any(|f| f.rule == KNOWN_SECRET_RULE) && self.known.in_host(name) {
            out.push(Finding {
                rule: KNOWN_SECRET_RULE,
                range: 0..name.len() as u64,
                redacted: "****".to_string(),
            });
        }
        out
    }

    /// Replaces every finding with `[REDACTED:<rule>]`.
    pub fn redact(&self, input: &[u8]) -> (Vec<u8>, Vec<Finding>) {
        let findings = self.scan(input);
        let out = finding::redact(input, &findings);
        (out, findings)
    }
}
