"""SKU identity: profiles (data) and detection of the host's fingerprint."""
