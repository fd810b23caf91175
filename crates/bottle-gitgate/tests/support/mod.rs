//! Test fixtures: real git upstreams on loopback (HTTPS with a token behind a
//! test CA, and SSH through an `sshd` the test runs), the gate started
//! in-process, and a git client with a clean environment.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bottle_gitgate::audit::{Event, Memory};
use bottle_gitgate::config::{Auth, GateConfig, GateSecrets, RepoConfig};
use bottle_gitgate::{Limits, Options};
use bottle_secret::Secret;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const TOKEN: &str = "gt-upstream-token-5f2c9a71d04e8b36";
/// A GitHub-PAT-shaped value the DLP rules know.
pub const PAT: &str = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Runs git with a clean environment in `dir`; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_out(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.com")
        .env("GIT_COMMITTER_NAME", "Agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.com")
        .env("LC_ALL", "C");
    c
}

pub fn git_out(dir: &Path, args: &[&str]) -> Output {
    git_cmd(dir).args(args).output().unwrap()
}

/// Like [`git_out`], returning (success, stdout+stderr).
pub fn git_try(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = git_out(dir, args);
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), s)
}

pub fn commit_file(dir: &Path, path: &str, content: &str, msg: &str) -> String {
    let p = dir.join(path);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, content).unwrap();
    git(dir, &["add", "-A"]);
    // The message goes through a file, not the command line: some tests
    // commit the gate's own token, and a `CmdlineWatch` in a test running
    // beside them would take that for the gate leaking it.
    let msg_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(msg_file.path(), msg).unwrap();
    let msg_path = msg_file.path().to_str().unwrap();
    git(dir, &["commit", "-q", "-F", msg_path]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_string()
}

#[allow(unused_imports)] // not every test binary makes noise
pub use bottle_testkit::noise;

/// The pack `git pack-objects --revs` builds in `dir` from `revs` (lines
/// like `<id>` and `^<id>`).
pub fn pack_of(dir: &Path, revs: &[&str]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut child = git_cmd(dir)
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = revs.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut pack = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut pack).unwrap();
    assert!(child.wait().unwrap().success());
    pack
}

/// A raw `git-receive-pack` request body: one pkt-line per command (`<old>
/// <new> <ref>`, bytes as given: a hostile client may put anything in a
/// name), the first with `report-status side-band-64k`, a flush, then
/// `pack`.
pub fn receive_pack_body(commands: &[Vec<u8>], pack: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        let mut line = c.clone();
        if i == 0 {
            line.extend_from_slice(b"\0report-status side-band-64k");
        }
        line.push(b'\n');
        body.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
        body.extend_from_slice(&line);
    }
    body.extend_from_slice(b"0000");
    body.extend_from_slice(pack);
    body
}

/// What receive-pack answered a raw request: side-band 1 (the report
/// status, raw) and side-band 2 (the `remote:` text: the hook's stderr).
#[derive(Debug)]
pub struct ReceivePackAnswer {
    pub head: String,
    pub status: String,
    pub remote: String,
}

/// POSTs `body` to `/<repo>.git/git-receive-pack` of the gate and takes
/// the answer apart (chunked transfer coding, pkt-lines, side-bands).
pub fn post_receive_pack(gate: &RunningGate, repo: &str, body: &[u8]) -> ReceivePackAnswer {
    use std::io::{Read, Write};
    let addr = gate.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /{repo}.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut rest = &resp[split + 4..];
    let mut data = Vec::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = std::str::from_utf8(&rest[..eol]).unwrap().trim();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                break;
            }
            data.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
    } else {
        data.extend_from_slice(rest);
    }
    let (mut status, mut remote) = (Vec::new(), Vec::new());
    let mut pkts = data.as_slice();
    while pkts.len() >= 4 {
        let len = usize::from_str_radix(std::str::from_utf8(&pkts[..4]).unwrap(), 16).unwrap();
        if len < 4 {
            pkts = &pkts[4..];
            continue;
        }
        let payload = &pkts[4..len];
        match payload.split_first() {
            Some((1, p)) => status.extend_from_slice(p),
            Some((2 | 3, p)) => remote.extend_from_slice(p),
            _ => status.extend_from_slice(payload),
        }
        pkts = &pkts[len..];
    }
    ReceivePackAnswer {
        head,
        status: String::from_utf8_lossy(&status).into_owned(),
        remote: String::from_utf8_lossy(&remote).into_owned(),
    }
}

