//! Precision: the corpus of real-looking clean files (lockfiles, minified JS,
//! sources, API responses, prose in several languages, public keys, data
//! URIs, references and placeholders) must give no finding at all, whole or
//! streamed.

#![allow(clippy::unwrap_used)] // a test binary: a failed read is a failed test

use std::path::Path;

use bottle_dlp::Engine;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/clean");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "corpus is missing files in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn clean_corpus_has_no_findings() {
    // With a known secret configured too: its forms must not match by chance.
    let engine = Engine::builder()
        .known_secret("sk-ant-oat01-Corpus-Known-Secret-42")
        .build()
        .unwrap();
    let mut report = Vec::new();
    for (name, bytes) in corpus() {
        for f in engine.scan(&bytes) {
            let start = f.range.start as usize;
            let context = String::from_utf8_lossy(
                &bytes[start.saturating_sub(30)..(start + 50).min(bytes.len())],
            )
            .into_owned();
            report.push(format!("{name}: {} at {:?}: {context:?}", f.rule, f.range));
        }
        let mut s = engine.stream_with_step(4096);
        let mut streamed = Vec::new();
        for chunk in bytes.chunks(1000) {
            streamed.extend(s.push(chunk));
        }
        streamed.extend(s.finish());
        for f in streamed {
            report.push(format!("{name} (streamed): {} at {:?}", f.rule, f.range));
        }
    }
    assert!(report.is_empty(), "false positives:\n{}", report.join("\n"));
}

#[test]
fn clean_hosts_have_no_findings() {
    let engine = Engine::new().unwrap();
    for host in [
        "api.github.com",
        "codeload.github.com",
        "pkg-containers.githubusercontent.com",
        "index.crates.io",
        "static.crates.io",
        "pypi.org",
        "registry.yarnpkg.com",
        "proxy.golang.org",
        "sum.golang.org",
        "deb.debian.org",
        "security.debian.org",
        "api.openai.com",
        "generativelanguage.googleapis.com",
        "bedrock-runtime.us-east-1.amazonaws.com",
        "my-bucket.s3.dualstack.eu-central-1.amazonaws.com",
        "ghcr.io",
        "production.cloudflare.docker.com",
    ] {
        assert!(
            engine.scan_host(host).is_empty(),
            "{host}: {:?}",
            engine.scan_host(host)
        );
    }
}
