//! The agent side of provisioning for images without the few tools the
//! provisioning scripts use (`head`, `tar`, `cat`, `mv`, …). `docker.md`
//! asks only for a user with uid 1000, a home directory and a shell, and
//! says the CLI brings what it needs: when a script finds a tool missing it
//! exits [`NEEDS_HELPER`], the CLI copies its own static executable into
//! the container at [`PATH`] and runs the same step through it as
//! `claude-bottle agent-helper …`. Images that have the tools never get the
//! copy (it costs an upload of the executable).
//!
//! This half runs inside the agent container: plain file operations, no
//! engine, no async.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use crate::agent::{RUN_DIR, passwd_user};

/// Where the executable goes in the agent container (root's, 0755).
pub const PATH: &str = "/opt/claude-bottle/helper";
/// The CLI's hidden subcommand that runs [`main`].
pub const SUBCOMMAND: &str = "agent-helper";
/// A provisioning script's exit code when the image lacks a tool it uses.
pub const NEEDS_HELPER: i64 = 96;
/// Exit codes shared with the scripts: a file could not be written; no
/// user with uid 1000 and a home directory.
pub const FILES_FAILED: u8 = 97;
pub const NO_USER: u8 = 98;
/// The image has no system trust store the CA could be added to (the CA
/// bundle the agent's variables name still has it).
pub const NO_STORE: u8 = 95;
/// An interface other than `lo` has an IPv6 address (see [`ipv6_beyond_loopback`]).
pub const IPV6_ON: u8 = 94;
/// Printed on stderr by the files step when the agent user cannot write
/// `/workspace` (the image has none, and the engine made it root's).
pub const WORKSPACE_UNWRITABLE: &str = "claude-bottle: /workspace is not writable";

/// Where images keep the system roots, the first that exists being the one
/// the CA bundle starts from and the store the CA is added to: Debian's
/// (also Alpine's and BusyBox images'), Fedora/RHEL's, openSUSE's, and
/// the one some minimal images have.
pub const SYSTEM_ROOTS: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Where the kernel lists a network namespace's IPv6 addresses.
pub const IF_INET6: &str = "/proc/net/if_inet6";
/// Most input a step takes on stdin (the staging archive holds the prompt).
const MAX_INPUT: usize = 64 * 1024 * 1024;

/// `agent-helper files LEN` (as the agent user) or `agent-helper add-ca LEN`
/// (as root), with exactly LEN bytes on stdin: the same work as
/// `provision`'s scripts, with the same exit codes.
pub fn main(args: &[String]) -> ExitCode {
    let input = |len: &str| -> Result<Vec<u8>, String> {
        let len: usize = len
            .parse()
            .ok()
            .filter(|n| *n <= MAX_INPUT)
            .ok_or_else(|| format!("bad input length `{len}`"))?;
        // Exactly LEN bytes, whatever the engine does with the close of
        // stdin (see `exec::exact_stdin`).
        let mut bytes = vec![0; len];
        std::io::stdin()
            .read_exact(&mut bytes)
            .map_err(|e| format!("reading {len} bytes of input: {e}"))?;
        Ok(bytes)
    };
    let result = match args {
        [op, len] if op == "files" => match input(len) {
            Ok(tar) => {
                let inet6 = std::fs::read_to_string(IF_INET6).unwrap_or_default();
                if let Some(interface) = ipv6_beyond_loopback(&inet6) {
                    eprintln!("IPv6 on {interface}");
                    return ExitCode::from(IPV6_ON);
                }
                let roots = system_roots(&SYSTEM_ROOTS.map(Path::new));
                let done = files(&tar, Path::new("/etc/passwd"), Path::new(RUN_DIR), roots);
                if !is_writable(Path::new("/workspace")) {
                    eprintln!("{WORKSPACE_UNWRITABLE}");
                }
                return done;
            }
            Err(e) => Err(e),
        },
        [op, len] if op == "add-ca" => {
            let store = system_roots(&SYSTEM_ROOTS.map(Path::new));
            match input(len).and_then(|ca| store.map_or(Ok(false), |s| add_ca(&ca, s))) {
                Ok(false) => return ExitCode::from(NO_STORE),
                other => other.map(|_| ()),
            }
        }
        _ => Err("usage: agent-helper files LEN | agent-helper add-ca LEN".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-helper: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first interface other than `lo` with an IPv6 address, from the text
/// of `/proc/net/if_inet6` (address, index, prefix, scope, flags, name).
/// The agent's only network has no IPv6, but engines have left it on
/// (Docker 26.0.0–26.0.1 gave containers on IPv4-only networks a
/// link-local address, and `DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE` still
/// does); over it the bridge's host side can answer, past the internal
/// network's `inhibit_ipv4`. A line that does not parse counts as such an
/// interface.
pub fn ipv6_beyond_loopback(if_inet6: &str) -> Option<String> {
    if_inet6
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().nth(5).unwrap_or("?"))
        .find(|name| *name != "lo")
        .map(str::to_string)
}

/// The first of `candidates` that is a file (see [`SYSTEM_ROOTS`]).
fn system_roots<'a>(candidates: &[&'a Path]) -> Option<&'a Path> {
    candidates.iter().copied().find(|p| p.is_file())
}

