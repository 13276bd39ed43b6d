"""Where the embedded data and the shipped default model live (repository layout; editable install)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DEFAULT_RUNS = DATA / "grid" / "runs.csv"
DEFAULT_CANDIDATES = DATA / "examples" / "candidates.csv"
DEFAULT_MODEL = ROOT / "models" / "default"
