//! The layering of DESIGN.md ("Layout"), checked from outside the code: which crate links
//! which (as `cargo tree` resolves each package on its own), how long a source file may get,
//! where a process may end itself, and that the modules of mvcc and server import each
//! other in no cycle. Plain tests: no server is started.

mod module_graph;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives in tests/).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `cargo <args>` run in the workspace root: its stdout, or its stderr as the error.
fn cargo(args: &[&str]) -> Result<String, String> {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&program)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The workspace's packages as `cargo metadata --no-deps` describes them.
fn workspace_packages() -> Vec<Value> {
    let json = cargo(&["metadata", "--format-version", "1", "--no-deps"])
        .unwrap_or_else(|e| panic!("cargo metadata failed:\n{e}"));
    let metadata: Value = serde_json::from_str(&json).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .expect("metadata lists packages")
        .clone()
}

/// One rule of DESIGN.md's layering: none of `packages` may link a crate `forbidden` picks,
/// through normal (not dev, not build) dependencies.
struct Rule {
    packages: &'static [&'static str],
    forbidden: fn(&str) -> bool,
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        packages: &["oxcd-ctl", "oxcd-bench", "oxcd-tests"],
        forbidden: |dep| dep == "oxcd-server",
        why: "oxcdctl, oxcd-bench and the tests are clients: they never link the node",
    },
    Rule {
        packages: &["oxcd-bench", "oxcd-tests"],
        forbidden: |dep| {
            ["oxcd-storage", "oxcd-mvcc", "oxcd-raftlog", "redb", "raft"].contains(&dep)
        },
        why: "the bench and the tests reach a cluster over the wire, never its storage",
    },
    Rule {
        packages: &[
            "oxcd-ctl",
            "oxcd-bench",
            "oxcd-tests",
            "oxcd-client",
            "oxcd-api",
        ],
        forbidden: |dep| dep == "axum",
        why: "clients build tonic without its router (axum is the node's HTTP stack)",
    },
    Rule {
        packages: &["oxcd-client"],
        forbidden: |dep| dep.starts_with("oxcd-") && dep != "oxcd-api" && dep != "oxcd-client",
        why: "oxcd-client stands on oxcd-api only",
    },
    Rule {
        packages: &["oxcd-mvcc"],
        forbidden: |dep| {
            ["oxcd-raftlog", "oxcd-storage", "oxcd-server", "oxcd-client"].contains(&dep)
        },
        why: "mvcc and raftlog never know each other nor the node",
    },
    Rule {
        packages: &["oxcd-raftlog"],
        forbidden: |dep| ["oxcd-mvcc", "oxcd-storage", "oxcd-server", "oxcd-client"].contains(&dep),
        why: "mvcc and raftlog never know each other nor the node",
    },
    Rule {
        packages: &["oxcd-storage"],
        forbidden: |dep| dep == "oxcd-server" || dep == "oxcd-client",
        why: "storage stands below the server and reaches no cluster",
    },
    Rule {
        packages: &["oxcd-utl"],
        forbidden: |dep| dep == "oxcd-server" || dep == "oxcd-client" || dep == "axum",
        why: "oxcdutl works offline on files, on the storage layer, never through the node",
    },
];

/// Every path from `package` to a dependency, as the names along it, from
/// `cargo tree -p <package> -e normal --prefix depth` (features resolved for that package
/// alone, as `cargo build -p` does); None if the workspace has no such package.
fn dependency_paths(package: &str) -> Option<Vec<Vec<String>>> {
    let tree = match cargo(&["tree", "-p", package, "-e", "normal", "--prefix", "depth"]) {
        Ok(tree) => tree,
        Err(e) if e.contains("did not match any packages") => return None,
        Err(e) => panic!("cargo tree -p {package} failed:\n{e}"),
    };
    let mut stack: Vec<String> = Vec::new();
    let mut paths = Vec::new();
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        let name = line[digits..].split_whitespace().next().unwrap_or_default();
        stack.truncate(depth);
        stack.push(name.to_string());
        paths.push(stack.clone());
    }
    Some(paths)
}

