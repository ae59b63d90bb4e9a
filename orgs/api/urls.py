from orgs.api import views
from rmm.api import Router

router = Router()
router.register("partners", views.PartnerViewSet, basename="partner")
router.register("orgs", views.OrganizationViewSet, basename="organization")
router.register("sites", views.SiteViewSet, basename="site")
router.register("enrollment-keys", views.EnrollmentKeyViewSet, basename="enrollment-key")

urlpatterns = router.urls
