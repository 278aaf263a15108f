#!/usr/bin/env python
"""
Django example
==============

A JSON view behind the plugin middlewares: ``project/wsgi.py`` wraps the
Django application in ``WSGIPluginMiddleware``, ``project/asgi.py`` in
``PluginMiddleware``, both with the plugins of ``plugins.yaml``. Needs
``pip install 'mcp-plugin-mw[examples]'`` (from a checkout:
``pip install -e '.[examples]'``)::

    cd contrib/django && python manage.py runserver 127.0.0.1:8002      # WSGI
    cd contrib/django && uvicorn project.asgi:application --port 8002   # ASGI

Then try::

    # Shout upper-cases the reply: {"text": "HELLO"}
    curl -s 127.0.0.1:8002/api/echo -H 'content-type: application/json' -d '{"text":"hello"}'

    # BlockWord refuses it: 403 application/problem+json
    curl -si 127.0.0.1:8002/api/echo -H 'content-type: application/json' -d '{"text":"forbidden"}'
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
