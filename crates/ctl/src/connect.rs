//! Reaching the cluster as etcdctl does: the first endpoint that answers, authenticated with
//! `--user`/`--password` (asking for the password when none is given).

use crate::error::{err, CtlError, Result, EXIT_BAD_CONNECTION};
use crate::flags::flag;
use crate::globals::Globals;
use clap::ArgMatches;
use oxcd_api::etcdserverpb::{AuthenticateRequest, MemberListRequest};
use oxcd_client::{with_timeout, Client};

/// Connects to the first endpoint that answers; failing to authenticate is ExitBadConnection.
pub async fn connect(g: &Globals) -> Result<Client> {
    let c = oxcd_client::connect(&g.endpoints, &g.dialer)
        .await
        .map_err(err)?;
    authenticate(g, c)
        .await
        .map_err(|msg| CtlError::new(EXIT_BAD_CONNECTION, msg))
}

/// Connects to one endpoint and, with --user, authenticates there.
pub async fn connect_to(g: &Globals, ep: &str) -> Result<Client, String> {
    let c = oxcd_client::connect_one(ep, &g.dialer).await?;
    authenticate(g, c).await
}

async fn authenticate(g: &Globals, c: Client) -> Result<Client, String> {
    if g.user.is_empty() {
        return Ok(c);
    }
    let (name, password) = match g.user.split_once(':') {
        Some((n, p)) if g.password.is_empty() => (n.to_string(), p.to_string()),
        _ if !g.password.is_empty() => (g.user.clone(), g.password.clone()),
        _ => (g.user.clone(), read_password("Password: ")?),
    };
    let resp = with_timeout(
        g.command_timeout,
        c.auth()
            .authenticate(AuthenticateRequest { name, password }),
    )
    .await?;
    c.with_token(&resp.token)
}

/// A password from the terminal (or stdin), as etcdctl asks for one.
pub fn read_password(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("failed to ask password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `--endpoints`, or with `--cluster` every client URL of the member list.
pub async fn cluster_endpoints(g: &Globals, m: &ArgMatches) -> Result<Vec<String>> {
    if !flag(m, "cluster") {
        return Ok(g.endpoints.clone());
    }
    let c = connect(g).await?;
    let resp = with_timeout(
        g.command_timeout,
        c.cluster().member_list(MemberListRequest {
            linearizable: false,
        }),
    )
    .await
    .map_err(|e| {
        err(format!(
            "failed to fetch endpoints from etcd cluster member list: {e}"
        ))
    })?;
    Ok(resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}
