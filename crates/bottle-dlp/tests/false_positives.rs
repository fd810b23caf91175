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

/// A file's text as a JSON string, the way a model API request or a tool
/// result carries it.
fn json_string(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out.into_bytes()
}

/// The decode budget is not spent by ordinary escaping: each clean file,
/// as a JSON string and as a JSON string inside a JSON string (a request
/// that carries a tool result), gives no finding, `encoding-too-deep`
/// included.
#[test]
fn clean_corpus_in_json_strings_has_no_findings() {
    let engine = Engine::builder().build().unwrap();
    let mut report = Vec::new();
    for (name, bytes) in corpus() {
        let once = json_string(&bytes);
        let twice = json_string(&[b"{\"content\":".as_slice(), &once, b"}"].concat());
        for (how, doc) in [("once", once), ("twice", twice)] {
            for f in engine.scan(&doc) {
                report.push(format!("{name} ({how}): {} at {:?}", f.rule, f.range));
            }
        }
    }
    assert!(report.is_empty(), "findings:\n{}", report.join("\n"));
}
