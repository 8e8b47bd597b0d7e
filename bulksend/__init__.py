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

__all__ = [
    "BulkSendError",
    "ConfigError",
    "ErrorClass",
    "GatewayError",
    "InputError",
    "ProtocolError",
    "__version__",
]
