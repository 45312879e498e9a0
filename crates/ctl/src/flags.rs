//! Declaring and reading etcdctl-style arguments: Go flag-package booleans, the positional
//! `args` every command takes, and typed reads of parsed matches.

use clap::{Arg, ArgMatches};

pub use oxcd_utl::cli::{bool_flag, last_flag_wins};

/// The positional arguments every command takes as `args`.
pub fn args() -> Arg {
    Arg::new("args").num_args(0..)
}

pub fn args_of(m: &ArgMatches) -> Vec<String> {
    m.try_get_many::<String>("args")
        .ok()
        .flatten()
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

/// A boolean flag's value; false where the command has no such flag.
pub fn flag(m: &ArgMatches, name: &str) -> bool {
    m.try_get_one::<bool>(name)
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
}

pub fn string(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

/// The chosen subcommand of a command group.
pub fn subcommand(m: &ArgMatches) -> crate::error::Result<(&str, &ArgMatches)> {
    m.subcommand()
        .ok_or_else(|| crate::error::err("no command".into()))
}
