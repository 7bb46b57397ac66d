"""The Content-Security-Policy header on every response (Django 5.2 has none built in).

Our pages load scripts and styles only from our own static files (no inline `<script>`, no
`style=` attributes), so the policy allows `'self'` and nothing inline. Pages we do not write
(Django's admin, the Swagger UI at /api/docs/) carry `<style>` blocks of their own: under
CONTENT_SECURITY_POLICY_INLINE_STYLE_PATHS their policy also allows inline styles; inline
scripts stay refused everywhere.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

HEADER = "Content-Security-Policy"


def policy_with_inline_styles(policy: str) -> str:
    """The same policy with `'unsafe-inline'` added to style-src (or default-src's sources)."""
    directives = [part.strip() for part in policy.split(";") if part.strip()]
    names = [directive.split()[0].lower() for directive in directives]
    if "style-src" not in names:
        default = next((d for d in directives if d.lower().startswith("default-src")), "")
        directives.append(" ".join(["style-src", *default.split()[1:]]))
        names.append("style-src")
    index = names.index("style-src")
    if "'unsafe-inline'" not in directives[index].split():
        directives[index] += " 'unsafe-inline'"
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware:
    """Adds CONTENT_SECURITY_POLICY to responses that do not set a policy themselves."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY
        self.relaxed_policy = policy_with_inline_styles(self.policy) if self.policy else ""
        self.relaxed_paths = tuple(settings.CONTENT_SECURITY_POLICY_INLINE_STYLE_PATHS)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self._add_policy(request, self.get_response(request))

    async def _acall(self, request):
        return self._add_policy(request, await self.get_response(request))

    def _add_policy(self, request, response):
        if self.policy and HEADER not in response:
            relaxed = request.path.startswith(self.relaxed_paths)
            response[HEADER] = self.relaxed_policy if relaxed else self.policy
        return response
