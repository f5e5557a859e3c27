"""WSGI entry point for gunicorn: `gunicorn falbridge.webhooks.wsgi:app`."""

from falbridge.webhooks.app import create_app

app = create_app()
