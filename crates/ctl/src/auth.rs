//! etcdctl's `auth`, `user` and `role` commands, with etcdctl's arguments and output.

use crate::client::{self, Conn};
use crate::printer::{header_json, Format, Out};
use crate::{args_of, bool_flag, err, fail, flag, string, CtlError, Globals, EXIT_BAD_ARGS};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::*;
use serde_json::{json, Value};

fn args() -> Arg {
    Arg::new("args").num_args(0..)
}

pub fn auth_cmd() -> Command {
    Command::new("auth")
        .about("Enable or disable authentication")
        .subcommand_required(true)
        .subcommand(
            Command::new("enable")
                .about("Enables authentication")
                .arg(args()),
        )
        .subcommand(
            Command::new("disable")
                .about("Disables authentication")
                .arg(args()),
        )
        .subcommand(
            Command::new("status")
                .about("Returns authentication status")
                .arg(args()),
        )
}

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

pub fn role_cmd() -> Command {
    let range_flags = |c: Command, what: &'static str| {
        c.arg(bool_flag("prefix", what)).arg(bool_flag(
            "from-key",
            "grant a permission of keys that are greater than or equal to the given key using byte compare",
        ))
    };
    Command::new("role")
        .about("Role related commands")
        .subcommand_required(true)
        .subcommand(Command::new("add").about("Adds a new role").arg(args()))
        .subcommand(Command::new("delete").about("Deletes a role").arg(args()))
        .subcommand(
            Command::new("get")
                .about("Gets detailed information of a role")
                .arg(args()),
        )
        .subcommand(Command::new("list").about("Lists all roles").arg(args()))
        .subcommand(range_flags(
            Command::new("grant-permission")
                .about("Grants a key to a role")
                .arg(args()),
            "grant a prefix permission",
        ))
        .subcommand(range_flags(
            Command::new("revoke-permission")
                .about("Revokes a key from a role")
                .arg(args()),
            "revoke a prefix permission",
        ))
}

/// Connects (authenticating with --user) and makes one Auth call under the command timeout.
async fn call<T, Fut>(g: &Globals, rpc: impl FnOnce(AuthClient<Conn>) -> Fut) -> Result<T, CtlError>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let c = crate::connect(g).await?;
    client::with_timeout(g.command_timeout, rpc(c.auth()))
        .await
        .map_err(err)
}

/// Prints etcdctl's line for simple output, or the response as JSON.
fn print(
    g: &Globals,
    out: &mut Out,
    simple: String,
    fields: Value,
    header: &Option<ResponseHeader>,
) {
    if g.printer.format == Format::Json {
        let mut v = json!({});
        if let Some(h) = header_json(header) {
            v["header"] = h;
        }
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, val) in extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        out.line(v.to_string());
    } else if !simple.is_empty() {
        out.stdout.push_str(&simple);
    }
}

pub async fn auth(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    if !args_of(sm).is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            format!("auth {sub} command does not accept any arguments"),
        );
    }
    let c = crate::connect(g).await?;
    let mut a = c.auth();
    let t = g.command_timeout;
    match sub {
        "enable" => {
            // As etcdctl: a root user without the root role gets it (and the role) first.
            loop {
                match a.auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(s)
                        if client::describe(&s)
                            == oxcd_api::EtcdError::RootRoleNotExist.to_string() =>
                    {
                        let added = client::with_timeout(
                            t,
                            a.role_add(AuthRoleAddRequest {
                                name: "root".into(),
                            }),
                        )
                        .await;
                        if let Err(e) = added {
                            if e != oxcd_api::EtcdError::RoleAlreadyExist.to_string() {
                                return Err(err(e));
                            }
                        }
                        client::with_timeout(
                            t,
                            a.user_grant_role(AuthUserGrantRoleRequest {
                                user: "root".into(),
                                role: "root".into(),
                            }),
                        )
                        .await
                        .map_err(err)?;
                    }
                    Err(s) => return Err(err(client::describe(&s))),
                }
            }
            out.line("Authentication Enabled");
        }
        "disable" => {
            client::with_timeout(t, a.auth_disable(AuthDisableRequest {}))
                .await
                .map_err(err)?;
            out.line("Authentication Disabled");
        }
        _ => {
            let r = client::with_timeout(t, a.auth_status(AuthStatusRequest {}))
                .await
                .map_err(err)?;
            print(
                g,
                out,
                format!(
                    "Authentication Status: {}\nAuthRevision: {}\n",
                    r.enabled, r.auth_revision
                ),
                json!({"enabled": r.enabled, "authRevision": r.auth_revision}),
                &r.header,
            );
        }
    }
    Ok(())
}

