//! Host-name checks for the egress proxy: DNS-style exfiltration puts data in
//! labels (`<base32 of a token>.attacker.example`). A label that is very
//! long, hex, base32 or random-looking is a finding, and so is any form of a
//! known secret in the name (ignoring case and the dots between labels), as
//! well as anything the ordinary rules find in it.

use crate::entropy::shannon;
use crate::{Engine, Finding};

/// Longer labels are rare in real names and carry a lot of data.
const LONG_LABEL: usize = 56;
const HEX_LABEL: usize = 24;
const BASE32_LABEL: usize = 24;
const RANDOM_LABEL: usize = 20;
const RANDOM_ENTROPY: f64 = 3.8;
/// DNS names are at most 253 bytes.
const MAX_HOST: usize = 253;

pub(crate) fn scan_host(engine: &Engine, host: &str) -> Vec<Finding> {
    let whole = 0..host.len() as u64;
    let finding = |rule: &'static str, range: std::ops::Range<u64>| Finding {
        rule,
        range,
        redacted: "****".to_string(),
    };
    let mut out = engine.scan(host.as_bytes());
    if engine.known.in_host(host) && !out.iter().any(|f| f.rule == crate::KNOWN_SECRET_RULE) {
        out.push(finding("host-known-secret", whole.clone()));
    }
    if host.len() > MAX_HOST {
        out.push(finding("host-long-name", whole));
    }
    let mut offset = 0u64;
    for label in host.split('.') {
        let range = offset..offset + label.len() as u64;
        offset += label.len() as u64 + 1;
        if let Some(rule) = label_rule(label) {
            out.push(Finding {
                redacted: crate::finding::redact_preview(label.as_bytes()),
                ..finding(rule, range)
            });
        }
    }
    out.sort_by_key(|f| (f.range.start, f.range.end));
    out
}

