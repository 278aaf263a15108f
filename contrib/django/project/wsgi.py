"""WSGI entry point: Django's application inside ``WSGIPluginMiddleware``."""

import os

from django.core.wsgi import get_wsgi_application

import mcp_plugin_mw as mw

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.conf import settings  # read once DJANGO_SETTINGS_MODULE is set

application = mw.WSGIPluginMiddleware(get_wsgi_application(), config=settings.PLUGINS_YAML)
