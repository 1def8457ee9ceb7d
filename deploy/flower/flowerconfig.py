# Flower configuration for production: authentication on, persistent state.
# Flower >= 2.1 is required with Celery >= 5.5. Its /metrics has no queue depth: scrape the
# API's /metrics (lucid_queue_depth{stage=...}) for that.
import os

port = 5555
persistent = True
db = "/data/flower.db"
max_tasks = 50000
basic_auth = [os.environ.get("FLOWER_BASIC_AUTH", "admin:change-me")]
