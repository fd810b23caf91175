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
    pub fn parse(line: &str) -> Option<RefUpdate> {
        let mut it = line.trim_end_matches(['\n', '\r']).splitn(3, ' ');
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

    #[test]
    fn parse_rejects_garbage() {
        assert!(RefUpdate::parse("x y z").is_none());
        assert!(RefUpdate::parse(&format!("{Z} {A}")).is_none());
        assert!(RefUpdate::parse(&format!("{Z} {A} ")).is_none());
        let u = up(Z, A, "refs/heads/a b");
        assert_eq!(u.name, "refs/heads/a b");
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
