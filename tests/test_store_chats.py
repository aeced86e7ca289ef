"""The store's per-chat operations: clearing a chat keeps the chat."""

from __future__ import annotations

from pathlib import Path

from edgeassist.store import Store


def test_clearing_a_chat_deletes_only_its_messages_and_keeps_its_settings(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    kept = store.create_chat("kept", system_prompt="be brief", model="qwen3.5-2b:q4_k_m")
    other = store.create_chat("other")
    for chat in (kept, other):
        store.add_message(chat.id, "user", "hi")
        store.add_message(chat.id, "assistant", "hello")
    assert store.clear_chat(kept.id) == 2
    assert store.messages(kept.id) == []
    assert len(store.messages(other.id)) == 2
    again = store.get_chat(kept.id)
    assert again is not None and (again.name, again.system_prompt, again.model) == (
        "kept",
        "be brief",
        "qwen3.5-2b:q4_k_m",
    )
    assert store.clear_chat(kept.id) == 0
