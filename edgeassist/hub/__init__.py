"""The model catalog, `pull` from the Hugging Face hub, and `resolve`, which never touches the network."""

from __future__ import annotations

from edgeassist.hub.catalog import (
    CATALOG,
    STARTER_NAME,
    CatalogEntry,
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
from edgeassist.hub.download import pull, pull_files
from edgeassist.hub.inventory import ModelRow, files_to_remove, list_models, remove
from edgeassist.hub.lookup import ResolvedModel, resolve
from edgeassist.hub.remote import RemoteFile
from edgeassist.hub.staging import STAGING_DIR

__all__ = [
    "CATALOG",
    "MAX_NAME_BYTES",
    "STAGING_DIR",
    "STARTER_NAME",
    "CatalogEntry",
    "ModelRow",
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
    "pull",
    "pull_files",
    "remove",
    "resolve",
    "starter_model_path",
]
