"""The engine tests' session models and market, for the log-line tests here."""

from tests.core.conftest import synthetic_models, synthetic_series  # noqa: F401
