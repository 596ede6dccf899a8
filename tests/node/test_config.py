from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import ConfigError, load_config
from tests.conftest import REPO


def test_example_config_is_valid_and_documented() -> None:
    cfg = load_config(REPO / "config" / "node.yaml")
    assert cfg.dicom.ae_title == "LGENODE"
    assert cfg.dicom.bind_address == "127.0.0.1"
    assert not cfg.dicom.allow_any_peer and cfg.dicom.allowed_peers
    # Relative paths are resolved against the config file's folder.
    assert cfg.storage_root == (REPO / "var" / "store").resolve()
    # Every setting of the schema appears in the example (so administrators see it), and
    # every key line there has a comment right above it or on its line.
    text = (REPO / "config" / "node.yaml").read_text()
    for section, model in cfg:
        if section == "base_dir":
            continue
        assert f"\n{section}:" in text, section
        if section in ("destinations", "sources"):
            continue
        for key in type(model).model_fields:
            assert f"  {key}:" in text, f"{section}.{key} missing from config/node.yaml"
    lines = (REPO / "config" / "node.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#") and not s.startswith("-") and s.endswith(":") is False and ":" in s:
            above = lines[i - 1].strip()
            assert above.startswith("#") or "#" in line or lines[i - 1].strip().startswith("- ") or above.endswith(":"), line


