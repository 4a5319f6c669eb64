"""Generated protobuf and gRPC modules for containerd API v1.

Do not edit: regenerate with scripts/generate_protos.py from protos/.
"""
