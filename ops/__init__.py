"""Operator commands, run from a checkout against a deployed stack or the local emulation
(never shipped in a Lambda package)."""
