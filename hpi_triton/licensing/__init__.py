"""Licensing: issuer keys and certificates, licensed repositories, the activation service."""
