//! etcd's client-visible errors: one enum, mapped to etcd's gRPC code and exact message here
//! and nowhere else.

use tonic::{Code, Status};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess,
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    /// gRPC's refusal of a response over the send limit; `size` is what had been gathered
    /// when the read stopped, not the whole response.
    #[error("grpc: trying to send message larger than max ({size} vs. {max})")]
    ResponseTooLarge { size: usize, max: usize },
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
}

impl EtcdError {
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey
            | KeyNotFound
            | ValueProvided
            | LeaseProvided
            | TooManyOps
            | DuplicateKey
            | RequestTooLarge
            | WrongDowngradeVersionFormat
            | InvalidDowngradeTargetVersion => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            LeaseExist | DowngradeInProcess | NoInflightDowngrade => Code::FailedPrecondition,
            NoSpace | TooManyRequests | ResponseTooLarge { .. } => Code::ResourceExhausted,
            LeaseNotFound => Code::NotFound,
            NoLeader
            | Stopped
            | Timeout
            | LeaderChanged
            | NotSupportedForLearner
            | LeaderTransferTimeout
            | Unhealthy => Code::Unavailable,
            MemberExist
            | PeerUrlExist
            | MemberNotEnoughStarted
            | MemberNotLearner
            | LearnerNotReady
            | TooManyLearners
            | NotLeader
            | BadLeaderTransferee => Code::FailedPrecondition,
            MemberBadUrls => Code::InvalidArgument,
            MemberNotFound => Code::NotFound,
            Corrupt => Code::DataLoss,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => Code::FailedPrecondition,
            UserEmpty | RoleEmpty | AuthFailed | InvalidAuthMgmt => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            Unimplemented(_) => Code::Unimplemented,
            Internal(_) => Code::Internal,
        }
    }

    /// The error a client sees for a status from an etcd-compatible server, if it is one of
    /// ours; clients use it to print etcd's words.
    pub fn from_status(status: &Status) -> Option<EtcdError> {
        use EtcdError::*;
        [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TooManyOps,
            DuplicateKey,
            Compacted,
            FutureRev,
            NoSpace,
            LeaseNotFound,
            LeaseExist,
            LeaseTtlTooLarge,
            RequestTooLarge,
            NoLeader,
            Stopped,
            Timeout,
            Corrupt,
            MemberExist,
            PeerUrlExist,
            MemberNotEnoughStarted,
            MemberBadUrls,
            MemberNotFound,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            NotLeader,
            LeaderChanged,
            NotSupportedForLearner,
            BadLeaderTransferee,
            LeaderTransferTimeout,
            Unhealthy,
            RootUserNotExist,
            RootRoleNotExist,
            UserAlreadyExist,
            UserEmpty,
            UserNotFound,
            RoleAlreadyExist,
            RoleNotFound,
            RoleEmpty,
            AuthFailed,
            PermissionDenied,
            RoleNotGranted,
            PermissionNotGranted,
            AuthNotEnabled,
            InvalidAuthToken,
            TooManyRequests,
            InvalidAuthMgmt,
            WrongDowngradeVersionFormat,
            InvalidDowngradeTargetVersion,
            DowngradeInProcess,
            NoInflightDowngrade,
        ]
        .into_iter()
        .find(|e| e.code() == status.code() && e.to_string() == status.message())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_for_etcd_errors() {
        let st: Status = EtcdError::Compacted.into();
        assert_eq!(st.code(), Code::OutOfRange);
        assert_eq!(
            st.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(EtcdError::from_status(&st), Some(EtcdError::Compacted));
        assert_eq!(
            EtcdError::from_status(&Status::new(Code::Internal, "boom")),
            None
        );
    }
}
