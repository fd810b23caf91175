//! A DNS responder that answers only the bottle's own names and refuses
//! everything else with NXDOMAIN. It never recurses and never forwards, so a
//! query cannot carry data out of the bottle; each refused query is an audit
//! event. The wire parsing is small, bounded and written here so hostile
//! packets can be fuzzed against [`Responder::answer`].

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::audit::{Audit, Event};
use crate::dlp::Dlp;
use crate::error::Deny;
use crate::limits::{DNS_MAX_MESSAGE, DNS_TCP_TIMEOUT};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const TTL: u32 = 60;
/// What a refused query's event shows when no label of its name can be read.
const UNREADABLE_NAME: &str = "<unreadable>";
/// TCP clients served at once.
const MAX_TCP_CLIENTS: usize = 256;
/// The pause after a socket error before the next try.
const ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Answers a fixed set of names.
pub struct Responder {
    names: HashMap<String, IpAddr>,
    audit: Audit,
    dlp: Option<Dlp>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Responder({} names)", self.names.len())
    }
}

/// A parsed question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Byte offset just past the question in the message.
    pub end: usize,
}

impl Responder {
    /// `names`: name -> address. Names are matched case-insensitively,
    /// without a trailing dot. `dlp` (optional) redacts names in events.
    pub fn new(names: HashMap<String, IpAddr>, audit: Audit, dlp: Option<Dlp>) -> Self {
        let names = names
            .into_iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
            .collect();
        Self { names, audit, dlp }
    }

    /// The reply to one DNS message, or `None` when it is not worth one
    /// (shorter than a header, or itself a response). Every refused query,
    /// malformed ones included, is one audit event; packets that get no
    /// answer get no event either, so a stray packet cannot write to the log.
    pub fn answer(&self, msg: &[u8]) -> Option<Vec<u8>> {
        if msg.len() < 12 || msg.len() > DNS_MAX_MESSAGE {
            return None;
        }
        let id = [msg[0], msg[1]];
        let flags = u16::from_be_bytes([msg[2], msg[3]]);
        if flags & 0x8000 != 0 {
            return None; // a response: never answer those (reflection loops)
        }
        let rd = (flags & 0x0100) != 0;
        let opcode = ((flags >> 11) & 0xf) as u8;
        let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
        if opcode != 0 {
            self.refused_unread(msg, qdcount, "notimp");
            return Some(header_only(id, opcode, rd, RCODE_NOTIMP));
        }
        let Some(q) = (qdcount == 1).then(|| parse_question(msg)).flatten() else {
            self.refused_unread(msg, qdcount, "formerr");
            return Some(header_only(id, 0, rd, RCODE_FORMERR));
        };
        let known = self.names.get(&q.name).copied();
        let (rcode, answer) = match known {
            None => {
                self.refused(&q.name, None);
                (RCODE_NXDOMAIN, None)
            }
            Some(_) if q.qclass != CLASS_IN => (0, None),
            Some(ip) => match (ip, q.qtype) {
                (IpAddr::V4(_), TYPE_A) | (IpAddr::V6(_), TYPE_AAAA) => (0, Some(ip)),
                _ => (0, None), // NODATA: the name exists, not with that type
            },
        };
        let mut out = Vec::with_capacity(q.end + 32);
        out.extend_from_slice(&id);
        // QR=1, opcode 0, AA=1, RD echoed, RA=0 (we never recurse).
        out.push(0x84 | u8::from(rd));
        out.push(rcode);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&msg[12..q.end]);
        if let Some(ip) = answer {
            out.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
            let (t, data): (u16, Vec<u8>) = match ip {
                IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
                IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
            };
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&TTL.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(&data);
        }
        Some(out)
    }

    /// The event of a refused query; `rule` says why when it was not
    /// answered NXDOMAIN (`formerr`, `notimp`).
    fn refused(&self, name: &str, rule: Option<&'static str>) {
        if !self.audit.enabled() {
            return; // `log: off`: no event, so no redaction work either
        }
        let mut ev = Event::deny("dns", Deny::DnsRefused);
        ev.rule = rule.map(str::to_string);
        // Redacted only if written: past the rate limit a refusal is
        // counted, and a flood of unique names would otherwise cost a DLP
        // pass per packet on the responder's one task.
        self.audit.emit_finished(ev, |ev| {
            ev.host = Some(match &self.dlp {
                Some(d) => crate::server::redact_for_log(d, name),
                None => name.to_string(),
            });
        });
    }

    /// The event of a query refused before its question was understood:
    /// the name as far as its first question can be read (bounded like any
    /// name), or a placeholder.
    fn refused_unread(&self, msg: &[u8], qdcount: u16, rule: &'static str) {
        if !self.audit.enabled() {
            return;
        }
        let name = if qdcount == 0 {
            String::new()
        } else {
            read_name(msg).text
        };
        let shown = if name.is_empty() {
            UNREADABLE_NAME
        } else {
            &name
        };
        self.refused(shown, Some(rule));
    }

    /// Serves UDP until `shutdown`.
    pub async fn serve_udp<F: Future<Output = ()>>(self: Arc<Self>, sock: UdpSocket, shutdown: F) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; DNS_MAX_MESSAGE];
        loop {
            let (n, peer) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(_) => {
                        // Not in a tight loop (an error that repeats would
                        // burn the sidecar's CPU), as the proxy's accept.
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            if let Some(mut reply) = self.answer(&buf[..n]) {
                if reply.len() > 512 {
                    // Never happens with one answer, but keep UDP within the classic bound.
                    reply.truncate(12);
                    reply[2] |= 0x02;
                }
                let _ = sock.send_to(&reply, peer).await;
            }
        }
    }

    /// Serves DNS over TCP (2-byte length prefix) until `shutdown`.
    pub async fn serve_tcp<F: Future<Output = ()>>(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: F,
    ) {
        tokio::pin!(shutdown);
        let slots = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of descriptors, say: retried, not spun on.
                        tokio::time::sleep(ERROR_PAUSE).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(DNS_TCP_TIMEOUT, me.tcp_client(stream)).await;
                drop(permit);
            });
        }
    }

    async fn tcp_client(&self, mut s: TcpStream) -> std::io::Result<()> {
        loop {
            let len = usize::from(s.read_u16().await?);
            if len > DNS_MAX_MESSAGE {
                return Ok(());
            }
            let mut msg = vec![0u8; len];
            s.read_exact(&mut msg).await?;
            let Some(reply) = self.answer(&msg) else {
                return Ok(());
            };
            let n = u16::try_from(reply.len()).unwrap_or(u16::MAX);
            s.write_all(&n.to_be_bytes()).await?;
            s.write_all(&reply).await?;
        }
    }
}

