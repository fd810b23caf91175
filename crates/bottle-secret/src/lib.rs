//! A value that must never be shown: a token, a key, a password.
//!
//! `Secret` has no `Display`, its `Debug` prints `Secret(..)`, it does not
//! implement `Serialize`, and its bytes are zeroed when it is dropped.
//! Reading the value is a named call, [`Secret::expose`], so every place that
//! does it stands out in review.

#![forbid(unsafe_code)]

use std::fmt;

use zeroize::Zeroizing;

/// A secret string. Cloning copies the value into a new zeroizing buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself. Call only where it is handed to the one place that
    /// needs it (an upstream header, a child's environment, the DLP engine).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many bytes long the value is; safe to show.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// A JSON document that holds secrets (the sidecar's configuration, say):
/// every string in it is zeroed when it is dropped. Its `Debug` shows
/// nothing of the content.
#[cfg(feature = "json")]
#[derive(Default)]
pub struct SecretJson(serde_json::Value);

#[cfg(feature = "json")]
impl SecretJson {
    pub fn new(value: serde_json::Value) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &serde_json::Value {
        &self.0
    }

    /// The document itself, for a consumer that moves its strings into
    /// [`Secret`]s; this wrapper is left holding `null`.
    pub fn take(&mut self) -> serde_json::Value {
        std::mem::take(&mut self.0)
    }
}

#[cfg(feature = "json")]
impl Drop for SecretJson {
    fn drop(&mut self) {
        wipe_json(&mut self.0);
    }
}

#[cfg(feature = "json")]
impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretJson(..)")
    }
}

/// Zero every string of a document (object keys are names, left as they
/// are) before it is freed: security.md asks secrets be wiped from memory on
/// drop where practical.
#[cfg(feature = "json")]
pub fn wipe_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    use zeroize::Zeroize;
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe_json),
        Value::Object(o) => o.values_mut().for_each(wipe_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "json")]
    #[test]
    fn wipe_json_empties_every_string_of_the_document() {
        let mut v = serde_json::json!({"secrets": {"tokens": {"T": "sk-ant-oat01-x"}},
                                        "list": ["k1", {"deep": "k2"}], "n": 3});
        wipe_json(&mut v);
        let text = v.to_string();
        for s in ["sk-ant", "k1", "k2"] {
            assert!(!text.contains(s), "{text}");
        }
        assert!(text.contains("\"n\":3"), "{text}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn secret_json_shows_nothing_and_hands_its_document_on_once() {
        let mut s = SecretJson::new(serde_json::json!({"T": "sk-ant-oat01-x"}));
        assert_eq!(format!("{s:?}"), "SecretJson(..)");
        assert_eq!(s.expose()["T"], "sk-ant-oat01-x");
        assert_eq!(s.take()["T"], "sk-ant-oat01-x");
        assert!(s.expose().is_null());
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-ant-oat01-very-secret");
        let shown = format!("{s:?} {:?}", vec![s.clone()]);
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(s.expose(), "sk-ant-oat01-very-secret");
        assert_eq!(s.len(), 24);
    }
}
