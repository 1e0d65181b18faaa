"""The application layer: the `petool` CLI, its subcommands, the demo and the experiment.

It sits on top of the core (`petool_jax` outside this package), `eval` and `synth`, and
nothing below imports it (tests/test_import_graph.py checks that).
"""
