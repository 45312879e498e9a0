//! Command line tools as processes: one-shot runs (oxcdctl, etcdctl, oxcd flag checks) and
//! long-running ones (lock, elect, make-mirror) read line by line.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a command line tool and returns (stdout, stderr, exit code).
pub fn run_tool(program: &Path, args: &[String], stdin: Option<&str>) -> (String, String, i32) {
    run_tool_env(program, args, stdin, &[])
}

/// `run_tool` with extra environment variables.
pub fn run_tool_env(
    program: &Path,
    args: &[String],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> (String, String, i32) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .env("ETCDCTL_API", "3")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tool");
    if let Some(mut sin) = child.stdin.take() {
        if let Some(text) = stdin {
            let _ = sin.write_all(text.as_bytes());
        }
    }
    let out = child.wait_with_output().expect("tool output");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs oxcdctl or etcdctl (`program`) as `program --endpoints=<endpoints> <args>`:
/// (stdout, stderr, exit code).
pub fn ctl(program: &Path, endpoints: &str, args: &[&str]) -> (String, String, i32) {
    let mut a = vec![format!("--endpoints={endpoints}")];
    a.extend(args.iter().map(|s| s.to_string()));
    run_tool(program, &a, None)
}

/// A long-running command line tool (lock, elect, make-mirror) whose stdout is read line by
/// line as it comes; killed by PID when dropped.
pub struct Tool {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Tool {
    pub fn spawn(program: &Path, args: &[&str]) -> Tool {
        let mut child = Command::new(program)
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tool");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tool {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until the tool has printed `n` lines in all, or the deadline passes; the lines
    /// seen so far.
    pub fn wait_lines(&mut self, n: usize, within: Duration) -> &[String] {
        let deadline = Instant::now() + within;
        while self.seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        &self.seen
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit code once the tool exits within the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        crate::wait::wait_exit(&mut self.child, within).map(|status| status.code().unwrap_or(-1))
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.kill9();
    }
}
