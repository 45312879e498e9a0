//! etcd's authentication and role-based access. Users (bcrypt-hashed passwords) and roles
//! (key-range permissions) live in the backend beside the members and change only through
//! raft, so every member holds the same state; each member checks requests against it as it
//! stands when the request is served or applied. Tokens are etcd's simple tokens (random,
//! assigned through raft, expiring when idle) or signed JWTs.

use crate::msg::Applied;
use oxcd_api::authpb::{permission::Type as PermType, Permission, Role, User, UserAddOptions};
use oxcd_api::etcdserverpb::{request_op, Compare, RequestOp, TxnRequest};
use oxcd_api::oxcdpb::{internal_request::Request, AuthState};
use oxcd_api::EtcdError;
use oxcd_mvcc::{Store, StoreError, WriteBatch};
use prost::Message;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

const KEY: &str = "auth";
pub const ROOT: &str = "root";

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

struct SimpleToken {
    user: String,
    last_used: Instant,
}

enum Tokens {
    Simple {
        ttl: Duration,
        live: Mutex<HashMap<String, SimpleToken>>,
    },
    Jwt(Box<Jwt>),
}

struct Jwt {
    algorithm: jsonwebtoken::Algorithm,
    signing: Option<jsonwebtoken::EncodingKey>,
    verifying: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

pub struct AuthStore {
    state: RwLock<AuthState>,
    tokens: Tokens,
    bcrypt_cost: u32,
}

/// `--auth-token` as etcd reads it: `simple`, or `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m`.
fn parse_tokens(option: &str, simple_ttl: Duration) -> Result<Tokens, String> {
    let mut parts = option.split(',');
    match parts.next().unwrap_or_default() {
        "simple" => Ok(Tokens::Simple {
            ttl: simple_ttl,
            live: Mutex::default(),
        }),
        "jwt" => {
            let mut opts = HashMap::new();
            for p in parts {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("auth: invalid auth options: {p:?}"))?;
                opts.insert(k, v);
            }
            let method = opts.get("sign-method").copied().unwrap_or("");
            let algorithm: jsonwebtoken::Algorithm = method
                .parse()
                .map_err(|_| "auth: invalid auth signature method".to_string())?;
            let ttl = match opts.get("ttl") {
                Some(t) => crate::duration::parse_go_duration(t)
                    .ok_or_else(|| format!("auth: invalid auth options: ttl={t}"))?,
                None => Duration::from_secs(300),
            };
            let read = |key: &str| -> Result<Option<Vec<u8>>, String> {
                match opts.get(key) {
                    Some(path) => std::fs::read(path)
                        .map(Some)
                        .map_err(|e| format!("auth: {key} {path}: {e}")),
                    None => Ok(None),
                }
            };
            use jsonwebtoken::{Algorithm::*, DecodingKey, EncodingKey};
            let bad = |e: jsonwebtoken::errors::Error| format!("auth: {method} key: {e}");
            let (signing, verifying) = match algorithm {
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
                    read("priv-key")?
                        .map(|k| EncodingKey::from_rsa_pem(&k))
                        .transpose()
                        .map_err(bad)?,
                    read("pub-key")?.map(|k| DecodingKey::from_rsa_pem(&k).map_err(bad)),
                ),
                ES256 | ES384 => (
                    read("priv-key")?
                        .map(|k| EncodingKey::from_ec_pem(&k))
                        .transpose()
                        .map_err(bad)?,
                    read("pub-key")?.map(|k| DecodingKey::from_ec_pem(&k).map_err(bad)),
                ),
                HS256 | HS384 | HS512 => {
                    let secret = read("priv-key")?.ok_or("auth: missing key data")?;
                    (
                        Some(EncodingKey::from_secret(&secret)),
                        Some(Ok(DecodingKey::from_secret(&secret))),
                    )
                }
                _ => return Err("auth: invalid auth signature method".into()),
            };
            let verifying = verifying.ok_or("auth: missing key data")??;
            Ok(Tokens::Jwt(Box::new(Jwt {
                algorithm,
                signing,
                verifying,
                ttl,
            })))
        }
        other => Err(format!("unknown token type: {other}")),
    }
}

