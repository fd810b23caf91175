//! Pure ref rules: which refs a push may touch, and how.
//!
//! Only branches (`refs/heads/*`) may be pushed through the gate; tags and
//! every other namespace are refused, because the `push` patterns name
//! branches and a tag is not reviewed anywhere before it lands. Patterns are
//! globs on the branch name with `refs/heads/` stripped: `*` matches any run
//! of characters including `/` (so `agent/*` allows `agent/a/b`), `?` one
//! character.

use serde::{Deserialize, Serialize};

/// The all-zero object id git uses for "no ref" (sha1 and sha256 lengths).
pub fn is_zero(oid: &str) -> bool {
    !oid.is_empty() && oid.bytes().all(|b| b == b'0')
}

/// One line of pre-receive input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    #[serde(rename = "ref")]
    pub name: String,
}

impl RefUpdate {
    /// Parses one line, without its `\n` or with it. Everything after the
    /// second space is the name, byte for byte (a `\r` in it included):
    /// [`ref_name_problem`] judges it.
    pub fn parse(line: &str) -> Option<RefUpdate> {
        let mut it = line.strip_suffix('\n').unwrap_or(line).splitn(3, ' ');
        let old = it.next()?;
        let new = it.next()?;
        let name = it.next()?;
        let hex =
            |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(old) || !hex(new) || name.is_empty() {
            return None;
        }
        Some(RefUpdate {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        })
    }

    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }

    pub fn is_create(&self) -> bool {
        is_zero(&self.old)
    }

    pub fn branch(&self) -> Option<&str> {
        self.name.strip_prefix("refs/heads/")
    }
}

/// Why `name` is not a ref name git would create, or `None` if it is one.
///
/// The rules of `git check-ref-format` (git's `check_refname_format` with no
/// flags), under `refs/`: every `/`-separated component non-empty, not
/// starting with `.` and not ending with `.lock`; no `..` or `@{`; no
/// control character, DEL, space, `:`, `?`, `*`, `[`, `\`, `^` or `~`; no
/// trailing `.`; not `@`.
///
/// receive-pack applies these rules only after the pre-receive hook, so
/// the hook sees any name a client sends, and the hook must apply them
/// itself: the upstream push's refspec `<new>:<name>` is split by git at
/// its last `:`, so a `:` in a name changes both what is pushed (the
/// source becomes a path inside the new commit) and where.
pub fn ref_name_problem(name: &str) -> Option<&'static str> {
    if !name.starts_with("refs/") {
        return Some("it does not start with `refs/`");
    }
    if name == "@" {
        return Some("it is `@`");
    }
    for component in name.as_bytes().split(|b| *b == b'/') {
        let Some(first) = component.first() else {
            return Some("it has an empty component (`//` or a trailing `/`)");
        };
        if *first == b'.' {
            return Some("a component starts with `.`");
        }
        if component.ends_with(b".lock") {
            return Some("a component ends with `.lock`");
        }
        let mut last = 0u8;
        for &c in component {
            match c {
                0..=0x1f | 0x7f => return Some("it holds a control character"),
                b' ' => return Some("it holds a space"),
                b':' | b'?' | b'*' | b'[' | b'\\' | b'^' | b'~' => {
                    return Some("it holds one of `: ? * [ \\ ^ ~`");
                }
                b'.' if last == b'.' => return Some("it holds `..`"),
                b'{' if last == b'@' => return Some("it holds `@{`"),
                _ => {}
            }
            last = c;
        }
    }
    if name.ends_with('.') {
        return Some("it ends with `.`");
    }
    None
}

/// Glob match with `*` (any run, `/` included) and `?` (one char).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, no
    // recursion for hostile names.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Why a ref update is refused by policy; shown to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotABranch,
    NotInPush,
    DeleteProtected,
    RewriteProtected,
    /// The name differs from a protected branch's only in case.
    CaseOfProtected,
}

