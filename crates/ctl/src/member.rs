//! `member add|remove|update|list|promote` and `move-leader` (etcdctl's member_command.go and
//! move_leader_command.go). Member IDs are given in hex.

use crate::connect::{connect, connect_to};
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_ARGS};
use crate::flags::{args, args_of, bool_flag, flag, string, subcommand};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::{MemberChange, Out};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest, StatusRequest,
};
use oxcd_api::MemberId;
use oxcd_client::with_timeout;

pub fn member_cmd() -> Command {
    let peer_urls = || Arg::new("peer-urls").long("peer-urls").default_value("");
    Command::new("member")
        .about("Membership related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("add")
                .about("Adds a member into the cluster")
                .arg(args())
                .arg(peer_urls().help("comma separated peer URLs for the new member."))
                .arg(bool_flag(
                    "learner",
                    "indicates if the new member is raft learner",
                )),
        )
        .subcommand(
            Command::new("remove")
                .about("Removes a member from the cluster")
                .arg(args()),
        )
        .subcommand(
            Command::new("update")
                .about("Updates a member in the cluster")
                .arg(args())
                .arg(peer_urls().help("comma separated peer URLs for the updated member.")),
        )
        .subcommand(Command::new("list").about("Lists all members in the cluster"))
        .subcommand(
            Command::new("promote")
                .about("Promotes a non-voting member in the cluster")
                .arg(args()),
        )
}

pub fn move_leader_cmd() -> Command {
    Command::new("move-leader")
        .about("Transfers leadership to another etcd cluster member.")
        .arg(args())
}

/// A member ID in hex, with Go's strconv.ParseUint error text (etcdctl shows it).
fn parse_member_id(s: &str) -> Result<MemberId, String> {
    u64::from_str_radix(s, 16)
        .map(MemberId)
        .map_err(|e| gofmt::strconv_error("ParseUint", s, &e))
}

fn member_id_arg(m: &ArgMatches) -> Result<MemberId> {
    let args = args_of(m);
    if args.len() != 1 {
        return fail(EXIT_BAD_ARGS, "member ID is not provided");
    }
    parse_member_id(&args[0]).map_err(|e| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

fn peer_urls_arg(m: &ArgMatches) -> Result<Vec<String>> {
    let urls = string(m, "peer-urls");
    if urls.is_empty() {
        return fail(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    Ok(urls.split(',').map(str::to_string).collect())
}

pub async fn run(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let (sub, sm) = subcommand(m)?;
    match sub {
        "list" => {
            let c = connect(g).await?;
            let req = MemberListRequest {
                linearizable: false,
            };
            let resp = with_timeout(g.command_timeout, c.cluster().member_list(req))
                .await
                .map_err(err)?;
            g.printer.member_list(out, &resp.header, &resp.members)
        }
        "add" => add(g, sm, out).await,
        "remove" => {
            let id = member_id_arg(sm)?;
            let c = connect(g).await?;
            let req = MemberRemoveRequest { id: id.get() };
            let resp = with_timeout(g.command_timeout, c.cluster().member_remove(req))
                .await
                .map_err(err)?;
            g.printer.member_changed(
                out,
                &changed("removed from", id, &resp.header, &resp.members),
            )
        }
        "update" => {
            let id = member_id_arg(sm)?;
            let urls = peer_urls_arg(sm)?;
            let c = connect(g).await?;
            let req = MemberUpdateRequest {
                id: id.get(),
                peer_ur_ls: urls,
            };
            let resp = with_timeout(g.command_timeout, c.cluster().member_update(req))
                .await
                .map_err(err)?;
            g.printer
                .member_changed(out, &changed("updated in", id, &resp.header, &resp.members))
        }
        "promote" => {
            let id = member_id_arg(sm)?;
            let c = connect(g).await?;
            let req = MemberPromoteRequest { id: id.get() };
            let resp = with_timeout(g.command_timeout, c.cluster().member_promote(req))
                .await
                .map_err(err)?;
            g.printer.member_changed(
                out,
                &changed("promoted in", id, &resp.header, &resp.members),
            )
        }
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

fn changed<'a>(
    what: &'a str,
    id: MemberId,
    header: &'a Option<oxcd_api::etcdserverpb::ResponseHeader>,
    members: &'a [oxcd_api::etcdserverpb::Member],
) -> MemberChange<'a> {
    MemberChange {
        what,
        id,
        header,
        member: None,
        members,
    }
}

async fn add(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let args = args_of(m);
    if args.is_empty() {
        return fail(EXIT_BAD_ARGS, "member name not provided");
    }
    if args.len() > 1 {
        let mut msg = String::from("too many arguments");
        for a in &args {
            if a.to_lowercase().starts_with("http") {
                msg.push_str(&format!(", did you mean --peer-urls={a}"));
            }
        }
        return fail(EXIT_BAD_ARGS, msg);
    }
    let urls = peer_urls_arg(m)?;
    let c = connect(g).await?;
    let req = MemberAddRequest {
        peer_ur_ls: urls,
        is_learner: flag(m, "learner"),
    };
    let resp = with_timeout(g.command_timeout, c.cluster().member_add(req))
        .await
        .map_err(err)?;
    g.printer
        .member_add(out, &resp, &args[0], &string(m, "peer-urls"))
}

/// As etcdctl: find the leader among --endpoints, and ask it to hand over.
pub async fn move_leader(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let args = args_of(m);
    if args.len() != 1 {
        return fail(EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    }
    let target = parse_member_id(&args[0]).map_err(|e| CtlError::new(EXIT_BAD_ARGS, e))?;
    for ep in &g.endpoints {
        let c = connect_to(g, ep).await.map_err(err)?;
        let status = with_timeout(g.command_timeout, c.maintenance().status(StatusRequest {}))
            .await
            .map_err(err)?;
        let member = status.header.map_or(0, |h| h.member_id);
        if member != status.leader {
            continue;
        }
        let req = MoveLeaderRequest {
            target_id: target.get(),
        };
        let resp = with_timeout(g.command_timeout, c.maintenance().move_leader(req))
            .await
            .map_err(err)?;
        let leader = MemberId(status.leader);
        return g.printer.move_leader(out, leader, target, &resp.header);
    }
    fail(
        EXIT_BAD_ARGS,
        format!("no leader endpoint given at [{}]", g.endpoints.join(" ")),
    )
}
