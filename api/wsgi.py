"""WSGI entry point for gunicorn: `gunicorn api.wsgi:app`."""

from api import create_app
from tasks.app import connect_producer

app = create_app()
connect_producer()
