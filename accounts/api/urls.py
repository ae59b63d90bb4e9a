from accounts.api import views
from rmm.api import Router, route

router = Router()
router.register("api-tokens", views.ApiTokenViewSet, basename="api-token")

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
