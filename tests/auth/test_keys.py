"""API key store: hashing, auth, revocation across processes, accounting, limits, CLI."""

from __future__ import annotations

import hashlib
import stat
import time
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner
from wait import wait_until

from appliance.auth import keys as keys_mod
from appliance.auth.keys import KeyStore
from appliance.cli import keys as keys_cli
from appliance.errors import ApplianceError


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "keys.sqlite"


@pytest.fixture
def store(db: Path):
    with KeyStore(db) as s:
        yield s


def _secret(key: str) -> str:
    return key.split("-", 3)[3]


def test_create_list_authenticate(store: KeyStore) -> None:
    record, key = store.create("laptop", rate_limit_rpm=10, token_quota=1000)
    assert key.startswith(f"sk-appl-{record.id}-")
    assert len(record.id) == 8 and int(record.id, 16) >= 0
    assert len(_secret(key)) >= 43
    listed = store.list()
    assert [(r.id, r.name, r.rate_limit_rpm, r.token_quota) for r in listed] == [(record.id, "laptop", 10, 1000)]
    assert not hasattr(listed[0], "secret_sha256")
    got = store.authenticate(key)
    assert got is not None and got.id == record.id and got.last_used_at is not None


def test_bad_keys_fail(store: KeyStore) -> None:
    record, key = store.create("a")
    other, _ = store.create("b")
    assert store.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.authenticate(f"sk-appl-{other.id}-{_secret(key)}") is None
    assert store.authenticate("sk-appl-00000000-" + _secret(key)) is None
    for junk in ("", "Bearer", "sk-appl-", "sk-other-" + key, key.replace("sk-appl-", "sk-")):
        assert store.authenticate(junk) is None
    assert store.authenticate(key) is not None


def test_revoked_key_fails(store: KeyStore) -> None:
    record, key = store.create("ci")
    revoked = store.revoke(record.id)
    assert revoked.revoked and revoked.revoked_at is not None
    assert store.authenticate(key) is None
    assert store.revoke(record.id).revoked_at == revoked.revoked_at
    assert store.list()[0].revoked


def test_revoke_unknown_names_id_and_fix(store: KeyStore) -> None:
    with pytest.raises(ApplianceError) as err:
        store.revoke("deadbeef")
    assert "deadbeef" in str(err.value) and "appliance keys list" in str(err.value)


def test_create_validates(store: KeyStore) -> None:
    with pytest.raises(ApplianceError):
        store.create("  ")
    with pytest.raises(ApplianceError, match="--rate-limit"):
        store.create("x", rate_limit_rpm=0)
    with pytest.raises(ApplianceError, match="--token-quota"):
        store.create("x", token_quota=-1)


def test_only_hashes_on_disk_and_private_modes(db: Path) -> None:
    with KeyStore(db) as s:
        record, key = s.create("secretive")
        s.authenticate(key)
        on_disk = b"".join(p.read_bytes() for p in db.parent.iterdir())
        assert _secret(key).encode() not in on_disk
        assert key.encode() not in on_disk
        assert hashlib.sha256(_secret(key).encode()).digest() in on_disk
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for path in db.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_counters_flushed_in_background_and_survive_reopen(db: Path) -> None:
    s = KeyStore(db)
    record, key = s.create("counted")
    for _ in range(3):
        s.record_usage(record.id, prompt_tokens=10, completion_tokens=5)
    live = s.authenticate(key)
    assert live is not None and (live.requests, live.prompt_tokens, live.completion_tokens) == (3, 30, 15)
    reader = KeyStore(db)
    wait_until(lambda: reader.list()[0].requests == 3, timeout=30, what="the background flush of 3 requests")
    assert (reader.list()[0].requests, reader.list()[0].prompt_tokens) == (3, 30)
    s.record_usage(record.id, prompt_tokens=1, completion_tokens=2)
    s.close()
    reader.close()
    with KeyStore(db) as again:
        r = again.list()[0]
        assert (r.requests, r.prompt_tokens, r.completion_tokens) == (4, 31, 17)
        assert r.last_used_at is not None


