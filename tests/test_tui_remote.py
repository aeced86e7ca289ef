"""The chat app on a server (`model.endpoint`): Ctrl+P lists the server's models beside the ones on disk.

Against the real llama-cpp-python server of `conftest.llama_server`, under Textual's Pilot.
"""

from __future__ import annotations

from pathlib import Path

from conftest import REMOTE_MODEL, LlamaServer
from pilot import choose, wait_until
from test_remote import app_settings


async def test_the_palette_switches_between_the_servers_model_and_one_on_disk(
    tmp_path: Path, llama_server: LlamaServer, starter_gguf: Path
) -> None:
    from edgeassist.tui import create_app

    models = tmp_path / "models"
    models.mkdir()
    (models / "local-smol.gguf").symlink_to(starter_gguf)
    app = create_app(app_settings(tmp_path, llama_server.url), new_chat=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model_ready, what="the server's model")
        host = llama_server.url.split("/")[2]

        seen = await choose(pilot, "smol", "local-smol.gguf here")
        assert f"Model: {REMOTE_MODEL} on {host} (current)" in seen  # the server's model, in use
        await wait_until(pilot, lambda: app.model_ready and "local-smol" in app.model_name, what="the model here")
        assert app.settings.model.endpoint is None  # it runs here now
        label = str(app.query_one("#model").render())
        assert "local-smol" in label and "remote" not in label

        seen = await choose(pilot, "model", f"{REMOTE_MODEL} on {host}")
        assert "Model: local-smol.gguf here (current)" in seen
        assert f"Model: {REMOTE_MODEL} on {host}" in seen  # the server is still offered
        await wait_until(pilot, lambda: app.model_ready and app.settings.model.endpoint is not None, what="the server")
        assert app.settings.model.remote_model == REMOTE_MODEL and app.model_name == REMOTE_MODEL
        assert "remote" in str(app.query_one("#model").render())


async def test_an_unreachable_server_is_one_entry_that_says_why(tmp_path: Path, llama_server: LlamaServer) -> None:
    from edgeassist.tui import create_app

    app = create_app(app_settings(tmp_path, llama_server.url), new_chat=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model_ready, what="the server's model")
        app.models.server = "http://127.0.0.1:9/v1"  # the server has gone away since
        await choose(pilot, "server", "Models on the server: not listed")
        await wait_until(pilot, lambda: any("refused" in str(n.message) for n in app._notifications), what="why")


async def test_palette_entries_show_names_as_text_never_as_markup(
    tmp_path: Path, llama_server: LlamaServer, starter_gguf: Path
) -> None:
    # A file name (or a server's model name) is data: "[reverse]" must stay on screen, not style the entry.
    from pilot import palette_prompts
    from textual.command import CommandPalette

    from edgeassist.tui import create_app

    models = tmp_path / "models"
    models.mkdir()
    (models / "[reverse]odd.gguf").symlink_to(starter_gguf)
    app = create_app(app_settings(tmp_path, llama_server.url), new_chat=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.model_ready, what="the server's model")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await wait_until(pilot, lambda: any("odd.gguf" in p for p in palette_prompts(app)), what="the entries")
        assert "Model: [reverse]odd.gguf here" in palette_prompts(app)  # discovered, before typing
        await pilot.press(*"odd")
        searched = "Clear the chat's messages, keep its settings (asks first)"  # an entry "odd" does not match
        await wait_until(pilot, lambda: searched not in palette_prompts(app), what="the search")
        assert "Model: [reverse]odd.gguf here" in palette_prompts(app)  # found by search, the match marked
