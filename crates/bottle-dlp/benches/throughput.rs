//! `cargo bench -p bottle-dlp`: single-thread throughput of `Engine::scan`
//! over a corpus directory (`DLP_BENCH_CORPUS`, default the clean test
//! corpus), whole-buffer and streamed, without and with known secrets.
//! Prints MB/s by the wall clock and per second on the CPU (the thread may
//! wait for its core on a shared machine), next to two baselines over the
//! same bytes; the comparison with other scanners is `scripts/bench-dlp.sh`.

#![allow(clippy::unwrap_used)] // a benchmark binary: a failed read is a failed run

use std::path::{Path, PathBuf};
use std::time::Instant;

use bottle_dlp::Engine;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Nanoseconds this thread has run on a CPU (Linux), or `None`.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Times `f`: wall-clock MB/s, and MB/s per second on the CPU, which is what
/// counts on a shared machine where the thread waits for its core.
fn timed(bytes: usize, f: impl FnOnce()) -> String {
    let (wall, cpu) = (Instant::now(), cpu_ns());
    f();
    let secs = wall.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    match (cpu, cpu_ns()) {
        (Some(a), Some(b)) => format!(
            "{:8.1} MB/s  (CPU {:8.1} MB/s)",
            mb / secs,
            mb / ((b - a) as f64 / 1e9)
        ),
        _ => format!("{:8.1} MB/s", mb / secs),
    }
}

fn main() {
    let dir = std::env::var("DLP_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/clean"));
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    paths.sort();
    let data: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let total: usize = data.iter().map(Vec::len).sum();
    // Small corpora are repeated so each measurement runs long enough.
    let rounds = (256 << 20) / total.max(1) + 1;
    let plain = Engine::new().unwrap();
    let known = Engine::builder()
        .known_secret("sk-ant-oat01-bench-known-secret-value-0123456789")
        .known_secret("ghp_benchKnownSecretValue0123456789abcd")
        .build()
        .unwrap();
    println!(
        "corpus: {} ({} files, {:.1} MiB) x {rounds}",
        dir.display(),
        paths.len(),
        total as f64 / 1048576.0
    );
    // A trivial pass (count newlines) over the same bytes, as a yardstick for
    // this machine at this moment: shared machines vary a lot.
    let mut lines = 0usize;
    let speed = timed(total * rounds, || {
        for _ in 0..rounds {
            for d in &data {
                lines += d.iter().filter(|&&b| b == b'\n').count();
            }
        }
    });
    println!(
        "{:>26}: {speed}  ({lines} lines)",
        "baseline: count newlines"
    );
    // A per-byte loop that cannot be vectorised (each step depends on the
    // last, like one automaton step per byte): the speed of a scalar scan.
    let mut table = [0u8; 512];
    for (i, t) in table.iter_mut().enumerate() {
        *t = u8::from(((i & 0xff) as u8).is_ascii_alphanumeric());
    }
    let table = std::hint::black_box(table);
    let mut words = 0usize;
    let speed = timed(total * rounds, || {
        for _ in 0..rounds {
            for d in &data {
                let mut state = 0u8;
                for &b in std::hint::black_box(d.as_slice()) {
                    let next = table[usize::from(state) << 8 | usize::from(b)];
                    words += usize::from(next & !state & 1);
                    state = next & 1;
                }
            }
        }
    });
    println!(
        "{:>26}: {speed}  ({words} words)",
        "baseline: per-byte loop"
    );
    for (name, engine) in [("no known secrets", &plain), ("two known secrets", &known)] {
        for mode in ["whole", "stream"] {
            // DLP_BENCH_ONLY=whole (or stream) limits the run, for profiling.
            if std::env::var("DLP_BENCH_ONLY").is_ok_and(|m| m != mode) {
                continue;
            }
            let mut findings = 0;
            let speed = timed(total * rounds, || {
                for _ in 0..rounds {
                    for d in &data {
                        findings += if mode == "whole" {
                            engine.scan(d).len()
                        } else {
                            let mut s = engine.stream();
                            let mut n = 0;
                            for chunk in d.chunks(64 * 1024) {
                                n += s.push(chunk).len();
                            }
                            n + s.finish().len()
                        };
                    }
                }
            });
            println!("{name:>18}, {mode:>6}: {speed}  ({findings} findings)");
        }
    }
    // Large single bodies streamed in 16 KiB chunks, as the proxy sees an
    // upload: a base64 blob (an image in JSON; every window starts inside
    // the run) and a body percent-encoded byte by byte (escape-dense: held
    // whole by the stream scanner until it ends).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let b64 = bottle_dlp::base64_encode(&random, false, true);
    let text: Vec<u8> = data.iter().flatten().copied().take(300 << 10).collect();
    let dense: Vec<u8> = text
        .iter()
        .flat_map(|b| format!("%{b:02X}").into_bytes())
        .collect();
    for (what, body) in [
        ("base64 blob, 4 MiB", &b64),
        ("percent-dense, 0.9 MiB", &dense),
    ] {
        let mut findings = 0;
        let speed = timed(body.len() * 8, || {
            for _ in 0..8 {
                let mut s = known.stream();
                for chunk in body.chunks(16 * 1024) {
                    findings += s.push(chunk).len();
                }
                findings += s.finish().len();
            }
        });
        println!("{what:>26}: {speed}  ({findings} findings)");
    }
}
