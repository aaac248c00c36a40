"""The checkpoint janitor: never crashes into Tune, records only deletions that happened, and
leaves errored trials' checkpoints for `sweep resume`."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pyarrow.fs import FileInfo, FileType

from orchestrator.run.hygiene import CheckpointJanitor


@dataclass
class FlakyStore:
    """A stand-in for a pyarrow filesystem that can be made unreachable (unit test only)."""

    folders: dict[str, list[str]]
    down: bool = False
    deleted: list[str] = field(default_factory=list)

    def get_file_info(self, selector: Any) -> list[FileInfo]:
        if self.down:
            raise OSError("When listing objects: connection timed out")
        return [FileInfo(f"{selector.base_dir}/{name}", FileType.Directory)
                for name in self.folders[selector.base_dir]]

    def delete_dir(self, path: str) -> None:
        if self.down:
            raise OSError("When deleting: connection timed out")
        self.deleted.append(path)
        parent, name = path.rsplit("/", 1)
        self.folders[parent].remove(name)


def _trial(trial_id: str, store: FlakyStore) -> Any:
    return SimpleNamespace(trial_id=trial_id, path=f"/exp/{trial_id}",
                           storage=SimpleNamespace(storage_filesystem=store))


def _janitor_with_two_finished(store: FlakyStore) -> tuple[CheckpointJanitor, Any, Any]:
    janitor = CheckpointJanitor("eval_loss", "min", keep_top_k=1)
    good, bad = _trial("good", store), _trial("bad", store)
    janitor.on_trial_result(0, [], good, {"eval_loss": 0.1})
    janitor.on_trial_result(0, [], bad, {"eval_loss": 0.9})
    janitor.on_trial_complete(0, [], good)
    return janitor, good, bad


def test_an_outage_deletes_nothing_and_records_nothing_then_it_retries() -> None:
    store = FlakyStore({"/exp/good": ["checkpoint_000001"],
                        "/exp/bad": ["checkpoint_000000", "checkpoint_000001"]})
    janitor, _, bad = _janitor_with_two_finished(store)
    store.down = True
    janitor.on_trial_complete(0, [], bad)  # must not raise into Tune
    assert janitor.deleted == set() and store.deleted == []
    store.down = False
    janitor.on_experiment_end([])
    assert janitor.deleted == {"bad"}
    assert store.folders == {"/exp/good": ["checkpoint_000001"], "/exp/bad": []}


def test_a_failed_delete_is_not_recorded() -> None:
    store = FlakyStore({"/exp/good": ["checkpoint_000001"], "/exp/bad": ["checkpoint_000000"]})
    janitor, _, bad = _janitor_with_two_finished(store)
    original = store.delete_dir

    def fail_once(path: str) -> None:
        store.delete_dir = original  # type: ignore[method-assign]
        raise OSError("503 Slow Down")

    store.delete_dir = fail_once  # type: ignore[method-assign]
    janitor.on_trial_complete(0, [], bad)
    assert janitor.deleted == set() and store.folders["/exp/bad"] == ["checkpoint_000000"]
    janitor.on_experiment_end([])
    assert janitor.deleted == {"bad"} and store.folders["/exp/bad"] == []


def test_errored_trials_keep_their_checkpoints_for_resume() -> None:
    store = FlakyStore({"/exp/good": ["checkpoint_000001"], "/exp/bad": ["checkpoint_000000"]})
    janitor, _, bad = _janitor_with_two_finished(store)
    janitor.on_trial_error(0, [], bad)
    janitor.on_experiment_end([])
    assert store.folders["/exp/bad"] == ["checkpoint_000000"] and janitor.deleted == set()
