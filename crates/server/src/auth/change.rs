//! One auth request's effect on the auth state, as etcd's auth store makes it.

use oxcd_api::authpb::{Role, User, UserAddOptions};
use oxcd_api::oxcdpb::{internal_request::Request, AuthState};
use oxcd_api::EtcdError;

pub const ROOT: &str = "root";

pub(super) fn has_root_role(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

/// One auth request's effect on the state, as etcd's auth store makes it; whether anything
/// changed (and must be saved).
pub(super) fn change(s: &mut AuthState, req: &Request) -> Result<bool, EtcdError> {
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
