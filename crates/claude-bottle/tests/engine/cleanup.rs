//! `cleanup` removes what a dead owner left, and nothing else.

use std::process::Command;

use super::docker_ok;

fn network(name: &str, labels: &[String]) {
    let mut args = vec!["network".to_string(), "create".to_string()];
    for l in labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.push(name.into());
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["network", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// This test process's owner label, as the CLI would write it.
fn my_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    format!("{host}:{}:{start}", std::process::id())
}

struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
    }
}

#[test]
fn cleanup_removes_dead_owners_objects_only() {
    if !docker_ok("cleanup_removes_dead_owners_objects_only") {
        return;
    }
    let run = format!("cleanup-{}", std::process::id());
    let test = format!("io.claude-bottle.test={run}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let dead = format!("io.claude-bottle.owner={host}:4194303:1");
    let dead_net = format!("claude-bottle-{run}-dead-egress");
    let live_net = format!("claude-bottle-{run}-live-egress");
    let kept_net = format!("claude-bottle-{run}-kept-egress");
    let _guard = Cleanup(vec![dead_net.clone(), live_net.clone(), kept_net.clone()]);
    let slug = |s: &str| format!("io.claude-bottle.slug={run}-{s}");
    network(
        &dead_net,
        &[
            test.clone(),
            slug("dead"),
            dead.clone(),
            "io.claude-bottle.role=network".into(),
        ],
    );
    network(
        &live_net,
        &[
            test.clone(),
            slug("live"),
            format!("io.claude-bottle.owner={}", my_owner()),
        ],
    );
    network(
        &kept_net,
        &[
            test.clone(),
            slug("kept"),
            dead.clone(),
            "io.claude-bottle.keep=true".into(),
        ],
    );

    let home = tempfile::tempdir().unwrap();
    let state = home.path().join(".claude-bottle/state");
    std::fs::create_dir_all(state.join(format!("{run}-dead"))).unwrap();
    std::fs::write(
        state.join(format!("{run}-dead/owner")),
        format!("{host}:4194303:1"),
    )
    .unwrap();
    std::fs::create_dir_all(state.join("live-one")).unwrap();
    std::fs::write(state.join("live-one/owner"), my_owner()).unwrap();
    // A folder a `start` has just made and not yet written its owner to
    // (its time set ahead, so that a slow engine cannot age it past the
    // few seconds such a folder is given while this test runs).
    std::fs::create_dir_all(state.join("just-begun")).unwrap();
    std::fs::File::open(state.join("just-begun"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();

    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_claude-bottle"))
            .args(args)
            .env("HOME", home.path())
            .env("CLAUDE_BOTTLE_TEST_LABEL", &run)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Without a terminal and without -y it refuses.
    let out = cli(&["cleanup"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(exists(&dead_net));

    let out = cli(&["cleanup", "-y"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !exists(&dead_net),
        "the dead owner's network is removed:\n{err}"
    );
    assert!(exists(&live_net), "a live owner's network stays");
    assert!(exists(&kept_net), "a --keep bottle stays without --all");
    assert!(!state.join(format!("{run}-dead")).exists(), "{err}");
    assert!(state.join("live-one").exists());
    assert!(
        state.join("just-begun").exists(),
        "a start in progress keeps its folder"
    );

    let out = cli(&["cleanup", "-y", "--all"]);
    assert!(out.status.success());
    assert!(!exists(&kept_net));
    assert!(exists(&live_net));
}

/// A container named as the user pinned the agent (`CLAUDE_BOTTLE_CONTAINER`)
/// is the bottle's when the name label is its own, and the user's when it
/// came with its image (a container run from a `docker commit` of the
/// agent, whose labels the image copied, under the same name).
#[test]
fn a_pinned_name_copied_from_an_image_is_not_the_bottles() {
    if !docker_ok("a_pinned_name_copied_from_an_image_is_not_the_bottles") {
        return;
    }
    let run = format!("pinned-{}", std::process::id());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let labels = |name: &str| {
        vec![
            format!("io.claude-bottle.test={run}"),
            format!("io.claude-bottle.slug={run}-s"),
            format!("io.claude-bottle.owner={host}:4194303:1"),
            "io.claude-bottle.role=agent".to_string(),
            format!("io.claude-bottle.name={name}"),
        ]
    };
    let copied = format!("copied-{run}");
    let own = format!("own-{run}");
    // The committed image: the labels, the copied name among them.
    let image = format!("claude-bottle-test/committed:{run}");
    let changes: Vec<String> = labels(&copied)
        .iter()
        .flat_map(|l| ["-c".to_string(), format!("LABEL {l}")])
        .collect();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar cf - -T /dev/null | docker import {} - {image}",
            changes
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let created = |args: &[String]| {
        let o = Command::new("docker").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // The user's: labels only from the image.
    created(&[
        "create".into(),
        "--name".into(),
        copied.clone(),
        image.clone(),
        "/none".into(),
    ]);
    // The bottle's: the same labels on the container itself, its own name.
    let mut args: Vec<String> = vec!["create".into(), "--name".into(), own.clone()];
    for l in labels(&own) {
        args.extend(["--label".into(), l]);
    }
    args.extend([image.clone(), "/none".into()]);
    created(&args);

    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_claude-bottle"))
        .args(["cleanup", "-y"])
        .env("HOME", home.path())
        .env("CLAUDE_BOTTLE_TEST_LABEL", &run)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let there = |name: &str| {
        Command::new("docker")
            .args(["container", "inspect", name])
            .output()
            .unwrap()
            .status
            .success()
    };
    let (copied_there, own_there) = (there(&copied), there(&own));
    for n in [&copied, &own] {
        let _ = Command::new("docker").args(["rm", "-f", n]).output();
    }
    let _ = Command::new("docker").args(["rmi", &image]).output();
    assert!(out.status.success(), "{err}");
    assert!(copied_there, "the user's container was removed: {err}");
    assert!(!own_there, "the bottle's pinned agent was left: {err}");
}
