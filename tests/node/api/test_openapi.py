"""The OpenAPI document (node/api/openapi.py, node/api/spec.py, ``lgenode openapi``): every
operation has a summary and a description, documents its error responses, has an example for
every request body and 2xx JSON response, and every example validates against its schema; the
error bodies the node really sends validate against the documented schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lgenode.cli import app as cli
from node.api.app import create_app
from node.api.auth import ALWAYS_PUBLIC, Authenticator, sha256_hex
from node.api.spec import build_spec
from node.security.settings import AuthConfig

SPEC = build_spec()
OPERATIONS = [(path, method, op) for path, ops in SPEC["paths"].items() for method, op in ops.items()]
IDS = [f"{m.upper()} {p}" for p, m, _ in OPERATIONS]


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Validate against a schema of the document ($refs resolve into its components)."""
    jsonschema.Draft202012Validator({**schema, "components": SPEC["components"]}).validate(instance)


def resolved(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def examples_of(media: dict[str, Any]) -> list[Any]:
    """The examples of a media type: its own, else those of its (referenced) schema."""
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [e["value"] for e in media["examples"].values()]
    return list(resolved(media.get("schema", {})).get("examples", []))


def test_the_document_has_every_route() -> None:
    paths = set(SPEC["paths"])
    assert {"/health", "/ready", "/metrics", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/review",
            "/api/jobs/{job_id}/reviews", "/api/jobs/{job_id}/deliveries", "/api/jobs/{job_id}/rerun",
            "/api/jobs/{job_id}/deliveries/rerun", "/api/deliveries/rerun", "/api/series", "/api/inference-requests",
            "/api/inference-requests/{request_id}", "/dicom-web/studies", "/dicom-web/studies/{study}",
            "/dicom-web/studies/{study}/series/{series}", "/dicom-web/studies/{study}/series/{series}/instances",
            "/dicom-web/studies/{study}/series/{series}/instances/{sop}"} <= paths


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=IDS)
def test_every_operation_has_summary_description_and_errors(path: str, method: str, op: dict[str, Any]) -> None:
    assert op.get("summary", "").strip() and op.get("description", "").strip()
    codes = set(op["responses"])
    if path in ALWAYS_PUBLIC:
        assert op["security"] == [] and "503" in codes  # public probes; 503 is their "down"/"not ready"
        return
    assert {"401", "403"} <= codes, "authenticated routes document 401 and 403"
    if "{job_id}" in path or "{request_id}" in path:
        assert "404" in codes
    if ("requestBody" in op or "parameters" in op) and path.startswith("/api/"):
        assert "422" in codes
    if path.startswith("/dicom-web/studies") and method == "post":  # STOW-RS
        assert {"200", "202", "409", "400", "413", "415"} <= codes
    if path.startswith("/dicom-web/studies/{study}/series/{series}") and not path.endswith("/instances"):  # WADO-RS
        assert {"200", "404", "406"} <= codes
    for code, response in op["responses"].items():
        assert response.get("description", "").strip(), f"{code} without a description"


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=IDS)
def test_bodies_and_2xx_responses_have_examples_that_validate(path: str, method: str, op: dict[str, Any]) -> None:
    media_types = list(op.get("requestBody", {}).get("content", {}).values())
    for code, response in op["responses"].items():
        for media_type, media in response.get("content", {}).items():
            if code.startswith("2") or "example" in media:
                media_types.append(media)
                if code.startswith("2") and media_type.split(";")[0].endswith("json"):
                    assert examples_of(media), f"{code} {media_type} without an example"
    for media in op.get("requestBody", {}).get("content", {}).values():
        assert examples_of(media), "request body without an example"
    for media in media_types:
        for example in examples_of(media):
            validate(example, media.get("schema", {}))


def test_component_schema_examples_validate() -> None:
    checked = 0
    for name, schema in SPEC["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validate(example, {"$ref": f"#/components/schemas/{name}"})
            checked += 1
    assert checked >= 4  # InferenceRequestIn (2), Accepted, ReviewIn (2), Problem


def test_an_invalid_example_would_be_caught() -> None:
    """The check is not vacuous: a wrong field type in an example fails validation."""
    media = SPEC["paths"]["/api/jobs/{job_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    bad = {**media["example"], "attempts": "one"}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, media["schema"])


def test_security_schemes_are_documented() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert SPEC["security"] == [{"bearer": []}, {"apiKey": []}]


READER, REVIEWER = "reader-key-0123456789", "reviewer-key-0123456789"


def test_error_bodies_the_node_sends_match_the_documented_schemas(core) -> None:  # type: ignore[no-untyped-def]
    auth = Authenticator(AuthConfig.model_validate({"api_keys": [
        {"name": "reader", "key_sha256": sha256_hex(READER), "roles": ["read"]},
        {"name": "reviewer", "key_sha256": sha256_hex(REVIEWER), "roles": ["review", "read"]}]}), {})
    client = TestClient(create_app(core.sessions, core.files.root, lambda: True, auth=auth, store=core.store))
    paths = SPEC["paths"]

    def check(r, path: str, method: str) -> None:  # type: ignore[no-untyped-def]
        documented = paths[path][method]["responses"][str(r.status_code)]["content"]
        media = documented[r.headers["content-type"].split(";")[0]] if r.headers["content-type"].split(";")[0] \
            in documented else documented["application/json"]
        validate(r.json(), media["schema"])

    check(client.get("/api/jobs"), "/api/jobs", "get")  # 401
    check(client.get("/api/jobs/42", headers={"X-API-Key": READER}), "/api/jobs/{job_id}", "get")  # 404
    check(client.post("/api/jobs/42/review", json={"decision": "accepted"}, headers={"X-API-Key": READER}),
          "/api/jobs/{job_id}/review", "post")  # 403
    check(client.post("/api/jobs/42/review", json={"decision": "accepted"}, headers={"X-API-Key": REVIEWER}),
          "/api/jobs/{job_id}/review", "post")  # 404
    check(client.get("/api/inference-requests/5", headers={"X-API-Key": READER}),
          "/api/inference-requests/{request_id}", "get")  # 404
    r = client.get("/health")
    assert r.status_code == 200
    validate(r.json(), paths["/health"]["get"]["responses"]["200"]["content"]["application/json"].get("schema", {}))
    assert set(r.json()) == set(paths["/health"]["get"]["responses"]["200"]["content"]["application/json"]["example"])


def test_lgenode_openapi_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    r = CliRunner().invoke(cli, ["openapi", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text()) == SPEC
