"""Drop-in ASGI and WSGI middleware that runs a plugin pipeline on MCP and HTTP traffic."""

from .admin import admin_app, admin_wsgi_app
from .asgi import PluginMiddleware
from .config import ConfigError
from .manager import PluginManager
from .models import (
    Category,
    ClientMessagePayload,
    Config,
    Flow,
    GlobalContext,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PluginConfig,
    PluginContext,
    PluginError,
    PluginMode,
    PluginResult,
    PluginViolation,
    PromptListPayload,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourceListPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ServerMessagePayload,
    ToolListPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from .plugin import Plugin
from .proxy import proxy_app
from .wsgi import WSGIPluginMiddleware

__version__ = "0.1.0"

__all__ = [
    "Category",
    "ClientMessagePayload",
    "Config",
    "ConfigError",
    "Flow",
    "GlobalContext",
    "HookType",
    "HttpPostRequestPayload",
    "HttpPreRequestPayload",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginError",
    "PluginManager",
    "PluginMiddleware",
    "PluginMode",
    "PluginResult",
    "PluginViolation",
    "PromptListPayload",
    "PromptPosthookPayload",
    "PromptPrehookPayload",
    "ResourceListPayload",
    "ResourcePostFetchPayload",
    "ResourcePreFetchPayload",
    "ServerMessagePayload",
    "ToolListPayload",
    "ToolPostInvokePayload",
    "ToolPreInvokePayload",
    "WSGIPluginMiddleware",
    "admin_app",
    "admin_wsgi_app",
    "proxy_app",
]
