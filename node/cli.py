"""Node commands: serve, send, echo, jobs, series, request, openapi, config, db."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", envvar="LGENODE_CONFIG",
                 help="Node configuration YAML (default: embedded defaults; env LGENODE_CONFIG)."),
]


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    from node.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def serve(config: ConfigOpt = None) -> None:
    """Run the node: DICOM SCP, series sweeps, job workers and the HTTP API."""
    from node.config import ConfigError
    from node.logs import setup_logging
    from node.service import NodeService

    cfg = _load(config)
    setup_logging(cfg.logging.level, cfg.logging.format)
    try:
        NodeService(cfg, config_path=config).run_forever()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot start the node: {exc}", err=True)
        raise typer.Exit(1) from None


def send(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files or folders (searched recursively).")],
    host: Annotated[str, typer.Option(help="Peer host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Peer port.")] = 11112,
    called_ae: Annotated[str, typer.Option("--aec", help="Called AE title.")] = "LGENODE",
    calling_ae: Annotated[str, typer.Option("--aet", help="Our (calling) AE title.")] = "LGESEND",
    tls: Annotated[bool, typer.Option("--tls", help="DICOM TLS (BCP 195 profile); the peer's certificate is verified.")] = False,
    tls_ca: Annotated[Optional[Path], typer.Option("--tls-ca", help="CA bundle (PEM) that signs the peer's certificate (default: the system's).")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="Our client certificate (PEM), for peers that require one.")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="Our client key (PEM).")] = None,
    no_verify_hostname: Annotated[bool, typer.Option("--no-verify-hostname", help="Accept a peer certificate that does not name HOST (its chain is still verified).")] = False,
) -> None:
    """Send DICOM files to a Storage SCP (C-STORE, one association) with a progress bar."""
    from node.send import send_files

    files = [p for path in paths for p in ([path] if path.is_file() else sorted(x for x in path.rglob("*") if x.is_file()))]
    if not files:
        typer.echo("error: no files found", err=True)
        raise typer.Exit(2)
    ctx = _tls_context(tls, tls_ca, tls_cert, tls_key, no_verify_hostname)
    report = send_files(files, host=host, port=port, called_ae=called_ae, calling_ae=calling_ae, progress=True,
                        tls=ctx)
    typer.echo(f"sent {report.ok}/{len(files)} ok, {report.failed} failed, {report.skipped} not DICOM")
    if report.error:
        typer.echo(f"error: {report.error}", err=True)
        raise typer.Exit(1)
    for path, status in report.failures[:20]:
        typer.echo(f"  {path}: {status}", err=True)
    raise typer.Exit(0 if report.failed == 0 and report.ok > 0 else 1)


def echo(
    host: Annotated[str, typer.Option(help="Peer host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Peer port.")] = 11112,
    called_ae: Annotated[str, typer.Option("--aec", help="Called AE title.")] = "LGENODE",
    calling_ae: Annotated[str, typer.Option("--aet", help="Our (calling) AE title.")] = "LGESEND",
    tls: Annotated[bool, typer.Option("--tls", help="DICOM TLS (BCP 195 profile); the peer's certificate is verified.")] = False,
    tls_ca: Annotated[Optional[Path], typer.Option("--tls-ca", help="CA bundle (PEM) that signs the peer's certificate (default: the system's).")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="Our client certificate (PEM), for peers that require one.")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="Our client key (PEM).")] = None,
    no_verify_hostname: Annotated[bool, typer.Option("--no-verify-hostname", help="Accept a peer certificate that does not name HOST (its chain is still verified).")] = False,
) -> None:
    """Verify a DICOM peer answers (C-ECHO)."""
    from node.send import echo as do_echo

    ctx = _tls_context(tls, tls_ca, tls_cert, tls_key, no_verify_hostname)
    status = do_echo(host=host, port=port, called_ae=called_ae, calling_ae=calling_ae, tls=ctx)
    if status != "Success":
        typer.echo(f"error: {status}", err=True)
        raise typer.Exit(1)
    typer.echo(status)


def _tls_context(tls: bool, ca: Optional[Path], cert: Optional[Path], key: Optional[Path],
                 no_verify_hostname: bool):  # type: ignore[no-untyped-def]
    """The client TLS context of ``echo``/``send`` (None without --tls); bad files exit 2."""
    if not tls:
        if any(x is not None for x in (ca, cert, key)):
            typer.echo("error: --tls-ca/--tls-cert/--tls-key need --tls", err=True)
            raise typer.Exit(2)
        return None
    from pydantic import ValidationError

    from node.security.settings import TlsClientConfig
    from node.security.tls import client_context

    try:
        cfg = TlsClientConfig(enabled=True, ca_file=ca, cert_file=cert, key_file=key,
                              verify_hostname=not no_verify_hostname)
        return client_context(cfg)
    except (ValidationError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        typer.echo(f"error: TLS settings: {exc}", err=True)
        raise typer.Exit(2) from exc


def _table(rows: list[dict[str, object]], cols: list[str]) -> str:
    widths = {c: max([len(c)] + [len(str(r.get(c, "") or "")) for r in rows]) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def jobs(
    config: ConfigOpt = None,
    state: Annotated[Optional[str], typer.Option(help="Only jobs in this state (queued, running, done, failed, superseded).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List jobs with their state, attempts and failure reason."""
    from sqlalchemy import select

    from node.core import build_core
    from node.db.models import Job

    from node.deliver.outbox import delivery_summary

    core = build_core(_load(config))
    with core.sessions() as s:
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if state:
            q = q.where(Job.state == state)
        rows = [
            {"id": j.id, "kind": j.kind, "state": j.state, "stage": j.stage, "attempts": f"{j.attempts}/{j.max_attempts}",
             "series_uid": j.series_uid, "revision": j.revision, "created": j.created_at.isoformat(timespec="seconds"),
             "reason": j.reason, "result": j.result}
            for j in s.scalars(q)
        ]
    from node.api.app import latest_reviews

    deliveries = delivery_summary(core.sessions, [int(r["id"]) for r in rows])  # type: ignore[arg-type]
    with core.sessions() as s:
        reviews = latest_reviews(s, [int(r["id"]) for r in rows])  # type: ignore[arg-type]
    for r in rows:
        rv = reviews.get(int(r["id"]))  # type: ignore[arg-type]
        r["review"] = f"{rv.decision} by {rv.reviewer or '?'}" if rv else ""
        d = deliveries.get(int(r["id"]), {})  # type: ignore[arg-type]
        r["deliveries"] = d
        r["delivery"] = ", ".join(f"{n} {k}" for k, n in sorted(d.items())) if d else ""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        typer.echo(_table(rows, ["id", "kind", "state", "stage", "attempts", "revision", "delivery", "review", "created",
                                 "series_uid", "reason"]))


