//! Skills: `~/.claude/skills/<name>/` on the host becomes the agent user's
//! `~/.claude/skills/<name>/`, copied in as one tar archive owned by uid
//! 1000 (the home is on the container's own file system, so the engine's
//! archive upload works there, unlike on the tmpfs under /run).
//!
//! Symbolic links inside a skill are copied as links, never followed: a
//! link to `~/.ssh/id_ed25519` must not carry the key into the bottle. The
//! skill folder itself may be a link (dotfiles set-ups do that); it was
//! named by the user.

use std::io;
use std::path::{Path, PathBuf};

use bollard::query_parameters::UploadToContainerOptions;

use crate::engine::{Engine, EngineError, api};

/// Most bytes of skill files one bottle gets.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Most files and folders in all skills together.
pub const MAX_ENTRIES: usize = 20_000;

/// Why the skills could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum SkillsError {
    #[error("cannot read skill file `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the skills are over {} MiB together (at `{path}`)", MAX_BYTES / 1024 / 1024)]
    TooBig { path: PathBuf },
    #[error("the skills hold over {MAX_ENTRIES} files and folders (at `{path}`)")]
    TooMany { path: PathBuf },
}

impl SkillsError {
    pub fn hint(&self) -> &'static str {
        match self {
            SkillsError::Read { .. } => "check the skill folder's permissions",
            SkillsError::TooBig { .. } | SkillsError::TooMany { .. } => {
                "keep large data out of skill folders, or drop the skill from the agent's `skills`"
            }
        }
    }
}

/// A tar archive, rooted at the agent's home, of `.claude/skills/<name>/…`
/// for each name, read from `skills_root` (the host's `~/.claude/skills`).
/// Empty names list → `None`.
pub fn archive(skills_root: &Path, names: &[String]) -> Result<Option<Vec<u8>>, SkillsError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut b = Packer {
        tar: tar::Builder::new(Vec::new()),
        bytes: 0,
        entries: 0,
    };
    b.dir(".claude")?;
    b.dir(".claude/skills")?;
    for name in names {
        let src = skills_root.join(name);
        b.walk(&src, &format!(".claude/skills/{name}"), true)?;
    }
    let data = b.tar.into_inner().map_err(|e| SkillsError::Read {
        path: skills_root.to_path_buf(),
        source: e,
    })?;
    Ok(Some(data))
}

struct Packer {
    tar: tar::Builder<Vec<u8>>,
    bytes: u64,
    entries: usize,
}

impl Packer {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(0);
        h
    }

    fn count(&mut self, path: &Path, size: u64) -> Result<(), SkillsError> {
        self.entries += 1;
        self.bytes += size;
        if self.entries > MAX_ENTRIES {
            return Err(SkillsError::TooMany {
                path: path.to_path_buf(),
            });
        }
        if self.bytes > MAX_BYTES {
            return Err(SkillsError::TooBig {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<(), SkillsError> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, format!("{name}/"), io::empty())
            .map_err(|e| SkillsError::Read {
                path: PathBuf::from(name),
                source: e,
            })
    }

    fn walk(&mut self, src: &Path, dst: &str, top: bool) -> Result<(), SkillsError> {
        let read = |e| SkillsError::Read {
            path: src.to_path_buf(),
            source: e,
        };
        // The top folder may be a link; below it nothing is followed.
        let meta = if top {
            std::fs::metadata(src)
        } else {
            std::fs::symlink_metadata(src)
        }
        .map_err(read)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            self.count(src, 0)?;
            let target = std::fs::read_link(src).map_err(read)?;
            let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
            self.tar.append_link(&mut h, dst, &target).map_err(read)?;
        } else if ft.is_dir() {
            self.count(src, 0)?;
            self.dir(dst)?;
            let mut children: Vec<_> = std::fs::read_dir(src)
                .map_err(read)?
                .collect::<Result<_, _>>()
                .map_err(read)?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let name = child.file_name();
                let Some(name) = name.to_str() else {
                    // A name the container's tools may not handle; say where.
                    return Err(SkillsError::Read {
                        path: child.path(),
                        source: io::Error::new(io::ErrorKind::InvalidData, "name is not UTF-8"),
                    });
                };
                self.walk(&child.path(), &format!("{dst}/{name}"), false)?;
            }
        } else if ft.is_file() {
            self.count(src, meta.len())?;
            // Below the top, not `File::open`: a link swapped in since the
            // walk looked would be followed.
            let file = if top {
                std::fs::File::open(src)
            } else {
                crate::derived::open_as_listed(src, &meta)
            }
            .map_err(read)?;
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mut h = Self::header(
                tar::EntryType::Regular,
                if exec { 0o755 } else { 0o644 },
                meta.len(),
            );
            // A file that grows while read would corrupt the archive: read
            // exactly the size the header promises.
            use std::io::Read;
            self.tar
                .append_data(&mut h, dst, file.take(meta.len()))
                .map_err(read)?;
        }
        // Sockets, fifos and devices are not skill content: skipped.
        Ok(())
    }
}

