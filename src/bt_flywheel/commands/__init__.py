"""CLI command modules; each exposes `register(subparsers)`. Discovered automatically."""
