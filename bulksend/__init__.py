"""bulksend: fast, resumable SMS campaigns over Clickatell's HTTP API.

The public API: :func:`run_campaign` / :func:`run_campaign_async` with :class:`CampaignSettings`
(or :func:`load_settings` for config files and the environment), returning a
:class:`CampaignSummary`; the :class:`~bulksend.simulator.Simulator`; the error tree rooted at
:class:`BulkSendError`. Heavy modules load on first use, so ``import bulksend`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bulksend.errors import (
    BulkSendError,
    CampaignLocked,
    CampaignRepeated,
    ConfigError,
    ErrorClass,
    GatewayError,
    InputError,
    ProtocolError,
    StorageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bulksend.campaign import (
        Campaign,
        CampaignSummary,
        Snapshot,
        run_campaign,
        run_campaign_async,
    )
    from bulksend.config import CampaignSettings, load_settings
    from bulksend.simulator import Simulator
    from bulksend.status import campaign_status

_LAZY = {
    "Campaign": "bulksend.campaign",
    "CampaignSummary": "bulksend.campaign",
    "Snapshot": "bulksend.campaign",
    "campaign_status": "bulksend.status",
    "run_campaign": "bulksend.campaign",
    "run_campaign_async": "bulksend.campaign",
    "CampaignSettings": "bulksend.config",
    "load_settings": "bulksend.config",
    "Simulator": "bulksend.simulator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bulksend' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "BulkSendError",
    "Campaign",
    "CampaignLocked",
    "CampaignRepeated",
    "CampaignSettings",
    "CampaignSummary",
    "ConfigError",
    "ErrorClass",
    "GatewayError",
    "InputError",
    "ProtocolError",
    "Simulator",
    "Snapshot",
    "StorageError",
    "__version__",
    "campaign_status",
    "load_settings",
    "run_campaign",
    "run_campaign_async",
]
