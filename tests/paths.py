"""Where the tests find the repository and the project's shared documents (a sibling `shared/` folder)."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
#: A copy of shared/samples/messages.yaml (real error wordings), so the suite runs without shared/.
SAMPLES = REPO / "tests" / "fixtures" / "samples-messages.yaml"
