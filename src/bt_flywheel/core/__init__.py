"""Errors, settings, mode, output, redaction, ids, file io and the JSON contracts: the bottom layer."""
