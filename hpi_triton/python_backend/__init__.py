"""What runs inside tritonserver; these modules are copied into generated repositories."""

from pathlib import Path

# The folder whose modules generated repositories get copies of.
MODULE_DIR = Path(__file__).parent