impl Refusal {
    pub fn message(&self, name: &str) -> String {
        match self {
            Refusal::NotABranch => {
                format!("{name}: only branches (refs/heads/*) may be pushed through the gate")
            }
            Refusal::NotInPush => format!("{name}: this bottle may not push to that branch"),
            Refusal::DeleteProtected => format!("{name}: protected branch; deleting is refused"),
            Refusal::RewriteProtected => {
                format!("{name}: protected branch; non-fast-forward (force) push is refused")
            }
            Refusal::CaseOfProtected => format!(
                "{name}: differs from a protected branch only in case; refused (an upstream \
                 whose ref names ignore case would take it for that branch)"
            ),
        }
    }
}

/// The repo's ref rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub push: Vec<String>,
    pub protect: Vec<String>,
}

impl Policy {
    /// Checks one update. `fast_forward` says whether `new` descends from
    /// `old` (only asked for updates of existing refs); it is a closure so
    /// the pure rules stay testable without a repository.
    pub fn check(
        &self,
        update: &RefUpdate,
        fast_forward: impl FnOnce() -> bool,
    ) -> Result<(), Refusal> {
        let Some(branch) = update.branch() else {
            return Err(Refusal::NotABranch);
        };
        if !self.push.iter().any(|p| glob_match(p, branch)) {
            return Err(Refusal::NotInPush);
        }
        let protected = self.protect.iter().any(|p| glob_match(p, branch));
        // `MAIN` created (no fast-forward asked) on an upstream that keeps
        // refs in files on a disk that ignores case (self-hosted on macOS
        // or Windows) is `main` rewritten.
        if !protected
            && self
                .protect
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &branch.to_ascii_lowercase()))
        {
            return Err(Refusal::CaseOfProtected);
        }
        if protected {
            if update.is_delete() {
                return Err(Refusal::DeleteProtected);
            }
            if !update.is_create() && !fast_forward() {
                return Err(Refusal::RewriteProtected);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn up(old: &str, new: &str, name: &str) -> RefUpdate {
        RefUpdate::parse(&format!("{old} {new} {name}\n")).unwrap()
    }

    fn policy(push: &[&str]) -> Policy {
        Policy {
            push: push.iter().map(|s| s.to_string()).collect(),
            protect: vec!["main".into(), "master".into()],
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "a/b/c"));
        assert!(glob_match("agent/*", "agent/x/y"));
        assert!(!glob_match("agent/*", "agentx"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*-wip", "x-wip"));
        assert!(!glob_match("main", "main2"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        // Pathological input stays fast.
        let long = "a".repeat(5000);
        assert!(!glob_match("*a*a*a*a*a*b", &long));
    }

    /// Attack: `MAIN` created beside a protected `main`. A creation needs
    /// no fast-forward, and an upstream whose ref names ignore case takes
    /// it for `main`: refused, as any name that is a protected one but for
    /// case.
    #[test]
    fn a_protected_branch_in_another_case_is_refused() {
        let p = policy(&["*"]);
        for name in ["refs/heads/MAIN", "refs/heads/Main", "refs/heads/mASTER"] {
            assert_eq!(
                p.check(&up(Z, A, name), || true),
                Err(Refusal::CaseOfProtected),
                "{name}"
            );
            assert_eq!(
                p.check(&up(A, B, name), || true),
                Err(Refusal::CaseOfProtected)
            );
        }
        assert_eq!(p.check(&up(Z, A, "refs/heads/main"), || true), Ok(()));
        assert_eq!(p.check(&up(Z, A, "refs/heads/mainline"), || true), Ok(()));
        let m = Refusal::CaseOfProtected.message("refs/heads/MAIN");
        assert!(m.contains("only in case"), "{m}");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(RefUpdate::parse("x y z").is_none());
        assert!(RefUpdate::parse(&format!("{Z} {A}")).is_none());
        assert!(RefUpdate::parse(&format!("{Z} {A} ")).is_none());
        let u = up(Z, A, "refs/heads/a b");
        assert_eq!(u.name, "refs/heads/a b");
    }

    #[test]
    fn parse_keeps_everything_of_the_name() {
        assert_eq!(up(Z, A, "refs/heads/a\r").name, "refs/heads/a\r");
        let u = RefUpdate::parse(&format!("{Z} {A} refs/heads/x:refs/heads/y")).unwrap();
        assert_eq!(u.name, "refs/heads/x:refs/heads/y");
    }

    #[test]
    fn ref_names() {
        for good in [
            "refs/heads/main",
            "refs/heads/agent/x",
            "refs/heads/agent/ünï.cödé-名前",
            "refs/heads/a.b",
            "refs/heads/a@b",
            "refs/heads/@",
            "refs/heads/a{b}",
            "refs/heads/a-lock",
            "refs/heads/x.lockx",
            "refs/tags/v1.0",
            "refs/x",
        ] {
            assert_eq!(ref_name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "@",
            "main",
            "heads/main",
            "refs",
            "refs/",
            "refs/heads/",
            "refs//heads/x",
            "refs/heads//main",
            "refs/heads/../main",
            "refs/heads/a..b",
            "refs/heads/.hidden",
            "refs/heads/a/.b",
            "refs/heads/x.lock",
            "refs/heads/x.lock/y",
            "refs/heads/x.",
            "refs/heads/x/",
            "refs/heads/a@{1}",
            "refs/heads/agent/x:refs/heads/exfil",
            "refs/heads/a b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[b",
            "refs/heads/a\\b",
            "refs/heads/a^",
            "refs/heads/a~1",
            "refs/heads/a\nb",
            "refs/heads/a\r",
            "refs/heads/a\tb",
            "refs/heads/a\0b",
            "refs/heads/a\x1b[2J",
            "refs/heads/a\x7f",
        ] {
            assert!(ref_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    /// Agrees with `git check-ref-format` (under `refs/`) on names built
    /// from the characters and sequences its rules are about.
    #[test]
    fn ref_names_as_git_judges_them() {
        let pieces = [
            "a", "b", "/", ".", "..", "@", "{", "@{", ".lock", ":", "~", "^", "?", "*", "[", "\\",
            " ", "\t", "\x7f", "\x01", "é", "-",
        ];
        // Deterministic: the same names on every run.
        let mut r = bottle_testkit::XorShift::new(0x9e37_79b9);
        let mut next = |n: usize| r.next_u32() as usize % n;
        let mut names: Vec<String> = Vec::new();
        for _ in 0..400 {
            let len = 1 + next(5);
            let tail: String = (0..len).map(|_| pieces[next(pieces.len())]).collect();
            names.push(format!("refs/heads/{tail}"));
        }
        for p in pieces {
            names.push(format!("refs/heads/x{p}"));
            names.push(format!("refs/heads/{p}x"));
            names.push(format!("refs/{p}"));
        }
        let mut disagree = Vec::new();
        for name in &names {
            let git = std::process::Command::new("git")
                .args(["check-ref-format", name])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .status()
                .unwrap()
                .success();
            if git != ref_name_problem(name).is_none() {
                disagree.push(name.clone());
            }
        }
        assert!(disagree.is_empty(), "git disagrees on {disagree:?}");
        // Both kinds are among the names.
        assert!(names.iter().any(|n| ref_name_problem(n).is_none()));
        assert!(names.iter().any(|n| ref_name_problem(n).is_some()));
    }

    #[test]
    fn rules() {
        let p = policy(&["agent/*", "main"]);
        assert_eq!(p.check(&up(Z, A, "refs/heads/agent/x"), || true), Ok(()));
        assert_eq!(
            p.check(&up(Z, A, "refs/heads/other"), || true),
            Err(Refusal::NotInPush)
        );
        assert_eq!(
            p.check(&up(Z, A, "refs/tags/v1"), || true),
            Err(Refusal::NotABranch)
        );
        assert_eq!(
            p.check(&up(A, Z, "refs/heads/main"), || true),
            Err(Refusal::DeleteProtected)
        );
        assert_eq!(
            p.check(&up(A, B, "refs/heads/main"), || false),
            Err(Refusal::RewriteProtected)
        );
        assert_eq!(p.check(&up(A, B, "refs/heads/main"), || true), Ok(()));
        // Unprotected branches may be rewritten and deleted.
        assert_eq!(p.check(&up(A, B, "refs/heads/agent/x"), || false), Ok(()));
        assert_eq!(p.check(&up(A, Z, "refs/heads/agent/x"), || false), Ok(()));
        // The fast-forward question is only asked when it matters.
        assert_eq!(
            p.check(&up(Z, A, "refs/heads/main"), || panic!("asked")),
            Ok(())
        );
    }
}
