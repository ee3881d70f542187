"""docs/operations.md, the runbook: every command in it is one koe runs, and the
procedures it describes work (backups, dead letters, partitions)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from kafka import KafkaAdminClient
from sqlalchemy import create_engine, inspect, text

from entry_points import known_entry_points
from koe_devkit.testing import wait_until
from koe_kit import events
from koe_kit.kafka import KafkaSettings, ensure_topics, make_producer, read_topic
from support import DX_PAGE, REPO, answered, drained

RUNBOOK = REPO / "docs/operations.md"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
# The PostgreSQL client tools the runbook uses inside the postgres container; each
# is run below, against the test server, with the runbook's options.
PG_TOOLS = {"pg_dump", "pg_restore", "dropdb", "createdb", "psql"}
THIS_FILE = Path(__file__).read_text(encoding="utf-8")


def runbook_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def check_command(line: str, entry_points: set[str]) -> None:
    words = shlex.split(line.split(" > ")[0].split(" < ")[0])
    if words == ["cp", ".env.example", ".env"]:
        assert (REPO / ".env.example").exists()
        return
    assert words[:2] == ["docker", "compose"], f"not a compose command: {line}"
    if words[2] == "--profile":  # the optional services of a profile, with the others
        profiles = {p for service in SERVICES.values() for p in service.get("profiles", [])}
        assert words[3] in profiles, f"no such profile in: {line}"
        words = words[:2] + words[4:]
    verb, rest = words[2], words[3:]
    if verb in ("up", "stop", "logs", "ps", "build"):
        options = {"-d", "-f"}
        services = []
        while rest:
            word = rest.pop(0)
            if word == "--scale":
                service, _, replicas = rest.pop(0).partition("=")
                assert "ports" not in SERVICES[service] and replicas.isdigit(), line
                services.append(service)
            elif word not in options:
                services.append(word)
        assert set(services) <= set(SERVICES), f"unknown service in: {line}"
    elif verb == "run":
        assert rest[0] == "--rm", line
        service, command = rest[1], rest[2:]
        assert service in SERVICES, line
        if command:
            assert command[:2] == ["python", "-m"] and command[2] in entry_points, line
    elif verb == "exec":
        if rest[0] == "-T":
            rest = rest[1:]
        service, tool = rest[0], rest[1]
        assert service == "postgres" and tool in PG_TOOLS, line
        assert f'"{tool}"' in THIS_FILE, f"no test runs {tool}"
    else:
        raise AssertionError(f"docker compose {verb} is not a command koe's runbook uses")


def test_every_command_in_the_runbook_is_one_koe_runs(tmp_path: Path):
    commands = runbook_commands()
    assert len(commands) > 20
    entry_points = known_entry_points(tmp_path)
    for line in commands:
        check_command(line, entry_points)
    # The sections the issue asks for are all there.
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    for wanted in (
        "Starting",
        "Scaling",
        "Adding partitions",
        "Replaying a topic to rebuild the stats",
        "Draining a dead-letter topic",
        "Backups",
        "Rotating secrets",
        "Upgrading a schema version",
    ):
        assert wanted in headings


def test_the_runbook_check_refuses_what_koe_does_not_run(tmp_path: Path):
    entry_points = known_entry_points(tmp_path)
    for wrong in (
        "docker compose run --rm topics python -m koe_kit.no_such_tool",
        "docker compose up -d --scale proxy=2",  # it has host ports
        "docker compose exec -T postgres pg_dumpall -U koe",
        "docker compose up -d no-such-service",
        "docker compose --profile no-such-profile up -d",
        "kafka-topics.sh --alter --partitions 12",
    ):
        with pytest.raises((AssertionError, KeyError)):
            check_command(wrong, entry_points)


# -- the procedures ----------------------------------------------------------------


def pg(tool: str, *args: str, url: str, **run) -> subprocess.CompletedProcess:
    """A PostgreSQL client tool as the runbook runs it, against the test server."""
    parts = create_engine(url).url
    argv = [tool, "-h", parts.host or "127.0.0.1", "-p", str(parts.port or 5432)]
    argv += ["-U", parts.username or "postgres", *args]
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120, **run)
    assert done.returncode == 0, done.stderr
    return done


def table_rows(url: str) -> dict[str, int]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return {
                # Table names come from the database's own catalogue.
                table: connection.execute(
                    text(f'SELECT count(*) FROM "{table}"')  # noqa: S608
                ).scalar_one()
                for table in inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()


def test_backup_restore_and_a_new_password_with_the_runbooks_tools(new_pg_database, tmp_path):
    if not shutil.which("pg_dump"):
        pytest.fail("the PostgreSQL client tools are missing (apt-get install postgresql-client)")
    source = new_pg_database()
    migrated = subprocess.run(
        [sys.executable, "-m", "notifier.migrate"],
        env={**os.environ, "DATABASE_URL": source},
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    database = source.rsplit("/", 1)[1]
    pg("psql", "-d", database, "-c", "CREATE TABLE ops_probe (n int)", url=source)
    pg("psql", "-d", database, "-c", "INSERT INTO ops_probe VALUES (1), (2)", url=source)

    dump = tmp_path / "koe_notifier.dump"
    dump.write_bytes(pg("pg_dump", "-Fc", database, url=source).stdout)
    restored_name = database + "_r"
    pg("createdb", restored_name, url=source)
    try:
        with dump.open("rb") as stdin:
            pg("pg_restore", "-d", restored_name, "--clean", "--if-exists", stdin=stdin, url=source)
        restored = source.rsplit("/", 1)[0] + "/" + restored_name
        assert table_rows(restored) == table_rows(source)
        assert table_rows(restored)["ops_probe"] == 2

        # The replay's way to keep accounts: one table's rows into a fresh schema.
        pg("psql", "-d", restored_name, "-c", "DELETE FROM ops_probe", url=source)
        with dump.open("rb") as stdin:
            pg(
                "pg_restore",
                "-d",
                restored_name,
                "--data-only",
                "-t",
                "ops_probe",
                stdin=stdin,
                url=source,
            )
        assert table_rows(restored)["ops_probe"] == 2
    finally:
        pg("dropdb", "--if-exists", restored_name, url=source)

    role = f"koe_ops_{database[-8:]}"
    pg("psql", "-d", database, "-c", f"CREATE ROLE {role} LOGIN", url=source)
    try:
        pg(
            "psql",
            "-d",
            database,
            "-c",
            f"ALTER ROLE {role} PASSWORD 'the-new-password'",
            url=source,
        )
    finally:
        pg("psql", "-d", database, "-c", f"DROP ROLE {role}", url=source)


def dlq_tool(broker, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "koe_kit.dlq", *args],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dead_letters_are_shown_and_redriven_once(broker):
    ensure_topics([broker.bootstrap])
    example = REPO / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"
    event = json.loads(example.read_text(encoding="utf-8"))
    producer = make_producer(KafkaSettings([broker.bootstrap], "test"))
    headers = [
        ("koe-dlq-reason", b"data.answers.findability: must be one of yes, neutral, no"),
        ("koe-dlq-topic", b"koe.feedback.submitted.v1"),
        ("koe-dlq-partition", b"2"),
        ("koe-dlq-offset", b"41"),
        ("koe-dlq-group", b"aggregator"),
    ]
    dlq = "koe.feedback.submitted.dlq.v1"
    producer.send(dlq, key=event["subject"], value=events.encode(event), headers=headers).get(30)
    producer.close()

    shown = dlq_tool(broker, "show", dlq)
    assert shown.returncode == 0, shown.stderr
    assert (
        "from koe.feedback.submitted.v1@41 (aggregator): data.answers.findability" in shown.stdout
    )
    assert "1 dead letters on koe.feedback.submitted.dlq.v1" in shown.stdout

    for _ in range(2):  # the second run finds nothing new to send
        done = dlq_tool(broker, "redrive", dlq)
        assert done.returncode == 0, done.stderr
    back = read_topic([broker.bootstrap], "koe.feedback.submitted.v1")
    assert [r.value for r in back] == [events.encode(event)]
    assert back[0].key.decode() == event["subject"]

    refused = dlq_tool(broker, "redrive", "koe.feedback.submitted.v1")
    assert refused.returncode != 0 and "not a dead-letter topic" in refused.stderr


def feedback_partitions(bootstrap: str) -> list[dict]:
    """The feedback topic's partitions as the broker describes them."""
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        return admin.describe_topics(["koe.feedback.submitted.v1"])[0]["partitions"]
    finally:
        admin.close()


