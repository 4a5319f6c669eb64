"""Remote backend: drives a containerd daemon over its gRPC API v1."""
