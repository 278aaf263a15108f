"""Just enough settings for one JSON view: no database, no apps, no CSRF middleware."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent  # plugins.yaml's class paths are looked up here

PLUGINS_YAML = BASE_DIR / "plugins.yaml"

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
USE_TZ = True
