//! The dashboard at /ui, in a real browser (Debian's chromium, headless): it shows the
//! members of a cluster and a key the test wrote; with auth on it asks for a user, and a user
//! without permissions sees no keys; --ui read-only leaves the member actions out.

use oxcd_api::etcdserverpb::auth_client::AuthClient;
use oxcd_api::etcdserverpb::AuthenticateRequest;
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::{bin, ctl, Kind, Server};
use std::process::Command;
use std::time::Duration;

/// The page's DOM once its scripts ran (chromium's virtual time lets them finish), without
/// the script's own text.
fn dom(url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium (Debian's package)");
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    page.split("<script>")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_members_and_a_key_in_a_browser() {
    let c = Cluster::start(Spec::new(3)).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    c.put(leader, "ui/greeting", "hello from the test")
        .await
        .expect("put");
    c.put(leader, "ui/greeting", "hello again")
        .await
        .expect("put");
    let page = dom(&format!("{}/ui/#prefix=ui/&key=ui/greeting", c.url(0)));
    assert_eq!(page.matches("<tr class=\"member\">").count(), 3, "{page}");
    for i in 0..3 {
        let id = format!("{:x}", c.member_id(i).await);
        assert!(page.contains(&id), "member {id} missing: {page}");
    }
    assert!(page.contains("<b>leader</b>"), "{page}");
    assert!(page.contains("healthy"), "{page}");
    assert!(
        page.contains(">ui/greeting<"),
        "the key in the tree: {page}"
    );
    assert!(page.contains("hello again"), "its value: {page}");
    assert!(
        page.contains("hello from the test"),
        "its earlier version: {page}"
    );
    assert!(
        page.contains("make leader") && page.contains("defragment"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_the_dashboard_asks_for_a_user_and_rbac_applies() {
    let server = Server::start(Kind::Oxcd, &["--ui=read-only"]);
    server.ready().await;
    let ep = server.endpoint();
    let oxcdctl = bin("oxcdctl");
    for step in [
        &["put", "secret/k", "classified"][..],
        &["user", "add", "root:rootpw"],
        &["user", "add", "alice:alicepw"],
        &["auth", "enable"],
    ] {
        let (out, err, code) = ctl(&oxcdctl, &ep, step);
        assert_eq!(code, 0, "{step:?}: {out}{err}");
    }
    let url = format!("{}/ui/", server.url());
    let anonymous = dom(&url);
    assert!(
        anonymous.contains("id=\"login\" style=\"display: block;\""),
        "no sign-in asked: {anonymous}"
    );
    assert!(!anonymous.contains("secret/"), "{anonymous}");
    let token = |name: &'static str, password: &'static str| {
        let url = server.url();
        async move {
            let ch = tonic::transport::Channel::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            AuthClient::new(ch)
                .authenticate(AuthenticateRequest {
                    name: name.into(),
                    password: password.into(),
                })
                .await
                .expect("authenticate")
                .into_inner()
                .token
        }
    };
    let alice = dom(&format!("{url}#token={}", token("alice", "alicepw").await));
    assert!(alice.contains("permission denied"), "{alice}");
    assert!(!alice.contains("secret/"), "alice saw keys: {alice}");
    let root = dom(&format!("{url}#token={}", token("root", "rootpw").await));
    assert!(root.contains("secret/"), "root sees the keys: {root}");
    assert!(root.contains("read-only"), "{root}");
    assert!(
        !root.contains("make leader") && !root.contains(">defragment<"),
        "{root}"
    );
}
