//! etcd's v3 wire protocol (compiled from `proto/` at build time) and the error vocabulary
//! shared by server and clients.

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod oxcdpb {
    tonic::include_proto!("oxcdpb");
}

pub mod error;
pub use error::EtcdError;

/// The end of the key range holding every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`); "\0", meaning no end, when no such bound exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}
