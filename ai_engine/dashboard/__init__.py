"""The operator dashboard: a read-only page over a telemetry store, served with its JSON endpoints.

``data`` reads what the page shows (bounded queries on the store's indexes; the env file, the
governor file and the audit log), ``analysis`` runs the shadow analysis in the background,
``server`` serves it safely, ``static/`` holds the page (plain
HTML, CSS and the JS that draws its SVG charts; no external asset). docs/dashboard.md documents
every endpoint.
"""

from ai_engine.dashboard.analysis import AnalysisJob
from ai_engine.dashboard.data import DashboardData
from ai_engine.dashboard.server import CSP, TOKEN_ENV, DashboardServer, check_bind, is_loopback

__all__ = ["AnalysisJob", "CSP", "TOKEN_ENV", "DashboardData", "DashboardServer", "check_bind", "is_loopback"]
