//! The CLI's one error, and etcdctl's table of exit codes (etcdctl/ctlv3/command/error.go).
//! Commands return a [`CtlError`]; only `main` turns it into `Error: ...` and an exit code.

pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
/// The client cannot be set up (authentication failed, for one).
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
/// In etcdctl's table, used by none of its v3 commands.
#[allow(dead_code)]
pub const EXIT_IO: i32 = 6;
pub const EXIT_BAD_ARGS: i32 = 128;

/// A failed command: etcdctl's message (printed as `Error: {msg}` unless empty) and exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: i32,
    pub msg: String,
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

impl CtlError {
    pub fn new(code: i32, msg: impl Into<String>) -> CtlError {
        CtlError {
            code,
            msg: msg.into(),
        }
    }

    /// An exit code and no `Error:` line: the command has already said what went wrong.
    pub fn silent(code: i32) -> CtlError {
        CtlError::new(code, "")
    }

    /// The same message under another exit code.
    pub fn with_code(self, code: i32) -> CtlError {
        CtlError { code, ..self }
    }
}

/// An oxcd-utl answer (an offline command's) under etcdctl's table, which holds its codes.
impl From<oxcd_utl::UtlError> for CtlError {
    fn from(e: oxcd_utl::UtlError) -> CtlError {
        CtlError::new(e.exit.code(), e.msg)
    }
}

pub fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T> {
    Err(CtlError::new(code, msg))
}

/// etcdctl's general failure (ExitError) with `msg`.
pub fn err(msg: String) -> CtlError {
    CtlError::new(EXIT_ERROR, msg)
}
