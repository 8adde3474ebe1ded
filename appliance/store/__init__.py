"""The model store: per-model folders with manifests, a signed index, and their verification."""
