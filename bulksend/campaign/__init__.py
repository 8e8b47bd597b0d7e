"""One campaign (see :mod:`bulksend.campaign.pipeline`)."""

from bulksend.campaign.pipeline import (
    EXIT_FATAL,
    EXIT_INPUT,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_STORAGE,
    Campaign,
    CampaignSummary,
    Snapshot,
    run_campaign,
    run_campaign_async,
)

__all__ = [
    "EXIT_FATAL",
    "EXIT_INPUT",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_STORAGE",
    "Campaign",
    "CampaignSummary",
    "Snapshot",
    "run_campaign",
    "run_campaign_async",
]
