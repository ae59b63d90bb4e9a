from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/agents/", include("devices.agent.urls")),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("orgs.api.urls")),
    path("api/v1/", include("devices.api.urls")),
]

handler404 = "rmm.errors.handler404"
handler500 = "rmm.errors.handler500"
