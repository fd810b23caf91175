//! Who owns a bottle's engine objects: `<hostname>:<pid>:<start time>` of
//! the CLI process, so `cleanup` can tell a live owner from a dead one even
//! after the pid is reused.

use std::path::Path;

/// This process's owner label.
pub fn current() -> String {
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}",
        hostname(),
        start_time(pid).unwrap_or_default()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<String> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields
    // after the last `)` are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the owner named by `label` is still running. An owner on another
/// host is treated as alive: we cannot see it, so we must not remove its
/// bottles.
pub fn is_alive(label: &str) -> bool {
    let mut parts = label.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return true;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    start_time(pid).is_some_and(|s| s == start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_label_is_alive_and_a_dead_one_is_not() {
        let me = current();
        assert!(is_alive(&me), "{me}");
        let host = hostname();
        assert!(
            !is_alive(&format!("{host}:{}:1", std::process::id())),
            "a reused pid is not the owner"
        );
        assert!(!is_alive(&format!("{host}:4194303:12345")));
        assert!(!is_alive("garbage"));
        assert!(is_alive("some-other-host:1:1"));
    }
}
