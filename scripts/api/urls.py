from rmm.api import Router
from scripts.api import views

router = Router()
router.register("scripts", views.ScriptViewSet, basename="script")
router.register("script-runs", views.ScriptRunViewSet, basename="script-run")
router.register("script-schedules", views.ScriptScheduleViewSet, basename="script-schedule")

urlpatterns = router.urls
