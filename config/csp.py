"""The Content-Security-Policy header (django-csp), with one page-specific exception.

``settings.CONTENT_SECURITY_POLICY`` allows scripts and styles from this site
only and no inline code. Three pages show the digest email itself, whose
styles are inlined for mail clients (``style`` attributes and a ``<style>``
block): "view in browser" and the admin's two previews of an email. Those
pages alone may use inline styles; scripts stay forbidden there as everywhere.
"""

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware as BaseCSPMiddleware

INLINE_STYLE_VIEWS = {
    "digest:view_in_browser",
    "admin:digest_delivery_preview",
    "admin:digest_delivery_email",
}


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only=report_only)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name in INLINE_STYLE_VIEWS and parts.update is None:
            parts.update = {"style-src": [UNSAFE_INLINE]}
        return parts