/// Whether this process may create files in `dir`: a probe file made and
/// removed (the script asks `[ -w ]`; no `access(2)` without unsafe code).
fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(".claude-bottle-probe");
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
        .is_ok();
    if made {
        let _ = std::fs::remove_file(&probe);
    }
    made
}

/// Print the agent user's `passwd` line, put the staging archive's `run/*`
/// into `run_dir` and `home/*` into the user's home with the archive's
/// modes, and build `ca-bundle.pem` when `ca.pem` came, from the system
/// roots at `roots`.
fn files(tar: &[u8], passwd: &Path, run_dir: &Path, roots: Option<&Path>) -> ExitCode {
    // The first uid-1000 line, and its home must be a folder: as the
    // script's `getent`/`grep -m1`.
    let text = std::fs::read_to_string(passwd).unwrap_or_default();
    let found = text
        .lines()
        .find_map(|l| passwd_user(l, "1000").map(|(_, home)| (l, home)));
    let Some((line, home)) = found.filter(|(_, home)| Path::new(home).is_dir()) else {
        return ExitCode::from(NO_USER);
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
    match unpack(tar, run_dir, Path::new(&home), roots) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-helper: {e}");
            ExitCode::from(FILES_FAILED)
        }
    }
}

fn unpack(tar: &[u8], run_dir: &Path, home: &Path, roots: Option<&Path>) -> Result<(), String> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| format!("archive: {e}"))?;
    let mut ca = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("archive: {e}"))?
            .into_owned();
        let mode = entry.header().mode().map_err(|e| format!("archive: {e}"))? & 0o777;
        let dest = destination(&name, run_dir, home)
            .ok_or_else(|| format!("unexpected entry `{}`", name.display()))?;
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("archive: {e}"))?;
        replace(&dest, &bytes, mode)?;
        if dest == run_dir.join("ca.pem") {
            ca = Some(bytes);
        }
    }
    if let Some(ca) = ca {
        let mut bundle = roots
            .and_then(|r| std::fs::read(r).ok())
            .unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(&ca);
        replace(&run_dir.join("ca-bundle.pem"), &bundle, 0o644)?;
    }
    Ok(())
}

/// `run/NAME` or `home/NAME` (one plain file name) to its place.
fn destination(name: &Path, run_dir: &Path, home: &Path) -> Option<PathBuf> {
    let parts: Vec<Component> = name.components().collect();
    match parts.as_slice() {
        [Component::Normal(top), Component::Normal(file)] if *top == "run" => {
            Some(run_dir.join(file))
        }
        [Component::Normal(top), Component::Normal(file)] if *top == "home" => {
            Some(home.join(file))
        }
        _ => None,
    }
}

/// Write `bytes` beside `dest` with `mode`, then rename over it: a reader
/// sees the old file or the new one.
fn replace(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".claude-bottle");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, dest)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("`{}`: {e}", dest.display())
    })
}

