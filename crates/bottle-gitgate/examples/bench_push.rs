//! Push benchmark: a large history pushed through the gate vs straight to
//! the same kind of upstream, side by side in one run.
//!
//! `cargo run --release -p bottle-gitgate --example bench_push -- HOOK [COMMITS] [MB] [ROUNDS]`
//! where HOOK is the release `bottle-gitgate-hook` binary. Run by
//! `scripts/bench-gitgate.sh`. Upstreams are `git http-backend` on
//! loopback (plain HTTP, so both paths pay the same transport cost).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bottle_gitgate::audit::Memory;
use bottle_gitgate::config::{Auth, GateConfig, GateSecrets, RepoConfig};
use bottle_gitgate::{Gate, Limits, Options};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "B")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "B")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_backend() -> PathBuf {
    PathBuf::from(git(Path::new("/"), &["--exec-path"]).trim()).join("git-http-backend")
}

/// Plain-HTTP `git http-backend` serving every repo under `root`.
async fn upstream(root: PathBuf) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let backend = http_backend();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let root = root.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let mut cmd = tokio::process::Command::new(&backend);
                        cmd.env_clear()
                            .env("PATH", std::env::var("PATH").unwrap_or_default())
                            .env("GIT_CONFIG_NOSYSTEM", "1")
                            .env("GIT_CONFIG_GLOBAL", "/dev/null")
                            .env("GIT_PROJECT_ROOT", &root)
                            .env("GIT_HTTP_EXPORT_ALL", "1")
                            .env("REQUEST_METHOD", req.method().as_str())
                            .env("PATH_INFO", req.uri().path())
                            .env("QUERY_STRING", req.uri().query().unwrap_or(""))
                            .env("GIT_CONFIG_COUNT", "1")
                            .env("GIT_CONFIG_KEY_0", "http.receivepack")
                            .env("GIT_CONFIG_VALUE_0", "true");
                        for (h, v) in [
                            ("content-type", "CONTENT_TYPE"),
                            ("content-encoding", "HTTP_CONTENT_ENCODING"),
                            ("git-protocol", "GIT_PROTOCOL"),
                        ] {
                            if let Some(x) = req.headers().get(h).and_then(|x| x.to_str().ok()) {
                                cmd.env(v, x);
                            }
                        }
                        async move {
                            let bounds = bottle_gitgate::cgi::Bounds::drained(
                                1 << 34,
                                std::time::Duration::from_secs(3600),
                            );
                            let (resp, _) = bottle_gitgate::cgi::run(cmd, req.into_body(), bounds)
                                .await
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// `n` commits adding about `bytes` of text in total (random-looking hex
/// lines, so the pack is about as large as the text).
fn history(work: &Path, base: &str, n: usize, bytes: usize) {
    let per = bytes / n.max(1);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut s = Vec::new();
    for i in 0..n {
        let mut content = String::with_capacity(per + 80);
        while content.len() < per {
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                content.push_str(&format!("{x:016x}"));
            }
            content.push('\n');
        }
        let msg = format!("bench commit {i}\n");
        write!(s, "commit refs/heads/bench\nmark :{}\n", i + 1).unwrap();
        writeln!(s, "committer B <b@example.com> {} +0000", 1_700_000_000 + i).unwrap();
        write!(s, "data {}\n{msg}", msg.len()).unwrap();
        if i == 0 {
            writeln!(s, "from {base}").unwrap();
        }
        write!(
            s,
            "M 644 inline dir{}/file{i}.txt\ndata {}\n{content}\n",
            i % 20,
            content.len()
        )
        .unwrap();
    }
    let mut child = Command::new("git")
        .current_dir(work)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&s).unwrap();
    assert!(child.wait().unwrap().success());
}

/// CPU seconds (user + system) of this process (the gate and the
/// upstreams run in it) and of its reaped children (every git process).
fn cpu_seconds(ticks_per_s: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name: state is field 3, utime 14 .. cstime 17.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    f.iter().sum::<f64>() / ticks_per_s
}

