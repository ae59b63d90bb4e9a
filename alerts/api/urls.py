from alerts.api import views
from rmm.api import Router

router = Router()
router.register("alert-rules", views.AlertRuleViewSet, basename="alert-rule")
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("maintenance-windows", views.MaintenanceWindowViewSet, basename="maintenance-window")
router.register("notification-channels", views.NotificationChannelViewSet, basename="notification-channel")
router.register("notifications", views.NotificationViewSet, basename="notification")

urlpatterns = router.urls
