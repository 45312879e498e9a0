//! `user add|delete|get|list|passwd|grant-role|revoke-role` (etcdctl's user_command.go).

use crate::auth::{call, need, print};
use crate::connect::{connect, read_password};
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::printer::{Format, Out};
use crate::role::role_text;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::authpb::UserAddOptions;
use oxcd_api::etcdserverpb::{
    AuthRoleGetRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};
use oxcd_client::with_timeout;
use serde_json::json;

pub fn user_cmd() -> Command {
    let interactive = |help| {
        bool_flag("interactive", help)
            .default_value("true")
            .value_parser(clap::builder::BoolishValueParser::new())
    };
    Command::new("user")
        .about("User related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("add")
                .about("Adds a new user")
                .arg(args())
                .arg(interactive(
                    "Read password from stdin instead of interactive terminal",
                ))
                .arg(
                    Arg::new("new-user-password")
                        .long("new-user-password")
                        .default_value("")
                        .help("Supply password from the command line flag"),
                )
                .arg(bool_flag(
                    "no-password",
                    "Create a user without password (CN based auth only)",
                )),
        )
        .subcommand(Command::new("delete").about("Deletes a user").arg(args()))
        .subcommand(
            Command::new("get")
                .about("Gets detailed information of a user")
                .arg(args())
                .arg(bool_flag(
                    "detail",
                    "Show permissions of roles granted to the user",
                )),
        )
        .subcommand(Command::new("list").about("Lists all users").arg(args()))
        .subcommand(
            Command::new("passwd")
                .about("Changes password of user")
                .arg(args())
                .arg(interactive(
                    "If true, read password from stdin instead of interactive terminal",
                )),
        )
        .subcommand(
            Command::new("grant-role")
                .about("Grants a role to a user")
                .arg(args()),
        )
        .subcommand(
            Command::new("revoke-role")
                .about("Revokes a role from a user")
                .arg(args()),
        )
}

/// etcdctl's password prompt: twice on a terminal, once from stdin with --interactive=false.
fn ask_password(name: &str, interactive: bool) -> Result<String> {
    let bad = |msg: String| CtlError::new(EXIT_BAD_ARGS, msg);
    if !interactive {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| bad(format!("failed to ask password: {e}")))?;
        return Ok(line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string());
    }
    let first = read_password(&format!("Password of {name}: ")).map_err(bad)?;
    if first.is_empty() {
        return Err(bad("empty password".into()));
    }
    let second =
        read_password(&format!("Type password of {name} again for confirmation: ")).map_err(bad)?;
    if first != second {
        return Err(bad("given passwords are different".into()));
    }
    Ok(first)
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    let args = args_of(sm);
    let t = g.command_timeout;
    match sub {
        "add" => {
            need(
                &args,
                1,
                "user add command requires user name as its argument",
            )?;
            let no_password = flag(sm, "no-password");
            let from_flag = string(sm, "new-user-password");
            let (name, password) = if no_password {
                (args[0].clone(), String::new())
            } else if !from_flag.is_empty() {
                (args[0].clone(), from_flag)
            } else if let Some((n, p)) = args[0].split_once(':') {
                if n.is_empty() {
                    return fail(EXIT_BAD_ARGS, "empty user name is not allowed");
                }
                (n.to_string(), p.to_string())
            } else {
                (
                    args[0].clone(),
                    ask_password(&args[0], flag(sm, "interactive"))?,
                )
            };
            let req = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password }),
                hashed_password: String::new(),
            };
            let r = call(g, |mut a| async move { a.user_add(req).await }).await?;
            print(
                g,
                out,
                format!("User {name} created\n"),
                json!({}),
                &r.header,
            );
        }
        "delete" => {
            need(
                &args,
                1,
                "user delete command requires user name as its argument",
            )?;
            let req = AuthUserDeleteRequest {
                name: args[0].clone(),
            };
            let r = call(g, |mut a| async move { a.user_delete(req).await }).await?;
            print(
                g,
                out,
                format!("User {} deleted\n", args[0]),
                json!({}),
                &r.header,
            );
        }
        "get" => {
            need(
                &args,
                1,
                "user get command requires user name as its argument",
            )?;
            let c = connect(g).await?;
            let r = with_timeout(
                t,
                c.auth().user_get(AuthUserGetRequest {
                    name: args[0].clone(),
                }),
            )
            .await
            .map_err(err)?;
            if flag(sm, "detail") && g.printer.format() != Format::Json {
                out.line(format!("User: {}", args[0]));
                for role in &r.roles {
                    out.line("");
                    let p = with_timeout(
                        t,
                        c.auth().role_get(AuthRoleGetRequest { role: role.clone() }),
                    )
                    .await
                    .map_err(err)?;
                    out.stdout.push_str(&role_text(role, &p.perm));
                }
                return Ok(());
            }
            let mut line = format!("User: {}\nRoles:", args[0]);
            for role in &r.roles {
                line.push(' ');
                line.push_str(role);
            }
            line.push('\n');
            print(g, out, line, json!({"roles": r.roles}), &r.header);
        }
        "list" => {
            need(&args, 0, "user list command requires no arguments")?;
            let req = AuthUserListRequest {};
            let r = call(g, |mut a| async move { a.user_list(req).await }).await?;
            let text: String = r.users.iter().map(|u| format!("{u}\n")).collect();
            print(g, out, text, json!({"users": r.users}), &r.header);
        }
        "passwd" => {
            need(
                &args,
                1,
                "user passwd command requires user name as its argument",
            )?;
            let password = ask_password(&args[0], flag(sm, "interactive"))?;
            let req = AuthUserChangePasswordRequest {
                name: args[0].clone(),
                password,
                hashed_password: String::new(),
            };
            let r = call(g, |mut a| async move { a.user_change_password(req).await }).await?;
            print(g, out, "Password updated\n".into(), json!({}), &r.header);
        }
        "grant-role" => {
            need(
                &args,
                2,
                "user grant command requires user name and role name as its argument",
            )?;
            let req = AuthUserGrantRoleRequest {
                user: args[0].clone(),
                role: args[1].clone(),
            };
            let r = call(g, |mut a| async move { a.user_grant_role(req).await }).await?;
            let line = format!("Role {} is granted to user {}\n", args[1], args[0]);
            print(g, out, line, json!({}), &r.header);
        }
        _ => {
            need(
                &args,
                2,
                "user revoke-role requires user name and role name as its argument",
            )?;
            let req = AuthUserRevokeRoleRequest {
                name: args[0].clone(),
                role: args[1].clone(),
            };
            let r = call(g, |mut a| async move { a.user_revoke_role(req).await }).await?;
            let line = format!("Role {} is revoked from user {}\n", args[1], args[0]);
            print(g, out, line, json!({}), &r.header);
        }
    }
    Ok(())
}
