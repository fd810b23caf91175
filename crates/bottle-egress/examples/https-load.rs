//! HTTPS load generator for `scripts/bench-proxy-https.sh`: what `wrk` does
//! for plain HTTP, for HTTPS either straight to the server or through an
//! HTTP proxy's `CONNECT` tunnel (TLS inside the tunnel), which `wrk`
//! cannot do.
//!
//! ```text
//! https-load --target HOST:PORT --ca FILE [--ca FILE...] [--proxy ADDR]
//!            [--connect ADDR] [--tunnel-to HOST:PORT]
//!            [--mode keepalive|close] [--conns 32]
//!            [--duration 5] [--threads 2] [--path /] [--no-resume]
//!            [--label NAME]
//! ```
//!
//! `--target` is the HTTPS origin: the SNI, the `Host` header and, with
//! `--proxy`, the `CONNECT` authority. Without `--proxy`, connections go to
//! `--connect` (default: the target); `--tunnel-to` replaces the `CONNECT`
//! authority (for a proxy that cannot be told where the target's name
//! points; SNI and `Host` stay the target's). Each of the `--conns` connections is
//! its own task and sends `GET` requests one after another for `--duration`
//! seconds: `keepalive` reuses one TLS connection (reconnecting only after
//! an error); `close` makes a new one per request (TCP connect, `CONNECT`,
//! TLS handshake, one request with `Connection: close`), and the latency of
//! a request is then all of that. The server certificate is verified against
//! the `--ca` files only. Resumption is the rustls client default (an
//! in-memory session cache shared by all connections) unless `--no-resume`.
//!
//! Prints one line on stdout:
//!
//! ```text
//! label=L mode=M conns=C secs=S requests=N errors=E rps=R p50_us=A p99_us=B handshakes=H resumed=K cpu_ms=T
//! ```
//!
//! `cpu_ms` is this process's own user + system time (from `/proc/self/stat`;
//! `-1` where that cannot be read).
//!
//! Only responses completed before the deadline count. A failed connection
//! or request (refused, timed out, not 200, malformed) is counted in
//! `errors` and the connection is made again after 10 ms; the first few
//! distinct error messages go to stderr.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Any single step (connect, CONNECT answer, handshake, response) longer
/// than this is an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a response head or a CONNECT answer.
const MAX_HEAD: usize = 64 * 1024;
/// Bound on a response body (read and dropped).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Latency samples kept per connection task; requests beyond are counted only.
const MAX_SAMPLES: usize = 1 << 22;
const USAGE: &str = "usage: https-load --target HOST:PORT --ca FILE [--ca FILE...] \
[--proxy ADDR] [--connect ADDR] [--tunnel-to HOST:PORT] [--mode keepalive|close] [--conns N] [--duration SECS] \
[--threads N] [--path P] [--no-resume] [--label NAME]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    Close,
}

struct Opts {
    target_host: String,
    target_port: u16,
    connect: Option<SocketAddr>,
    proxy: Option<SocketAddr>,
    tunnel_to: Option<String>,
    ca: Vec<String>,
    mode: Mode,
    conns: usize,
    duration: Duration,
    threads: usize,
    path: String,
    resume: bool,
    label: String,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut target = None;
    let mut o = Opts {
        target_host: String::new(),
        target_port: 443,
        connect: None,
        proxy: None,
        tunnel_to: None,
        ca: Vec::new(),
        mode: Mode::KeepAlive,
        conns: 32,
        duration: Duration::from_secs(5),
        threads: 2,
        path: "/".into(),
        resume: true,
        label: "run".into(),
    };
    while let Some(flag) = args.next() {
        if flag == "--no-resume" {
            o.resume = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let addr = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("{flag} {v:?}: {e}"))
        };
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--target" => target = Some(value),
            "--connect" => o.connect = Some(addr(&value)?),
            "--proxy" => o.proxy = Some(addr(&value)?),
            "--tunnel-to" => o.tunnel_to = Some(value),
            "--ca" => o.ca.push(value),
            "--mode" => {
                o.mode = match value.as_str() {
                    "keepalive" | "keep-alive" => Mode::KeepAlive,
                    "close" => Mode::Close,
                    _ => return Err(format!("--mode {value:?}: keepalive or close")),
                }
            }
            "--conns" => o.conns = num(&value)?.max(1),
            "--duration" => {
                let s: f64 = value
                    .parse()
                    .map_err(|e| format!("--duration {value:?}: {e}"))?;
                if !(s > 0.0 && s < 86_400.0) {
                    return Err(format!("--duration {value:?}: out of range"));
                }
                o.duration = Duration::from_secs_f64(s);
            }
            "--threads" => o.threads = num(&value)?.max(1),
            "--path" => o.path = value,
            "--label" => o.label = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let target = target.ok_or("--target is required")?;
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("--target {target:?}: HOST:PORT"))?;
    o.target_host = host.to_string();
    o.target_port = port
        .parse()
        .map_err(|e| format!("--target {target:?}: {e}"))?;
    if o.ca.is_empty() {
        return Err("at least one --ca is required".into());
    }
    if o.proxy.is_none() && o.connect.is_none() {
        // Straight to the target: resolve it once here.
        use std::net::ToSocketAddrs;
        o.connect = (o.target_host.as_str(), o.target_port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {target}: {e}"))?
            .next();
    }
    Ok(o)
}

