"""ASGI entry point: Django's application inside ``PluginMiddleware``."""

import os

from django.core.asgi import get_asgi_application

import mcp_plugin_mw as mw

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.conf import settings  # read once DJANGO_SETTINGS_MODULE is set

application = mw.PluginMiddleware(get_asgi_application(), config=settings.PLUGINS_YAML)
