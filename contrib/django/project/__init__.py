"""A minimal Django project wrapped by mcp-plugin-mw (see ``manage.py``)."""
