//! Encodings a receiving server undoes and the engine must undo too, each
//! found by a security review with the real engine: line-wrapped base64
//! (MIME, the `base64` command, JSON strings with `\n`), JSON `\uXXXX`
//! escapes, HTML/XML numeric character references, UTF-16 bodies,
//! quoted-printable parts, and base64/hex runs that are partly binary.

use crate::decode::{base64_encode, hex_encode};
use crate::tests::{DlpTester, expand, noise};
use crate::{Engine, Finding, KNOWN_SECRET_RULE};

/// A known secret with characters that no rule would find on its own.
const KNOWN: &str = "s3cr3t-Upstream-Token-5f2c9a71d04e";

fn engine() -> Engine {
    Engine::builder()
        .known_secret(KNOWN)
        .build()
        .expect("engine builds")
}

fn rules(found: &[Finding]) -> Vec<&'static str> {
    found.iter().map(|f| f.rule).collect()
}

fn has(found: &[Finding], rule: &str) -> bool {
    found.iter().any(|f| f.rule == rule)
}

/// `encoded` cut into lines of `width` characters joined by `sep`.
fn wrap(encoded: &[u8], width: usize, sep: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in encoded.chunks(width).enumerate() {
        if i > 0 {
            out.extend_from_slice(sep.as_bytes());
        }
        out.extend_from_slice(line);
    }
    out
}

/// Every chunking of a stream must find `rule` too.
fn streamed_finds(e: &Engine, input: &[u8], rule: &str) {
    for (chunk, step) in [(1usize, 64usize), (7, 100), (50, 13), (1500, 4096)] {
        let mut s = e.stream_with_step(step);
        let mut found = Vec::new();
        for c in input.chunks(chunk) {
            found.extend(s.push(c));
        }
        found.extend(s.finish());
        assert!(
            has(&found, rule),
            "{rule}: not found streamed in chunks of {chunk}, step {step}: {:?}",
            rules(&found)
        );
        for f in &found {
            assert!(f.range.start < f.range.end && f.range.end <= input.len() as u64);
        }
    }
}

// ---- 1. line-wrapped base64 -------------------------------------------------

/// The base64 of a text with the secret after `pad` bytes, wrapped at 76
/// columns with CRLF as MIME and the `base64` command write it: wherever
/// the line break falls in the secret's encoding, the secret is found, and
/// the finding covers the whole wrapped block.
#[test]
fn mime_wrapped_base64_at_every_offset() {
    let e = engine();
    let token = expand("ghp_{an:36}", 11);
    for pad in 0..=60 {
        let text = format!(
            "{} {KNOWN} and {token} and then some more words to fill a line or two",
            "x".repeat(pad)
        );
        let block = wrap(&base64_encode(text.as_bytes(), false, true), 76, "\r\n");
        let mut body =
            b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                .to_vec();
        let at = body.len() as u64;
        body.extend_from_slice(&block);
        body.extend_from_slice(b"\r\n--b--\r\n");
        let found = e.scan(&body);
        // The block ends at its padding or runs on into the next line
        // (`--b--` is base64url): the finding starts with the block and
        // covers it.
        let block_end = at + block.len() as u64;
        for rule in [KNOWN_SECRET_RULE, "github-pat"] {
            assert!(
                found
                    .iter()
                    .any(|f| f.rule == rule && f.range.start == at && f.range.end >= block_end),
                "pad {pad}: no {rule} over the block {at}..{block_end}: {found:?}"
            );
        }
        if pad % 20 == 0 {
            streamed_finds(&e, &body, KNOWN_SECRET_RULE);
            streamed_finds(&e, &body, "github-pat");
        }
    }
}

