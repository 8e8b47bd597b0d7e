"""bulksend: fast, resumable SMS campaigns over Clickatell's HTTP API."""

from bulksend.errors import (
    BulkSendError,
    ConfigError,
    ErrorClass,
    GatewayError,
    InputError,
    ProtocolError,
)

__version__ = "0.1.0"

from bulksend.campaign import (  # noqa: E402
    Campaign,
    CampaignSummary,
    Snapshot,
    run_campaign,
    run_campaign_async,
)
from bulksend.config import CampaignSettings, load_settings  # noqa: E402

__all__ = [
    "BulkSendError",
    "Campaign",
    "CampaignSettings",
    "CampaignSummary",
    "Snapshot",
    "load_settings",
    "run_campaign",
    "run_campaign_async",
    "ConfigError",
    "ErrorClass",
    "GatewayError",
    "InputError",
    "ProtocolError",
    "__version__",
]
