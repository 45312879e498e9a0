//! How anything reaches a cluster: endpoints and failover, dialing (TCP from a chosen source,
//! TLS for https URLs), client TLS settings and the auth-token interceptor. oxcdctl,
//! oxcd-bench, the tests and the server (where it acts as a client) all dial through here.

pub mod conn;
pub mod dial;
pub mod tls;

pub use conn::{
    connect, connect_one, describe, endpoint_uri, http_get, with_timeout, AddToken, Client, Conn,
    Dialer,
};
pub use tls::ClientTls;
