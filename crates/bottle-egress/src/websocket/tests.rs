use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::dlp::LiteralEngine;

const SECRET: &[u8] = b"SECRET1234567";

fn frames(mode: DlpMode) -> ClientFrames {
    let engine = LiteralEngine::new(vec![("known".into(), SECRET.to_vec())]);
    ClientFrames::new(Dlp::new(Some(Arc::new(engine)), mode))
}

/// One frame as a client sends it, masked with `mask`.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The frames in `wire` as (fin, opcode, unmasked payload); every one must
/// be masked and whole.
fn decode(mut wire: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let head = parse_head(wire)
            .expect("a valid frame")
            .expect("a whole head");
        let len = head.len as usize;
        let payload = &wire[head.size..head.size + len];
        let plain = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ head.mask[i % 4])
            .collect();
        out.push((head.fin, head.opcode, plain));
        wire = &wire[head.size + len..];
    }
    out
}

/// The messages (opcode, payload) and control frames in `wire`, fragments
/// joined.
fn messages(wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut open: Option<(u8, Vec<u8>)> = None;
    for (fin, opcode, payload) in decode(wire) {
        if opcode >= CLOSE {
            out.push((opcode, payload));
            continue;
        }
        let msg = open.get_or_insert((opcode, Vec::new()));
        if opcode != CONTINUATION {
            assert_eq!(msg.1.len(), 0, "a new message inside another");
        }
        msg.1.extend_from_slice(&payload);
        if fin {
            out.extend(open.take());
        }
    }
    assert!(open.is_none(), "a message left open");
    out
}

/// Feeds `wire` in chunks of `step` bytes; the output, or the stop.
fn feed(f: &mut ClientFrames, wire: &[u8], step: usize) -> (Vec<u8>, Option<Stop>) {
    let mut sent = Vec::new();
    for chunk in wire.chunks(step.max(1)) {
        let mut out = Vec::new();
        if let Err(stop) = f.push(chunk, &mut out) {
            return (sent, Some(stop));
        }
        sent.extend(out);
    }
    (sent, None)
}

#[test]
fn clean_messages_pass_whatever_the_chunking() {
    let mut wire = client_frame(true, TEXT, b"hello", [1, 2, 3, 4]);
    wire.extend(client_frame(true, PING, b"p", [9, 9, 9, 9]));
    wire.extend(client_frame(true, BINARY, &[0u8; 70_000], [5, 6, 7, 8]));
    wire.extend(client_frame(true, TEXT, b"", [0; 4]));
    wire.extend(client_frame(true, CLOSE, &[0x03, 0xe8], [1, 1, 1, 1]));
    for step in [1, 2, 3, 7, 14, 100, 1 << 20] {
        let (sent, stop) = feed(&mut frames(DlpMode::Block), &wire, step);
        assert_eq!(stop, None, "step {step}");
        assert_eq!(
            messages(&sent),
            vec![
                (TEXT, b"hello".to_vec()),
                (PING, b"p".to_vec()),
                (BINARY, vec![0u8; 70_000]),
                (TEXT, Vec::new()),
                (CLOSE, vec![0x03, 0xe8]),
            ],
            "step {step}"
        );
    }
}

/// Attack: the secret split over two fragments of one message, and over
/// reads, so that no frame and no read holds all of it. Block mode stops
/// the WebSocket, and no part of what went out holds the secret.
#[test]
fn a_secret_split_across_fragments_stops_the_socket_before_it_is_sent() {
    let mut wire = client_frame(false, TEXT, b"data: SECRET", [1, 2, 3, 4]);
    wire.extend(client_frame(
        true,
        CONTINUATION,
        b"1234567 end",
        [4, 3, 2, 1],
    ));
    for step in 1..wire.len() {
        let (sent, stop) = feed(&mut frames(DlpMode::Block), &wire, step);
        assert_eq!(stop, Some(Stop::Dlp("known".into())), "step {step}");
        let seen: Vec<u8> = decode(&sent).into_iter().flat_map(|(_, _, p)| p).collect();
        assert!(
            !seen.windows(SECRET.len()).any(|w| w == SECRET),
            "step {step}: {}",
            String::from_utf8_lossy(&seen)
        );
    }
}

#[test]
fn redact_mode_replaces_the_secret_in_a_message() {
    let mut f = frames(DlpMode::Redact);
    let wire = client_frame(true, TEXT, b"a SECRET1234567 b", [7, 7, 7, 7]);
    let (sent, stop) = feed(&mut f, &wire, 5);
    assert_eq!(stop, None);
    assert_eq!(
        messages(&sent),
        vec![(TEXT, b"a [REDACTED:known] b".to_vec())]
    );
    assert_eq!(f.first_flag(), Some("known"));
}

