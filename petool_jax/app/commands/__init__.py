"""One module per `petool` subcommand (see petool_jax/cli.py)."""