/// Unpack the archive into the agent user's home.
pub async fn copy_in(
    engine: &Engine,
    container: &str,
    home: &str,
    archive: Vec<u8>,
) -> Result<(), EngineError> {
    engine
        .docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: home.to_string(),
                ..Default::default()
            }),
            bollard::body_full(archive.into()),
        )
        .await
        .map_err(api("copy the skills in"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, u64, u32)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn packs_skills_owned_by_the_agent_user() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("review/scripts")).unwrap();
        std::fs::write(d.path().join("review/SKILL.md"), "# Review\n").unwrap();
        std::fs::write(d.path().join("review/scripts/run.sh"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("review/scripts/run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let tar = archive(d.path(), &["review".into()]).unwrap().unwrap();
        let got = entries(&tar);
        let names: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                ".claude/",
                ".claude/skills/",
                ".claude/skills/review/",
                ".claude/skills/review/SKILL.md",
                ".claude/skills/review/scripts/",
                ".claude/skills/review/scripts/run.sh",
            ]
        );
        assert!(got.iter().all(|(_, uid, _)| *uid == 1000));
        assert_eq!(got[5].2, 0o755);
        assert_eq!(got[3].2, 0o644);
        assert!(archive(d.path(), &[]).unwrap().is_none());
    }

    /// A link to a host secret travels as a link: the secret's bytes are
    /// never read into the archive.
    #[test]
    fn links_inside_a_skill_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("id_ed25519");
        std::fs::write(&secret, "HOST-PRIVATE-KEY-BYTES").unwrap();
        std::fs::create_dir_all(d.path().join("skills/evil")).unwrap();
        std::os::unix::fs::symlink(&secret, d.path().join("skills/evil/key")).unwrap();
        let tar = archive(&d.path().join("skills"), &["evil".into()])
            .unwrap()
            .unwrap();
        assert!(
            !tar.windows(10).any(|w| w == b"HOST-PRIVA"),
            "the link's target was read"
        );
        let mut a = tar::Archive::new(&tar[..]);
        let link = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().ends_with("key"))
            .unwrap();
        assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
    }

    #[test]
    fn the_top_folder_may_be_a_link() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("dotfiles/review")).unwrap();
        std::fs::write(d.path().join("dotfiles/review/SKILL.md"), "x").unwrap();
        std::fs::create_dir_all(d.path().join("skills")).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("dotfiles/review"),
            d.path().join("skills/review"),
        )
        .unwrap();
        let tar = archive(&d.path().join("skills"), &["review".into()])
            .unwrap()
            .unwrap();
        assert!(
            entries(&tar)
                .iter()
                .any(|(p, _, _)| p == ".claude/skills/review/SKILL.md")
        );
    }

    #[test]
    fn too_big_is_refused_by_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("big")).unwrap();
        let f = std::fs::File::create(d.path().join("big/blob")).unwrap();
        f.set_len(MAX_BYTES + 1).unwrap();
        let e = archive(d.path(), &["big".into()]).unwrap_err();
        assert!(matches!(e, SkillsError::TooBig { .. }), "{e}");
        assert!(e.to_string().contains("blob"), "{e}");
    }
}
