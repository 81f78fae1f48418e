"""Random sequences of writes against SQLite, checked step by step against a dict model: the
revision counts real changes only, ``get``/``list`` show the last write, history replays it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_store_support import workload_entry

from pilotfish.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

names = st.sampled_from(["a", "b", "c"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), names, st.sampled_from(["10.0.0.1", "10.0.0.2"])),
        st.tuples(st.just("delete"), names, st.just("")),
        st.tuples(st.just("rollback"), names, st.integers(min_value=1, max_value=12)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(operations)
def test_store_agrees_with_a_dict_model(ops: list[tuple[str, str, Any]]) -> None:
    model: dict[str, tuple[dict[str, Any], int]] = {}
    docs_by_revision: dict[int, tuple[str, dict[str, Any] | None]] = {}
    revision = 0
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "model.db") as store:
        for op, name, arg in ops:
            key = ("WorkloadEntry", "prod", name)
            if op == "apply" or (op == "rollback" and docs_by_revision.get(arg, ("", None))[0] == name):
                doc = workload_entry(name, address=arg) if op == "apply" else docs_by_revision[arg][1]
                if doc is None:
                    continue  # rolling back to a delete is refused; covered by the contract tests
                got = store.apply(doc, actor="m") if op == "apply" else store.rollback(*key, arg, actor="m")
                if name in model and model[name][0] == doc:
                    assert got == model[name][1]
                    continue
                revision += 1
                assert got == revision
                model[name] = (doc, revision)
                docs_by_revision[revision] = (name, doc)
            elif op == "delete":
                got_delete = store.delete(*key, actor="m")
                if name in model:
                    revision += 1
                    del model[name]
                    docs_by_revision[revision] = (name, None)
                    assert got_delete == revision
                else:
                    assert got_delete is None
            assert store.revision() == revision
        assert [(s.resource.name, s.doc, s.revision) for s in store.list()] == [
            (name, doc, rev) for name, (doc, rev) in sorted(model.items())
        ]
        for name in ("a", "b", "c"):
            history = store.history("WorkloadEntry", "prod", name)
            assert [(h.revision, h.doc) for h in history] == [
                (rev, doc) for rev, (n, doc) in sorted(docs_by_revision.items()) if n == name
            ]
