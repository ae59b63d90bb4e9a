from devices.api import views
from rmm.api import Router

router = Router()
router.register("devices", views.DeviceViewSet, basename="device")
router.register("commands", views.CommandViewSet, basename="command")

urlpatterns = router.urls
