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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("sk-ant-oat01-very-secret");
        let shown = format!("{s:?} {:?}", vec![s.clone()]);
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(s.expose(), "sk-ant-oat01-very-secret");
        assert_eq!(s.len(), 24);
    }
}