def rerun(
    job_id: Annotated[Optional[int], typer.Argument(help="The job (see `lgenode jobs --state failed`); leave out with --all.")] = None,
    config: ConfigOpt = None,
    deliveries: Annotated[bool, typer.Option("--deliveries", help="Send the job's failed deliveries again instead of re-running the job.")] = False,
    all_jobs: Annotated[bool, typer.Option("--all", help="With --deliveries: every job's failed deliveries (after a destination's long outage).")] = False,
    destination: Annotated[Optional[str], typer.Option(help="With --deliveries: only those to this destination.")] = None,
) -> None:
    """Run a failed job again, or send failed deliveries again (--deliveries [--all]), once the cause is fixed."""
    import getpass

    from node.core import build_core
    from node.db.models import Job
    from node.job.rerun import NotRerunnable, rerun_job, resend_deliveries
    from node.security import audit as A

    if destination is not None and not deliveries:
        typer.echo("error: --destination goes with --deliveries", err=True)
        raise typer.Exit(2)
    if all_jobs and (not deliveries or job_id is not None):
        typer.echo("error: --all goes with --deliveries and no JOB", err=True)
        raise typer.Exit(2)
    if job_id is None and not all_jobs:
        typer.echo("error: give a JOB, or --deliveries --all", err=True)
        raise typer.Exit(2)
    cfg = _load(config)
    core = build_core(cfg)
    who = f"cli:{getpass.getuser()}"
    try:
        with core.sessions.begin() as s:
            if deliveries:
                rows = resend_deliveries(s, job_id, who, destination)
                job_ids = sorted({d.job_id for d in rows})
                what = f"job {job_id}" if job_id is not None else f"{len(job_ids)} job(s)"
                done = f"{what}: {len(rows)} failed deliveries back in the outbox (" + ", ".join(
                    sorted({f"{d.kind} to {d.destination}" for d in rows})) + "); the running node sends them"
            else:
                assert job_id is not None
                job = rerun_job(s, job_id, who)
                done = f"job {job_id} queued again ({job.reason}); the running node's workers take it"
                job_ids = [job_id]
            objects = []
            for jid in job_ids:
                j = s.get(Job, jid)
                assert j is not None
                objects.append(A.job(jid, study_uid=j.study_uid, series_uid=j.series_uid,
                                     action="resend" if deliveries else "rerun", destination=destination))
    except (LookupError, NotRerunnable) as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(1) from None
    audit = A.open_audit(cfg)
    audit.record(A.INSTANCES_ACCESSED, action="U", participants=[A.participant(who, requestor=True)], objects=objects)
    audit.close()
    typer.echo(done)