fn decode_state(bytes: &[u8]) -> Result<AuthState, StoreError> {
    AuthState::decode(bytes)
        .map_err(|e| StoreError::Request(EtcdError::Internal(format!("auth record: {e}"))))
}

fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `[start, end)`, `None` meaning no end.
fn interval(key: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    match end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            (key.to_vec(), Some(next))
        }
        [0] => (key.to_vec(), None),
        e => (key.to_vec(), Some(e.to_vec())),
    }
}

/// Whether the union of `granted` covers the whole of `[key, end)` (one key when `end` is
/// empty, no end when it is "\0").
fn covered(mut granted: Vec<(Vec<u8>, Option<Vec<u8>>)>, key: &[u8], end: &[u8]) -> bool {
    let (start, end) = interval(key, end);
    granted.sort();
    let mut reach: Option<Vec<u8>> = Some(start);
    for (s, e) in granted {
        let Some(r) = &reach else { return true };
        if s > *r {
            break;
        }
        reach = match (&reach, e) {
            (_, None) => None,
            (Some(r), Some(e)) if e > *r => Some(e),
            (r, _) => r.clone(),
        };
    }
    match (&reach, &end) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(r), Some(e)) => r >= e,
    }
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
            tokens: parse_tokens(token_option, simple_ttl)?,
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

    pub fn hash_password(&self, password: &str) -> Result<String, EtcdError> {
        bcrypt::hash(password, self.bcrypt_cost)
            .map_err(|e| EtcdError::Internal(format!("failed to bcrypt hash password: {e}")))
    }

    /// A new simple token's random part (etcd: 16 letters, then "." and a number).
    pub fn simple_token_prefix() -> String {
        use rand::Rng;
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut rng = rand::thread_rng();
        (0..16)
            .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
            .collect()
    }

    /// A signed token for `user`; `None` with simple tokens (they are assigned through raft).
    pub fn sign_jwt(&self, user: &str) -> Option<Result<String, EtcdError>> {
        let Tokens::Jwt(jwt) = &self.tokens else {
            return None;
        };
        let Some(key) = &jwt.signing else {
            return Some(Err(EtcdError::Internal(
                "auth: token signing attempted with verify-only key".into(),
            )));
        };
        let claims = Claims {
            username: user.to_string(),
            revision: self.revision(),
            exp: now_unix() + jwt.ttl.as_secs(),
        };
        Some(
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jwt.algorithm), &claims, key)
                .map_err(|e| EtcdError::Internal(format!("auth: {e}"))),
        )
    }

    /// The user a token stands for, when auth is enabled and the token is live.
    pub fn info_from_token(&self, token: &str) -> Result<AuthInfo, EtcdError> {
        match &self.tokens {
            Tokens::Simple { ttl, live } => {
                let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                match live.get_mut(token) {
                    Some(t) if t.last_used.elapsed() < *ttl => {
                        t.last_used = Instant::now();
                        Ok(AuthInfo {
                            user: t.user.clone(),
                        })
                    }
                    Some(_) => {
                        live.remove(token);
                        Err(EtcdError::InvalidAuthToken)
                    }
                    None => Err(EtcdError::InvalidAuthToken),
                }
            }
            Tokens::Jwt(jwt) => {
                let mut validation = jsonwebtoken::Validation::new(jwt.algorithm);
                validation.leeway = 0;
                validation.required_spec_claims = ["exp".to_string()].into();
                jsonwebtoken::decode::<Claims>(token, &jwt.verifying, &validation)
                    .map(|d| AuthInfo {
                        user: d.claims.username,
                    })
                    .map_err(|_| EtcdError::InvalidAuthToken)
            }
        }
    }

    fn drop_tokens(&self, of_user: Option<&str>) {
        if let Tokens::Simple { live, .. } = &self.tokens {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|_, t| of_user.is_some_and(|u| t.user != u));
        }
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
            Request::Authenticate(a) => {
                if let Tokens::Simple { live, ttl } = &self.tokens {
                    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                    live.retain(|_, t| t.last_used.elapsed() < *ttl);
                    live.insert(
                        a.simple_token.clone(),
                        SimpleToken {
                            user: a.name.clone(),
                            last_used: Instant::now(),
                        },
                    );
                }
            }
            Request::AuthDisable(_) => self.drop_tokens(None),
            Request::UserDelete(u) => self.drop_tokens(Some(&u.name)),
            Request::UserChangePassword(u) => self.drop_tokens(Some(&u.name)),
            _ => {}
        }
        if changed {
            wb.set_cluster_record(KEY, &next.encode_to_vec())?;
            *guard = next;
        }
        Ok(Ok(Applied::Auth))
    }
}

