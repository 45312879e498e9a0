//! Connections to the endpoints (oxcd-client's).

pub use oxcd_client::conn::*;
