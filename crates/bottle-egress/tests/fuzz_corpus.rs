//! Replays hostile request heads through the fuzz entry point, so the fuzz
//! harness itself is tested and the cases stay fixed in CI.

#![allow(clippy::unwrap_used)]

use bottle_egress::fuzzing::{parsers, request_head};

#[test]
fn nasty_heads_get_answers_not_panics() {
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"GET http://claude-bottle.local/health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"CONNECT [::1 HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT :443 HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT a.test:99999 HTTP/1.1\r\n\r\n".to_vec(),
        b"CONNECT 0x7f.1:443 HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://api.test/v1/%2e%2e/x HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET http://api.test/v1/%zz HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec(),
        b"GET /anthropic/v1/x?sk-ant-oat01-fuzzsecret HTTP/1.1\r\nHost: s\r\n\r\n".to_vec(),
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n".to_vec(),
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".to_vec(),
        [b"GET http://".as_slice(), &[0xff; 300], b"/ HTTP/1.1\r\n\r\n"].concat(),
        b"GET http://sk-ant-oat01-fuzzsecret.a.test/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ];
    for c in &cases {
        let out = request_head(c);
        parsers(c);
        if !c.is_empty() && c.starts_with(b"GET http://a.test") {
            assert!(
                out.starts_with(b"HTTP/1.1 "),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    let out = String::from_utf8_lossy(&request_head(&cases[2])).into_owned();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = String::from_utf8_lossy(&request_head(&cases[6])).into_owned();
    assert!(
        out.starts_with("HTTP/1.1 403") && out.contains("ip-literal"),
        "{out}"
    );
    let out = String::from_utf8_lossy(&request_head(&cases[13])).into_owned();
    assert!(
        out.starts_with("HTTP/1.1 403") && !out.contains("fuzzsecret"),
        "{out}"
    );
}
