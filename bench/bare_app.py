"""The baseline for bench_ingest: a bare Flask endpoint that parses the same JSON
and answers 202, under the same gunicorn settings, with no validation or DB."""

import uuid

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/v1/feedback")
def feedback():
    request.get_json()
    return jsonify(id=str(uuid.uuid4())), 202


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
