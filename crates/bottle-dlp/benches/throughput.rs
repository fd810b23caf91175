//! `cargo bench -p bottle-dlp`: single-thread throughput of `Engine::scan`
//! over a corpus directory (`DLP_BENCH_CORPUS`, default the clean test
//! corpus), whole-buffer and streamed, without and with known secrets.
//! Prints MB/s; the comparison with other scanners is `scripts/bench-dlp.sh`.

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
    let start = Instant::now();
    let mut lines = 0usize;
    for _ in 0..rounds {
        for d in &data {
            lines += d.iter().filter(|&&b| b == b'\n').count();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:>26}: {:8.1} MB/s  ({lines} lines)",
        "baseline: count newlines",
        (total * rounds) as f64 / 1e6 / secs
    );
    for (name, engine) in [("no known secrets", &plain), ("two known secrets", &known)] {
        for mode in ["whole", "stream"] {
            // DLP_BENCH_ONLY=whole (or stream) limits the run, for profiling.
            if std::env::var("DLP_BENCH_ONLY").is_ok_and(|m| m != mode) {
                continue;
            }
            let mut findings = 0;
            let start = Instant::now();
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
            let secs = start.elapsed().as_secs_f64();
            let mb = (total * rounds) as f64 / 1e6;
            println!(
                "{name:>18}, {mode:>6}: {:8.1} MB/s  ({findings} findings)",
                mb / secs
            );
        }
    }
}
