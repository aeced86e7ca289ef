"""The Textual chat app (`edgeassist chat`); the only package besides the CLI that imports Textual."""

from edgeassist.tui.app import EdgeAssistApp, create_app

__all__ = ["EdgeAssistApp", "create_app"]