/// A bare upstream repo with one commit on `main`.
pub struct BareUpstream {
    pub dir: tempfile::TempDir,
    /// The bare repository.
    pub repo: PathBuf,
    /// Its hooks folder (`refuse`, `slow`, `hang` or `stall` files switch
    /// behaviour).
    pub hooks: PathBuf,
}

impl BareUpstream {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("up.git");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "up.git"],
        );
        let seed = dir.path().join("seed");
        git(dir.path(), &["init", "-q", "-b", "main", "seed"]);
        commit_file(&seed, "README.md", "# upstream\n", "initial");
        git(&seed, &["push", "-q", repo.to_str().unwrap(), "main"]);
        let hooks = dir.path().join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let script = format!(
            "#!/bin/sh\ncat >/dev/null\nif [ -e {d}/slow ]; then sleep 1; fi\n\
             if [ -e {d}/hang ]; then sleep 4; fi\n\
             if [ -e {d}/refuse ]; then echo 'upstream policy: pushes are frozen today' >&2; exit 1; fi\n\
             echo x >> {d}/pushes\nexit 0\n",
            d = hooks.display()
        );
        let hook = hooks.join("pre-receive");
        std::fs::write(&hook, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        BareUpstream { dir, repo, hooks }
    }

    pub fn refs(&self) -> String {
        git(
            &self.repo,
            &["for-each-ref", "--format=%(refname) %(objectname)"],
        )
    }

    pub fn rev(&self, r: &str) -> Option<String> {
        let o = git_out(&self.repo, &["rev-parse", "--verify", "-q", r]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// How many pushes the upstream's own hook accepted.
    pub fn accepted_pushes(&self) -> usize {
        std::fs::read_to_string(self.hooks.join("pushes"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn set(&self, flag: &str, on: bool) {
        let p = self.hooks.join(flag);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What the HTTPS upstream saw.
#[derive(Default)]
pub struct HttpsSeen {
    pub requests: AtomicUsize,
    pub unauthorized: AtomicUsize,
    pub receive_pack_posts: AtomicUsize,
}

/// `git http-backend` behind TLS with a token check.
pub struct HttpsUpstream {
    /// First, so it stops before the other fields are dropped.
    rt: Background,
    pub bare: BareUpstream,
    pub url: String,
    pub ca_file: PathBuf,
    pub seen: Arc<HttpsSeen>,
}

impl HttpsUpstream {
    /// Waits (up to 20 s) until the gate has begun pushing to this upstream.
    pub fn wait_for_a_push(&self) {
        let t = std::time::Instant::now();
        while self.seen.receive_pack_posts.load(Ordering::SeqCst) == 0 {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "the push never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A server's runtime, shut down without waiting for its tasks on drop.
pub struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A runtime of its own, so tests can block on git clients freely.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn http_backend() -> PathBuf {
    let out = Command::new("git").arg("--exec-path").output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend")
}

impl HttpsUpstream {
    pub fn start() -> Self {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Serves on `listener`, whatever address it is bound to; the URL names
    /// that address and the certificate is valid for it and `localhost`.
    pub fn start_on(listener: std::net::TcpListener) -> Self {
        init();
        let rt = runtime();
        let bare = BareUpstream::new();
        let addr = listener.local_addr().unwrap();
        let ip = addr.ip().to_string();
        let ca = bottle_testkit::TestCa::new("gitgate test CA");
        let ca_file = bare.dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[&ip, "localhost"]));
        listener.set_nonblocking(true).unwrap();
        let l = {
            let _in_rt = rt.enter();
            TcpListener::from_std(listener).unwrap()
        };
        let seen = Arc::new(HttpsSeen::default());
        let root = bare.dir.path().to_path_buf();
        let hooks = bare.hooks.clone();
        let seen2 = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((s, peer)) = l.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let root = root.clone();
                let hooks = hooks.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let root = root.clone();
                        let hooks = hooks.clone();
                        let seen = seen.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                upstream_cgi(req, peer, &root, &hooks, &seen).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HttpsUpstream {
            bare,
            url: format!("https://{addr}/up.git"),
            ca_file,
            seen,
            rt: Background(Some(rt)),
        }
    }
}

async fn upstream_cgi(
    req: Request<Incoming>,
    peer: SocketAddr,
    root: &Path,
    hooks: &Path,
    seen: &HttpsSeen,
) -> Response<bottle_gitgate::cgi::ChannelBody> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let want = format!(
        "Basic {}",
        String::from_utf8(bottle_dlp::base64_encode(
            format!("x-access-token:{TOKEN}").as_bytes(),
            false,
            true
        ))
        .unwrap()
    );
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(want.as_str()) {
        seen.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut r = Response::new(bottle_gitgate::cgi::ChannelBody::full(Bytes::from_static(
            b"no\n",
        )));
        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        r.headers_mut()
            .insert("www-authenticate", "Basic realm=\"up\"".parse().unwrap());
        return r;
    }
    if req.uri().path().ends_with("/git-receive-pack") {
        seen.receive_pack_posts.fetch_add(1, Ordering::SeqCst);
        // `stall`: the request waits (its body unread) while the flag is
        // set, at most a minute.
        let stall = hooks.join("stall");
        let t = std::time::Instant::now();
        while stall.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut cmd = tokio::process::Command::new(http_backend());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", req.method().as_str())
        .env("PATH_INFO", req.uri().path())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_CONFIG_KEY_1", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_1", hooks);
    for (h, v) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(x) = req.headers().get(h).and_then(|x| x.to_str().ok()) {
            cmd.env(v, x);
        }
    }
    let bounds = bottle_gitgate::cgi::Bounds::drained(1 << 32, std::time::Duration::from_secs(600));
    let (resp, _done) = bottle_gitgate::cgi::run(cmd, req.into_body(), bounds)
        .await
        .unwrap();
    resp
}

/// An `sshd` serving a bare upstream (on 127.0.0.1 unless started with
/// [`SshUpstream::start_on`]); killed on drop.
pub struct SshUpstream {
    pub bare: BareUpstream,
    pub url: String,
    pub client_key: String,
    pub known_hosts: String,
    /// A different, valid host key line for the same address.
    pub wrong_known_hosts: String,
    child: Child,
}

impl Drop for SshUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl SshUpstream {
    /// `Err(reason)` when sshd cannot run here.
    pub fn start() -> Result<Self, String> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
    }

    /// sshd listening on `ip` only, at a port `pick_port` chooses (called
    /// again for a new port when sshd cannot bind the last one). The URL and
    /// the known_hosts lines name `ip`.
    pub fn start_on(
        ip: std::net::IpAddr,
        mut pick_port: impl FnMut() -> u16,
    ) -> Result<Self, String> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            return Err("/usr/sbin/sshd is not installed (apt-get install openssh-server)".into());
        }
        let _ = std::fs::create_dir_all("/run/sshd");
        let bare = BareUpstream::new();
        let d = bare.dir.path();
        keygen(&d.join("host"));
        keygen(&d.join("client"));
        keygen(&d.join("other_host"));
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        // sshd needs a port number before it binds, so another test can take the
        // port in between; a bind failure is retried with a new port.
        let mut attempt = 0;
        let (port, child, lines) = loop {
            attempt += 1;
            let port = pick_port();
            let cfg = format!(
                "Port {port}\nListenAddress {ip}\nHostKey {d}/host\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
                 SetEnv PATH={path}\n",
                d = d.display(),
                path = std::env::var("PATH").unwrap_or_default()
            );
            std::fs::write(d.join("sshd_config"), cfg).unwrap();
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start sshd: {e}"))?;
            // Wait for "Server listening" on stderr (no sleeping).
            let stderr = child.stderr.take().unwrap();
            let mut lines = BufReader::new(stderr).lines();
            let mut log = String::new();
            let started = loop {
                match lines.next() {
                    Some(Ok(l)) => {
                        log.push_str(&l);
                        log.push('\n');
                        if l.contains("Server listening") {
                            break true;
                        }
                    }
                    _ => break false,
                }
            };
            if started {
                break (port, child, lines);
            }
            let _ = child.kill();
            let _ = child.wait();
            if attempt >= 5 || !log.contains("Bind to port") {
                return Err(format!("sshd did not start: {log}"));
            }
        };
        // Keep draining sshd's log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let pub_of = |f: &str| {
            let s = std::fs::read_to_string(d.join(f)).unwrap();
            let mut it = s.split_whitespace();
            format!(
                "[{ip}]:{port} {} {}",
                it.next().unwrap(),
                it.next().unwrap()
            )
        };
        Ok(SshUpstream {
            url: format!(
                "ssh://{user}@{}:{port}{}",
                host_in_url(ip),
                bare.repo.display()
            ),
            client_key: std::fs::read_to_string(d.join("client")).unwrap(),
            known_hosts: pub_of("host.pub"),
            wrong_known_hosts: pub_of("other_host.pub"),
            bare,
            child,
        })
    }
}

/// `ip` as the host part of a URL (IPv6 in brackets).
fn host_in_url(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The gate running in-process on loopback.
pub struct RunningGate {
    /// First, so it stops before the other fields are dropped.
    rt: Background,
    /// The gate's stop signal (as the sidecar's), and its serve task.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), bottle_gitgate::Error>>>,
    pub url: String,
    pub audit: Memory,
    pub state: tempfile::TempDir,
}

impl RunningGate {
    pub fn repo_url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.url)
    }
    pub fn events(&self, kind: &str) -> Vec<Event> {
        self.audit
            .events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }
    pub fn mirror(&self, name: &str) -> PathBuf {
        self.state.path().join("repos").join(format!("{name}.git"))
    }
    /// Drops the gate's runtime with whatever it is running, as a sidecar
    /// that stops does; what it recorded stays readable.
    pub fn stop_now(mut self) -> Memory {
        drop(self.rt.0.take());
        self.audit.clone()
    }
    /// Gives the gate its stop signal, as the sidecar does on its own, and
    /// waits (up to 10 s) until it has stopped; then drops its runtime.
    pub fn stop_gracefully(mut self) -> Memory {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let (Some(rt), Some(served)) = (self.rt.0.as_ref(), self.served.take()) {
            let waited = rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), served).await
            });
            assert!(waited.is_ok(), "the gate did not stop");
        }
        self.stop_now()
    }
    /// Waits until `n` events of `kind` were recorded (they are written when
    /// the git child has exited, just after the client got its answer).
    pub fn wait_events(&self, kind: &str, n: usize) -> Vec<Event> {
        for _ in 0..1000 {
            let ev = self.events(kind);
            if ev.len() >= n {
                return ev;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("expected {n} {kind} events, got {:?}", self.events(kind));
    }
}

pub struct GateRepo {
    pub name: &'static str,
    pub url: String,
    pub auth: Auth,
    pub push: Vec<String>,
}

pub fn repo(name: &'static str, url: &str, auth: Auth, push: &[&str]) -> GateRepo {
    GateRepo {
        name,
        url: url.to_string(),
        auth,
        push: push.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct GateSetup {
    pub repos: Vec<GateRepo>,
    pub upstream_ca: Option<PathBuf>,
    pub ssh_key: Option<String>,
    pub known_hosts: Option<String>,
    pub limits: Limits,
    pub token: String,
    /// The bottle's `resolve` table (host → address[:port]).
    pub resolve: BTreeMap<String, String>,
    /// `egress.upstream_proxy`.
    pub upstream_proxy: Option<String>,
    /// The SSRF guard's name lookups; `None` is the system's.
    pub resolver: Option<Arc<dyn bottle_gitgate::guard::Resolver>>,
}

impl GateSetup {
    pub fn https(up: &HttpsUpstream, push: &[&str]) -> Self {
        GateSetup {
            repos: vec![repo("app", &up.url, Auth::Token, push)],
            upstream_ca: Some(up.ca_file.clone()),
            ssh_key: None,
            known_hosts: None,
            limits: Limits::default(),
            token: TOKEN.to_string(),
            resolve: BTreeMap::new(),
            upstream_proxy: None,
            resolver: None,
        }
    }

    pub fn ssh(up: &SshUpstream, push: &[&str]) -> Self {
        GateSetup {
            repos: vec![repo("app", &up.url, Auth::SshKey, push)],
            upstream_ca: None,
            ssh_key: Some(up.client_key.clone()),
            known_hosts: Some(up.known_hosts.clone()),
            limits: Limits::default(),
            token: TOKEN.to_string(),
            resolve: BTreeMap::new(),
            upstream_proxy: None,
            resolver: None,
        }
    }

    pub fn start(self) -> RunningGate {
        init();
        let rt = runtime();
        let state = tempfile::tempdir().unwrap();
        let mut repos = BTreeMap::new();
        let mut secrets = GateSecrets::default();
        secrets
            .tokens
            .insert("GITHUB_TOKEN".into(), Secret::new(self.token.clone()));
        for r in &self.repos {
            repos.insert(
                r.name.to_string(),
                RepoConfig {
                    url: r.url.clone(),
                    push: r.push.clone(),
                    protect: vec!["main".into(), "master".into()],
                    auth: r.auth,
                    token_ref: (r.auth == Auth::Token).then(|| "GITHUB_TOKEN".to_string()),
                },
            );
            if let Some(k) = &self.ssh_key {
                secrets
                    .ssh_keys
                    .insert(r.name.to_string(), Secret::new(k.clone()));
            }
            if let Some(k) = &self.known_hosts {
                secrets.known_hosts.insert(r.name.to_string(), k.clone());
            }
        }
        let config = GateConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: state.path().to_path_buf(),
            upstream_ca: self.upstream_ca,
            repos,
            resolve: self.resolve,
            upstream_proxy: self.upstream_proxy,
            host_addresses: Default::default(),
        };
        let audit = Memory::default();
        let options = Options {
            hook_command: vec![env!("CARGO_BIN_EXE_bottle-gitgate-hook").to_string()],
            audit: Arc::new(audit.clone()),
            limits: self.limits,
            http_backend: None,
        };
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = match self.resolver {
            Some(r) => rt.block_on(bottle_gitgate::Gate::with_resolver(
                config, secrets, options, r,
            )),
            None => rt.block_on(bottle_gitgate::Gate::new(config, secrets, options)),
        }
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = rt.spawn(gate.serve(listener, async {
            let _ = stopped.await;
        }));
        RunningGate {
            stop: Some(stop),
            served: Some(served),
            url: format!("http://{addr}"),
            audit,
            state,
            rt: Background(Some(rt)),
        }
    }
}

/// Clones `url` into a fresh folder under `parent`.
pub fn clone(parent: &Path, url: &str, dir: &str) -> PathBuf {
    git(parent, &["clone", "-q", url, dir]);
    parent.join(dir)
}

/// Shared, so a process watcher can record what it saw.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Watches `/proc/*/cmdline` of every process until stopped; returns every
/// command line seen that mentions git or ssh.
pub struct CmdlineWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl CmdlineWatch {
    pub fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !s2.load(Ordering::SeqCst) {
                let Ok(rd) = std::fs::read_dir("/proc") else {
                    break;
                };
                for e in rd.flatten() {
                    if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                        let line = String::from_utf8_lossy(&b).replace('\0', " ");
                        if line.contains("git") || line.contains("ssh") {
                            seen.insert(line);
                        }
                    }
                }
            }
            seen.into_iter().collect()
        });
        CmdlineWatch {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Every file under `dir` (recursively) except in the folders named `skip`.
pub fn files_under(dir: &Path, skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !skip.iter().any(|s| p.file_name().is_some_and(|n| n == *s)) {
                    stack.push(p);
                }
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn basic_header_b64(token: &str) -> String {
    String::from_utf8(bottle_dlp::base64_encode(
        format!("x-access-token:{token}").as_bytes(),
        false,
        true,
    ))
    .unwrap()
}

/// A minimal HTTP CONNECT proxy on loopback (an `egress.upstream_proxy`
/// stand-in): it records each CONNECT target and relays the bytes.
pub struct ConnectProxy {
    /// First, so it stops before the other fields are dropped.
    rt: Background,
    pub url: String,
    pub targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = runtime();
        let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        rt.spawn(async move {
            while let Ok((mut client, _)) = l.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if client.read_exact(&mut b).await.is_err() {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let Some(target) = head
                        .strip_prefix("CONNECT ")
                        .and_then(|r| r.split(' ').next())
                        .map(str::to_string)
                    else {
                        let _ = client.write_all(b"HTTP/1.1 405 Only CONNECT\r\n\r\n").await;
                        return;
                    };
                    seen.lock().unwrap().push(target.clone());
                    let Ok(mut up) = tokio::net::TcpStream::connect(&target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                });
            }
        });
        ConnectProxy {
            url,
            targets,
            rt: Background(Some(rt)),
        }
    }
}

