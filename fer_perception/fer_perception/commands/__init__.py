"""Subcommands of the `fer-perception` CLI, one module each (see :mod:`fer_perception.cli`)."""
