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
