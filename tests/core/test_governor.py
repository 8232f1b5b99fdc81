"""The governor fails closed and always says why."""

from __future__ import annotations

import re
import time

from ai_engine.enums import Action, GovernorMode
from ai_engine.governor import FileGovernorBackend, Governor, GovernorState
from ai_engine.types import EnsembleDecision

ACTIONABLE = EnsembleDecision(Action.BUY, 0.7, 3, 3, True, False, (0, 0, 1), ())
HOLD = EnsembleDecision(Action.HOLD, 0.5, 3, 3, False, False, (0, 1, 0), ())


def test_missing_state_blocks_with_reason(tmp_path):
    v = Governor(FileGovernorBackend(tmp_path / "g.json")).check(ACTIONABLE)
    assert not v.allowed and "missing" in v.reason and "governor release" in v.reason


def test_unreadable_or_malformed_state_blocks(tmp_path):
    p = tmp_path / "g.json"
    p.write_text("{not json")
    assert "not valid JSON" in Governor(FileGovernorBackend(p)).check(ACTIONABLE).reason
    p.write_text('{"kill": "0", "mode": "LIVE"}')
    assert "malformed" in Governor(FileGovernorBackend(p)).check(ACTIONABLE).reason
    p.write_text('{"kill": false, "mode": "YOLO"}')
    assert "unknown mode" in Governor(FileGovernorBackend(p)).check(ACTIONABLE).reason
    p.write_text('{"kill": true, "kill": false, "mode": "PAPER"}')  # a key added instead of changed
    v = Governor(FileGovernorBackend(p)).check(ACTIONABLE)
    assert not v.allowed and "'kill' appears more than once" in v.reason
    d = tmp_path / "dir.json"
    d.mkdir()
    assert not Governor(FileGovernorBackend(d)).check(ACTIONABLE).allowed


def test_kill_release_and_halt(tmp_path):
    be = FileGovernorBackend(tmp_path / "g.json")
    gov = Governor(be)
    be.write(GovernorState.new(True, GovernorMode.LIVE, "drill"))
    v = gov.check(ACTIONABLE)
    assert not v.allowed and "kill switch on" in v.reason and "drill" in v.reason
    be.write(GovernorState.new(False, GovernorMode.PAPER))
    assert gov.check(ACTIONABLE).allowed
    be.write(GovernorState.new(False, GovernorMode.HALT))
    assert "HALT" in gov.check(ACTIONABLE).reason


def test_hold_needs_no_verdict(tmp_path):
    v = Governor(FileGovernorBackend(tmp_path / "none.json")).check(HOLD)
    assert not v.allowed and v.reason is None


class CountingBackend(FileGovernorBackend):
    reads = 0

    def read(self):
        self.reads += 1
        return super().read()


def test_check_many_is_check_per_row_with_one_read(tmp_path):
    """The batch verdicts equal a check per row, under every state, and read the state once per
    batch (never for a batch of HOLDs)."""
    be = CountingBackend(tmp_path / "g.json")
    gov = Governor(be)
    batch = [HOLD, ACTIONABLE, HOLD, ACTIONABLE, ACTIONABLE]
    for state in (None, GovernorState.new(True, GovernorMode.LIVE, "drill"), GovernorState.new(False, GovernorMode.HALT),
                  GovernorState.new(False, GovernorMode.PAPER)):
        if state is not None:
            be.write(state)
        expected = [gov.check(d) for d in batch]
        be.reads = 0
        assert gov.check_many([d.actionable for d in batch]) == expected and be.reads == 1
    assert gov.check_many([False, False]) == [gov.check(HOLD)] * 2 and be.reads == 1
    assert gov.check_many([]) == []


def test_governor_commands_round_trip(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ai_engine.cli.main import app

    env = tmp_path / "e.env"
    env.write_text(f"AI_ENGINE_HOME={tmp_path}\n")
    run = lambda *a: CliRunner().invoke(app, [*a, "--env-file", str(env)])  # noqa: E731
    missing = run("governor", "status")
    assert missing.exit_code == 1 and "BLOCKING" in missing.stdout and "missing" in missing.stdout
    assert run("governor", "release", "--mode", "LIVE").exit_code == 0
    ok = run("governor", "status")
    assert ok.exit_code == 0 and "mode: LIVE" in ok.stdout and "intents allowed" in ok.stdout
    assert run("governor", "kill", "--reason", "drill").exit_code == 0
    killed = run("governor", "status")
    assert killed.exit_code == 1 and "kill: 1" in killed.stdout and "drill" in killed.stdout
    assert run("governor", "release", "--mode", "YOLO").exit_code == 2


def test_one_backend_sees_every_change_to_the_file(tmp_path):
    """The file backend keeps the parsed state between decisions; every way the file can change
    (atomic replace by the CLI, an editor writing in place, deletion, corruption) is seen by the
    next check, and a broken file is never served from the cache."""
    p = tmp_path / "g.json"
    be = FileGovernorBackend(p, stable_after_s=0.05)
    gov = Governor(be)
    be.write(GovernorState.new(False, GovernorMode.LIVE))
    time.sleep(0.1)
    assert gov.check(ACTIONABLE).allowed and be.read() is be.read()  # unchanged file: parsed once
    be.write(GovernorState.new(True, GovernorMode.LIVE, "drill"))  # atomic replace, new inode
    assert "kill switch on" in gov.check(ACTIONABLE).reason
    be.write(GovernorState.new(False, GovernorMode.LIVE))
    for mode in ("HALT", "LIVE"):  # in place, same inode and same size, twice in a row
        with p.open("r+", encoding="utf-8") as fh:
            text = re.sub(r'"mode": "\w+"', f'"mode": "{mode}"', fh.read())
            fh.seek(0)
            fh.write(text)
            fh.truncate()
        assert gov.check(ACTIONABLE).allowed is (mode == "LIVE")
    p.write_text("{not json")
    assert "not valid JSON" in gov.check(ACTIONABLE).reason
    assert "not valid JSON" in gov.check(ACTIONABLE).reason  # still blocking, not a cached good state
    p.unlink()
    assert "missing" in gov.check(ACTIONABLE).reason
