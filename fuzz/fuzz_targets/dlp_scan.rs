//! The DLP engine on arbitrary bytes (decoding layers, normalisation, rules,
//! known secrets, streaming, host checks, redaction): no panic, findings
//! inside the input, previews of at most four characters, and a redacted
//! copy that no longer holds the known secret.

#![no_main]

use std::sync::OnceLock;

use bottle_dlp::Engine;
use libfuzzer_sys::fuzz_target;

const KNOWN: &str = "sk-ant-oat01-fuzz-known-secret";

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::builder()
            .known_secret(KNOWN)
            .build()
            .expect("engine builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let e = engine();
    let whole = e.scan(data);
    for f in &whole {
        assert!(f.range.start < f.range.end && f.range.end <= data.len() as u64);
        assert!(f.redacted.chars().count() <= 5);
    }
    // Streamed in chunks whose size the input picks.
    // (At least 8 bytes a step: a scan per byte makes each run quadratic and
    // the fuzzer slow without exercising anything new.)
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1) * 8;
    let mut s = e.stream_with_step(step);
    let mut streamed = Vec::new();
    for chunk in data.chunks(step * 3 + 1) {
        let settled = s.settled();
        for f in s.push(chunk) {
            assert!(f.range.start >= settled && f.range.end <= data.len() as u64);
            streamed.push(f);
        }
    }
    streamed.extend(s.finish());
    let (redacted, _) = e.redact(data);
    assert!(!redacted.windows(KNOWN.len()).any(|w| w == KNOWN.as_bytes()));
    if let Ok(host) = std::str::from_utf8(data) {
        let _ = e.scan_host(host);
    }
});
