//! Git config files scrubbed of credentials before `--copy-cwd` puts them
//! into an image.
//!
//! The file is parsed as git parses it (sections, quoted subsections,
//! quoted values, escapes, `\` continuations, inline comments) and written
//! anew, entry by entry, so nothing of the original text is copied as it
//! was: what comes out is exactly the entries that were kept. Dropped:
//! `[credential*]`, `[include]` and `[includeIf]` sections (their targets
//! are not copied, and an include can pull a file from outside the
//! folder), `extraheader` keys (`http.<url>.extraheader = AUTHORIZATION:
//! basic …`, written by GitHub's actions/checkout), keys whose name says
//! token, password or secret, and every comment. The user information of
//! every `scheme://user:password@host` in a kept value or subsection name
//! is removed. A line that cannot be parsed is dropped with the rest of
//! its section, up to the next header that parses.

/// Larger config files are not parsed: an empty config is copied instead.
pub const MAX_BYTES: usize = 1024 * 1024;

/// The scrubbed text of a git config file.
pub fn scrub(input: &[u8]) -> Vec<u8> {
    if input.len() > MAX_BYTES {
        return Vec::new();
    }
    let mut p = Parser {
        s: input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input),
        i: 0,
    };
    let mut out = Vec::new();
    // The section entries now belong to; `None` before the first header
    // and after a line that did not parse.
    let mut section: Option<Section> = None;
    // Whether `section`'s header has been written.
    let mut written = false;
    loop {
        p.skip_space();
        match p.peek() {
            None => break,
            Some(b'\n') => p.i += 1,
            Some(b'#' | b';') => p.skip_line(),
            Some(b'[') => {
                p.i += 1;
                match p.header() {
                    Some(s) => section = Some(s),
                    None => {
                        section = None;
                        p.recover();
                    }
                }
                written = false;
            }
            Some(c) if c.is_ascii_alphabetic() => match p.entry() {
                Some((key, value)) => {
                    let Some(s) = &section else { continue };
                    if !keep(s, &key) {
                        continue;
                    }
                    if !written {
                        s.write(&mut out);
                        written = true;
                    }
                    out.push(b'\t');
                    out.extend_from_slice(&key);
                    if let Some(v) = value {
                        out.extend_from_slice(b" = ");
                        let mut v = strip_userinfo(&v);
                        if key.to_ascii_lowercase().ends_with(b"proxy") {
                            v = strip_bare_userinfo(&v);
                        }
                        quote(&v, &mut out);
                    }
                    out.push(b'\n');
                }
                None => {
                    section = None;
                    p.recover();
                }
            },
            Some(_) => {
                section = None;
                p.skip_line();
            }
        }
    }
    out
}

/// A section header: `[name]`, `[name "sub"]` or the old `[name.sub]`.
struct Section {
    /// Lower-cased, as git compares it; `[a-z0-9.-]` only.
    name: String,
    sub: Option<Vec<u8>>,
}

