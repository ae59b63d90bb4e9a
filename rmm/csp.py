"""The Content-Security-Policy of every HTML page the server renders: the admin, the API docs (/api/docs/), error
pages.

Django 5.2 has no CSP of its own (6.0 adds ``ContentSecurityPolicyMiddleware``; move to it then). One fixed policy
for every page needs no nonces and no per-view decorators, so it is this small middleware rather than django-csp,
whose strengths (nonces, per-view policies, report-only mixes) we would not use.

The policy (settings.CONTENT_SECURITY_POLICY):

- scripts only from this server: the admin has no inline script, and the docs page is drf-spectacular's
  SpectacularSwaggerSplitView, which loads its initialisation script from ``/api/docs/?script`` instead of inlining
  it (Swagger UI's files come from drf_spectacular_sidecar, also served here);
- styles from this server plus inline ones: the admin's change list and Swagger UI's page carry small inline
  ``<style>`` blocks; an inline style cannot run code, scripts are what the policy guards;
- images from here and ``data:`` (Swagger UI's icons), fetches only to this server (the docs page loads
  /api/schema/ and "Try it out" calls the API), no plugins, no ``<base>``, forms post only here, and no framing
  (as X-Frame-Options: DENY already says).

JSON answers do not get the header: a browser does not render them, and the agents' hot path stays as measured.
"""

from __future__ import annotations

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Adds settings.CONTENT_SECURITY_POLICY to HTML responses that do not set a policy of their own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if (
            self.policy
            and response.get("Content-Type", "").startswith("text/html")
            and "Content-Security-Policy" not in response
        ):
            response["Content-Security-Policy"] = self.policy
        return response