/// One auth request's effect on the state, as etcd's auth store makes it; whether anything
/// changed (and must be saved).
fn change(s: &mut AuthState, req: &Request) -> Result<bool, EtcdError> {
    let user_at =
        |s: &AuthState, name: &str| s.users.iter().position(|u| u.name == name.as_bytes());
    let role_at =
        |s: &AuthState, name: &str| s.roles.iter().position(|r| r.name == name.as_bytes());
    match req {
        Request::AuthEnable(_) => {
            if s.enabled {
                return Ok(false);
            }
            let root = user_at(s, ROOT).ok_or(EtcdError::RootUserNotExist)?;
            if !has_root_role(&s.users[root]) {
                return Err(EtcdError::RootRoleNotExist);
            }
            s.enabled = true;
            tracing::info!("enabled authentication");
            return Ok(true);
        }
        Request::AuthDisable(_) => {
            if !s.enabled {
                return Ok(false);
            }
            s.enabled = false;
            tracing::info!("disabled authentication");
        }
        Request::Authenticate(a) => {
            if !s.enabled {
                return Err(EtcdError::AuthNotEnabled);
            }
            let i = user_at(s, &a.name).ok_or(EtcdError::AuthFailed)?;
            if s.users[i].options.is_some_and(|o| o.no_password) {
                return Err(EtcdError::AuthFailed);
            }
            return Ok(false);
        }
        Request::UserAdd(r) => {
            if r.name.is_empty() {
                return Err(EtcdError::UserEmpty);
            }
            if user_at(s, &r.name).is_some() {
                return Err(EtcdError::UserAlreadyExist);
            }
            let no_password = r.options.is_some_and(|o| o.no_password);
            s.users.push(User {
                name: r.name.clone().into_bytes(),
                password: if no_password {
                    vec![]
                } else {
                    r.hashed_password.clone().into_bytes()
                },
                roles: vec![],
                options: Some(UserAddOptions { no_password }),
            });
            s.users.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Request::UserDelete(r) => {
            if s.enabled && r.name == ROOT {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let i = user_at(s, &r.name).ok_or(EtcdError::UserNotFound)?;
            s.users.remove(i);
        }
        Request::UserChangePassword(r) => {
            let i = user_at(s, &r.name).ok_or(EtcdError::UserNotFound)?;
            s.users[i].password = r.hashed_password.clone().into_bytes();
        }
        Request::UserGrantRole(r) => {
            let i = user_at(s, &r.user).ok_or(EtcdError::UserNotFound)?;
            if r.role != ROOT && role_at(s, &r.role).is_none() {
                return Err(EtcdError::RoleNotFound);
            }
            let roles = &mut s.users[i].roles;
            if roles.contains(&r.role) {
                return Ok(false);
            }
            roles.push(r.role.clone());
            roles.sort();
        }
        Request::UserRevokeRole(r) => {
            if s.enabled && r.name == ROOT && r.role == ROOT {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let i = user_at(s, &r.name).ok_or(EtcdError::UserNotFound)?;
            let roles = &mut s.users[i].roles;
            let before = roles.len();
            roles.retain(|x| x != &r.role);
            if roles.len() == before {
                return Err(EtcdError::RoleNotGranted);
            }
        }
        Request::RoleAdd(r) => {
            if r.name.is_empty() {
                return Err(EtcdError::RoleEmpty);
            }
            if role_at(s, &r.name).is_some() {
                return Err(EtcdError::RoleAlreadyExist);
            }
            s.roles.push(Role {
                name: r.name.clone().into_bytes(),
                key_permission: vec![],
            });
            s.roles.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Request::RoleDelete(r) => {
            if s.enabled && r.role == ROOT {
                return Err(EtcdError::InvalidAuthMgmt);
            }
            let i = role_at(s, &r.role).ok_or(EtcdError::RoleNotFound)?;
            s.roles.remove(i);
            for u in &mut s.users {
                u.roles.retain(|x| x != &r.role);
            }
        }
        Request::RoleGrantPermission(r) => {
            let i = role_at(s, &r.name).ok_or(EtcdError::RoleNotFound)?;
            let perm = r.perm.clone().unwrap_or_default();
            let perms = &mut s.roles[i].key_permission;
            match perms
                .iter_mut()
                .find(|p| p.key == perm.key && p.range_end == perm.range_end)
            {
                Some(p) => p.perm_type = perm.perm_type,
                None => {
                    perms.push(perm);
                    perms.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
        }
        Request::RoleRevokePermission(r) => {
            let i = role_at(s, &r.role).ok_or(EtcdError::RoleNotFound)?;
            let perms = &mut s.roles[i].key_permission;
            let before = perms.len();
            perms.retain(|p| p.key != r.key || p.range_end != r.range_end);
            if perms.len() == before {
                return Err(EtcdError::PermissionNotGranted);
            }
        }
        _ => return Ok(false),
    }
    s.revision += 1;
    Ok(true)
}

/// Whether a request is one of the auth store's.
pub fn is_auth_request(req: &Request) -> bool {
    matches!(
        req,
        Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::Authenticate(_)
            | Request::UserAdd(_)
            | Request::UserDelete(_)
            | Request::UserChangePassword(_)
            | Request::UserGrantRole(_)
            | Request::UserRevokeRole(_)
            | Request::RoleAdd(_)
            | Request::RoleDelete(_)
            | Request::RoleGrantPermission(_)
            | Request::RoleRevokePermission(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        interval(key, end)
    }

    #[test]
    fn ranges_are_covered_only_by_what_was_granted() {
        let prefix = oxcd_api::prefix_end(b"app/");
        let granted = vec![perm(b"app/", &prefix), perm(b"single", b"")];
        assert!(covered(granted.clone(), b"app/x", b""));
        assert!(covered(granted.clone(), b"app/", &prefix));
        assert!(covered(granted.clone(), b"single", b""));
        assert!(!covered(granted.clone(), b"single2", b""));
        assert!(!covered(granted.clone(), b"app/", b"\0"));
        assert!(!covered(granted.clone(), b"ap", &prefix));
        assert!(!covered(granted, b"other", b""));
    }

    #[test]
    fn adjacent_grants_join_and_open_ends_reach_everything() {
        let granted = vec![perm(b"a", b"c"), perm(b"c", b"e")];
        assert!(covered(granted.clone(), b"a", b"e"));
        assert!(!covered(granted, b"a", b"f"));
        let everything = vec![perm(b"\0", b"\0")];
        assert!(covered(everything.clone(), b"\0", b"\0"));
        assert!(covered(everything, b"zzz", b""));
        assert!(!covered(vec![], b"a", b""));
    }
}
