"""Meshanics Integrations core: the domain shared by every function (a Lambda layer)."""

__version__ = "1.0.0"
PRODUCT = "Meshanics-Webhooks"