#[test]
fn base64_wrapped_every_few_characters() {
    let e = engine();
    let token = expand("ghp_{an:36}", 12);
    let text = format!("key {KNOWN} and {token} end");
    for width in [4usize, 5, 7, 8, 13, 64] {
        for sep in ["\n", "\r\n"] {
            let body = wrap(&base64_encode(text.as_bytes(), false, true), width, sep);
            let found = e.scan(&body);
            assert!(
                has(&found, KNOWN_SECRET_RULE) && has(&found, "github-pat"),
                "width {width} {sep:?}: {:?}",
                rules(&found)
            );
        }
    }
    let body = wrap(&base64_encode(text.as_bytes(), false, true), 8, "\n");
    streamed_finds(&e, &body, "github-pat");
}

/// A file for an API that takes base64 in JSON (GitHub's contents API
/// stores the decoded file), wrapped with `\n` or `\r\n` written as JSON
/// escapes.
#[test]
fn base64_wrapped_with_json_escapes() {
    let e = engine();
    let token = expand("ghp_{an:36}", 13);
    let file = format!("# config\nupstream = \"{KNOWN}\"\ngithub = \"{token}\"\n");
    let b64 = base64_encode(file.as_bytes(), false, true);
    for (width, sep) in [(60usize, "\\n"), (76, "\\r\\n"), (8, "\\n"), (7, "\\n")] {
        let wrapped = String::from_utf8(wrap(&b64, width, sep)).expect("ascii");
        let body = format!("{{\"message\":\"add config\",\"content\":\"{wrapped}\\n\"}}");
        let found = e.scan(body.as_bytes());
        assert!(
            has(&found, KNOWN_SECRET_RULE) && has(&found, "github-pat"),
            "width {width} {sep:?}: {:?}",
            rules(&found)
        );
        if width == 60 {
            streamed_finds(&e, body.as_bytes(), "github-pat");
        }
    }
}

/// Through every path of the tester (stream splits, nested encodings,
/// Unicode disguises) as a rule case.
#[test]
fn wrapped_base64_as_a_rule_case() {
    let t = DlpTester::new();
    let text = expand("token: ghp_{an:36} in a file", 14);
    let b64 = base64_encode(text.as_bytes(), false, true);
    let wrapped = String::from_utf8(wrap(&b64, 16, "\r\n")).expect("ascii");
    t.positive(
        "github-pat",
        &format!("Content-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n"),
    );
}

/// What joining lines must not break: one base64 or hex value per line,
/// of lengths that are not a multiple of four, each decoded on its own.
#[test]
fn independent_encoded_lines_still_decode_alone() {
    let t = DlpTester::new();
    let token = expand("ghp_{an:36}", 15);
    let line = base64_encode(format!("token: {token}").as_bytes(), true, false);
    for first in [
        &b"Zm9vYmFyYmF6cXV4cXV1eHh5enp6"[..], // 28 characters, decodes to text
        b"Zm9vYmFyYmF6cXV4cXV1eHh5enp6YQ",    // 30: misaligns what follows
        b"9f86d081884c7d659a2feaa0c55ad015a3bf4f", // hex, then base64
    ] {
        for sep in ["\n", "\r\n", "\\n"] {
            let mut body = first.to_vec();
            body.extend_from_slice(sep.as_bytes());
            body.extend_from_slice(&line);
            body.extend_from_slice(b"\n");
            let found = t.engine.scan(&body);
            assert!(
                has(&found, "github-pat"),
                "{:?}: {:?}",
                String::from_utf8_lossy(&body),
                rules(&found)
            );
        }
    }
    // A hex secret on a line before a base64 line.
    let mut body = hex_encode(format!("token {token}").as_bytes(), false);
    body.push(b'\n');
    body.extend_from_slice(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo\n");
    assert!(has(&t.engine.scan(&body), "github-pat"));
}

// ---- 2. escapes the server decodes ------------------------------------------

#[test]
fn json_unicode_escapes() {
    let e = engine();
    let token = expand("ghp_{an:36}", 21);
    // One character escaped, upper-case hex, every character escaped.
    let one = format!("{{\"a\":\"gh\\u0070_{}\"}}", &token[4..]);
    let upper = format!("{{\"a\":\"gh\\u0070\\u005F{}\"}}", &token[4..]);
    let all: String = token
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let all = format!("{{\"a\":\"{all}\"}}");
    for body in [&one, &upper, &all] {
        let found = e.scan(body.as_bytes());
        assert!(has(&found, "github-pat"), "{body}: {:?}", rules(&found));
        streamed_finds(&e, body.as_bytes(), "github-pat");
    }
    // The finding is the escaped token, not the whole body.
    let (out, _) = e.redact(one.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&out),
        "{\"a\":\"[REDACTED:github-pat]\"}"
    );
    // A known secret with one character escaped.
    let known = KNOWN.replacen('U', "\\u0055", 1);
    let body = format!("{{\"upstream\":\"{known}\",\"n\":1}}");
    assert!(has(&e.scan(body.as_bytes()), KNOWN_SECRET_RULE), "{body}");
    // `\/` as PHP writes every slash.
    let url = expand(
        "{\"remote\":\"https:\\/\\/user:{an:20}@git.example.com\\/r.git\"}",
        22,
    );
    assert!(has(&e.scan(url.as_bytes()), "url-credentials"), "{url}");
}

