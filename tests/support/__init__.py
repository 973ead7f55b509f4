"""What the unit tests, the integration tests and loadtest/ share: synthetic and hostile images (`images`), the
golden-vector weights (`golden`), small nets (`nets`), HTTP helpers (`helpers`) and the deploy manifests as
the tests read them (`deploy`). Nothing here imports a test module."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