/// The rule a single label breaks, if any.
fn label_rule(label: &str) -> Option<&'static str> {
    let b = label.as_bytes();
    // Internationalised names are punycode, odd-looking by design: their
    // parts are not judged random. But the prefix proves nothing (any text
    // may follow it, and punycode copies an ASCII part as is), so hex and
    // base32 parts and length count as in any label.
    let idn = b.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"));
    let rest = if idn { &label[4..] } else { label };
    // Judge each dash-separated part: `my-loadbalancer-1234567890` is words
    // and a number, not an encoding.
    for part in rest.split('-') {
        let b = part.as_bytes();
        let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
        let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
        if b.len() >= HEX_LABEL && b.iter().all(u8::is_ascii_hexdigit) && digits > 0 && letters > 0
        {
            return Some("host-hex-label");
        }
        let base32 = |c: &u8| c.is_ascii_alphabetic() || (b'2'..=b'7').contains(c);
        if b.len() >= BASE32_LABEL && b.iter().all(base32) && digits >= 3 && letters > 0 {
            return Some("host-base32-label");
        }
        if !idn
            && b.len() >= RANDOM_LABEL
            && digits >= 2
            && letters > 0
            && shannon(b) >= RANDOM_ENTROPY
        {
            return Some("host-high-entropy-label");
        }
    }
    if b.len() >= LONG_LABEL {
        return Some("host-long-label");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{base32_encode, hex_encode};

    fn rules(e: &Engine, host: &str) -> Vec<&'static str> {
        e.scan_host(host).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn ordinary_hosts_are_clean() {
        let e = Engine::builder()
            .known_secret("sk-ant-oat01-Zq8vB3nM5kL7")
            .build()
            .unwrap();
        for h in [
            "api.anthropic.com",
            "registry.npmjs.org",
            "objects.githubusercontent.com",
            "my-loadbalancer-1234567890.us-west-2.elb.amazonaws.com",
            "d111111abcdef8.cloudfront.net",
            "xn--mnchen-3ya.de",
            "storage.googleapis.com",
            "production-company-logs-bucket-eu-west-1.s3.amazonaws.com",
            "files.pythonhosted.org",
            "sidecar",
        ] {
            assert_eq!(rules(&e, h), Vec::<&str>::new(), "{h}");
        }
    }

    /// `xn--` says nothing about what follows it: hex after it, or hex cut
    /// by dashes and labels, carries a known secret as well as bare hex.
    #[test]
    fn a_punycode_prefix_or_dashes_hide_nothing() {
        let secret = "Zq8vB3nM5kL7Zq8vB3nM5kL7Zq8vB3nM5kL7abcd";
        let e = Engine::builder().known_secret(secret).build().unwrap();
        let hex = String::from_utf8(hex_encode(secret.as_bytes(), false)).unwrap();
        let (a, b) = hex.split_at(40);
        for host in [
            format!("xn--{a}.xn--{b}.zone.example"),
            format!("xn--{hex}.evil.example"),
            format!("{}-{}-{}.zone.example", &a[..20], &a[20..], b),
            format!("xn--{}.zone.example", &hex[..30]),
            // Parts too short for any label rule: only the known form finds it.
            format!(
                "{}.zone.example",
                hex.as_bytes()
                    .chunks(20)
                    .map(|c| {
                        let (x, y) = c.split_at(10);
                        format!(
                            "xn--{}-{}",
                            String::from_utf8_lossy(x),
                            String::from_utf8_lossy(y)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            ),
        ] {
            assert!(!rules(&e, &host).is_empty(), "{host}");
        }
        // Data that itself has `xn` where a label starts: the prefix the
        // server drops with the dashes is the data's own.
        let s2 = "Qw7rXn4pLm2vB8kZt5sYd3hJf6gNc9aE";
        let e = Engine::builder().known_secret(s2).build().unwrap();
        let lower = s2.to_ascii_lowercase();
        let at = lower.find("xn").unwrap();
        let host = format!("{}.xn--{}.zone.example", &s2[..at], &s2[at + 2..]);
        assert!(!rules(&e, &host).is_empty(), "{host}");
        let host = format!("xn--{}.xn--{}.zone.example", &s2[..at], &s2[at + 2..]);
        assert!(!rules(&e, &host).is_empty(), "{host}");
    }

    #[test]
    fn exfiltration_labels_are_found() {
        let secret = "sk-ant-oat01-Zq8vB3nM5kL7";
        let e = Engine::builder().known_secret(secret).build().unwrap();
        let b32 = String::from_utf8(base32_encode(b"some exfiltrated data!")).unwrap();
        assert!(rules(&e, &format!("{b32}.evil.example")).contains(&"host-base32-label"));
        let hex = String::from_utf8(hex_encode(b"exfiltrated bytes", false)).unwrap();
        assert!(rules(&e, &format!("{hex}.evil.example")).contains(&"host-hex-label"));
        assert!(
            rules(&e, "a8Kz3Qp0Lm7Xw2Rt9Vb4Nc6.evil.example").contains(&"host-high-entropy-label")
        );
        let long = "a".repeat(60);
        assert!(rules(&e, &format!("{long}.evil.example")).contains(&"host-long-label"));
        // The bottle's own token, lower-cased and split across labels.
        let split = "sk-ant-oat01-zq8vb.3nm5kl7.evil.example";
        assert!(
            rules(&e, split).contains(&"host-known-secret"),
            "{:?}",
            rules(&e, split)
        );
        let b32 = String::from_utf8(base32_encode(secret.as_bytes())).unwrap();
        assert!(!rules(&e, &format!("{b32}.evil.example")).is_empty());
        // A credential format in a label.
        assert!(rules(&e, "AKIAIOSFODNN7EXAMPLE.evil.example").contains(&"aws-access-key-id"));
    }

    #[test]
    fn non_ascii_labels_do_not_panic() {
        // Found by the dlp_scan fuzz target: a label cut inside a character.
        let e = Engine::new().unwrap();
        let _ = e.scan_host("x=ｇｈｐ\u{200B}_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z0Q");
        let _ = e.scan_host("é.ｇ.例え.テスト");
    }

    #[test]
    fn ranges_point_at_the_label() {
        let e = Engine::new().unwrap();
        let f = e.scan_host("x.0123456789abcdef0123456789abcdef.evil.example");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].range, 2..34);
    }
}