/// A token at the start of a line in a JSON string (a file or a command's
/// output sent to an API): the `n` of `\n` glued to it defeated the rules'
/// word boundary, so the raw bytes never matched.
#[test]
fn json_line_break_before_a_token() {
    let e = engine();
    let ghp = expand("ghp_{an:36}", 25);
    let aws = expand("AKIA{b32:16}", 26);
    for (rule, token) in [("github-pat", &ghp), ("aws-access-key-id", &aws)] {
        for esc in ["\\n", "\\r\\n", "\\t", "\\u000a", "\\u001b"] {
            let body = format!("{{\"output\":\"first line{esc}{token}{esc}last line\"}}");
            let found = e.scan(body.as_bytes());
            assert!(has(&found, rule), "{body}: {:?}", rules(&found));
        }
        let xml = format!("<a title=\"x&#10;{token}\"/>");
        assert!(has(&e.scan(xml.as_bytes()), rule), "{xml}");
    }
    let t = DlpTester::new();
    t.positive(
        "github-pat",
        &format!("{{\"output\":\"$ cat token\\n{ghp}\\n\"}}"),
    );
}

#[test]
fn json_surrogate_pairs() {
    let secret = "s3cr3t-\u{1F511}-Upstream-9f2c";
    let e = Engine::builder()
        .known_secret(secret)
        .build()
        .expect("builds");
    let body = "{\"k\":\"s3cr3t-\\ud83d\\udd11-Upstream-9f2c\"}";
    assert!(has(&e.scan(body.as_bytes()), KNOWN_SECRET_RULE));
    // A lone surrogate does not decode to anything that matches.
    let lone = "{\"k\":\"s3cr3t-\\ud83d-Upstream-9f2c\"}";
    assert!(!has(&e.scan(lone.as_bytes()), KNOWN_SECRET_RULE));
}

#[test]
fn json_escapes_as_a_rule_case() {
    let t = DlpTester::new();
    t.positive(
        "github-pat",
        &expand("{\"auth\":\"gh\\u0070_{an:36}\",\"n\":1}", 23),
    );
    t.positive(
        "aws-access-key-id",
        &expand("{\"key\":\"\\u0041KIA{b32:16}\"}", 24),
    );
}

