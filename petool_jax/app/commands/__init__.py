"""One module per `petool` subcommand (see petool_jax/app/cli.py)."""
