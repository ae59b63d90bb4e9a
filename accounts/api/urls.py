from accounts.api import access, views
from rmm.api import Router, route

router = Router()
router.register("api-tokens", views.ApiTokenViewSet, basename="api-token")
router.register("permissions", access.PermissionViewSet, basename="permission")
router.register("roles", access.RoleViewSet, basename="role")
router.register("users", access.UserViewSet, basename="user")
router.register("partner-users", access.PartnerUserViewSet, basename="partner-user")
router.register("organization-users", access.OrganizationUserViewSet, basename="organization-user")
router.register("audit-log", access.AuditLogViewSet, basename="audit-log")

urlpatterns = [
    route("auth/login", views.LoginView.as_view(), "auth-login"),
    route("auth/logout", views.LogoutView.as_view(), "auth-logout"),
    route("auth/me", views.MeView.as_view(), "auth-me"),
    route("auth/mfa/setup", views.MfaSetupView.as_view(), "auth-mfa-setup"),
    route("auth/mfa/enable", views.MfaEnableView.as_view(), "auth-mfa-enable"),
    route("auth/mfa/disable", views.MfaDisableView.as_view(), "auth-mfa-disable"),
    route("auth/mfa/recovery-codes", views.MfaRecoveryCodesView.as_view(), "auth-mfa-recovery-codes"),
    *router.urls,
]
