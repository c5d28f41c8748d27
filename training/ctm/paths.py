"""Where the repository is, so that the defaults that point into it (models/, docs/img, out/, checkpoints/)
hold wherever a command runs from. Paths a user gives are theirs: relative to the directory they ran
the command in (`npm run` passes it on; scripts/py.mjs --from-caller)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
