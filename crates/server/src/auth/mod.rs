//! etcd's authentication and role-based access. Users (bcrypt-hashed passwords) and roles
//! (key-range permissions) live in the backend beside the members and change only through
//! raft, so every member holds the same state; each member checks requests against it as it
//! stands when the request is served or applied. Tokens are etcd's simple tokens (random,
//! assigned through raft, expiring when idle) or signed JWTs.

mod change;
mod perms;
mod tokens;

use crate::msg::Applied;
use change::{change, has_root_role};
use oxcd_api::authpb::{permission::Type as PermType, Permission, User};
use oxcd_api::etcdserverpb::{request_op, Compare, RequestOp, TxnRequest};
use oxcd_api::oxcdpb::{internal_request::Request, AuthState};
use oxcd_api::EtcdError;
use oxcd_mvcc::{Store, StoreError, WriteBatch};
use perms::{covered, interval};
use prost::Message;
use std::sync::RwLock;
use std::time::Duration;
use tokens::Tokens;

pub use change::{is_auth_request, ROOT};

const KEY: &str = oxcd_storage::records::AUTH;

/// The token a client request carries: etcd's `token` metadata, or `authorization` as its
/// gateway sends it.
pub fn request_token(
    md: &tonic::metadata::MetadataMap,
) -> Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    md.get("token").or_else(|| md.get("authorization"))
}

/// Who a request comes from, once its token (or certificate) was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
}

pub struct AuthStore {
    state: RwLock<AuthState>,
    tokens: Tokens,
    bcrypt_cost: u32,
    /// Password hashes and checks (bcrypt, deliberately slow) run a few at a time, one per
    /// core: a flood of logins queues here instead of taking a thread each.
    password_work: std::sync::Arc<tokio::sync::Semaphore>,
}

fn decode_state(bytes: &[u8]) -> Result<AuthState, StoreError> {
    AuthState::decode(bytes).map_err(|e| oxcd_mvcc::corrupt_record("auth", e))
}

impl AuthStore {
    pub fn load(
        store: &Store,
        token_option: &str,
        simple_ttl: Duration,
        bcrypt_cost: u32,
    ) -> Result<AuthStore, String> {
        let auth = AuthStore {
            state: RwLock::new(AuthState {
                revision: 1,
                ..Default::default()
            }),
            tokens: Tokens::parse(token_option, simple_ttl)?,
            password_work: std::sync::Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            bcrypt_cost,
        };
        auth.reload(store).map_err(|e| e.to_string())?;
        Ok(auth)
    }

    /// Takes on what the backend holds (at start, and after a snapshot replaced it).
    pub fn reload(&self, store: &Store) -> Result<(), StoreError> {
        if let Some(bytes) = store.cluster_record(KEY)? {
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = decode_state(&bytes)?;
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AuthState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_enabled(&self) -> bool {
        self.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    fn user(&self, name: &str) -> Option<User> {
        self.read()
            .users
            .iter()
            .find(|u| u.name == name.as_bytes())
            .cloned()
    }

    /// etcd's CheckPassword: slow (bcrypt), so callers run it off the async threads.
    pub fn check_password(&self, name: &str, password: &str) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Err(EtcdError::AuthNotEnabled);
        }
        let user = self.user(name).ok_or(EtcdError::AuthFailed)?;
        if user.options.is_some_and(|o| o.no_password) {
            return Err(EtcdError::AuthFailed);
        }
        let hash = String::from_utf8_lossy(&user.password);
        match bcrypt::verify(password, &hash) {
            Ok(true) => Ok(()),
            _ => {
                tracing::info!(user_name = name, "invalid password");
                Err(EtcdError::AuthFailed)
            }
        }
    }

    /// Runs `work` (a password hash or check) on the blocking pool once a slot is free.
    pub async fn password_work<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        work: impl FnOnce(&AuthStore) -> Result<T, EtcdError> + Send + 'static,
    ) -> Result<T, EtcdError> {
        let auth = self.clone();
        crate::blocking::run(Some(&self.password_work), move || work(&auth))
            .await
            .map_err(EtcdError::Internal)?
    }

    pub fn hash_password(&self, password: &str) -> Result<String, EtcdError> {
        bcrypt::hash(password, self.bcrypt_cost)
            .map_err(|e| EtcdError::Internal(format!("failed to bcrypt hash password: {e}")))
    }

