//! A bottle's state folder, `$CLAUDE_BOTTLE_HOME/state/<slug>/`: 0700,
//! holding an `owner` file (the CLI's `host:pid:starttime`, so `cleanup`
//! can tell a dead owner) and whatever host files a bottle needs that may
//! hold a secret (0600). Removed at teardown; kept with `--keep` until
//! `stop`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The state folder of `slug`.
pub fn dir(bottle_home: &Path, slug: &str) -> PathBuf {
    bottle_home.join("state").join(slug)
}

/// Create the folder (0700, parents too) and its `owner` file (0600).
/// A folder left by a dead run of the same slug is replaced.
pub fn create(bottle_home: &Path, slug: &str, owner: &str) -> Result<PathBuf> {
    let d = dir(bottle_home, slug);
    if d.exists() {
        std::fs::remove_dir_all(&d)
            .with_context(|| format!("cannot replace the old state folder `{}`", d.display()))?;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .with_context(|| format!("cannot create the state folder `{}`", d.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(d.join("owner"))
        .with_context(|| format!("cannot write `{}`", d.join("owner").display()))?;
    writeln!(f, "{owner}")?;
    Ok(d)
}

/// Remove the folder; a missing one is fine.
pub fn remove(bottle_home: &Path, slug: &str) -> Result<(), String> {
    let d = dir(bottle_home, slug);
    match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("state folder `{}`: {e}", d.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_folder_with_owner() {
        let h = tempfile::tempdir().unwrap();
        let d = create(h.path(), "dev", "host:1:2").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("owner")), 0o600);
        assert_eq!(
            std::fs::read_to_string(d.join("owner")).unwrap(),
            "host:1:2\n"
        );
        // A second start of the same slug replaces a dead run's folder.
        create(h.path(), "dev", "host:3:4").unwrap();
        remove(h.path(), "dev").unwrap();
        assert!(!d.exists());
        remove(h.path(), "dev").unwrap();
    }
}
