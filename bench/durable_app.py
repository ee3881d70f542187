"""A second baseline for bench_ingest: the bare endpoint plus one durable
PostgreSQL insert and commit per request (no validation, no outbox). It shows
what the database commit alone costs on this machine."""

import json
import os
import uuid

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

app = Flask(__name__)
engine = create_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
# Its table `durable` is made by bench_ingest before gunicorn starts: four workers
# racing a CREATE TABLE IF NOT EXISTS can collide in the catalog and die.


@app.post("/api/v1/feedback")
def feedback():
    body = request.get_json()
    response_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO durable VALUES (:id, :body)"),
            {"id": response_id, "body": json.dumps(body)},
        )
    return jsonify(id=response_id), 202


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
