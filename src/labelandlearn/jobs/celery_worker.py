"""Entry module of Celery workers: ``celery -A labelandlearn.jobs.celery_worker worker``.

Celery loads the ``celery_app`` attribute, so this module builds the app when imported; the
web server and the CLI never import it.
"""

from __future__ import annotations

from labelandlearn.jobs.celery_runner import make_celery
from labelandlearn.settings import get_settings

celery_app = make_celery(get_settings().celery_broker_url)
