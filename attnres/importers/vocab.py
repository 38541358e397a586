"""Where each project keeps the tokenizer of a checkpoint it saved, and what to say when it is not there.

- Beside the checkpoint: ``meta.pkl`` (a copy a user made), ``tokenizer.json``, or GPT-2's
  ``vocab.json`` + ``merges.txt`` (Hugging Face directories).
- karpathy/nanoGPT: ``data/<dataset>/meta.pkl`` relative to the directory train.py ran in, where
  ``dataset`` is the checkpoint's ``config["dataset"]``; ``out_dir`` (holding ``ckpt.pt``) is
  relative to that same directory, so the file is searched in the ancestors of the checkpoint's
  directory. Without a meta.pkl nanoGPT's sample.py uses GPT-2's BPE (tiktoken ``gpt2``).
- tokenbender/nanogpt-attnres-repro: never saves one; its ``dataset_manifest.json`` beside
  ``ckpt.pt`` names the ``data_dir`` and ``config_effective.json`` the dataset, whose data lie in
  ``examples/nanogpt/data/<dataset>/``; a char dataset there has a ``meta.json``
  (``{"vocab_size", "itos", "stoi"}``), FineWeb10B is pre-tokenized with GPT-2's BPE.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..checkpoint import MAX_CONFIG_BYTES, CheckpointError
from ..hf_tokenizer import MAX_TOKENIZER_BYTES, HFTokenizer
from ..tokenizer import CharTokenizer
from .pickles import char_tokenizer_of, read_meta_pkl

GPT2_VOCAB_SIZES = (50257, 50304)  # GPT-2's BPE, and nanoGPT's padding of it to a multiple of 64
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a dataset name that is one path part
ANCESTORS = 3  # how far above the checkpoint's directory a project's data/ folder is looked for


def find_tokenizer(directory: Path, data: dict | None, vocab_size: int, notes: list[str]):
    """The tokenizer a checkpoint was trained with, found where its project keeps it, or None.

    Args:
        directory: the directory holding the checkpoint file (or the HF directory).
        data: the checkpoint's top-level dict (its ``config``), or None for HF directories.
        vocab_size: the model's vocabulary size (to say which tokenizer a missing one probably was).
        notes: the import report's notes; where the tokenizer came from, or why there is none, is
            appended as one sentence.

    Returns:
        A CharTokenizer or HFTokenizer, or None when none was found.
    """
    beside = _beside(directory)
    if beside is not None:
        return beside
    dataset = _dataset_of(data, directory)
    for meta in _project_meta_files(directory, dataset):
        notes.append(f"tokenizer: {meta} (where its project keeps the vocabulary of dataset {dataset!r})")
        return read_meta_pkl(meta) if meta.suffix == ".pkl" else read_meta_json(meta)
    notes.append(missing_sentence(directory, dataset, vocab_size))
    return None


def _beside(directory: Path):
    if (directory / "meta.pkl").is_file():
        return read_meta_pkl(directory / "meta.pkl")
    try:
        return HFTokenizer.from_directory(directory)
    except ValueError as exc:
        raise CheckpointError(f"{directory}: {exc}.") from None


def _dataset_of(data: dict | None, directory: Path) -> str | None:
    """nanoGPT's ``config["dataset"]``, else the repro's config_effective.json / dataset_manifest.json."""
    candidates = [(data or {}).get("config", {})]
    candidates += [
        _small_json(directory / name) for name in ("config_effective.json", "dataset_manifest.json")
    ]
    for values in candidates:
        name = values.get("dataset") if isinstance(values, dict) else None
        if isinstance(name, str) and SAFE_NAME.fullmatch(name):
            return name
    return None


def _project_meta_files(directory: Path, dataset: str | None) -> list[Path]:
    """Existing meta.pkl / meta.json files of ``dataset`` in the places its project keeps them."""
    folders = []
    manifest = _small_json(directory / "dataset_manifest.json")
    recorded = manifest.get("data_dir") if isinstance(manifest, dict) else None
    if isinstance(recorded, str) and recorded:
        folders += [Path(recorded)] if Path(recorded).is_absolute() else [directory / recorded]
    if dataset is not None:
        for base in [directory, *list(directory.resolve().parents)[:ANCESTORS]]:
            folders += [base / "data" / dataset, base / "examples" / "nanogpt" / "data" / dataset]
    found = (folder / name for folder in folders for name in ("meta.pkl", "meta.json"))
    return [path for path in found if path.is_file()]


def _small_json(path: Path):
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def read_meta_json(path: Path) -> CharTokenizer:
    """A char vocabulary saved as JSON (``{"vocab_size", "itos", "stoi"}``, itos keys as strings)."""
    meta = _small_json(path)
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not isinstance(itos, dict) or not all(isinstance(k, str) and k.isdigit() for k in itos):
        raise CheckpointError(f"{path} is not a JSON object with an 'itos' dict of id -> character.")
    return char_tokenizer_of({**meta, "itos": {int(k): c for k, c in itos.items()}}, path)


def missing_sentence(directory: Path, dataset: str | None, vocab_size: int) -> str:
    """Why no tokenizer was found, and which one the checkpoint was probably trained with."""
    where = "no meta.pkl, tokenizer.json or vocab.json+merges.txt beside it"
    if dataset is not None:
        where += f" and no data/{dataset}/meta.pkl or meta.json above it"
    probable = (
        "; its vocabulary size is GPT-2's, and nanoGPT uses GPT-2's BPE when there is no meta.pkl"
        if probably_gpt2(vocab_size)
        else ""
    )
    return f"no tokenizer: {where} ({directory}){probable}"


def probably_gpt2(vocab_size: int) -> bool:
    """Whether a tokenizer-less checkpoint's vocabulary is GPT-2's BPE (nanoGPT's fallback)."""
    return vocab_size in GPT2_VOCAB_SIZES


def tokenizer_from_file(path: Path):
    """A tokenizer a person points at.

    A tokenizer.json, a nanoGPT meta.pkl, a meta.json, or a directory holding one of them (or
    GPT-2's vocab.json + merges.txt).

    Raises:
        CheckpointError: with one sentence when the path holds none of these or cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        found = _beside(path)
        if found is None and (path / "meta.json").is_file():
            found = read_meta_json(path / "meta.json")
        if found is None:
            raise CheckpointError(
                f"{path} holds no tokenizer.json, meta.pkl, meta.json or vocab.json+merges.txt."
            )
        return found
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a regular file.")
    if path.suffix == ".pkl":
        return read_meta_pkl(path)
    if path.suffix != ".json":
        raise CheckpointError(f"{path} is not a tokenizer.json, meta.pkl or meta.json.")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_TOKENIZER_BYTES} bytes; not a tokenizer.")
    meta = _small_json(path)
    if isinstance(meta, dict) and "itos" in meta:
        return read_meta_json(path)
    try:
        return HFTokenizer.from_json_text(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a tokenizer.json ({exc}).") from None