fn need(args: &[String], n: usize, msg: &str) -> Result<(), CtlError> {
    if args.len() != n {
        return fail(EXIT_BAD_ARGS, msg);
    }
    Ok(())
}

/// etcdctl's password prompt: twice on a terminal, once from stdin with --interactive=false.
fn ask_password(name: &str, interactive: bool) -> Result<String, CtlError> {
    let bad = |msg: String| CtlError {
        code: EXIT_BAD_ARGS,
        msg,
    };
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
    let first = crate::read_password(&format!("Password of {name}: ")).map_err(bad)?;
    if first.is_empty() {
        return Err(bad("empty password".into()));
    }
    let second = crate::read_password(&format!("Type password of {name} again for confirmation: "))
        .map_err(bad)?;
    if first != second {
        return Err(bad("given passwords are different".into()));
    }
    Ok(first)
}

pub async fn user(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
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
            let c = crate::connect(g).await?;
            let r = client::with_timeout(
                t,
                c.auth().user_get(AuthUserGetRequest {
                    name: args[0].clone(),
                }),
            )
            .await
            .map_err(err)?;
            if flag(sm, "detail") && g.printer.format != Format::Json {
                out.line(format!("User: {}", args[0]));
                for role in &r.roles {
                    out.line("");
                    let p = client::with_timeout(
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

/// etcdctl's `role get` text.
fn role_text(role: &str, perms: &[Permission]) -> String {
    let mut s = format!("Role {role}\nKV Read:\n");
    let range = |p: &Permission| {
        let key = String::from_utf8_lossy(&p.key);
        let end = String::from_utf8_lossy(&p.range_end);
        let mut line = if p.range_end == [0] {
            format!("\t[{key}, <open ended>")
        } else {
            format!("\t[{key}, {end})")
        };
        if oxcd_api::prefix_end(&p.key) == p.range_end {
            line.push_str(&format!(" (prefix {key})"));
        }
        line.push('\n');
        line
    };
    let list = |s: &mut String, wanted: PermType| {
        for p in perms {
            if p.perm_type == wanted as i32 || p.perm_type == PermType::Readwrite as i32 {
                if p.range_end.is_empty() {
                    s.push_str(&format!("\t{}\n", String::from_utf8_lossy(&p.key)));
                } else {
                    s.push_str(&range(p));
                }
            }
        }
    };
    list(&mut s, PermType::Read);
    s.push_str("KV Write:\n");
    list(&mut s, PermType::Write);
    s
}

/// The key and range end a permission command names (etcdctl's permRange).
fn perm_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    if prefix && from_key {
        return fail(
            EXIT_BAD_ARGS,
            "--from-key and --prefix flags are mutually exclusive",
        );
    }
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        // The empty key stands for every key: ["\0", "\0") with --prefix or --from-key.
        let end = if prefix || from_key { vec![0] } else { vec![] };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), prefix, from_key) {
        (None, true, _) => oxcd_api::prefix_end(&key),
        (None, _, true) => vec![0],
        (None, _, _) => vec![],
        (Some(_), true, _) => {
            return fail(
                EXIT_BAD_ARGS,
                "unexpected endkey argument with --prefix flag",
            )
        }
        (Some(_), _, true) => {
            return fail(
                EXIT_BAD_ARGS,
                "unexpected endkey argument with --from-key flag",
            )
        }
        (Some(e), _, _) => e.as_bytes().to_vec(),
    };
    Ok((key, end))
}

pub async fn role(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    let args = args_of(sm);
    match sub {
        "add" => {
            need(
                &args,
                1,
                "role add command requires role name as its argument",
            )?;
            let req = AuthRoleAddRequest {
                name: args[0].clone(),
            };
            let r = call(g, |mut a| async move { a.role_add(req).await }).await?;
            print(
                g,
                out,
                format!("Role {} created\n", args[0]),
                json!({}),
                &r.header,
            );
        }
        "delete" => {
            need(
                &args,
                1,
                "role delete command requires role name as its argument",
            )?;
            let req = AuthRoleDeleteRequest {
                role: args[0].clone(),
            };
            let r = call(g, |mut a| async move { a.role_delete(req).await }).await?;
            print(
                g,
                out,
                format!("Role {} deleted\n", args[0]),
                json!({}),
                &r.header,
            );
        }
        "get" => {
            need(
                &args,
                1,
                "role get command requires role name as its argument",
            )?;
            let req = AuthRoleGetRequest {
                role: args[0].clone(),
            };
            let r = call(g, |mut a| async move { a.role_get(req).await }).await?;
            let perms: Vec<Value> = r
                .perm
                .iter()
                .map(|p| {
                    use base64::Engine;
                    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
                    json!({"permType": p.perm_type, "key": b64(&p.key), "range_end": b64(&p.range_end)})
                })
                .collect();
            print(
                g,
                out,
                role_text(&args[0], &r.perm),
                json!({"perm": perms}),
                &r.header,
            );
        }
        "list" => {
            need(&args, 0, "role list command requires no arguments")?;
            let req = AuthRoleListRequest {};
            let r = call(g, |mut a| async move { a.role_list(req).await }).await?;
            let text: String = r.roles.iter().map(|u| format!("{u}\n")).collect();
            print(g, out, text, json!({"roles": r.roles}), &r.header);
        }
        "grant-permission" => {
            if args.len() < 3 || args.len() > 4 {
                return fail(
                    EXIT_BAD_ARGS,
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                );
            }
            let perm_type = match args[1].to_lowercase().as_str() {
                "read" => PermType::Read,
                "write" => PermType::Write,
                "readwrite" => PermType::Readwrite,
                other => return fail(EXIT_BAD_ARGS, format!("invalid permission type {other}")),
            };
            let (key, range_end) =
                perm_range(&args[2..], flag(sm, "prefix"), flag(sm, "from-key"))?;
            let req = AuthRoleGrantPermissionRequest {
                name: args[0].clone(),
                perm: Some(Permission {
                    perm_type: perm_type as i32,
                    key,
                    range_end,
                }),
            };
            let r = call(g, |mut a| async move { a.role_grant_permission(req).await }).await?;
            print(
                g,
                out,
                format!("Role {} updated\n", args[0]),
                json!({}),
                &r.header,
            );
        }
        _ => {
            if args.len() < 2 || args.len() > 3 {
                return fail(
                    EXIT_BAD_ARGS,
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                );
            }
            let (key, range_end) =
                perm_range(&args[1..], flag(sm, "prefix"), flag(sm, "from-key"))?;
            let req = AuthRoleRevokePermissionRequest {
                role: args[0].clone(),
                key: key.clone(),
                range_end: range_end.clone(),
            };
            let r = call(
                g,
                |mut a| async move { a.role_revoke_permission(req).await },
            )
            .await?;
            let (k, e) = (
                String::from_utf8_lossy(&key).into_owned(),
                String::from_utf8_lossy(&range_end).into_owned(),
            );
            let line = if range_end.is_empty() {
                format!("Permission of key {k} is revoked from role {}\n", args[0])
            } else if range_end == [0] {
                format!(
                    "Permission of range [{k}, <open ended> is revoked from role {}\n",
                    args[0]
                )
            } else {
                format!(
                    "Permission of range [{k}, {e}) is revoked from role {}\n",
                    args[0]
                )
            };
            print(g, out, line, json!({}), &r.header);
        }
    }
    Ok(())
}