/// A listener that only counts the connections it gets and drops them: the
/// internal service a rebound upstream name would lead git to.
pub struct Trap {
    /// First, so it stops before the other fields are dropped.
    rt: Background,
    pub hits: Arc<AtomicUsize>,
}

impl Trap {
    pub fn start(listeners: Vec<std::net::TcpListener>) -> Self {
        let rt = runtime();
        let hits = Arc::new(AtomicUsize::new(0));
        for l in listeners {
            l.set_nonblocking(true).unwrap();
            let l = {
                let _in_rt = rt.enter();
                TcpListener::from_std(l).unwrap()
            };
            let hits = hits.clone();
            rt.spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    hits.fetch_add(1, Ordering::SeqCst);
                    drop(s);
                }
            });
        }
        Trap {
            hits,
            rt: Background(Some(rt)),
        }
    }
}

/// An IPv4 address of this machine, other than loopback, that the SSRF
/// guard allows: the source address towards TEST-NET-1 (the default route),
/// else any address `ip -4 addr` lists. `Err` says why there is none.
pub fn local_allowed_ipv4() -> Result<std::net::Ipv4Addr, String> {
    let mut seen = Vec::new();
    if let Ok(s) = std::net::UdpSocket::bind("0.0.0.0:0")
        && s.connect("192.0.2.1:9").is_ok()
        && let Ok(std::net::SocketAddr::V4(a)) = s.local_addr()
    {
        seen.push(*a.ip());
    }
    if let Ok(out) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut words = line.split_whitespace();
            if words.any(|w| w == "inet")
                && let Some(ip) = words
                    .next()
                    .and_then(|cidr| cidr.split('/').next())
                    .and_then(|ip| ip.parse().ok())
            {
                seen.push(ip);
            }
        }
    }
    seen.iter()
        .copied()
        .find(|ip| !bottle_addr::is_forbidden(std::net::IpAddr::V4(*ip)))
        .ok_or_else(|| {
            format!("this machine has no IPv4 address the SSRF guard allows (saw {seen:?})")
        })
}