fn header_only(id: [u8; 2], opcode: u8, rd: bool, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id);
    out.push(0x80 | (opcode << 3) | u8::from(rd));
    out.push(rcode);
    out.extend_from_slice(&[0; 8]);
    out
}

/// Parses the one question; no compression pointers (a query has nothing to
/// point back to), labels 1-63 bytes, name at most 255 bytes.
pub fn parse_question(msg: &[u8]) -> Option<Question> {
    let name = read_name(msg);
    let i = name.end?;
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(i + 2)?, *msg.get(i + 3)?]);
    Some(Question {
        name: name.text,
        qtype,
        qclass,
        end: i + 4,
    })
}

/// The first question's name, as far as it could be read.
struct Name {
    /// The labels read, lower-cased, odd bytes as `?`; at most 255 bytes.
    text: String,
    /// The offset just past the name, or `None` when it is broken there
    /// (truncated, a compression pointer or reserved label type, or over
    /// 255 bytes): `text` then holds the labels before the break.
    end: Option<usize>,
}

/// Reads the name at the start of the question section.
fn read_name(msg: &[u8]) -> Name {
    let mut i = 12;
    let mut name = String::new();
    let mut wire_len = 0usize;
    let end = loop {
        let Some(&len) = msg.get(i) else {
            break None;
        };
        let len = usize::from(len);
        i += 1;
        wire_len += len + 1;
        if wire_len > 255 {
            break None;
        }
        if len == 0 {
            break Some(i);
        }
        if len > 63 {
            break None; // compression pointer or reserved label type
        }
        let Some(label) = msg.get(i..i + len) else {
            break None;
        };
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            // Names with dots or odd bytes inside a label never match a
            // configured name; map them to a visible placeholder.
            let c = if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                b as char
            } else {
                '?'
            };
            name.push(c.to_ascii_lowercase());
        }
        i += len;
    };
    Name { text: name, end }
}

