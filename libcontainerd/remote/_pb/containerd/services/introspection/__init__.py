"""Generated package; see scripts/generate_protos.py."""