impl Section {
    /// The part before the first dot: `credential` for `[credential.x]`.
    fn base(&self) -> &str {
        self.name.split('.').next().unwrap_or("")
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        out.extend_from_slice(self.name.as_bytes());
        if let Some(sub) = &self.sub {
            out.extend_from_slice(b" \"");
            for &b in strip_userinfo(sub).iter() {
                if b == b'\\' || b == b'"' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        out.extend_from_slice(b"]\n");
    }
}

/// Whether an entry of section `s` named `key` is copied.
fn keep(s: &Section, key: &[u8]) -> bool {
    let base = s.base();
    if base.starts_with("credential") || base == "include" || base == "includeif" {
        return false;
    }
    let key = key.to_ascii_lowercase();
    let has = |w: &[u8]| key.windows(w.len()).any(|x| x == w);
    !(has(b"extraheader")
        || has(b"token")
        || has(b"password")
        || has(b"passwd")
        || has(b"secret")
        || has(b"smtppass")
        || has(b"credential")
        || has(b"cookie"))
}

/// A value as git reads it back: quoted, with `\`, `"`, newline, tab and
/// backspace escaped.
pub(crate) fn quote(v: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `text` with the user information of every `scheme://user:pass@host`
/// removed (also a user alone: a token is often sent as the user name).
/// ssh URLs keep their user name (`ssh://git@host/` is how GitHub is
/// reached, ssh authenticates with keys, and the gate's `insteadOf` rules
/// match the URL a bottle declares, user included) and lose only a
/// password. Used on config values and on the legacy `.git/remotes` and
/// `.git/branches` files.
pub fn strip_userinfo(text: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"://") {
            let scheme_len = out
                .iter()
                .rev()
                .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
                .count();
            let scheme = String::from_utf8_lossy(&out[out.len() - scheme_len..]).to_lowercase();
            let ssh = matches!(scheme.as_str(), "ssh" | "git+ssh" | "ssh+git");
            out.extend_from_slice(b"://");
            i += 3;
            // The authority ends at the path, query, fragment, or anything
            // that cannot be in a URL; its last `@` ends the user info.
            let end = text[i..]
                .iter()
                .position(|&b| {
                    matches!(b, b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\')
                        || b.is_ascii_whitespace()
                        || b.is_ascii_control()
                })
                .map_or(text.len(), |n| i + n);
            if let Some(at) = text[i..end].iter().rposition(|&b| b == b'@') {
                if ssh {
                    let info = &text[i..i + at];
                    let user = info.split(|&b| b == b':').next().unwrap_or_default();
                    if !user.is_empty() {
                        out.extend_from_slice(user);
                        out.push(b'@');
                    }
                }
                i += at + 1;
            }
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// A proxy value without a scheme (`user:pass@proxy:3128`, which git reads
/// as `[protocol://][user[:password]@]host[:port]`) loses what is before
/// its last `@`; [`strip_userinfo`] has done those with a scheme.
fn strip_bare_userinfo(v: &[u8]) -> Vec<u8> {
    if v.windows(3).any(|w| w == b"://") {
        return v.to_vec();
    }
    match v.iter().rposition(|&b| b == b'@') {
        Some(at) => v[at + 1..].to_vec(),
        None => v.to_vec(),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// The next character as git's reader gives it: `\r\n` is `\n`.
    fn peek(&self) -> Option<u8> {
        match self.s.get(self.i) {
            Some(b'\r') if self.s.get(self.i + 1) == Some(&b'\n') => Some(b'\n'),
            c => c.copied(),
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += if self.s[self.i] == b'\r' && c == b'\n' {
            2
        } else {
            1
        };
        // A NUL ends a C string early: git and this parser would disagree.
        if c == 0 { None } else { Some(c) }
    }

    /// Blanks other than the line's end.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }

    /// To just past the next line break (or the end).
    fn skip_line(&mut self) {
        match self.s[self.i.min(self.s.len())..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(n) => self.i += n + 1,
            None => self.i = self.s.len(),
        }
    }

    /// After an error: on to the next line, unless the error was the
    /// line's end.
    fn recover(&mut self) {
        if self.i == 0 || self.s.get(self.i - 1) != Some(&b'\n') {
            self.skip_line();
        }
    }

    /// After `[`: the header up to and with its `]`.
    fn header(&mut self) -> Option<Section> {
        let mut name = String::new();
        loop {
            let c = self.next()?;
            match c {
                b']' => {
                    if name.is_empty() {
                        return None;
                    }
                    // The old `[name.sub]` form: git lower-cases it whole.
                    return Some(Section { name, sub: None });
                }
                b' ' | b'\t' => break,
                c if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' => {
                    name.push(c.to_ascii_lowercase() as char);
                }
                _ => return None,
            }
        }
        if name.is_empty() {
            return None;
        }
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        if self.next()? != b'"' {
            return None;
        }
        let mut sub = Vec::new();
        loop {
            match self.next()? {
                b'\n' => return None,
                b'"' => break,
                b'\\' => match self.next()? {
                    b'\n' => return None,
                    c => sub.push(c),
                },
                c => sub.push(c),
            }
        }
        if self.next()? != b']' {
            return None;
        }
        Some(Section {
            name,
            sub: Some(sub),
        })
    }

    /// A `key` or `key = value` entry, through its line's end (and its
    /// continuation lines); `None` when it does not parse.
    #[allow(clippy::type_complexity)]
    fn entry(&mut self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let mut key = Vec::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'-' {
                key.push(c);
                self.i += 1;
            } else {
                break;
            }
        }
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        match self.peek() {
            None => return Some((key, None)),
            Some(b'\n') => {
                self.i += 1;
                return Some((key, None));
            }
            Some(b'=') => self.i += 1,
            Some(_) => return None,
        }
        self.value().map(|v| (key, Some(v)))
    }

    /// After `=`: the value as git reads it (see git's `parse_value`).
    fn value(&mut self) -> Option<Vec<u8>> {
        let mut v = Vec::new();
        let (mut quoted, mut comment) = (false, false);
        // Blanks outside quotes, kept only when more of the value follows.
        let mut blanks = Vec::new();
        loop {
            let Some(c) = self.next() else {
                // The end of the file ends the value, unless a quote or a
                // NUL is open.
                return (!quoted && self.i >= self.s.len()).then_some(v);
            };
            if c == b'\n' {
                return (!quoted).then_some(v);
            }
            if comment {
                continue;
            }
            if c.is_ascii_whitespace() && !quoted {
                if !v.is_empty() {
                    blanks.push(c);
                }
                continue;
            }
            if !quoted && (c == b';' || c == b'#') {
                comment = true;
                continue;
            }
            v.append(&mut blanks);
            match c {
                b'\\' => match self.next()? {
                    b'\n' => {}
                    b't' => v.push(b'\t'),
                    b'b' => v.push(8),
                    b'n' => v.push(b'\n'),
                    c @ (b'\\' | b'"') => v.push(c),
                    _ => return None,
                },
                b'"' => quoted = !quoted,
                c => v.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(input: &str) -> String {
        String::from_utf8(scrub(input.as_bytes())).unwrap()
    }

    /// What `git config --list` reads from `text`, or its error.
    fn git_reads(text: &[u8]) -> Result<String, String> {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("config");
        std::fs::write(&f, text).unwrap();
        let o = std::process::Command::new("git")
            .args(["config", "--file"])
            .arg(&f)
            .args(["--list", "--includes"])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", d.path())
            .output()
            .unwrap();
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    /// The scrubbed text is a config git reads, holding none of `secrets`.
    fn clean(input: &str, secrets: &[&str]) -> String {
        let out = scrub(input.as_bytes());
        let read = git_reads(&out).unwrap_or_else(|e| panic!("{e}\n{out:?}"));
        for secret in secrets {
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(!read.contains(secret), "{secret} in {read}");
        }
        read
    }

    #[test]
    fn actions_checkout_extraheader_is_dropped() {
        let read = clean(
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\
             [remote \"origin\"]\n\turl = https://github.com/o/r\n\
             \tfetch = +refs/heads/*:refs/remotes/origin/*\n\
             [http \"https://github.com/\"]\n\
             \textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX1NFQ1JFVA==\n\
             [http]\n\tExtraHeader = \"Authorization: Bearer ghs_SECRET2\"\n",
            &["eC1hY2Nlc3MtdG9rZW46", "ghs_SECRET2", "AUTHORIZATION"],
        );
        assert_eq!(
            read,
            "core.repositoryformatversion=0\ncore.bare=false\n\
             remote.origin.url=https://github.com/o/r\n\
             remote.origin.fetch=+refs/heads/*:refs/remotes/origin/*\n"
        );
    }

    #[test]
    fn userinfo_leaves_every_url() {
        let read = clean(
            "[remote \"origin\"]\n\
             \turl = https://x-access-token:ghp_TOKEN1@github.com/o/r.git\n\
             \tpushurl = https://ghp_TOKEN2@github.com/o/r.git\n\
             [url \"https://user:TOKEN3@github.com/\"]\n\
             \tinsteadOf = https://github.com/\n\
             \tpushInsteadOf = git://me:TOKEN4@example.com/\n\
             [submodule \"s\"]\n\turl = https://a:TOKEN5@h.example/s # note\n\
             [http]\n\tproxy = http://proxyuser:TOKEN6@proxy:3128\n\
             [alias]\n\tp = !git push https://u:TOKEN7@h/x HEAD && echo 'http://v:TOKEN8@h'\n\
             [remote \"ssh\"]\n\turl = ssh://git@github.com/o/r\n\turl = git@github.com:o/r\n\
             \turl = git+ssh://git:TOKEN9@h.example/o/r\n\
             [https]\n\tproxy = bare:TOKEN10@corp-proxy:8080\n\
             [http \"https://h.example/\"]\n\tproxy = TOKEN11@p2:3128\n",
            &[
                "TOKEN1", "TOKEN2", "TOKEN3", "TOKEN4", "TOKEN5", "TOKEN6", "TOKEN7", "TOKEN8",
                "TOKEN9", "TOKEN10", "TOKEN11",
            ],
        );
        assert!(
            read.contains("remote.origin.url=https://github.com/o/r.git\n"),
            "{read}"
        );
        assert!(
            read.contains("url.https://github.com/.insteadof=https://github.com/\n"),
            "{read}"
        );
        assert!(read.contains("http.proxy=http://proxy:3128\n"), "{read}");
        // git reads a proxy without a scheme as `[user[:password]@]host`.
        assert!(read.contains("https.proxy=corp-proxy:8080\n"), "{read}");
        assert!(
            read.contains("http.https://h.example/.proxy=p2:3128\n"),
            "{read}"
        );
        assert!(
            read.contains("submodule.s.url=https://h.example/s\n"),
            "{read}"
        );
        // An ssh user name stays (keys authenticate; the gate's insteadOf
        // rules match it), its password goes; the scp-like form has no
        // scheme and stays.
        assert!(
            read.contains("remote.ssh.url=ssh://git@github.com/o/r\n"),
            "{read}"
        );
        assert!(
            read.contains("remote.ssh.url=git+ssh://git@h.example/o/r\n"),
            "{read}"
        );
        assert!(
            read.contains("remote.ssh.url=git@github.com:o/r\n"),
            "{read}"
        );
    }

    #[test]
    fn credential_and_include_sections_are_dropped() {
        let read = clean(
            "[credential]\n\thelper = store --file=/home/u/.git-credentials\n\
             [Credential \"https://github.com\"]\n\tusername = ghp_TOKEN1\n\
             [credential.https://h]\n\tusername = TOKEN2\n\
             [include]\n\tpath = /home/u/.secret-config\n\
             [includeIf \"gitdir:~/w/\"]\n\tpath = ../../outside\n\
             [core] bare = false\n\
             [user]\n\tname = Me\n\tpassword = TOKEN3\n\
             [github]\n\toauth-token = TOKEN4\n\
             [sendemail]\n\tsmtpPass = TOKEN5\n\
             [http]\n\tcookieFile = /home/u/cookies\n",
            &[
                "TOKEN1",
                "TOKEN2",
                "TOKEN3",
                "TOKEN4",
                "TOKEN5",
                "secret-config",
                "outside",
                "credentials",
                "cookies",
            ],
        );
        assert_eq!(read, "core.bare=false\nuser.name=Me\n");
    }

    #[test]
    fn odd_quoting_and_continuations_stay_what_git_reads() {
        let input = "[remote \"we\\\"ird \\\\ name\"]\n\
             \turl = \"https://u:TOKEN1@h/a b\" ; comment\n\
             \tfetch = a\\\n  b \"c ; d\" # e\n\
             \tpushurl = https://u:TOK\\\nEN2@h/x\n\
             [x]\r\n\tflag\r\n\tempty =\n\tspaced =   a \t b   \n\
             \tesc = \"tab\\there\\nnew\\bline\"\n";
        let read = clean(input, &["TOKEN1", "TOKEN2"]);
        assert_eq!(
            read,
            "remote.we\"ird \\ name.url=https://h/a b\n\
             remote.we\"ird \\ name.fetch=a  b c ; d\n\
             remote.we\"ird \\ name.pushurl=https://h/x\n\
             x.flag\nx.empty=\nx.spaced=a \t b\n\
             x.esc=tab\there\nnew\u{8}line\n"
        );
        // Kept entries read back exactly as the original reads, less the
        // user information.
        let before = git_reads(input.as_bytes())
            .unwrap()
            .replace("u:TOKEN1@", "")
            .replace("u:TOKEN2@", "");
        assert_eq!(read, before);
    }

    #[test]
    fn a_line_that_does_not_parse_drops_its_section() {
        for input in [
            // A header left open swallows nothing: its entries are dropped.
            "[http \"https://h/\"\n\textraheader = AUTHORIZATION: basic TOKEN\n[core]\n\tbare = false\n",
            "[http \"https://h/\n\"]\n\textraheader = TOKEN\n[core]\n\tbare = false\n",
            "[cred ential]\n\thelper = TOKEN\n[core]\n\tbare = false\n",
            "[]\n\tx = TOKEN\n[core]\n\tbare = false\n",
            "[http]\n\t=TOKEN\n\tbad\\escape = TOKEN\n\tk = \"open TOKEN\n[core]\n\tbare = false\n",
            "[remote \"o\"]\n\turl = https://h/\\q\n\tx = TOKEN\n[core]\n\tbare = false\n",
            "[remote \"o\"]\n\turl = a\0TOKEN\n\tx = TOKEN\n[core]\n\tbare = false\n",
            "\textraheader = TOKEN before any section\n[core]\n\tbare = false\n",
            // A broken header does not leave its entries to the section
            // before it.
            "[core]\n\tbare = false\n[credential \"https://h\n\thelper = TOKEN\n",
            "[core]\n\tbare = false\n[credential]x\n\thelper = TOKEN\n",
        ] {
            assert_eq!(s(input), "[core]\n\tbare = \"false\"\n", "{input:?}");
        }
    }

    #[test]
    fn hostile_input_neither_panics_nor_grows() {
        assert_eq!(scrub(&vec![b'a'; MAX_BYTES + 1]), b"");
        let mut junk = Vec::new();
        let mut r = bottle_testkit::XorShift::new(0x9e37_79b9);
        for _ in 0..200_000 {
            let x = r.next_u32();
            junk.push(b"[]\"\\=\n\r\t #;ab.-:/@\0\xff"[(x % 19) as usize]);
        }
        for cut in [0, 1, 2, 3, 1000, junk.len()] {
            let out = scrub(&junk[..cut]);
            assert!(out.len() <= 3 * cut + 64, "{}", out.len());
        }
        for input in [
            &b"["[..],
            b"[a",
            b"[a \"",
            b"[a \"\\",
            b"a",
            b"a =",
            b"a = \"",
            b"a = \\",
            b"\r",
        ] {
            scrub(input);
        }
        let nested = "[a \"".to_string() + &"\\\"".repeat(100_000) + "\"]\nk = v\n";
        assert!(s(&nested).ends_with("\tk = \"v\"\n"));
    }
}