/// The gate's name lookups in the DNS-rebinding tests: `localhost` is a
/// harmless address of this machine; git's own lookup (the system's) still
/// says loopback.
pub struct Rebinding(pub std::net::IpAddr);

impl bottle_gitgate::guard::Resolver for Rebinding {
    fn lookup<'a>(&'a self, name: &'a str, _: u16) -> bottle_gitgate::guard::Lookup<'a> {
        let answer = if name == "localhost" {
            Ok(vec![self.0])
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        };
        Box::pin(async move { answer })
    }
}

/// What a DNS-rebinding test needs of this machine: an allowed local IPv4
/// for the gate's lookup of `localhost` to answer ([`Rebinding`]), and the
/// system resolving `localhost` to loopback only (the attack's second half,
/// where the trap listens). `Err` says why the test cannot run here.
pub fn rebinding_target() -> Result<std::net::Ipv4Addr, String> {
    let lan = local_allowed_ipv4()?;
    let system: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 9))
        .map(|a| a.map(|sa| sa.ip()).collect())
        .unwrap_or_default();
    if system.is_empty() || !system.iter().all(|ip| ip.is_loopback()) {
        return Err(format!(
            "the system resolves localhost to {system:?}, not loopback"
        ));
    }
    Ok(lan)
}

/// A port P free on `lan` and on loopback: a listener on `lan`:P, and the
/// trap's listeners on 127.0.0.1:P and, when there is IPv6, [::1]:P (git
/// and ssh may try ::1 first).
pub fn listener_with_loopback_traps(
    lan: std::net::Ipv4Addr,
) -> (std::net::TcpListener, Vec<std::net::TcpListener>) {
    (0..50)
        .find_map(|_| {
            let legit = std::net::TcpListener::bind((lan, 0)).ok()?;
            let port = legit.local_addr().ok()?.port();
            let mut traps =
                vec![std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).ok()?];
            traps.extend(std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)).ok());
            Some((legit, traps))
        })
        .expect("a port free on both addresses")
}
