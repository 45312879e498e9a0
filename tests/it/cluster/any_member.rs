//! Every KV operation through every member of 1-, 3- and 5-member clusters; oxcdctl and the
//! real etcdctl print the same member and endpoint tables.

use oxcd_api::etcdserverpb::{compare, Compare, DeleteRangeRequest, TxnRequest};
use oxcd_tests::cluster::{Cluster, Spec};
use oxcd_tests::kv::put;
use oxcd_tests::{bin, ctl, system_bin};
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_works_through_any_member_of_1_3_and_5() {
    for size in [1, 3, 5] {
        let c = Cluster::start(Spec::new(size)).await;
        let mut cluster_ids = HashSet::new();
        let mut member_ids = HashSet::new();
        for i in 0..size {
            let key = format!("k{i}");
            c.put(i, &key, "v").await.expect("put");
            for j in 0..size {
                assert_eq!(c.get(j, &key).await.expect("get"), Some("v".into()));
            }
            let mut kv = c.kv(i).await;
            let txn = kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        key: key.clone().into(),
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
                        ..Default::default()
                    }],
                    success: vec![put(key.clone(), "w").into()],
                    failure: vec![],
                })
                .await
                .expect("txn")
                .into_inner();
            assert!(txn.succeeded);
            let del = kv
                .delete_range(DeleteRangeRequest {
                    key: key.clone().into(),
                    prev_kv: true,
                    ..Default::default()
                })
                .await
                .expect("delete")
                .into_inner();
            assert_eq!(del.deleted, 1);
            assert_eq!(del.prev_kvs[0].value, b"w");
            let h = del.header.expect("header");
            cluster_ids.insert(h.cluster_id);
            member_ids.insert(h.member_id);
        }
        assert_eq!(cluster_ids.len(), 1, "one cluster ID in every header");
        assert_eq!(member_ids.len(), size, "each member answers as itself");

        let mut last = 0;
        for n in 0..60 {
            last = c
                .put(n % size, &format!("load{n}"), &n.to_string())
                .await
                .expect("load put");
        }
        let hashes = c.hashes(last).await;
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "hashkv differs across members: {hashes:?}"
        );

        let eps = c.endpoints();
        let (out, err, code) = ctl(&bin("oxcdctl"), &eps, &["endpoint", "health", "--cluster"]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(err.matches("is healthy").count(), size, "{err}");
        if size == 3 {
            // The same output from oxcdctl and the real etcdctl against the same cluster.
            for args in [
                &["member", "list"][..],
                &["member", "list", "-w", "table"],
                &["member", "list", "-w", "json"],
                &["member", "list", "-w", "fields"],
                &["endpoint", "status", "--cluster", "-w", "table"],
                &["endpoint", "hashkv", "--cluster"],
                &["endpoint", "hashkv", "--cluster", "-w", "table"],
            ] {
                // One endpoint: etcdctl's balancer may pick any of several for the header.
                let one = c.url(1);
                let ours = ctl(&bin("oxcdctl"), &one, args);
                let theirs = ctl(&system_bin("etcdctl"), &one, args);
                assert_eq!(ours, theirs, "oxcdctl and etcdctl differ for {args:?}");
            }
            let (out, _, code) = ctl(
                &bin("oxcdctl"),
                &eps,
                &["endpoint", "status", "--cluster", "-w", "table"],
            );
            assert_eq!(code, 0);
            let leaders = out
                .lines()
                .filter(|l| l.starts_with("| http"))
                .filter(|l| l.split('|').nth(5).map(str::trim) == Some("true"))
                .count();
            assert_eq!(leaders, 1, "exactly one leader: {out}");
        }
    }
}