/// Add the CA to the system store by a rename where the folder allows it,
/// by appending where only the file does, and not at all where neither does
/// (as the script).
/// Add `ca` to the system store; false when there is none it may write.
fn add_ca(ca: &[u8], store: &Path) -> Result<bool, String> {
    // Through a link to the file it names (Fedora's store is a link into
    // `ca-trust/extracted`, which OpenSSL's other default names too):
    // replacing the link would leave that file without the CA.
    let real = std::fs::canonicalize(store).ok();
    let store = real.as_deref().unwrap_or(store);
    let Ok(old) = std::fs::read(store) else {
        return Ok(false);
    };
    let mut new = old;
    if !new.is_empty() && !new.ends_with(b"\n") {
        new.push(b'\n');
    }
    new.extend_from_slice(ca);
    let mode = std::fs::metadata(store)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    if replace(store, &new, mode).is_ok() {
        return Ok(true);
    }
    match std::fs::OpenOptions::new().append(true).open(store) {
        Ok(mut f) => f
            .write_all(ca)
            .map(|()| true)
            .map_err(|e| format!("`{}`: {e}", store.display())),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(*mode);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_land_with_their_modes() {
        let d = tempfile::tempdir().unwrap();
        let (run, home) = (d.path().join("run"), d.path().join("home"));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let passwd = d.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::{}:/bin/sh\n",
                home.display()
            ),
        )
        .unwrap();
        std::fs::write(home.join(".gitconfig"), "old").unwrap();
        let tar = tar_of(&[
            ("run/env", b"A=1\n", 0o600),
            ("run/ca.pem", b"CA\n", 0o644),
            ("home/.gitconfig", b"[user]\n", 0o644),
        ]);
        let roots = d.path().join("ca-bundle.crt");
        std::fs::write(&roots, "ROOTS").unwrap();
        assert_eq!(files(&tar, &passwd, &run, Some(&roots)), ExitCode::SUCCESS);
        assert_eq!(std::fs::read(run.join("env")).unwrap(), b"A=1\n");
        assert_eq!(mode(&run.join("env")), 0o600);
        assert_eq!(mode(&run.join("ca.pem")), 0o644);
        assert_eq!(std::fs::read(home.join(".gitconfig")).unwrap(), b"[user]\n");
        assert_eq!(mode(&home.join(".gitconfig")), 0o644);
        let bundle = std::fs::read(run.join("ca-bundle.pem")).unwrap();
        assert_eq!(
            bundle, b"ROOTS\nCA\n",
            "the system roots, then the bottle's CA"
        );
        assert_eq!(mode(&run.join("ca-bundle.pem")), 0o644);
        assert!(!run.join("env.claude-bottle").exists(), "no temporary left");
    }

    #[test]
    fn refuses_a_missing_user_and_odd_entries() {
        let d = tempfile::tempdir().unwrap();
        let passwd = d.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let tar = tar_of(&[("run/env", b"A=1\n", 0o600)]);
        assert_eq!(
            files(&tar, &passwd, d.path(), None),
            ExitCode::from(NO_USER)
        );
        let home = d.path().join("home");
        std::fs::create_dir(&home).unwrap();
        // The first uid-1000 line counts, as `getent`/`grep -m1` in the
        // script: its home missing is no user, whatever lines follow.
        std::fs::write(
            &passwd,
            format!(
                "gone:x:1000:1000::/nonexistent:/bin/sh
agent:x:1000:1000::{}:/bin/sh
",
                home.display()
            ),
        )
        .unwrap();
        assert_eq!(
            files(&tar, &passwd, d.path(), None),
            ExitCode::from(NO_USER)
        );
        std::fs::write(
            &passwd,
            format!("agent:x:1000:1000::{}:/bin/sh\n", home.display()),
        )
        .unwrap();
        for name in ["run/../escape", "etc/passwd", "run/a/b"] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Written by hand: `append_data` itself refuses `..`.
            h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            let tar = b.into_inner().unwrap();
            assert_eq!(
                files(&tar, &passwd, d.path(), None),
                ExitCode::from(FILES_FAILED),
                "{name}"
            );
        }
        assert!(!d.path().parent().unwrap().join("escape").exists());
    }

    #[test]
    fn the_roots_are_the_first_store_there_is() {
        let d = tempfile::tempdir().unwrap();
        let (debian, fedora) = (d.path().join("debian.crt"), d.path().join("fedora.crt"));
        std::fs::write(&fedora, "ROOTS").unwrap();
        let candidates = [debian.as_path(), fedora.as_path()];
        assert_eq!(system_roots(&candidates), Some(fedora.as_path()));
        std::fs::write(&debian, "ROOTS").unwrap();
        assert_eq!(system_roots(&candidates), Some(debian.as_path()));
        assert_eq!(system_roots(&[d.path()]), None, "a folder is no store");
        assert!(SYSTEM_ROOTS.contains(&"/etc/pki/tls/certs/ca-bundle.crt"));
    }

    #[test]
    fn ipv6_is_allowed_on_loopback_only() {
        let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(ipv6_beyond_loopback(""), None, "IPv6 off: nothing listed");
        assert_eq!(ipv6_beyond_loopback(lo), None);
        assert_eq!(ipv6_beyond_loopback(&format!("{lo}\n")), None);
        let eth0 = "fe80000000000000004242fffeac1202 2a 40 20 80     eth0\n";
        assert_eq!(
            ipv6_beyond_loopback(&format!("{lo}{eth0}")).as_deref(),
            Some("eth0")
        );
        assert_eq!(ipv6_beyond_loopback("garbage\n").as_deref(), Some("?"));
    }

    #[test]
    fn the_ca_is_added_by_rename_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("ca-certificates.crt");
        std::fs::write(&store, "ROOTS").unwrap();
        assert_eq!(add_ca(b"CA\n", &store), Ok(true));
        assert_eq!(std::fs::read(&store).unwrap(), b"ROOTS\nCA\n");
        assert_eq!(add_ca(b"CA\n", &d.path().join("missing")), Ok(false));
        // A link is followed: the file it names gets the CA, the link stays.
        let link = d.path().join("link.crt");
        std::os::unix::fs::symlink(&store, &link).unwrap();
        assert_eq!(add_ca(b"CA2\n", &link), Ok(true));
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&store).unwrap(), b"ROOTS\nCA\nCA2\n");
        assert!(!d.path().join("missing").exists(), "no store is made up");
    }
}