/// (wall, CPU) seconds of one push. CPU is read a moment after the push,
/// once the servers' children have been reaped.
fn timed_push(work: &Path, url: &str, ticks: f64) -> (f64, f64) {
    let cpu = cpu_seconds(ticks);
    let t = Instant::now();
    git(work, &["push", "-q", url, "bench:refs/heads/bench"]);
    let wall = t.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(300));
    (wall, cpu_seconds(ticks) - cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hook = args
        .get(1)
        .expect("usage: bench_push HOOK [COMMITS] [MB] [ROUNDS]");
    let commits: usize = args.get(2).map_or(2000, |s| s.parse().unwrap());
    let mb: usize = args.get(3).map_or(50, |s| s.parse().unwrap());
    let rounds: usize = args.get(4).map_or(3, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("upstreams");
    std::fs::create_dir_all(&root).unwrap();
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", "template.git"],
    );
    git(tmp.path(), &["init", "-q", "-b", "main", "work"]);
    let work = tmp.path().join("work");
    std::fs::write(work.join("README"), "bench\n").unwrap();
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "seed"]);
    git(&work, &["push", "-q", "../template.git", "main"]);
    let base = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
    let t = Instant::now();
    history(&work, &base, commits, mb << 20);
    eprintln!(
        "history: {commits} commits, ~{mb} MB of text, made in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let up_url = rt.block_on(upstream(root.clone()));

    let ticks: f64 = {
        let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let (mut direct, mut gated) = (Vec::new(), Vec::new());
    let (mut direct_cpu, mut gated_cpu) = (Vec::new(), Vec::new());
    let mut phases: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for which in ["direct", "gated"] {
            git(
                tmp.path(),
                &[
                    "clone",
                    "-q",
                    "--bare",
                    "template.git",
                    root.join(format!("{which}-{round}.git")).to_str().unwrap(),
                ],
            );
        }
        let state = tempfile::tempdir().unwrap();
        let mut repos = BTreeMap::new();
        repos.insert(
            "app".to_string(),
            RepoConfig {
                url: format!("{up_url}/gated-{round}.git"),
                push: vec!["*".into()],
                protect: vec!["main".into()],
                auth: Auth::None,
                token_ref: None,
            },
        );
        let audit = Memory::default();
        let config = GateConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: state.path().to_path_buf(),
            upstream_ca: None,
            repos,
            resolve: Default::default(),
            upstream_proxy: None,
            host_addresses: Default::default(),
        };
        let options = Options {
            hook_command: vec![hook.clone()],
            audit: Arc::new(audit.clone()),
            limits: Limits::default(),
            http_backend: None,
        };
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let gate_url = format!("http://{}/app.git", listener.local_addr().unwrap());
        let gate = rt
            .block_on(Gate::new(config, GateSecrets::default(), options))
            .unwrap();
        let task = rt.spawn(gate.serve(listener, std::future::pending()));
        // Alternate the order so neither path always runs on a warm cache.
        let direct_url = format!("{up_url}/direct-{round}.git");
        let ((d, dc), (g, gc)) = if round % 2 == 0 {
            let d = timed_push(&work, &direct_url, ticks);
            (d, timed_push(&work, &gate_url, ticks))
        } else {
            let g = timed_push(&work, &gate_url, ticks);
            (timed_push(&work, &direct_url, ticks), g)
        };
        let mut ev = Vec::new();
        for _ in 0..500 {
            ev = audit
                .events()
                .into_iter()
                .filter(|e| e.kind == "git-push")
                .collect();
            if !ev.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = ev.first().expect("no push event");
        assert_eq!(e.decision, "allow", "{e:?}");
        let t = e.timings.expect("no timings in the push event");
        let sec = |ms: u64| ms as f64 / 1000.0;
        // Client's view: before the receive-pack POST (discovery with the
        // mirror refresh, the probe) is the push minus the POST's time.
        let post = sec(e.ms);
        let round_phases = [
            ("1 discovery+refresh", (g - post).max(0.0)),
            ("2 receive into mirror", (post - sec(t.hook_ms)).max(0.0)),
            ("3 hook: engine build", sec(t.engine_ms)),
            ("4 hook: rev-list", sec(t.rev_list_ms)),
            ("5 hook: messages", sec(t.messages_ms)),
            ("6 hook: diffs+DLP", sec(t.diffs_ms)),
            ("7 hook: upstream push", sec(t.upstream_ms)),
            (
                "8 hook: other",
                (sec(t.hook_ms)
                    - sec(t.engine_ms)
                    - sec(t.rev_list_ms)
                    - sec(t.messages_ms)
                    - sec(t.diffs_ms)
                    - sec(t.upstream_ms))
                .max(0.0),
            ),
            ("DLP busy (summed over threads)", sec(t.dlp_ms)),
        ];
        eprintln!(
            "round {round}: direct {d:.2}s, gate {g:.2}s, ratio {:.2}; CPU direct {dc:.2}s, gate {gc:.2}s, ratio {:.2}; scanned {:.1} MB",
            g / d,
            gc / dc,
            t.dlp_bytes as f64 / 1e6
        );
        for (name, v) in round_phases {
            eprintln!("  {name:<32} {v:.2}s");
            phases.entry(name).or_default().push(v);
        }
        direct.push(d);
        gated.push(g);
        direct_cpu.push(dc);
        gated_cpu.push(gc);
        task.abort();
    }
    let (d, g) = (median(direct), median(gated));
    println!("commits={commits} mb={mb} rounds={rounds}");
    println!("direct_s={d:.2} gate_s={g:.2} ratio={:.2}", g / d);
    let (dc, gc) = (median(direct_cpu), median(gated_cpu));
    println!(
        "cpu: direct_s={dc:.2} gate_s={gc:.2} ratio={:.2} (user+system, all processes)",
        gc / dc
    );
    println!("gate breakdown (median per phase):");
    for (name, v) in phases {
        println!("  {name:<32} {:.2}s", median(v));
    }
}