def test_the_topics_job_adds_the_partitions_topics_yaml_names(broker, tmp_path: Path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    run = [sys.executable, "-m", "koe_kit.topics"]
    assert subprocess.run(run, env=env, capture_output=True).returncode == 0
    schemas = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", schemas)
    spec = (schemas / "topics.yaml").read_text(encoding="utf-8")
    (schemas / "topics.yaml").write_text(spec.replace("partitions: 6", "partitions: 8"))

    grown = subprocess.run(
        run, env={**env, "KOE_SCHEMAS_DIR": str(schemas)}, capture_output=True, text=True
    )
    if not hasattr(broker, "container"):
        # Tansu has no CreatePartitions: the job says so at once instead of pretending.
        assert grown.returncode != 0
        assert "CreatePartitions" in grown.stderr
        return
    assert grown.returncode == 0, grown.stderr
    assert len(feedback_partitions(broker.bootstrap)) == 8


def test_the_topics_job_creates_the_replicas_it_is_told_to(broker):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    job = subprocess.run(
        [sys.executable, "-m", "koe_kit.topics"],
        env={**env, "KOE_TOPIC_REPLICATION_FACTOR": "3"},
        capture_output=True,
        text=True,
    )
    if hasattr(broker, "container"):
        # A one-broker Apache Kafka refuses three replicas; the job must say so.
        assert job.returncode != 0 and "replication" in job.stderr.lower(), job.stderr
        return
    # Tansu keeps one copy but records the factor it was asked for.
    assert job.returncode == 0, job.stderr
    assert all(len(p["replica_nodes"]) == 3 for p in feedback_partitions(broker.bootstrap))


OTHER_PAGE = DX_PAGE.replace("1234", "5678")
# The runbook's checks after a restore ("Backups"), each the SQL of one of its psql lines.
UNSENT = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
ANSWERS_KEPT = (
    "SELECT count(*) FROM responses r"
    " WHERE NOT EXISTS (SELECT 1 FROM responses n WHERE n.replaces = r.id)"
)
ANSWERS_COUNTED = (
    "SELECT (SELECT coalesce(sum(responses), 0) FROM daily_responses)"
    " + (SELECT coalesce(sum(responses), 0) FROM daily_excess)"
)


def scalar(url: str, sql: str) -> int:
    database = url.rsplit("/", 1)[1]
    return int(pg("psql", "-d", database, "-tAc", sql, url=url, text=True).stdout)


def agreement(urls: dict[str, str]) -> tuple[int, int, int]:
    """(outbox rows not relayed, answers in feedback, answers the aggregator counted)."""
    return (
        scalar(urls["feedback"], UNSENT),
        scalar(urls["feedback"], ANSWERS_KEPT),
        scalar(urls["aggregator"], ANSWERS_COUNTED),
    )


@pytest.mark.e2e
def test_all_three_databases_backed_up_and_restored_leave_koe_consistent(
    koe_factory, broker, tmp_path
):
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for sql in (UNSENT, ANSWERS_KEPT, ANSWERS_COUNTED):
        assert f'-tAc "{sql}"' in runbook, sql
    koe = koe_factory(KOE_COUNT_PER_SOURCE_DAY="2")  # one source: some answers are excess
    urls = {s: koe.stack.service_env(s)["DATABASE_URL"] for s in ("feedback", "aggregator")}
    urls["notifier"] = koe.stack.service_env("notifier")["DATABASE_URL"]
    changed_mind = str(uuid.uuid4())
    for body in (
        answered(client_token=changed_mind),
        answered(client_token=changed_mind, answers={"clarity": "no"}),  # replaces it
        *(answered(client_token=str(uuid.uuid4())) for _ in range(3)),
        answered(page_url=OTHER_PAGE, client_token=str(uuid.uuid4())),
    ):
        assert koe.submit(**body).status_code == 202
    wait_until(lambda: agreement(urls) == (0, 5, 5), what="5 answers relayed and counted")
    before = {service: table_rows(url) for service, url in urls.items()}
    assert before["aggregator"]["daily_excess"] >= 1

    # The runbook: services stopped, each database dumped, lost, and restored.
    koe.stack.stop()
    for service, url in urls.items():
        database = url.rsplit("/", 1)[1]
        dump = tmp_path / f"koe_{service}.dump"
        dump.write_bytes(pg("pg_dump", "-Fc", database, url=url).stdout)
        pg("dropdb", "--force", database, url=url)
        pg("createdb", database, url=url)
        with dump.open("rb") as stdin:
            pg("pg_restore", "-d", database, "--clean", "--if-exists", stdin=stdin, url=url)
    assert {service: table_rows(url) for service, url in urls.items()} == before
    assert agreement(urls) == (0, 5, 5)

    # koe goes on where it was: the next answer is counted once, none again.
    koe.stack.start_all()
    assert koe.submit(**answered(client_token=str(uuid.uuid4()))).status_code == 202
    wait_until(lambda: agreement(urls) == (0, 6, 6), what="the answer after the restore")
    drained(koe, broker.bootstrap)  # a consumer that counted anything twice shows it now
    assert agreement(urls) == (0, 6, 6)


# What an older image's code may still read: a migration that takes a table or a column
# away (a widened type, a new table or column, an index, is no trouble for old code).
REMOVES = re.compile(r"\b(drop_table|drop_column|rename_table)\(")


def test_the_runbook_names_every_migration_an_older_image_cannot_run_after():
    removing = set()
    for path in REPO.glob("services/*/src/*/migrations/versions/*.py"):
        source = path.read_text(encoding="utf-8")
        upgrade = source[source.index("def upgrade") : source.index("def downgrade")]
        if REMOVES.search(upgrade):
            revision = re.search(r'^revision = "(\d+)"', source, re.M).group(1)
            removing.add(f"{path.parts[-4]} {revision}")
    runbook = RUNBOOK.read_text(encoding="utf-8")
    rollback = runbook[runbook.index("**Rolling back**") : runbook.index("## Rotating secrets")]
    listed = {" ".join(m) for m in re.findall(r"^- (\w+) (\d{4}) \(", rollback, re.M)}
    assert removing == listed
