from devices.api import groups, telemetry, views
from rmm.api import Router, route

router = Router()
router.register("devices", views.DeviceViewSet, basename="device")
router.register("commands", views.CommandViewSet, basename="command")
router.register("groups", groups.GroupViewSet, basename="group")

urlpatterns = [
    route(
        r"devices/(?P<pk>[0-9a-fA-F-]{36})/telemetry",
        telemetry.DeviceTelemetryViewSet.as_view({"get": "retrieve"}),
        "device-telemetry",
    ),
    *router.urls,
]