/// A close frame's reason and a ping's data are places too; they cannot
/// grow, so redact mode stops the socket as block does. Log mode passes
/// them on and records the rule.
#[test]
fn control_frames_are_scanned() {
    let mut reason = vec![0x03, 0xe8];
    reason.extend_from_slice(SECRET);
    for opcode in [CLOSE, PING, PONG] {
        let wire = client_frame(true, opcode, &reason, [3, 1, 4, 1]);
        for mode in [DlpMode::Block, DlpMode::Redact] {
            let (sent, stop) = feed(&mut frames(mode), &wire, 4);
            assert_eq!(stop, Some(Stop::Dlp("known".into())), "{opcode} {mode:?}");
            assert!(sent.is_empty());
        }
        let mut f = frames(DlpMode::Log);
        let (sent, stop) = feed(&mut f, &wire, 4);
        assert_eq!(stop, None);
        assert_eq!(messages(&sent), vec![(opcode, reason.clone())]);
        assert_eq!(f.first_flag(), Some("known"));
    }
}

/// `log` mode lets findings through: the first is told at once (the
/// socket may never close), the rest are not kept.
#[test]
fn the_first_finding_is_told_at_once_and_the_rest_not_kept() {
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = told.clone();
    let mut f = frames(DlpMode::Log).on_flag(move |rule| t.lock().unwrap().push(rule.to_string()));
    let mut wire = Vec::new();
    for _ in 0..1000 {
        wire.extend(client_frame(true, TEXT, SECRET, [1, 2, 3, 4]));
    }
    let (sent, stop) = feed(&mut f, &wire, 4096);
    assert_eq!(stop, None);
    assert_eq!(messages(&sent).len(), 1000);
    assert_eq!(*told.lock().unwrap(), vec!["known".to_string()]);
    assert_eq!(f.first_flag(), Some("known"));
}

#[test]
fn frames_an_agent_may_not_send_stop_the_socket() {
    let text = client_frame(true, TEXT, b"x", [1, 2, 3, 4]);
    let mut unmasked = text.clone();
    unmasked[1] &= 0x7F;
    let mut compressed = text.clone();
    compressed[0] |= 0x40;
    let mut reserved_op = text.clone();
    reserved_op[0] = 0x83;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", unmasked),
        ("rsv1 (permessage-deflate)", compressed),
        ("reserved opcode", reserved_op),
        (
            "continuation first",
            client_frame(true, CONTINUATION, b"x", [0; 4]),
        ),
        ("long ping", client_frame(true, PING, &[b'a'; 126], [0; 4])),
        ("fragmented close", client_frame(false, CLOSE, b"", [0; 4])),
        ("text inside text", {
            let mut w = client_frame(false, TEXT, b"a", [0; 4]);
            w.extend(client_frame(true, TEXT, b"b", [0; 4]));
            w
        }),
        ("length over 2^63", {
            let mut w = vec![0x82, 0xFF];
            w.extend_from_slice(&u64::MAX.to_be_bytes());
            w.extend_from_slice(&[0; 4]);
            w
        }),
    ];
    for (what, wire) in cases {
        let (_, stop) = feed(&mut frames(DlpMode::Block), &wire, 1);
        assert!(matches!(stop, Some(Stop::Malformed(_))), "{what}: {stop:?}");
    }
}

/// The agent chose the mask key and every payload byte; what goes on the
/// wire is masked with a key of the proxy's.
#[test]
fn frames_go_out_with_the_proxys_own_mask() {
    let wire = client_frame(true, BINARY, &[0u8; 64], [0; 4]);
    let (sent, _) = feed(&mut frames(DlpMode::Block), &wire, 1 << 10);
    let head = parse_head(&sent).unwrap().unwrap();
    assert_ne!(head.mask, [0; 4]);
    assert_ne!(&sent[head.size..], &[0u8; 64][..]);
}

proptest! {
    /// Any fragmentation of any messages, fed in any chunks, comes out as
    /// the same messages.
    #[test]
    fn refragmenting_keeps_every_message(
        msgs in prop::collection::vec((prop::bool::ANY, prop::collection::vec(any::<u8>(), 0..300), 1usize..5), 1..6),
        step in 1usize..64,
        mask in any::<[u8; 4]>(),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (text, payload, parts) in &msgs {
            let opcode = if *text { TEXT } else { BINARY };
            let size = payload.len().div_ceil(*parts).max(1);
            let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(size).collect() };
            for (i, piece) in pieces.iter().enumerate() {
                let op = if i == 0 { opcode } else { CONTINUATION };
                wire.extend(client_frame(i + 1 == pieces.len(), op, piece, mask));
            }
            want.push((opcode, payload.clone()));
        }
        let (sent, stop) = feed(&mut frames(DlpMode::Block), &wire, step);
        prop_assert_eq!(stop, None);
        prop_assert_eq!(messages(&sent), want);
    }
}
