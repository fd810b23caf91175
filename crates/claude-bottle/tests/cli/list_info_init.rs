//! `list`, `info` and `init`.

use super::util::*;

#[test]
fn list_shows_sources_and_broken_files() {
    let t = TestEnv::standard();
    t.agent("broken", "---\nbotle: dev\n---\n");
    t.bottle("cracked", "---\nextends: missing\n---\n");
    t.project_agent("local", "---\nbottle: dev\n---\nA project agent.\n");
    let (code, out, err) = t.run(t.cmd(&["list"]));
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("list_text", out);
    let (code, out, _) = t.run(t.cmd(&["list", "--format", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let broken = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "broken")
        .unwrap();
    assert!(
        broken["broken"].as_str().unwrap().contains("did you mean")
            || broken["broken"]
                .as_str()
                .unwrap()
                .contains("unknown key `botle`")
    );
    let local = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "local")
        .unwrap();
    assert_eq!(local["source"], "project");
    let (_, out, _) = t.run(t.cmd(&["list", "bottles"]));
    assert!(
        out.contains("cracked") && !out.contains("reviewer"),
        "{out}"
    );
}

#[test]
fn info_works_without_secrets() {
    let t = TestEnv::standard();
    let mut c = t.cmd(&["info", "reviewer"]);
    c.env_remove("NPM_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("CLAUDE_BOTTLE_OAUTH_TOKEN");
    let (code, out, err) = t.run(c);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("info", out);
}

/// An agent without `bottle:` is valid (`start --bottle` names one): `info`
/// takes `--bottle` too, and without it says how to name one.
#[test]
fn info_of_an_agent_without_a_bottle_takes_bottle() {
    let t = TestEnv::standard();
    t.agent("loose", "---\nname: loose\n---\nYou work.\n");
    let (code, _, err) = t.run(t.cmd(&["info", "loose"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--bottle"), "{err}");
    let (code, out, err) = t.run(t.cmd(&["info", "loose", "--bottle", "base"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bottle   base (lineage: base)"), "{out}");
}

/// `info` shows the upstream CA's path without reading it: the file may not
/// exist yet, as `start --dry-run` would say.
#[test]
fn info_shows_the_upstream_ca_without_reading_it() {
    let t = TestEnv::new();
    t.bottle("dev", "---\negress:\n  upstream_ca: ca.pem\n---\n");
    t.agent("a", "---\nbottle: dev\n---\n");
    let (code, out, err) = t.run(t.cmd(&["info", "a"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ca       [TMP]/home/.claude-bottle/bottles/ca.pem"),
        "{out}"
    );
}

#[test]
fn init_writes_examples_and_never_overwrites() {
    let t = TestEnv::new();
    std::fs::remove_dir_all(t.home.join(".claude-bottle")).unwrap();
    let (code, _, err) = t.run(t.cmd(&["init"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("wrote   [TMP]/home/.claude-bottle/bottles/dev.md"),
        "{err}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.home.join(".claude-bottle"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let agent = t.home.join(".claude-bottle/agents/claude.md");
    std::fs::write(&agent, "---\nbottle: dev\n---\nmine\n").unwrap();
    let (code, _, err) = t.run(t.cmd(&["init"]));
    assert_eq!(code, 0);
    assert!(
        err.contains("kept    [TMP]/home/.claude-bottle/agents/claude.md (already there)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&agent).unwrap(),
        "---\nbottle: dev\n---\nmine\n"
    );
    // The examples are valid manifests.
    std::fs::remove_file(&agent).unwrap();
    t.run(t.cmd(&["init"]));
    let (code, _, err) = t.run(t.cmd(&["start", "claude", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
}
