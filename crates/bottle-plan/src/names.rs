//! Slugs and the engine object names made from them (see `cli.md`).

use crate::host::EngineFacts;

/// Highest suffix tried before giving up (`-2` … `-99`).
pub const MAX_SUFFIX: u32 = 99;

pub fn agent_container(slug: &str) -> String {
    format!("claude-bottle-{slug}")
}
pub fn sidecar_container(slug: &str) -> String {
    format!("claude-bottle-{slug}-sidecar")
}
pub fn internal_network(slug: &str) -> String {
    format!("claude-bottle-{slug}-internal")
}
pub fn egress_network(slug: &str) -> String {
    format!("claude-bottle-{slug}-egress")
}
pub fn derived_image(slug: &str) -> String {
    format!("claude-bottle:cwd-{slug}")
}

/// An image reference as the engine lists it among an image's tags: with
/// a tag (`:latest` when none is given) and without Docker Hub's implied
/// `docker.io/` and `library/`. Teardown finds a pinned `--copy-cwd` tag
/// by comparing it with those tags, and a tag always holds a `:`, which
/// no container name can.
pub fn as_listed(image: &str) -> String {
    let short = image
        .strip_prefix("docker.io/library/")
        .or_else(|| image.strip_prefix("docker.io/"))
        .unwrap_or(image);
    let name_part = short.rsplit('/').next().unwrap_or(short);
    if name_part.contains(':') || name_part.contains('@') {
        short.to_string()
    } else {
        format!("{short}:latest")
    }
}

/// The agent name made safe for Docker names: lowercase, `[a-z0-9-]`, no
/// leading or trailing `-`. Manifest names already are; this guards the
/// rule in one place.
pub fn safe(agent: &str) -> String {
    let s: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "agent".to_string()
    } else {
        s.to_string()
    }
}

/// The first free slug for `agent`: its safe name, else `-2` … `-99`.
/// `None` when all are taken. With no engine facts nothing is taken.
pub fn pick_slug(agent: &str, engine: Option<&EngineFacts>) -> Option<String> {
    let base = safe(agent);
    let taken = |slug: &str| {
        engine.is_some_and(|e| {
            e.slugs.contains(slug)
                || e.containers.contains(&agent_container(slug))
                || e.containers.contains(&sidecar_container(slug))
                || e.networks.contains(&internal_network(slug))
                || e.networks.contains(&egress_network(slug))
        })
    };
    if !taken(&base) {
        return Some(base);
    }
    (2..=MAX_SUFFIX)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken(s))
}

#[cfg(test)]
mod tests {

    #[test]
    fn pinned_images_are_named_as_the_engine_lists_them() {
        assert_eq!(as_listed("myws"), "myws:latest");
        assert_eq!(as_listed("mine:cwd"), "mine:cwd");
        assert_eq!(as_listed("docker.io/library/x:y"), "x:y");
        assert_eq!(as_listed("docker.io/me/x"), "me/x:latest");
        assert_eq!(as_listed("reg.example:5000/x"), "reg.example:5000/x:latest");
        assert_eq!(as_listed("reg.example:5000/x:1"), "reg.example:5000/x:1");
    }

    use super::*;

    #[test]
    fn suffixes() {
        let mut e = EngineFacts::default();
        assert_eq!(pick_slug("rev", Some(&e)).as_deref(), Some("rev"));
        e.containers.insert("claude-bottle-rev".into());
        assert_eq!(pick_slug("rev", Some(&e)).as_deref(), Some("rev-2"));
        e.slugs.insert("rev-2".into());
        e.networks.insert("claude-bottle-rev-3-egress".into());
        assert_eq!(pick_slug("rev", Some(&e)).as_deref(), Some("rev-4"));
        for n in 2..=99 {
            e.slugs.insert(format!("rev-{n}"));
        }
        assert_eq!(pick_slug("rev", Some(&e)), None);
        assert_eq!(pick_slug("rev", None).as_deref(), Some("rev"));
        assert_eq!(safe("A_b-"), "a-b");
    }
}
