"""The job dashboard under /dashboard: server-rendered pages (Jinja, autoescaped) over the
same model-layer queries and worker actions as the API, a small static script, no CDN.

Every page needs a session (webhooks.dashboard.session) unless API auth is off; every POST
needs the session's CSRF token; every response carries a Content-Security-Policy allowing
scripts and styles from this origin only and images from here plus the hosts the page shows.
"""

from __future__ import annotations

# The view modules register their routes on the blueprint when imported.
from falbridge.webhooks.dashboard import actions, failures, job_list, job_page
from falbridge.webhooks.dashboard.blueprint import dashboard

__all__ = ["actions", "dashboard", "failures", "job_list", "job_page"]
