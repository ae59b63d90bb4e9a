from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from rmm import errors

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/agents/", include("devices.agent_api.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("orgs.api.urls")),
    path("api/v1/", include("devices.api.urls")),
    path("api/v1/", include("alerts.api.urls")),
    path("api/v1/", include("scripts.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from /api/docs/?script, not inline: the page's CSP allows no
    # inline script (rmm/csp.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Any other path under /api/ is a 404 in the error shape, also with DEBUG on (`make run`), where Django would
    # otherwise answer its HTML debug page instead of handler404.
    re_path(r"^api/", errors.api_path_not_found),
]

handler400 = "rmm.errors.handler400"
handler403 = "rmm.errors.handler403"
handler404 = "rmm.errors.handler404"
handler500 = "rmm.errors.handler500"
