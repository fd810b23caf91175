//! The agent container on the real engine: hardening, no route out, files
//! through exec stdin, secrets only in exec env, teardown by label.

#![allow(clippy::unwrap_used)]

/// A skip message the test harness shows: it captures `eprintln!`, not a
/// write to the stderr handle (testing.md: skipped with a visible message).
macro_rules! skipped {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::collections::HashMap;
use std::process::Command;

use bottle_docker::agent::{self, AgentSpec};
use bottle_docker::exec::{self, Exec};
use bottle_docker::image::{self, BuildRequest, Executable, ImageKind};
use bottle_docker::{Engine, labels, network, outbox, teardown};

const AGENT_BASE: &str = "claude-bottle-test/agent-base:bookworm";
const IMAGE: &str = "claude-bottle-test/agent-lib:1";

fn engine_ready() -> bool {
    let required = std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() == Ok("1");
    let ok = Command::new("docker")
        .args(["image", "inspect", AGENT_BASE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !required,
            "no engine or no {AGENT_BASE} (scripts/test-base-image), and CLAUDE_BOTTLE_REQUIRE_DOCKER=1"
        );
        skipped!("SKIPPED: no engine or no {AGENT_BASE}");
    }
    ok
}

async fn sh(engine: &Engine, container: &str, script: &str) -> exec::Output {
    exec::run(
        engine,
        container,
        Exec {
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn gateway_of(net: &str) -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            net,
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn hardened_agent_with_no_route_out() {
    if !engine_ready() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    // The agent Dockerfile on the test base, through the library's own build path.
    let request = BuildRequest {
        kind: ImageKind::Agent,
        tag: IMAGE.into(),
        base_image: Some(AGENT_BASE.into()),
        version: "test".into(),
        executable: Executable {
            path: "/dev/null".into(),
            sha256: "test".into(),
        },
        extra_labels: HashMap::from([("io.claude-bottle.test".to_string(), "lib".to_string())]),
    };
    image::build(&engine, &request, &[], &mut |_| {})
        .await
        .unwrap();

    // A service on every host address, which a leak would reach.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c)
        }
    });
    let slug = format!("libtest-{}", std::process::id());
    let test_label = format!("io.claude-bottle.test={slug}");
    let labels = HashMap::from([
        (labels::SLUG.to_string(), slug.clone()),
        ("io.claude-bottle.test".to_string(), slug.clone()),
    ]);
    let net = format!("claude-bottle-{slug}-internal");
    let mut net_labels = labels.clone();
    net_labels.insert(labels::ROLE.into(), "network".into());
    network::create(&engine, &net, true, net_labels)
        .await
        .unwrap();
    let mut agent_labels = labels.clone();
    agent_labels.insert(labels::ROLE.into(), "agent".into());
    let spec = AgentSpec {
        name: format!("claude-bottle-{slug}"),
        image: IMAGE.into(),
        network: net.clone(),
        dns: None,
        env: vec!["HTTPS_PROXY=http://sidecar:3128".into()],
        labels: agent_labels,
        memory: "256m".into(),
        cpus: 0.5,
        pids: 128,
        runtime: None,
    };
    let inner = engine.clone();
    let (labels_in, test_label_in) = (labels.clone(), test_label.clone());
    let result = async move {
        let (labels, test_label) = (labels_in, test_label_in);
        let engine = inner;
        let id = agent::start(&engine, &spec).await.unwrap();
        // The user provisioning reads (`getent`, as its script does).
        let passwd = sh(&engine, &id, "getent passwd 1000 | cut -d: -f1,6").await;
        let text = passwd.stdout_text();
        let (user, home) = text.trim().split_once(':').unwrap();
        assert_eq!(user, "node");
        assert!(home.starts_with('/'));

        let status = sh(
            &engine,
            &id,
            "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status",
        )
        .await;
        let text = status.stdout_text();
        assert!(text.starts_with("1000\n"), "{text}");
        assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
        assert!(text.contains("NoNewPrivs:\t1"), "{text}");
        // No way out: the internal bridge's gateway address is not held by
        // the host (inhibit_ipv4), so a host service bound to 0.0.0.0 does
        // not answer there. The control run below shows the probe works.
        let gateway = gateway_of(&net);
        let probe = format!("nc -z -w 2 {gateway} {port} && echo REACHED || echo refused");
        assert_eq!(
            sh(&engine, &id, &probe).await.stdout_text().trim(),
            "refused"
        );
        let limits = sh(
            &engine,
            &id,
            "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
        )
        .await;
        assert_eq!(limits.stdout_text().trim(), "128");

        // A file through stdin: 0600, owned by the agent, on the tmpfs.
        let wrote = exec::run(
            &engine,
            &id,
            Exec {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "umask 077; cat > /run/claude-bottle/env".into(),
                ],
                user: Some("1000".into()),
                stdin: Some(b"A=1\n".to_vec()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(wrote.code, 0, "{}", wrote.stderr_text());
        let st = sh(
            &engine,
            &id,
            "stat -c '%a %U' /run/claude-bottle/env; cat /run/claude-bottle/env",
        )
        .await;
        assert_eq!(st.stdout_text(), "600 node\nA=1\n");

        // A secret in an exec's env reaches that process only.
        let secret = "sk-ant-oat01-LIBTESTSECRETVALUE";
        let out = exec::run(
            &engine,
            &id,
            Exec {
                cmd: vec!["sh".into(), "-c".into(), "printf %s \"$TOKEN\"".into()],
                env: vec![format!("TOKEN={secret}")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(out.stdout_text(), secret);
        let pid1 = sh(&engine, &id, "tr '\\0' '\\n' < /proc/1/environ")
            .await
            .stdout_text();
        assert!(!pid1.contains(secret));
        let inspect = Command::new("docker")
            .args(["inspect", &id])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&inspect.stdout).contains(secret));
        let code = sh(&engine, &id, "exit 7").await.code;
        assert_eq!(code, 7);

        // The outbox reads the agent's repository and leaves it as it was
        // (docs/decisions.md, Teardown): the index, HEAD and the working
        // tree's state are the same after it saved a bundle and a patch.
        let setup = sh(
            &engine,
            &id,
            "set -e; cd /workspace; git init -q r; cd r; git config user.email t@example.com; \
             git config user.name T; echo a > a; git add a; git commit -qm one; \
             echo b >> a; echo staged > s; git add s; echo new > untracked",
        )
        .await;
        assert_eq!(setup.code, 0, "{}", setup.stderr_text());
        let state =
            "cd /workspace/r; sha256sum .git/index; git rev-parse HEAD; git status --porcelain";
        let before = sh(&engine, &id, state).await.stdout_text();
        let out = tempfile::tempdir().unwrap();
        let saved = outbox::save(&engine, &id, None, &out.path().join("o")).await;
        assert!(saved.failures.is_empty(), "{:?}", saved.failures);
        assert_eq!(
            saved.files.len(),
            2,
            "a bundle and a patch: {:?}",
            saved.files
        );
        let patch = std::fs::read_to_string(
            saved
                .files
                .iter()
                .find(|f| f.extension().is_some_and(|e| e == "patch"))
                .unwrap(),
        )
        .unwrap();
        assert!(
            patch.contains("+staged") && patch.contains("+new") && patch.contains("+b"),
            "{patch}"
        );
        assert_eq!(
            sh(&engine, &id, state).await.stdout_text(),
            before,
            "the agent's repo changed"
        );

        // The whole outbox is bounded: the agent chooses how many
        // repositories there are and how big, and the files stay on the host.
        let more = sh(
            &engine,
            &id,
            "set -e; cd /workspace; for n in s t; do git init -q $n; cd $n; \
             git config user.email t@example.com; git config user.name T; \
             echo $n > f; git add f; git commit -qm $n; cd ..; done",
        )
        .await;
        assert_eq!(more.code, 0, "{}", more.stderr_text());
        let bounded = |repos, bytes, secs| outbox::Bounds {
            repos,
            bytes,
            time: std::time::Duration::from_secs(secs),
        };
        let within = |dir: &str, b| {
            let path = out.path().join(dir);
            let (engine, id) = (&engine, &id);
            async move { outbox::save_within(engine, id, None, &path, b).await }
        };
        let is_bounded = |s: &outbox::Saved, skipped: usize| {
            s.failures.iter().any(
                |f| matches!(f, outbox::OutboxError::Bounded { skipped: n, .. } if *n == skipped),
            )
        };
        // r, s, t: two repositories saved, the third named as skipped.
        let two = within("two", bounded(2, u64::MAX, 600)).await;
        assert!(is_bounded(&two, 1), "{:?}", two.failures);
        let stems: Vec<String> = two
            .files
            .iter()
            .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        let has = |repo: &str| stems.iter().any(|s| s == &format!("workspace.{repo}"));
        assert!(has("r") && has("s") && !has("t"), "{stems:?}");
        // A byte budget smaller than the first bundle: nothing written.
        let tiny = within("tiny", bounded(64, 100, 600)).await;
        assert!(
            tiny.failures
                .iter()
                .any(|f| matches!(f, outbox::OutboxError::TooLarge { limit: 100, .. })),
            "{:?}",
            tiny.failures
        );
        assert!(
            tiny.files
                .iter()
                .all(|f| std::fs::metadata(f).unwrap().len() <= 100)
        );
        // No time left: nothing is tried.
        let late = within("late", bounded(64, u64::MAX, 0)).await;
        assert!(is_bounded(&late, 3), "{:?}", late.failures);
        assert!(late.files.is_empty());

        // Control: on an ordinary bridge the same probe reaches the host,
        // so "refused" above is the defence, not a broken probe.
        let open_net = format!("claude-bottle-{slug}-egress");
        let mut l = labels.clone();
        l.insert(labels::ROLE.into(), "network".into());
        network::create(&engine, &open_net, false, l).await.unwrap();
        let control = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--label",
                &test_label,
                "--network",
                &open_net,
                IMAGE,
                "sh",
                "-c",
            ])
            .arg(format!(
                "nc -z -w 2 {} {port} && echo REACHED || echo refused",
                gateway_of(&open_net)
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&control.stdout).trim(), "REACHED");
    };
    let outcome = tokio::spawn(result).await;
    // Remove first, then judge: a failed check above must not leave the
    // container behind.
    let objects = teardown::find(&engine, Some(&test_label)).await.unwrap();
    let failures = teardown::remove(&engine, &objects).await;
    if outcome.is_ok() {
        assert_eq!(objects.len(), 3, "agent and two networks: {objects:?}");
    }
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        teardown::find(&engine, Some(&test_label))
            .await
            .unwrap()
            .is_empty()
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// An object labelled with a slug the CLI never makes (`../..`, as a pulled
/// image could carry) is not ours: teardown never lists it, so `stop --all`
/// and `cleanup` neither remove it nor turn its slug into a path under
/// `$CLAUDE_BOTTLE_HOME` (`state/../..` was the user's home).
#[tokio::test(flavor = "current_thread")]
async fn objects_with_a_slug_that_is_a_path_are_not_ours() {
    if !engine_ready() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let run = format!("foreign-slug-{}", std::process::id());
    let test_label = format!("{}={run}", labels::TEST);
    let mut made = Vec::new();
    let ours = format!("ours-{}", std::process::id());
    for slug in ["../..", ours.as_str()] {
        // The name the CLI gives, so only the slug can make it not ours.
        let name = format!("claude-bottle-{}-internal", slug.replace('/', "-"));
        let l = HashMap::from([
            (labels::SLUG.to_string(), slug.to_string()),
            (labels::ROLE.to_string(), "network".to_string()),
            (labels::TEST.to_string(), run.clone()),
        ]);
        network::create(&engine, &name, true, l).await.unwrap();
        made.push(name);
    }
    let found = teardown::find(&engine, Some(&test_label)).await;
    for name in &made {
        let _ = Command::new("docker")
            .args(["network", "rm", name])
            .output();
    }
    let slugs: Vec<String> = found.unwrap().into_iter().map(|o| o.slug).collect();
    assert_eq!(slugs, [ours]);
}

/// Labels are copied: a container run from the `--copy-cwd` image
/// inherits its labels, and `docker commit` writes a container's labels
/// into the image it makes. Only objects under the names the CLI gives
/// are the bottle's: the user's own container, image and network,
/// labelled alike, are never listed for removal nor picked by `attach`,
/// and removing the bottle's image by its tag keeps another tag the user
/// gave it.
#[tokio::test(flavor = "current_thread")]
async fn objects_labelled_alike_but_named_otherwise_are_not_ours() {
    if !engine_ready() {
        return;
    }
    let engine = Engine::connect().await.unwrap();
    let slug = format!("alike-{}", std::process::id());
    let run = format!("{slug}-run");
    let test_label = format!("{}={run}", labels::TEST);
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let label_args = [
        "--label".to_string(),
        format!("{}={slug}", labels::SLUG),
        "--label".to_string(),
        format!("{}=agent", labels::ROLE),
        "--label".to_string(),
        test_label.clone(),
    ];
    let user_container = format!("user-{run}");
    let our_container = format!("claude-bottle-{slug}");
    let user_image = format!("user-img-{run}:1");
    let our_image = format!("claude-bottle:cwd-{slug}");
    let user_tag = format!("user-keep-{run}:1");
    let user_net = format!("user-net-{run}");
    let our_net = format!("claude-bottle-{slug}-internal");
    for name in [&user_container, &our_container] {
        let mut args = vec!["create", "--name", name.as_str()];
        args.extend(label_args.iter().map(String::as_str));
        args.extend([AGENT_BASE, "true"]);
        let (ok, err) = docker(&args);
        assert!(ok, "{err}");
    }
    let net_labels = HashMap::from([
        (labels::SLUG.to_string(), slug.clone()),
        (labels::ROLE.to_string(), "network".to_string()),
        (labels::TEST.to_string(), run.clone()),
    ]);
    // Removed at the end whatever happens, by the docker CLI.
    let _remove = DockerOnDrop(vec![
        vec![
            "rm".into(),
            "-f".into(),
            user_container.clone(),
            our_container.clone(),
        ],
        vec![
            "rmi".into(),
            user_image.clone(),
            our_image.clone(),
            user_tag.clone(),
        ],
        vec![
            "network".into(),
            "rm".into(),
            user_net.clone(),
            our_net.clone(),
        ],
    ]);
    for image in [&user_image, &our_image] {
        let (ok, err) = docker(&["commit", &user_container, image]);
        assert!(ok, "{err}");
    }
    let (ok, err) = docker(&["tag", &our_image, &user_tag]);
    assert!(ok, "{err}");
    for net in [&user_net, &our_net] {
        network::create(&engine, net, true, net_labels.clone())
            .await
            .unwrap();
    }

    let found = teardown::find(&engine, Some(&test_label)).await.unwrap();
    let mut named: Vec<(&str, &str)> = found.iter().map(|o| (o.kind, o.name.as_str())).collect();
    named.sort();
    assert_eq!(
        named,
        [
            ("container", our_container.as_str()),
            ("image", our_image.as_str()),
            ("network", our_net.as_str()),
        ]
    );
    let agent = bottle_docker::attach::find_agent(&engine, &slug, Some(&test_label))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(agent.name, our_container);

    let failures = teardown::remove(&engine, &found).await;
    assert!(failures.is_empty(), "{failures:?}");
    let exists = |what: &str, name: &str| docker(&[what, "inspect", name]).0;
    assert!(exists("container", &user_container));
    assert!(!exists("container", &our_container));
    assert!(exists("image", &user_image));
    assert!(exists("image", &user_tag), "the user's tag keeps the image");
    assert!(!exists("image", &our_image));
    assert!(exists("network", &user_net));
    assert!(!exists("network", &our_net));
}

/// Runs each docker command when dropped (a failed assertion included).
struct DockerOnDrop(Vec<Vec<String>>);

impl Drop for DockerOnDrop {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = Command::new("docker").args(args).output();
        }
    }
}

/// The attack the provisioning script's IPv6 check stops: an engine that
/// gives the agent an IPv6 address (here, a network made with IPv6, as
/// Docker 26.0.0–26.0.1 did on IPv4-only ones). The script must stop
/// before anything else with its own code; on an IPv4-only network it
/// must get past the check. Without the check the first run would go on
/// to look for the agent user (exit 98 here), not 94.
#[test]
fn the_files_step_refuses_an_agent_with_ipv6() {
    if !engine_ready() {
        return;
    }
    let docker = |args: &[&str]| {
        let o = Command::new("docker").args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let run = format!("cb-libtest-v6-{}", std::process::id());
    let (v6, v4) = (format!("{run}-v6"), format!("{run}-v4"));
    let label = "io.claude-bottle.test=ipv6-check";
    assert_eq!(
        docker(&[
            "network",
            "create",
            "--label",
            label,
            "--ipv6",
            "--subnet",
            "fd00:cb19::/64",
            &v6
        ])
        .0,
        Some(0)
    );
    assert_eq!(
        docker(&["network", "create", "--label", label, &v4]).0,
        Some(0)
    );
    let script = bottle_docker::provision::agent_files_script();
    let on = |net: &str| {
        let name = format!("{net}-c");
        let started = docker(&[
            "run",
            "-d",
            "--rm",
            "--label",
            label,
            "--network",
            net,
            "--name",
            &name,
            AGENT_BASE,
            "sleep",
            "60",
        ]);
        assert_eq!(started.0, Some(0), "{}", started.1);
        let out = Command::new("docker")
            .args(["exec", "-u", "1000", &name, "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let _ = docker(&["rm", "-f", &name]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let with_v6 = on(&v6);
    let without = on(&v4);
    let _ = docker(&["network", "rm", &v6, &v4]);
    assert_eq!(
        with_v6,
        (
            Some(i32::from(bottle_docker::helper::IPV6_ON)),
            "IPv6 on eth0\n".to_string()
        )
    );
    assert_ne!(
        without.0,
        Some(i32::from(bottle_docker::helper::IPV6_ON)),
        "{}",
        without.1
    );
}
