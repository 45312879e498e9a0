//! A failed command: etcdutl's message and its exit code.

use std::fmt;
use std::path::Path;

/// etcd's command line exit codes (cobrautl) that etcdutl uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Error,
    BadFeature,
    BadArgs,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Error => 1,
            Exit::BadFeature => 4,
            Exit::BadArgs => 128,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtlError {
    pub exit: Exit,
    /// What follows "Error: " on stderr.
    pub msg: String,
}

impl UtlError {
    pub fn new(exit: Exit, msg: impl Into<String>) -> UtlError {
        UtlError {
            exit,
            msg: msg.into(),
        }
    }

    /// A command that failed (exit code 1).
    pub fn error(msg: impl Into<String>) -> UtlError {
        UtlError::new(Exit::Error, msg)
    }

    pub fn bad_args(msg: impl Into<String>) -> UtlError {
        UtlError::new(Exit::BadArgs, msg)
    }

    pub fn bad_feature(msg: impl Into<String>) -> UtlError {
        UtlError::new(Exit::BadFeature, msg)
    }
}

impl fmt::Display for UtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for UtlError {}

/// An OS error as Go prints a failed file operation: `open x: no such file or directory`.
pub fn path_error(op: &str, path: &Path, e: &std::io::Error) -> String {
    format!("{op} {}: {}", path.display(), os_error_text(e))
}

/// The OS's text for an error without Rust's " (os error N)" and with a lower-case start,
/// as Go words errno: "no such file or directory".
pub fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => &text[..at],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            path_error("open", Path::new("/x/db"), &e),
            "open /x/db: no such file or directory"
        );
        let custom = std::io::Error::other("Already done");
        assert_eq!(os_error_text(&custom), "already done");
        assert_eq!(Exit::BadArgs.code(), 128);
    }
}