def test_embedded_defaults_load() -> None:
    cfg = load_config(None, environ={})
    assert cfg.dicom.port == 11112 and cfg.database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dicom:\n  port: 70000\n  allow_any_peer: true\n", "dicom.port"),
        ("dicom:\n  aetitle: X\n  allow_any_peer: true\n", "dicom.aetitle: unknown key"),
        ("dicom:\n  ae_title: 'THIS_AE_TITLE_IS_TOO_LONG'\n  allow_any_peer: true\n", "dicom.ae_title"),
        ("dicom:\n  allow_any_peer: false\n", "allowed_peers is empty"),
        ("series:\n  idle_seconds: 0\n", "series.idle_seconds"),
        ("series:\n  late_instance_policy: sometimes\n", "series.late_instance_policy"),
        ("selection:\n  description_patterns: ['(']\n", "invalid regular expression"),
        ("storage: [1, 2]\n", "storage"),
        ("- just a list\n", "top level must be a mapping"),
        ("dicom: {port: [\n", "not valid YAML"),
        ("database:\n  url: ${LGENODE_TEST_UNSET_VAR}\n", "LGENODE_TEST_UNSET_VAR is not set"),
        # D2: in a file, allow_any_peer defaults to false, with or without a dicom: section.
        ("storage:\n  min_free_mb: 10\n", "dicom: Value error, allowed_peers is empty"),
        ("dicom:\n  port: 11200\n", "dicom: Value error, allowed_peers is empty"),
        # D8: settings that cannot work.
        ("dicom:\n  bind_address: 10.0.0.300\n  allow_any_peer: true\n", "dicom.bind_address"),
        ("dicom:\n  bind_address: my-host\n  allow_any_peer: true\n", "dicom.bind_address"),
        ("dicom:\n  allow_any_peer: true\napi:\n  host: 'localhost '\n", "api.host"),
        ("dicom:\n  port: 9000\n  allow_any_peer: true\napi:\n  port: 9000\n", "api.port equals dicom.port"),
        ("dicom:\n  allow_any_peer: true\nselection:\n  min_slices: 12\n  max_slices: 8\n",
         "min_slices (12) is greater than max_slices (8)"),
        ("dicom:\n  allowed_peers: [{ae_title: PACS, host: pacs.example.org}]\n", "dicom.allowed_peers.0.host"),
        # Inference-request sources.
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dicomweb, name: pacs, url: 'ftp://x'}\n",
         "sources.0.dicomweb.url"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: cmove, name: pacs, url: 'http://x'}\n",
         "does not match any of the expected tags: 'dicomweb', 'dimse'"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dimse, name: pacs, url: 'http://x'}\n",
         "sources.0.dimse.url: unknown key"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dimse, name: pacs, host: h, port: 104, "
         "ae_title: 'A AE TITLE FAR TOO LONG'}\n", "sources.0.dimse.ae_title"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dicomweb, name: pacs, url: 'http://x', max_attempts: 0}\n",
         "sources.0.dicomweb.max_attempts"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dicomweb, name: pacs, url: 'http://a'}\n"
         "  - {type: dicomweb, name: pacs, url: 'http://b'}\n", "sources: duplicate name(s) ['pacs']"),
        ("dicom:\n  allow_any_peer: true\nsources:\n  - {type: dicomweb, name: pacs, url: 'http://a', "
         "auth_header: 'Bearer ${LGENODE_TEST_UNSET_TOKEN}'}\n", "LGENODE_TEST_UNSET_TOKEN is not set"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert expected in str(exc.value)


def test_no_config_file_accepts_any_peer_even_with_env_overrides(tmp_path: Path) -> None:
    """D2: without a file the embedded defaults accept any peer; an environment override (here
    LGENODE_PORT) does not turn them into a file-like config that no peer may send to."""
    cfg = load_config(None, environ={"LGENODE_PORT": "11200"})
    assert cfg.dicom.port == 11200 and cfg.dicom.allow_any_peer
    env = {k: v for k, v in os.environ.items() if k != "LGENODE_CONFIG"}
    lgenode = Path(sys.executable).with_name("lgenode")
    r = subprocess.run([lgenode, "config", "check"], capture_output=True, text=True, cwd=tmp_path,
                       env={**env, "LGENODE_PORT": "11200"})
    assert r.returncode == 0 and ":11200" in r.stdout, r.stderr


def test_peer_hosts_and_bind_addresses_accept_ip_addresses(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("dicom:\n  bind_address: '::'\n  allowed_peers: [{ae_title: A, host: 10.1.2.3}, {ae_title: B, host: '::1'}]\n"
                 "api:\n  host: 0.0.0.0\n  port: 8081\n")
    cfg = load_config(p, environ={})
    assert [pp.host for pp in cfg.dicom.allowed_peers] == ["10.1.2.3", "::1"]


def test_env_substitution_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("database:\n  url: postgresql+psycopg://u:${DBPW}@db/x\ndicom:\n  allow_any_peer: true\n")
    cfg = load_config(p, environ={"DBPW": "s3cret", "LGENODE_PORT": "4242"})
    assert cfg.database.url == "postgresql+psycopg://u:s3cret@db/x"
    assert cfg.dicom.port == 4242


def test_cli_config_check_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dicom:\n  port: nope\n  allow_any_peer: true\n")
    lgenode = Path(sys.executable).with_name("lgenode")
    r = subprocess.run([lgenode, "config", "check", "--config", bad], capture_output=True, text=True)
    assert r.returncode == 2 and "dicom.port" in r.stderr
    # config/node.yaml's API key comes from LGENODE_API_KEY: without it `serve` could not start.
    env = {k: v for k, v in os.environ.items() if k != "LGENODE_API_KEY"}
    r = subprocess.run([lgenode, "config", "check", "--config", REPO / "config" / "node.yaml"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "WARNING: api.auth.api_keys[0] (local-admin): environment variable LGENODE_API_KEY is " \
        "not set here: `lgenode serve` will refuse to start without it" in r.stderr
    r = subprocess.run([lgenode, "config", "check", "--config", REPO / "config" / "node.yaml"], capture_output=True,
                       text=True, env={**env, "LGENODE_API_KEY": "k" * 32})
    assert r.returncode == 0, r.stderr


def test_config_reference_documents_every_key() -> None:
    from node.config import NodeConfig

    doc = (REPO / "config" / "README.md").read_text()
    for section, field in NodeConfig.model_fields.items():
        if section == "base_dir":
            continue
        if section in ("destinations", "sources"):
            assert f"`{section}`" in doc
            continue
        for key in field.annotation.model_fields:  # type: ignore[union-attr]
            assert f"`{section}.{key}`" in doc, f"{section}.{key} not documented in config/README.md"


def test_source_auth_header_comes_from_the_environment_and_is_never_shown(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("dicom:\n  allow_any_peer: true\nsources:\n  - type: dicomweb\n    name: pacs\n"
                 "    url: https://pacs.example.org/dicom-web\n    auth_header: 'Bearer ${PACS_TOKEN}'\n")
    cfg = load_config(p, environ={"PACS_TOKEN": "s3cret-token"})
    src = cfg.sources[0]
    assert src.auth_header is not None and src.auth_header.get_secret_value() == "Bearer s3cret-token"
    assert src.verify_tls and src.max_attempts == 5 and cfg.retrieve.sweep_interval_seconds == 2.0
    assert "s3cret" not in cfg.model_dump_json() and "s3cret" not in repr(cfg)


def test_docker_config_is_valid() -> None:
    cfg = load_config(REPO / "docker" / "node.yaml", environ={})
    assert cfg.dicom.bind_address == "0.0.0.0" and cfg.destinations[0].type == "stow"


def test_cluster_needs_postgres_a_url_and_the_api(tmp_path: Path) -> None:
    import socket

    pg = "postgresql+psycopg://u@db/lge"
    base = "dicom: {allow_any_peer: true}\ncluster: {enabled: true, url: 'http://node-a:8080/dicom-web'}\n"
    for body, needle in ((base, "needs a shared PostgreSQL database"),
                         (f"database: {{url: '{pg}'}}\ndicom: {{allow_any_peer: true}}\ncluster: {{enabled: true}}\n",
                          "needs cluster.url"),
                         (f"database: {{url: '{pg}'}}\napi: {{enabled: false}}\n" + base, "needs api.enabled")):
        p = tmp_path / "c.yaml"
        p.write_text(body)
        with pytest.raises(ConfigError, match=needle):
            load_config(p)
    p.write_text(f"database: {{url: '{pg}'}}\n" + base)
    cfg = load_config(p)
    assert cfg.node_name == socket.gethostname()[:64]  # default name: the host's
    p.write_text(f"database: {{url: '{pg}'}}\ndicom: {{allow_any_peer: true}}\n"
                 "cluster: {enabled: true, node_name: node-a, url: 'ftp://x'}\n")
    with pytest.raises(ConfigError, match="cluster.url"):
        load_config(p)
    assert load_config(None).node_name is None  # no cluster: files carry no node name


def test_cluster_security_warnings(tmp_path: Path) -> None:
    from node.security.startup import security_warnings

    p = tmp_path / "c.yaml"
    p.write_text("database: {url: 'postgresql+psycopg://u@db/lge'}\ndicom: {allow_any_peer: true}\n"
                 "cluster: {enabled: true, url: 'http://10.1.2.3:8080/dicom-web', verify_tls: false}\n")
    text = "\n".join(security_warnings(load_config(p)))
    assert "cluster.url http://10.1.2.3:8080/dicom-web is plain http" in text
    assert "cluster.verify_tls is false" in text and "cluster.auth_header is empty" in text
    p.write_text("database: {url: 'postgresql+psycopg://u@db/lge'}\ndicom: {allow_any_peer: true}\n"
                 "cluster: {enabled: true, url: 'http://127.0.0.1:8080/dicom-web', auth_header: 'Bearer x'}\n")
    assert not [w for w in security_warnings(load_config(p)) if w.startswith("cluster")]