/// What one connection task did.
#[derive(Default)]
struct Stats {
    requests: u64,
    errors: u64,
    handshakes: u64,
    resumed: u64,
    samples: Vec<u32>,
    first_errors: Vec<String>,
}

impl Stats {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 3 && !self.first_errors.contains(&e) {
            self.first_errors.push(e);
        }
    }
}

struct Job {
    opts: Opts,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    request: Vec<u8>,
    connect_line: Vec<u8>,
}

fn main() {
    // One crypto provider for everything rustls builds in this process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("https-load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("https-load: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(opts)) {
        eprintln!("https-load: {e}");
        std::process::exit(1);
    }
}

fn tls_connector(opts: &Opts) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for path in &opts.ca {
        let pem = std::fs::read(path).map_err(|e| format!("read {path}: {e}"))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{path}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("no certificate in the --ca files".into());
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !opts.resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(cfg)))
}

async fn run(opts: Opts) -> Result<(), String> {
    let tls = tls_connector(&opts)?;
    let server_name = ServerName::try_from(opts.target_host.clone())
        .map_err(|e| format!("--target host {:?}: {e}", opts.target_host))?;
    let authority = format!("{}:{}", opts.target_host, opts.target_port);
    let host_header = if opts.target_port == 443 {
        opts.target_host.clone()
    } else {
        authority.clone()
    };
    let close = if opts.mode == Mode::Close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: https-load\r\nAccept: */*\r\n{close}\r\n",
        opts.path
    )
    .into_bytes();
    let tunnel_to = opts.tunnel_to.as_deref().unwrap_or(&authority);
    let connect_line =
        format!("CONNECT {tunnel_to} HTTP/1.1\r\nHost: {tunnel_to}\r\n\r\n").into_bytes();
    let conns = opts.conns;
    let duration = opts.duration;
    let label = opts.label.clone();
    let mode = opts.mode;
    let job = Arc::new(Job {
        opts,
        tls,
        server_name,
        request,
        connect_line,
    });
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(worker(job.clone(), deadline)))
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        match t.await {
            Ok(s) => {
                all.requests += s.requests;
                all.errors += s.errors;
                all.handshakes += s.handshakes;
                all.resumed += s.resumed;
                all.samples.extend_from_slice(&s.samples);
                for e in s.first_errors {
                    if all.first_errors.len() < 5 && !all.first_errors.contains(&e) {
                        all.first_errors.push(e);
                    }
                }
            }
            Err(e) => all.error(format!("task: {e}")),
        }
    }
    for e in &all.first_errors {
        eprintln!("https-load: error: {e}");
    }
    all.samples.sort_unstable();
    let pct = |p: usize| -> u32 {
        let n = all.samples.len();
        if n == 0 {
            0
        } else {
            all.samples[(n * p / 100).min(n - 1)]
        }
    };
    let secs = duration.as_secs_f64();
    println!(
        "label={label} mode={} conns={conns} secs={secs:.2} requests={} errors={} rps={:.2} p50_us={} p99_us={} handshakes={} resumed={} cpu_ms={}",
        if mode == Mode::Close {
            "close"
        } else {
            "keepalive"
        },
        all.requests,
        all.errors,
        all.requests as f64 / secs,
        pct(50),
        pct(99),
        all.handshakes,
        all.resumed,
        own_cpu_ms(),
    );
    Ok(())
}

async fn worker(job: Arc<Job>, deadline: Instant) -> Stats {
    let mut st = Stats::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut conn: Option<TlsStream<TcpStream>> = None;
    while Instant::now() < deadline {
        let began = Instant::now();
        let stream = match conn.take() {
            Some(s) => s,
            None => match open(&job, &mut st).await {
                Ok(s) => s,
                Err(e) => {
                    st.error(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let mut stream = stream;
        match timeout(STEP_TIMEOUT, exchange(&mut stream, &job.request, &mut buf)).await {
            Ok(Ok(())) => {
                let done = Instant::now();
                if done <= deadline {
                    st.requests += 1;
                    if st.samples.len() < MAX_SAMPLES {
                        let us = done.duration_since(began).as_micros();
                        st.samples.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                if job.opts.mode == Mode::KeepAlive {
                    conn = Some(stream);
                }
            }
            Ok(Err(e)) => {
                st.error(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => st.error("response timed out".into()),
        }
    }
    st
}

/// A TLS connection to the target: straight, or inside a CONNECT tunnel.
async fn open(job: &Job, st: &mut Stats) -> Result<TlsStream<TcpStream>, String> {
    let addr = job.opts.proxy.or(job.opts.connect).ok_or("no address")?;
    let mut tcp = timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if job.opts.proxy.is_some() {
        timeout(STEP_TIMEOUT, tunnel(&mut tcp, &job.connect_line))
            .await
            .map_err(|_| "CONNECT: timed out".to_string())??;
    }
    let tls = timeout(STEP_TIMEOUT, job.tls.connect(job.server_name.clone(), tcp))
        .await
        .map_err(|_| "TLS handshake: timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    st.handshakes += 1;
    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        st.resumed += 1;
    }
    Ok(tls)
}

/// Sends CONNECT and reads the proxy's answer up to its blank line.
async fn tunnel(tcp: &mut TcpStream, line: &[u8]) -> Result<(), String> {
    tcp.write_all(line)
        .await
        .map_err(|e| format!("CONNECT write: {e}"))?;
    let mut head = Vec::with_capacity(512);
    let end = read_head(tcp, &mut head, "CONNECT answer").await?;
    let status = status_code(&head[..end])?;
    if status != 200 {
        return Err(format!("CONNECT answered {status}"));
    }
    if head.len() != end {
        return Err("CONNECT: bytes after the answer before TLS".into());
    }
    Ok(())
}

/// Writes one request and reads its response whole (Content-Length framing).
async fn exchange<S>(stream: &mut S, request: &[u8], buf: &mut Vec<u8>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    buf.clear();
    let end = read_head(stream, buf, "response").await?;
    let status = status_code(&buf[..end])?;
    let len = content_length(&buf[..end])?;
    if len > MAX_BODY {
        return Err(format!("body of {len} bytes too large"));
    }
    while buf.len() < end + len {
        read_more(stream, buf, "response body").await?;
    }
    if status != 200 {
        return Err(format!("status {status}"));
    }
    Ok(())
}

/// Reads into `buf` until it holds a whole head (at most `MAX_HEAD`);
/// returns where the head ends.
async fn read_head<S>(stream: &mut S, buf: &mut Vec<u8>, what: &str) -> Result<usize, String>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(end) = find_head_end(buf) {
            return Ok(end);
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("{what}: head too large"));
        }
        read_more(stream, buf, what).await?;
    }
}

/// One read into `buf`; the end of the stream is an error here.
async fn read_more<S>(stream: &mut S, buf: &mut Vec<u8>, what: &str) -> Result<(), String>
where
    S: AsyncRead + Unpin,
{
    match stream.read_buf(buf).await {
        Ok(0) => Err(format!("{what}: the peer closed the connection")),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{what}: read: {e}")),
    }
}

/// User + system time of this process in ms, or -1.
fn own_cpu_ms() -> i64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return -1;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return -1;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`;
    // Linux reports them in USER_HZ, 100 per second.
    match (
        f.get(11).map(|v| v.parse::<i64>()),
        f.get(12).map(|v| v.parse::<i64>()),
    ) {
        (Some(Ok(u)), Some(Ok(s))) => (u + s) * 10,
        _ => -1,
    }
}

/// The offset just past `\r\n\r\n`, if the head is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn status_code(head: &[u8]) -> Result<u16, String> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("bad status line {:?}", line.trim_end())),
    }
}

fn content_length(head: &[u8]) -> Result<usize, String> {
    let text = String::from_utf8_lossy(head);
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            return value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {:?}", value.trim()));
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked responses are not supported".into());
        }
    }
    Err("response without Content-Length".into())
}
