//! Services whose every method comes with a later issue (Auth). They answer `Unimplemented` with
//! the method's name, never a fake success.

use crate::services::maintenance::not_yet;
use oxcd_api::etcdserverpb::auth_server::Auth;
use oxcd_api::etcdserverpb::*;
use tonic::{Request, Response, Status};

pub struct AuthService;

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        _r: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        Err(not_yet("Auth.AuthEnable", "security issue"))
    }

    async fn auth_disable(
        &self,
        _r: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        Err(not_yet("Auth.AuthDisable", "security issue"))
    }

    async fn auth_status(
        &self,
        _r: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        Err(not_yet("Auth.AuthStatus", "security issue"))
    }

    async fn authenticate(
        &self,
        _r: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Err(not_yet("Auth.Authenticate", "security issue"))
    }

    async fn user_add(
        &self,
        _r: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        Err(not_yet("Auth.UserAdd", "security issue"))
    }

    async fn user_get(
        &self,
        _r: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        Err(not_yet("Auth.UserGet", "security issue"))
    }

    async fn user_list(
        &self,
        _r: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        Err(not_yet("Auth.UserList", "security issue"))
    }

    async fn user_delete(
        &self,
        _r: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        Err(not_yet("Auth.UserDelete", "security issue"))
    }

    async fn user_change_password(
        &self,
        _r: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        Err(not_yet("Auth.UserChangePassword", "security issue"))
    }

    async fn user_grant_role(
        &self,
        _r: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        Err(not_yet("Auth.UserGrantRole", "security issue"))
    }

    async fn user_revoke_role(
        &self,
        _r: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        Err(not_yet("Auth.UserRevokeRole", "security issue"))
    }

    async fn role_add(
        &self,
        _r: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        Err(not_yet("Auth.RoleAdd", "security issue"))
    }

    async fn role_get(
        &self,
        _r: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        Err(not_yet("Auth.RoleGet", "security issue"))
    }

    async fn role_list(
        &self,
        _r: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        Err(not_yet("Auth.RoleList", "security issue"))
    }

    async fn role_delete(
        &self,
        _r: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        Err(not_yet("Auth.RoleDelete", "security issue"))
    }

    async fn role_grant_permission(
        &self,
        _r: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        Err(not_yet("Auth.RoleGrantPermission", "security issue"))
    }

    async fn role_revoke_permission(
        &self,
        _r: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        Err(not_yet("Auth.RoleRevokePermission", "security issue"))
    }
}