#[test]
fn numeric_character_references() {
    let e = engine();
    let token = expand("ghp_{an:36}", 31);
    let rest = &token[4..];
    let all: String = token.chars().map(|c| format!("&#{};", c as u32)).collect();
    for body in [
        format!("<token>gh&#112;_{rest}</token>"),
        format!("<token>gh&#x70;_{rest}</token>"),
        format!("<token>gh&#X70;&#x5f;{rest}</token>"),
        format!("<token>gh&#0112;_{rest}</token>"),
        format!("<p>{all}</p>"),
    ] {
        let found = e.scan(body.as_bytes());
        assert!(has(&found, "github-pat"), "{body}: {:?}", rules(&found));
        streamed_finds(&e, body.as_bytes(), "github-pat");
    }
    let known = KNOWN.replacen('U', "&#85;", 1);
    let body = format!("<upstream>{known}</upstream>");
    assert!(has(&e.scan(body.as_bytes()), KNOWN_SECRET_RULE), "{body}");
    let t = DlpTester::new();
    t.positive(
        "github-pat",
        &expand("<input value=\"gh&#x70;_{an:36}\">", 32),
    );
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = bom
        .then_some(0xFEFFu16)
        .into_iter()
        .chain(text.encode_utf16());
    for u in units {
        if big_endian {
            out.extend_from_slice(&u.to_be_bytes());
        } else {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    out
}

/// JSON sent as UTF-16, which Jackson and Python detect with or without a
/// byte order mark.
#[test]
fn utf16_bodies() {
    let e = engine();
    let token = expand("ghp_{an:36}", 41);
    let json = format!(
        "{{\"name\":\"r\u{e9}sum\u{e9} \u{6771}\u{4eac}\",\"upstream\":\"{KNOWN}\",\"github\":\"{token}\",\"n\":1}}"
    );
    for big_endian in [false, true] {
        for bom in [false, true] {
            let body = utf16(&json, big_endian, bom);
            let found = e.scan(&body);
            assert!(
                has(&found, KNOWN_SECRET_RULE) && has(&found, "github-pat"),
                "big endian {big_endian}, bom {bom}: {:?}",
                rules(&found)
            );
            streamed_finds(&e, &body, KNOWN_SECRET_RULE);
            streamed_finds(&e, &body, "github-pat");
            // The finding is where the secret is, not the whole body.
            let f = found.iter().find(|f| f.rule == "github-pat");
            assert!(
                f.is_some_and(|f| f.range.end - f.range.start == 80),
                "{found:?}"
            );
        }
    }
    // PowerShell's -EncodedCommand: base64 of UTF-16LE.
    let cmd = base64_encode(
        &utf16(&format!("$t = '{token}'"), false, false),
        false,
        true,
    );
    let body = format!(
        "powershell -EncodedCommand {}",
        String::from_utf8_lossy(&cmd)
    );
    assert!(has(&e.scan(body.as_bytes()), "github-pat"), "{body}");
}

#[test]
fn quoted_printable_parts() {
    let e = engine();
    let token = expand("ghp_{an:36}", 51);
    let (head, tail) = token.split_at(20);
    let known = KNOWN.replacen('U', "=55", 1);
    for part in [
        format!("token=3D gh=70_{}", &token[4..]),
        format!("token=3D {head}=\r\n{tail}"),
        format!("token=3D {head}=\n{tail}"),
        format!("upstream=3D{known}\r\nand {token}"),
    ] {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{part}\r\n--b--\r\n"
        );
        let found = e.scan(body.as_bytes());
        assert!(has(&found, "github-pat"), "{body:?}: {:?}", rules(&found));
        streamed_finds(&e, body.as_bytes(), "github-pat");
    }
    let body = format!(
        "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nupstream=3D{known}\r\n--b--\r\n"
    );
    assert!(has(&e.scan(body.as_bytes()), KNOWN_SECRET_RULE), "{body}");
}

// ---- 3. encoded runs with a binary part ---------------------------------------

/// Random bytes, then the text: the byte before it is not a word character
/// (one would defeat the rules' `\b`, as it does in plain text).
fn binary_around(text: &str, before: usize, after: usize, seed: u32) -> Vec<u8> {
    let mut out = noise(before, seed);
    if let Some(last) = out.last_mut() {
        *last = 0x9f;
    }
    out.extend_from_slice(text.as_bytes());
    let mut tail = noise(after, seed + 1);
    if let Some(first) = tail.first_mut() {
        *first = 0x00;
    }
    out.extend(tail);
    out
}

#[test]
fn encoded_runs_with_a_binary_part() {
    let e = engine();
    let token = expand("ghp_{an:36}", 61);
    let aws = expand("AKIA{b32:16}", 62);
    for (rule, text) in [("github-pat", &token), ("aws-access-key-id", &aws)] {
        for (before, after) in [(48usize, 0usize), (0, 200), (48, 200), (1000, 3000)] {
            let raw = binary_around(text, before, after, before as u32 + 7);
            for (name, encoded) in [
                ("base64", base64_encode(&raw, false, true)),
                ("base64url", base64_encode(&raw, true, false)),
                ("hex", hex_encode(&raw, false)),
            ] {
                let body = [b"{\"data\":\"", &encoded[..], b"\"}"].concat();
                let found = e.scan(&body);
                assert!(
                    has(&found, rule),
                    "{rule} {name} after {before}, before {after} random bytes: {:?}",
                    rules(&found)
                );
            }
        }
    }
}

/// A binary blob longer than the stream look-back: each scan sees it from
/// an offset that is not a base64 quantum boundary.
#[test]
fn binary_blob_longer_than_the_lookback_streamed() {
    let e = engine();
    let token = expand("ghp_{an:36}", 63);
    let raw = binary_around(&token, 40_001, 40_000, 3);
    for encoded in [base64_encode(&raw, false, true), hex_encode(&raw, true)] {
        let body = [b"data=", &encoded[..], b"\n"].concat();
        assert!(has(&e.scan(&body), "github-pat"));
        for step in [4096usize, 16 * 1024] {
            for offset in [0usize, 1, 2, 3] {
                let mut s = e.stream_with_step(step);
                let mut found = s.push(&body[..offset]);
                for c in body[offset..].chunks(1500) {
                    found.extend(s.push(c));
                }
                found.extend(s.finish());
                assert!(
                    has(&found, "github-pat"),
                    "step {step} offset {offset}: {:?}",
                    rules(&found)
                );
            }
        }
    }
}

/// Random binary in every encoding, wrapped and not, gives nothing.
#[test]
fn random_binary_gives_no_findings() {
    let e = engine();
    for seed in 0..300u32 {
        let len = [16usize, 33, 48, 100, 257, 1000, 4096][seed as usize % 7] + seed as usize;
        let raw = noise(len, seed * 2 + 1);
        let b64 = base64_encode(&raw, false, true);
        for (name, encoded) in [
            ("base64", b64.clone()),
            ("base64url", base64_encode(&raw, true, false)),
            ("hex", hex_encode(&raw, seed % 2 == 0)),
            ("mime", wrap(&b64, 76, "\r\n")),
            ("json-wrapped", wrap(&b64, 60, "\\n")),
            ("utf16 noise", raw.iter().flat_map(|&b| [b, 0]).collect()),
        ] {
            let found = e.scan(&encoded);
            assert!(found.is_empty(), "seed {seed} {name}: {found:?}");
        }
    }
}

/// An escaped token across the boundary of two decoding pieces (16 KiB
/// each, overlapping): a server decodes the whole string, so the engine
/// must see the token whole in one piece wherever it sits. JSON `\u` is 6
/// bytes a character (a 108-character key is 648), a numeric reference
/// with leading zeros 10 or more.
#[test]
fn an_escaped_token_across_a_piece_boundary() {
    let e = engine();
    let key = expand("sk-ant-api03-{url:93}AA", 31);
    let json: String = key
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let ncr: String = KNOWN
        .chars()
        .map(|c| format!("&#{:07};", c as u32))
        .collect();
    for (escaped, filler, rule) in [
        (&json, "\\u0041", "anthropic-api-key"),
        (&ncr, "&#65;", KNOWN_SECRET_RULE),
    ] {
        // An escape every 500 bytes keeps the whole body one region.
        let unit = format!("{filler}{}", "x".repeat(500 - filler.len()));
        let pad = unit.repeat(40);
        for start in (16_384 - escaped.len() - 300..16_400).step_by(50) {
            // Never inside the filler's own escape.
            let start = start - start % 500 + (start % 500).max(filler.len());
            let body = format!("{} {escaped} {}", &pad[..start], unit.repeat(4));
            let found = e.scan(body.as_bytes());
            assert!(has(&found, rule), "at {start}: {:?}", rules(&found));
        }
    }
}

/// Normalising stopped silently once a piece's output reached a bound; a
/// few KiB of characters that expand 11-fold (U+FDFA is 33 bytes in NFKC)
/// left what followed them unread.
#[test]
fn normalising_reads_past_characters_that_expand() {
    let e = engine();
    let hidden: String = KNOWN.chars().flat_map(|c| [c, '\u{200B}']).collect();
    let body = format!("{} {hidden} end", "\u{FDFA}".repeat(1000));
    let found = e.scan(body.as_bytes());
    assert!(has(&found, KNOWN_SECRET_RULE), "{:?}", rules(&found));
    let ghp = expand("ghp_{an:36}", 32);
    let wide: String = ghp
        .chars()
        .map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c))
        .collect();
    let body = format!("{} {wide} end", "\u{FDFA}".repeat(1000));
    let found = e.scan(body.as_bytes());
    assert!(has(&found, "github-pat"), "{:?}", rules(&found));
}

