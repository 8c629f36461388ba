"""The ansible-runner event collector on events shaped as ansible-runner emits them (recorded field names)."""

from __future__ import annotations

from gapseal.installer.runner import _EventCollector
from gapseal.progress import Progress


class Notes(Progress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_stats_failures_and_facts_per_host() -> None:
    progress = Notes()
    c = _EventCollector(progress, None)
    c({"event": "playbook_on_task_start", "event_data": {"task": "Install model weights"}})
    c(
        {
            "event": "runner_on_ok",
            "event_data": {
                "host": "h1",
                "task": "Detect",
                "res": {
                    "changed": False,
                    "ansible_facts": {"gapseal_variants": {"s": {"chosen": {"backend": "cuda"}}}},
                },
            },
        }
    )
    c(
        {
            "event": "runner_on_ok",
            "event_data": {"host": "h1", "task": "Install model weights", "res": {"changed": True}},
        }
    )
    c(
        {
            "event": "runner_on_unreachable",
            "event_data": {
                "host": "h2",
                "task": "Check python",
                "res": {"msg": "ssh: connect to host 10.231.5.2 port 22: Connection refused"},
            },
        }
    )
    c(
        {
            "event": "runner_on_failed",
            "event_data": {
                "host": "h3",
                "task": "Loop",
                "res": {"results": [{"failed": False}, {"failed": True, "msg": "item broke"}]},
            },
        }
    )
    c(
        {
            "event": "runner_on_failed",
            "event_data": {"host": "h1", "task": "Ignored", "ignore_errors": True, "res": {"msg": "x"}},
        }
    )
    c(
        {
            "event": "playbook_on_stats",
            "event_data": {
                "ok": {"h1": 5},
                "changed": {"h1": 1},
                "dark": {"h2": 1},
                "failures": {"h3": 1},
                "ignored": {"h1": 1},
            },
        }
    )
    h1, h2, h3 = c.hosts["h1"], c.hosts["h2"], c.hosts["h3"]
    assert (h1.ok, h1.changed, h1.succeeded) == (5, 1, True)
    assert h1.changed_tasks == ["Install model weights"]
    assert h1.facts["gapseal_variants"]["s"]["chosen"]["backend"] == "cuda"
    assert h2.unreachable == 1
    assert h2.failures[0].unreachable is True
    assert "Connection refused" in h2.failures[0].message
    assert h3.failures[0].message == "item broke"
    assert not h3.succeeded
    assert "TASK Install model weights" in progress.notes
    assert any(n.startswith("h2: UNREACHABLE Check python") for n in progress.notes)