    /// A new simple token's random part (etcd: 16 letters, then "." and a number).
    pub fn simple_token_prefix() -> String {
        tokens::simple_token_prefix()
    }

    /// A signed token for `user`; `None` with simple tokens (they are assigned through raft).
    pub fn sign_jwt(&self, user: &str) -> Option<Result<String, EtcdError>> {
        self.tokens.sign(user, self.revision())
    }

    /// The user a token stands for, when auth is enabled and the token is live.
    pub fn info_from_token(&self, token: &str) -> Result<AuthInfo, EtcdError> {
        self.tokens.user_of(token).map(|user| AuthInfo { user })
    }

    /// The caller's name when auth is enabled (`None` when it is not: nothing to check);
    /// etcd's "user name is empty" when nobody is named.
    fn caller<'a>(&self, info: Option<&'a AuthInfo>) -> Result<Option<&'a str>, EtcdError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        match info.map(|i| i.user.as_str()) {
            Some(name) if !name.is_empty() => Ok(Some(name)),
            _ => Err(EtcdError::UserEmpty),
        }
    }

    /// etcd's IsAdminPermitted: the user must hold the root role.
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<(), EtcdError> {
        let Some(name) = self.caller(info)? else {
            return Ok(());
        };
        let user = self.user(name).ok_or(EtcdError::UserNotFound)?;
        if !has_root_role(&user) {
            return Err(EtcdError::PermissionDenied);
        }
        Ok(())
    }

    /// Any known user (for calls etcd lets every authenticated user make).
    pub fn check_user(&self, info: Option<&AuthInfo>) -> Result<(), EtcdError> {
        let Some(name) = self.caller(info)? else {
            return Ok(());
        };
        self.user(name)
            .map(|_| ())
            .ok_or(EtcdError::PermissionDenied)
    }

    /// etcd's isOpPermitted: root may do anything; others need a role whose permissions of
    /// the type cover the whole range.
    pub fn check_range(
        &self,
        info: Option<&AuthInfo>,
        (key, end): (&[u8], &[u8]),
        wanted: PermType,
    ) -> Result<(), EtcdError> {
        let Some(name) = self.caller(info)? else {
            return Ok(());
        };
        let state = self.read();
        let Some(user) = state.users.iter().find(|u| u.name == name.as_bytes()) else {
            return Err(EtcdError::PermissionDenied);
        };
        if has_root_role(user) {
            return Ok(());
        }
        let granted: Vec<_> = state
            .roles
            .iter()
            .filter(|r| user.roles.iter().any(|n| n.as_bytes() == r.name))
            .flat_map(|r| &r.key_permission)
            .filter(|p| p.perm_type == wanted as i32 || p.perm_type == PermType::Readwrite as i32)
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        if covered(granted, key, end) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub fn check_txn(&self, info: Option<&AuthInfo>, txn: &TxnRequest) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        for Compare { key, range_end, .. } in &txn.compare {
            self.check_read(info, key, range_end)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            self.check_op(info, op)?;
        }
        Ok(())
    }

    /// A read of `[key, end)` (one key when `end` is empty).
    pub fn check_read(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        end: &[u8],
    ) -> Result<(), EtcdError> {
        self.check_range(info, (key, end), PermType::Read)
    }

    /// A put needs write permission on the key, and read permission too for its prev_kv.
    pub fn check_put(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        prev_kv: bool,
    ) -> Result<(), EtcdError> {
        let one: (&[u8], &[u8]) = (key, &[]);
        self.check_range(info, one, PermType::Write)?;
        if prev_kv {
            self.check_range(info, one, PermType::Read)?;
        }
        Ok(())
    }

    pub fn check_delete(
        &self,
        info: Option<&AuthInfo>,
        key: &[u8],
        end: &[u8],
        prev_kv: bool,
    ) -> Result<(), EtcdError> {
        let range = (key, end);
        self.check_range(info, range, PermType::Write)?;
        if prev_kv {
            self.check_range(info, range, PermType::Read)?;
        }
        Ok(())
    }

    fn check_op(&self, info: Option<&AuthInfo>, op: &RequestOp) -> Result<(), EtcdError> {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                self.check_read(info, &r.key, &r.range_end)
            }
            Some(request_op::Request::RequestPut(p)) => self.check_put(info, &p.key, p.prev_kv),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                self.check_delete(info, &d.key, &d.range_end, d.prev_kv)
            }
            Some(request_op::Request::RequestTxn(t)) => self.check_txn(info, t),
            None => Ok(()),
        }
    }

    /// etcd's checkLeasePuts: revoking a lease, or attaching one more key to it, needs write
    /// permission on every key the lease holds when the request is applied. `keys_of` gives
    /// a lease's keys.
    pub fn check_lease_puts(
        &self,
        user: &str,
        req: &Request,
        mut keys_of: impl FnMut(i64) -> Result<Vec<Vec<u8>>, oxcd_mvcc::StoreError>,
    ) -> Result<Result<(), EtcdError>, oxcd_mvcc::StoreError> {
        if !self.is_enabled() {
            return Ok(Ok(()));
        }
        let info = AuthInfo {
            user: user.to_string(),
        };
        let mut leases = Vec::new();
        match req {
            Request::Put(p) => leases.push(p.lease),
            Request::LeaseRevoke(r) => leases.push(r.id),
            Request::Txn(t) => txn_leases(t, &mut leases),
            _ => {}
        }
        for id in leases.into_iter().filter(|id| *id != 0) {
            for key in keys_of(id)? {
                if let Err(refusal) = self.check_put(Some(&info), &key, false) {
                    return Ok(Err(refusal));
                }
            }
        }
        Ok(Ok(()))
    }

    /// The check a client's request gets again when it is applied, against the state as it
    /// is then (a permission may have been revoked since the member accepted it).
    pub fn check_applied(&self, user: &str, req: &Request) -> Result<(), EtcdError> {
        if !self.is_enabled() {
            return Ok(());
        }
        let info = Some(AuthInfo {
            user: user.to_string(),
        });
        let info = info.as_ref();
        match req {
            Request::Put(p) => self.check_put(info, &p.key, p.prev_kv),
            Request::DeleteRange(d) => self.check_delete(info, &d.key, &d.range_end, d.prev_kv),
            Request::Txn(t) => self.check_txn(info, t),
            Request::Compaction(_) | Request::LeaseGrant(_) | Request::LeaseRevoke(_) => {
                self.check_user(info)
            }
            Request::Authenticate(_) => Ok(()),
            _ => self.check_admin(info),
        }
    }

    pub fn user_roles(&self, name: &str) -> Result<Vec<String>, EtcdError> {
        self.user(name)
            .map(|u| u.roles)
            .ok_or(EtcdError::UserNotFound)
    }

    pub fn user_names(&self) -> Vec<String> {
        self.read()
            .users
            .iter()
            .map(|u| String::from_utf8_lossy(&u.name).into_owned())
            .collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.read()
            .roles
            .iter()
            .map(|r| String::from_utf8_lossy(&r.name).into_owned())
            .collect()
    }

    pub fn role_permissions(&self, name: &str) -> Result<Vec<Permission>, EtcdError> {
        self.read()
            .roles
            .iter()
            .find(|r| r.name == name.as_bytes())
            .map(|r| r.key_permission.clone())
            .ok_or(EtcdError::RoleNotFound)
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.user(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// Applies a committed auth request. Refusals are `Ok(Err(..))`.
    pub fn apply(
        &self,
        wb: &mut WriteBatch<'_>,
        req: &Request,
    ) -> Result<Result<Applied, EtcdError>, StoreError> {
        let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        let changed = match change(&mut next, req) {
            Ok(changed) => changed,
            Err(e) => return Ok(Err(e)),
        };
        match req {
            Request::Authenticate(a) => self.tokens.assign(&a.simple_token, &a.name),
            Request::AuthDisable(_) => self.tokens.drop_of(None),
            Request::UserDelete(u) => self.tokens.drop_of(Some(&u.name)),
            Request::UserChangePassword(u) => self.tokens.drop_of(Some(&u.name)),
            _ => {}
        }
        if changed {
            wb.set_cluster_record(KEY, &next.encode_to_vec())?;
            *guard = next;
        }
        Ok(Ok(Applied::Auth))
    }
}

/// The leases a transaction's puts attach keys to, nested transactions included.
fn txn_leases(txn: &TxnRequest, out: &mut Vec<i64>) {
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.push(p.lease),
            Some(request_op::Request::RequestTxn(t)) => txn_leases(t, out),
            _ => {}
        }
    }
}
