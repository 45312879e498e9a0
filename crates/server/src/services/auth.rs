//! etcd's Auth service. Changes go through raft (passwords hashed first, on the member that
//! took the request); reads are served from the local auth store after a ReadIndex barrier.
//! Everything but Authenticate and AuthStatus needs the root role once auth is enabled.

use crate::auth::{AuthInfo, AuthStore};
use crate::msg::Applied;
use crate::server::EtcdServer;
use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::*;
use oxcd_api::oxcdpb::{internal_request::Request as Internal, InternalAuthenticate};
use oxcd_api::EtcdError;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

impl AuthService {
    fn header(&self) -> Option<ResponseHeader> {
        self.server.header(self.server.store.current_revision())
    }

    /// Proposes an auth change for `who` and waits for it to be applied.
    async fn change(&self, who: Option<AuthInfo>, req: Internal) -> Result<(), Status> {
        match self.server.propose_for(who.as_ref(), req).await? {
            Applied::Auth => Ok(()),
            other => Err(Status::internal(format!(
                "oxcd: unexpected apply result {other:?}"
            ))),
        }
    }

    async fn hash(&self, password: String) -> Result<String, Status> {
        self.server
            .auth
            .password_work(move |auth| auth.hash_password(&password))
            .await
            .map_err(Status::from)
    }

    /// Reads see every change acknowledged before them.
    async fn read_barrier(&self) -> Result<&AuthStore, Status> {
        self.server.linearizable_read_barrier().await?;
        Ok(&self.server.auth)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        r: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::AuthEnable(r.into_inner()))
            .await?;
        Ok(Response::new(AuthEnableResponse {
            header: self.header(),
        }))
    }

    async fn auth_disable(
        &self,
        r: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::AuthDisable(r.into_inner()))
            .await?;
        Ok(Response::new(AuthDisableResponse {
            header: self.header(),
        }))
    }

    async fn auth_status(
        &self,
        _r: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let auth = self.read_barrier().await?;
        Ok(Response::new(AuthStatusResponse {
            header: self.header(),
            enabled: auth.is_enabled(),
            auth_revision: auth.revision(),
        }))
    }

    async fn authenticate(
        &self,
        r: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let AuthenticateRequest { name, password } = r.into_inner();
        let user = name.clone();
        self.server
            .auth
            .password_work(move |auth| auth.check_password(&user, &password))
            .await?;
        let token = match self.server.auth.sign_jwt(&name) {
            Some(signed) => signed?,
            None => {
                let token = format!(
                    "{}.{}",
                    AuthStore::simple_token_prefix(),
                    self.server.next_request_id()
                );
                let assign = InternalAuthenticate {
                    name,
                    simple_token: token.clone(),
                };
                self.change(None, Internal::Authenticate(assign)).await?;
                token
            }
        };
        Ok(Response::new(AuthenticateResponse {
            header: self.header(),
            token,
        }))
    }

    async fn user_add(
        &self,
        r: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        let mut req = r.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let no_password = req.options.is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        self.change(who, Internal::UserAdd(req)).await?;
        Ok(Response::new(AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        r: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = self.server.auth_info(&r)?;
        let name = r.into_inner().name;
        let auth = self.read_barrier().await?;
        if who.as_ref().is_none_or(|w| w.user != name) {
            auth.check_admin(who.as_ref())?;
        }
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles: auth.user_roles(&name)?,
        }))
    }

    async fn user_list(
        &self,
        r: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        self.server.require_admin(&r)?;
        let auth = self.read_barrier().await?;
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users: auth.user_names(),
        }))
    }

    async fn user_delete(
        &self,
        r: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::UserDelete(r.into_inner()))
            .await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: self.header(),
        }))
    }

    async fn user_change_password(
        &self,
        r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        let mut req = r.into_inner();
        if req.hashed_password.is_empty() {
            req.hashed_password = self.hash(std::mem::take(&mut req.password)).await?;
        }
        req.password.clear();
        self.change(who, Internal::UserChangePassword(req)).await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::UserGrantRole(r.into_inner()))
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: self.header(),
        }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::UserRevokeRole(r.into_inner()))
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: self.header(),
        }))
    }

    async fn role_add(
        &self,
        r: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::RoleAdd(r.into_inner())).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: self.header(),
        }))
    }

    async fn role_get(
        &self,
        r: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = self.server.auth_info(&r)?;
        let role = r.into_inner().role;
        let auth = self.read_barrier().await?;
        if !who.as_ref().is_some_and(|w| auth.has_role(&w.user, &role)) {
            auth.check_admin(who.as_ref())?;
        }
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm: auth.role_permissions(&role)?,
        }))
    }

    async fn role_list(
        &self,
        r: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        self.server.require_admin(&r)?;
        let auth = self.read_barrier().await?;
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles: auth.role_names(),
        }))
    }

    async fn role_delete(
        &self,
        r: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::RoleDelete(r.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: self.header(),
        }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        let req = r.into_inner();
        if req.perm.is_none() {
            return Err(Status::invalid_argument("etcdserver: permission not given"));
        }
        self.change(who, Internal::RoleGrantPermission(req)).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: self.header(),
        }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let who = self.server.require_admin(&r)?;
        self.change(who, Internal::RoleRevokePermission(r.into_inner()))
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: self.header(),
        }))
    }
}
