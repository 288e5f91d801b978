"""The runtime half of licensing: certificates, content keys and the device fingerprint."""