def series(
    config: ConfigOpt = None,
    state: Annotated[Optional[str], typer.Option(help="Only series in this state (receiving, selected, ignored, result).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, most recent first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List received series and what happened to them (selected for a job, or ignored and why)."""
    from sqlalchemy import select

    from node.core import build_core
    from node.db.models import Series

    core = build_core(_load(config))
    with core.sessions() as s:
        q = select(Series).order_by(Series.last_received_at.desc()).limit(limit)
        if state:
            q = q.where(Series.state == state)
        rows = [
            {"series_uid": r.series_uid, "modality": r.modality, "description": r.series_description,
             "instances": r.n_instances, "state": r.state, "revision": r.revision, "reason": r.reason,
             "last_received": r.last_received_at.isoformat(timespec="seconds")}
            for r in s.scalars(q)
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        typer.echo(_table(rows, ["state", "instances", "modality", "description", "last_received", "reason", "series_uid"]))


def nodes(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the cluster's nodes (cluster.enabled): DICOMweb URL, last heartbeat, instance files held, results waiting to be sent."""
    from sqlalchemy import func, select

    from node.cluster.nodes import pending_deliveries_by_node
    from node.core import build_core
    from node.db.models import ClusterNode, Instance, utcnow

    core = build_core(_load(config))
    now = utcnow()
    with core.sessions() as s:
        held = dict(s.execute(select(Instance.node, func.count()).group_by(Instance.node)).all())
        waiting = pending_deliveries_by_node(s)
        rows = [{"name": n.name, "url": n.url, "started": n.started_at.isoformat(timespec="seconds"),
                 "heartbeat_s_ago": round((now - n.updated_at).total_seconds()), "instances": held.get(n.name, 0),
                 "pending_deliveries": waiting.get(n.name, 0)}
                for n in s.scalars(select(ClusterNode).order_by(ClusterNode.name))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        typer.echo(_table(rows, ["name", "url", "heartbeat_s_ago", "instances", "pending_deliveries", "started"]))


def request(
    study: Annotated[str, typer.Option("--study", help="Study Instance UID to retrieve and process.")],
    source: Annotated[str, typer.Option("--source", help="A source named in the config's sources: list.")],
    config: ConfigOpt = None,
    series_uids: Annotated[Optional[list[str]], typer.Option("--series", help="Only this series (repeatable; default: all).")] = None,
    destinations: Annotated[Optional[list[str]], typer.Option("--destination", help="Send the results to this configured destination only (repeatable; default: all).")] = None,
    priority: Annotated[int, typer.Option(help="Higher is retrieved first (-100..100).")] = 0,
    transaction_id: Annotated[Optional[str], typer.Option("--transaction-id", help="Your own id for the request.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the request is done or failed; exit 1 if it failed.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds (exit 3).")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the request record as JSON.")] = False,
) -> None:
    """Queue an inference request: the running node retrieves a study from a source and processes it.

    The node (same --config) pulls the study from SOURCE (QIDO-RS + WADO-RS, or C-FIND + C-GET for a
    `dimse` source), processes it as if received by C-STORE and records the results' UIDs. Written
    straight into the node's database, like `lgenode jobs` reads it (no API key needed on the node's
    own host); remote callers use POST /api/inference-requests."""
    import getpass
    import time

    from pydantic import ValidationError

    from node.api.requests import InferenceRequestIn, check_names, queue_request
    from node.core import build_core
    from node.db.models import InferenceRequest, RequestState

    cfg = _load(config)
    try:
        body = InferenceRequestIn(study_uid=study, source=source, series_uids=series_uids or None,
                                  destinations=destinations or None, priority=priority, transaction_id=transaction_id)
    except ValidationError as exc:
        typer.echo(f"error: {'; '.join(e['loc'][-1].__str__() + ': ' + e['msg'] for e in exc.errors())}", err=True)
        raise typer.Exit(2) from None
    problem = check_names(body, [x.name for x in cfg.sources], [d.name for d in cfg.destinations])
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    core = build_core(cfg)
    rid = queue_request(core.sessions, body, f"cli:{getpass.getuser()}")
    typer.echo(f"inference request {rid} queued (study {study}, source {source})", err=as_json)
    deadline = time.monotonic() + timeout
    state = RequestState.QUEUED
    while wait and state not in (RequestState.DONE, RequestState.FAILED):
        if time.monotonic() > deadline:
            typer.echo(f"error: request {rid} still {state} after {timeout:g} s", err=True)
            raise typer.Exit(3)
        time.sleep(1.0)
        with core.sessions() as s:
            r = s.get(InferenceRequest, rid)
            assert r is not None
            if r.state != state:
                state = r.state
                typer.echo(f"  {state}  ({r.instances_retrieved}/{r.instances_expected or '?'} instances)", err=as_json)
    with core.sessions() as s:
        r = s.get(InferenceRequest, rid)
        assert r is not None
        from node.api.requests import InferenceRequestOut

        out = InferenceRequestOut.model_validate(r, from_attributes=True)
    if as_json:
        typer.echo(out.model_dump_json(indent=2))
    elif wait:
        for o in out.results or []:
            typer.echo(f"  {o.get('kind')}: {o.get('sop_instance_uid')} (series {o.get('series_uid')})")
        if out.reason:
            typer.echo(f"  reason: {out.reason}")
    if wait and state == RequestState.FAILED:
        raise typer.Exit(1)


def openapi(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the document here (default: print it).")] = None,
) -> None:
    """Write the HTTP API's OpenAPI document (JSON): every route with its summary, errors and
    examples, and the security schemes (bearer token, X-API-Key). No node needs to run."""
    from node.api.spec import build_spec

    text = json.dumps(build_spec(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)


config_app = typer.Typer(no_args_is_help=True, help="Check or show the node configuration.")


@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate a configuration file; exits non-zero naming each bad key. Insecure settings
    (an open API, no TLS on a network address, ...) are printed as warnings."""
    from node.security.checks import check_security

    cfg = _load(config)
    errors, warnings = check_security(cfg)
    for w in warnings:
        typer.echo(f"WARNING: {w}", err=True)
    if errors:
        for e in errors:
            typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"ok: {config or 'embedded defaults'} (AE {cfg.dicom.ae_title} on {cfg.dicom.bind_address}:{cfg.dicom.port}, "
               f"database {cfg.database_url.split('://')[0]})")


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (after defaults and environment overrides) as JSON."""
    cfg = _load(config)
    data = cfg.model_dump(mode="json")
    data["database"]["url"] = _redact(cfg.database_url)
    typer.echo(json.dumps(data, indent=2))


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


db_app = typer.Typer(no_args_is_help=True, help="Database schema management (Alembic).")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from node.db.session import make_engine, upgrade

    cfg = _load(config)
    upgrade(make_engine(cfg.database_url))
    typer.echo(f"schema up to date ({_redact(cfg.database_url)})")


def register(app: typer.Typer) -> None:
    app.command(help=serve.__doc__)(serve)
    app.command(help=send.__doc__)(send)
    app.command(help=echo.__doc__)(echo)
    app.command(help=jobs.__doc__)(jobs)
    app.command(help=rerun.__doc__)(rerun)
    app.command(help=series.__doc__)(series)
    app.command(help=nodes.__doc__)(nodes)
    app.command(help=request.__doc__)(request)
    app.command(help=openapi.__doc__)(openapi)
    app.add_typer(config_app, name="config")
    app.add_typer(db_app, name="db")
