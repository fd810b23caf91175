//! `Secret` and `SecretJson` zero their strings before the memory is
//! freed (security.md: secrets wiped from memory on drop). The allocator
//! looks into every block freed while a value is dropped; the same value
//! held in plain types is the control that shows it would see the secret.

use bottle_secret::{Secret, SecretJson};
use bottle_wipe_check::{MARKER_LEN, Watch};
use serde_json::{Value, json};

const MARKER: &[u8; MARKER_LEN] = b"sk-ant-oat01-WIPE-MARKER";

#[global_allocator]
static WATCH: Watch = Watch::new(*MARKER);

fn marker() -> String {
    // Built at run time, so the only copies are the heap's.
    String::from_utf8(MARKER.to_vec()).unwrap_or_default()
}

/// A sidecar-shaped document with the secret in several places.
fn document() -> Value {
    json!({
        "tokens": {"CLAUDE_BOTTLE_OAUTH_TOKEN": Value::String(marker())},
        "ssh_keys": {"app": Value::String(format!("-----BEGIN KEY-----\n{}\n", marker()))},
        "list": [Value::String(marker()), {"deep": Value::String(marker())}],
        "n": 3
    })
}

// One test: the allocator's switch is global, and parallel tests would
// free their own blocks while it is armed.
#[test]
fn secrets_are_zeroed_before_their_memory_is_freed() {
    // Controls: without the wrappers, the freed blocks hold the secret.
    let plain = marker();
    assert_eq!(WATCH.sightings_during(|| drop(plain)), 1);
    let doc = document();
    assert_eq!(WATCH.sightings_during(|| drop(doc)), 4);

    let secret = Secret::new(marker());
    assert_eq!(secret.expose().as_bytes(), MARKER);
    assert_eq!(WATCH.sightings_during(|| drop(secret)), 0);

    let cloned = Secret::new(marker()).clone();
    assert_eq!(WATCH.sightings_during(|| drop(cloned)), 0);

    let wrapped = SecretJson::new(document());
    assert_eq!(
        wrapped.expose()["list"][0].as_str(),
        Some(marker().as_str())
    );
    assert_eq!(WATCH.sightings_during(|| drop(wrapped)), 0);

    // A value cut short: the secret is left in its spare capacity, which
    // is freed with it and must be zeroed too.
    let mut cut = marker();
    cut.truncate(4);
    let cut = SecretJson::new(json!({"t": cut}));
    assert_eq!(WATCH.sightings_during(|| drop(cut)), 0);
    let mut cut = marker();
    cut.truncate(4);
    assert_eq!(WATCH.sightings_during(|| drop(cut)), 1, "control");
}
