"""Helpers every served model shares: images, parameters, BLS calls, the stub's process care."""
