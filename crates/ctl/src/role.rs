//! `role add|delete|get|list|grant-permission|revoke-permission` (etcdctl's
//! role_command.go).

use crate::auth::{call, need, print};
use crate::error::{fail, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, bool_flag, flag, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{ArgMatches, Command};
use oxcd_api::authpb::{permission::Type as PermType, Permission};
use oxcd_api::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest,
    AuthRoleListRequest, AuthRoleRevokePermissionRequest,
};
use serde_json::{json, Value};

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

/// etcdctl's `role get` text.
pub fn role_text(role: &str, perms: &[Permission]) -> String {
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
fn perm_range(args: &[String], prefix: bool, from_key: bool) -> Result<(Vec<u8>, Vec<u8>)> {
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

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
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
