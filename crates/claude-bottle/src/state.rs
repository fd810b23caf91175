//! A bottle's state folder, `$CLAUDE_BOTTLE_HOME/state/<slug>/` (0700):
//! what teardown needs and the engine does not hold. `owner` (the CLI
//! process that started it), `bottle` (its name, for the summary's route
//! hints), `start-refs` (the workspace's git refs at launch, see
//! `docs/decisions.md`) and `keep` (present for `--keep` bottles, which
//! `cleanup` leaves alone without `--all`). Removed at teardown.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bottle_docker::outbox::{StartRefs, create_private};

use crate::settings::Settings;

/// Largest state file read back (start refs of many repos are the big one).
const MAX_STATE_FILE: u64 = 64 * 1024 * 1024;

/// What a state folder holds, as far as teardown reads it.
#[derive(Debug, Default)]
pub struct State {
    pub bottle: Option<String>,
    pub start_refs: Option<StartRefs>,
}

/// `$CLAUDE_BOTTLE_HOME/state/<slug>`.
pub fn dir(settings: &Settings, slug: &str) -> PathBuf {
    settings.bottle_home.join("state").join(slug)
}

/// Create the folder before anything is launched, with its `owner`, so
/// `cleanup` can tell a run killed mid-launch. A folder left by a dead run
/// of the same slug is replaced; one whose owner is alive is refused. The
/// folder is the claim on the slug: two starts of one agent at the same
/// moment both pick the same free slug from the engine, and without the
/// claim the second would wipe the first's state and, failing on a name
/// conflict, tear down by the slug label the first one's bottle too.
pub fn create(settings: &Settings, slug: &str, owner: &str) -> Result<PathBuf, Claim> {
    let d = dir(settings, slug);
    match create_in(&d, owner) {
        Ok(()) => Ok(d),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Claim::Taken(e.to_string())),
        Err(e) => Err(Claim::Failed(anyhow::anyhow!(
            "cannot create the state folder `{}`: {e}",
            d.display()
        ))),
    }
}

/// Why a slug could not be claimed.
#[derive(Debug)]
pub enum Claim {
    /// A live run holds it (the text says which): another name will do.
    Taken(String),
    Failed(anyhow::Error),
}

fn create_in(d: &Path, owner: &str) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = d.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    for _ in 0..2 {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => return write(d, "owner", owner.as_bytes()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(holder) = live_holder(d) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "another run ({holder}) is starting or running this bottle; \
                             start again once it is up to get the next name"
                        ),
                    ));
                }
                std::fs::remove_dir_all(d)?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "another run claimed this bottle's name at the same moment; start again",
    ))
}

/// The owner of an existing state folder, if that run is alive. A folder
/// younger than a few seconds without a complete owner (no file yet, or
/// one still empty: `write` creates it, then fills it) is a run between
/// creating it and writing the file; taking that for a dead run let two
/// starts of one agent claim the same slug.
pub(crate) fn live_holder(d: &Path) -> Option<String> {
    let owner = read_file(&d.join("owner"))
        .map(|o| o.trim().to_string())
        .filter(|o| o.rsplitn(3, ':').count() == 3);
    match owner {
        Some(owner) => bottle_docker::owner::is_alive(&owner).then_some(owner),
        None => {
            let age = std::fs::metadata(d).and_then(|m| m.modified()).ok()?;
            let young = age.elapsed().map_or(true, |a| a.as_secs() < 5);
            young.then(|| "a run that has just begun".to_string())
        }
    }
}

/// Add what teardown needs once the bottle is up. Files are replaced.
pub fn record(
    settings: &Settings,
    slug: &str,
    bottle: &str,
    keep: bool,
    start_refs: &StartRefs,
) -> io::Result<()> {
    let d = dir(settings, slug);
    // `owner` is there since `create`.
    write(&d, "bottle", bottle.as_bytes())?;
    write(&d, "start-refs", start_refs.to_text().as_bytes())?;
    if keep {
        write(&d, "keep", b"")?;
    }
    Ok(())
}

/// Read what is there; a missing or unreadable file is `None`.
pub fn read(settings: &Settings, slug: &str) -> State {
    let d = dir(settings, slug);
    State {
        bottle: read_file(&d.join("bottle"))
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty()),
        start_refs: read_file(&d.join("start-refs")).map(|t| StartRefs::parse(&t)),
    }
}

/// Remove the folder; already gone is fine.
pub fn remove(settings: &Settings, slug: &str) -> io::Result<()> {
    // The one recursive removal: never of a path a slug could climb out of.
    if !bottle_docker::labels::is_slug(slug) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{slug}` is not a bottle slug"),
        ));
    }
    match std::fs::remove_dir_all(dir(settings, slug)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = create_private(dir, &path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_file(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_STATE_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_folder_with_owner() {
        let h = tempfile::tempdir().unwrap();
        let d = h.path().join("state/dev");
        // Owners on this host whose processes are gone (no such pids).
        let me = bottle_docker::owner::current();
        let host = me.rsplitn(3, ':').nth(2).unwrap().to_string();
        let (dead1, dead2) = (format!("{host}:999999:1"), format!("{host}:999998:4"));
        create_in(&d, &dead1).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("owner")), 0o600);
        std::fs::write(d.join("start-refs"), "old").unwrap();
        // A new start of the same slug replaces a dead run's folder.
        create_in(&d, &dead2).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("owner")).unwrap(), dead2);
        assert!(!d.join("start-refs").exists());
    }

    /// A run that has made its folder but not yet filled its owner file
    /// holds the slug: a second start must not take it for a dead run.
    #[test]
    fn a_folder_whose_owner_is_being_written_is_held() {
        let h = tempfile::tempdir().unwrap();
        let d = h.path().join("state/dev");
        let me = bottle_docker::owner::current();
        for partial in ["", "\n", "host-only"] {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("owner"), partial).unwrap();
            let e = create_in(&d, &me).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{partial:?}");
            assert_eq!(std::fs::read_to_string(d.join("owner")).unwrap(), partial);
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn removal_never_climbs_out_of_the_state_folder() {
        let h = tempfile::tempdir().unwrap();
        let settings = Settings {
            user_home: h.path().to_path_buf(),
            bottle_home: h.path().join("home/.claude-bottle"),
            cwd: h.path().to_path_buf(),
            version: "test",
        };
        let precious = h.path().join("home/precious");
        std::fs::create_dir_all(&precious).unwrap();
        std::fs::create_dir_all(settings.bottle_home.join("state")).unwrap();
        // `state/../..` is `home`.
        assert!(remove(&settings, "../..").is_err());
        assert!(precious.exists());
        create_in(&dir(&settings, "dev"), "host:1:2").unwrap();
        remove(&settings, "dev").unwrap();
        assert!(!dir(&settings, "dev").exists());
    }

    #[test]
    fn a_live_owner_keeps_its_slug() {
        let h = tempfile::tempdir().unwrap();
        let d = h.path().join("state/dev");
        let me = bottle_docker::owner::current();
        create_in(&d, &me).unwrap();
        std::fs::write(d.join("bottle"), "b").unwrap();
        let e = create_in(&d, "host:3:4").unwrap_err();
        assert!(e.to_string().contains("another run"), "{e}");
        // The live run's folder is untouched.
        assert_eq!(std::fs::read_to_string(d.join("owner")).unwrap(), me);
        assert!(d.join("bottle").exists());
    }
}
