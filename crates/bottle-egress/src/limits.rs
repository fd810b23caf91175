//! Every bound the proxy enforces, in one place, as named constants.
//!
//! Hostile clients are expected: each size and time here caps what one client
//! can make the proxy hold. [`Limits`] carries the timeouts so tests (and the
//! sidecar) can shorten them without touching the constants.

use std::time::Duration;

/// Largest request head (request line + headers) accepted from a client. Larger
/// heads are answered 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header lines in one request head.
pub const MAX_HEADERS: usize = 128;
/// Time a client has to send a complete request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to open a TCP connection upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the upstream has to answer with a response head.
pub const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for a TLS handshake, on either side.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Client connections served at once (and, separately, open CONNECT
/// tunnels); further accepts wait for a slot, so a flood of idle sockets
/// cannot exhaust memory or file descriptors. Worst case held for heads:
/// 1024 x 64 KiB = 64 MiB, and only for the header timeout.
pub const MAX_CONNECTIONS: usize = 1024;
/// Intercepted hosts kept in the interception cache: each entry is a leaf
/// certificate and the TLS server config (with its session state) serving it.
pub const LEAF_CACHE_ENTRIES: usize = 1024;
/// TLS 1.2 session IDs kept per intercepted host, for clients that resume
/// without tickets (TLS 1.3 resumption uses stateless per-host tickets).
/// Worst case: `LEAF_CACHE_ENTRIES` x this many small sessions.
pub const SESSION_IDS_PER_HOST: usize = 32;
/// Bytes of a request body held back for DLP look-back across chunk
/// boundaries beyond what the scanner reports as settled; a scanner that
/// never settles cannot make the proxy buffer without bound.
pub const DLP_MAX_HELD_BYTES: usize = 1024 * 1024;
/// Compressed request bodies (`Content-Encoding: gzip`) are held whole
/// until their inflated content has been scanned: a compressed stream cannot
/// be released in part without releasing bits of what follows. Larger ones
/// are refused as too large (log mode streams them).
pub const MAX_COMPRESSED_HELD_BYTES: usize = 4 * 1024 * 1024;
/// Bytes each request body may hold back for DLP without drawing on the
/// shared budget: a plain body's look-back is far smaller, so only
/// compressed bodies (held whole) and unusual input ever draw on it.
pub const HELD_BYTES_FREE: usize = 64 * 1024;
/// Bytes all requests together may hold back beyond that: without a shared
/// bound, a thousand connections each holding a 4 MiB compressed body
/// would take 4 GiB, twice the sidecar's memory. Over it a body is refused
/// as too large.
pub const HELD_BYTES_BUDGET: usize = 256 * 1024 * 1024;
/// Most bytes one compressed request body may inflate to (all layers);
/// past it the request is refused as too large.
pub const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;
/// Largest DNS message accepted over TCP (UDP is bounded by the datagram).
pub const DNS_MAX_MESSAGE: usize = 4096;
/// Time a DNS TCP client has to send its query.
pub const DNS_TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of each body kept for an audit event with `log: full`.
pub const FULL_LOG_BODY_BYTES: usize = 8 * 1024;
/// Bytes captured past [`FULL_LOG_BODY_BYTES`] so a secret across the cut
/// is still found whole (the engine reports findings up to 8 KiB long).
pub const FULL_LOG_LOOKAHEAD: usize = 8 * 1024;
/// Idle keep-alive upstream connections kept per destination, and in all,
/// by each proxy thread (at most [`MAX_PROXY_THREADS`]); an idle one is
/// closed after [`POOL_IDLE_TIMEOUT`] (shorter than common
/// server idle timeouts, to rarely meet a connection the server is closing).
pub const POOL_MAX_IDLE_PER_TARGET: usize = 32;
pub const POOL_MAX_IDLE: usize = 256;
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request target (URL) accepted.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;

/// The timeouts in force for one proxy; defaults are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    /// A passthrough tunnel or WebSocket that moves no byte for this long
    /// is closed.
    pub tunnel_idle: Duration,
    pub connect: Duration,
    pub response_head: Duration,
    pub tls_handshake: Duration,
    pub max_connections: usize,
    /// Bytes of request bodies held back for DLP by all requests together,
    /// beyond [`HELD_BYTES_FREE`] each.
    pub held_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            tunnel_idle: TUNNEL_IDLE_TIMEOUT,
            connect: CONNECT_TIMEOUT,
            response_head: RESPONSE_HEAD_TIMEOUT,
            tls_handshake: TLS_HANDSHAKE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            held_bytes: HELD_BYTES_BUDGET,
        }
    }
}

/// A passthrough tunnel or WebSocket idle this long (no byte either way)
/// is closed: each holds a tunnel slot while open. Long enough for any
/// protocol that keeps its connection alive (WebSocket pings, SSH
/// keep-alives, HTTP/2 pings come every minute or so).
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Refusals and other events that cost the agent nothing, written a second
/// at most for each kind (`dns`, `connect`, `http`, `reverse`,
/// `internal`) and reason (`no-route`, `dlp`, ...); the rest are counted
/// (see `audit::Audit`). An event's fields are cut (host 255 bytes, method
/// 64, path 1 KiB), so an event is at most about 1.6 KB, and a flood of
/// the ten pairs an agent can cheaply cause writes at most about 400
/// events (under 650 KB) a second: the 512 MiB the sidecar keeps hold
/// about 14 minutes of that worst case, and hours of a flood of one kind.
pub const REFUSAL_EVENTS_PER_SECOND: u32 = 40;

/// Most threads the proxy serves on (one per CPU the process may use,
/// cgroup quotas counted; see `serve_sharded`).
pub const MAX_PROXY_THREADS: usize = 8;

/// The threads the proxy serves on here: the CPUs this process may use,
/// at most [`MAX_PROXY_THREADS`].
pub fn proxy_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_PROXY_THREADS)
}
