//! `auth enable|disable|status` (etcdctl's auth_command.go), and what the `user` and `role`
//! commands share: one Auth call, etcdctl's text or the JSON answer.

use crate::connect::connect;
use crate::error::{err, fail, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, subcommand};
use crate::globals::Globals;
use crate::printer::Out;
use clap::{ArgMatches, Command};
use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthStatusRequest,
    AuthUserGrantRoleRequest, ResponseHeader,
};
use oxcd_client::{describe, with_timeout, Conn};
use serde_json::{json, Value};

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

/// Connects (authenticating with --user) and makes one Auth call under the command timeout.
pub async fn call<T, Fut>(g: &Globals, rpc: impl FnOnce(AuthClient<Conn>) -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let c = connect(g).await?;
    with_timeout(g.command_timeout, rpc(c.auth()))
        .await
        .map_err(err)
}

/// Prints etcdctl's text, or in json the header and `fields`.
pub fn print(
    g: &Globals,
    out: &mut Out,
    text: String,
    fields: Value,
    header: &Option<ResponseHeader>,
) {
    g.printer.auth(out, &text, fields, header);
}

pub fn need(args: &[String], n: usize, msg: &str) -> Result<()> {
    if args.len() != n {
        return fail(EXIT_BAD_ARGS, msg);
    }
    Ok(())
}

pub async fn auth(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    if !args_of(sm).is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            format!("auth {sub} command does not accept any arguments"),
        );
    }
    let c = connect(g).await?;
    let mut a = c.auth();
    let t = g.command_timeout;
    match sub {
        "enable" => {
            // As etcdctl: a root user without the root role gets it (and the role) first.
            loop {
                match a.auth_enable(AuthEnableRequest {}).await {
                    Ok(_) => break,
                    Err(s) if describe(&s) == oxcd_api::EtcdError::RootRoleNotExist.to_string() => {
                        let added = with_timeout(
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
                        with_timeout(
                            t,
                            a.user_grant_role(AuthUserGrantRoleRequest {
                                user: "root".into(),
                                role: "root".into(),
                            }),
                        )
                        .await
                        .map_err(err)?;
                    }
                    Err(s) => return Err(err(describe(&s))),
                }
            }
            out.line("Authentication Enabled");
        }
        "disable" => {
            with_timeout(t, a.auth_disable(AuthDisableRequest {}))
                .await
                .map_err(err)?;
            out.line("Authentication Disabled");
        }
        _ => {
            let r = with_timeout(t, a.auth_status(AuthStatusRequest {}))
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
