"""The Qwen 3.5 tokenizer and chat template: fetched once from llama-cpp-python's sdist on PyPI, then read."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeassist.errors import DownloadError, EdgeAssistError

CACHE_ENV = "EDGEASSIST_CACHE_DIR"
"""Environment variable that overrides the cache folder."""

VOCAB_FILE = "ggml-vocab-qwen35.gguf"
TEMPLATE_FILE = "Qwen3.5-4B.jinja"
_SDIST_MEMBERS = {
    VOCAB_FILE: "vendor/llama.cpp/models/ggml-vocab-qwen35.gguf",
    TEMPLATE_FILE: "vendor/llama.cpp/models/templates/Qwen3.5-4B.jinja",
}

# Qwen 3's added tokens after <|im_end|> (151645), at the same ids. The vocab file has only the
# first three; the Qwen 3.5 template needs the think, tool and vision ones. The converter
# (convert_hf_to_gguf.py) types `<|...|>` tokens CONTROL and the others USER_DEFINED; both kinds
# tokenize as one token (USER_DEFINED even without parse_special).
_ADDED_TOKENS = (
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
    "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)  # fmt: skip
_FIRST_ADDED_ID = 151_646
_TOKEN_CONTROL, _TOKEN_USER_DEFINED, _TOKEN_UNUSED = 3, 4, 5  # gguf.TokenType
_ENDOFTEXT, _IM_END = "<|endoftext|>", "<|im_end|>"


def cache_dir() -> Path:
    """Where fetched assets live: $EDGEASSIST_CACHE_DIR, else $XDG_CACHE_HOME/edgeassist, else ~/.cache/edgeassist."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "edgeassist"


def _llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise EdgeAssistError(
            "llama-cpp-python is not installed: `pip install llama-cpp-python` (it carries the Qwen 3.5 tokenizer)"
        ) from None


def tokenizer_assets(cache: Path | None = None) -> tuple[Path, Path]:
    """Paths of the Qwen 3.5 vocab GGUF and chat template, fetched from PyPI on first use."""
    version = _llama_cpp_version()
    folder = (cache or cache_dir()) / f"llama-cpp-python-{version}"
    paths = {name: folder / name for name in _SDIST_MEMBERS}
    if all(p.is_file() for p in paths.values()):
        return paths[VOCAB_FILE], paths[TEMPLATE_FILE]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EdgeAssistError(f"cannot create the cache folder {folder}: {e.strerror}; set {CACHE_ENV}") from None
    with tempfile.TemporaryDirectory(dir=folder, prefix=".sdist-") as tmp:
        sdist = _download_sdist(version, Path(tmp))
        _extract(sdist, paths)
    return paths[VOCAB_FILE], paths[TEMPLATE_FILE]


def _download_sdist(version: str, dest: Path) -> Path:
    # The ordinary client: pip resolves the index and any proxy the user has configured.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check"]
    cmd += ["--quiet", "-d", str(dest), f"llama-cpp-python=={version}"]
    hint = f"check the network, or put {VOCAB_FILE} and {TEMPLATE_FILE} in {dest.parent}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(f"cannot fetch the Qwen 3.5 tokenizer from PyPI ({e}); {hint}") from None
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise DownloadError(
            f"cannot fetch the Qwen 3.5 tokenizer: `pip download llama-cpp-python=={version}` failed ({reason}); {hint}"
        )
    return found[0]


def _extract(sdist: Path, paths: dict[str, Path]) -> None:
    wanted = {suffix: paths[name] for name, suffix in _SDIST_MEMBERS.items()}
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                target = next((p for suf, p in wanted.items() if member.name.endswith("/" + suf)), None)
                if target is None or not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
                with src, tmp.open("wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, target)  # atomic: a concurrent build never sees half a file
    except (OSError, tarfile.TarError) as e:
        raise DownloadError(f"cannot unpack {sdist.name}: {e}; delete {sdist.parent.parent} and retry") from None
    missing = [p.name for p in wanted.values() if not p.is_file()]
    if missing:
        raise EdgeAssistError(f"{sdist.name} does not contain {', '.join(missing)}: this llama-cpp-python is too old")


def _read_gguf_kv(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (strings as bytes, arrays as lists).

    gguf.GGUFReader takes 7 s on this vocab (it maps every array item); this reads the same
    metadata in a fraction of a second and stops before the tensors.
    """
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    buf = path.read_bytes()
    if buf[:4] != b"GGUF":
        raise EdgeAssistError(f"{path} is not a GGUF file: delete it and it will be fetched again")
    (n_kv,) = struct.unpack_from("<Q", buf, 16)
    pos = 24

    def read_str() -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        return buf[pos - n : pos]

    def read_val(vtype: int) -> Any:
        nonlocal pos
        if vtype == 8:
            return read_str()
        if vtype == 9:
            (item, count) = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if item == 8:
                return [read_str() for _ in range(count)]
            fmt = scalar[item]
            out = list(struct.unpack_from(f"<{count}{fmt}", buf, pos))
            pos += count * struct.calcsize(fmt)
            return out
        fmt = scalar[vtype]
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = read_str().decode()
        (vtype,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        kv[key] = read_val(vtype)
    return kv


@dataclass(frozen=True)
class Tokenizer:
    """The tokenizer a model file carries: the vocab file's, with Qwen 3's added tokens, padded."""

    tokens: list[bytes]
    types: list[int]
    merges: list[bytes]
    model: str
    pre: str
    eos: int
    bos: int
    pad: int
    template: str


def load_tokenizer(n_vocab: int) -> Tokenizer:
    """The Qwen 3.5 tokenizer and template, padded to `n_vocab` tokens (fetched on first use)."""
    vocab_path, template_path = tokenizer_assets()
    kv = _read_gguf_kv(vocab_path)
    tokens: list[bytes] = list(kv["tokenizer.ggml.tokens"])
    types: list[int] = list(kv["tokenizer.ggml.token_type"])
    if len(tokens) > n_vocab:
        raise EdgeAssistError(f"{vocab_path.name} has {len(tokens)} tokens, more than the model's {n_vocab}")
    # llama.cpp's converter marks padding UNUSED: as USER_DEFINED, as in the vocab file, every pad
    # would join the special-token scan that each tokenize call makes (96k string searches).
    types = [_TOKEN_UNUSED if t.startswith(b"[PAD") else ty for t, ty in zip(tokens, types, strict=True)]
    tokens += [f"[PAD{i}]".encode() for i in range(len(tokens), n_vocab)]
    types += [_TOKEN_UNUSED] * (n_vocab - len(types))
    for i, text in enumerate(_ADDED_TOKENS, start=_FIRST_ADDED_ID):
        tokens[i] = text.encode()
        types[i] = _TOKEN_CONTROL if text.startswith("<|") else _TOKEN_USER_DEFINED
    index = {t: i for i, t in enumerate(tokens[_FIRST_ADDED_ID - 3 : _FIRST_ADDED_ID], _FIRST_ADDED_ID - 3)}
    return Tokenizer(
        tokens=tokens,
        types=types,
        merges=list(kv["tokenizer.ggml.merges"]),
        model=kv["tokenizer.ggml.model"].decode(),
        pre=kv["tokenizer.ggml.pre"].decode(),
        eos=index[_IM_END.encode()],
        bos=index[_ENDOFTEXT.encode()],
        pad=index[_ENDOFTEXT.encode()],
        template=template_path.read_text(encoding="utf-8"),
    )
