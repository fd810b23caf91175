//! The real machine behind the plan's [`Host`] lookups.

use std::io::{self, Read};
use std::path::Path;

use bottle_plan::Host;

/// Largest credential file read (a token or an ssh key).
const MAX_SECRET_FILE: u64 = 64 * 1024;

pub struct RealHost;

impl Host for RealHost {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_secret_file(&self, path: &Path) -> io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let mut s = String::new();
        (&mut f).take(MAX_SECRET_FILE + 1).read_to_string(&mut s)?;
        if s.len() as u64 > MAX_SECRET_FILE {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "over 64 KiB"));
        }
        Ok(s)
    }

    fn dir_exists(&self, path: &Path) -> bool {
        path.is_dir()
    }
}
