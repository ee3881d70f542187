"""GET /api/v1/openapi.json: the API's description (openapi.yaml, shipped with the package),
with this deployment's sites and divisions filled in, so that a client (and
schemathesis, tests/test_openapi.py) knows exactly which page URLs and division codes
are accepted. Public and cacheable: it changes only with a deployment."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, Flask, current_app, jsonify, request

from feedback.schemas import NOT_IN_A_URL

blueprint = Blueprint("openapi", __name__)

MAX_AGE_S = 3600
# What may follow a site's origin in a page_url: none of the characters FeedbackSchema refuses.
_REST_OF_URL = f"([/?#][^{NOT_IN_A_URL}]*)?$"


def load_spec() -> dict[str, Any]:
    text = resources.files("feedback").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def for_deployment(
    spec: dict[str, Any], origins: Iterable[str], divisions: Iterable[str]
) -> dict[str, Any]:
    """The spec, with what this deployment accepts: page_url on the sites koe serves,
    division one of the codes divisions.yaml lists (both 422 otherwise), a browser's
    Origin one of the sites (403 otherwise), and the static files there are."""
    spec = copy.deepcopy(spec)
    components = spec["components"]
    sites = "|".join(origin.replace(".", r"\.") for origin in sorted(origins))
    components["schemas"]["PageUrl"]["pattern"] = f"^({sites}){_REST_OF_URL}"
    components["schemas"]["Division"]["enum"] = sorted(divisions)
    components["parameters"]["Origin"]["schema"]["enum"] = sorted(origins)
    static = resources.files("feedback").joinpath("static")
    files = sorted(entry.name for entry in static.iterdir() if entry.is_file())
    (filename,) = spec["paths"]["/static/{filename}"]["get"]["parameters"]
    filename["schema"]["enum"] = files
    return spec


def init_openapi(app: Flask, origins: Iterable[str], divisions: Iterable[str]) -> None:
    app.extensions["koe.feedback.openapi"] = for_deployment(load_spec(), origins, divisions)
    app.register_blueprint(blueprint)


@blueprint.get("/api/v1/openapi.json")
def openapi_json():
    response = jsonify(current_app.extensions["koe.feedback.openapi"])
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    # Any site's tools may read it: it holds nothing that is not public.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.add_etag()
    return response.make_conditional(request)