def test_rate_limit_with_retry_after(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    record, key = store.create("busy", rate_limit_rpm=3)
    authed = store.authenticate(key)
    assert authed is not None
    assert [store.check_limits(authed) for _ in range(3)] == [None, None, None]
    decision = store.check_limits(authed)
    assert decision is not None and decision.kind == "rate_limit"
    assert decision.reason == "rate limit of 3 requests/minute exceeded"
    assert decision.retry_after is not None and 1 <= decision.retry_after <= 60
    real = time.monotonic
    monkeypatch.setattr(keys_mod.time, "monotonic", lambda: real() + 61)
    assert store.check_limits(authed) is None


def test_token_quota(store: KeyStore) -> None:
    record, key = store.create("metered", token_quota=100)
    assert store.check_limits(record) is None
    store.record_usage(record.id, prompt_tokens=60, completion_tokens=39)
    assert store.check_limits(record) is None
    store.record_usage(record.id, prompt_tokens=0, completion_tokens=1)
    decision = store.check_limits(record)
    assert decision is not None and decision.kind == "quota"
    assert decision.reason == "token quota of 100 exhausted" and decision.retry_after is None


def test_change_from_another_instance_is_seen(db: Path) -> None:
    """A key created or revoked by the CLI's instance reaches the server's instance without a restart."""
    with KeyStore(db) as server, KeyStore(db) as cli:
        record, key = cli.create("remote")
        wait_until(lambda: server.authenticate(key) is not None, timeout=30, what="the new key to authenticate")
        cli.revoke(record.id)
        wait_until(lambda: server.authenticate(key) is None, timeout=30, what="the revoked key to be refused")


def test_authenticate_is_served_from_memory(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server authenticates every request: a known key costs no SQL until the refresh interval passes.

    The clock is frozen so the count does not depend on how fast this host is.
    """
    _, key = store.create("hot")
    frozen = time.monotonic()
    monkeypatch.setattr(keys_mod, "time", types.SimpleNamespace(monotonic=lambda: frozen, time=time.time))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        for _ in range(2000):
            assert store.authenticate(key) is not None
    finally:
        store._conn.set_trace_callback(None)
    assert statements == []


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    created = runner.invoke(keys_cli.app, ["create", "laptop", "--rate-limit", "30", *state])
    assert created.exit_code == 0, created.output
    lines = created.stdout.strip().splitlines()
    assert any("only once" in line for line in lines)
    key = lines[-1].split()[-1]
    assert key.startswith("sk-appl-")
    with KeyStore(tmp_path / "state" / "keys.sqlite") as s:
        record = s.authenticate(key)
        assert record is not None and record.rate_limit_rpm == 30

    listed = runner.invoke(keys_cli.app, ["list", *state])
    assert listed.exit_code == 0 and record.id in listed.stdout and "laptop" in listed.stdout
    assert _secret(key) not in listed.stdout

    revoked = runner.invoke(keys_cli.app, ["revoke", record.id, *state])
    assert revoked.exit_code == 0 and record.id in revoked.stdout
    assert "revoked" in runner.invoke(keys_cli.app, ["list", *state]).stdout
    with KeyStore(tmp_path / "state" / "keys.sqlite") as s:
        assert s.authenticate(key) is None


def test_cli_unknown_id_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(keys_cli.app, ["revoke", "nope1234", "--state-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ApplianceError)
    message = str(result.exception)
    assert "\n" not in message and "nope1234" in message and "appliance keys list" in message


def test_cli_honours_state_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path / "env-state"))
    result = CliRunner().invoke(keys_cli.app, ["create", "from-env"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env-state" / "keys.sqlite").exists()


def test_a_key_imported_from_another_box_works_here_and_is_revoked_here_alone(tmp_path: Path) -> None:
    """Boxes behind one router each accept the client's one key, and each can still refuse it."""
    with KeyStore(tmp_path / "a" / "keys.sqlite") as a, KeyStore(tmp_path / "b" / "keys.sqlite") as b:
        record, key = a.create("laptop")
        imported, same = b.create("laptop", existing=key)
        assert imported.id == record.id and same == key and b.authenticate(key) is not None
        b.revoke(record.id)
        assert b.authenticate(key) is None and a.authenticate(key) is not None
        with pytest.raises(ApplianceError, match="already in"):
            b.create("again", existing=key)
        with pytest.raises(ApplianceError, match="not an API key"):
            b.create("junk", existing="sk-other-123")


def test_keys_import_cli_reads_the_key_from_stdin(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with KeyStore(tmp_path / "other" / "keys.sqlite") as other:
        record, key = other.create("ci")
    out = CliRunner().invoke(keys_cli.app, ["import", "ci", "--state-dir", str(state)], input=key + "\n")
    assert out.exit_code == 0, out.output
    assert record.id in out.output and key not in out.output
    with KeyStore(state / "keys.sqlite") as here:
        assert here.authenticate(key) is not None
