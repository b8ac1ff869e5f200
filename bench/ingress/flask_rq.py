"""Baseline (a): the old endpoint. Flask + HMAC check + RQ enqueue, as it ran under
Flask's own server (``python flask_rq.py --port N``) or gunicorn (``flask_rq:app``)."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue

SECRET = os.environ["GITHUB_WEBHOOK_SECRET"].encode()

app = Flask(__name__)
queue = Queue("pipeline_tasks", connection=Redis.from_url(os.environ["REDIS_URL"]))


@app.post("/webhook")
def webhook():  # type: ignore[no-untyped-def]
    body = request.get_data()
    given = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        return jsonify({"error": "invalid_signature"}), 401
    payload = request.get_json()
    # The job function is named, not imported: nothing runs it during the benchmark.
    job = queue.enqueue("pipeline.run", payload, job_timeout=1800)
    return jsonify({"message": "queued", "job_id": job.id}), 202


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app.run(host="127.0.0.1", port=args.port, threaded=True)