/// A standard query (recursion desired, class IN) for `name`, e.g. type 1
/// (A): for clients of a resolver, such as `doctor --self-test`'s probe.
/// Labels longer than 63 bytes are cut to 63.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        let l = &l.as_bytes()[..l.len().min(63)];
        m.push(l.len() as u8);
        m.extend_from_slice(l);
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuditTarget;
    use proptest::prelude::*;

    fn responder() -> (Responder, crate::audit::MemoryLog) {
        responder_with(None)
    }

    fn responder_with(dlp: Option<Dlp>) -> (Responder, crate::audit::MemoryLog) {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let mut names = HashMap::new();
        names.insert("sidecar".to_string(), "10.1.2.3".parse().unwrap());
        names.insert(
            "claude-bottle.local.".to_string(),
            "10.1.2.3".parse().unwrap(),
        );
        names.insert("v6.internal".to_string(), "fd00::5".parse().unwrap());
        (Responder::new(names, audit, dlp), log.unwrap())
    }

    #[test]
    fn known_names_are_answered() {
        let (r, _) = responder();
        let a = r.answer(&query(7, "SideCar", TYPE_A)).unwrap();
        assert_eq!(&a[..2], &[0, 7]);
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 1, 2, 3]);
        assert_eq!(a[3] & 0x80, 0, "RA=0: no recursion offered");
        let a = r.answer(&query(8, "claude-bottle.local", TYPE_A)).unwrap();
        assert_eq!(&a[a.len() - 4..], &[10, 1, 2, 3]);
        let a = r.answer(&query(9, "v6.internal", TYPE_AAAA)).unwrap();
        assert_eq!(a[a.len() - 16], 0xfd);
        let a = r.answer(&query(9, "sidecar", TYPE_AAAA)).unwrap();
        assert_eq!((a[3] & 0x0f, a[7]), (0, 0), "NODATA");
    }

    /// Attack: a flood of refused queries (each one an event) to rotate
    /// earlier events out of the sidecar's bounded log. Past the rate
    /// limit the refusals are counted; every query is answered and every
    /// one is accounted for, by an event of its own or in a count.
    #[tokio::test]
    async fn a_flood_of_refused_queries_is_counted_not_logged() {
        const QUERIES: usize = 3000;
        let (r, log) = responder();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(std::sync::Arc::new(r).serve_udp(sock, async {
            let _ = stopped.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 512];
        for i in 0..QUERIES {
            let name = format!("x{i}.flood.example");
            client.send(&query(i as u16, &name, TYPE_A)).await.unwrap();
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("every query is answered")
                .unwrap();
            assert_eq!(buf[3] & 0x0f, RCODE_NXDOMAIN, "{n}");
        }
        let seconds = started.elapsed().as_secs() + 1;
        let mut counted = 0;
        let mut logged = 0;
        for _ in 0..300 {
            let events = log.events();
            logged = events.iter().filter(|e| e["kind"] == "dns").count();
            counted = events
                .iter()
                .filter(|e| e["rule"] == "rate-limit:dns")
                .map(|e| e["count"].as_u64().unwrap())
                .sum::<u64>() as usize;
            if logged + counted == QUERIES {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(logged + counted, QUERIES, "every refusal accounted for");
        let bound = crate::limits::REFUSAL_EVENTS_PER_SECOND as u64 * seconds;
        assert!(
            (logged as u64) <= bound,
            "{logged} events in {seconds} s: over {bound}"
        );
        let _ = stop.send(());
        let _ = server.await;
    }

    #[test]
    fn every_other_name_is_nxdomain_and_logged() {
        let (r, log) = responder();
        let a = r
            .answer(&query(1, "c2VjcmV0.attacker.example", TYPE_A))
            .unwrap();
        assert_eq!(a[3] & 0x0f, RCODE_NXDOMAIN);
        assert_eq!(a[7], 0);
        let a = r.answer(&query(1, "sidecar.attacker.example", 16)).unwrap();
        assert_eq!(a[3] & 0x0f, RCODE_NXDOMAIN);
        let ev = log.events();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0]["kind"], "dns");
        assert_eq!(ev[0]["reason"], "dns-refused");
        assert_eq!(ev[0]["host"], "c2vjcmv0.attacker.example");
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let (r, _) = responder();
        assert!(r.answer(&[0; 5]).is_none());
        let mut resp = query(1, "sidecar", 1);
        resp[2] |= 0x80;
        assert!(r.answer(&resp).is_none(), "responses are never answered");
        let mut two = query(1, "sidecar", 1);
        two[5] = 2;
        assert_eq!(r.answer(&two).unwrap()[3] & 0x0f, RCODE_FORMERR);
        let mut ptr = query(1, "sidecar", 1);
        ptr[12] = 0xc0;
        assert_eq!(r.answer(&ptr).unwrap()[3] & 0x0f, RCODE_FORMERR);
        let truncated = &query(1, "sidecar", 1)[..15];
        assert_eq!(r.answer(truncated).unwrap()[3] & 0x0f, RCODE_FORMERR);
        let mut notify = query(1, "sidecar", 1);
        notify[2] = 0x20;
        assert_eq!(r.answer(&notify).unwrap()[3] & 0x0f, RCODE_NOTIMP);
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(
            r.answer(&query(1, &long, 1)).unwrap()[3] & 0x0f,
            RCODE_FORMERR
        );
    }

    #[test]
    fn malformed_queries_are_refusals_with_an_event_each() {
        const SECRET: &str = "topsecretvalue42";
        let engine = crate::dlp::LiteralEngine::new(vec![("known".into(), SECRET.into())]);
        let dlp = Dlp::new(
            Some(std::sync::Arc::new(engine)),
            crate::config::DlpMode::Log,
        );
        let (r, log) = responder_with(Some(dlp));
        let secret_name = format!("{SECRET}.evil.test");
        // A query for a name with one byte set: (name, offset, byte, the
        // name the event shows, rule).
        let cases = [
            // Two questions: the first one's name is shown.
            ("evil.test", 5, 2, "evil.test", "formerr"),
            // No question at all.
            ("evil.test", 5, 0, UNREADABLE_NAME, "formerr"),
            // A compression pointer: the labels before it.
            ("a.evil.test", 14, 0xc0, "a", "formerr"),
            ("evil.test", 12, 0xc0, UNREADABLE_NAME, "formerr"),
            // A reserved label type (a length over 63).
            ("evil.test", 17, 0x40, "evil", "formerr"),
            // Another opcode (NOTIFY).
            ("evil.test", 2, 0x20, "evil.test", "notimp"),
            // A secret in the name is redacted, malformed or not.
            (&secret_name, 5, 2, "[REDACTED:known].evil.test", "formerr"),
        ];
        for (i, (name, at, byte, shown, rule)) in cases.into_iter().enumerate() {
            let mut q = query(1, name, TYPE_A);
            q[at] = byte;
            let rcode = if rule == "notimp" {
                RCODE_NOTIMP
            } else {
                RCODE_FORMERR
            };
            assert_eq!(r.answer(&q).unwrap()[3] & 0x0f, rcode, "case {i}");
            let ev = log.events();
            assert_eq!(ev.len(), i + 1, "one event per refused query: {ev:?}");
            let e = &ev[i];
            assert_eq!(
                (&e["kind"], &e["reason"]),
                (&"dns".into(), &"dns-refused".into())
            );
            assert_eq!(
                (e["host"].as_str(), e["rule"].as_str()),
                (Some(shown), Some(rule))
            );
        }
        // Cut inside the name: the labels before the cut.
        let cut = &query(1, "evil.test", TYPE_A)[..20];
        assert_eq!(r.answer(cut).unwrap()[3] & 0x0f, RCODE_FORMERR);
        assert_eq!(log.events()[cases.len()]["host"], "evil");
        // Over 255 bytes on the wire: the name is shown up to that bound.
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(
            r.answer(&query(1, &long, 1)).unwrap()[3] & 0x0f,
            RCODE_FORMERR
        );
        let shown = vec!["a".repeat(63); 3].join(".");
        assert_eq!(log.events()[cases.len() + 1]["host"], shown);
        // What gets no answer gets no event: responses, runts.
        let mut resp = query(1, "evil.test", 1);
        resp[2] |= 0x80;
        assert!(r.answer(&resp).is_none() && r.answer(&[0; 5]).is_none());
        assert_eq!(log.events().len(), cases.len() + 2);
        assert!(log.lines().iter().all(|l| !l.contains(SECRET)));
    }

    proptest! {
        #[test]
        fn hostile_packets_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (r, _) = responder();
            if let Some(a) = r.answer(&data) {
                prop_assert!(a.len() >= 12);
            }
        }

        #[test]
        fn mutated_queries_never_panic(pos in 0usize..40, byte in any::<u8>()) {
            let (r, _) = responder();
            let mut q = query(3, "sidecar.example", TYPE_A);
            let p = pos % q.len();
            q[p] = byte;
            let _ = r.answer(&q);
        }
    }
}
