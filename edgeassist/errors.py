"""The error family that reaches people: each message says what to do next."""

from __future__ import annotations


class EdgeAssistError(Exception):
    """An error a user can act on; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(EdgeAssistError):
    """A bad setting: names the key and the source it came from."""

    exit_code = 2


class UsageError(EdgeAssistError):
    """A bad command-line argument or an empty prompt."""

    exit_code = 2


class ModelNotFoundError(EdgeAssistError):
    """No model file matches the name or path given."""

    exit_code = 3


class ModelLoadError(EdgeAssistError):
    """The model file exists but llama.cpp cannot load it (truncated, not a GGUF, unknown arch)."""

    exit_code = 3


class DownloadError(EdgeAssistError):
    """A pull failed: network, size or checksum; nothing partial is left where resolve looks."""

    exit_code = 4


class ContextOverflowError(EdgeAssistError):
    """The prompt does not fit in the context window even after trimming old turns."""

    exit_code = 5


class AudioUnavailableError(EdgeAssistError):
    """No audio device, no PortAudio, or the speech extra is not installed."""

    exit_code = 6


class StoreError(EdgeAssistError):
    """The chat history database cannot be read or written."""

    exit_code = 7


class RemoteError(EdgeAssistError):
    """A model server (`model.endpoint`) failed; the subclasses say how, each with its own exit code."""

    exit_code = 8


class ServerUnreachableError(RemoteError):
    """The server cannot be reached: connection refused, unknown host, TLS failure, connect timeout."""

    exit_code = 8


class ServerAuthError(RemoteError):
    """The server refused the API key (401/403): the message names the environment variable it comes from."""

    exit_code = 9


class ServerBusyError(RemoteError):
    """The server is overloaded (429/503) and still was after waiting its `Retry-After` once."""

    exit_code = 10


class ServerReplyError(RemoteError):
    """The reply broke: the server stalled, dropped the connection mid-reply, sent a malformed event or an error.

    What had arrived is kept, marked as stopped.
    """

    exit_code = 11


class RemoteModelNotFoundError(ModelNotFoundError, RemoteError):
    """The server has no model by the configured name; the message lists the ones it has."""

    exit_code = 3


class ToolError(EdgeAssistError):
    """A tool could not do what the model asked; the message goes back to the model as the call's result."""


class ImageError(EdgeAssistError):
    """A picture cannot be used: missing, unreadable, not a JPEG, PNG or WebP, corrupt, or too big."""

    exit_code = 12


class VisionUnavailableError(EdgeAssistError):
    """The model cannot see images: it has no vision projector, or the engine cannot pass pictures to it."""

    exit_code = 13