/// Hex or base64 of a token glued to other characters of the alphabet: a
/// path segment (`/6768…`), a `0x` prefix, a name before an underscore, one
/// character before the base64 (`?q=x…`, which shifts every quantum), an
/// odd hex digit before the hex. A server that takes the value apart reads
/// the token; so must the engine.
#[test]
fn encodings_glued_to_other_characters() {
    let e = engine();
    let token = expand("ghp_{an:36}", 33);
    let hex = String::from_utf8(hex_encode(token.as_bytes(), false)).unwrap();
    let b64 = String::from_utf8(base64_encode(token.as_bytes(), false, false)).unwrap();
    for text in [
        format!("GET /{hex} HTTP/1.1"),
        format!("v=0x{hex}&w=1"),
        format!("id=tok_{hex}"),
        format!("/?q=x{b64}"),
        format!("/?q=xy{b64}"),
        format!("/?q=xyz{b64}"),
        format!("k=a{hex}"),
        // Long runs too (the text after the token is several KiB).
        format!(
            "data=x{}",
            String::from_utf8(base64_encode(
                format!("{token} {}", "lorem ipsum ".repeat(300)).as_bytes(),
                false,
                false
            ))
            .unwrap()
        ),
    ] {
        let found = e.scan(text.as_bytes());
        assert!(has(&found, "github-pat"), "{text}: {:?}", rules(&found));
    }
    // A hash in a path stays clean.
    let clean = "GET /objects/3f786850e387550fdab836ed7e6dc881de23001b/tree HTTP/1.1";
    assert!(e.scan(clean.as_bytes()).is_empty());
}

/// A long quoted-printable part with LF-only soft breaks (as Python's
/// `quopri` and many mailers write them): the stream windows far from the
/// part's header still read it as quoted-printable.
#[test]
fn quoted_printable_with_lf_breaks_far_from_its_header() {
    let e = engine();
    let token = expand("ghp_{an:36}", 52);
    let (head, tail) = token.split_at(20);
    let line = format!("{}=3D=\n", "filler text ".repeat(5));
    let body = format!(
        "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}token=3D {head}=\n{tail}\n--b--\r\n",
        line.repeat(400)
    );
    let mut s = e.stream();
    let mut found = Vec::new();
    for c in body.as_bytes().chunks(1000) {
        found.extend(s.push(c));
    }
    found.extend(s.finish());
    assert!(has(&found, "github-pat"), "{:?}", rules(&found));
}
