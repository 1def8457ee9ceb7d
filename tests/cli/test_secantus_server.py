"""The SecantusDB launcher's cursor fix, on the installed release (the effect under load:
tests/test_servers.py::test_secantus_keeps_its_pace_under_concurrent_updates_of_a_hot_page)."""

from types import SimpleNamespace

from secantus.storage import Storage

from cli import secantus_server


class Cursor:
    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1


def _store(**tls: object) -> SimpleNamespace:
    cursors = {"a": Cursor(), "b": Cursor()}
    return SimpleNamespace(_tls=SimpleNamespace(cursors=cursors, **tls))


def test_the_installed_release_gets_the_fix() -> None:
    assert secantus_server.patch() is True
    assert Storage._refresh_read_snapshot is secantus_server._release_cursors_then_refresh


def test_an_operation_starts_with_the_threads_cursors_reset() -> None:
    store = _store()
    secantus_server._release_cursors_then_refresh(store)
    assert [c.resets for c in store._tls.cursors.values()] == [1, 1]


def test_cursors_in_use_by_a_transaction_are_left_alone() -> None:
    for tls in ({"user_txn": object()}, {"defer_minted": True}):
        store = _store(**tls)
        secantus_server._release_cursors_then_refresh(store)
        assert [c.resets for c in store._tls.cursors.values()] == [0, 0]
