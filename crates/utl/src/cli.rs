//! What etcd's command lines (etcdctl's and etcdutl's, both on Go's flag packages) share.

use clap::Arg;

/// A boolean flag as Go's flag packages take one: `--name`, `--name=true|false`.
pub fn bool_flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value("false")
        .value_parser(clap::builder::BoolishValueParser::new())
        .help(help)
}
