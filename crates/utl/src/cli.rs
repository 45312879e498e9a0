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

/// Go's flag packages take the last of a flag given twice (scripts that append flags do that);
/// clap refuses it unless each command says otherwise.
pub fn last_flag_wins(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd.args_override_self(true), |cmd, name| {
            cmd.mut_subcommand(name, last_flag_wins)
        })
}

/// `completion [bash|zsh|fish|powershell]`, as etcdctl and etcdutl 3.5 have it.
pub fn completion_cmd() -> clap::Command {
    clap::Command::new("completion")
        .about("Generate completion script")
        .arg(
            Arg::new("shell")
                .value_parser(["bash", "zsh", "fish", "powershell"])
                .default_value("bash"),
        )
}

/// The completion script for `shell` of the program `cmd` describes.
pub fn completion(mut cmd: clap::Command, shell: &str) -> Vec<u8> {
    use clap_complete::Shell;
    let shell = match shell {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        "powershell" => Shell::PowerShell,
        _ => Shell::Bash,
    };
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}