#[test]
fn clients_never_link_the_node() {
    let members: BTreeSet<String> = workspace_packages()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let mut violations = Vec::new();
    for rule in RULES {
        for &package in rule.packages {
            if !members.contains(package) {
                violations.push(format!("{package} is not a workspace package"));
                continue;
            }
            let paths = dependency_paths(package).unwrap_or_default();
            let mut offending: Vec<&Vec<String>> = paths
                .iter()
                .filter(|path| path.len() > 1 && (rule.forbidden)(&path[path.len() - 1]))
                .collect();
            offending.sort_by_key(|path| (path[path.len() - 1].clone(), path.len()));
            let crates: BTreeSet<&str> =
                offending.iter().map(|p| p[p.len() - 1].as_str()).collect();
            for dep in crates {
                let through: Vec<&&Vec<String>> =
                    offending.iter().filter(|p| p[p.len() - 1] == dep).collect();
                let shown: Vec<String> = through.iter().take(3).map(|p| p.join(" -> ")).collect();
                let more = match through.len().saturating_sub(3) {
                    0 => String::new(),
                    n => format!("\n      (and {n} more paths)"),
                };
                violations.push(format!(
                    "{package} links {dep} ({}):\n      {}{more}",
                    rule.why,
                    shown.join("\n      ")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} layering violations (normal dependencies, `cargo tree -p <package> -e normal`):\n  - {}",
        violations.len(),
        violations.join("\n  - ")
    );
}

/// Every .rs file below `dir`, target/ and hidden directories left out, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The Rust sources of crates/ and tests/.
fn workspace_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = rust_files(&root.join("crates"));
    files.extend(rust_files(&root.join("tests")));
    files
}

fn relative(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

const MAX_LINES: usize = 800;

#[test]
fn no_source_file_over_800_lines() {
    let mut offenders: Vec<(usize, String)> = workspace_sources()
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            let lines = text.lines().count();
            (lines > MAX_LINES).then(|| (lines, relative(path)))
        })
        .collect();
    offenders.sort_by(|a, b| b.cmp(a));
    let list: Vec<String> = offenders
        .iter()
        .map(|(lines, path)| format!("{path}: {lines} lines"))
        .collect();
    assert!(
        offenders.is_empty(),
        "{} source files over {MAX_LINES} lines (split them by concern):\n  {}",
        offenders.len(),
        list.join("\n  ")
    );
}

#[test]
fn process_exit_only_in_a_binarys_main() {
    // Spelled in two halves so that this file does not name itself.
    const EXIT: &str = concat!("process", "::exit");
    let entries: BTreeSet<PathBuf> = workspace_packages()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin" || k == "bench"))
        })
        .filter_map(|t| t["src_path"].as_str().map(PathBuf::from))
        .collect();
    let is_binary_main = |path: &Path| {
        path.file_name().is_some_and(|n| n == "main.rs")
            && (path.ends_with("src/main.rs") || entries.contains(path))
    };
    let mut offenders = Vec::new();
    for path in workspace_sources() {
        if is_binary_main(&path) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.contains(EXIT) && !code.starts_with("//") {
                offenders.push(format!("{}:{}: {}", relative(&path), n + 1, code));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "{EXIT} outside a binary's main.rs ({} places): a library returns an error and \
         the binary's main decides the exit code:\n  {}",
        offenders.len(),
        offenders.join("\n  ")
    );
}

#[test]
fn no_module_cycles_in_mvcc_or_server() {
    let root = workspace_root();
    let mut reports = Vec::new();
    for krate in ["crates/mvcc/src", "crates/server/src"] {
        let graph = module_graph::ModuleGraph::of(&root.join(krate));
        for cycle in graph.cycles() {
            reports.push(format!("{krate}: {cycle}"));
        }
    }
    assert!(
        reports.is_empty(),
        "{} module cycles (a module imports, through crate:: or super::, one that imports \
         it back; move what both need into a leaf module, or let the lower one declare the \
         small interface it needs):\n\n{}",
        reports.len(),
        reports.join("\n\n")
    );
}
